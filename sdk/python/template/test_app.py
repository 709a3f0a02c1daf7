"""Native tests of `{{name}}`: `python3 -m unittest` (plain CPython, no host:
jobhost.testing stands in for it)."""
import unittest

from jobhost.testing import MockContext, call

import app


class AppTest(unittest.TestCase):
    def test_greets(self):
        out = call(app.run, {"name": "Ada", "steps": 2})
        self.assertEqual(out.result, {"message": "Hello, Ada!", "steps": 2})
        self.assertEqual(out.context.messages("info"), ["step 1 of 2", "step 2 of 2"])
        self.assertEqual(out.context.last_progress, (100.0, "step 2 of 2"))

    def test_bad_steps(self):
        self.assertIn("steps", call(app.run, {"steps": 0}).error)

    def test_stops_when_cancelled(self):
        with MockContext(cancel_after=1):
            self.assertEqual(call(app.run, {}).error, "cancelled")


if __name__ == "__main__":
    unittest.main()
