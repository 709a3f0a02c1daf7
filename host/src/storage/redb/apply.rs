//! Writing a rule's [`Transition`]: the one way a job's state changes in
//! this backend. What the indexes need follows from the state left and the
//! state entered: a waiting job leaves its index, a running one its lease
//! and lock; the new state enters its index; the record is written and the
//! journal says why. A terminal event of a job with a `callback_url` writes
//! its webhook to the outbox in the same transaction, so none is lost, and
//! marks it pending on the record. The record's secondary indexes and
//! tallies follow it ([`rewrite`]).

use super::index::rewrite;
use super::index::{Counter, Txn, any_waiting};
use super::schema::{
    CALLBACKS, COUNTS, DEPENDENTS, EVENTS, EXPIRING, JOBS, LOCKS, PARKED, PENDING_V1,
    PLUGIN_REFS_V1, PLUGIN_VERSIONS, PLUGINS, READY, RUNNING, SCHEDULED, WAITING_V1, decode,
    encode, pending_v1_id, ready_key, ready_key_id, scheduled_key,
};
use super::{Lease, StorageError, read_job};
use crate::jobs::flow::settle;
use crate::jobs::{JobEvent, JobRecord, JobState, Millis, PluginRecord, Transition, WebhookStatus};
use ::redb::{ReadableTable, ReadableTableMetadata};
use std::collections::HashMap;
use uuid::Uuid;

/// Writes `transition` at time `at`: indexes, record, journal (and outbox).
/// `before` is the record as stored, `None` for a new job.
pub(super) fn apply(
    txn: &Txn,
    before: Option<&JobRecord>,
    transition: &Transition,
    at: Millis,
) -> Result<JobEvent, StorageError> {
    let job = &transition.job;
    if let Some(before) = before {
        match before.state {
            JobState::Blocked | JobState::Pending | JobState::Scheduled => {
                unindex_waiting(txn, before)?
            }
            JobState::Running if job.state != JobState::Running => release(txn, before)?,
            _ => {}
        }
    }
    let was_running = before.is_some_and(|b| b.state == JobState::Running);
    match job.state {
        JobState::Blocked | JobState::Pending | JobState::Scheduled => index_waiting(txn, job)?,
        JobState::Running if !was_running => hold(txn, job)?,
        _ => {}
    }
    let opened = before.is_none() && !job.state.is_terminal();
    let closed = before.is_some_and(|b| !b.state.is_terminal()) && job.state.is_terminal();
    if opened || closed {
        count_plugin_ref(txn, job, if opened { 1 } else { -1 });
    }
    if job.state.is_terminal() && transition.from != Some(job.state) && job.callback_url.is_some() {
        txn.open_table(CALLBACKS)?.insert((at, job.id.as_u128()), 0)?;
        let job = JobRecord { webhook: Some(WebhookStatus::pending(at)), ..job.clone() };
        rewrite(txn, before, &job)?;
    } else {
        rewrite(txn, before, job)?;
    }
    let event = journal(txn, job, transition.from, at, &transition.reason)?;
    if closed {
        settle_dependents(txn, job.id, at)?;
    }
    Ok(event)
}

/// Asks the settle rule about every job waiting for `finished`, now that it
/// finished, and writes what it decides (which may finish them in turn:
/// a failure cancels down the whole graph in this one transaction).
fn settle_dependents(txn: &Txn, finished: Uuid, at: Millis) -> Result<(), StorageError> {
    let key = finished.as_u128();
    let waiting: Vec<u128> = {
        let mut table = txn.open_table(DEPENDENTS)?;
        let ids = table
            .range((key, 0)..=(key, u128::MAX))?
            .map(|entry| entry.map(|(k, _)| k.value().1))
            .collect::<Result<_, _>>()?;
        table.remove_range((key, 0)..=(key, u128::MAX))?;
        ids
    };
    for id in waiting {
        let job = read_job(&*txn.open_table(JOBS)?, Uuid::from_u128(id))?;
        if job.state != JobState::Blocked {
            continue;
        }
        let deps = dependencies(txn, &job.flow.depends_on)?;
        if let Some(transition) = settle(&job, &deps, at) {
            apply(txn, Some(&job), &transition, at)?;
        }
    }
    Ok(())
}

/// The records of the jobs `ids`, `None` for one not stored.
pub(super) fn dependencies(
    txn: &Txn,
    ids: &[Uuid],
) -> Result<Vec<(Uuid, Option<JobRecord>)>, StorageError> {
    let jobs = txn.open_table(JOBS)?;
    let mut found = Vec::with_capacity(ids.len());
    for id in ids {
        let record = jobs.get(id.as_u128())?.map(|v| decode(v.value())).transpose()?;
        found.push((*id, record));
    }
    Ok(found)
}

/// Counts an unfinished job of a plugin version in or out.
fn count_plugin_ref(txn: &Txn, job: &JobRecord, delta: i64) {
    let version =
        Counter::PluginRef(job.tenant.clone(), job.job.clone(), job.plugin_digest.clone());
    txn.add(version, delta);
}

/// Appends an event to the job's journal: the transition from `from` to the
/// job's current state, at `at` (the time the rule decided it, so the
/// journal and the times it explains agree).
pub(super) fn journal(
    txn: &Txn,
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
    Ok(event)
}

/// Puts a waiting job in the index its state calls for (and in the
/// deadline index if it has one), and counts it.
fn index_waiting(txn: &Txn, job: &JobRecord) -> Result<(), StorageError> {
    if let Some(at) = job.expires_at {
        txn.open_table(EXPIRING)?.insert((at, job.id.as_u128()), ())?;
    }
    match job.state {
        JobState::Blocked => {}
        JobState::Pending => {
            txn.open_table(READY)?.insert(ready_key(job).as_slice(), ())?;
        }
        JobState::Scheduled => {
            txn.open_table(SCHEDULED)?.insert(scheduled_key(job), ())?;
        }
        _ => return Ok(()),
    }
    count_waiting(txn, &job.tenant, 1);
    Ok(())
}

/// Removes a waiting job from its indexes, and uncounts it.
fn unindex_waiting(txn: &Txn, job: &JobRecord) -> Result<(), StorageError> {
    if let Some(at) = job.expires_at {
        txn.open_table(EXPIRING)?.remove((at, job.id.as_u128()))?;
    }
    match job.state {
        JobState::Blocked => {}
        JobState::Pending => {
            let key = ready_key(job);
            txn.open_table(READY)?.remove(key.as_slice())?;
            if let Some(lock) = &job.lock {
                txn.open_table(PARKED)?.remove((lock.as_str(), key.as_slice()))?;
            }
        }
        JobState::Scheduled => {
            txn.open_table(SCHEDULED)?.remove(scheduled_key(job))?;
        }
        _ => return Ok(()),
    }
    count_waiting(txn, &job.tenant, -1);
    Ok(())
}

/// A claimed job's lease in the running index, and its lock taken.
fn hold(txn: &Txn, job: &JobRecord) -> Result<(), StorageError> {
    let lease = Lease {
        worker: job.worker.clone().unwrap_or_default(),
        until: job.lease_until.unwrap_or_default(),
        queue: job.queue.clone(),
        tenant: job.tenant.clone(),
        attempt: job.attempt,
    };
    txn.open_table(RUNNING)?.insert(job.id.as_u128(), encode(&lease).as_slice())?;
    if let Some(lock) = &job.lock {
        txn.open_table(LOCKS)?.insert(lock.as_str(), job.id.as_u128())?;
    }
    Ok(())
}

/// Takes a job out of the running index and releases its lock.
fn release(txn: &Txn, job: &JobRecord) -> Result<(), StorageError> {
    txn.open_table(RUNNING)?.remove(job.id.as_u128())?;
    if let Some(lock) = &job.lock {
        let held_by_job = txn
            .open_table(LOCKS)?
            .get(lock.as_str())?
            .is_some_and(|holder| holder.value() == job.id.as_u128());
        if held_by_job {
            unlock(txn, lock)?;
        }
    }
    Ok(())
}

/// Releases `lock` and puts the ready jobs parked behind it back in line.
pub(super) fn unlock(txn: &Txn, lock: &str) -> Result<(), StorageError> {
    txn.open_table(LOCKS)?.remove(lock)?;
    let mut parked = txn.open_table(PARKED)?;
    let mut keys: Vec<Vec<u8>> = Vec::new();
    for entry in parked.range::<(&str, &[u8])>((lock, &[][..])..)? {
        let (key, _) = entry?;
        let (name, ready) = key.value();
        if name != lock {
            break;
        }
        keys.push(ready.to_vec());
    }
    let mut ready = txn.open_table(READY)?;
    for key in keys {
        parked.remove((lock, key.as_slice()))?;
        ready.insert(key.as_slice(), ())?;
    }
    Ok(())
}

/// Moves a ready job whose lock is held out of line, until the lock is
/// released.
pub(super) fn park(txn: &Txn, lock: &str, key: &[u8]) -> Result<(), StorageError> {
    txn.open_table(READY)?.remove(key)?;
    txn.open_table(PARKED)?.insert((lock, key), ())?;
    Ok(())
}

fn count_waiting(txn: &Txn, tenant: &str, delta: i64) {
    txn.add(Counter::Waiting(tenant.to_string()), delta);
}

/// Brings a file from an earlier version up to date: the ready jobs of the
/// old single index move into the grouped one, the counts of the old
/// tables of their own into [`COUNTS`], and the waiting counts are made
/// when the file has waiting jobs but none (it predates them). After
/// that the index helpers keep both in the same transactions as the jobs,
/// so they stay right through any crash and an open costs nothing.
pub(super) fn upgrade(txn: &Txn) -> Result<(), StorageError> {
    let old: Vec<u128> = txn
        .open_table(PENDING_V1)?
        .iter()?
        .map(|entry| entry.map(|(key, _)| pending_v1_id(key.value()).as_u128()))
        .collect::<Result<_, _>>()?;
    if !old.is_empty() {
        let jobs = txn.open_table(JOBS)?;
        let mut ready = txn.open_table(READY)?;
        for id in old {
            ready.insert(ready_key(&read_job(&*jobs, Uuid::from_u128(id))?).as_slice(), ())?;
        }
    }
    txn.delete_table(PENDING_V1)?;
    move_counts_v1(txn)?;
    recount_plugin_refs(txn)?;
    recount_waiting(txn)
}

/// Moves the counts of the tables a file from before [`COUNTS`] held them
/// all kept them in, and drops those tables.
fn move_counts_v1(txn: &Txn) -> Result<(), StorageError> {
    let mut moved: Vec<(Counter, u64)> = Vec::new();
    for entry in txn.open_table(WAITING_V1)?.iter()? {
        let (tenant, count) = entry?;
        moved.push((Counter::Waiting(tenant.value().to_string()), count.value()));
    }
    for entry in txn.open_table(PLUGIN_REFS_V1)?.iter()? {
        let (key, count) = entry?;
        let (tenant, name, digest) = key.value();
        moved.push((Counter::PluginRef(tenant.into(), name.into(), digest.into()), count.value()));
    }
    let mut counts = txn.open_table(COUNTS)?;
    for (counter, count) in moved {
        counts.insert(&*counter.key(), count)?;
    }
    drop(counts);
    txn.delete_table(WAITING_V1)?;
    txn.delete_table(PLUGIN_REFS_V1)?;
    Ok(())
}

/// Records the current version of every plugin and counts the unfinished
/// jobs of every version, for a file from before versions were kept.
fn recount_plugin_refs(txn: &Txn) -> Result<(), StorageError> {
    if !txn.open_table(PLUGIN_VERSIONS)?.is_empty()? || txn.open_table(PLUGINS)?.is_empty()? {
        return Ok(());
    }
    let mut current: Vec<PluginRecord> = Vec::new();
    for entry in txn.open_table(PLUGINS)?.iter()? {
        current.push(decode(entry?.1.value())?);
    }
    let mut versions = txn.open_table(PLUGIN_VERSIONS)?;
    for record in &current {
        let key = (record.tenant.as_str(), record.name.as_str(), record.digest.as_str());
        versions.insert(key, encode(record).as_slice())?;
    }
    drop(versions);
    let mut open = Vec::new();
    for entry in txn.open_table(JOBS)?.iter()? {
        let job: JobRecord = decode(entry?.1.value())?;
        if !job.state.is_terminal() {
            open.push(job);
        }
    }
    for job in &open {
        count_plugin_ref(txn, job, 1);
    }
    Ok(())
}

/// Counts the waiting jobs of every tenant from the indexes.
fn recount_waiting(txn: &Txn) -> Result<(), StorageError> {
    let nothing_waits = txn.open_table(READY)?.is_empty()?
        && txn.open_table(PARKED)?.is_empty()?
        && txn.open_table(SCHEDULED)?.is_empty()?;
    if nothing_waits || any_waiting(&*txn.open_table(COUNTS)?)? {
        return Ok(());
    }
    let mut ids: Vec<u128> = Vec::new();
    for entry in txn.open_table(READY)?.iter()? {
        ids.push(ready_key_id(entry?.0.value()).as_u128());
    }
    for entry in txn.open_table(PARKED)?.iter()? {
        ids.push(ready_key_id(entry?.0.value().1).as_u128());
    }
    for entry in txn.open_table(SCHEDULED)?.iter()? {
        ids.push(entry?.0.value().1);
    }
    let mut counts: HashMap<String, u64> = HashMap::new();
    let jobs = txn.open_table(JOBS)?;
    for id in ids {
        *counts.entry(read_job(&*jobs, Uuid::from_u128(id))?.tenant).or_default() += 1;
    }
    for (tenant, count) in counts {
        count_waiting(txn, &tenant, count as i64);
    }
    Ok(())
}
