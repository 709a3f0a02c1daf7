"""jobhost on 1, 2 and 3 hosts sharing one PostgreSQL database, beside one
host on its redb file: throughput and enqueue-to-start latency.

    python3 bench/hosts.py --jobhost target/release/jobhost --plugins DIR [--quick] \
        | python3 bench/peers/table.py

Starts a throwaway PostgreSQL cluster from the machine's binaries (initdb in a
temp dir, loopback, durable: fsync and synchronous_commit on; run as `nobody`
when root), a fresh database per run, and the hosts (`jobhost serve`, 16
slots each) on it. For each setup:

- throughput: one `wrk` per host posting hello jobs (48 keep-alive
  connections in all) for a few seconds, then a wait until every job has
  completed; jobs per second to the last completion, and the CPU time of
  the hosts and of the database per job;
- latency: hello jobs at a steady rate from an asyncio client whose
  connections go round the hosts: the time to each enqueue's answer, and
  from each job's enqueue to its start (`started_at - created_at`, the
  host's millisecond clock);
- bulk: batches of 500 jobs posted one after another, round the hosts:
  jobs acknowledged a second.

Prints JSON lines in the protocol of bench/peers/table.py, which makes them
a table with a column per setup.
"""

import argparse
import asyncio
import glob
import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "peers"))
import http_load  # noqa: E402  (steady, free_port, cpu_seconds, the token)

TOKEN = http_load.TOKEN
CONNECTIONS = 48
SLOTS = 16
RATE = 100
UNFINISHED = http_load.UNFINISHED


def pg_bindir():
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(p.split("/")[4]))
    if found:
        return os.path.dirname(found[-1])
    initdb = shutil.which("initdb")
    if not initdb:
        sys.exit("hosts.py: no PostgreSQL (install Debian's postgresql)")
    return os.path.dirname(os.path.realpath(initdb))


class Cluster:
    """A PostgreSQL server in a temp dir, on loopback, stopped by `stop`."""

    def __init__(self):
        self.bin = pg_bindir()
        self.dir = tempfile.mkdtemp(prefix="jobhost-bench-pg-", dir="/tmp")
        self.owner = None
        if os.geteuid() == 0:
            nobody = pwd.getpwnam("nobody")
            self.owner = (nobody.pw_uid, nobody.pw_gid)
            os.chown(self.dir, *self.owner)
        self.data = os.path.join(self.dir, "data")
        self.port = http_load.free_port()
        self.run("initdb", "-D", self.data, "-U", "postgres", "-A", "trust", "-E", "UTF8",
                 "--locale=C")
        self.run("pg_ctl", "-D", self.data, "-l", os.path.join(self.dir, "server.log"), "-w",
                 "-o", f"-h 127.0.0.1 -p {self.port} -k {self.dir} -c max_connections=200",
                 "start")

    def run(self, program, *args):
        def demote():
            if self.owner:
                os.setgid(self.owner[1])
                os.setuid(self.owner[0])
        subprocess.run([os.path.join(self.bin, program), *args], check=True,
                       stdout=subprocess.DEVNULL, preexec_fn=demote, cwd=self.dir)

    def database(self, name):
        self.run("psql", "-X", "-q", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                 "-d", "postgres", "-c", f"CREATE DATABASE {name}")
        return f"postgres://postgres@127.0.0.1:{self.port}/{name}"

    def cpu_seconds(self):
        """CPU time of the server: the postmaster, its live children, and
        the children it reaped (connections that ended)."""
        with open(os.path.join(self.data, "postmaster.pid")) as f:
            master = f.readline().strip()
        total = 0.0
        for stat in glob.glob("/proc/[0-9]*/stat"):
            try:
                with open(stat) as f:
                    pid, rest = f.read().split(" (", 1)
            except OSError:
                continue
            fields = rest.rsplit(")", 1)[1].split()
            if pid == master or fields[1] == master:
                total += int(fields[11]) + int(fields[12])
                if pid == master:
                    total += int(fields[13]) + int(fields[14])
        return total / os.sysconf("SC_CLK_TCK")

    def stop(self):
        self.run("pg_ctl", "-D", self.data, "-m", "fast", "-w", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)


def get(port, path):
    return http_load.get(f"http://127.0.0.1:{port}", path)


def start_hosts(args, count, tmp, backend):
    hosts = []
    for i in range(count):
        port = http_load.free_port()
        data = os.path.join(tmp, f"host-{i}")
        os.makedirs(data)
        server = http_load.serve(args.jobhost, port, data, args.plugins,
                                 ["--slots", str(SLOTS), "--worker", f"host-{i}", *backend])
        hosts.append((server, port))
    return hosts


def wait_done(port, queue):
    """The queue's counts once none of its jobs is left to run. A tenth of
    a second apart: on PostgreSQL the counts are a `GROUP BY` over the
    tenant's jobs, and asking often would load the database measured."""
    while True:
        counts = get(port, f"/v1/queues/{queue}")["counts"]
        if not any(counts.get(state, 0) for state in UNFINISHED):
            return counts
        time.sleep(0.1)


def start_delays(port, queue):
    """started_at - created_at (ms) of every job of `queue`."""
    delays, cursor = [], None
    while True:
        path = f"/v1/jobs?queue={queue}&per_page=1000"
        page = get(port, path + (f"&cursor={cursor}" if cursor else ""))
        delays += [job["started_at"] - job["created_at"] for job in page["jobs"]]
        cursor = page.get("next_cursor")
        if not cursor:
            return sorted(delays)


def bulk(ports, batches, size):
    """Jobs acknowledged a second when `batches` batches of `size` hello
    jobs are posted one after another, round the hosts."""
    jobs = [{"job": "examples.hello", "args": {"name": "bench"}, "queue": "bulk"}] * size
    body = json.dumps({"jobs": jobs}).encode()
    headers = {"Authorization": "Bearer " + TOKEN, "Content-Type": "application/json"}
    started = time.monotonic()
    for i in range(batches):
        url = f"http://127.0.0.1:{ports[i % len(ports)]}/v1/jobs/batch"
        request = urllib.request.Request(url, data=body, headers=headers)
        with urllib.request.urlopen(request, timeout=120) as response:
            results = json.load(response)["results"]
        if any(result["status"] != 202 for result in results):
            sys.exit(f"hosts.py: a batch was refused in part: {results[:3]}")
    return batches * size / (time.monotonic() - started)


def measure(args, setup, count, backend, cluster):
    seconds = 2 if args.quick else 5
    version = subprocess.run([args.jobhost, "--version"], capture_output=True, text=True,
                             check=True).stdout.split()[-1]

    def emit(workload, value, unit, note):
        print(json.dumps({"system": "jobhost", "version": version, "durability": setup,
                          "workload": workload, "value": round(value, 2), "unit": unit,
                          "note": note}), flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        hosts = start_hosts(args, count, tmp, backend)
        try:
            script = os.path.join(tmp, "post.lua")
            with open(script, "w") as f:
                f.write(http_load.POST_LUA)
            host_cpu = [http_load.cpu_seconds(server.pid)[0] for server, _ in hosts]
            db_cpu = cluster.cpu_seconds() if cluster else 0.0
            started = time.monotonic()
            wrks = [subprocess.Popen(
                ["wrk", "-t1", f"-c{CONNECTIONS // count}", f"-d{seconds}s", "-s", script,
                 f"http://127.0.0.1:{port}/v1/jobs"], stdout=subprocess.PIPE, text=True)
                for _, port in hosts]
            for wrk in wrks:
                out = wrk.communicate()[0]
                bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
                if wrk.returncode or bad:
                    sys.exit(f"hosts.py: wrk failed or enqueues were refused:\n{out}")
            sent = time.monotonic() - started
            counts = wait_done(hosts[0][1], "wrk")
            elapsed = time.monotonic() - started
            jobs = counts.get("completed", 0)
            if sum(v for k, v in counts.items() if k != "completed"):
                sys.exit(f"hosts.py: jobs not completed: {counts}")
            host_cpu = sum(http_load.cpu_seconds(server.pid)[0] for server, _ in hosts) \
                - sum(host_cpu)
            emit("noop_wrk", jobs / elapsed, "jobs/s",
                 f"hello jobs posted by one wrk per host ({CONNECTIONS} connections in all) "
                 f"for {seconds} s, to the last completion")
            emit("noop_wrk_enqueued", jobs / sent, "jobs/s",
                 "enqueues acknowledged a second while wrk posted")
            emit("host_cpu_per_job", host_cpu * 1e6 / max(jobs, 1), "us",
                 "CPU time of all the hosts per job run under wrk")
            if cluster:
                emit("database_cpu_per_job", (cluster.cpu_seconds() - db_cpu) * 1e6 / max(jobs, 1),
                     "us", "CPU time of the PostgreSQL server per job run under wrk")

            steady = 300 if args.quick else 1500
            took, late = asyncio.run(http_load.steady([port for _, port in hosts], steady,
                                                      rate=RATE, queue="lat"))
            wait_done(hosts[0][1], "lat")
            delays = start_delays(hosts[0][1], "lat")
            note = (f"{steady} hello jobs at {RATE}/s from an asyncio client, 30 connections "
                    f"round the hosts; {late} sends waited for a free connection")
            for p in (0.5, 0.99):
                emit(f"latency_ack_p{round(p * 100)}", took[round((len(took) - 1) * p)], "ms",
                     note + ": from when each was due to the enqueue's answer")
                emit(f"latency_start_p{round(p * 100)}", delays[round((len(delays) - 1) * p)],
                     "ms", note + ": from each job's enqueue to its start (host clock, ms)")

            batches = 4 if args.quick else 20
            emit("noop_bulk_enqueued", bulk([port for _, port in hosts], batches, 500), "jobs/s",
                 f"{batches} batches of 500 hello jobs (POST /v1/jobs/batch, a commit each) "
                 "posted one after another round the hosts: jobs acknowledged a second")
        finally:
            for server, _ in hosts:
                server.terminate()
            for server, _ in hosts:
                server.wait(timeout=60)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobhost", required=True, help="the jobhost binary")
    parser.add_argument("--plugins", required=True, help="the example plugins' folder")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--hosts", default="1,2,3", help="host counts on PostgreSQL")
    parser.add_argument("--no-redb", action="store_true", help="leave out the redb host")
    args = parser.parse_args()
    # A kill stops the cluster and the hosts too (through `finally`).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("hosts.py: terminated"))
    if not args.no_redb:
        measure(args, "redb, 1 host", 1, [], None)
    cluster = Cluster()
    try:
        for count in map(int, args.hosts.split(",")):
            url = cluster.database(f"bench_{count}_hosts")
            measure(args, f"PostgreSQL, {count} host{'s' * (count > 1)}", count,
                    ["--database-url", url], cluster)
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
