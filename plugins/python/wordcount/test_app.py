"""Native tests of examples.python-wordcount: `python3 -m unittest` here."""
import os
import sys
import unittest

# The SDK from this repository (a scaffolded project has its own jobhost/).
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "sdk", "python"))

from jobhost.testing import MockContext, call  # noqa: E402

import app  # noqa: E402


class WordcountTest(unittest.TestCase):
    def test_counts_and_ranks(self):
        out = call(app.wordcount, {"text": "The cat; the DOG, the cat!", "top": 2})
        self.assertEqual(out.result, {"total_words": 6, "distinct_words": 3, "top": [["the", 3], ["cat", 2]]})
        self.assertEqual(out.context.metadata, {"distinct_words": 3})
        self.assertEqual(out.context.last_progress, (100.0, None))

    def test_default_top_is_ten(self):
        words = " ".join(f"w{i}" for i in range(15))
        self.assertEqual(len(call(app.wordcount, {"text": words}).result["top"]), 10)

    def test_ties_sort_by_word(self):
        self.assertEqual(call(app.wordcount, {"text": "b a c a b"}).result["top"], [["a", 2], ["b", 2], ["c", 1]])

    def test_summary_is_printed(self):
        # print() goes to stdout natively, to the job log in a component.
        from contextlib import redirect_stdout
        from io import StringIO
        buf = StringIO()
        with redirect_stdout(buf):
            call(app.wordcount, '{"text": "one two two"}')
        self.assertEqual(buf.getvalue(), "3 words, 2 distinct\n")

    def test_missing_text_is_an_error(self):
        self.assertEqual(call(app.wordcount, {}).error, "invalid args: `text` must be a string")
        self.assertTrue(call(app.wordcount, "not json").error.startswith("invalid args: "))


if __name__ == "__main__":
    unittest.main()
