//! Shared helpers for the end-to-end tests: a runtime with every test plugin
//! registered from its freshly built component, and an observer that records
//! what a job reported, with the time it arrived.

pub mod postgres;
pub mod python;
pub mod schema;
pub mod server;
pub mod storage;
pub mod webdriver;

use jobhost::jobs::{LimitOverrides, Limits, LogLevel, RunReport};
use jobhost::runtime::{CancelToken, JobContext, JobObserver, Plugin, Runtime, RuntimeConfig};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// A handle on the runtime shared by every test of a test binary: plugins
/// are compiled once per process, and tests run on it concurrently, as jobs
/// of different users would.
#[derive(Debug, Clone)]
pub struct TestRuntime {
    pub runtime: Arc<Runtime>,
}

static SHARED: OnceLock<Arc<Runtime>> = OnceLock::new();

impl TestRuntime {
    /// The shared runtime, with generous caps (so tests may ask for big
    /// budgets) and every plugin of `jobhost_plugin_artifacts::ALL` but the
    /// deliberately wrong `invalid.*` ones registered.
    pub fn start() -> TestRuntime {
        let runtime = SHARED.get_or_init(|| {
            let runtime = Runtime::new(RuntimeConfig { cache_dir: None, ..config() }).unwrap();
            for (name, path) in jobhost_plugin_artifacts::ALL {
                if !name.starts_with("invalid.") {
                    runtime.registry().register(name, &std::fs::read(path).unwrap()).unwrap();
                }
            }
            Arc::new(runtime)
        });
        TestRuntime { runtime: runtime.clone() }
    }

    pub fn plugin(&self, name: &str) -> Arc<Plugin> {
        self.runtime.registry().get(name).unwrap()
    }

    /// Runs `name` with `args` under the default limits plus `overrides`.
    pub async fn run(&self, name: &str, args: &str, overrides: LimitOverrides) -> Ran {
        self.run_with(name, args, overrides, CancelToken::new()).await
    }

    pub async fn run_with(
        &self,
        name: &str,
        args: &str,
        overrides: LimitOverrides,
        cancel: CancelToken,
    ) -> Ran {
        let output = Arc::new(Recorded::default());
        let job = JobContext {
            id: format!("job-{name}"),
            attempt: 1,
            cancel,
            observer: output.clone(),
            spawner: None,
        };
        let limits = self.runtime.limits(&overrides);
        let report = self.runtime.run(&self.plugin(name), job, args, &limits).await;
        Ran { report, output, finished: Instant::now() }
    }
}

/// A fresh runtime caching compiled components in `cache`, for cache tests.
pub fn runtime_with_cache(cache: &std::path::Path) -> Runtime {
    Runtime::new(RuntimeConfig { cache_dir: Some(cache.to_path_buf()), ..config() }).unwrap()
}

/// Default limits, with caps high enough for the limit tests.
fn config() -> RuntimeConfig {
    let caps = Limits { fuel: u64::MAX, wall_time: Duration::from_secs(3600), ..Limits::default() };
    RuntimeConfig { caps, ..RuntimeConfig::default() }
}

/// One finished run with everything it reported.
#[derive(Debug)]
pub struct Ran {
    pub report: RunReport,
    pub output: Arc<Recorded>,
    pub finished: Instant,
}

impl Ran {
    /// The result JSON of a completed run; panics with the outcome otherwise.
    pub fn result(&self) -> serde_json::Value {
        match &self.report.outcome {
            jobhost::jobs::Outcome::Completed { result } => serde_json::from_str(result).unwrap(),
            other => panic!("expected completed, got {other:?}"),
        }
    }
}

/// What a job reported, in arrival order.
#[derive(Debug, Default)]
pub struct Recorded {
    pub logs: Mutex<Vec<(LogLevel, String)>>,
    pub progress: Mutex<Vec<(f32, Option<String>, Instant)>>,
    pub metadata: Mutex<Vec<(String, serde_json::Value)>>,
}

impl Recorded {
    pub fn log_lines(&self) -> Vec<String> {
        self.logs.lock().unwrap().iter().map(|(_, m)| m.clone()).collect()
    }

    pub fn first_progress_at(&self) -> Option<Instant> {
        self.progress.lock().unwrap().first().map(|p| p.2)
    }
}

impl JobObserver for Recorded {
    fn log(&self, level: LogLevel, message: &str) {
        self.logs.lock().unwrap().push((level, message.to_string()));
    }
    fn progress(&self, percent: f32, message: Option<&str>) {
        self.progress.lock().unwrap().push((percent, message.map(String::from), Instant::now()));
    }
    fn metadata(&self, key: &str, value: serde_json::Value) {
        self.metadata.lock().unwrap().push((key.to_string(), value));
    }
}

/// Polls `check` until it gives a value, for a minute at most (a slow
/// machine included); past that the test fails naming `what`, rather than
/// hang.
pub async fn eventually<T, F: Future<Output = Option<T>>>(
    what: &str,
    mut check: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "not within a minute: {what}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Resident memory of this process, from /proc (Linux).
pub fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}
