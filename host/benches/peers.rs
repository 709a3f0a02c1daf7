//! jobhost's side of the peer benchmark (`scripts/bench-peers` runs it
//! beside BullMQ and Celery and prints one table): the real server on
//! 127.0.0.1 with durable commits, driven over HTTP by clients in the same
//! process, as BullMQ's producer and worker share one Node process. Prints
//! one JSON line per figure (the protocol of `bench/peers/table.py`).
//!
//! `cargo bench --workspace --bench peers [-- --quick]`

mod memory;

use jobhost::config::Config;
use jobhost::events::JobUpdate;
use jobhost::host::Host;
use jobhost::jobs::JobState;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The allocator `jobhost serve` runs with (host/src/main.rs).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const TOKEN: &str = "bench-admin-secret-0123456789abcdef";
const CLIENTS: usize = 50;
const CHUNK: usize = 1_000;
/// About 900 bytes, the text every system's wordcount job counts.
const PHRASE: &str = "the quick brown fox jumps over the lazy dog and then the dog sleeps ";

/// How much each workload does: the full run or the quick one CI makes.
struct Sizes {
    jobs: usize,
    latency_for: Duration,
    waiting: usize,
    stored: usize,
}

fn main() -> anyhow::Result<()> {
    let quick = std::env::args().any(|arg| arg == "--quick");
    let sizes = if quick {
        Sizes { jobs: 1_000, latency_for: Duration::from_secs(1), waiting: 10_000, stored: 10_000 }
    } else {
        Sizes {
            jobs: 10_000,
            latency_for: Duration::from_secs(5),
            waiting: 100_000,
            stored: 1_000_000,
        }
    };
    let tokio = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    tokio.block_on(async {
        let dir = tempfile::tempdir()?;
        let config = Config {
            listen: "127.0.0.1:0".into(),
            data: dir.path().to_path_buf(),
            plugins: vec![jobhost_plugin_artifacts::EXAMPLES_DIR.into()],
            admin_token: Some(TOKEN.into()),
            slots: CLIENTS,
            tenant_max_queued: 2_000_000,
            ..Config::default()
        };
        let host = Host::start(config).await?;
        let bench = Bench { base: format!("http://{}", host.addr()), http: reqwest::Client::new() };
        one_by_one(&bench, &sizes).await?;
        bulk(&bench, "noop_bulk", "noop-bulk", hello(), sizes.jobs).await?;
        latency(&bench, &host, sizes.latency_for).await?;
        let text = PHRASE.repeat(13);
        let wordcount = json!({"job": "examples.wordcount", "args": {"text": text, "top": 3}});
        bulk(&bench, "wordcount", "wordcount", wordcount, sizes.jobs).await?;
        memory(&bench, sizes.waiting).await?;
        reads(&bench, sizes.stored).await?;
        host.stop().await
    })
}

fn hello() -> Value {
    json!({"job": "examples.hello", "args": {"name": "bench"}})
}

/// Prints one figure.
fn emit(workload: &str, value: f64, unit: &str, note: &str) {
    let line = json!({
        "system": "jobhost",
        "version": env!("CARGO_PKG_VERSION"),
        "durability": "redb, fsync per commit (group commit, journaled)",
        "workload": workload,
        "value": (value * 100.0).round() / 100.0,
        "unit": unit,
        "note": note,
    });
    println!("{line}");
}

struct Bench {
    base: String,
    http: reqwest::Client,
}

impl Bench {
    async fn send(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> Value {
        let mut request =
            self.http.request(method, format!("{}{path}", self.base)).bearer_auth(TOKEN);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.expect("the host answers");
        let status = response.status();
        let text = response.text().await.expect("an answer");
        assert!(status.is_success(), "{path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    }

    async fn get(&self, path: &str) -> Value {
        self.send(reqwest::Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: &Value) -> Value {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }

    /// A storage counter of `/v1/stats`.
    async fn counter(&self, name: &str) -> u64 {
        self.get("/v1/stats").await["host"]["storage"][name].as_u64().unwrap_or(0)
    }

    /// Waits until `queue` has `count` jobs completed.
    async fn completed(&self, queue: &str, count: usize) {
        loop {
            let done = self.get(&format!("/v1/queues/{queue}")).await["counts"]["completed"]
                .as_u64()
                .unwrap_or(0);
            if done as usize >= count {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Enqueues `count` of `job` into `queue` in batches of [`CHUNK`].
    async fn batches(&self, queue: &str, job: &Value, count: usize) {
        let mut left = count;
        while left > 0 {
            let size = left.min(CHUNK);
            let mut item = job.clone();
            item["queue"] = json!(queue);
            let answer = self.post("/v1/jobs/batch", &json!({"jobs": vec![item; size]})).await;
            assert_eq!(answer["created"], size, "{answer}");
            left -= size;
        }
    }
}

/// `jobs` hello jobs, each its own `POST /v1/jobs`, [`CLIENTS`] in flight,
/// from the first request to the last completion; and what they cost the
/// storage in writes and commits.
async fn one_by_one(bench: &Bench, sizes: &Sizes) -> anyhow::Result<()> {
    let (writes, commits) =
        (bench.counter("writes_total").await, bench.counter("commits_total").await);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..CLIENTS {
        let (next, jobs) = (next.clone(), sizes.jobs);
        let (http, url) = (bench.http.clone(), format!("{}/v1/jobs", bench.base));
        clients.spawn(async move {
            let mut body = hello();
            body["queue"] = json!("noop-one");
            while next.fetch_add(1, Ordering::Relaxed) < jobs {
                let response = http.post(&url).bearer_auth(TOKEN).json(&body).send().await?;
                anyhow::ensure!(response.status() == 202, "enqueue: {}", response.status());
                response.bytes().await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(client) = clients.join_next().await {
        client??;
    }
    bench.completed("noop-one", sizes.jobs).await;
    let elapsed = started.elapsed().as_secs_f64();
    let jobs = sizes.jobs as f64;
    emit("noop_one_by_one", jobs / elapsed, "jobs/s", "examples.hello, 50 HTTP clients, 50 slots");
    let writes = (bench.counter("writes_total").await - writes) as f64 / jobs;
    let commits = (bench.counter("commits_total").await - commits) as f64 / jobs;
    emit("writes_per_job", writes, "writes", "storage writes (enqueue, claim, output, finish)");
    emit("commits_per_job", commits, "commits", "fsyncs per job: the group commit shares them");
    Ok(())
}

/// `count` of `job` enqueued by `POST /v1/jobs/batch`, to the last completion.
async fn bulk(
    bench: &Bench,
    workload: &str,
    queue: &str,
    job: Value,
    count: usize,
) -> anyhow::Result<()> {
    let started = Instant::now();
    bench.batches(queue, &job, count).await;
    bench.completed(queue, count).await;
    let rate = count as f64 / started.elapsed().as_secs_f64();
    emit(workload, rate, "jobs/s", "POST /v1/jobs/batch of 1,000, 50 slots");
    Ok(())
}

/// Hello jobs at a steady 1,000 a second for `length`: from sending each
/// `POST /v1/jobs` to its `running` event.
async fn latency(bench: &Bench, host: &Host, length: Duration) -> anyhow::Result<()> {
    let mut updates = host.bus().subscribe();
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let watcher = tokio::spawn(async move {
        let mut started = HashMap::new();
        loop {
            tokio::select! {
                _ = &mut stopped => return started,
                event = updates.recv() => match event {
                    Ok(event) if matches!(event.update, JobUpdate::State { state: JobState::Running, .. }) => {
                        started.insert(event.job, Instant::now());
                    }
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return started,
                },
            }
        }
    });
    let mut ticks = tokio::time::interval(Duration::from_millis(1));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut sends = tokio::task::JoinSet::new();
    let until = Instant::now() + length;
    while Instant::now() < until {
        ticks.tick().await;
        let (http, url) = (bench.http.clone(), format!("{}/v1/jobs", bench.base));
        sends.spawn(async move {
            let sent = Instant::now();
            let response = http.post(&url).bearer_auth(TOKEN).json(&hello()).send().await?;
            let job: Value = response.json().await?;
            let id: uuid::Uuid = job["id"].as_str().unwrap_or_default().parse()?;
            anyhow::Ok((id, sent))
        });
    }
    let mut sent = Vec::new();
    while let Some(send) = sends.join_next().await {
        sent.push(send??);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = stop.send(());
    let started = watcher.await?;
    let samples =
        sent.iter().filter_map(|(id, at)| Some(started.get(id)?.duration_since(*at))).collect();
    report_latency(samples, sent.len());
    Ok(())
}

/// The percentiles of `samples` (of `sent` jobs: a sample the bus dropped
/// is left out, and the note says how many there are).
fn report_latency(mut samples: Vec<Duration>, sent: usize) {
    samples.sort();
    let pick = |p: f64| {
        samples
            .get(((samples.len().max(1) - 1) as f64 * p).round() as usize)
            .map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
    };
    let note = format!(
        "{} of {sent} hello jobs at 1,000/s over HTTP: from the send to the running event",
        samples.len()
    );
    emit("latency_p50", pick(0.5), "ms", &note);
    emit("latency_p99", pick(0.99), "ms", &note);
}

/// Host memory per waiting job: `count` jobs in a paused queue.
async fn memory(bench: &Bench, count: usize) -> anyhow::Result<()> {
    bench.post("/v1/queues/parked/pause", &json!({})).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = memory::rss_bytes();
    bench.batches("parked", &hello(), count).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let per_job = memory::rss_bytes().saturating_sub(before) as f64 / count as f64;
    let note = format!("RSS growth of the host process over {count} jobs in a paused queue");
    emit("memory_per_waiting_job", per_job, "bytes", &note);
    Ok(())
}

/// p99 of 20 calls of each read with `stored` more jobs stored.
async fn reads(bench: &Bench, stored: usize) -> anyhow::Result<()> {
    bench.post("/v1/queues/stored/pause", &json!({})).await;
    bench.batches("stored", &hello(), stored).await;
    let total = bench.get("/v1/jobs?per_page=1").await["total"].as_u64().unwrap_or(0);
    let note = format!("{total} jobs stored");
    let first = bench.get("/v1/jobs?per_page=20").await;
    let cursor = first["next_cursor"].as_str().unwrap_or_default().to_string();
    let reads = [
        ("list_p99", "/v1/jobs?per_page=20".to_string()),
        ("list_filtered_p99", "/v1/jobs?per_page=20&state=pending&queue=stored".into()),
        ("list_next_page_p99", format!("/v1/jobs?per_page=20&cursor={cursor}")),
        ("stats_p99", "/v1/stats".into()),
        ("queues_p99", "/v1/queues".into()),
        ("metrics_p99", "/metrics".into()),
    ];
    for (workload, path) in reads {
        let mut took = Vec::new();
        for _ in 0..20 {
            let started = Instant::now();
            bench.get(&path).await;
            took.push(started.elapsed());
        }
        took.sort();
        let p99 = took[((took.len() - 1) as f64 * 0.99).round() as usize];
        emit(workload, p99.as_secs_f64() * 1e3, "ms", &note);
    }
    Ok(())
}
