"""jobhost under an outside HTTP load: `jobhost serve` (release build, durable
commits, the example plugins) on 127.0.0.1 in a temp dir, 50 keep-alive `wrk`
connections posting hello jobs for a few seconds, then a wait until every
job they enqueued has completed. A C client leaves the host most of the two
cores, which an in-process Rust or Node client does not. Then hello jobs at a
steady 1,000 a second from an asyncio client on 30 keep-alive connections:
the time to each enqueue's answer, which comes after the commit that also
claimed the job (it is running when the client hears of it), and the
commits' mean time applying and syncing. Also the host's CPU time per job
under wrk, and its writer thread's (every commit goes through that one
thread, so it bounds durable throughput). Prints JSON lines in the
protocol of table.py.

    python3 bench/peers/http_load.py --jobhost target/release/jobhost [--quick]

With `--database-url URL` the host stores in that PostgreSQL database
instead (which should be empty: the counts are read per queue); it has no
writer thread, so that figure is left out.
"""

import argparse
import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

TOKEN = "bench-admin-secret-0123456789abcdef"
CONNECTIONS = 50
UNFINISHED = ("blocked", "scheduled", "pending", "running")
POST_LUA = """
wrk.method = "POST"
wrk.body = '{"job":"examples.hello","args":{"name":"bench"},"queue":"wrk"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %s"
""" % TOKEN


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def steady(ports, count, rate=1000, connections=30, queue="default"):
    """Ack times (ms) of `count` enqueues due at `rate` a second, each timed
    from when it was due: when every connection is busy (the host fell
    behind) a send waits for one, and that wait counts in its time, so a
    backlog shows in the figures instead of hiding. Also how many waited.
    The connections go round the hosts listening on `ports`."""
    body = json.dumps({"job": "examples.hello", "args": {"name": "bench"},
                       "queue": queue}).encode()
    request = (b"POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\n"
               b"Content-Type: application/json\r\nAuthorization: Bearer " + TOKEN.encode() +
               b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    idle = [await asyncio.open_connection("127.0.0.1", ports[i % len(ports)])
            for i in range(connections)]
    freed = asyncio.Event()
    took, tasks, late = [], [], 0

    async def send(conn, due):
        reader, writer = conn
        writer.write(request)
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 202"):
            raise SystemExit(f"http_load.py: enqueue refused: {head[:80]!r}")
        length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length"))
        await reader.readexactly(length)
        took.append((time.perf_counter() - due) * 1e3)
        idle.append(conn)
        freed.set()

    start = time.perf_counter()
    for i in range(count):
        due = start + i / rate
        wait = due - time.perf_counter()
        if wait > 0:
            await asyncio.sleep(wait)
        late += not idle
        while not idle:
            freed.clear()
            await freed.wait()
        # The longest idle first, so none idles past the host's 10 s
        # keep-alive limit (its header timeout) at a slow rate.
        tasks.append(asyncio.create_task(send(idle.pop(0), due)))
    await asyncio.gather(*tasks)
    for _, writer in idle:
        writer.close()
    return sorted(took), late


def writer_task(pid):
    """The /proc folder of the writer thread of process `pid`, the one
    thread every commit goes through (None when it has none)."""
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/comm") as f:
            if f.read().strip() == "jobhost-writer":
                return f"/proc/{pid}/task/{task}"
    return None


def cpu_seconds(pid):
    """CPU time (user + system) of process `pid` and of its writer thread."""
    def read(stat):
        with open(stat) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    writer = writer_task(pid)
    return read(f"/proc/{pid}/stat"), read(f"{writer}/stat") if writer else 0.0


def writer_writes(pid):
    """Write system calls the writer thread of process `pid` made: one per
    journal frame, and one per dirty page of a checkpoint."""
    with open(f"{writer_task(pid)}/io") as f:
        return int(next(line.split()[1] for line in f if line.startswith("syscw:")))


def commit_parts(version, before, after, writes):
    """Where the steady phase's commits spent their time, from the host's
    storage counters: applying the writes on the writer thread, and making
    them durable (the journal's write and sync, or a checkpoint). Each enqueue's answer waits
    for one commit, so these are most of its latency."""
    commits = max(after["commits_total"] - before["commits_total"], 1)
    note = "mean per commit at the steady 1,000/s, from the host's storage counters"
    for part in ("apply", "sync"):
        name = f"commit_{part}_microseconds_total"
        emit(version, f"commit_{part}_mean", (after[name] - before[name]) / 1000 / commits,
             "ms", note)
    emit(version, "commit_writes_mean", writes / commits, "writes",
         "write calls of the writer thread per commit at the steady 1,000/s: the journal "
         "frame, and a checkpoint's page writes (each in its own place on disk) spread over "
         "the commits between checkpoints")
    if "checkpoints_total" in after:
        checkpoints = after["checkpoints_total"] - before["checkpoints_total"]
        took = after["checkpoint_microseconds_total"] - before["checkpoint_microseconds_total"]
        emit(version, "checkpoint_mean", took / 1000 / max(checkpoints, 1), "ms",
             f"mean of the {checkpoints} checkpoints at the steady 1,000/s (commits made "
             "durable in the file itself; the rest are synced in the journal)")


def get(base, path):
    request = urllib.request.Request(base + path, headers={"Authorization": "Bearer " + TOKEN})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def serve(jobhost, port, data, plugins, extra):
    """`jobhost serve` on 127.0.0.1:`port` with its data (and log) in
    `data`, once it answers."""
    log = os.path.join(data, "serve.log")
    server = subprocess.Popen(
        [jobhost, "serve", "--listen", f"127.0.0.1:{port}", "--data", data,
         "--plugins", plugins, "--tenant-max-queued", "2000000", "--admin-token", TOKEN,
         *extra],
        stdout=subprocess.DEVNULL, stderr=open(log, "w"))
    for _ in range(300):
        try:
            get(f"http://127.0.0.1:{port}", "/v1/stats")
            return server
        except OSError:
            time.sleep(0.1)
    server.kill()
    sys.exit(f"{sys.argv[0]}: the host did not start: " + open(log).read()[-2000:])


DURABILITY = "redb, fsync per commit (group commit, journaled)"


def emit(version, workload, value, unit, note):
    print(json.dumps({
        "system": "jobhost",
        "version": version,
        "durability": DURABILITY,
        "workload": workload,
        "value": round(value, 2),
        "unit": unit,
        "note": note,
    }), flush=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobhost", required=True, help="the jobhost binary")
    parser.add_argument("--plugins", required=True, help="the example plugins' folder")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--database-url", help="a PostgreSQL database to store in")
    args = parser.parse_args()
    backend = []
    if args.database_url:
        global DURABILITY
        DURABILITY = "PostgreSQL, synchronous_commit on, a commit per operation"
        backend = ["--database-url", args.database_url]
    seconds = 2 if args.quick else 5
    version = subprocess.run([args.jobhost, "--version"], capture_output=True, text=True,
                             check=True).stdout.split()[-1]
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        server = serve(args.jobhost, port, tmp, args.plugins,
                       ["--slots", str(CONNECTIONS), *backend])
        try:
            script = os.path.join(tmp, "post.lua")
            with open(script, "w") as f:
                f.write(POST_LUA)
            cpu_before = cpu_seconds(server.pid)
            started = time.monotonic()
            wrk = subprocess.run(
                ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", "-s", script, base + "/v1/jobs"],
                capture_output=True, text=True, check=True).stdout
            sent = time.monotonic() - started
            bad = re.search(r"Non-2xx or 3xx responses: (\d+)", wrk)
            if bad:
                sys.exit(f"http_load.py: {bad.group(1)} enqueues refused:\n{wrk}")
            # wrk may stop with requests in flight that the host still took,
            # so the count is the host's: wait until none is left to run.
            while True:
                counts = get(base, "/v1/queues/wrk")["counts"]
                if not any(counts.get(state, 0) for state in UNFINISHED):
                    break
                time.sleep(0.005)
            elapsed = time.monotonic() - started
            cpu_after = cpu_seconds(server.pid)
            jobs = counts.get("completed", 0)
            failed = sum(v for k, v in counts.items() if k != "completed")
            if failed:
                sys.exit(f"http_load.py: jobs not completed: {counts}")
            note = (f"{jobs} examples.hello jobs posted by wrk ({CONNECTIONS} keep-alive "
                    f"connections, one thread) for {seconds} s, to the last completion")
            emit(version, "noop_wrk_enqueued", jobs / sent, "jobs/s",
                 f"enqueues acknowledged a second while wrk posted ({CONNECTIONS} connections)")
            emit(version, "noop_wrk", jobs / elapsed, "jobs/s", note)
            host_cpu, writer_cpu = (after - before for after, before in zip(cpu_after, cpu_before))
            note = "CPU time of the host process, and of its writer thread, per job run under wrk"
            emit(version, "host_cpu_per_job", host_cpu * 1e6 / max(jobs, 1), "us", note)
            if not args.database_url:
                emit(version, "writer_cpu_per_job", writer_cpu * 1e6 / max(jobs, 1), "us", note)
            count = 1000 if args.quick else 5000
            storage_before = get(base, "/v1/stats")["host"]["storage"]
            writes_before = 0 if args.database_url else writer_writes(server.pid)
            took, late = asyncio.run(steady([port], count))
            note = (f"{count} hello jobs at 1,000/s from an asyncio client (30 connections): "
                    "from when each was due to the enqueue's answer, sent after the commit "
                    f"that claimed the job; {late} waited for a free connection")
            for p in (0.5, 0.99):
                emit(version, f"latency_ack_p{round(p * 100)}", took[round((len(took) - 1) * p)],
                     "ms", note)
            if not args.database_url:
                writes = writer_writes(server.pid) - writes_before
                commit_parts(version, storage_before, get(base, "/v1/stats")["host"]["storage"],
                             writes)
        finally:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
