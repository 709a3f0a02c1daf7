"""Write a jobhost job in Python.

A job is one function from the decoded JSON args to a JSON-serialisable
result, marked with `@job`::

    from jobhost import job, info, progress

    @job
    def greet(args):
        info(f"greeting {args['name']}")
        progress(100)
        return {"message": f"Hello, {args['name']}!"}

Build it into a component with `sdk/python/build SRC_DIR MODULE OUT.wasm`
(componentize-py); the host calls the function once per attempt, in a fresh
sandbox. `print()` lands in the job log (stdout as info, stderr as error);
`log`, `progress`, `set_metadata` and `is_cancelled` talk to the host
directly. Natively (plain CPython, unit tests) the same calls go to a
stand-in, or to `jobhost.testing.MockContext` while one is active.

How a job ends:

- it returns a value: `completed`, the value encoded as JSON;
- it raises `JobError("msg")`: `plugin_error` with exactly "msg" (a
  deliberate failure: nothing else is logged);
- it raises anything else: `plugin_error` with "ExcType: message", and the
  full traceback in the job log at error level (a component never traps on
  a Python exception);
- except `MemoryError`, which is re-raised so the host ends the run as
  `memory_limit` (the true cause when a growth was refused).
"""

import enum
import json
import sys
import traceback

from . import _host

__all__ = [
    "job", "JobError", "MetadataError", "Level",
    "log", "trace", "debug", "info", "warn", "error",
    "progress", "set_metadata", "is_cancelled", "job_id", "attempt",
]


class JobError(Exception):
    """A deliberate failure: the job ends `plugin_error` with this message,
    as given, and no traceback is logged (the message is the whole story).
    Raise it for bad input or a refused operation; any other exception is
    reported as "ExcType: message" with its traceback, as a bug."""

    def __init__(self, message):
        super().__init__(message)
        self.message = str(message)

    def __str__(self):
        return self.message


class MetadataError(Exception):
    """The host refused a `set_metadata` (too large, too many keys, or the
    value is not JSON-serialisable). Uncaught, it fails the job like any other
    exception, traceback included, so the log shows which call it was."""


class Level(str, enum.Enum):
    """Severity of a log line, as in the WIT `level` enum."""

    TRACE = "trace"
    DEBUG = "debug"
    INFO = "info"
    WARN = "warn"
    ERROR = "error"


def _level_name(level):
    if isinstance(level, Level):
        return level.value
    if isinstance(level, str):
        name = level.lower()
        name = "warn" if name == "warning" else name
        if name in _host.LEVELS:
            return name
    raise ValueError(f"unknown log level {level!r}: use one of {', '.join(_host.LEVELS)}")


def log(level, message):
    """Appends one line to the job log (a `Level` or its name: "info", ...).
    Followers see it at once; the host bounds the log per job."""
    _host.active.log(_level_name(level), _host.safe_text(message))


def trace(message):
    """Logs at trace level."""
    log(Level.TRACE, message)


def debug(message):
    """Logs at debug level."""
    log(Level.DEBUG, message)


def info(message):
    """Logs at info level."""
    log(Level.INFO, message)


def warn(message):
    """Logs at warn level."""
    log(Level.WARN, message)


def error(message):
    """Logs at error level."""
    log(Level.ERROR, message)


def progress(percent, message=None):
    """Reports progress in percent; the host clamps it to 0..100 (NaN: 0) and
    keeps the last value, so call it as often as is useful."""
    _host.active.report_progress(float(percent), None if message is None else _host.safe_text(message))


def set_metadata(key, value):
    """Attaches `value`, encoded as JSON here, to the job under `key`.

    Raises `MetadataError` when the value is not JSON-serialisable or the host
    refuses it (key 1..128 bytes, value up to 64 KiB, 64 keys, 256 KiB in all).
    """
    try:
        text = json.dumps(value, allow_nan=False, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError) as e:
        raise MetadataError(f"metadata {key!r} is not JSON-serialisable: {_describe(e)}") from None
    refused = _host.active.set_metadata(_host.safe_text(key), _host.safe_text(text))
    if refused is not None:
        raise MetadataError(refused)


def is_cancelled():
    """True once someone asked to cancel this job. Check it in loops and
    raise (`JobError("cancelled")`) to stop early: an error raised after a
    cancel ends the job `cancelled`, a value returned ends it `completed`.
    A job that ignores the flag is stopped hard after the host's grace
    period, also `cancelled`."""
    return _host.active.is_cancelled()


def job_id():
    """The id of the job being run (a UUID string), the same on every attempt."""
    return _host.active.job_id()


def attempt():
    """Which attempt this is: 1 for the first run, 2 for the first retry, ..."""
    return _host.active.attempt()


def _describe(exc):
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _run(fn, args):
    """The whole path from the host's `run(args)` to its result: decode, call,
    encode. Returns (True, result JSON) or (False, error message) and never
    raises, except `MemoryError` (see the module docstring). `WitWorld.run`
    and `jobhost.testing.call` both use it, so tests see what the host sees."""
    try:
        value = json.loads(args)
    except (ValueError, TypeError) as e:
        return False, f"invalid args: {e}"
    try:
        result = fn(value)
    except JobError as e:
        return False, _host.safe_text(e.message)
    except MemoryError:
        raise
    except BaseException as e:  # SystemExit and KeyboardInterrupt too: a trap says less
        try:
            error(traceback.format_exc().rstrip("\n"))
        except Exception:
            pass
        return False, _host.safe_text(_describe(e))
    try:
        text = json.dumps(result, allow_nan=False, ensure_ascii=False, separators=(",", ":"))
        text.encode("utf-8")
    except (TypeError, ValueError, RecursionError) as e:
        return False, f"result is not serialisable: {_describe(e)}"
    return True, text


def job(fn):
    """Makes `fn` this component's job and returns it unchanged (so tests
    may call it directly with a dict).

    componentize-py looks for a class `WitWorld` in the module it is given;
    this sets one there, whose `run` goes through `_run`. Use it once, in the
    module you pass to the build.
    """
    if not callable(fn):
        raise TypeError("@job decorates a function taking the decoded args")
    module = sys.modules.get(getattr(fn, "__module__", None))
    if module is None:
        raise TypeError("@job: the function's module is not imported")
    existing = getattr(module, "WitWorld", None)
    previous = getattr(existing, "_jobhost_job", None)
    if previous is not None and previous.__qualname__ != fn.__qualname__:
        raise TypeError(
            f"@job used twice in {module.__name__}: {previous.__qualname__} and {fn.__qualname__}"
        )

    class WitWorld:
        """The `run` export of world `jobhost:plugin/job`."""

        _jobhost_job = fn

        def run(self, args):
            ok, text = _run(fn, args)
            if ok:
                return text
            raise _host._WitErr(text)

    module.WitWorld = WitWorld
    return fn
