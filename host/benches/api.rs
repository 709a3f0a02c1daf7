//! HTTP API load benchmark over loopback: enqueue requests per second (one
//! client vs. many in flight), jobs per second through `POST /v1/jobs/batch`,
//! and 1,000 SSE followers of one job (time to
//! open them all, time from the job's end until every follower has its
//! `close`, events delivered).
//!
//! `cargo bench --workspace --bench api` (figures in docs/BENCHMARKS.md).

use jobhost::config::Config;
use jobhost::host::Host;
use serde_json::json;
use std::time::{Duration, Instant};

/// The allocator `jobhost serve` runs with (host/src/main.rs).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const TOKEN: &str = "bench-admin-secret-0123456789abcdef";
const ENQUEUE_FOR: Duration = Duration::from_secs(5);
const FOLLOWERS: usize = 1_000;
const BATCHES: usize = 20;
const BATCH_SIZE: usize = 1_000;

fn main() -> anyhow::Result<()> {
    let tokio = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    println!("jobhost API benchmark ({} cores)", std::thread::available_parallelism()?);
    tokio.block_on(async {
        let (host, _dir) = start().await?;
        let base = format!("http://{}", host.addr());
        enqueue_rate(&base, 1).await?;
        enqueue_rate(&base, 64).await?;
        drain(&base).await?;
        batch_rate(&base).await?;
        drain(&base).await?;
        followers(&base).await
    })
}

/// A host built the way `jobhost serve` builds one, with the examples, on
/// 127.0.0.1:0.
async fn start() -> anyhow::Result<(Host, tempfile::TempDir)> {
    let dir = tempfile::tempdir()?;
    let config = Config {
        listen: "127.0.0.1:0".into(),
        data: dir.path().to_path_buf(),
        plugins: vec![jobhost_plugin_artifacts::EXAMPLES_DIR.into()],
        admin_token: Some(TOKEN.into()),
        ..Config::default()
    };
    Ok((Host::start(config).await?, dir))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// `clients` keep one enqueue each in flight for [`ENQUEUE_FOR`].
async fn enqueue_rate(base: &str, clients: usize) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (client, url) = (client.clone(), format!("{base}/v1/jobs"));
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while started.elapsed() < ENQUEUE_FOR {
                let sent = Instant::now();
                let response = client
                    .post(&url)
                    .bearer_auth(TOKEN)
                    .json(&json!({"job": "examples.hello", "args": {"name": "bench"}}))
                    .send()
                    .await?;
                anyhow::ensure!(response.status() == 202, "enqueue: {}", response.status());
                response.bytes().await?;
                latencies.push(sent.elapsed());
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await??);
    }
    let elapsed = started.elapsed();
    latencies.sort();
    println!(
        "enqueue over HTTP, {clients:>2} clients: {:>7.0} req/s ({} in {:.1} s), latency p50 {:.2} ms, p99 {:.2} ms",
        latencies.len() as f64 / elapsed.as_secs_f64(),
        latencies.len(),
        elapsed.as_secs_f64(),
        percentile(&latencies, 0.5).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
    );
    Ok(())
}

/// One client sends [`BATCHES`] batches of [`BATCH_SIZE`] jobs, one after
/// another.
async fn batch_rate(base: &str) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let jobs: Vec<_> =
        (0..BATCH_SIZE).map(|_| json!({"job": "examples.hello", "args": {"name": "b"}})).collect();
    let body = json!({ "jobs": jobs });
    let mut latencies = Vec::new();
    let started = Instant::now();
    for _ in 0..BATCHES {
        let sent = Instant::now();
        let response = client
            .post(format!("{base}/v1/jobs/batch"))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
            .await?;
        anyhow::ensure!(response.status() == 200, "batch: {}", response.status());
        let result: serde_json::Value = response.json().await?;
        anyhow::ensure!(result["created"] == BATCH_SIZE, "batch created {}", result["created"]);
        latencies.push(sent.elapsed());
    }
    let elapsed = started.elapsed();
    latencies.sort();
    println!(
        "enqueue in batches of {BATCH_SIZE}: {:>7.0} jobs/s ({} jobs in {:.1} s), per batch p50 {:.1} ms, max {:.1} ms",
        (BATCHES * BATCH_SIZE) as f64 / elapsed.as_secs_f64(),
        BATCHES * BATCH_SIZE,
        elapsed.as_secs_f64(),
        percentile(&latencies, 0.5).as_secs_f64() * 1e3,
        percentile(&latencies, 1.0).as_secs_f64() * 1e3,
    );
    Ok(())
}

/// Waits until the enqueued jobs have run, so the next figure is alone.
async fn drain(base: &str) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    loop {
        let stats: serde_json::Value =
            client.get(format!("{base}/v1/stats")).bearer_auth(TOKEN).send().await?.json().await?;
        if stats["waiting"] == 0 && stats["host"]["running"] == 0 {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Milliseconds since the Unix epoch, the clock job records use.
fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

/// [`FOLLOWERS`] SSE followers of one job that reports progress 20 times.
async fn followers(base: &str) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let call = |method: reqwest::Method, path: &str| {
        client.request(method, format!("{base}{path}")).bearer_auth(TOKEN)
    };
    call(reqwest::Method::POST, "/v1/queues/followed/pause").send().await?.error_for_status()?;
    let job: serde_json::Value = call(reqwest::Method::POST, "/v1/jobs")
        .json(&json!({"job": "examples.sleep", "queue": "followed", "args": {"seconds": 2, "steps": 20}}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let path = format!("/v1/jobs/{}/events", job["id"].as_str().unwrap_or_default());

    let opening = Instant::now();
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel(FOLLOWERS);
    let mut tasks = Vec::new();
    for _ in 0..FOLLOWERS {
        let request = call(reqwest::Method::GET, &path);
        let ready = ready_tx.clone();
        tasks.push(tokio::spawn(async move {
            let mut response = request.send().await?.error_for_status()?;
            let (mut text, mut events, mut announced) = (String::new(), 0usize, false);
            while let Some(chunk) = response.chunk().await? {
                text.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = text.find("\n\n") {
                    let block: String = text.drain(..end + 2).collect();
                    if block.starts_with(':') {
                        continue;
                    }
                    events += 1;
                    if !announced {
                        announced = true;
                        let _ = ready.send(()).await;
                    }
                    if block.contains("event: close") {
                        return anyhow::Ok((events, wall_ms()));
                    }
                }
            }
            anyhow::bail!("stream ended without close")
        }));
    }
    for _ in 0..FOLLOWERS {
        ready_rx.recv().await;
    }
    let opened = opening.elapsed();
    call(reqwest::Method::POST, "/v1/queues/followed/resume").send().await?.error_for_status()?;
    let (mut events, mut last_close) = (0, 0);
    for task in tasks {
        let (count, closed) = task.await??;
        events += count;
        last_close = last_close.max(closed);
    }
    let done: serde_json::Value =
        call(reqwest::Method::GET, &path.replace("/events", "")).send().await?.json().await?;
    let (started, finished) =
        (done["started_at"].as_u64().unwrap_or(0), done["finished_at"].as_u64().unwrap_or(0));
    println!(
        "{FOLLOWERS} SSE followers of one 2 s job: all open and replayed in {:.0} ms; \
         the job ran {} ms; the last follower had its close {} ms after the job finished; \
         {events} events delivered ({:.1} each)",
        opened.as_secs_f64() * 1e3,
        finished - started,
        last_close.saturating_sub(finished),
        events as f64 / FOLLOWERS as f64,
    );
    Ok(())
}
