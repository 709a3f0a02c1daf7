//! The job operations, each inside a transaction: read the record (its row
//! locked), ask the rule of [`crate::jobs::rules`], [`apply`] its answer.

use super::apply::{apply, dependencies};
use super::schema::{ms, put_job};
use super::{StorageError, Tx, decode, encode, read_job};
use crate::jobs::changes::Resubmit;
use crate::jobs::flow;
use crate::jobs::rules::{self, Release, Transition};
use crate::jobs::{
    JobRecord, JobState, LogLine, Millis, NewJob, QueueSettings, TenantDefaults, TenantRecord,
    WorkerRecord,
};
use crate::storage::{Enqueued, Finishing, OutputBatch};
use futures::future::BoxFuture;
use uuid::Uuid;

pub(super) async fn enqueue(
    tx: &Tx,
    new: NewJob,
    defaults: &TenantDefaults,
    now: Millis,
) -> Result<Enqueued, StorageError> {
    if let Some(key) = &new.idempotency_key {
        let sql = "SELECT job FROM idempotency WHERE tenant = $1 AND key = $2";
        if let Some(row) = tx.query_opt(sql, &[&new.tenant, key]).await? {
            let job = read_job(tx, row.get(0), false).await?;
            return Ok(Enqueued { job, created: false });
        }
    }
    let job = insert(tx, new, None, defaults, now).await?;
    Ok(Enqueued { job, created: true })
}

/// Writes a new job (for a broadcast copy: pinned to its worker, with the
/// broadcast's id) within its tenant's `max_queued`, with its idempotency
/// key, waiting for its dependencies, and the rest of its chain after it.
pub(super) fn insert<'a>(
    tx: &'a Tx,
    new: NewJob,
    copy: Option<(String, Uuid)>,
    defaults: &'a TenantDefaults,
    now: Millis,
) -> BoxFuture<'a, Result<JobRecord, StorageError>> {
    Box::pin(async move {
        let tenant = tenant(tx, &new.tenant).await?;
        let more = std::iter::successors(new.next.as_deref(), |next| next.next.as_deref()).count();
        let waiting = tx.waiting(&tenant, defaults, 1 + more as u64).await?;
        rules::queued_quota(&tenant, defaults, waiting.saturating_add(more as u64))
            .map_err(StorageError::OverQuota)?;
        let deps = dependencies(tx, &new.flow.depends_on).await?;
        let (transition, next) =
            flow::admitted(new, copy, &deps, now).map_err(StorageError::Invalid)?;
        apply(tx, None, &transition, now).await?;
        let job = transition.job;
        if job.state == JobState::Blocked {
            for (dep, record) in &deps {
                if record.as_ref().is_some_and(|r| !r.state.is_terminal()) {
                    tx.execute(
                        "INSERT INTO dependents (dep, job) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                        &[dep, &job.id],
                    )
                    .await?;
                }
            }
        }
        if let Some(key) = &job.idempotency_key {
            tx.execute(
                "INSERT INTO idempotency (tenant, key, job) VALUES ($1, $2, $3)",
                &[&job.tenant, key, &job.id],
            )
            .await?;
        }
        if let Some(next) = next {
            insert(tx, next, None, defaults, now).await?;
        }
        Ok(job)
    })
}

/// A tenant's record, or the defaults for one never set.
pub(super) async fn tenant(tx: &Tx, name: &str) -> Result<TenantRecord, StorageError> {
    match tx.query_opt("SELECT record FROM tenants WHERE name = $1", &[&name]).await? {
        Some(row) => decode(row.get::<_, &[u8]>(0)),
        None => Ok(TenantRecord { name: name.to_string(), ..TenantRecord::default() }),
    }
}

pub(super) async fn spawn_child(
    tx: &Tx,
    parent: Uuid,
    attempt: u32,
    mut child: NewJob,
    defaults: &TenantDefaults,
    now: Millis,
) -> Result<JobRecord, StorageError> {
    let mut parent = read_job(tx, parent, true).await?;
    if parent.state != JobState::Running || parent.attempt != attempt {
        return Err(StorageError::Conflict(format!(
            "job {} is not running attempt {attempt}: it spawns nothing more",
            parent.id
        )));
    }
    let tenant = tenant(tx, &parent.tenant).await?;
    if let Some(refusal) = rules::spawn_refusal(&parent, &tenant, defaults) {
        return Err(StorageError::OverQuota(refusal));
    }
    child.flow.parent = Some(parent.id);
    child.flow.depth = parent.flow.depth + 1;
    let child = insert(tx, child, None, defaults, now).await?;
    parent.flow.children.push(child.id);
    put_job(tx, &parent).await?;
    Ok(child)
}

pub(super) async fn finish(
    tx: &Tx,
    id: Uuid,
    finishing: Finishing,
) -> Result<JobRecord, StorageError> {
    let job = read_job(tx, id, true).await?;
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
    let mut ran = job.clone();
    add_output(tx, &mut ran, output).await?;
    let transition = rules::finished(&ran, &report, &policy, now, random);
    apply(tx, Some(&job), &transition, now).await?;
    Ok(transition.job)
}

/// Takes the jobs whose lease ended before `now` off their workers, each
/// row taken only if no other host is at it (it is, then, on its way).
pub(super) async fn recover(tx: &Tx, now: Millis) -> Result<Vec<Uuid>, StorageError> {
    let rows = tx
        .query(
            "SELECT record FROM jobs WHERE state = 'running' AND lease_until < $1 \
             ORDER BY id FOR UPDATE SKIP LOCKED",
            &[&ms(now)],
        )
        .await?;
    let mut recovered = Vec::new();
    for job in super::records::<JobRecord>(&rows)? {
        let settings = queue(tx, &job.queue).await?;
        let lost = Release::LeaseExpired { limit: settings.lost_lease_limit() };
        let transition = rules::taken_off_worker(&job, lost, now);
        apply(tx, Some(&job), &transition, now).await?;
        recovered.push(job.id);
    }
    Ok(recovered)
}

/// A queue's settings (the default for a queue never set).
pub(super) async fn queue(tx: &Tx, name: &str) -> Result<QueueSettings, StorageError> {
    let row = tx.query_opt("SELECT settings FROM queues WHERE name = $1", &[&name]).await?;
    row.map(|row| decode(row.get::<_, &[u8]>(0))).transpose().map(Option::unwrap_or_default)
}

pub(super) async fn hand_back(
    tx: &Tx,
    worker: &str,
    ids: &[Uuid],
    now: Millis,
) -> Result<Vec<JobRecord>, StorageError> {
    let mut handed = Vec::new();
    for id in ids {
        let job = read_job(tx, *id, true).await?;
        if job.state == JobState::Running && job.worker.as_deref() == Some(worker) {
            let transition = rules::taken_off_worker(&job, Release::HandedBack, now);
            apply(tx, Some(&job), &transition, now).await?;
            handed.push(transition.job);
        }
    }
    Ok(handed)
}

/// Which jobs a time rule applies to: scheduled runs due, or waiting jobs
/// past their deadline.
#[derive(Debug, Clone, Copy)]
pub(super) enum Due {
    Scheduled,
    Expiring,
}

/// Applies `rule` to every job `due` names at or before `now`, skipping
/// rows another host is changing; returns how many.
pub(super) async fn apply_due(
    tx: &Tx,
    due: Due,
    now: Millis,
    rule: fn(&JobRecord, Millis) -> Transition,
) -> Result<usize, StorageError> {
    let sql = match due {
        Due::Scheduled => {
            "SELECT record FROM jobs WHERE state = 'scheduled' AND run_at <= $1 \
             ORDER BY run_at, id FOR UPDATE SKIP LOCKED"
        }
        Due::Expiring => {
            "SELECT record FROM jobs WHERE expires_at <= $1 \
             AND state IN ('blocked', 'scheduled', 'pending') \
             ORDER BY expires_at, id FOR UPDATE SKIP LOCKED"
        }
    };
    let jobs = super::records::<JobRecord>(&tx.query(sql, &[&ms(now)]).await?)?;
    for job in &jobs {
        apply(tx, Some(job), &rule(job, now), now).await?;
    }
    Ok(jobs.len())
}

pub(super) async fn append_output(
    tx: &Tx,
    id: Uuid,
    attempt: u32,
    batch: OutputBatch,
) -> Result<(), StorageError> {
    let mut job = read_job(tx, id, true).await?;
    if job.state != JobState::Running || job.attempt != attempt {
        return Err(StorageError::Conflict(format!(
            "job {id} is not running attempt {attempt}: its lease was lost"
        )));
    }
    if add_output(tx, &mut job, batch).await? {
        put_job(tx, &job).await?;
    }
    Ok(())
}

/// Writes a running job's log lines and takes its progress and metadata
/// into `job`; true when the record changed (the caller writes it).
async fn add_output(
    tx: &Tx,
    job: &mut JobRecord,
    batch: OutputBatch,
) -> Result<bool, StorageError> {
    if !batch.logs.is_empty() {
        let last = tx
            .query_opt("SELECT max(seq) FROM logs WHERE job = $1", &[&job.id])
            .await?
            .and_then(|row| row.get::<_, Option<i64>>(0));
        let mut seq = last.unwrap_or(0) as u64;
        for (at, level, message) in batch.logs {
            seq += 1;
            let line = LogLine { seq, at, attempt: job.attempt, level, message };
            tx.execute(
                "INSERT INTO logs (job, seq, body) VALUES ($1, $2, $3)",
                &[&job.id, &(seq as i64), &encode(&line)],
            )
            .await?;
        }
    }
    if batch.progress.is_none() && batch.metadata.is_empty() {
        return Ok(false);
    }
    if let Some(progress) = batch.progress {
        job.progress = Some(progress);
    }
    let left_out = job.add_plugin_metadata(batch.metadata);
    if !left_out.is_empty() {
        tracing::warn!(job = %job.id, "metadata over the job's caps left out: {left_out:?}");
    }
    Ok(true)
}

pub(super) async fn cancel(tx: &Tx, id: Uuid, now: Millis) -> Result<JobRecord, StorageError> {
    let job = read_job(tx, id, true).await?;
    let transition = rules::cancelled(&job, now).map_err(StorageError::Conflict)?;
    apply(tx, Some(&job), &transition, now).await?;
    Ok(transition.job)
}

/// Enqueues `old` again as a retry of it, linked both ways, the old job's
/// journal saying so.
pub(super) async fn resubmit_as_retry(
    tx: &Tx,
    old: &JobRecord,
    new: NewJob,
    defaults: &TenantDefaults,
    now: Millis,
) -> Result<JobRecord, StorageError> {
    let mut job = insert(tx, new, None, defaults, now).await?;
    job.retry_of = Some(old.id);
    put_job(tx, &job).await?;
    let linked = JobRecord { retried_by: Some(job.id), ..old.clone() };
    let note =
        Transition { reason: format!("retried as {}", job.id), from: Some(old.state), job: linked };
    apply(tx, Some(old), &note, now).await?;
    Ok(job)
}

pub(super) async fn retry(
    tx: &Tx,
    id: Uuid,
    changes: Resubmit,
    defaults: &TenantDefaults,
    now: Millis,
) -> Result<JobRecord, StorageError> {
    let old = read_job(tx, id, true).await?;
    if let Some(refusal) = rules::retry_refusal(&old) {
        return Err(StorageError::Conflict(refusal));
    }
    resubmit_as_retry(tx, &old, changes.new_job(&old), defaults, now).await
}

pub(super) async fn clone_job(
    tx: &Tx,
    id: Uuid,
    changes: Resubmit,
    defaults: &TenantDefaults,
    now: Millis,
) -> Result<JobRecord, StorageError> {
    let old = read_job(tx, id, false).await?;
    let inserted = insert(tx, changes.new_job(&old), None, defaults, now).await?;
    let new = JobRecord { cloned_from: Some(old.id), ..inserted };
    put_job(tx, &new).await?;
    Ok(new)
}

/// Deletes a job with its journal, logs, and idempotency key.
async fn delete(tx: &Tx, job: &JobRecord) -> Result<(), StorageError> {
    tx.execute("DELETE FROM jobs WHERE id = $1", &[&job.id]).await?;
    tx.execute("DELETE FROM events WHERE job = $1", &[&job.id]).await?;
    tx.execute("DELETE FROM logs WHERE job = $1", &[&job.id]).await?;
    tx.execute("DELETE FROM idempotency WHERE job = $1", &[&job.id]).await?;
    Ok(())
}

pub(super) async fn remove(tx: &Tx, id: Uuid) -> Result<JobRecord, StorageError> {
    let job = read_job(tx, id, true).await?;
    if let Some(refusal) = rules::remove_refusal(&job) {
        return Err(StorageError::Conflict(refusal));
    }
    delete(tx, &job).await?;
    Ok(job)
}

pub(super) async fn prune(
    tx: &Tx,
    finished_before: Millis,
    max: usize,
) -> Result<usize, StorageError> {
    let rows = tx
        .query(
            "SELECT record FROM jobs WHERE state IN ('completed', 'failed', 'cancelled', 'expired') \
             AND finished_at < $1 ORDER BY finished_at, id LIMIT $2 FOR UPDATE SKIP LOCKED",
            &[&ms(finished_before), &(max as i64)],
        )
        .await?;
    let old = super::records::<JobRecord>(&rows)?;
    for job in &old {
        delete(tx, job).await?;
    }
    Ok(old.len())
}

pub(super) async fn enqueue_broadcast(
    tx: &Tx,
    new: NewJob,
    live_after: Millis,
    defaults: &TenantDefaults,
    now: Millis,
) -> Result<Vec<JobRecord>, StorageError> {
    let workers = tx.query("SELECT record FROM workers ORDER BY id", &[]).await?;
    let live: Vec<String> = super::records::<WorkerRecord>(&workers)?
        .into_iter()
        .filter(|worker| worker.heartbeat >= live_after)
        .map(|worker| worker.id)
        .collect();
    if live.is_empty() {
        return Err(StorageError::Conflict("no live worker to broadcast to".into()));
    }
    // Every copy counts against the quota: check them all before the first
    // is written, so a refused broadcast stores nothing.
    let tenant = tenant(tx, &new.tenant).await?;
    tx.admit_many();
    let waiting = tx.waiting(&tenant, defaults, live.len() as u64).await?;
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
        copies.push(insert(tx, new, Some((worker, broadcast)), defaults, now).await?);
    }
    Ok(copies)
}
