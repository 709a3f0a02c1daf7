"""Native tests of tests.python-probe (the modes that end natively)."""
import os
import sys
import unittest

# The SDK from this repository (a scaffolded project has its own jobhost/).
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "sdk", "python"))

from jobhost.testing import MockContext, call  # noqa: E402

import app  # noqa: E402


class ProbeTest(unittest.TestCase):
    def test_ok(self):
        out = call(app.probe, {"mode": "ok"}, job_id="abc", attempt=3)
        self.assertEqual(out.result, {"job_id": "abc", "attempt": 3})
        self.assertEqual([lvl for lvl, _ in out.context.logs], ["trace", "debug", "info", "warn", "error"])
        self.assertEqual(out.context.progress, [(50.0, "half way")])
        self.assertEqual(out.context.metadata, {"probe": {"mode": "ok", "levels": 5}})

    def test_raise_is_the_error_and_the_traceback_is_logged(self):
        out = call(app.probe, {"mode": "raise"})
        self.assertEqual(out.error, "ValueError: probe failure")
        (traceback,) = out.context.messages("error")
        self.assertIn("Traceback (most recent call last)", traceback)
        self.assertIn('raise ValueError("probe failure")', traceback)

    def test_sleep_and_alloc_end_when_small(self):
        self.assertEqual(call(app.probe, {"mode": "sleep", "seconds": 0.01}).result, {"slept": 0.01})
        self.assertEqual(call(app.probe, {"mode": "alloc", "mib": 2}).result, {"mib": 2})

    def test_unknown_mode(self):
        self.assertEqual(call(app.probe, {"mode": "x"}).error,
                         "unknown mode 'x': use spin, sleep, alloc, raise or ok")


if __name__ == "__main__":
    unittest.main()
