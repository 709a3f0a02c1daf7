"""`examples.python-countdown`: runs for `args.seconds` in `args.steps` steps
(default one per 100 ms, at least one), logging and reporting progress at
each, and stops early with the error "cancelled" once the job is cancelled,
as `examples.sleep` does in Rust."""
import math
import time

from jobhost import JobError, attempt, info, is_cancelled, job, job_id, progress


@job
def countdown(args):
    seconds = args.get("seconds") if isinstance(args, dict) else None
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 <= seconds <= 86_400:
        raise JobError("invalid args: `seconds` must be a number between 0 and 86400")
    steps = args.get("steps")
    if steps is None:
        steps = max(1, math.ceil(seconds * 10))
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise JobError("invalid args: `steps` must be a positive integer")
    started = time.monotonic()
    for step in range(1, steps + 1):
        if is_cancelled():
            info(f"cancelled at step {step} of {steps}")
            raise JobError("cancelled")
        time.sleep(seconds / steps)
        left = seconds - seconds * step / steps
        info(f"step {step} of {steps}, {left:.1f} s left")
        progress(step * 100 / steps, f"step {step} of {steps}")
    return {
        "slept_ms": round((time.monotonic() - started) * 1000),
        "steps": steps,
        "job_id": job_id(),
        "attempt": attempt(),
    }
