//! The same job in Rust, Python and JavaScript: `examples.wordcount` and
//! its ports, run by one runtime (the default pooling allocator). For each
//! language: the component's size, its first compile and a cache load, the
//! latency of one job run after run (instantiation included), the fuel and
//! memory a job takes, and jobs per second with a few in flight, with the
//! default 1 MiB of each pooled memory kept resident between jobs and with
//! 16 MiB (an interpreter's heap).
//!
//! `cargo bench --workspace --bench languages` (figures in docs/BENCHMARKS.md).
//! The Python and JavaScript components are built first by their SDKs'
//! build scripts (cached after the first run).

mod measure;

use jobhost::runtime::{Runtime, RuntimeConfig};
use jobhost_plugin_artifacts::polyglot;
use measure::{ms, percentile, run, throughput};
use std::sync::Arc;
use std::time::Instant;

const RUNS: usize = 300;
const THROUGHPUT_JOBS: usize = 2_000;
const IN_FLIGHT: usize = 8;
/// Repeated 13 times: about 900 bytes of text, 182 words.
const TEXT: &str = "the quick brown fox jumps over the lazy dog and then the dog sleeps ";

fn main() -> anyhow::Result<()> {
    let tokio = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let polyglot = polyglot::dir();
    let plugins = [
        ("Rust", "examples.wordcount", jobhost_plugin_artifacts::WORDCOUNT.into()),
        ("Python", "examples.python-wordcount", polyglot.join("examples.python-wordcount.wasm")),
        ("JavaScript", "examples.js-wordcount", polyglot.join("examples.js-wordcount.wasm")),
    ];
    let args = serde_json::json!({ "text": TEXT.repeat(13), "top": 3 }).to_string();
    println!(
        "jobhost languages benchmark ({} cores): wordcount of {} bytes",
        std::thread::available_parallelism()?,
        args.len()
    );
    for (language, name, path) in plugins {
        let bytes = std::fs::read(&path)?;
        let cache = tempfile::tempdir()?;
        let config = RuntimeConfig { cache_dir: Some(cache.path().into()), ..Default::default() };
        let runtime = Arc::new(Runtime::new(config.clone())?);
        let started = Instant::now();
        let plugin = runtime.registry().register(name, &bytes)?;
        let compile = started.elapsed();
        let started = Instant::now();
        Runtime::new(config)?.registry().prepare(None, name, &bytes)?;
        let cached = started.elapsed();

        let (first, report) = tokio.block_on(run(&runtime, &plugin, &args));
        let mut latencies = Vec::with_capacity(RUNS);
        for _ in 0..RUNS {
            latencies.push(tokio.block_on(run(&runtime, &plugin, &args)).0);
        }
        latencies.sort();
        println!("\n{language} ({name}, {:.1} MB)", bytes.len() as f64 / 1e6);
        println!(
            "  compile {:.2} s, cache load {:.1} ms",
            compile.as_secs_f64(),
            cached.as_secs_f64() * 1e3
        );
        println!(
            "  one job, {RUNS} in a row: first {:.2} ms, p50 {:.2} ms, p99 {:.2} ms",
            ms(first),
            ms(percentile(&latencies, 50.0)),
            ms(percentile(&latencies, 99.0))
        );
        println!(
            "  per job: {:.1} M fuel, memory peak {:.1} MiB",
            report.fuel_used as f64 / 1e6,
            report.memory_peak as f64 / f64::from(1 << 20)
        );
        for keep_resident in [1 << 20, 16 << 20] {
            let config = RuntimeConfig { pool_keep_resident: keep_resident, ..Default::default() };
            let runtime = Arc::new(Runtime::new(config)?);
            let plugin = runtime.registry().register(name, &bytes)?;
            let (elapsed, done) =
                tokio.block_on(throughput(&runtime, &plugin, &args, THROUGHPUT_JOBS, IN_FLIGHT));
            println!(
                "  throughput, {done} jobs, {IN_FLIGHT} in flight, {} MiB kept resident: {:.0} jobs/s",
                keep_resident >> 20,
                done as f64 / elapsed.as_secs_f64()
            );
        }
    }
    Ok(())
}
