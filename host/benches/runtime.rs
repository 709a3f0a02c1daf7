//! Runtime benchmark: compile time (cold and cached), instantiate+run latency
//! of `examples.hello`, and hello jobs per second on all cores, each for the
//! on-demand and the pooling allocator in the same run.
//!
//! `cargo bench --workspace --bench runtime` (figures in docs/BENCHMARKS.md).

mod measure;

use jobhost::runtime::{CompiledFrom, Plugin, Runtime, RuntimeConfig};
use measure::{ms, percentile, run, throughput};
use std::sync::Arc;
use std::time::{Duration, Instant};

const HELLO_ARGS: &str = r#"{"name":"bench"}"#;

const COMPILES: usize = 5;
const LATENCY_RUNS: usize = 2_000;
const THROUGHPUT_JOBS: usize = 20_000;
const IN_FLIGHT: usize = 64;
const POOL_SLOTS: u32 = 256;

fn main() -> anyhow::Result<()> {
    let tokio = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let hello = std::fs::read(jobhost_plugin_artifacts::HELLO)?;
    let wordcount = std::fs::read(jobhost_plugin_artifacts::WORDCOUNT)?;
    println!("jobhost runtime benchmark ({} cores)", std::thread::available_parallelism()?);

    println!("\ncompile (median of {COMPILES})");
    for (name, bytes) in [("examples.hello", &hello), ("examples.wordcount", &wordcount)] {
        let (cold, cached) = compile_times(name, bytes)?;
        println!(
            "  {name:<20} {:>6} KiB  cold {:>8.1} ms  cached {:>6.2} ms",
            bytes.len() / 1024,
            ms(cold),
            ms(cached)
        );
    }

    let pools = [
        ("on-demand allocator", None, 0),
        ("pooling allocator, nothing kept resident", Some(POOL_SLOTS), 0),
        ("pooling allocator, 1 MiB kept resident", Some(POOL_SLOTS), 1 << 20),
        ("pooling allocator, 4 MiB kept resident", Some(POOL_SLOTS), 4 << 20),
    ];
    for (label, pool_slots, pool_keep_resident) in pools {
        let config = RuntimeConfig { pool_slots, pool_keep_resident, ..RuntimeConfig::default() };
        let runtime = Arc::new(Runtime::new(config)?);
        let plugin = runtime.registry().register("examples.hello", &hello)?;
        println!("\n{label}");
        let mut latencies = tokio.block_on(latencies(&runtime, &plugin));
        latencies.sort();
        println!(
            "  hello instantiate+run, {LATENCY_RUNS} sequential: p50 {:.1} µs  p99 {:.1} µs",
            us(percentile(&latencies, 50.0)),
            us(percentile(&latencies, 99.0))
        );
        let jobs = throughput(&runtime, &plugin, HELLO_ARGS, THROUGHPUT_JOBS, IN_FLIGHT);
        let (elapsed, done) = tokio.block_on(jobs);
        println!(
            "  hello throughput, {done} jobs, {IN_FLIGHT} in flight: {:.0} jobs/s",
            done as f64 / elapsed.as_secs_f64()
        );
    }
    Ok(())
}

/// Median cold compile (fresh cache dir each time) and median cache load.
fn compile_times(name: &str, bytes: &[u8]) -> anyhow::Result<(Duration, Duration)> {
    let mut cold = Vec::new();
    let mut cached = Vec::new();
    for _ in 0..COMPILES {
        let dir = tempfile::tempdir()?;
        let config =
            RuntimeConfig { cache_dir: Some(dir.path().into()), ..RuntimeConfig::default() };
        let runtime = Runtime::new(config.clone())?;
        let started = Instant::now();
        let plugin = runtime.registry().prepare(None, name, bytes)?;
        cold.push(started.elapsed());
        assert_eq!(plugin.compiled_from, CompiledFrom::Compiler);

        let runtime = Runtime::new(config)?;
        let started = Instant::now();
        let plugin = runtime.registry().prepare(None, name, bytes)?;
        cached.push(started.elapsed());
        assert_eq!(plugin.compiled_from, CompiledFrom::Cache);
    }
    cold.sort();
    cached.sort();
    Ok((cold[COMPILES / 2], cached[COMPILES / 2]))
}

async fn latencies(runtime: &Runtime, plugin: &Plugin) -> Vec<Duration> {
    for _ in 0..100 {
        run(runtime, plugin, HELLO_ARGS).await;
    }
    let mut out = Vec::with_capacity(LATENCY_RUNS);
    for _ in 0..LATENCY_RUNS {
        out.push(run(runtime, plugin, HELLO_ARGS).await.0);
    }
    out
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
