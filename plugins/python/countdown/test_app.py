"""Native tests of examples.python-countdown: `python3 -m unittest` here."""
import os
import sys
import unittest

# The SDK from this repository (a scaffolded project has its own jobhost/).
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "sdk", "python"))

from jobhost.testing import MockContext, call  # noqa: E402

import app  # noqa: E402


class CountdownTest(unittest.TestCase):
    def test_runs_all_steps(self):
        out = call(app.countdown, {"seconds": 0.05, "steps": 5}, job_id="j-1", attempt=2)
        result = out.result
        self.assertEqual((result["steps"], result["job_id"], result["attempt"]), (5, "j-1", 2))
        self.assertGreaterEqual(result["slept_ms"], 40)
        self.assertEqual([p for p, _ in out.context.progress], [20.0, 40.0, 60.0, 80.0, 100.0])
        self.assertEqual(out.context.messages("info")[-1], "step 5 of 5, 0.0 s left")

    def test_stops_when_cancelled(self):
        with MockContext(cancel_after=2) as ctx:
            out = call(app.countdown, {"seconds": 0.04, "steps": 4})
        self.assertEqual(out.error, "cancelled")
        self.assertEqual(ctx.messages()[-1], "cancelled at step 3 of 4")
        self.assertEqual(len(ctx.progress), 2)
        self.assertEqual(ctx.messages("error"), [])  # a JobError logs no traceback

    def test_default_steps(self):
        self.assertEqual(call(app.countdown, {"seconds": 0.25}).result["steps"], 3)

    def test_bad_seconds(self):
        self.assertIn("seconds", call(app.countdown, {"seconds": -1}).error)
        self.assertIn("seconds", call(app.countdown, {"seconds": "1"}).error)


if __name__ == "__main__":
    unittest.main()
