"""Run and test a job in plain CPython, where there is no host.

`MockContext` stands in for the host while it is active (``with`` block):
it has a job id, an attempt number and a cancel flag, and it records the log
lines, progress reports and metadata the job sends, applying the host's own
rules (progress clamped, metadata limits). `call` runs a job through the same
wrapper the component uses (args JSON in, result JSON or error out)::

    from jobhost.testing import MockContext, call
    import app

    out = call(app.wordcount, {"text": "a b a"})
    assert out.ok and out.result["total_words"] == 3
    assert ("info", "3 words, 2 distinct") in out.context.logs
"""

import json
import math
from dataclasses import dataclass

from . import _host, _run

__all__ = ["MockContext", "Outcome", "call"]

# The host's metadata limits (host/src/runtime/sandbox.rs, jobs/record.rs).
MAX_METADATA_KEY = 128
MAX_METADATA_VALUE = 64 << 10
MAX_METADATA_KEYS = 64
MAX_METADATA_BYTES = 256 << 10


class MockContext:
    """A host for native runs and tests; a context manager (nestable).

    - `job_id`, `attempt`: what `job_id()` and `attempt()` return.
    - `cancelled=True`: `is_cancelled()` is True from the start; or
      `cancel_after=N`: the first N checks say False, the later ones True;
      or call `cancel()` at any time.
    - `echo=True` also prints every log line and progress report to stderr.

    Recorded: `logs` [(level, message)], `progress` [(percent, message)],
    `metadata` {key: decoded value}, `checks` (how often the job asked
    `is_cancelled()`).
    """

    def __init__(self, job_id="00000000-0000-4000-8000-000000000001", attempt=1,
                 cancelled=False, cancel_after=None, echo=False):
        self.job_id_value = job_id
        self.attempt_value = attempt
        self.cancelled = cancelled
        self.cancel_after = cancel_after
        self.echo = echo
        self.logs = []
        self.progress = []
        self.metadata = {}
        self.checks = 0
        self._sizes = {}
        self._saved = []

    def __enter__(self):
        self._saved.append(_host.active)
        _host.active = self
        return self

    def __exit__(self, *exc):
        _host.active = self._saved.pop()
        return False

    def cancel(self):
        """Asks the job to stop, as `jobhost job cancel` would."""
        self.cancelled = True

    def messages(self, level=None):
        """The logged messages, optionally of one level only ("info", ...)."""
        return [m for (lvl, m) in self.logs if level is None or lvl == level]

    @property
    def last_progress(self):
        """The last (percent, message) reported, or None: what followers see."""
        return self.progress[-1] if self.progress else None

    # The backend interface used by jobhost's public functions.

    def log(self, level, message):
        self.logs.append((level, message))
        if self.echo:
            _host.NativeBackend().log(level, message)

    def report_progress(self, percent, message):
        percent = 0.0 if math.isnan(percent) else min(max(percent, 0.0), 100.0)
        self.progress.append((percent, message))
        if self.echo:
            _host.NativeBackend().report_progress(percent, message)

    def set_metadata(self, key, json_text):
        key_bytes, value_bytes = len(key.encode()), len(json_text.encode())
        if not 1 <= key_bytes <= MAX_METADATA_KEY:
            return f"metadata key must be 1 to {MAX_METADATA_KEY} bytes"
        if value_bytes > MAX_METADATA_VALUE:
            return f"metadata value of {value_bytes} bytes is over the {MAX_METADATA_VALUE}-byte limit"
        try:
            value = json.loads(json_text)
        except ValueError as e:
            return f"metadata is not JSON: {e}"
        if key not in self._sizes and len(self._sizes) >= MAX_METADATA_KEYS:
            return f"a job may set at most {MAX_METADATA_KEYS} metadata keys"
        total = sum(self._sizes.values()) - self._sizes.get(key, 0) + key_bytes + value_bytes
        if total > MAX_METADATA_BYTES:
            return f"metadata of a job may hold at most {MAX_METADATA_BYTES} bytes; this would make {total}"
        self._sizes[key] = key_bytes + value_bytes
        self.metadata[key] = value
        return None

    def is_cancelled(self):
        self.checks += 1
        if self.cancel_after is not None and self.checks > self.cancel_after:
            self.cancelled = True
        return self.cancelled

    def job_id(self):
        return self.job_id_value

    def attempt(self):
        return self.attempt_value


@dataclass
class Outcome:
    """What the host would record: `ok` and `output` (the result JSON, or the
    error message), plus the `context` that recorded logs and progress."""

    ok: bool
    output: str
    context: MockContext

    @property
    def result(self):
        """The decoded result; an AssertionError (with the message) on err."""
        assert self.ok, f"the job failed: {self.output}"
        return json.loads(self.output)

    @property
    def error(self):
        """The error message, or None when the job completed."""
        return None if self.ok else self.output


def call(fn, args="{}", context=None, **mock):
    """Runs `fn` (an `@job` function) as the host would: `args` is the JSON
    text (a str) or any other value, JSON-encoded first. Uses `context`, else
    the active MockContext, else a new one made with `**mock`
    (`job_id=`, `attempt=`, `cancel_after=`, ...)."""
    if not isinstance(args, str):
        args = json.dumps(args)
    if context is None:
        context = _host.active if isinstance(_host.active, MockContext) else MockContext(**mock)
    elif mock:
        raise TypeError("call: pass either context= or MockContext keywords, not both")
    with context:
        ok, output = _run(fn, args)
    return Outcome(ok, output, context)
