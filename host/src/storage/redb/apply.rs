//! Writing a rule's [`Transition`]: the one way a job's state changes in
//! this backend. What the indexes need follows from the state left and the
//! state entered: a waiting job leaves its index, a running one its lease
//! and lock; the new state enters its index; the record is written and the
//! journal says why. A terminal event of a job with a `callback_url` writes
//! its webhook to the outbox in the same transaction, so none is lost.

use super::schema::{
    CALLBACKS, EVENTS, JOBS, LOCKS, PENDING, RUNNING, SCHEDULED, WAITING, encode, pending_key,
    pending_key_id, scheduled_key,
};
use super::{Lease, StorageError, put_job, read_job};
use crate::jobs::{JobEvent, JobRecord, JobState, Millis, Transition};
use ::redb::{ReadableTable, ReadableTableMetadata, WriteTransaction};
use std::collections::HashMap;
use uuid::Uuid;

/// Writes `transition` at time `at`: indexes, record, journal (and outbox).
/// `before` is the record as stored, `None` for a new job.
pub(super) fn apply(
    txn: &WriteTransaction,
    before: Option<&JobRecord>,
    transition: &Transition,
    at: Millis,
) -> Result<JobEvent, StorageError> {
    let job = &transition.job;
    if let Some(before) = before {
        match before.state {
            JobState::Pending | JobState::Scheduled => unindex_waiting(txn, before)?,
            JobState::Running if job.state != JobState::Running => release(txn, before)?,
            _ => {}
        }
    }
    let was_running = before.is_some_and(|b| b.state == JobState::Running);
    match job.state {
        JobState::Pending | JobState::Scheduled => index_waiting(txn, job)?,
        JobState::Running if !was_running => hold(txn, job)?,
        _ => {}
    }
    put_job(txn, job)?;
    journal(txn, job, transition.from, at, &transition.reason)
}

/// Appends an event to the job's journal: the transition from `from` to the
/// job's current state, at `at` (the time the rule decided it, so the
/// journal and the times it explains agree).
pub(super) fn journal(
    txn: &WriteTransaction,
    job: &JobRecord,
    from: Option<JobState>,
    at: Millis,
    reason: &str,
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
        reason: reason.to_string(),
    };
    events.insert((id, seq), encode(&event).as_slice())?;
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
fn unindex_waiting(txn: &WriteTransaction, job: &JobRecord) -> Result<(), StorageError> {
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

/// A claimed job's lease in the running index, and its lock taken.
fn hold(txn: &WriteTransaction, job: &JobRecord) -> Result<(), StorageError> {
    let lease = Lease {
        worker: job.worker.clone().unwrap_or_default(),
        until: job.lease_until.unwrap_or_default(),
        queue: job.queue.clone(),
        tenant: job.tenant.clone(),
    };
    txn.open_table(RUNNING)?.insert(job.id.as_u128(), encode(&lease).as_slice())?;
    if let Some(lock) = &job.lock {
        txn.open_table(LOCKS)?.insert(lock.as_str(), job.id.as_u128())?;
    }
    Ok(())
}

/// Takes a job out of the running index and releases its lock.
fn release(txn: &WriteTransaction, job: &JobRecord) -> Result<(), StorageError> {
    txn.open_table(RUNNING)?.remove(job.id.as_u128())?;
    if let Some(lock) = &job.lock {
        let mut locks = txn.open_table(LOCKS)?;
        let held_by_job =
            locks.get(lock.as_str())?.is_some_and(|holder| holder.value() == job.id.as_u128());
        if held_by_job {
            locks.remove(lock.as_str())?;
        }
    }
    Ok(())
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
pub(super) fn waiting(
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
pub(super) fn recount_waiting(txn: &WriteTransaction) -> Result<(), StorageError> {
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
