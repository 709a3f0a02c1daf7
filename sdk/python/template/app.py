"""`{{name}}`: a jobhost job in Python. Counts down `args.steps` (5) steps,
logging and reporting progress, and returns a greeting for `args.name`."""
import time

from jobhost import JobError, info, is_cancelled, job, progress


@job
def run(args):
    name = args.get("name", "world")
    steps = args.get("steps", 5)
    if not isinstance(steps, int) or steps < 1:
        raise JobError("invalid args: `steps` must be a positive integer")
    for step in range(1, steps + 1):
        if is_cancelled():
            raise JobError("cancelled")
        info(f"step {step} of {steps}")
        progress(step * 100 / steps, f"step {step} of {steps}")
        time.sleep(0.01)
    return {"message": f"Hello, {name}!", "steps": steps}
