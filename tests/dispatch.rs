//! The dispatcher and the background services end to end, in a host built
//! by `Host::start`: real redb storage, the real runtime and real plugins;
//! jobs go in through storage and come out finished.

use jobhost::config::Config;
use jobhost::events::JobUpdate;
use jobhost::host::Host;
use jobhost::jobs::{
    Backoff, FailureKind, JobRecord, JobState, LimitOverrides, NewJob, QueueSettings, WorkerMode,
    now_ms,
};
use jobhost::storage::{ClaimRules, JobStore, RedbStorage, Storage};
use jobhost_tests::eventually;
use jobhost_tests::server::test_config;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

struct TestHost {
    host: Host,
    storage: Arc<dyn Storage>,
    _dir: tempfile::TempDir,
}

async fn start(change: impl FnOnce(&mut Config)) -> TestHost {
    start_in(tempfile::tempdir().unwrap(), change).await
}

async fn start_in(dir: tempfile::TempDir, change: impl FnOnce(&mut Config)) -> TestHost {
    let mut config = test_config(dir.path());
    change(&mut config);
    let host = Host::start(config).await.unwrap();
    TestHost { storage: host.storage().clone(), host, _dir: dir }
}

fn job(plugin: &str, args: &str) -> NewJob {
    NewJob { tenant: "acme".into(), job: plugin.into(), args: args.into(), ..NewJob::default() }
}

impl TestHost {
    async fn enqueue(&self, new: NewJob) -> Uuid {
        let id = self.storage.enqueue(new, now_ms()).await.unwrap().job.id;
        self.host.dispatcher().wake();
        id
    }

    /// Waits until the job is in a terminal state (a minute at most).
    async fn finished(&self, id: Uuid) -> JobRecord {
        for _ in 0..1200 {
            let job = self.storage.get(id).await.unwrap();
            if job.state.is_terminal() {
                return job;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("job {id} did not finish: {:?}", self.storage.get(id).await.unwrap());
    }

    /// Waits until the job is in `state` (a minute at most).
    async fn reaches(&self, id: Uuid, state: JobState) {
        let what = format!("job {id} {}", state.as_str());
        eventually(&what, || async {
            (self.storage.get(id).await.unwrap().state == state).then_some(())
        })
        .await;
    }

    /// Waits until the host's first heartbeat registered its worker.
    async fn worker_registered(&self) {
        eventually("the worker registered", || async {
            (!self.storage.workers().await.unwrap().is_empty()).then_some(())
        })
        .await;
    }

    async fn reasons(&self, id: Uuid) -> Vec<String> {
        self.storage.events(id, 0).await.unwrap().into_iter().map(|e| e.reason).collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_runs_to_completion_with_its_log_and_journal() {
    let host = start(|_| {}).await;
    let id = host.enqueue(job("examples.hello", r#"{"name":"Ada"}"#)).await;
    let done = host.finished(id).await;
    assert_eq!(done.state, JobState::Completed);
    assert_eq!(done.result.as_deref(), Some(r#"{"greeting":"Hello, Ada!"}"#));
    assert_eq!(done.attempt, 1);
    assert!(done.fuel_used > 0 && done.finished_at.is_some());
    let logs = host.storage.logs(id, 0, 10).await.unwrap();
    assert_eq!(logs.iter().map(|l| l.message.as_str()).collect::<Vec<_>>(), ["greeting Ada"]);
    let states: Vec<JobState> =
        host.storage.events(id, 0).await.unwrap().iter().map(|e| e.state).collect();
    assert_eq!(states, [JobState::Pending, JobState::Running, JobState::Completed]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_is_stored_and_streamed_live() {
    let host = start(|_| {}).await;
    let mut live = host.host.bus().subscribe();
    let id = host.enqueue(job("examples.sleep", r#"{"seconds":0.2,"steps":4}"#)).await;
    let done = host.finished(id).await;
    assert_eq!(done.progress.unwrap().percent, 100.0, "the latest progress is kept");
    let mut percents = Vec::new();
    let mut states = Vec::new();
    while let Ok(event) = live.try_recv() {
        if event.job == id {
            match &event.update {
                JobUpdate::Progress(p) => percents.push(p.percent),
                JobUpdate::State { state, .. } => states.push(*state),
                JobUpdate::Log { .. } => {}
            }
        }
    }
    assert_eq!(percents, [25.0, 50.0, 75.0, 100.0]);
    assert_eq!(states, [JobState::Running, JobState::Completed]);
    assert_eq!(host.storage.logs(id, 0, 100).await.unwrap().len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_a_running_job_and_ends_a_waiting_one() {
    let host = start(|_| {}).await;
    let running = host.enqueue(job("examples.sleep", r#"{"seconds":30,"steps":300}"#)).await;
    host.reaches(running, JobState::Running).await;
    host.host.dispatcher().cancel(running).await.unwrap();
    let done = host.finished(running).await;
    assert_eq!(done.state, JobState::Cancelled);
    assert_eq!(done.error.unwrap().kind, FailureKind::Cancelled);

    host.storage
        .set_queue(
            "held",
            QueueSettings { paused: true, concurrency: None, ..QueueSettings::default() },
        )
        .await
        .unwrap();
    let waiting =
        host.enqueue(NewJob { queue: "held".into(), ..job("examples.hello", "{}") }).await;
    assert_eq!(host.host.dispatcher().cancel(waiting).await.unwrap().state, JobState::Cancelled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retriable_failure_is_retried_with_backoff_then_fails() {
    let host = start(|_| {}).await;
    let id = host
        .enqueue(NewJob {
            max_retries: 2,
            backoff: Backoff { base_ms: 50, max_ms: 1_000 },
            limits: LimitOverrides { fuel: Some(10_000_000), ..LimitOverrides::default() },
            ..job("tests.spin", "{}")
        })
        .await;
    let done = host.finished(id).await;
    assert_eq!(done.state, JobState::Failed);
    assert_eq!(done.attempt, 3);
    assert_eq!(done.error.unwrap().kind, FailureKind::FuelExhausted);
    let reasons = host.reasons(id).await;
    assert!(reasons.iter().any(|r| r.contains("retry 1 of 2")), "{reasons:?}");
    assert!(reasons.iter().any(|r| r.contains("retry 2 of 2")), "{reasons:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_more_jobs_run_at_once_than_there_are_slots() {
    let host = start(|config| config.slots = 2).await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(host.enqueue(job("examples.sleep", r#"{"seconds":0.2,"steps":1}"#)).await);
    }
    let mut done = Vec::new();
    for id in ids {
        done.push(host.finished(id).await);
    }
    for job in &done {
        assert_eq!(job.state, JobState::Completed);
        // How many jobs were running at the instant this one started.
        let start = job.started_at.unwrap();
        let at_once = done
            .iter()
            .filter(|other| {
                other.started_at.unwrap() <= start && start < other.finished_at.unwrap()
            })
            .count();
        assert!(at_once <= 2, "{at_once} jobs ran at once with 2 slots");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_sharing_a_lock_never_overlap() {
    let host = start(|_| {}).await;
    let locked = || NewJob {
        lock: Some("devices".into()),
        ..job("examples.sleep", r#"{"seconds":0.2,"steps":1}"#)
    };
    let first = host.enqueue(locked()).await;
    let second = host.enqueue(locked()).await;
    let (first, second) = (host.finished(first).await, host.finished(second).await);
    assert_eq!((first.state, second.state), (JobState::Completed, JobState::Completed));
    assert!(
        second.started_at.unwrap() >= first.finished_at.unwrap(),
        "the second waited for the lock"
    );
    assert!(host.storage.locks().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delayed_job_starts_at_its_time() {
    let host = start(|_| {}).await;
    let run_at = now_ms() + 500;
    let id = host
        .enqueue(NewJob { run_at: Some(run_at), ..job("examples.hello", r#"{"name":"later"}"#) })
        .await;
    assert_eq!(host.storage.get(id).await.unwrap().state, JobState::Scheduled);
    let done = host.finished(id).await;
    assert_eq!(done.state, JobState::Completed);
    assert!(done.started_at.unwrap() >= run_at);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_of_an_unknown_plugin_fails_naming_it() {
    let host = start(|_| {}).await;
    let id = host.enqueue(job("acme.missing", "{}")).await;
    let done = host.finished(id).await;
    assert_eq!(done.state, JobState::Failed);
    let error = done.error.unwrap();
    assert_eq!(error.kind, FailureKind::HostError);
    assert!(error.message.contains("acme.missing"), "{}", error.message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_left_running_by_a_dead_process_is_run_again() {
    let dir = tempfile::tempdir().unwrap();
    let id = {
        let storage = RedbStorage::open(&dir.path().join("jobhost.redb")).unwrap();
        let hello = job("examples.hello", r#"{"name":"again"}"#);
        let id = storage.enqueue(hello, now_ms()).await.unwrap().job.id;
        let dead = ClaimRules { worker: "dead".into(), max: 1, now: now_ms(), lease_ms: 3_600_000 };
        storage.claim(dead).await.unwrap();
        id
    };
    let host = start_in(dir, |_| {}).await;
    let done = host.finished(id).await;
    assert_eq!((done.state, done.attempt), (JobState::Completed, 2));
    assert!(host.reasons(id).await.iter().any(|r| r.contains("lease of worker dead expired")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_prunes_finished_jobs_with_their_journal_logs_and_keys_and_keeps_the_rest() {
    let host = start(|config| {
        config.retention_s = 2;
        config.prune_every_s = 1;
    })
    .await;
    let later = NewJob { run_at: Some(now_ms() + 3_600_000), ..job("examples.hello", "{}") };
    let waiting = host.enqueue(later).await;
    let keyed = NewJob {
        idempotency_key: Some("nightly".into()),
        ..job("examples.sleep", r#"{"seconds":0.1,"steps":2}"#)
    };
    let id = host.enqueue(keyed.clone()).await;
    assert_eq!(host.finished(id).await.state, JobState::Completed);
    assert_eq!(host.storage.logs(id, 0, 100).await.unwrap().len(), 2);
    eventually("the finished job is pruned", || async {
        host.storage.get(id).await.is_err().then_some(())
    })
    .await;
    let again = host.storage.enqueue(keyed, now_ms()).await.unwrap();
    assert!(again.created && again.job.id != id, "its idempotency key is free again");
    let kept = host.storage.get(waiting).await.unwrap();
    assert_eq!(kept.state, JobState::Scheduled, "an unfinished job is never pruned");

    // In the file itself: no journal or log row of the pruned job is left.
    let TestHost { host, storage, _dir: dir } = host;
    drop(storage);
    host.stop().await.unwrap();
    let db = redb::Database::open(dir.path().join("jobhost.redb")).unwrap();
    let read = redb::ReadableDatabase::begin_read(&db).unwrap();
    for name in ["events", "logs"] {
        let table: redb::TableDefinition<(u128, u64), &[u8]> = redb::TableDefinition::new(name);
        let table = read.open_table(table).unwrap();
        let rows = table.range((id.as_u128(), 0)..=(id.as_u128(), u64::MAX)).unwrap().count();
        assert_eq!(rows, 0, "{rows} {name} rows of the pruned job are left");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_worker_claims_nothing_until_resumed() {
    let worker = "paused-worker".to_string();
    let host = start(|config| {
        config.lease_ms = 300;
        config.worker = Some(worker.clone());
    })
    .await;
    host.worker_registered().await;
    host.storage.set_worker_mode(&worker, WorkerMode::Paused).await.unwrap();
    // Two heartbeats after the change: the worker has learned it.
    let changed_at = now_ms();
    for _ in 0..2 {
        let seen = host.storage.workers().await.unwrap()[0].heartbeat.max(changed_at);
        eventually("a heartbeat", || async {
            (host.storage.workers().await.unwrap()[0].heartbeat > seen).then_some(())
        })
        .await;
    }
    let id = host.enqueue(job("examples.hello", r#"{"name":"held"}"#)).await;
    // A round that began before the enqueue may end after it; the one
    // after that looked at storage with the job in it.
    let dispatcher = host.host.dispatcher();
    let seen = dispatcher.rounds();
    dispatcher.wake();
    eventually("two dispatch rounds", || async { (dispatcher.rounds() >= seen + 2).then_some(()) })
        .await;
    assert_eq!(
        host.storage.get(id).await.unwrap().state,
        JobState::Pending,
        "a paused worker claims nothing"
    );
    host.storage.set_worker_mode(&worker, WorkerMode::Active).await.unwrap();
    assert_eq!(host.finished(id).await.state, JobState::Completed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_job_runs_on_the_live_worker() {
    let host = start(|_| {}).await;
    host.worker_registered().await;
    let copies = host
        .storage
        .enqueue_broadcast(job("examples.hello", r#"{"name":"all"}"#), now_ms() - 60_000, now_ms())
        .await
        .unwrap();
    assert_eq!(copies.len(), 1);
    host.host.dispatcher().wake();
    assert_eq!(host.finished(copies[0].id).await.state, JobState::Completed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_job_keeps_its_lease_while_it_runs() {
    let host = start(|config| config.lease_ms = 900).await;
    let id = host.enqueue(job("examples.sleep", r#"{"seconds":2.5,"steps":5}"#)).await;
    let done = host.finished(id).await;
    assert_eq!((done.state, done.attempt, done.leases_lost), (JobState::Completed, 1, 0));
    assert!(
        !host.reasons(id).await.iter().any(|r| r.contains("expired")),
        "never rescued by mistake"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_in_a_tight_loop_reaches_the_bus_coalesced_and_the_last_one_arrives() {
    let host = start(|_| {}).await;
    let mut live = host.host.bus().subscribe();
    let id = host.enqueue(job("examples.sleep", r#"{"seconds":0,"steps":100000}"#)).await;
    let done = host.finished(id).await;
    assert_eq!(done.state, JobState::Completed);
    assert_eq!(done.progress.unwrap().percent, 100.0, "the latest progress is stored");
    let mut percents = Vec::new();
    loop {
        match live.try_recv() {
            Ok(event) if event.job == id => {
                if let JobUpdate::Progress(p) = &event.update {
                    percents.push(p.percent);
                }
            }
            Ok(_) | Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_)) => {}
            Err(_) => break,
        }
    }
    assert!(percents.len() < 2_000, "{} progress events for 100,000 reports", percents.len());
    assert_eq!(percents.last(), Some(&100.0), "the last report reaches followers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_lost_its_lease_stops_and_writes_nothing_into_the_next_run() {
    let host = start(|_| {}).await;
    let id = host.enqueue(job("examples.sleep", r#"{"seconds":3,"steps":30}"#)).await;
    host.reaches(id, JobState::Running).await;
    eventually("the first run logs", || async {
        (!host.storage.logs(id, 0, 10).await.unwrap().is_empty()).then_some(())
    })
    .await;
    // The lease runs out as if the worker had stalled: recovery takes the
    // job back and this same worker claims it again while the first run
    // is still going.
    host.storage.recover(now_ms() + 60_000).await.unwrap();
    host.host.dispatcher().wake();
    let done = host.finished(id).await;
    assert_eq!((done.state, done.attempt), (JobState::Completed, 2), "{done:?}");
    let logs = host.storage.logs(id, 0, 1_000).await.unwrap();
    let second = logs.iter().position(|l| l.attempt == 2).expect("the second run logged");
    let late: Vec<_> = logs[second..].iter().filter(|l| l.attempt != 2).collect();
    assert!(late.is_empty(), "the first run wrote into the second's log: {late:?}");
    assert_eq!(logs[second..].len(), 30, "the second run's whole log");
    let reasons = host.reasons(id).await;
    assert_eq!(reasons.iter().filter(|r| r.contains("completed")).count(), 1, "{reasons:?}");
}
