"""`examples.python-wordcount`: counts the words of `args.text` (case-folded,
letters and digits only) and returns the `args.top` (10) most frequent, as
`examples.wordcount` does in Rust. Prints a summary (stdout lands in the job
log) and records metadata."""
import re
from collections import Counter

from jobhost import JobError, job, progress, set_metadata

WORD = re.compile(r"[^\W_]+")  # runs of letters and digits


@job
def wordcount(args):
    text = args.get("text") if isinstance(args, dict) else None
    top = args.get("top", 10) if isinstance(args, dict) else None
    if not isinstance(text, str):
        raise JobError("invalid args: `text` must be a string")
    if not isinstance(top, int) or isinstance(top, bool) or top < 0:
        raise JobError("invalid args: `top` must be a non-negative integer")
    counts = Counter(word.lower() for word in WORD.findall(text))
    total_words = sum(counts.values())
    distinct_words = len(counts)
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:top]
    print(f"{total_words} words, {distinct_words} distinct")
    set_metadata("distinct_words", distinct_words)
    progress(100)
    return {
        "total_words": total_words,
        "distinct_words": distinct_words,
        "top": [[word, count] for word, count in ranked],
    }
