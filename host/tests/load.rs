//! Load, measured on the real `jobhost serve` binary from outside: a deep
//! queue (100,000 jobs in the full run), a thousand SSE followers of one
//! job, and a soak of steady enqueue and processing. Each checks what a
//! client would (every job stored and run, every follower served in full,
//! no error) and that the host's resident memory and open files stay flat,
//! read from /proc of the child. Each prints its figures.
//!
//! The CI run is short; `JOBHOST_LOAD_QUEUED`, `JOBHOST_LOAD_FOLLOWERS` and
//! `JOBHOST_SOAK_SECS` make it long (docs/RELIABILITY.md has the figures).

mod child;

use child::{Server, TOKEN};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

fn setting(name: &str, short: usize) -> usize {
    std::env::var(name).ok().and_then(|n| n.parse().ok()).unwrap_or(short)
}

/// Resident memory and open file descriptors of the child.
fn footprint(server: &Server) -> (u64, usize) {
    let pid = server.child.id();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count();
    (kib << 10, fds)
}

/// Raises this process's soft limit of open files to `needed` (within the
/// hard limit) with `prlimit`, so its followers and the child it starts,
/// which inherits the limit, have room; fails if the hard limit is lower.
fn allow_open_files(needed: u64) {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
    let line = limits.lines().find(|l| l.starts_with("Max open files")).unwrap();
    let figures: Vec<&str> = line.split_whitespace().skip(3).take(2).collect();
    let soft: u64 = figures[0].parse().unwrap_or(u64::MAX);
    let hard: u64 = figures[1].parse().unwrap_or(u64::MAX);
    assert!(hard >= needed, "the hard limit of open files ({hard}) is under the {needed} needed");
    if soft < needed {
        let pid = std::process::id().to_string();
        let status = std::process::Command::new("prlimit")
            .args(["--pid", &pid, &format!("--nofile={needed}:")])
            .status()
            .unwrap();
        assert!(status.success(), "raising the open-file limit to {needed}: {status}");
    }
}

fn mib(bytes: u64) -> u64 {
    bytes >> 20
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap()
}

async fn get(http: &reqwest::Client, server: &Server, path: &str) -> Value {
    let response = http.get(format!("{}{path}", server.base)).bearer_auth(TOKEN).send().await;
    let response = response.unwrap();
    assert!(response.status().is_success(), "GET {path}: {}", response.status());
    response.json().await.unwrap()
}

async fn post(http: &reqwest::Client, server: &Server, path: &str, body: Value) -> Value {
    let response = http.post(format!("{}{path}", server.base)).bearer_auth(TOKEN).json(&body);
    let response = response.send().await.unwrap();
    let status = response.status();
    let answer: Value = response.json().await.unwrap();
    assert!(status.is_success(), "POST {path}: {status} {answer}");
    answer
}

/// How many jobs of `queue` are in `state`.
async fn count(http: &reqwest::Client, server: &Server, queue: &str, state: &str) -> u64 {
    let page = get(http, server, &format!("/v1/jobs?queue={queue}&state={state}&per_page=1")).await;
    page["total"].as_u64().unwrap()
}

/// Polls `count` until it reaches `want`, within `limit`.
async fn wait_count(
    http: &reqwest::Client,
    server: &Server,
    (queue, state): (&str, &str),
    want: u64,
    limit: Duration,
) {
    let deadline = Instant::now() + limit;
    loop {
        let now = count(http, server, queue, state).await;
        if now == want {
            return;
        }
        assert!(Instant::now() < deadline, "{now} of {want} jobs {state} after {limit:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deep_queue_is_stored_listed_and_run_to_the_last_job() {
    let queued = setting("JOBHOST_LOAD_QUEUED", 20_000);
    let data = tempfile::tempdir().unwrap();
    let max = (queued * 2).to_string();
    let args = ["--tenant-max-queued", &max, "--slots", "16"];
    let server = tokio::task::block_in_place(|| Server::start(data.path(), &args));
    let http = client();
    post(&http, &server, "/v1/queues/deep/pause", json!({})).await;
    let started = Instant::now();
    for first in (0..queued).step_by(1_000) {
        let jobs: Vec<Value> = (first..queued.min(first + 1_000))
            .map(|i| json!({"job": "examples.hello", "queue": "deep", "args": {"name": format!("{i}")}}))
            .collect();
        let size = jobs.len();
        let answer = post(&http, &server, "/v1/jobs/batch", json!({ "jobs": jobs })).await;
        assert_eq!(answer["created"].as_u64(), Some(size as u64), "batch at {first}");
    }
    let enqueued = started.elapsed();
    assert_eq!(count(&http, &server, "deep", "pending").await, queued as u64);
    let read = Instant::now();
    let page = get(&http, &server, "/v1/jobs?queue=deep&per_page=50").await;
    let first_page = read.elapsed();
    assert_eq!(
        (page["total"].as_u64(), page["jobs"].as_array().unwrap().len()),
        (Some(queued as u64), 50)
    );
    let (memory_queued, fds_queued) = footprint(&server);

    let running = Instant::now();
    post(&http, &server, "/v1/queues/deep/resume", json!({})).await;
    let limit = Duration::from_secs(120 + queued as u64 / 100);
    wait_count(&http, &server, ("deep", "completed"), queued as u64, limit).await;
    let ran = running.elapsed();
    let (memory_done, fds_done) = footprint(&server);
    println!(
        "deep queue: {queued} jobs enqueued in {:.1} s ({:.0}/s), first page of 50 in {} ms, \
         all run in {:.1} s ({:.0} jobs/s); host memory {} MiB queued, {} MiB done; \
         open files {fds_queued} queued, {fds_done} done",
        enqueued.as_secs_f64(),
        queued as f64 / enqueued.as_secs_f64(),
        first_page.as_millis(),
        ran.as_secs_f64(),
        queued as f64 / ran.as_secs_f64(),
        mib(memory_queued),
        mib(memory_done),
    );
    assert!(fds_done <= fds_queued + 16, "open files grew from {fds_queued} to {fds_done}");
    tokio::task::block_in_place(|| server.stop());
}

/// Follows job `id` to its close event; returns how many log lines came.
async fn follow(http: reqwest::Client, base: String, id: String) -> usize {
    let url = format!("{base}/v1/jobs/{id}/events");
    let mut response = http.get(url).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    let (mut text, mut logs) = (String::new(), 0);
    while let Some(chunk) = response.chunk().await.unwrap() {
        text.push_str(&String::from_utf8_lossy(&chunk));
        let Some(end) = text.rfind("\n\n") else { continue };
        logs += text[..end].matches("event: log\n").count();
        if text[..end].contains("event: close\n") {
            return logs;
        }
        text.drain(..end + 2);
    }
    panic!("the stream ended without a close event")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_followers_of_one_job_each_get_the_whole_stream() {
    let followers = setting("JOBHOST_LOAD_FOLLOWERS", 1_000);
    allow_open_files(2 * followers as u64 + 256);
    let data = tempfile::tempdir().unwrap();
    let server = tokio::task::block_in_place(|| Server::start(data.path(), &[]));
    let http = client();
    let (memory_before, fds_before) = footprint(&server);
    let steps = 20;
    let sleep = json!({"job": "examples.sleep", "args": {"seconds": 4, "steps": steps}});
    let id = post(&http, &server, "/v1/jobs", sleep).await["id"].as_str().unwrap().to_string();
    let started = Instant::now();
    // One connection per follower, as a thousand separate clients would have.
    let streams: Vec<_> = (0..followers)
        .map(|_| {
            let http = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
            tokio::spawn(follow(http, server.base.clone(), id.clone()))
        })
        .collect();
    let mut peak = (0, 0);
    while !streams.iter().all(|stream| stream.is_finished()) {
        let (memory, fds) = footprint(&server);
        peak = (peak.0.max(memory), peak.1.max(fds));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for stream in streams {
        assert_eq!(stream.await.unwrap(), steps, "a follower missed log lines");
    }
    let served = started.elapsed();
    let stats = get(&http, &server, "/v1/stats").await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let (memory_after, fds_after) = loop {
        let (memory, fds) = footprint(&server);
        if fds <= fds_before + 8 {
            break (memory, fds);
        }
        assert!(Instant::now() < deadline, "open files stayed at {fds}, from {fds_before}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    println!(
        "followers: {followers} got all {steps} log lines and the close of a 4 s job, all done \
         {:.1} s after it started; host memory {} MiB before, {} MiB peak, {} MiB after; \
         open files {fds_before} before, {} peak, {fds_after} after",
        served.as_secs_f64(),
        mib(memory_before),
        mib(peak.0),
        mib(memory_after),
        peak.1,
    );
    assert_eq!(stats["host"]["open_streams"], 0, "{stats}");
    tokio::task::block_in_place(|| server.stop());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_soak_of_steady_work_keeps_memory_and_open_files_flat() {
    let seconds = setting("JOBHOST_SOAK_SECS", 30) as u64;
    let data = tempfile::tempdir().unwrap();
    // Finished jobs are pruned, as on a long-running host (after a third of
    // the run, at most a minute), so from then on the data held stays the
    // same size and memory can stay flat.
    let keep = (seconds / 3).clamp(5, 60).to_string();
    let args = ["--retention-s", &keep, "--prune-every-s", "2", "--slots", "8"];
    let server = tokio::task::block_in_place(|| Server::start(data.path(), &args));
    let http = client();
    let started = Instant::now();
    let (mut sent, mut samples) = (0u64, Vec::new());
    let mut next_sample = Instant::now();
    while started.elapsed() < Duration::from_secs(seconds) {
        let body = match sent % 10 {
            0 => json!({"job": "examples.fail", "args": {"message": "expected"}, "queue": "soak"}),
            1..=3 => {
                json!({"job": "examples.sleep", "args": {"seconds": 0.05, "steps": 5}, "queue": "soak"})
            }
            _ => {
                json!({"job": "examples.hello", "args": {"name": format!("{sent}")}, "queue": "soak"})
            }
        };
        post(&http, &server, "/v1/jobs", body).await;
        sent += 1;
        if Instant::now() >= next_sample {
            samples.push(footprint(&server));
            next_sample += Duration::from_secs(1);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let limit = Duration::from_secs(120);
    wait_count(&http, &server, ("soak", "pending"), 0, limit).await;
    wait_count(&http, &server, ("soak", "running"), 0, limit).await;
    // Only the jobs meant to fail failed (of those not pruned yet).
    for job in ["examples.hello", "examples.sleep"] {
        let path = format!("/v1/jobs?queue=soak&job={job}&state=failed&per_page=1");
        let failed = get(&http, &server, &path).await;
        assert_eq!(failed["total"], 0, "{job}: {failed}");
    }

    // Memory and open files after the first fifth (warm-up: caches, pools,
    // the connection) against the last fifth.
    let fifth = (samples.len() / 5).max(1);
    let warm = &samples[fifth..2 * fifth];
    let last = &samples[samples.len() - fifth..];
    let mean = |part: &[(u64, usize)]| part.iter().map(|s| s.0).sum::<u64>() / part.len() as u64;
    let (warm_memory, last_memory) = (mean(warm), mean(last));
    let warm_fds = warm.iter().map(|s| s.1).max().unwrap();
    let last_fds = last.iter().map(|s| s.1).max().unwrap();
    println!(
        "soak: {seconds} s, {sent} jobs ({:.0}/s, a tenth meant to fail), no error; host memory \
         {} MiB warm, {} MiB at the end; open files {warm_fds} warm, {last_fds} at the end",
        sent as f64 / seconds as f64,
        mib(warm_memory),
        mib(last_memory),
    );
    assert!(
        last_memory <= warm_memory + warm_memory / 2 + (16 << 20),
        "host memory grew from {} MiB to {} MiB",
        mib(warm_memory),
        mib(last_memory)
    );
    assert!(last_fds <= warm_fds + 8, "open files grew from {warm_fds} to {last_fds}");
    tokio::task::block_in_place(|| server.stop());
}
