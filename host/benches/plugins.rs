//! Plugin loading at scale: a host that stores 10,000 uploaded plugins (the
//! same small component under 10,000 names), of which 50 are hot. Measures
//! the host's start, its memory after the start and with the 50 hot, and
//! the first job of a cold plugin (made ready from the compile cache)
//! against the next job of the same plugin. The start and the memory are
//! measured in a fresh process (this binary again), so the setup's own
//! allocations do not count.
//!
//! `cargo bench --workspace --bench plugins [-- --quick]` (figures in
//! docs/BENCHMARKS.md).

mod memory;

use jobhost::config::Config;
use jobhost::events::JobUpdate;
use jobhost::host::Host;
use jobhost::jobs::{JobState, PluginRecord, now_ms};
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};

/// The allocator `jobhost serve` runs with (host/src/main.rs).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const TOKEN: &str = "bench-admin-secret-0123456789abcdef";
const HOT: usize = 50;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let tokio = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    if let Some(at) = args.iter().position(|arg| arg == "--measure") {
        return tokio.block_on(measure(Path::new(&args[at + 1])));
    }
    let stored = if args.iter().any(|arg| arg == "--quick") { 1_000 } else { 10_000 };
    let dir = tempfile::tempdir()?;
    tokio.block_on(store(dir.path(), stored))?;
    println!("jobhost plugin loading benchmark ({} cores), {stored} plugins stored", num_cpus());
    let measured = std::process::Command::new(std::env::current_exe()?)
        .arg("--measure")
        .arg(dir.path())
        .status()?;
    anyhow::ensure!(measured.success(), "the measuring process failed");
    Ok(())
}

fn num_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn config(data: &Path) -> Config {
    Config {
        listen: "127.0.0.1:0".into(),
        data: data.to_path_buf(),
        plugins: vec![jobhost_plugin_artifacts::EXAMPLES_DIR.into()],
        admin_token: Some(TOKEN.into()),
        tenant_max_plugins: 20_000,
        ..Config::default()
    }
}

async fn get(base: &str, path: &str) -> anyhow::Result<Value> {
    let answer = reqwest::Client::new().get(format!("{base}{path}")).bearer_auth(TOKEN).send();
    Ok(answer.await?.json().await?)
}

/// Uploads one plugin over HTTP (so its record is a real upload's), then
/// stores `count` names of the same bytes, as many uploads would.
async fn store(data: &Path, count: usize) -> anyhow::Result<()> {
    let host = Host::start(config(data)).await?;
    let base = format!("http://{}", host.addr());
    let bytes = std::fs::read(jobhost_plugin_artifacts::HELLO)?;
    let upload = reqwest::Client::new().post(format!("{base}/v1/plugins/bench.seed"));
    let seed: Value = upload.bearer_auth(TOKEN).body(bytes.clone()).send().await?.json().await?;
    let tenant = get(&base, "/v1/stats").await?["tenant"].as_str().unwrap_or_default().to_string();
    let strings = |key: &str| -> Vec<String> {
        seed[key]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str())
            .map(String::from)
            .collect()
    };
    let record = PluginRecord {
        tenant,
        name: String::new(),
        digest: seed["digest"].as_str().unwrap_or_default().to_string(),
        size: bytes.len() as u64,
        uploaded_at: now_ms(),
        uploader: "bench".into(),
        retry_on: None,
        imports: strings("imports"),
        exports: strings("exports"),
    };
    let writes = (0..count).map(|i| {
        let record = PluginRecord { name: format!("bench.p{i:05}"), ..record.clone() };
        host.storage().put_plugin(record, bytes.clone())
    });
    for written in futures::future::join_all(writes).await {
        written?;
    }
    host.stop().await
}

/// This process's resident memory, in MiB.
fn rss_mib() -> f64 {
    memory::rss_bytes() as f64 / (1 << 20) as f64
}

/// Starts a host on `data`, then runs a job of each of [`HOT`] plugins
/// twice: cold, then warm.
async fn measure(data: &Path) -> anyhow::Result<()> {
    let before = rss_mib();
    let started = Instant::now();
    let host = Host::start(config(data)).await?;
    let start = started.elapsed();
    let after_start = rss_mib();
    let base = format!("http://{}", host.addr());
    let metrics = reqwest::Client::new().get(format!("{base}/metrics")).bearer_auth(TOKEN);
    let metrics = metrics.send().await?.text().await?;
    let known = metrics.lines().find(|l| l.starts_with("jobhost_plugins_known ")).unwrap_or("");
    println!(
        "host start: {:.0} ms ({known}), RSS {after_start:.0} MiB ({before:.0} before)",
        start.as_secs_f64() * 1e3
    );
    let mut cold = Vec::new();
    let mut warm = Vec::new();
    for i in 0..HOT {
        let plugin = format!("bench.p{i:05}");
        cold.push(run(&host, &base, &plugin).await?);
        warm.push(run(&host, &base, &plugin).await?);
    }
    let hot = rss_mib();
    cold.sort();
    warm.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "first job of a cold plugin (from the cache): p50 {:.2} ms, max {:.2} ms; the next job: p50 {:.2} ms, max {:.2} ms (enqueue to completed, {HOT} plugins)",
        ms(cold[HOT / 2]),
        ms(cold[HOT - 1]),
        ms(warm[HOT / 2]),
        ms(warm[HOT - 1])
    );
    println!(
        "RSS with {HOT} hot: {hot:.0} MiB ({:.1} MiB more than after the start)",
        hot - after_start
    );
    host.stop().await
}

/// One job of `plugin`, from its `POST /v1/jobs` to its `completed` event.
async fn run(host: &Host, base: &str, plugin: &str) -> anyhow::Result<Duration> {
    let mut updates = host.bus().subscribe();
    let started = Instant::now();
    let body = json!({"job": plugin, "args": {"name": "bench"}});
    let post =
        reqwest::Client::new().post(format!("{base}/v1/jobs")).bearer_auth(TOKEN).json(&body);
    let job: Value = post.send().await?.json().await?;
    let id: uuid::Uuid = job["id"].as_str().unwrap_or_default().parse()?;
    loop {
        let event = updates.recv().await?;
        if event.job == id {
            match event.update {
                JobUpdate::State { state: JobState::Completed, .. } => return Ok(started.elapsed()),
                JobUpdate::State { state, .. } if state.is_terminal() => {
                    anyhow::bail!("job of {plugin} ended {}", state.as_str())
                }
                _ => {}
            }
        }
    }
}
