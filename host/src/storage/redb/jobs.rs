//! The job operations, each inside the writer's transaction: read the
//! record, ask the rule of [`crate::jobs::rules`], [`apply`] its answer.

use super::apply::{apply, dependencies};
use super::index::{Counter, Txn, finished_until, rewrite, unlist};
use super::schema::{
    DEPENDENTS, EVENTS, IDEMPOTENCY, JOBS, LOGS, QUEUES, RUNNING, TENANTS, TimeIndex, WORKERS,
    decode, encode,
};
use super::{Lease, StorageError, put_job, read_job};
use crate::jobs::changes::Resubmit;
use crate::jobs::flow;
use crate::jobs::rules::{self, Release};
use crate::jobs::{
    JobRecord, JobState, LogLine, Millis, NewJob, QueueSettings, TenantDefaults, TenantRecord,
    WorkerRecord,
};
use crate::storage::{Enqueued, Finishing, OutputBatch};
use ::redb::ReadableTable;
use std::borrow::Cow;
use uuid::Uuid;

pub(super) fn enqueue(
    txn: &Txn,
    new: NewJob,
    defaults: &TenantDefaults,
    now: Millis,
) -> Result<Enqueued, StorageError> {
    if let Some(key) = &new.idempotency_key {
        let existing = txn
            .open_table(IDEMPOTENCY)?
            .get((new.tenant.as_str(), key.as_str()))?
            .map(|id| id.value());
        if let Some(id) = existing {
            let job = read_job(&*txn.open_table(JOBS)?, Uuid::from_u128(id))?;
            return Ok(Enqueued { job, created: false });
        }
    }
    let job = insert(txn, new, None, defaults, now)?;
    Ok(Enqueued { job, created: true })
}

/// Writes a new job (for a broadcast copy: pinned to its worker, with the
/// broadcast's id) within its tenant's `max_queued`, with its idempotency
/// key, waiting for its dependencies, and the rest of its chain after it.
pub(super) fn insert(
    txn: &Txn,
    new: NewJob,
    copy: Option<(String, Uuid)>,
    defaults: &TenantDefaults,
    now: Millis,
) -> Result<JobRecord, StorageError> {
    let tenant = tenant(txn, &new.tenant)?;
    let waiting = txn.count_of(&Counter::Waiting(tenant.name.clone()))?;
    let more = std::iter::successors(new.next.as_deref(), |next| next.next.as_deref()).count();
    rules::queued_quota(&tenant, defaults, waiting.saturating_add(more as u64))
        .map_err(StorageError::OverQuota)?;
    let deps = dependencies(txn, &new.flow.depends_on)?;
    let (transition, next) =
        flow::admitted(new, copy, &deps, now).map_err(StorageError::Invalid)?;
    apply(txn, None, &transition, now)?;
    let job = transition.job;
    if job.state == JobState::Blocked {
        let mut dependents = txn.open_table(DEPENDENTS)?;
        for (dep, record) in &deps {
            if record.as_ref().is_some_and(|r| !r.state.is_terminal()) {
                dependents.insert((dep.as_u128(), job.id.as_u128()), ())?;
            }
        }
    }
    if let Some(key) = &job.idempotency_key {
        txn.open_table(IDEMPOTENCY)?
            .insert((job.tenant.as_str(), key.as_str()), job.id.as_u128())?;
    }
    if let Some(next) = next {
        insert(txn, next, None, defaults, now)?;
    }
    Ok(job)
}

/// A tenant's record, or the defaults for one never set.
pub(super) fn tenant(txn: &Txn, name: &str) -> Result<TenantRecord, StorageError> {
    let stored = txn.open_table(TENANTS)?.get(name)?.map(|v| v.value().to_vec());
    match stored {
        Some(bytes) => decode(&bytes),
        None => Ok(TenantRecord { name: name.to_string(), ..TenantRecord::default() }),
    }
}

pub(super) fn spawn_child(
    txn: &Txn,
    parent: Uuid,
    attempt: u32,
    mut child: NewJob,
    defaults: &TenantDefaults,
    now: Millis,
) -> Result<JobRecord, StorageError> {
    let mut parent = read_job(&*txn.open_table(JOBS)?, parent)?;
    if parent.state != JobState::Running || parent.attempt != attempt {
        return Err(StorageError::Conflict(format!(
            "job {} is not running attempt {attempt}: it spawns nothing more",
            parent.id
        )));
    }
    let tenant = tenant(txn, &parent.tenant)?;
    if let Some(refusal) = rules::spawn_refusal(&parent, &tenant, defaults) {
        return Err(StorageError::OverQuota(refusal));
    }
    child.flow.parent = Some(parent.id);
    child.flow.depth = parent.flow.depth + 1;
    let child = insert(txn, child, None, defaults, now)?;
    parent.flow.children.push(child.id);
    put_job(txn, &parent)?;
    Ok(child)
}

pub(super) fn finish(txn: &Txn, id: Uuid, finishing: Finishing) -> Result<JobRecord, StorageError> {
    let job = read_job(&*txn.open_table(JOBS)?, id)?;
    let held = job.state == JobState::Running
        && job.worker.as_deref() == Some(&finishing.worker)
        && job.attempt == finishing.attempt;
    if !held {
        return Err(StorageError::Conflict(format!(
            "job {id} is not running attempt {} on worker {}: its lease was lost",
            finishing.attempt, finishing.worker
        )));
    }
    let Finishing { report, policy, now, random, output, .. } = finishing;
    let mut ran = Cow::Borrowed(&job);
    add_output(txn, &mut ran, output)?;
    let transition = rules::finished(&ran, &report, &policy, now, random);
    apply(txn, Some(&job), &transition, now)?;
    Ok(transition.job)
}

pub(super) fn recover(txn: &Txn, now: Millis) -> Result<Vec<Uuid>, StorageError> {
    let expired: Vec<u128> = txn
        .open_table(RUNNING)?
        .iter()?
        .map(|entry| -> Result<Option<u128>, StorageError> {
            let (id, lease) = entry?;
            let lease: Lease = decode(lease.value())?;
            Ok((lease.until < now).then_some(id.value()))
        })
        .filter_map(Result::transpose)
        .collect::<Result<_, _>>()?;
    let mut recovered = Vec::new();
    for id in expired {
        let job = read_job(&*txn.open_table(JOBS)?, Uuid::from_u128(id))?;
        let settings = txn.open_table(QUEUES)?.get(job.queue.as_str())?.map(|v| v.value().to_vec());
        let settings: QueueSettings = settings.map(|v| decode(&v)).transpose()?.unwrap_or_default();
        let lost = Release::LeaseExpired { limit: settings.lost_lease_limit() };
        let transition = rules::taken_off_worker(&job, lost, now);
        apply(txn, Some(&job), &transition, now)?;
        recovered.push(job.id);
    }
    Ok(recovered)
}

pub(super) fn hand_back(
    txn: &Txn,
    worker: &str,
    ids: &[Uuid],
    now: Millis,
) -> Result<Vec<JobRecord>, StorageError> {
    let mut handed = Vec::new();
    for id in ids {
        let job = read_job(&*txn.open_table(JOBS)?, *id)?;
        if job.state == JobState::Running && job.worker.as_deref() == Some(worker) {
            let transition = rules::taken_off_worker(&job, Release::HandedBack, now);
            apply(txn, Some(&job), &transition, now)?;
            handed.push(transition.job);
        }
    }
    Ok(handed)
}

/// Applies `rule` to every job a time index (scheduled runs, deadlines)
/// holds at or before `now`; returns how many.
pub(super) fn apply_due(
    txn: &Txn,
    index: TimeIndex,
    now: Millis,
    rule: fn(&JobRecord, Millis) -> rules::Transition,
) -> Result<usize, StorageError> {
    let due: Vec<(Millis, u128)> = txn
        .open_table(index)?
        .range(..=(now, u128::MAX))?
        .map(|entry| entry.map(|(key, _)| key.value()))
        .collect::<Result<_, _>>()?;
    for (_, id) in &due {
        let job = read_job(&*txn.open_table(JOBS)?, Uuid::from_u128(*id))?;
        apply(txn, Some(&job), &rule(&job, now), now)?;
    }
    Ok(due.len())
}

pub(super) fn append_output(
    txn: &Txn,
    id: Uuid,
    attempt: u32,
    batch: OutputBatch,
) -> Result<(), StorageError> {
    let job = read_job(&*txn.open_table(JOBS)?, id)?;
    if job.state != JobState::Running || job.attempt != attempt {
        return Err(StorageError::Conflict(format!(
            "job {id} is not running attempt {attempt}: its lease was lost"
        )));
    }
    let mut job = Cow::Owned(job);
    if add_output(txn, &mut job, batch)? {
        put_job(txn, &job)?;
    }
    Ok(())
}

/// Writes a running job's log lines and takes its progress and metadata
/// into `job`, which is copied only then; true when the record changed
/// (the caller writes it).
fn add_output(
    txn: &Txn,
    job: &mut Cow<JobRecord>,
    batch: OutputBatch,
) -> Result<bool, StorageError> {
    if !batch.logs.is_empty() {
        let mut logs = txn.open_table(LOGS)?;
        let key = job.id.as_u128();
        let last = logs.range((key, 0)..=(key, u64::MAX))?.next_back().transpose()?;
        let mut seq = last.map_or(0, |(k, _)| k.value().1);
        for (at, level, message) in batch.logs {
            seq += 1;
            let line = LogLine { seq, at, attempt: job.attempt, level, message };
            logs.insert((key, seq), encode(&line).as_slice())?;
        }
    }
    if batch.progress.is_none() && batch.metadata.is_empty() {
        return Ok(false);
    }
    let job = job.to_mut();
    if let Some(progress) = batch.progress {
        job.progress = Some(progress);
    }
    let left_out = job.add_plugin_metadata(batch.metadata);
    if !left_out.is_empty() {
        tracing::warn!(job = %job.id, "metadata over the job's caps left out: {left_out:?}");
    }
    Ok(true)
}

pub(super) fn cancel(txn: &Txn, id: Uuid, now: Millis) -> Result<JobRecord, StorageError> {
    let job = read_job(&*txn.open_table(JOBS)?, id)?;
    let transition = rules::cancelled(&job, now).map_err(StorageError::Conflict)?;
    apply(txn, Some(&job), &transition, now)?;
    Ok(transition.job)
}

pub(super) fn retry(
    txn: &Txn,
    id: Uuid,
    changes: Resubmit,
    defaults: &TenantDefaults,
    now: Millis,
) -> Result<JobRecord, StorageError> {
    let old = read_job(&*txn.open_table(JOBS)?, id)?;
    if let Some(refusal) = rules::retry_refusal(&old) {
        return Err(StorageError::Conflict(refusal));
    }
    let mut new = insert(txn, changes.new_job(&old), None, defaults, now)?;
    new.retry_of = Some(old.id);
    put_job(txn, &new)?;
    let mut linked = old.clone();
    linked.retried_by = Some(new.id);
    let note = rules::Transition {
        reason: format!("retried as {}", new.id),
        from: Some(old.state),
        job: linked,
    };
    apply(txn, Some(&old), &note, now)?;
    Ok(new)
}

pub(super) fn clone_job(
    txn: &Txn,
    id: Uuid,
    changes: Resubmit,
    defaults: &TenantDefaults,
    now: Millis,
) -> Result<JobRecord, StorageError> {
    let old = read_job(&*txn.open_table(JOBS)?, id)?;
    let inserted = insert(txn, changes.new_job(&old), None, defaults, now)?;
    let new = JobRecord { cloned_from: Some(old.id), ..inserted.clone() };
    rewrite(txn, Some(&inserted), &new)?;
    Ok(new)
}

/// Deletes a job with its journal, logs, index rows and idempotency key.
fn delete(txn: &Txn, job: &JobRecord) -> Result<(), StorageError> {
    let id = job.id.as_u128();
    txn.open_table(JOBS)?.remove(id)?;
    unlist(txn, job)?;
    txn.open_table(EVENTS)?.remove_range((id, 0)..=(id, u64::MAX))?;
    txn.open_table(LOGS)?.remove_range((id, 0)..=(id, u64::MAX))?;
    if let Some(key) = &job.idempotency_key {
        let mut keys = txn.open_table(IDEMPOTENCY)?;
        let ours = keys.get((job.tenant.as_str(), key.as_str()))?.is_some_and(|v| v.value() == id);
        if ours {
            keys.remove((job.tenant.as_str(), key.as_str()))?;
        }
    }
    Ok(())
}

pub(super) fn remove(txn: &Txn, id: Uuid) -> Result<JobRecord, StorageError> {
    let job = read_job(&*txn.open_table(JOBS)?, id)?;
    if let Some(refusal) = rules::remove_refusal(&job) {
        return Err(StorageError::Conflict(refusal));
    }
    delete(txn, &job)?;
    Ok(job)
}

pub(super) fn prune(txn: &Txn, finished_before: Millis, max: usize) -> Result<usize, StorageError> {
    let old = finished_until(txn, finished_before, max)?;
    for id in &old {
        let job = read_job(&*txn.open_table(JOBS)?, Uuid::from_u128(*id))?;
        delete(txn, &job)?;
    }
    Ok(old.len())
}

pub(super) fn enqueue_broadcast(
    txn: &Txn,
    new: NewJob,
    live_after: Millis,
    defaults: &TenantDefaults,
    now: Millis,
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
    // Every copy counts against the quota: check them all before the first
    // is written, so a refused broadcast stores nothing.
    let tenant = tenant(txn, &new.tenant)?;
    let waiting = txn.count_of(&Counter::Waiting(tenant.name.clone()))?;
    let more = waiting.saturating_add(live.len() as u64 - 1);
    rules::queued_quota(&tenant, defaults, more).map_err(|why| {
        StorageError::OverQuota(format!(
            "{why}; a broadcast to {} workers needs room for each",
            live.len()
        ))
    })?;
    let broadcast = Uuid::now_v7();
    let mut copies = Vec::new();
    for worker in live {
        let new = NewJob { idempotency_key: None, ..new.clone() };
        copies.push(insert(txn, new, Some((worker, broadcast)), defaults, now)?);
    }
    Ok(copies)
}
