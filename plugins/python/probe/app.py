"""`tests.python-probe`: exercises the host's limits and the SDK's error path
from a Python component, by `args.mode`:

- "spin": an endless loop, stopped by fuel;
- "sleep": sleeps `args.seconds` (default 3600), stopped by wall time;
- "alloc": allocates `args.mib` MiB (default 1024) and touches every page,
  stopped by the memory cap;
- "raise": an uncaught ValueError("probe failure"), which the SDK turns into
  the job's error;
- "ok": a log line at each level, progress 50, metadata, and {job_id, attempt}.
"""
import time

import jobhost
from jobhost import job


@job
def probe(args):
    mode = args.get("mode")
    if mode == "spin":
        jobhost.info("spinning")
        n = 0
        while True:
            n += 1
    if mode == "sleep":
        jobhost.info(f"sleeping {args.get('seconds', 3600)} s")
        time.sleep(float(args.get("seconds", 3600)))
        return {"slept": float(args.get("seconds", 3600))}
    if mode == "alloc":
        mib = int(args.get("mib", 1024))
        jobhost.info(f"allocating {mib} MiB")
        held = []
        for _ in range(mib):
            block = bytearray(1 << 20)
            for i in range(0, len(block), 4096):  # touch every page
                block[i] = 1
            held.append(block)
        return {"mib": len(held)}
    if mode == "raise":
        raise ValueError("probe failure")
    if mode == "ok":
        for level in jobhost.Level:
            jobhost.log(level, f"probe at {level.value}")
        jobhost.progress(50, "half way")
        jobhost.set_metadata("probe", {"mode": mode, "levels": 5})
        return {"job_id": jobhost.job_id(), "attempt": jobhost.attempt()}
    raise jobhost.JobError(f"unknown mode {mode!r}: use spin, sleep, alloc, raise or ok")
