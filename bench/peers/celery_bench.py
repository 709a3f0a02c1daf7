"""Celery side of scripts/bench-peers: runs each workload against the redis on
--port (broker and result backend) with a worker it starts and stops itself,
and prints one JSON line per figure on stdout (progress on stderr).

Usage: python celery_bench.py --port P --durability "redis 7.0.15, ..." [--quick]
"""

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int, required=True)
parser.add_argument("--durability", required=True)
parser.add_argument("--quick", action="store_true")
parser.add_argument("--skip-memory", metavar="WHY", help="report memory_per_waiting_job as null")
args = parser.parse_args()

HERE = os.path.dirname(os.path.abspath(__file__))
URL = f"redis://127.0.0.1:{args.port}/0"
os.environ["CELERY_BENCH_REDIS"] = URL
sys.path.insert(0, HERE)

import celery  # noqa: E402
import kombu  # noqa: E402
import redis  # noqa: E402
from celery import group  # noqa: E402

import celery_tasks  # noqa: E402
from celery_tasks import app  # noqa: E402

N = 1_000 if args.quick else 10_000
W = 10_000 if args.quick else 100_000
LATENCY_SECS = 1 if args.quick else 5
RATE = 1_000
CONCURRENCY = 50
TEXT = "the quick brown fox jumps over the lazy dog and then the dog sleeps " * 13
POOL = f"worker --pool threads --concurrency {CONCURRENCY}"
VERSION = f"{celery.__version__} (kombu {kombu.__version__}, redis-py {redis.__version__})"
DURABILITY = f"{args.durability}; {POOL}"
BACKEND = "broker and result backend on this redis"

r = redis.Redis.from_url(URL)


def emit(workload, value, unit, note):
    line = dict(system="Celery", version=VERSION, durability=DURABILITY,
                workload=workload, value=value, unit=unit, note=note)
    print(json.dumps(line), flush=True)


def log(msg):
    print(f"celery: {msg}", file=sys.stderr, flush=True)


def percentile(xs, p):
    """Nearest rank: p99 of 20 samples is the slowest one."""
    xs = sorted(xs)
    return xs[max(0, math.ceil(p / 100 * len(xs)) - 1)]


class Worker:
    """A worker on a freshly flushed redis, stopped (and its children) on exit."""

    running = None  # the one started last, for abort()

    def __enter__(self):
        r.flushall()
        # Threads, not prefork: 50 processes are heavy on 2 cores, and
        # threads are what Celery suggests for I/O-bound tasks.
        self.proc = subprocess.Popen(
            [sys.executable, "-W", "ignore:You're running the worker with superuser", "-m", "celery", "-A", "celery_tasks", "--quiet", "worker",
             "--pool", "threads", "--concurrency", str(CONCURRENCY), "--loglevel", "WARNING"],
            cwd=HERE, stdout=subprocess.DEVNULL, start_new_session=True)
        Worker.running = self.proc
        # Ready when it has run a warm-up round (this also warms the producer).
        try:
            wait_done([celery_tasks.noop.delay() for _ in range(200)], timeout=60)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc):
        os.killpg(self.proc.pid, signal.SIGTERM)  # warm shutdown
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def wait_done(results, timeout=600):
    """Waits for these tasks' results and returns when the last finished (its
    date_done in the backend). Polls the backend rather than result.get():
    app.backend is per thread, and results sent from producer threads are
    not seen by the main thread's pubsub."""
    pending = [app.backend.get_key_for_task(res.id) for res in results]
    done, deadline = 0.0, time.monotonic() + timeout
    while pending:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(pending)} of {len(results)} tasks not done")
        time.sleep(0.2)
        left = []
        for i in range(0, len(pending), 1_000):
            chunk = pending[i:i + 1_000]
            for key, raw in zip(chunk, r.mget(chunk)):
                if raw is None:
                    left.append(key)
                    continue
                meta = json.loads(raw)
                if meta["status"] != "SUCCESS":
                    raise RuntimeError(f"task failed: {meta}")
                at = datetime.fromisoformat(meta["date_done"])
                done = max(done, at.replace(tzinfo=at.tzinfo or timezone.utc).timestamp())
        pending = left
    return done


def one_by_one(task, argv, count):
    # 50 producer threads, each apply_async waiting for its own publish.
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        return list(pool.map(lambda _: task.apply_async(argv), range(count)))


def in_groups(task, argv, count):
    results = []
    for i in range(0, count, 1_000):
        results += group(task.s(*argv) for _ in range(min(1_000, count - i))).apply_async().results
    return results


def throughput(workload, enqueue, note):
    with Worker():
        start = time.time()
        results = enqueue()
        emit(workload, round(N / (wait_done(results) - start), 1), "jobs/s", note)


def latency():
    total = RATE * LATENCY_SECS
    with Worker():
        r.delete("bench:latency")
        # Paced on a 1,000/s schedule from one producer thread.
        start = time.perf_counter()
        results = []
        for k in range(total):
            wait = start + k / RATE - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            results.append(celery_tasks.latency.apply_async((time.time(),)))
        sent = time.time()
        rate = total / (time.perf_counter() - start)
        finished = wait_done(results)
        samples = [float(x) * 1000 for x in r.lrange("bench:latency", 0, -1)]
    # Past the worker's throughput this is queueing: say how far behind it was.
    note = (f"{total} tasks paced at {rate:.0f}/s by one producer thread, the last done "
            f"{finished - sent:.1f} s after the last sent; the task records time.time() "
            "minus the send time passed in its args")
    emit("latency_p50", round(percentile(samples, 50), 2), "ms", note)
    emit("latency_p99", round(percentile(samples, 99), 2), "ms", note)


def memory_per_waiting_job():
    r.flushall()
    before = r.info("memory")["used_memory"]
    # One producer, results ignored: the backend's per-task pubsub
    # subscriptions are the client's, not the waiting jobs' memory.
    with app.producer_or_acquire() as producer:
        for i in range(W):
            celery_tasks.noop.apply_async((i,), producer=producer, ignore_result=True)
    after = r.info("memory")["used_memory"]
    emit("memory_per_waiting_job", round((after - before) / W), "bytes",
         f"{W} waiting messages noop({{i}}), no worker; redis used_memory after minus before")


def main():
    log(f"version {VERSION}, {DURABILITY}, {'quick' if args.quick else 'full'}")
    throughput("noop_one_by_one", lambda: one_by_one(celery_tasks.noop, (), N),
               f"{N} tasks, apply_async from 50 threads; {BACKEND}")
    throughput("noop_bulk", lambda: in_groups(celery_tasks.noop, (), N),
               f"{N} tasks, group(...).apply_async() per 1,000 (Celery's bulk API; "
               f"it still publishes one message at a time); {BACKEND}")
    latency()
    throughput("wordcount", lambda: one_by_one(celery_tasks.wordcount, (TEXT,), N),
               f"{N} tasks of {len(TEXT)} bytes, top 3 words returned; apply_async from 50 threads; {BACKEND}")
    if args.skip_memory:
        emit("memory_per_waiting_job", None, "bytes", args.skip_memory)
    else:
        memory_per_waiting_job()
    for workload, why in [
        ("list_p99", "Celery has no API to list queued tasks (inspect() sees only what workers reserved)"),
        ("stats_p99", "Celery has no job counts (inspect().stats() reports worker counters)"),
        ("metrics_p99", "Celery has no metrics API (Flower would need a running event monitor)"),
    ]:
        emit(workload, None, "ms", why)
    r.flushall()


def abort(*_):
    # TERM from timeout(1) or the script's trap: kill the worker and leave at
    # once (a clean exit could wait on producer threads retrying a dead redis).
    if Worker.running and Worker.running.poll() is None:
        os.killpg(Worker.running.pid, signal.SIGKILL)
    os._exit(143)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, abort)
    signal.signal(signal.SIGINT, abort)
    main()
