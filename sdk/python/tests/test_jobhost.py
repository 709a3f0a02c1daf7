"""Native tests of the SDK itself: `python3 -m unittest discover tests` from sdk/python."""
import io
import os
import sys
import unittest
from contextlib import redirect_stderr

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import jobhost  # noqa: E402
from jobhost import JobError, MetadataError, job  # noqa: E402
from jobhost.testing import MockContext, call  # noqa: E402


@job
def echo(args):
    if isinstance(args, dict) and "raise" in args:
        kind = args["raise"]
        if kind == "job":
            raise JobError("nope")
        if kind == "exit":
            sys.exit(3)
        raise KeyError(kind)
    if isinstance(args, dict) and "return" in args:
        return {"set": {1}, "nan": float("nan"), "surrogate": "\ud800"}[args["return"]]
    return args


class WrapperTest(unittest.TestCase):
    def test_round_trip_is_compact_json(self):
        out = call(echo, '{"a": [1, 2.5, "é"], "b": null}')
        self.assertEqual(out.output, '{"a":[1,2.5,"é"],"b":null}')
        self.assertEqual(call(echo, [1, 2]).result, [1, 2])

    def test_invalid_args_name_the_problem(self):
        self.assertEqual(call(echo, "{").error,
                         "invalid args: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)")

    def test_exceptions_become_errors_with_a_logged_traceback(self):
        out = call(echo, {"raise": "text"})
        self.assertEqual(out.error, "KeyError: 'text'")
        self.assertIn("Traceback", out.context.messages("error")[0])
        self.assertEqual(call(echo, {"raise": "exit"}).error, "SystemExit: 3")

    def test_job_error_is_the_message_only(self):
        out = call(echo, {"raise": "job"})
        self.assertEqual(out.error, "nope")
        self.assertEqual(out.context.logs, [])

    def test_unserialisable_results(self):
        self.assertEqual(call(echo, {"return": "set"}).error,
                         "result is not serialisable: TypeError: Object of type set is not JSON serializable")
        self.assertIn("not serialisable", call(echo, {"return": "nan"}).error)
        self.assertIn("not serialisable", call(echo, {"return": "surrogate"}).error)

    def test_world_class_is_set_once(self):
        self.assertIs(sys.modules[__name__].WitWorld._jobhost_job, echo)
        with self.assertRaises(TypeError):
            job(lambda args: args)  # a second, different job in this module


class ContextTest(unittest.TestCase):
    def test_mock_records(self):
        with MockContext(job_id="j", attempt=2) as ctx:
            jobhost.log("warning", "w")
            jobhost.trace("t")
            jobhost.progress(150, "over")
            jobhost.progress(float("nan"))
            jobhost.set_metadata("k", {"v": [1]})
            self.assertEqual((jobhost.job_id(), jobhost.attempt()), ("j", 2))
        self.assertEqual(ctx.logs, [("warn", "w"), ("trace", "t")])
        self.assertEqual(ctx.progress, [(100.0, "over"), (0.0, None)])
        self.assertEqual(ctx.metadata, {"k": {"v": [1]}})

    def test_metadata_refusals_raise(self):
        with MockContext():
            with self.assertRaisesRegex(MetadataError, "over the 65536-byte limit"):
                jobhost.set_metadata("big", "x" * 70000)
            with self.assertRaisesRegex(MetadataError, "not JSON-serialisable"):
                jobhost.set_metadata("set", {1})
            with self.assertRaisesRegex(MetadataError, "key must be 1 to 128"):
                jobhost.set_metadata("", 1)

    def test_cancel_after(self):
        with MockContext(cancel_after=2) as ctx:
            self.assertEqual([jobhost.is_cancelled() for _ in range(4)], [False, False, True, True])
        self.assertEqual(ctx.checks, 4)

    def test_unknown_level(self):
        with self.assertRaises(ValueError):
            jobhost.log("loud", "x")

    def test_without_a_mock_calls_work(self):
        err = io.StringIO()
        with redirect_stderr(err):
            jobhost.info("hi")
            jobhost.progress(10)
            jobhost.set_metadata("k", 1)
            self.assertFalse(jobhost.is_cancelled())
            self.assertEqual(jobhost.attempt(), 1)
            self.assertTrue(jobhost.job_id())
        self.assertEqual(err.getvalue(), "[info] hi\n[progress] 10%\n[metadata] k = 1\n")


if __name__ == "__main__":
    unittest.main()
