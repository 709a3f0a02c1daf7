use jobhost::jobs::LogLevel;
use jobhost::jobs::RetryPolicy;
use jobhost::jobs::changes::Resubmit;
use jobhost::jobs::rules::MAX_LEASES_LOST;
use jobhost::jobs::{
    Backoff, JobState, NewJob, PluginRecord, Progress, QueueSettings, Role, TenantDefaults,
    TenantRecord, TokenRecord, WorkerMode, now_ms,
};
use jobhost::jobs::{FailureKind, Outcome, RunReport};
use jobhost::storage::{
    ClaimRules, Finishing, JobFilter, OutputBatch, Start, Storage, StorageError,
};
use jobhost_tests::storage::{Backend, open_in};
use std::time::Duration;
use uuid::Uuid;

struct TestDb {
    storage: Box<dyn Storage>,
    dir: tempfile::TempDir,
}

async fn open() -> TestDb {
    open_with(TenantDefaults::default()).await
}

async fn open_with(defaults: TenantDefaults) -> TestDb {
    let dir = tempfile::tempdir().unwrap();
    TestDb { storage: open_in(BACKEND, dir.path(), defaults).await, dir }
}

impl TestDb {
    /// The same data after the process that held it stopped.
    async fn restart(self) -> TestDb {
        drop(self.storage);
        let storage = open_in(BACKEND, self.dir.path(), TenantDefaults::default()).await;
        TestDb { storage, dir: self.dir }
    }
}

fn job(name: &str) -> NewJob {
    NewJob {
        tenant: "acme".into(),
        owner: "ada".into(),
        job: "examples.hello".into(),
        args: "{}".into(),
        name: Some(name.into()),
        ..NewJob::default()
    }
}

/// `tenant`'s `examples.hello`, version `sha256:abc` (bytes `abc`).
fn plugin_record(tenant: &str) -> PluginRecord {
    PluginRecord {
        tenant: tenant.into(),
        name: "examples.hello".into(),
        digest: "sha256:abc".into(),
        size: 3,
        uploaded_at: 1,
        uploader: "ada".into(),
        retry_on: None,
        imports: Vec::new(),
        exports: vec!["run".into()],
    }
}

fn rules(worker: &str, max: usize) -> ClaimRules {
    ClaimRules { worker: worker.into(), max, now: now_ms(), lease_ms: 30_000 }
}

/// How `worker`'s first attempt at a job ended.
fn finishing(worker: &str, report: RunReport, policy: &RetryPolicy) -> Finishing {
    let policy = policy.clone();
    let output = OutputBatch::default();
    Finishing {
        worker: worker.into(),
        attempt: 1,
        report,
        policy,
        now: now_ms(),
        random: 0,
        output,
    }
}

fn report(outcome: Outcome) -> RunReport {
    RunReport { outcome, fuel_used: 10, duration: Duration::from_millis(1), memory_peak: 0 }
}

fn completed() -> RunReport {
    report(Outcome::Completed { result: r#"{"ok":true}"#.into() })
}

fn failed(kind: FailureKind) -> RunReport {
    report(Outcome::Failed { kind, message: format!("{kind} on purpose") })
}

async fn claim_names(storage: &dyn Storage, max: usize) -> Vec<String> {
    storage.claim(rules("w1", max)).await.unwrap().into_iter().map(|j| j.name.unwrap()).collect()
}

async fn last_reason(storage: &dyn Storage, id: Uuid) -> String {
    storage.events(id, 0).await.unwrap().pop().unwrap().reason
}

#[tokio::test]
async fn an_enqueued_job_is_durable_and_journaled() {
    let db = open().await;
    let enqueued = db.storage.enqueue(job("first"), now_ms()).await.unwrap();
    assert!(enqueued.created);
    assert_eq!(enqueued.job.state, JobState::Pending);
    let id = enqueued.job.id;

    let storage = db.restart().await.storage;
    let stored = storage.get(id).await.unwrap();
    assert_eq!(stored, enqueued.job);
    let events = storage.events(id, 0).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!((events[0].seq, events[0].state, events[0].from), (1, JobState::Pending, None));
    assert!(matches!(storage.get(Uuid::now_v7()).await, Err(StorageError::NotFound(_))));
}

#[tokio::test]
async fn claims_follow_priority_then_run_at_then_fifo() {
    let db = open().await;
    for (name, priority) in [("low", -1), ("first", 0), ("second", 0), ("urgent", 10), ("third", 0)]
    {
        db.storage.enqueue(NewJob { priority, ..job(name) }, now_ms()).await.unwrap();
    }
    assert_eq!(
        claim_names(db.storage.as_ref(), 10).await,
        ["urgent", "first", "second", "third", "low"]
    );
    assert!(
        claim_names(db.storage.as_ref(), 10).await.is_empty(),
        "a claimed job is not claimed again"
    );
}

#[tokio::test]
async fn claimed_jobs_run_under_a_lease_and_are_journaled() {
    let db = open().await;
    let id = db.storage.enqueue(job("leased"), now_ms()).await.unwrap().job.id;
    let claimed = db.storage.claim(rules("worker-7", 1)).await.unwrap();
    assert_eq!(claimed[0].id, id);
    let stored = db.storage.get(id).await.unwrap();
    assert_eq!(stored.state, JobState::Running);
    assert_eq!(stored.attempt, 1);
    assert_eq!(stored.worker.as_deref(), Some("worker-7"));
    assert!(stored.lease_until.unwrap() > now_ms());
    let last = db.storage.events(id, 1).await.unwrap();
    assert_eq!(last.len(), 1);
    assert_eq!((last[0].from, last[0].state), (Some(JobState::Pending), JobState::Running));
    assert_eq!(last[0].worker.as_deref(), Some("worker-7"));
}

#[tokio::test]
async fn delayed_jobs_wait_until_due() {
    let db = open().await;
    let now = now_ms();
    let later = db
        .storage
        .enqueue(NewJob { run_at: Some(now + 60_000), ..job("later") }, now_ms())
        .await
        .unwrap();
    assert_eq!(later.job.state, JobState::Scheduled);
    assert!(claim_names(db.storage.as_ref(), 10).await.is_empty());
    assert_eq!(db.storage.promote(now + 1_000).await.unwrap(), 0);
    assert_eq!(db.storage.promote(now + 60_000).await.unwrap(), 1);
    assert_eq!(db.storage.get(later.job.id).await.unwrap().state, JobState::Pending);
    assert_eq!(claim_names(db.storage.as_ref(), 10).await, ["later"]);
}

#[tokio::test]
async fn paused_queues_and_queue_concurrency_are_honoured() {
    let db = open().await;
    for name in ["a1", "a2", "a3"] {
        db.storage
            .enqueue(NewJob { queue: "reports".into(), ..job(name) }, now_ms())
            .await
            .unwrap();
    }
    db.storage.enqueue(job("other"), now_ms()).await.unwrap();
    db.storage
        .set_queue(
            "reports",
            QueueSettings { paused: true, concurrency: None, ..QueueSettings::default() },
        )
        .await
        .unwrap();
    assert_eq!(claim_names(db.storage.as_ref(), 10).await, ["other"]);

    let limited = QueueSettings { paused: false, concurrency: Some(2), ..QueueSettings::default() };
    db.storage.set_queue("reports", limited.clone()).await.unwrap();
    assert_eq!(db.storage.queue("reports").await.unwrap(), limited);
    assert_eq!(claim_names(db.storage.as_ref(), 10).await, ["a1", "a2"]);
    assert!(claim_names(db.storage.as_ref(), 10).await.is_empty(), "the queue is full");
}

#[tokio::test]
async fn claims_go_round_the_tenants_one_job_each() {
    let db = open().await;
    for i in 0..4 {
        let urgent = NewJob { priority: 1000, ..job(&format!("acme-{i}")) };
        db.storage.enqueue(urgent, now_ms()).await.unwrap();
    }
    for tenant in ["globex", "initech"] {
        let theirs = NewJob { tenant: tenant.into(), ..job(tenant) };
        db.storage.enqueue(theirs, now_ms()).await.unwrap();
    }
    let mut names = claim_names(db.storage.as_ref(), 4).await;
    names.sort();
    assert_eq!(names, ["acme-0", "acme-1", "globex", "initech"], "one each, then round again");
    assert_eq!(claim_names(db.storage.as_ref(), 10).await, ["acme-2", "acme-3"]);
}

#[tokio::test]
async fn a_job_waiting_for_a_held_lock_is_parked_and_comes_back_with_the_lock() {
    let db = open().await;
    let locked = |name| NewJob { lock: Some("acme/printer".into()), ..job(name) };
    let holder = db.storage.enqueue(locked("holder"), now_ms()).await.unwrap().job.id;
    assert_eq!(claim_names(db.storage.as_ref(), 1).await, ["holder"]);
    let waiter = db.storage.enqueue(locked("waiter"), now_ms()).await.unwrap().job.id;
    db.storage.enqueue(job("free"), now_ms()).await.unwrap();
    assert_eq!(claim_names(db.storage.as_ref(), 10).await, ["free"], "the waiter is passed");
    assert_eq!(db.storage.get(waiter).await.unwrap().state, JobState::Pending);
    assert_eq!(db.storage.waiting("acme").await.unwrap(), 1, "a parked job still waits");
    let done = finishing("w1", completed(), &RetryPolicy::default());
    db.storage.finish(holder, done).await.unwrap();
    assert_eq!(claim_names(db.storage.as_ref(), 10).await, ["waiter"], "back with the lock");
    let cancelled = db.storage.enqueue(locked("cancelled"), now_ms()).await.unwrap().job.id;
    assert!(claim_names(db.storage.as_ref(), 10).await.is_empty(), "parked behind the waiter");
    db.storage.cancel(cancelled, now_ms()).await.unwrap();
    assert_eq!(db.storage.waiting("acme").await.unwrap(), 0, "a cancelled parked job is gone");
}

#[tokio::test]
async fn tenants_are_held_to_their_running_quota() {
    let db = open_with(TenantDefaults { max_running: Some(1), ..TenantDefaults::default() }).await;
    for name in ["acme-1", "acme-2", "acme-3"] {
        db.storage.enqueue(job(name), now_ms()).await.unwrap();
    }
    db.storage
        .enqueue(NewJob { tenant: "globex".into(), ..job("globex-1") }, now_ms())
        .await
        .unwrap();
    assert_eq!(claim_names(db.storage.as_ref(), 10).await, ["acme-1", "globex-1"]);

    let generous =
        TenantRecord { name: "acme".into(), max_running: Some(3), ..TenantRecord::default() };
    db.storage.put_tenant(generous).await.unwrap();
    assert_eq!(
        claim_names(db.storage.as_ref(), 10).await,
        ["acme-2", "acme-3"],
        "the tenant's own quota wins over the default"
    );
}

#[tokio::test]
async fn a_named_lock_is_held_while_running_and_can_be_cleared() {
    let db = open().await;
    let locked = |name| NewJob { lock: Some("devices".into()), ..job(name) };
    let first = db.storage.enqueue(locked("first"), now_ms()).await.unwrap().job.id;
    db.storage.enqueue(locked("second"), now_ms()).await.unwrap();
    db.storage.enqueue(job("free"), now_ms()).await.unwrap();
    assert_eq!(claim_names(db.storage.as_ref(), 10).await, ["first", "free"]);
    assert_eq!(db.storage.locks().await.unwrap(), [("devices".to_string(), first)]);

    db.storage.finish(first, finishing("w1", completed(), &RetryPolicy::default())).await.unwrap();
    assert!(db.storage.locks().await.unwrap().is_empty(), "finishing releases the lock");
    assert_eq!(claim_names(db.storage.as_ref(), 10).await, ["second"]);

    db.storage.clear_lock("devices").await.unwrap();
    assert!(db.storage.locks().await.unwrap().is_empty());
    assert!(matches!(db.storage.clear_lock("devices").await, Err(StorageError::NotFound(_))));
}

#[tokio::test]
async fn an_idempotency_key_returns_the_existing_job_per_tenant() {
    let db = open().await;
    let keyed = |tenant: &str| NewJob {
        tenant: tenant.into(),
        idempotency_key: Some("k-1".into()),
        ..job("keyed")
    };
    let first = db.storage.enqueue(keyed("acme"), now_ms()).await.unwrap();
    let again = db.storage.enqueue(keyed("acme"), now_ms()).await.unwrap();
    assert!(first.created && !again.created);
    assert_eq!(first.job.id, again.job.id);
    let other = db.storage.enqueue(keyed("globex"), now_ms()).await.unwrap();
    assert!(other.created, "keys are per tenant");
    assert_eq!(
        db.storage.list(&JobFilter::default(), Start::Offset(0), 10).await.unwrap().total,
        2
    );
}

#[tokio::test]
async fn retriable_failures_are_retried_with_backoff_until_max_retries() {
    let db = open().await;
    let backoff = Backoff { base_ms: 60_000, max_ms: 600_000 };
    let id = db
        .storage
        .enqueue(NewJob { max_retries: 1, backoff, ..job("flaky") }, now_ms())
        .await
        .unwrap()
        .job
        .id;
    db.storage.claim(rules("w1", 1)).await.unwrap();
    let before = now_ms();
    let retried = db
        .storage
        .finish(id, finishing("w1", failed(FailureKind::Timeout), &RetryPolicy::default()))
        .await
        .unwrap();
    assert_eq!(retried.state, JobState::Scheduled);
    assert!(
        retried.run_at >= before + 60_000 && retried.run_at <= now_ms() + 75_000,
        "{}",
        retried.run_at
    );
    assert_eq!(retried.error.as_ref().unwrap().kind, FailureKind::Timeout);
    let reason = last_reason(db.storage.as_ref(), id).await;
    assert!(reason.contains("retry 1 of 1"), "{reason}");

    db.storage.promote(retried.run_at).await.unwrap();
    let again = db.storage.claim(rules("w1", 1)).await.unwrap();
    assert_eq!(again[0].attempt, 2);
    let second = Finishing {
        attempt: 2,
        ..finishing("w1", failed(FailureKind::Timeout), &RetryPolicy::default())
    };
    let last = db.storage.finish(id, second).await.unwrap();
    assert_eq!(last.state, JobState::Failed, "attempts are used up");
    assert_eq!(last.fuel_used, 20, "fuel adds up over attempts");
}

#[tokio::test]
async fn a_job_that_names_its_retried_kinds_and_a_cancel_are_not_retried_otherwise() {
    let db = open().await;
    let only_timeouts = Some(vec![FailureKind::Timeout]);
    for (kind, state) in [
        (FailureKind::PluginError, JobState::Failed),
        (FailureKind::Cancelled, JobState::Cancelled),
    ] {
        let id = db
            .storage
            .enqueue(
                NewJob { max_retries: 5, retry_on: only_timeouts.clone(), ..job("once") },
                now_ms(),
            )
            .await
            .unwrap()
            .job
            .id;
        db.storage.claim(rules("w1", 1)).await.unwrap();
        let done = db
            .storage
            .finish(id, finishing("w1", failed(kind), &RetryPolicy::default()))
            .await
            .unwrap();
        assert_eq!(done.state, state);
        assert!(done.finished_at.is_some());
    }
    let everything = RetryPolicy { retriable: vec![FailureKind::Cancelled] };
    let id = db
        .storage
        .enqueue(NewJob { max_retries: 5, ..job("cancel") }, now_ms())
        .await
        .unwrap()
        .job
        .id;
    db.storage.claim(rules("w1", 1)).await.unwrap();
    let done = db
        .storage
        .finish(id, finishing("w1", failed(FailureKind::Cancelled), &everything))
        .await
        .unwrap();
    assert_eq!(done.state, JobState::Cancelled, "cancelled is never retried, whatever the policy");
}

#[tokio::test]
async fn a_worker_that_lost_its_lease_cannot_finish_the_job() {
    let db = open().await;
    let id = db.storage.enqueue(job("contested"), now_ms()).await.unwrap().job.id;
    db.storage.claim(rules("w1", 1)).await.unwrap();
    let err = db
        .storage
        .finish(id, finishing("w2", completed(), &RetryPolicy::default()))
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::Conflict(_)), "{err}");
    assert_eq!(db.storage.get(id).await.unwrap().state, JobState::Running);

    // w1's lease expires and w1 itself claims the job again: the first run
    // is told it lost the job, and can neither write output nor finish it.
    let now = now_ms();
    db.storage.recover(now + 60_000).await.unwrap();
    let again = db.storage.claim(rules("w1", 1)).await.unwrap();
    assert_eq!(again[0].attempt, 2);
    let lost = db.storage.renew("w1", vec![(id, 1), (id, 2)], now + 30_000).await.unwrap();
    assert_eq!(lost, [(id, 1)], "only the first run lost its lease");
    let line =
        OutputBatch { logs: vec![(now, LogLevel::Info, "stale".into())], ..OutputBatch::default() };
    let err = db.storage.append_output(id, 1, line).await.unwrap_err();
    assert!(matches!(err, StorageError::Conflict(_)), "{err}");
    assert!(db.storage.logs(id, 0, 10).await.unwrap().is_empty(), "the stale line is not kept");
    let stale_line = vec![(now, LogLevel::Info, "stale".to_string())];
    let stale_output = OutputBatch { logs: stale_line, ..OutputBatch::default() };
    let stale =
        Finishing { output: stale_output, ..finishing("w1", completed(), &RetryPolicy::default()) };
    let err = db.storage.finish(id, stale).await.unwrap_err();
    assert!(matches!(err, StorageError::Conflict(_)), "{err}");
    assert!(db.storage.logs(id, 0, 10).await.unwrap().is_empty(), "nor its output at finish");
    let current = Finishing { attempt: 2, ..finishing("w1", completed(), &RetryPolicy::default()) };
    assert_eq!(db.storage.finish(id, current).await.unwrap().state, JobState::Completed);
}

#[tokio::test]
async fn expired_leases_are_recovered_and_renewed_ones_are_not() {
    let db = open().await;
    let short = |name| NewJob { max_retries: 1, ..job(name) };
    let renewed = db.storage.enqueue(short("renewed"), now_ms()).await.unwrap().job.id;
    let lost = db.storage.enqueue(short("lost"), now_ms()).await.unwrap().job.id;
    let now = now_ms();
    db.storage.claim(ClaimRules { lease_ms: 1_000, now, ..rules("w1", 2) }).await.unwrap();
    let gone = db.storage.renew("w1", vec![(renewed, 1)], now + 60_000).await.unwrap();
    assert!(gone.is_empty(), "w1 holds the job it renews: {gone:?}");

    let recovered = db.storage.recover(now + 2_000).await.unwrap();
    assert_eq!(recovered, [lost]);
    let job = db.storage.get(lost).await.unwrap();
    assert_eq!(job.state, JobState::Pending);
    let reason = last_reason(db.storage.as_ref(), lost).await;
    assert!(reason.contains("lease of worker w1 expired"), "{reason}");
    assert_eq!(db.storage.get(renewed).await.unwrap().state, JobState::Running);

    for attempt in 2..=MAX_LEASES_LOST {
        let rules = ClaimRules { lease_ms: 1_000, now, ..rules("w2", 1) };
        let again = db.storage.claim(rules).await.unwrap();
        assert_eq!((again[0].id, again[0].attempt), (lost, attempt), "a lost lease is no failure");
        db.storage.recover(now + 2_000).await.unwrap();
    }
    let job = db.storage.get(lost).await.unwrap();
    assert_eq!(job.state, JobState::Failed, "it lost its worker {MAX_LEASES_LOST} times");
    assert_eq!(job.leases_lost, MAX_LEASES_LOST);
    assert_eq!(job.error.unwrap().kind, FailureKind::HostError);
}

#[tokio::test]
async fn a_job_not_started_by_expires_at_expires() {
    let db = open().await;
    let id = db
        .storage
        .enqueue(NewJob { expires_at: Some(now_ms() + 1_000), ..job("stale") }, now_ms())
        .await
        .unwrap()
        .job
        .id;
    db.storage
        .set_queue(
            "default",
            QueueSettings { paused: true, concurrency: None, ..QueueSettings::default() },
        )
        .await
        .unwrap();
    assert_eq!(db.storage.expire(now_ms()).await.unwrap(), 0, "not late yet");
    assert_eq!(db.storage.expire(now_ms() + 5_000).await.unwrap(), 1);
    assert_eq!(
        db.storage.get(id).await.unwrap().state,
        JobState::Expired,
        "even in a paused queue"
    );
    assert!(last_reason(db.storage.as_ref(), id).await.contains("expires_at"));
    let late = ClaimRules { now: now_ms() + 5_000, ..rules("w1", 1) };
    assert!(db.storage.claim(late).await.unwrap().is_empty());
}

#[tokio::test]
async fn cancel_ends_a_waiting_job_and_flags_a_running_one() {
    let db = open().await;
    let waiting = db.storage.enqueue(job("waiting"), now_ms()).await.unwrap().job.id;
    let cancelled = db.storage.cancel(waiting, now_ms()).await.unwrap();
    assert_eq!(cancelled.state, JobState::Cancelled);
    assert!(
        claim_names(db.storage.as_ref(), 10).await.is_empty(),
        "a cancelled job is never claimed"
    );
    let err = db.storage.cancel(waiting, now_ms()).await.unwrap_err();
    assert_eq!(err, StorageError::Conflict(format!("job {waiting} is already cancelled")));

    let running = db.storage.enqueue(job("running"), now_ms()).await.unwrap().job.id;
    db.storage.claim(rules("w1", 1)).await.unwrap();
    assert_eq!(db.storage.cancel(running, now_ms()).await.unwrap().state, JobState::Running);
    let reason = last_reason(db.storage.as_ref(), running).await;
    assert_eq!(reason, "cancel requested");
}

#[tokio::test]
async fn output_left_at_the_end_is_written_with_the_outcome() {
    let db = open().await;
    let id = db.storage.enqueue(job("short"), now_ms()).await.unwrap().job.id;
    db.storage.claim(rules("w1", 1)).await.unwrap();
    let early = OutputBatch {
        logs: vec![(now_ms(), LogLevel::Info, "first".into())],
        ..OutputBatch::default()
    };
    db.storage.append_output(id, 1, early).await.unwrap();
    let output = OutputBatch {
        logs: vec![(now_ms(), LogLevel::Warn, "last".into())],
        progress: Some(Progress { percent: 100.0, message: None }),
        metadata: [("rows".to_string(), serde_json::json!(3))].into(),
    };
    let end = Finishing { output, ..finishing("w1", completed(), &RetryPolicy::default()) };
    let done = db.storage.finish(id, end).await.unwrap();
    assert_eq!(done.state, JobState::Completed);
    assert_eq!(done.progress.as_ref().unwrap().percent, 100.0);
    assert_eq!(done.plugin_metadata["rows"], 3);
    assert_eq!(db.storage.get(id).await.unwrap(), done, "the record returned is the one stored");
    let logs = db.storage.logs(id, 0, 10).await.unwrap();
    let lines: Vec<(u64, &str)> = logs.iter().map(|l| (l.seq, l.message.as_str())).collect();
    assert_eq!(lines, [(1, "first"), (2, "last")], "the last line follows the flushed ones");
}

#[tokio::test]
async fn output_is_appended_and_logs_page() {
    let db = open().await;
    let id = db.storage.enqueue(job("chatty"), now_ms()).await.unwrap().job.id;
    db.storage.claim(rules("w1", 1)).await.unwrap();
    let logs = (1..=5).map(|i| (now_ms(), LogLevel::Info, format!("line {i}"))).collect();
    let batch = OutputBatch {
        logs,
        progress: Some(Progress { percent: 40.0, message: Some("reading".into()) }),
        metadata: [("rows".to_string(), serde_json::json!(12))].into(),
    };
    db.storage.append_output(id, 1, batch).await.unwrap();
    let more = OutputBatch {
        logs: vec![(now_ms(), LogLevel::Warn, "line 6".into())],
        ..OutputBatch::default()
    };
    db.storage.append_output(id, 1, more).await.unwrap();

    let page: Vec<String> =
        db.storage.logs(id, 2, 3).await.unwrap().into_iter().map(|l| l.message).collect();
    assert_eq!(page, ["line 3", "line 4", "line 5"]);
    let tail = db.storage.logs(id, 5, 100).await.unwrap();
    assert_eq!((tail.len(), tail[0].seq, tail[0].level), (1, 6, LogLevel::Warn));
    let job = db.storage.get(id).await.unwrap();
    assert_eq!(job.progress.unwrap().percent, 40.0);
    assert_eq!(job.plugin_metadata["rows"], 12);
    assert!(job.metadata.is_empty(), "the client's metadata is its own");
}

#[tokio::test]
async fn metadata_a_job_sets_is_bounded_over_all_its_batches() {
    use jobhost::jobs::{MAX_METADATA_BYTES, MAX_METADATA_KEYS};
    let db = open().await;
    let id = db.storage.enqueue(job("greedy"), now_ms()).await.unwrap().job.id;
    db.storage.claim(rules("w1", 1)).await.unwrap();
    for round in 0..3 {
        let metadata = (0..MAX_METADATA_KEYS)
            .map(|i| (format!("key-{round}-{i}"), serde_json::json!("x".repeat(1000))))
            .collect();
        let batch = OutputBatch { metadata, ..OutputBatch::default() };
        db.storage.append_output(id, 1, batch).await.unwrap();
    }
    let job = db.storage.get(id).await.unwrap();
    assert_eq!(job.plugin_metadata.len(), MAX_METADATA_KEYS);
    let bytes: usize = job.plugin_metadata.iter().map(|(k, v)| k.len() + v.to_string().len()).sum();
    assert!(bytes <= MAX_METADATA_BYTES, "{bytes}");
    assert!(job.plugin_metadata.contains_key("key-0-0"), "the first keys stay");
}

#[tokio::test]
async fn lists_filter_page_and_count() {
    let db = open().await;
    for i in 0..5 {
        db.storage.enqueue(job(&format!("report {i}")), now_ms()).await.unwrap();
    }
    db.storage
        .enqueue(NewJob { tenant: "globex".into(), queue: "q2".into(), ..job("theirs") }, now_ms())
        .await
        .unwrap();
    let acme = JobFilter { tenant: Some("acme".into()), ..JobFilter::default() };
    let page = db.storage.list(&acme, Start::Offset(1), 2).await.unwrap();
    assert_eq!(page.total, 5);
    let names: Vec<_> = page.jobs.iter().map(|j| j.name.clone().unwrap()).collect();
    assert_eq!(names, ["report 3", "report 2"], "newest first");
    let search = JobFilter { search: Some("THEIRS".into()), ..JobFilter::default() };
    assert_eq!(db.storage.list(&search, Start::Offset(0), 10).await.unwrap().total, 1);
    let queue = JobFilter {
        queue: Some("q2".into()),
        state: Some(JobState::Pending),
        ..JobFilter::default()
    };
    assert_eq!(db.storage.list(&queue, Start::Offset(0), 10).await.unwrap().total, 1);
}

#[tokio::test]
async fn queue_position_counts_the_jobs_ahead() {
    let db = open().await;
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(db.storage.enqueue(job(&format!("j{i}")), now_ms()).await.unwrap().job.id);
    }
    assert_eq!(db.storage.queue_position(ids[2]).await.unwrap(), Some(2));
    db.storage.claim(rules("w1", 1)).await.unwrap();
    assert_eq!(db.storage.queue_position(ids[0]).await.unwrap(), None, "running");
    assert_eq!(db.storage.queue_position(ids[2]).await.unwrap(), Some(1));
}

#[tokio::test]
async fn retry_makes_a_new_job_linked_both_ways() {
    let db = open().await;
    let id = db
        .storage
        .enqueue(NewJob { idempotency_key: Some("once".into()), ..job("original") }, now_ms())
        .await
        .unwrap()
        .job
        .id;
    let err = db.storage.retry(id, Resubmit::default(), now_ms()).await.unwrap_err();
    assert!(
        matches!(&err, StorageError::Conflict(m) if m.contains("only a finished job")),
        "{err}"
    );
    db.storage.claim(rules("w1", 1)).await.unwrap();
    db.storage
        .finish(id, finishing("w1", failed(FailureKind::PluginError), &RetryPolicy::default()))
        .await
        .unwrap();

    let new = db.storage.retry(id, Resubmit::default(), now_ms()).await.unwrap();
    assert_ne!(new.id, id);
    assert_eq!((new.state, new.retry_of, new.attempt), (JobState::Pending, Some(id), 0));
    assert_eq!((new.args.as_str(), new.name.as_deref()), ("{}", Some("original")));
    let old = db.storage.get(id).await.unwrap();
    assert_eq!((old.state, old.retried_by), (JobState::Failed, Some(new.id)));
    assert_eq!(last_reason(db.storage.as_ref(), id).await, format!("retried as {}", new.id));
    let again = db.storage.retry(id, Resubmit::default(), now_ms()).await.unwrap_err();
    assert!(
        matches!(&again, StorageError::Conflict(m) if m.contains("already retried")),
        "{again}"
    );
}

#[tokio::test]
async fn clone_enqueues_the_same_job_with_new_args() {
    let db = open().await;
    let id = db
        .storage
        .enqueue(NewJob { priority: 7, queue: "q".into(), ..job("template") }, now_ms())
        .await
        .unwrap()
        .job
        .id;
    let copy = db
        .storage
        .clone_job(
            id,
            Resubmit { args: Some(r#"{"name":"Bob"}"#.into()), ..Resubmit::default() },
            now_ms(),
        )
        .await
        .unwrap();
    assert_ne!(copy.id, id);
    assert_eq!(
        (copy.args.as_str(), copy.priority, copy.queue.as_str()),
        (r#"{"name":"Bob"}"#, 7, "q")
    );
    assert_eq!(copy.retry_of, None);
    assert!(matches!(
        db.storage.clone_job(Uuid::now_v7(), Resubmit::default(), now_ms()).await,
        Err(StorageError::NotFound(_))
    ));
}

#[tokio::test]
async fn remove_deletes_a_finished_job_with_its_history() {
    let db = open().await;
    let keyed = NewJob { idempotency_key: Some("k".into()), ..job("doomed") };
    let id = db.storage.enqueue(keyed.clone(), now_ms()).await.unwrap().job.id;
    let err = db.storage.remove(id).await.unwrap_err();
    assert!(matches!(&err, StorageError::Conflict(m) if m.contains("cancel it")), "{err}");
    db.storage.claim(rules("w1", 1)).await.unwrap();
    db.storage
        .append_output(
            id,
            1,
            OutputBatch {
                logs: vec![(now_ms(), LogLevel::Info, "x".into())],
                ..OutputBatch::default()
            },
        )
        .await
        .unwrap();
    db.storage.finish(id, finishing("w1", completed(), &RetryPolicy::default())).await.unwrap();
    db.storage.remove(id).await.unwrap();
    assert!(matches!(db.storage.get(id).await, Err(StorageError::NotFound(_))));
    assert!(matches!(db.storage.events(id, 0).await, Err(StorageError::NotFound(_))));
    assert!(
        db.storage.enqueue(keyed, now_ms()).await.unwrap().created,
        "its idempotency key is free again"
    );
}

#[tokio::test]
async fn prune_deletes_only_jobs_finished_before_the_cutoff() {
    let db = open().await;
    let old = db.storage.enqueue(job("old"), now_ms()).await.unwrap().job.id;
    db.storage.cancel(old, now_ms()).await.unwrap();
    let waiting = db.storage.enqueue(job("waiting"), now_ms()).await.unwrap().job.id;
    assert_eq!(db.storage.prune(now_ms() - 60_000, 100).await.unwrap(), 0, "nothing is that old");
    assert_eq!(db.storage.prune(now_ms() + 1, 100).await.unwrap(), 1);
    assert!(matches!(db.storage.get(old).await, Err(StorageError::NotFound(_))));
    assert_eq!(
        db.storage.get(waiting).await.unwrap().state,
        JobState::Pending,
        "unfinished jobs stay"
    );
}

#[tokio::test]
async fn queue_stats_count_states_rates_and_stuck_jobs() {
    let db = open().await;
    for name in ["ok-1", "ok-2", "ok-3", "bad"] {
        db.storage.enqueue(job(name), now_ms()).await.unwrap();
    }
    db.storage
        .set_queue(
            "default",
            QueueSettings { paused: false, concurrency: Some(3), ..QueueSettings::default() },
        )
        .await
        .unwrap();
    let claimed = db.storage.claim(rules("w1", 3)).await.unwrap();
    for job in &claimed[..2] {
        db.storage
            .finish(job.id, finishing("w1", completed(), &RetryPolicy::default()))
            .await
            .unwrap();
    }
    db.storage
        .finish(claimed[2].id, finishing("w1", failed(FailureKind::Trap), &RetryPolicy::default()))
        .await
        .unwrap();
    let stuck = db.storage.claim(ClaimRules { lease_ms: 0, ..rules("w1", 1) }).await.unwrap();
    assert_eq!(stuck.len(), 1);
    let theirs = NewJob { queue: "other".into(), tenant: "globex".into(), ..job("theirs") };
    db.storage.enqueue(theirs, now_ms()).await.unwrap();

    let now = now_ms() + 1;
    let stats = db.storage.queue_stats(Some("acme"), now, 3_600_000, 600_000).await.unwrap();
    assert_eq!(stats.len(), 1, "another tenant's queue is not shown");
    let queue = &stats[0];
    assert_eq!(queue.queue, "default");
    assert_eq!(queue.settings.concurrency, Some(3));
    assert_eq!(queue.counts.get("completed"), Some(&2));
    assert_eq!(queue.counts.get("failed"), Some(&1));
    assert_eq!(queue.counts.get("running"), Some(&1));
    assert_eq!(queue.stuck, 1, "the running job's lease expired");
    assert_eq!(queue.success_rate, Some(2.0 / 3.0));
    assert!(queue.average_duration_ms.is_some());
    assert!((queue.throughput_per_minute - 3.0 / 60.0).abs() < 1e-9);
    let all = db.storage.queue_stats(None, now, 3_600_000, 600_000).await.unwrap();
    assert_eq!(all.iter().map(|q| q.queue.as_str()).collect::<Vec<_>>(), ["default", "other"]);
}

#[tokio::test]
async fn broadcast_jobs_run_once_on_every_live_worker() {
    let db = open().await;
    let now = now_ms();
    db.storage.heartbeat("w1", 4, 0, now).await.unwrap();
    db.storage.heartbeat("w2", 4, 0, now).await.unwrap();
    db.storage.heartbeat("gone", 4, 0, now - 120_000).await.unwrap();
    let copies =
        db.storage.enqueue_broadcast(job("everywhere"), now - 60_000, now_ms()).await.unwrap();
    let mut pinned: Vec<_> = copies.iter().map(|j| j.pinned_to.clone().unwrap()).collect();
    pinned.sort();
    assert_eq!(pinned, ["w1", "w2"], "one copy per live worker");
    let mine = db.storage.claim(rules("w1", 10)).await.unwrap();
    assert_eq!(mine.len(), 1, "w1 runs its own copy only");
    assert_eq!(mine[0].pinned_to.as_deref(), Some("w1"));
    assert_eq!(db.storage.claim(rules("w2", 10)).await.unwrap().len(), 1);
    let err = db.storage.enqueue_broadcast(job("nobody"), now + 1, now_ms()).await.unwrap_err();
    assert!(matches!(err, StorageError::Conflict(_)), "{err}");

    // Room for one more job, two live workers: refused whole, nothing stored.
    let quota =
        TenantRecord { name: "acme".into(), max_queued: Some(1), ..TenantRecord::default() };
    db.storage.put_tenant(quota).await.unwrap();
    let before = db.storage.list(&JobFilter::default(), Start::Offset(0), 100).await.unwrap().total;
    let refused = db.storage.enqueue_broadcast(job("too many"), now - 60_000, now_ms()).await;
    let err = refused.unwrap_err();
    assert!(
        matches!(err, StorageError::OverQuota(_)) && err.to_string().contains("2 workers"),
        "{err}"
    );
    let after = db.storage.list(&JobFilter::default(), Start::Offset(0), 100).await.unwrap().total;
    assert_eq!(after, before, "a refused broadcast leaves no copy behind");
}

#[tokio::test]
async fn workers_report_heartbeats_and_keep_their_mode() {
    let db = open().await;
    assert_eq!(db.storage.heartbeat("w1", 8, 0, 1_000).await.unwrap(), WorkerMode::Active);
    db.storage.set_worker_mode("w1", WorkerMode::Draining).await.unwrap();
    assert_eq!(db.storage.heartbeat("w1", 8, 3, 2_000).await.unwrap(), WorkerMode::Draining);
    let workers = db.storage.workers().await.unwrap();
    assert_eq!(workers.len(), 1);
    let w = &workers[0];
    assert_eq!(
        (w.slots, w.running, w.heartbeat, w.started_at, w.mode),
        (8, 3, 2_000, 1_000, WorkerMode::Draining)
    );
    assert!(matches!(
        db.storage.set_worker_mode("nope", WorkerMode::Paused).await,
        Err(StorageError::NotFound(_))
    ));
}

#[tokio::test]
async fn plugins_are_stored_per_tenant_with_shared_component_bytes() {
    let db = open().await;
    for tenant in ["acme", "globex", "ac", "acme2"] {
        db.storage.put_plugin(plugin_record(tenant), b"abc".to_vec()).await.unwrap();
    }
    assert_eq!(db.storage.plugins(Some("acme")).await.unwrap(), [plugin_record("acme")]);
    assert_eq!(db.storage.plugins(None).await.unwrap().len(), 4);
    let acme = db.storage.plugin("acme", "examples.hello").await.unwrap();
    assert_eq!(acme, Some(plugin_record("acme")));
    assert_eq!(db.storage.plugin("acme", "examples.other").await.unwrap(), None);
    assert_eq!(db.storage.plugin("initech", "examples.hello").await.unwrap(), None);
    for tenant in ["ac", "acme2", "acme"] {
        db.storage.remove_plugin(tenant, "examples.hello").await.unwrap();
    }
    assert_eq!(db.storage.component("sha256:abc").await.unwrap(), b"abc", "globex still uses it");
    db.storage.remove_plugin("globex", "examples.hello").await.unwrap();
    assert!(matches!(db.storage.component("sha256:abc").await, Err(StorageError::NotFound(_))));
    assert!(matches!(
        db.storage.remove_plugin("acme", "examples.hello").await,
        Err(StorageError::NotFound(_))
    ));
}

#[tokio::test]
async fn tokens_and_tenants_are_stored() {
    let db = open().await;
    let token = TokenRecord {
        name: "ci".into(),
        tenant: "acme".into(),
        role: Role::Submitter,
        created_at: 5,
    };
    db.storage.put_token("hash-1", token.clone()).await.unwrap();
    assert_eq!(db.storage.token("hash-1").await.unwrap(), Some(token.clone()));
    assert_eq!(db.storage.token("hash-2").await.unwrap(), None);
    assert_eq!(db.storage.tokens().await.unwrap(), [("hash-1".to_string(), token)]);
    db.storage.remove_token("hash-1").await.unwrap();
    assert!(matches!(db.storage.remove_token("hash-1").await, Err(StorageError::NotFound(_))));

    assert_eq!(db.storage.tenant("acme").await.unwrap().max_running, None);
    let quotas = TenantRecord {
        name: "acme".into(),
        max_running: Some(2),
        max_queued: Some(100),
        ..TenantRecord::default()
    };
    db.storage.put_tenant(quotas.clone()).await.unwrap();
    assert_eq!(db.storage.tenant("acme").await.unwrap(), quotas);
}

/// Enqueues from many tasks at once (single jobs and batches, as the API
/// requests of several hosts make them) fill a tenant's `max_queued`
/// exactly: never one over, and none refused below it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queued_quota_holds_exactly_under_concurrent_enqueues() {
    const CAP: u32 = 400;
    let db = open().await;
    let quota =
        TenantRecord { name: "acme".into(), max_queued: Some(CAP), ..TenantRecord::default() };
    db.storage.put_tenant(quota).await.unwrap();
    let storage: std::sync::Arc<dyn Storage> = db.storage.into();
    let tasks = (0..24).map(|task| {
        let storage = storage.clone();
        tokio::spawn(async move {
            let (mut admitted, mut round) = (0, 0);
            loop {
                round += 1;
                let name = format!("task {task} round {round}");
                let results = if task % 4 == 0 {
                    let batch = (0..5).map(|i| job(&format!("{name} #{i}"))).collect();
                    storage.enqueue_many(batch, now_ms()).await.unwrap()
                } else {
                    vec![storage.enqueue(job(&name), now_ms()).await]
                };
                for result in &results {
                    match result {
                        Ok(_) => admitted += 1,
                        Err(StorageError::OverQuota(_)) => {}
                        Err(e) => panic!("{name}: {e}"),
                    }
                }
                if results.iter().any(Result::is_err) {
                    return admitted;
                }
            }
        })
    });
    let admitted: u32 = futures::future::join_all(tasks).await.into_iter().map(|t| t.unwrap()).sum();
    assert_eq!(admitted, CAP, "admitted up to the cap, not one over");
    assert_eq!(storage.waiting("acme").await.unwrap(), u64::from(CAP));
    let filter = JobFilter { tenant: Some("acme".into()), ..JobFilter::default() };
    assert_eq!(storage.list(&filter, Start::Offset(0), 1).await.unwrap().total, CAP as usize);
}

#[tokio::test]
async fn the_queued_quota_counts_waiting_jobs_and_survives_a_restart() {
    let db = open().await;
    let quota =
        TenantRecord { name: "acme".into(), max_queued: Some(2), ..TenantRecord::default() };
    db.storage.put_tenant(quota).await.unwrap();
    db.storage.enqueue(job("now"), now_ms()).await.unwrap();
    let later = NewJob { run_at: Some(now_ms() + 3_600_000), ..job("later") };
    db.storage.enqueue(later, now_ms()).await.unwrap();
    assert_eq!(db.storage.waiting("acme").await.unwrap(), 2, "pending and scheduled both wait");
    let over = db.storage.enqueue(job("third"), now_ms()).await;
    assert!(matches!(over, Err(StorageError::OverQuota(ref m)) if m.contains("max_queued")));
    let other = NewJob { tenant: "other".into(), ..job("theirs") };
    db.storage.enqueue(other, now_ms()).await.unwrap();

    let storage = db.restart().await.storage;
    assert_eq!(storage.waiting("acme").await.unwrap(), 2, "the count outlives the process");
    assert!(storage.enqueue(job("after restart"), now_ms()).await.is_err());
    let claimed = storage.claim(rules("w1", 10)).await.unwrap();
    assert_eq!(claimed.len(), 2, "acme's ready job and other's");
    assert_eq!(storage.waiting("acme").await.unwrap(), 1, "a claimed job no longer waits");
    storage.enqueue(job("fits again"), now_ms()).await.unwrap();
}
