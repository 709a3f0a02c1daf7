//! [`Storage`] on an embedded redb file. Reads open their own read
//! transaction (MVCC: they never wait for writes); writes go through the
//! group-commit [`Writer`].

use super::claim;
use super::record::{JobError, JobEvent, JobRecord, JobState, LogLine, Millis, NewJob, now_ms};
use super::record::{PluginRecord, TenantRecord, TokenRecord, WorkerMode, WorkerRecord};
use super::schema::{
    CALLBACKS, COMPONENTS, EVENTS, IDEMPOTENCY, JOBS, LOCKS, LOGS, PENDING, PLUGINS, QUEUES,
    RUNNING, SCHEDULED, TENANTS, TOKENS, WAITING, WORKERS, decode, encode, pending_key,
    pending_key_id, scheduled_key,
};
use super::writer::{CommitStats, Writer};
use super::{
    Callback, ClaimRules, Enqueued, JobFilter, JobPage, Lease, MAX_LEASES_LOST, OutputBatch,
    QueueSettings, QueueStats, Resubmit, RetryPolicy, Storage, StorageError,
};
use crate::runtime::{FailureKind, Outcome, RunReport};
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, WriteTransaction};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use uuid::Uuid;

/// The embedded storage: one redb file. Clones share it; the file closes
/// when the last clone is dropped.
#[derive(Clone)]
pub struct RedbStorage {
    db: Arc<Database>,
    writer: Writer,
}

impl std::fmt::Debug for RedbStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStorage").finish_non_exhaustive()
    }
}

macro_rules! backend_errors {
    ($($error:ty),*) => {$(
        impl From<$error> for StorageError {
            fn from(error: $error) -> Self {
                StorageError::Backend(error.to_string())
            }
        }
    )*};
}
backend_errors!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

impl RedbStorage {
    /// Opens (or creates) the database file at `path` and creates its tables.
    pub fn open(path: &Path) -> Result<RedbStorage, StorageError> {
        let db = Database::create(path)?;
        let txn = db.begin_write()?;
        {
            txn.open_table(JOBS)?;
            txn.open_table(PENDING)?;
            txn.open_table(SCHEDULED)?;
            txn.open_table(RUNNING)?;
            txn.open_table(EVENTS)?;
            txn.open_table(LOGS)?;
            txn.open_table(IDEMPOTENCY)?;
            txn.open_table(LOCKS)?;
            txn.open_table(QUEUES)?;
            txn.open_table(WORKERS)?;
            txn.open_table(PLUGINS)?;
            txn.open_table(COMPONENTS)?;
            txn.open_table(TOKENS)?;
            txn.open_table(TENANTS)?;
            txn.open_table(CALLBACKS)?;
            txn.open_table(WAITING)?;
            recount_waiting(&txn)?;
        }
        txn.commit()?;
        let db = Arc::new(db);
        Ok(RedbStorage { writer: Writer::start(db.clone()), db })
    }
}

pub(super) fn read_job(
    table: &impl ReadableTable<u128, &'static [u8]>,
    id: Uuid,
) -> Result<JobRecord, StorageError> {
    match table.get(id.as_u128())? {
        Some(bytes) => decode(bytes.value()),
        None => Err(StorageError::NotFound(format!("job {id}"))),
    }
}

pub(super) fn put_job(txn: &WriteTransaction, job: &JobRecord) -> Result<(), StorageError> {
    txn.open_table(JOBS)?.insert(job.id.as_u128(), encode(job).as_slice())?;
    Ok(())
}

/// Appends an event to the job's journal: the transition from `from` to the
/// job's current state, at `at` (the time the transition was decided, so
/// the journal and the times it explains agree).
pub(super) fn journal(
    txn: &WriteTransaction,
    job: &JobRecord,
    from: Option<JobState>,
    at: Millis,
    reason: impl Into<String>,
) -> Result<JobEvent, StorageError> {
    let mut events = txn.open_table(EVENTS)?;
    let id = job.id.as_u128();
    let last = events.range((id, 0)..=(id, u64::MAX))?.next_back().transpose()?;
    let seq = last.map_or(0, |(key, _)| key.value().1) + 1;
    let event = JobEvent {
        seq,
        at,
        state: job.state,
        from,
        worker: job.worker.clone(),
        reason: reason.into(),
    };
    events.insert((id, seq), encode(&event).as_slice())?;
    // Every way of finishing passes here, in the transaction that finishes
    // the job, so no completion webhook can be lost.
    if job.state.is_terminal() && from != Some(job.state) && job.callback_url.is_some() {
        txn.open_table(CALLBACKS)?.insert((event.at, id), 0)?;
    }
    Ok(event)
}

/// Puts a waiting job in the index its state calls for, and counts it.
fn index_waiting(txn: &WriteTransaction, job: &JobRecord) -> Result<(), StorageError> {
    match job.state {
        JobState::Pending => {
            txn.open_table(PENDING)?.insert(pending_key(job).as_slice(), job.queue.as_str())?;
        }
        JobState::Scheduled => {
            txn.open_table(SCHEDULED)?.insert(scheduled_key(job), ())?;
        }
        _ => return Ok(()),
    }
    count_waiting(txn, &job.tenant, 1)
}

/// Removes a waiting job from its index, and uncounts it.
pub(super) fn unindex_waiting(txn: &WriteTransaction, job: &JobRecord) -> Result<(), StorageError> {
    match job.state {
        JobState::Pending => {
            txn.open_table(PENDING)?.remove(pending_key(job).as_slice())?;
        }
        JobState::Scheduled => {
            txn.open_table(SCHEDULED)?.remove(scheduled_key(job))?;
        }
        _ => return Ok(()),
    }
    count_waiting(txn, &job.tenant, -1)
}

fn count_waiting(txn: &WriteTransaction, tenant: &str, delta: i64) -> Result<(), StorageError> {
    let mut table = txn.open_table(WAITING)?;
    let count = table.get(tenant)?.map_or(0, |v| v.value()).saturating_add_signed(delta);
    if count == 0 {
        table.remove(tenant)?;
    } else {
        table.insert(tenant, count)?;
    }
    Ok(())
}

/// Jobs of `tenant` waiting to run.
fn waiting(
    table: &impl ReadableTable<&'static str, u64>,
    tenant: &str,
) -> Result<u64, StorageError> {
    Ok(table.get(tenant)?.map_or(0, |v| v.value()))
}

/// Counts the waiting jobs of every tenant from the indexes when the file
/// has waiting jobs but no counts: it was written before the counts were
/// kept. After that the index helpers keep them in the same transactions as
/// the indexes, so they stay right through any crash and an open costs
/// nothing.
fn recount_waiting(txn: &WriteTransaction) -> Result<(), StorageError> {
    let nothing_waits =
        txn.open_table(PENDING)?.is_empty()? && txn.open_table(SCHEDULED)?.is_empty()?;
    if nothing_waits || !txn.open_table(WAITING)?.is_empty()? {
        return Ok(());
    }
    let mut ids: Vec<u128> = Vec::new();
    for entry in txn.open_table(PENDING)?.iter()? {
        ids.push(pending_key_id(entry?.0.value()).as_u128());
    }
    for entry in txn.open_table(SCHEDULED)?.iter()? {
        ids.push(entry?.0.value().1);
    }
    let mut counts: HashMap<String, u64> = HashMap::new();
    let jobs = txn.open_table(JOBS)?;
    for id in ids {
        *counts.entry(read_job(&jobs, Uuid::from_u128(id))?.tenant).or_default() += 1;
    }
    let mut table = txn.open_table(WAITING)?;
    for (tenant, count) in counts {
        table.insert(tenant.as_str(), count)?;
    }
    Ok(())
}

/// Takes a running job out of the running index and releases its lock.
fn release(txn: &WriteTransaction, job: &mut JobRecord) -> Result<(), StorageError> {
    txn.open_table(RUNNING)?.remove(job.id.as_u128())?;
    if let Some(lock) = &job.lock {
        let mut locks = txn.open_table(LOCKS)?;
        let held_by_job =
            locks.get(lock.as_str())?.is_some_and(|holder| holder.value() == job.id.as_u128());
        if held_by_job {
            locks.remove(lock.as_str())?;
        }
    }
    job.lease_until = None;
    Ok(())
}

fn enqueue(txn: &WriteTransaction, new: NewJob) -> Result<Enqueued, StorageError> {
    if let Some(key) = &new.idempotency_key {
        let existing = txn
            .open_table(IDEMPOTENCY)?
            .get((new.tenant.as_str(), key.as_str()))?
            .map(|id| id.value());
        if let Some(id) = existing {
            let job = read_job(&txn.open_table(JOBS)?, Uuid::from_u128(id))?;
            return Ok(Enqueued { job, created: false });
        }
    }
    check_queued_quota(txn, &new.tenant)?;
    let job = JobRecord::new(new, now_ms());
    put_job(txn, &job)?;
    index_waiting(txn, &job)?;
    if let Some(key) = &job.idempotency_key {
        txn.open_table(IDEMPOTENCY)?
            .insert((job.tenant.as_str(), key.as_str()), job.id.as_u128())?;
    }
    let reason = match job.state {
        JobState::Scheduled => format!("enqueued to run at {}", job.run_at),
        _ => "enqueued".to_string(),
    };
    journal(txn, &job, None, job.created_at, reason)?;
    Ok(Enqueued { job, created: true })
}

/// Refuses a new job of a tenant that has its `max_queued` jobs waiting.
fn check_queued_quota(txn: &WriteTransaction, tenant: &str) -> Result<(), StorageError> {
    let record = txn.open_table(TENANTS)?.get(tenant)?.map(|v| v.value().to_vec());
    let max = match record {
        Some(record) => decode::<TenantRecord>(&record)?.queued_quota(),
        None => TenantRecord::DEFAULT_MAX_QUEUED,
    };
    let waiting = waiting(&txn.open_table(WAITING)?, tenant)?;
    if waiting >= u64::from(max) {
        return Err(StorageError::OverQuota(format!(
            "tenant {tenant:?} has {waiting} jobs waiting, its max_queued quota is {max}"
        )));
    }
    Ok(())
}

fn finish(
    txn: &WriteTransaction,
    id: Uuid,
    worker: &str,
    report: RunReport,
    policy: &RetryPolicy,
) -> Result<JobRecord, StorageError> {
    let mut job = read_job(&txn.open_table(JOBS)?, id)?;
    if job.state != JobState::Running || job.worker.as_deref() != Some(worker) {
        return Err(StorageError::Conflict(format!(
            "job {id} is not running on worker {worker}: its lease was lost"
        )));
    }
    release(txn, &mut job)?;
    let now = now_ms();
    job.fuel_used += report.fuel_used;
    let reason = match report.outcome {
        Outcome::Completed { result } => {
            job.state = JobState::Completed;
            job.result = Some(result);
            job.error = None;
            job.finished_at = Some(now);
            "completed".to_string()
        }
        Outcome::Failed { kind, message } => {
            let retry = policy.retries(kind) && job.attempt <= job.max_retries;
            job.error = Some(JobError { kind, message });
            if retry {
                let delay = job.backoff.delay_ms(job.attempt);
                job.run_at = now + delay;
                job.state = if delay == 0 { JobState::Pending } else { JobState::Scheduled };
                index_waiting(txn, &job)?;
                format!("{kind}; retry {} of {} in {delay} ms", job.attempt, job.max_retries)
            } else {
                job.state = if kind == FailureKind::Cancelled {
                    JobState::Cancelled
                } else {
                    JobState::Failed
                };
                job.finished_at = Some(now);
                kind.to_string()
            }
        }
    };
    put_job(txn, &job)?;
    journal(txn, &job, Some(JobState::Running), now, reason)?;
    Ok(job)
}

fn recover(txn: &WriteTransaction, before: Millis) -> Result<Vec<Uuid>, StorageError> {
    let expired: Vec<u128> = txn
        .open_table(RUNNING)?
        .iter()?
        .map(|entry| -> Result<Option<u128>, StorageError> {
            let (id, lease) = entry?;
            let lease: Lease = decode(lease.value())?;
            Ok((lease.until < before).then_some(id.value()))
        })
        .filter_map(Result::transpose)
        .collect::<Result<_, _>>()?;
    let mut recovered = Vec::new();
    for id in expired {
        let job = read_job(&txn.open_table(JOBS)?, Uuid::from_u128(id))?;
        recovered.push(take_off_worker(txn, job, Release::LeaseExpired)?.id);
    }
    Ok(recovered)
}

fn hand_back(
    txn: &WriteTransaction,
    worker: &str,
    ids: &[Uuid],
) -> Result<Vec<JobRecord>, StorageError> {
    let mut handed = Vec::new();
    for id in ids {
        let job = read_job(&txn.open_table(JOBS)?, *id)?;
        if job.state == JobState::Running && job.worker.as_deref() == Some(worker) {
            handed.push(take_off_worker(txn, job, Release::HandedBack)?);
        }
    }
    Ok(handed)
}

/// Why a running job leaves its worker without an outcome.
#[derive(Clone, Copy, PartialEq)]
enum Release {
    /// The worker died: counts toward [`MAX_LEASES_LOST`].
    LeaseExpired,
    /// The worker stopped and gave it back: as if the attempt never began.
    HandedBack,
}

/// Takes a running job off its worker: back to pending, or finished when
/// it must not run again (a cancel was asked, a broadcast copy pinned to
/// that worker, a job that lost its worker too often).
fn take_off_worker(
    txn: &WriteTransaction,
    mut job: JobRecord,
    why: Release,
) -> Result<JobRecord, StorageError> {
    let now = now_ms();
    release(txn, &mut job)?;
    let worker = job.worker.clone().unwrap_or_default();
    let what = match why {
        Release::LeaseExpired => {
            job.leases_lost += 1;
            format!("lease of worker {worker} expired")
        }
        Release::HandedBack => {
            job.attempt = job.attempt.saturating_sub(1);
            format!("worker {worker} stopped and handed the job back")
        }
    };
    let mut fail = |message: String| {
        job.state = JobState::Failed;
        job.finished_at = Some(now);
        job.error = Some(JobError { kind: FailureKind::HostError, message: message.clone() });
        message
    };
    let reason = if job.cancel_requested {
        job.state = JobState::Cancelled;
        job.finished_at = Some(now);
        format!("{what} after a cancel request: cancelled")
    } else if job.pinned_to.is_some() {
        fail(format!("{what}; a broadcast copy runs nowhere else"))
    } else if job.leases_lost >= MAX_LEASES_LOST {
        fail(format!("{what}; the job lost its worker {MAX_LEASES_LOST} times"))
    } else {
        job.state = JobState::Pending;
        job.run_at = now;
        index_waiting(txn, &job)?;
        format!("{what}; back to pending")
    };
    put_job(txn, &job)?;
    journal(txn, &job, Some(JobState::Running), now, reason)?;
    Ok(job)
}

fn promote(txn: &WriteTransaction, now: Millis) -> Result<usize, StorageError> {
    let due: Vec<(Millis, u128)> = txn
        .open_table(SCHEDULED)?
        .range(..=(now, u128::MAX))?
        .map(|entry| entry.map(|(key, _)| key.value()))
        .collect::<Result<_, _>>()?;
    for (_, id) in &due {
        let mut job = read_job(&txn.open_table(JOBS)?, Uuid::from_u128(*id))?;
        unindex_waiting(txn, &job)?;
        job.state = JobState::Pending;
        index_waiting(txn, &job)?;
        put_job(txn, &job)?;
        journal(txn, &job, Some(JobState::Scheduled), now, "due")?;
    }
    Ok(due.len())
}

fn append_output(
    txn: &WriteTransaction,
    id: Uuid,
    attempt: u32,
    batch: OutputBatch,
) -> Result<(), StorageError> {
    let mut job = read_job(&txn.open_table(JOBS)?, id)?;
    if !batch.logs.is_empty() {
        let mut logs = txn.open_table(LOGS)?;
        let key = id.as_u128();
        let last = logs.range((key, 0)..=(key, u64::MAX))?.next_back().transpose()?;
        let mut seq = last.map_or(0, |(k, _)| k.value().1);
        for (at, level, message) in batch.logs {
            seq += 1;
            let line = LogLine { seq, at, attempt, level, message };
            logs.insert((key, seq), encode(&line).as_slice())?;
        }
    }
    if batch.progress.is_none() && batch.metadata.is_empty() {
        return Ok(());
    }
    if let Some(progress) = batch.progress {
        job.progress = Some(progress);
    }
    let left_out = job.add_plugin_metadata(batch.metadata);
    if !left_out.is_empty() {
        tracing::warn!(job = %id, "metadata over the job's caps left out: {left_out:?}");
    }
    put_job(txn, &job)
}

/// A new job with `old`'s settings and `changes`: what retry and clone
/// enqueue.
fn resubmission(old: &JobRecord, changes: Resubmit) -> NewJob {
    NewJob {
        tenant: old.tenant.clone(),
        owner: old.owner.clone(),
        job: old.job.clone(),
        plugin_digest: old.plugin_digest.clone(),
        args: changes.args.unwrap_or_else(|| old.args.clone()),
        queue: old.queue.clone(),
        priority: old.priority,
        run_at: None,
        expires_at: None,
        max_retries: old.max_retries,
        backoff: old.backoff,
        limits: changes.limits.unwrap_or(old.limits),
        lock: old.lock.clone(),
        idempotency_key: None,
        name: old.name.clone(),
        description: old.description.clone(),
        tags: old.tags.clone(),
        metadata: old.metadata.clone(),
        callback_url: old.callback_url.clone(),
        fingerprint: Default::default(),
    }
}

fn retry(txn: &WriteTransaction, id: Uuid, changes: Resubmit) -> Result<JobRecord, StorageError> {
    let mut old = read_job(&txn.open_table(JOBS)?, id)?;
    if !old.state.is_terminal() {
        return Err(StorageError::Conflict(format!(
            "job {id} is {}: only a finished job can be retried",
            old.state.as_str()
        )));
    }
    if let Some(newer) = old.retried_by {
        return Err(StorageError::Conflict(format!("job {id} was already retried as {newer}")));
    }
    let mut new = enqueue(txn, resubmission(&old, changes))?.job;
    new.retry_of = Some(old.id);
    put_job(txn, &new)?;
    old.retried_by = Some(new.id);
    put_job(txn, &old)?;
    journal(txn, &old, Some(old.state), new.created_at, format!("retried as {}", new.id))?;
    Ok(new)
}

fn clone_job(
    txn: &WriteTransaction,
    id: Uuid,
    changes: Resubmit,
) -> Result<JobRecord, StorageError> {
    let old = read_job(&txn.open_table(JOBS)?, id)?;
    Ok(enqueue(txn, resubmission(&old, changes))?.job)
}

/// Deletes a job with its journal, logs and idempotency key.
fn delete(txn: &WriteTransaction, job: &JobRecord) -> Result<(), StorageError> {
    let id = job.id.as_u128();
    txn.open_table(JOBS)?.remove(id)?;
    txn.open_table(EVENTS)?.retain_in((id, 0)..=(id, u64::MAX), |_, _| false)?;
    txn.open_table(LOGS)?.retain_in((id, 0)..=(id, u64::MAX), |_, _| false)?;
    if let Some(key) = &job.idempotency_key {
        let mut keys = txn.open_table(IDEMPOTENCY)?;
        let ours = keys.get((job.tenant.as_str(), key.as_str()))?.is_some_and(|v| v.value() == id);
        if ours {
            keys.remove((job.tenant.as_str(), key.as_str()))?;
        }
    }
    Ok(())
}

fn remove(txn: &WriteTransaction, id: Uuid) -> Result<JobRecord, StorageError> {
    let job = read_job(&txn.open_table(JOBS)?, id)?;
    if !job.state.is_terminal() {
        return Err(StorageError::Conflict(format!(
            "job {id} is {}: cancel it before removing it",
            job.state.as_str()
        )));
    }
    delete(txn, &job)?;
    Ok(job)
}

fn prune(
    txn: &WriteTransaction,
    finished_before: Millis,
    max: usize,
) -> Result<usize, StorageError> {
    let mut old = Vec::new();
    for entry in txn.open_table(JOBS)?.iter()? {
        let job: JobRecord = decode(entry?.1.value())?;
        if job.state.is_terminal() && job.finished_at.is_some_and(|at| at < finished_before) {
            old.push(job);
            if old.len() >= max {
                break;
            }
        }
    }
    for job in &old {
        delete(txn, job)?;
    }
    Ok(old.len())
}

fn enqueue_broadcast(
    txn: &WriteTransaction,
    new: NewJob,
    live_after: Millis,
) -> Result<Vec<JobRecord>, StorageError> {
    let mut live = Vec::new();
    for entry in txn.open_table(WORKERS)?.iter()? {
        let worker: WorkerRecord = decode(entry?.1.value())?;
        if worker.heartbeat >= live_after {
            live.push(worker.id);
        }
    }
    if live.is_empty() {
        return Err(StorageError::Conflict("no live worker to broadcast to".into()));
    }
    let mut copies = Vec::new();
    for worker in live {
        let new = NewJob { idempotency_key: None, ..new.clone() };
        let mut job = enqueue(txn, new)?.job;
        job.pinned_to = Some(worker);
        put_job(txn, &job)?;
        copies.push(job);
    }
    Ok(copies)
}

fn heartbeat(
    txn: &WriteTransaction,
    id: &str,
    slots: u32,
    running: u32,
    now: Millis,
) -> Result<WorkerMode, StorageError> {
    let mut workers = txn.open_table(WORKERS)?;
    let known = workers.get(id)?.map(|w| decode::<WorkerRecord>(w.value())).transpose()?;
    let (started_at, mode) = known.map_or((now, WorkerMode::Active), |w| (w.started_at, w.mode));
    let record =
        WorkerRecord { id: id.to_string(), slots, running, heartbeat: now, started_at, mode };
    workers.insert(id, encode(&record).as_slice())?;
    Ok(mode)
}

fn remove_plugin(
    txn: &WriteTransaction,
    tenant: &str,
    name: &str,
) -> Result<PluginRecord, StorageError> {
    let mut plugins = txn.open_table(PLUGINS)?;
    let removed: PluginRecord = match plugins.remove((tenant, name))? {
        Some(value) => decode(value.value())?,
        None => return Err(StorageError::NotFound(format!("plugin {name:?}"))),
    };
    let mut still_used = false;
    for entry in plugins.iter()? {
        let plugin: PluginRecord = decode(entry?.1.value())?;
        still_used |= plugin.digest == removed.digest;
    }
    if !still_used {
        txn.open_table(COMPONENTS)?.remove(removed.digest.as_str())?;
    }
    Ok(removed)
}

fn read_all<T: serde::de::DeserializeOwned>(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
) -> Result<Vec<(String, T)>, StorageError> {
    table
        .iter()?
        .map(|entry| {
            let (key, value) = entry?;
            Ok((key.value().to_string(), decode(value.value())?))
        })
        .collect()
}

fn cancel(txn: &WriteTransaction, id: Uuid) -> Result<JobRecord, StorageError> {
    let mut job = read_job(&txn.open_table(JOBS)?, id)?;
    let from = job.state;
    match from {
        JobState::Scheduled | JobState::Pending => {
            unindex_waiting(txn, &job)?;
            job.state = JobState::Cancelled;
            let now = now_ms();
            job.finished_at = Some(now);
            put_job(txn, &job)?;
            journal(txn, &job, Some(from), now, "cancelled before it started")?;
        }
        JobState::Running => {
            job.cancel_requested = true;
            put_job(txn, &job)?;
            journal(txn, &job, Some(from), now_ms(), "cancel requested")?;
        }
        done => {
            return Err(StorageError::Conflict(format!("job {id} is already {}", done.as_str())));
        }
    }
    Ok(job)
}

fn matches(job: &JobRecord, filter: &JobFilter) -> bool {
    let eq = |wanted: &Option<String>, value: &str| wanted.as_deref().is_none_or(|w| w == value);
    eq(&filter.tenant, &job.tenant)
        && eq(&filter.owner, &job.owner)
        && eq(&filter.queue, &job.queue)
        && eq(&filter.job, &job.job)
        && filter.state.is_none_or(|state| state == job.state)
        && filter.since.is_none_or(|since| job.created_at >= since)
        && filter.search.as_deref().is_none_or(|text| {
            let text = text.to_lowercase();
            let has = |s: &str| s.to_lowercase().contains(&text);
            has(&job.job)
                || job.name.as_deref().is_some_and(has)
                || job.description.as_deref().is_some_and(has)
                || job.tags.iter().any(|t| has(t))
        })
}

#[async_trait::async_trait]
impl Storage for RedbStorage {
    async fn enqueue(&self, new: NewJob) -> Result<Enqueued, StorageError> {
        self.writer.write(move |txn| enqueue(txn, new)).await
    }

    async fn get(&self, id: Uuid) -> Result<JobRecord, StorageError> {
        read_job(&self.db.begin_read()?.open_table(JOBS)?, id)
    }

    async fn list(
        &self,
        filter: &JobFilter,
        offset: usize,
        limit: usize,
    ) -> Result<JobPage, StorageError> {
        let txn = self.db.begin_read()?;
        let mut jobs = Vec::new();
        let mut total = 0;
        for entry in txn.open_table(JOBS)?.iter()?.rev() {
            let job: JobRecord = decode(entry?.1.value())?;
            if matches(&job, filter) {
                if total >= offset && jobs.len() < limit {
                    jobs.push(job);
                }
                total += 1;
            }
        }
        Ok(JobPage { jobs, total })
    }

    async fn events(&self, id: Uuid, after: u64) -> Result<Vec<JobEvent>, StorageError> {
        let txn = self.db.begin_read()?;
        read_job(&txn.open_table(JOBS)?, id)?;
        let key = id.as_u128();
        txn.open_table(EVENTS)?
            .range((key, after.saturating_add(1))..=(key, u64::MAX))?
            .map(|entry| decode(entry?.1.value()))
            .collect()
    }

    async fn logs(&self, id: Uuid, after: u64, limit: usize) -> Result<Vec<LogLine>, StorageError> {
        let txn = self.db.begin_read()?;
        read_job(&txn.open_table(JOBS)?, id)?;
        let key = id.as_u128();
        txn.open_table(LOGS)?
            .range((key, after.saturating_add(1))..=(key, u64::MAX))?
            .take(limit)
            .map(|entry| decode(entry?.1.value()))
            .collect()
    }

    async fn queue_position(&self, id: Uuid) -> Result<Option<usize>, StorageError> {
        let txn = self.db.begin_read()?;
        let job = read_job(&txn.open_table(JOBS)?, id)?;
        if job.state != JobState::Pending {
            return Ok(None);
        }
        let key = pending_key(&job);
        let pending = txn.open_table(PENDING)?;
        let ahead = pending.range(..key.as_slice())?.count();
        Ok(Some(ahead))
    }

    async fn claim(&self, rules: ClaimRules) -> Result<Vec<JobRecord>, StorageError> {
        self.writer.write(move |txn| claim::claim(txn, &rules)).await
    }

    async fn finish(
        &self,
        id: Uuid,
        worker: &str,
        report: RunReport,
        policy: &RetryPolicy,
    ) -> Result<JobRecord, StorageError> {
        let (worker, policy) = (worker.to_string(), policy.clone());
        self.writer.write(move |txn| finish(txn, id, &worker, report, &policy)).await
    }

    async fn renew(&self, worker: &str, ids: Vec<Uuid>, until: Millis) -> Result<(), StorageError> {
        let worker = worker.to_string();
        self.writer
            .write(move |txn| {
                let mut running = txn.open_table(RUNNING)?;
                for id in ids {
                    let lease = running
                        .get(id.as_u128())?
                        .map(|l| decode::<Lease>(l.value()))
                        .transpose()?;
                    if let Some(mut lease) = lease.filter(|l| l.worker == worker) {
                        lease.until = until;
                        running.insert(id.as_u128(), encode(&lease).as_slice())?;
                    }
                }
                Ok(())
            })
            .await
    }

    async fn recover(&self, before: Millis) -> Result<Vec<Uuid>, StorageError> {
        let txn = self.db.begin_read()?;
        let running = txn.open_table(RUNNING)?;
        let any_expired =
            running.iter()?.try_fold(false, |found, entry| -> Result<bool, StorageError> {
                Ok(found || decode::<Lease>(entry?.1.value())?.until < before)
            })?;
        if !any_expired {
            return Ok(Vec::new());
        }
        self.writer.write(move |txn| recover(txn, before)).await
    }

    async fn hand_back(
        &self,
        worker: &str,
        ids: Vec<Uuid>,
    ) -> Result<Vec<JobRecord>, StorageError> {
        let worker = worker.to_string();
        self.writer.write(move |txn| hand_back(txn, &worker, &ids)).await
    }

    async fn promote(&self, now: Millis) -> Result<usize, StorageError> {
        let txn = self.db.begin_read()?;
        if txn.open_table(SCHEDULED)?.range(..=(now, u128::MAX))?.next().is_none() {
            return Ok(0);
        }
        self.writer.write(move |txn| promote(txn, now)).await
    }

    async fn append_output(
        &self,
        id: Uuid,
        attempt: u32,
        batch: OutputBatch,
    ) -> Result<(), StorageError> {
        self.writer.write(move |txn| append_output(txn, id, attempt, batch)).await
    }

    async fn cancel(&self, id: Uuid) -> Result<JobRecord, StorageError> {
        self.writer.write(move |txn| cancel(txn, id)).await
    }

    async fn set_queue(&self, name: &str, settings: QueueSettings) -> Result<(), StorageError> {
        let name = name.to_string();
        self.writer
            .write(move |txn| {
                txn.open_table(QUEUES)?.insert(name.as_str(), encode(&settings).as_slice())?;
                Ok(())
            })
            .await
    }

    async fn queue(&self, name: &str) -> Result<QueueSettings, StorageError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(QUEUES)?;
        let settings = table.get(name)?.map(|v| decode(v.value())).transpose()?;
        Ok(settings.unwrap_or_default())
    }

    async fn locks(&self) -> Result<Vec<(String, Uuid)>, StorageError> {
        let txn = self.db.begin_read()?;
        txn.open_table(LOCKS)?
            .iter()?
            .map(|entry| {
                let (name, holder) = entry?;
                Ok((name.value().to_string(), Uuid::from_u128(holder.value())))
            })
            .collect()
    }

    async fn clear_lock(&self, name: &str) -> Result<(), StorageError> {
        let name = name.to_string();
        self.writer
            .write(move |txn| {
                let mut locks = txn.open_table(LOCKS)?;
                if locks.get(name.as_str())?.is_none() {
                    return Err(StorageError::NotFound(format!("lock {name:?}")));
                }
                locks.remove(name.as_str())?;
                Ok(())
            })
            .await
    }

    async fn retry(&self, id: Uuid, changes: Resubmit) -> Result<JobRecord, StorageError> {
        self.writer.write(move |txn| retry(txn, id, changes)).await
    }

    async fn clone_job(&self, id: Uuid, changes: Resubmit) -> Result<JobRecord, StorageError> {
        self.writer.write(move |txn| clone_job(txn, id, changes)).await
    }

    async fn remove(&self, id: Uuid) -> Result<JobRecord, StorageError> {
        self.writer.write(move |txn| remove(txn, id)).await
    }

    async fn prune(&self, finished_before: Millis, max: usize) -> Result<usize, StorageError> {
        self.writer.write(move |txn| prune(txn, finished_before, max)).await
    }

    async fn queue_stats(
        &self,
        tenant: Option<&str>,
        now: Millis,
        window_ms: u64,
        stuck_after_ms: u64,
    ) -> Result<Vec<QueueStats>, StorageError> {
        let txn = self.db.begin_read()?;
        let mut by_queue: BTreeMap<String, QueueStats> = BTreeMap::new();
        let running = txn.open_table(RUNNING)?;
        for entry in txn.open_table(JOBS)?.iter()? {
            let job: JobRecord = decode(entry?.1.value())?;
            if tenant.is_some_and(|t| t != job.tenant) {
                continue;
            }
            let stats =
                by_queue.entry(job.queue.clone()).or_insert_with(|| QueueStats::new(&job.queue));
            let lease_expired = running
                .get(job.id.as_u128())?
                .map(|lease| decode::<Lease>(lease.value()))
                .transpose()?
                .is_some_and(|lease| lease.until < now);
            stats.count(&job, now, window_ms, stuck_after_ms, lease_expired);
        }
        let settings = txn.open_table(QUEUES)?;
        let mut all: Vec<QueueStats> = by_queue.into_values().collect();
        for stats in &mut all {
            if let Some(value) = settings.get(stats.queue.as_str())? {
                stats.settings = decode(value.value())?;
            }
            stats.finish(window_ms);
        }
        Ok(all)
    }

    async fn enqueue_broadcast(
        &self,
        new: NewJob,
        live_after: Millis,
    ) -> Result<Vec<JobRecord>, StorageError> {
        self.writer.write(move |txn| enqueue_broadcast(txn, new, live_after)).await
    }

    async fn heartbeat(
        &self,
        worker: &str,
        slots: u32,
        running: u32,
        now: Millis,
    ) -> Result<WorkerMode, StorageError> {
        let worker = worker.to_string();
        self.writer.write(move |txn| heartbeat(txn, &worker, slots, running, now)).await
    }

    async fn workers(&self) -> Result<Vec<WorkerRecord>, StorageError> {
        let txn = self.db.begin_read()?;
        Ok(read_all(&txn.open_table(WORKERS)?)?.into_iter().map(|(_, w)| w).collect())
    }

    async fn set_worker_mode(
        &self,
        worker: &str,
        mode: WorkerMode,
    ) -> Result<WorkerRecord, StorageError> {
        let worker = worker.to_string();
        self.writer
            .write(move |txn| {
                let mut workers = txn.open_table(WORKERS)?;
                let known = workers
                    .get(worker.as_str())?
                    .map(|w| decode::<WorkerRecord>(w.value()))
                    .transpose()?;
                let mut record =
                    known.ok_or_else(|| StorageError::NotFound(format!("worker {worker:?}")))?;
                record.mode = mode;
                workers.insert(worker.as_str(), encode(&record).as_slice())?;
                Ok(record)
            })
            .await
    }

    async fn put_plugin(
        &self,
        record: PluginRecord,
        component: Vec<u8>,
    ) -> Result<(), StorageError> {
        self.writer
            .write(move |txn| {
                txn.open_table(COMPONENTS)?.insert(record.digest.as_str(), component.as_slice())?;
                let key = (record.tenant.as_str(), record.name.as_str());
                txn.open_table(PLUGINS)?.insert(key, encode(&record).as_slice())?;
                Ok(())
            })
            .await
    }

    async fn plugins(&self, tenant: Option<&str>) -> Result<Vec<PluginRecord>, StorageError> {
        let txn = self.db.begin_read()?;
        let mut all = Vec::new();
        for entry in txn.open_table(PLUGINS)?.iter()? {
            let plugin: PluginRecord = decode(entry?.1.value())?;
            if tenant.is_none_or(|t| t == plugin.tenant) {
                all.push(plugin);
            }
        }
        Ok(all)
    }

    async fn component(&self, digest: &str) -> Result<Vec<u8>, StorageError> {
        let txn = self.db.begin_read()?;
        let bytes = txn.open_table(COMPONENTS)?.get(digest)?.map(|b| b.value().to_vec());
        bytes.ok_or_else(|| StorageError::NotFound(format!("component {digest}")))
    }

    async fn remove_plugin(&self, tenant: &str, name: &str) -> Result<PluginRecord, StorageError> {
        let (tenant, name) = (tenant.to_string(), name.to_string());
        self.writer.write(move |txn| remove_plugin(txn, &tenant, &name)).await
    }

    async fn put_token(&self, hash: &str, record: TokenRecord) -> Result<(), StorageError> {
        let hash = hash.to_string();
        self.writer
            .write(move |txn| {
                txn.open_table(TOKENS)?.insert(hash.as_str(), encode(&record).as_slice())?;
                Ok(())
            })
            .await
    }

    async fn token(&self, hash: &str) -> Result<Option<TokenRecord>, StorageError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(TOKENS)?;
        let value = table.get(hash)?;
        value.map(|v| decode(v.value())).transpose()
    }

    async fn tokens(&self) -> Result<Vec<(String, TokenRecord)>, StorageError> {
        read_all(&self.db.begin_read()?.open_table(TOKENS)?)
    }

    async fn remove_token(&self, hash: &str) -> Result<(), StorageError> {
        let hash = hash.to_string();
        self.writer
            .write(move |txn| match txn.open_table(TOKENS)?.remove(hash.as_str())? {
                Some(_) => Ok(()),
                None => Err(StorageError::NotFound("token".into())),
            })
            .await
    }

    async fn put_tenant(&self, record: TenantRecord) -> Result<(), StorageError> {
        self.writer
            .write(move |txn| {
                txn.open_table(TENANTS)?
                    .insert(record.name.as_str(), encode(&record).as_slice())?;
                Ok(())
            })
            .await
    }

    async fn tenant(&self, name: &str) -> Result<TenantRecord, StorageError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(TENANTS)?;
        let value = table.get(name)?;
        let stored = value.map(|v| decode(v.value())).transpose()?;
        Ok(stored
            .unwrap_or_else(|| TenantRecord { name: name.to_string(), ..TenantRecord::default() }))
    }

    async fn tenants(&self) -> Result<Vec<TenantRecord>, StorageError> {
        let all = read_all(&self.db.begin_read()?.open_table(TENANTS)?)?;
        Ok(all.into_iter().map(|(_, record)| record).collect())
    }

    async fn due_callbacks(&self, now: Millis, max: usize) -> Result<Vec<Callback>, StorageError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(CALLBACKS)?;
        table
            .range(..=(now, u128::MAX))?
            .take(max)
            .map(|entry| {
                let (key, attempts) = entry?;
                let (due, id) = key.value();
                Ok(Callback { due, job: Uuid::from_u128(id), attempts: attempts.value() })
            })
            .collect()
    }

    async fn callback_done(
        &self,
        callback: Callback,
        retry_at: Option<Millis>,
    ) -> Result<(), StorageError> {
        self.writer
            .write(move |txn| {
                let mut table = txn.open_table(CALLBACKS)?;
                table.remove((callback.due, callback.job.as_u128()))?;
                if let Some(at) = retry_at {
                    table.insert((at, callback.job.as_u128()), callback.attempts + 1)?;
                }
                Ok(())
            })
            .await
    }

    async fn waiting(&self, tenant: &str) -> Result<u64, StorageError> {
        waiting(&self.db.begin_read()?.open_table(WAITING)?, tenant)
    }

    fn commit_stats(&self) -> &CommitStats {
        self.writer.stats()
    }
}

impl RedbStorage {
    /// Number of jobs stored, for stats.
    pub fn job_count(&self) -> Result<u64, StorageError> {
        Ok(self.db.begin_read()?.open_table(JOBS)?.len()?)
    }
}
