//! What the runtime benchmarks share: one job run and timed, many run with
//! a few in flight, and the figures' arithmetic.

use jobhost::jobs::{LimitOverrides, Outcome, RunReport};
use jobhost::runtime::{CancelToken, IgnoreOutput, JobContext, Plugin, Runtime};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Runs one job of `plugin` with `args` and the default limits; panics
/// unless it completed.
pub async fn run(runtime: &Runtime, plugin: &Plugin, args: &str) -> (Duration, RunReport) {
    let job = JobContext {
        id: "bench".into(),
        attempt: 1,
        cancel: CancelToken::new(),
        observer: Arc::new(IgnoreOutput),
        spawner: None,
    };
    let limits = runtime.limits(&LimitOverrides::default());
    let started = Instant::now();
    let report = runtime.run(plugin, job, args, &limits).await;
    let took = started.elapsed();
    assert!(matches!(report.outcome, Outcome::Completed { .. }), "{report:?}");
    (took, report)
}

/// Runs `jobs` jobs, `in_flight` at a time, on tokio's workers; returns the
/// time taken and the jobs done.
pub async fn throughput(
    runtime: &Arc<Runtime>,
    plugin: &Arc<Plugin>,
    args: &str,
    jobs: usize,
    in_flight: usize,
) -> (Duration, usize) {
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..in_flight {
        let (runtime, plugin, args) = (runtime.clone(), plugin.clone(), args.to_string());
        let share = jobs / in_flight + usize::from(worker < jobs % in_flight);
        tasks.spawn(async move {
            for _ in 0..share {
                run(&runtime, &plugin, &args).await;
            }
            share
        });
    }
    let done = tasks.join_all().await.into_iter().sum();
    (started.elapsed(), done)
}

pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p / 100.0).round() as usize]
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
