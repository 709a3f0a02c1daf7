//! The sandboxed runtime, end to end: real components built from `plugins/`,
//! run by the real engine under real limits.

use jobhost::jobs::{FailureKind, LimitOverrides, LogLevel, Outcome};
use jobhost::runtime::{CancelToken, CompiledFrom, PluginError, RuntimeConfig};
use jobhost_tests::{Ran, TestRuntime, runtime_with_cache};
use serde_json::json;
use std::time::Duration;

fn limits() -> LimitOverrides {
    LimitOverrides::default()
}

fn kind(ran: &Ran) -> Option<FailureKind> {
    ran.report.outcome.failure_kind()
}

fn message(ran: &Ran) -> String {
    match &ran.report.outcome {
        Outcome::Failed { message, .. } => message.clone(),
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_returns_its_greeting() {
    let host = TestRuntime::start();
    let ran = host.run("examples.hello", r#"{"name":"Ada"}"#, limits()).await;
    assert_eq!(ran.result(), json!({"greeting": "Hello, Ada!"}));
    assert_eq!(ran.output.log_lines(), ["greeting Ada"]);
    assert!(ran.report.fuel_used > 0, "fuel is metered");
    assert!(ran.report.memory_peak > 0, "memory is accounted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn args_that_do_not_fit_are_the_jobs_error() {
    let host = TestRuntime::start();
    let ran = host.run("examples.hello", r#"{"nom":"Ada"}"#, limits()).await;
    assert_eq!(kind(&ran), Some(FailureKind::PluginError));
    assert!(message(&ran).contains("missing field `name`"), "{}", message(&ran));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_args_are_refused_before_the_guest_runs() {
    let host = TestRuntime::start();
    let small = LimitOverrides { payload_bytes: Some(16), ..limits() };
    let ran = host.run("examples.hello", r#"{"name":"a rather long name"}"#, small).await;
    assert_eq!(kind(&ran), Some(FailureKind::HostError));
    assert!(message(&ran).contains("16-byte limit"), "{}", message(&ran));
    assert_eq!(ran.report.fuel_used, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sleep_reports_progress_and_logs_every_step() {
    let host = TestRuntime::start();
    let ran = host.run("examples.sleep", r#"{"seconds":0.3,"steps":3}"#, limits()).await;
    let result = ran.result();
    assert_eq!(result["steps"], 3);
    assert_eq!(result["job_id"], "job-examples.sleep");
    assert_eq!(result["attempt"], 1);
    assert!(result["slept_ms"].as_u64().unwrap() >= 300);
    let percents: Vec<u32> =
        ran.output.progress.lock().unwrap().iter().map(|p| p.0.round() as u32).collect();
    assert_eq!(percents, [33, 67, 100]);
    assert_eq!(ran.output.log_lines(), ["step 1 of 3", "step 2 of 3", "step 3 of 3"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sleep_stops_by_itself_when_cancelled() {
    let host = TestRuntime::start();
    let cancel = CancelToken::new();
    let grace = LimitOverrides { cancel_grace: Some(Duration::from_secs(30)), ..limits() };
    let job =
        host.run_with("examples.sleep", r#"{"seconds":30,"steps":300}"#, grace, cancel.clone());
    let canceller = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        cancel.cancel();
    };
    let (ran, ()) = tokio::join!(job, canceller);
    assert_eq!(kind(&ran), Some(FailureKind::Cancelled));
    assert_eq!(message(&ran), "cancelled", "the guest's own answer, not the hard stop");
    let steps = ran.output.progress.lock().unwrap().len();
    assert!(steps < 300, "stopped early, after {steps} steps");
    assert!(ran.output.log_lines().last().unwrap().starts_with("cancelled at step"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_gives_plugin_error_with_its_message() {
    let host = TestRuntime::start();
    let ran = host.run("examples.fail", r#"{"message":"disk on fire"}"#, limits()).await;
    assert_eq!(kind(&ran), Some(FailureKind::PluginError));
    assert_eq!(message(&ran), "disk on fire");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_is_a_trap_and_its_message_is_in_the_log() {
    let host = TestRuntime::start();
    let ran = host.run("examples.fail", r#"{"panic":true,"message":"boom"}"#, limits()).await;
    assert_eq!(kind(&ran), Some(FailureKind::Trap));
    assert!(message(&ran).contains("unreachable"), "{}", message(&ran));
    let logs = ran.output.logs.lock().unwrap().clone();
    assert!(
        logs.iter().any(|(level, line)| *level == LogLevel::Error && line.contains("boom")),
        "panic message on stderr lands in the log: {logs:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdout_and_metadata_reach_the_job() {
    let host = TestRuntime::start();
    let text = "the cat and the hat and THE bat";
    let ran = host
        .run("examples.wordcount", &json!({"text": text, "top": 2}).to_string(), limits())
        .await;
    assert_eq!(
        ran.result(),
        json!({"total_words": 8, "distinct_words": 5, "top": [["the", 3], ["and", 2]]})
    );
    assert_eq!(ran.output.log_lines(), ["8 words, 5 distinct"]);
    assert_eq!(*ran.output.metadata.lock().unwrap(), [("distinct_words".to_string(), json!(5))]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_is_bounded_and_says_what_it_dropped() {
    let host = TestRuntime::start();
    let few = LimitOverrides { log_lines: Some(4), ..limits() };
    let ran = host.run("examples.sleep", r#"{"seconds":0,"steps":10}"#, few).await;
    ran.result();
    let lines = ran.output.log_lines();
    let expected = [
        "step 1 of 10",
        "step 2 of 10",
        "step 3 of 10",
        "log limit reached: 6 lines dropped here, before the last 1",
        "step 10 of 10",
    ];
    assert_eq!(lines, expected);
}

/// Runs `hostile` next to well-behaved jobs and checks they all completed.
/// With `outlasted`, also that they finished while the hostile job was still
/// running: one guest cannot block the host.
async fn others_finish_alongside(
    host: &TestRuntime,
    hostile: impl Future<Output = Ran>,
    outlasted: bool,
) -> Ran {
    let neighbours = async {
        let hello = host.run("examples.hello", r#"{"name":"neighbour"}"#, limits());
        let sleep = host.run("examples.sleep", r#"{"seconds":0.2,"steps":2}"#, limits());
        let count = host.run("examples.wordcount", r#"{"text":"a b a"}"#, limits());
        tokio::join!(hello, sleep, count)
    };
    let (hostile, (hello, sleep, count)) = tokio::join!(hostile, neighbours);
    for neighbour in [&hello, &sleep, &count] {
        neighbour.result();
        if outlasted {
            assert!(
                neighbour.finished < hostile.finished,
                "a neighbour waited for the hostile job"
            );
        }
    }
    hostile
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spin_runs_out_of_fuel() {
    let host = TestRuntime::start();
    let budget = 10_000_000_000;
    let small_fuel = LimitOverrides { fuel: Some(budget), ..limits() };
    let ran = others_finish_alongside(&host, host.run("tests.spin", "{}", small_fuel), true).await;
    assert_eq!(kind(&ran), Some(FailureKind::FuelExhausted), "{:?}", ran.report);
    assert_eq!(ran.report.fuel_used, budget);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spin_times_out_under_a_big_fuel_budget() {
    let host = TestRuntime::start();
    let short = LimitOverrides {
        fuel: Some(u64::MAX / 2),
        wall_time: Some(Duration::from_millis(1500)),
        ..limits()
    };
    let ran = others_finish_alongside(&host, host.run("tests.spin", "{}", short), true).await;
    assert_eq!(kind(&ran), Some(FailureKind::Timeout), "{:?}", ran.report);
    assert!(message(&ran).contains("1500 ms"), "{}", message(&ran));
    assert!(ran.report.duration >= Duration::from_millis(1500));
}

/// Cancels a job that never looks at the flag and checks it is stopped once
/// the grace period is over, within 200 ms of it.
async fn hard_stop_after_grace(host: &TestRuntime, name: &str, args: &str) -> Ran {
    let grace = Duration::from_millis(500);
    let overrides =
        LimitOverrides { fuel: Some(u64::MAX / 2), cancel_grace: Some(grace), ..limits() };
    let cancel = CancelToken::new();
    let job = host.run_with(name, args, overrides, cancel.clone());
    let canceller = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        cancel.cancel();
        std::time::Instant::now()
    };
    let (ran, cancelled_at) = tokio::join!(others_finish_alongside(host, job, true), canceller);
    assert_eq!(kind(&ran), Some(FailureKind::Cancelled), "{:?}", ran.report);
    let stop = ran.finished - cancelled_at;
    assert!(stop >= grace, "stopped before the grace period ended ({stop:?})");
    assert!(stop <= grace + Duration::from_millis(200), "stopped {stop:?} after cancel");
    ran
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spinning_guest_is_stopped_hard_after_the_grace_period() {
    let host = TestRuntime::start();
    let ran = hard_stop_after_grace(&host, "tests.spin", "{}").await;
    assert!(message(&ran).contains("grace period"), "{}", message(&ran));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_sleeping_in_the_host_is_stopped_hard_after_the_grace_period() {
    let host = TestRuntime::start();
    hard_stop_after_grace(
        &host,
        "examples.sleep",
        r#"{"seconds":60,"steps":2,"ignore_cancel":true}"#,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memhog_hits_the_memory_limit() {
    let host = TestRuntime::start();
    let limit = 32 << 20;
    let small = LimitOverrides { memory_bytes: Some(limit), ..limits() };
    let ran = others_finish_alongside(&host, host.run("tests.memhog", "{}", small), false).await;
    assert_eq!(kind(&ran), Some(FailureKind::MemoryLimit), "{:?}", ran.report);
    assert!(message(&ran).contains(&format!("memory limit of {limit} bytes")), "{}", message(&ran));
    assert!(ran.report.memory_peak <= limit);
    assert!(ran.report.memory_peak > limit / 2, "it did grow: {}", ran.report.memory_peak);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memhog_below_the_limit_completes() {
    let host = TestRuntime::start();
    let ran = host.run("tests.memhog", r#"{"max_mib":8}"#, limits()).await;
    assert_eq!(ran.result()["mib"], 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_jobs_run_at_once_without_starving_each_other() {
    let host = TestRuntime::start();
    let jobs = (0..100).map(|i| {
        let host = &host;
        async move {
            if i % 10 == 0 {
                host.run(
                    "examples.wordcount",
                    &json!({"text": "x y ".repeat(5000)}).to_string(),
                    limits(),
                )
                .await
            } else {
                host.run("examples.sleep", r#"{"seconds":1,"steps":10}"#, limits()).await
            }
        }
    });
    let runs = futures::future::join_all(jobs).await;
    for ran in &runs {
        ran.result();
    }
    let sleepers: Vec<&Ran> =
        runs.iter().enumerate().filter(|(i, _)| i % 10 != 0).map(|(_, r)| r).collect();
    let last_first_step =
        sleepers.iter().map(|r| r.output.first_progress_at().unwrap()).max().unwrap();
    let first_finish = sleepers.iter().map(|r| r.finished).min().unwrap();
    assert!(
        last_first_step < first_finish,
        "every sleeper made progress before any finished: all 90 ran at the same time"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_beyond_the_pool_wait_for_a_slot() {
    let config = RuntimeConfig { pool_slots: Some(2), ..RuntimeConfig::default() };
    let runtime = jobhost::runtime::Runtime::new(config).unwrap();
    let sleep = std::fs::read(jobhost_plugin_artifacts::SLEEP).unwrap();
    let plugin = runtime.registry().register("examples.sleep", &sleep).unwrap();
    let limits = runtime.limits(&limits());
    let runs = (0..6).map(|i| {
        let job = jobhost::runtime::JobContext {
            id: format!("queued-{i}"),
            attempt: 1,
            cancel: CancelToken::new(),
            observer: std::sync::Arc::new(jobhost::runtime::IgnoreOutput),
            spawner: None,
        };
        runtime.run(&plugin, job, r#"{"seconds":0.1}"#, &limits)
    });
    for report in futures::future::join_all(runs).await {
        assert!(matches!(report.outcome, Outcome::Completed { .. }), "{report:?}");
    }
}

#[test]
fn bytes_that_are_not_a_component_are_refused_by_name() {
    let cache = tempfile::tempdir().unwrap();
    let runtime = runtime_with_cache(cache.path());
    let registry = runtime.registry();

    let err = registry.register("acme.text", b"definitely not wasm").unwrap_err();
    assert!(matches!(err, PluginError::NotWasm));
    assert!(err.to_string().contains("not a WebAssembly binary"), "{err}");

    let core_module = b"\0asm\x01\0\0\0";
    let err = registry.register("acme.core", core_module).unwrap_err();
    assert!(matches!(err, PluginError::CoreModule));
    assert!(err.to_string().contains("wasm32-wasip2"), "{err}");

    let mut truncated = std::fs::read(jobhost_plugin_artifacts::HELLO).unwrap();
    truncated.truncate(truncated.len() / 2);
    let err = registry.register("acme.truncated", &truncated).unwrap_err();
    assert!(matches!(err, PluginError::Invalid(_)), "{err}");

    let hello = std::fs::read(jobhost_plugin_artifacts::HELLO).unwrap();
    let err = registry.register("Hello", &hello).unwrap_err();
    assert!(matches!(err, PluginError::InvalidName { .. }), "{err}");
    assert!(registry.list().is_empty(), "nothing refused was registered");
}

#[test]
fn a_component_of_another_world_is_refused_naming_what_is_missing() {
    let cache = tempfile::tempdir().unwrap();
    let runtime = runtime_with_cache(cache.path());
    let command = std::fs::read(jobhost_plugin_artifacts::COMMAND).unwrap();
    let err = runtime.registry().register("acme.command", &command).unwrap_err();
    assert!(matches!(err, PluginError::WrongWorld(_)), "{err}");
    let text = err.to_string();
    assert!(text.contains("jobhost:plugin/job@0.1.0") && text.contains("run"), "{text}");
}

#[test]
fn components_compile_once_and_come_back_from_the_cache() {
    let cache = tempfile::tempdir().unwrap();
    let hello = std::fs::read(jobhost_plugin_artifacts::HELLO).unwrap();

    let first =
        runtime_with_cache(cache.path()).registry().register("examples.hello", &hello).unwrap();
    assert_eq!(first.compiled_from, CompiledFrom::Compiler);
    assert_eq!(first.digest, jobhost::runtime::digest(&hello));
    assert!(first.exports.iter().any(|e| e == "run"), "{:?}", first.exports);
    assert!(
        first.imports.iter().any(|i| i.starts_with("jobhost:plugin/context")),
        "{:?}",
        first.imports
    );

    let again =
        runtime_with_cache(cache.path()).registry().register("examples.hello", &hello).unwrap();
    assert_eq!(again.compiled_from, CompiledFrom::Cache);

    drop((first, again));
    // Corrupt every entry the way a crashed writer could: a new file renamed
    // over it (the host itself never rewrites an entry in place, since
    // loaded entries are memory-mapped).
    for entry in std::fs::read_dir(cache.path()).unwrap() {
        let path = entry.unwrap().path();
        let garbage = path.with_extension("garbage");
        std::fs::write(&garbage, b"garbage").unwrap();
        std::fs::rename(&garbage, &path).unwrap();
    }
    let recompiled =
        runtime_with_cache(cache.path()).registry().register("examples.hello", &hello).unwrap();
    assert_eq!(recompiled.compiled_from, CompiledFrom::Compiler, "a bad cache entry is replaced");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_plugin_runs() {
    let cache = tempfile::tempdir().unwrap();
    let hello = std::fs::read(jobhost_plugin_artifacts::HELLO).unwrap();
    runtime_with_cache(cache.path()).registry().register("examples.hello", &hello).unwrap();
    let runtime = runtime_with_cache(cache.path());
    let plugin = runtime.registry().register("examples.hello", &hello).unwrap();
    assert_eq!(plugin.compiled_from, CompiledFrom::Cache);
    let job = jobhost::runtime::JobContext {
        id: "cached".into(),
        attempt: 1,
        cancel: CancelToken::new(),
        observer: std::sync::Arc::new(jobhost::runtime::IgnoreOutput),
        spawner: None,
    };
    let report = runtime.run(&plugin, job, r#"{"name":"cache"}"#, &runtime.limits(&limits())).await;
    assert_eq!(
        report.outcome,
        Outcome::Completed { result: r#"{"greeting":"Hello, cache!"}"#.into() }
    );
}

#[test]
fn a_tenants_plugins_are_its_own_and_shared_ones_are_everyones() {
    let cache = tempfile::tempdir().unwrap();
    let runtime = runtime_with_cache(cache.path());
    let registry = runtime.registry();
    let hello = std::fs::read(jobhost_plugin_artifacts::HELLO).unwrap();
    let fail = std::fs::read(jobhost_plugin_artifacts::FAIL).unwrap();
    registry.register("examples.hello", &hello).unwrap();
    registry.register_for("acme", "acme.private", &fail).unwrap();
    registry.register_for("acme", "examples.hello", &fail).unwrap();

    assert_eq!(registry.resolve("acme", "acme.private").unwrap().tenant.as_deref(), Some("acme"));
    assert!(matches!(registry.resolve("globex", "acme.private"), Err(PluginError::NotFound(_))));
    let shadowed = registry.resolve("acme", "examples.hello").unwrap();
    assert_eq!(shadowed.digest, jobhost::runtime::digest(&fail), "a tenant's own plugin wins");
    let shared = registry.resolve("globex", "examples.hello").unwrap();
    assert_eq!(shared.tenant, None);

    let names =
        |tenant| registry.list_for(tenant).iter().map(|p| p.name.clone()).collect::<Vec<_>>();
    assert_eq!(names("acme"), ["acme.private", "examples.hello"]);
    assert_eq!(names("globex"), ["examples.hello"]);
    registry.remove_for("acme", "examples.hello").unwrap();
    assert_eq!(registry.resolve("acme", "examples.hello").unwrap().tenant, None);
    assert!(matches!(
        registry.remove_for("globex", "examples.hello"),
        Err(PluginError::NotFound(_))
    ));
}
