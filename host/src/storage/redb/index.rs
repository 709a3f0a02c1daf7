//! The secondary indexes and tallies every write of a job keeps, so that a
//! list, a count or a queue's health costs what it returns, not what is
//! stored.
//!
//! One rule keeps them right: a job's [`rows`] and [`tallies`] are pure
//! functions of its record, and writing a record over another changes the
//! rows and tallies by the difference ([`rewrite`]). Rows go to
//! [`LISTING`] at once; tallies are summed in the [`Txn`] and written once
//! per key at commit, so a commit of a hundred jobs of one queue touches
//! each count once.
//!
//! A row is `tag, tenant \0 value \0, state, created_at, id`: the jobs of a
//! dimension value (a queue, a plugin, an owner...) in one state form a
//! group, newest last, and a list walks its groups backwards. A running job
//! keeps the rows it had when it was pending ([`row_state`]): a claim, the
//! commonest write of all, then moves no row, and the few running jobs are
//! listed from their leases. A tally's key
//! is a group (`tag ... state`), or the finished jobs of a queue in a
//! minute (`M`), or the ready jobs of a queue by the minute they became
//! due (`R`). The other [`Counter`]s share [`COUNTS`] under tags of their
//! own: a tenant's waiting jobs (`W`) and a plugin version's unfinished
//! jobs (`V`).

use super::StorageError;
use super::journal::Ops;
use super::schema::{COUNTS, JOBS, LISTING, RUNNING, decode, encode};
use super::tables::{Lent, Tables};
use crate::jobs::{JobRecord, JobState, Millis};
use ::redb::{ReadableTable, ReadableTableMetadata, WriteTransaction};
use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::ops::Deref;

/// A dimension a list may be filtered by, with the tag of its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Dim {
    /// Every job of the tenant.
    Tenant = b'T' as isize,
    /// The job's queue.
    Queue = b'Q' as isize,
    /// The plugin it runs.
    Plugin = b'P' as isize,
    /// The token that enqueued it.
    Owner = b'O' as isize,
    /// The job it is a clone of.
    ClonedFrom = b'C' as isize,
    /// The schedule that enqueued it.
    Schedule = b'S' as isize,
}

/// Tag of the retention rows: finished jobs by the time they finished.
const FINISHED: u8 = b'F';
/// Tag of the tallies of jobs finished per queue and minute.
pub(super) const MINUTE: u8 = b'M';
/// Tag of the tallies of ready jobs per queue and the minute they became due.
pub(super) const READY_SINCE: u8 = b'R';

/// What an [`MINUTE`] tally counts.
pub(super) mod minute {
    /// Jobs completed in the minute.
    pub const COMPLETED: u8 = 0;
    /// Jobs failed in the minute.
    pub const FAILED: u8 = 1;
    /// Milliseconds run by the jobs completed in the minute.
    pub const COMPLETED_MS: u8 = 2;
}

/// Every state, in the order of their codes.
pub(super) const STATES: [JobState; 8] = JobState::ALL;

/// The byte a state is stored as.
pub(super) fn state_code(state: JobState) -> u8 {
    STATES.iter().position(|s| *s == state).expect("every state is listed") as u8
}

/// The group of rows of `value` of `dim` (empty for [`Dim::Tenant`]) in
/// `state`: a prefix of [`LISTING`] keys and a key of [`COUNTS`].
pub(super) fn group(dim: Dim, tenant: &str, value: &str, state: JobState) -> Vec<u8> {
    let mut key = prefix(dim as u8, tenant, value);
    key.push(state_code(state));
    key
}

/// `tag, tenant \0 value \0`: names never hold `\0`.
pub(super) fn prefix(tag: u8, tenant: &str, value: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(tenant.len() + value.len() + 28);
    key.push(tag);
    key.extend_from_slice(tenant.as_bytes());
    key.push(0);
    key.extend_from_slice(value.as_bytes());
    key.push(0);
    key
}

/// The state a job's rows are grouped under: its own, but a running job's
/// rows stay in the pending group (see the module's doc).
pub(super) fn row_state(state: JobState) -> JobState {
    match state {
        JobState::Running => JobState::Pending,
        state => state,
    }
}

/// The position a row ends with: creation time and id, both big-endian, so
/// byte order is list order.
pub(super) fn position(created_at: Millis, id: u128) -> [u8; 24] {
    let mut end = [0; 24];
    end[..8].copy_from_slice(&created_at.to_be_bytes());
    end[8..].copy_from_slice(&id.to_be_bytes());
    end
}

/// The (time, id) a row or retention row ends with.
pub(super) fn row_position(key: &[u8]) -> (Millis, u128) {
    let end = &key[key.len() - 24..];
    let time = u64::from_be_bytes(end[..8].try_into().expect("8 bytes"));
    (time, u128::from_be_bytes(end[8..].try_into().expect("16 bytes")))
}

/// The values of every dimension `job` is listed under.
fn dims(job: &JobRecord) -> Vec<(Dim, String)> {
    let mut dims = vec![
        (Dim::Tenant, String::new()),
        (Dim::Queue, job.queue.clone()),
        (Dim::Plugin, job.job.clone()),
        (Dim::Owner, job.owner.clone()),
    ];
    if let Some(original) = job.cloned_from {
        dims.push((Dim::ClonedFrom, original.to_string()));
    }
    if let Some(schedule) = job.flow.schedule {
        dims.push((Dim::Schedule, schedule.to_string()));
    }
    dims
}

/// The rows of `job` in [`LISTING`].
fn rows(job: &JobRecord) -> Vec<Vec<u8>> {
    rows_in(job, row_state(job.state))
}

/// The rows of `job` with its dimensions grouped under `state`.
fn rows_in(job: &JobRecord, state: JobState) -> Vec<Vec<u8>> {
    let at = position(job.created_at, job.id.as_u128());
    let mut rows: Vec<Vec<u8>> = dims(job)
        .into_iter()
        .map(|(dim, value)| {
            let mut row = group(dim, &job.tenant, &value, state);
            row.extend_from_slice(&at);
            row
        })
        .collect();
    if let Some(finished) = job.finished_at.filter(|_| job.state.is_terminal()) {
        let mut row = vec![FINISHED];
        row.extend_from_slice(&position(finished, job.id.as_u128()));
        rows.push(row);
    }
    rows
}

/// What `job` adds to [`COUNTS`]: one to each of its groups, and as the
/// queue's health needs: a finished job to its minute (with its run time
/// when it completed), a ready job to the minute it became due.
fn tallies(job: &JobRecord) -> Vec<(Vec<u8>, i64)> {
    let mut tallies: Vec<(Vec<u8>, i64)> = dims(job)
        .into_iter()
        .map(|(dim, value)| (group(dim, &job.tenant, &value, job.state), 1))
        .collect();
    let per_minute = |tag: u8, at: Millis| {
        let mut key = prefix(tag, &job.tenant, &job.queue);
        key.extend_from_slice(&(at / 60_000).to_be_bytes());
        key
    };
    match (job.state, job.finished_at) {
        (JobState::Pending, _) => tallies.push((per_minute(READY_SINCE, job.run_at), 1)),
        (JobState::Completed, Some(at)) => {
            let ran = at.saturating_sub(job.started_at.unwrap_or(job.created_at));
            let key = per_minute(MINUTE, at);
            tallies.push(([key.as_slice(), &[minute::COMPLETED]].concat(), 1));
            tallies.push(([key.as_slice(), &[minute::COMPLETED_MS]].concat(), ran as i64));
        }
        (JobState::Failed, Some(at)) => {
            tallies.push(([per_minute(MINUTE, at).as_slice(), &[minute::FAILED]].concat(), 1));
        }
        _ => {}
    }
    tallies
}

/// A count of [`COUNTS`], summed in the [`Txn`] and written once per key
/// at commit. Every count lives in that one table, so a commit touches
/// one table of counts however many kinds it changed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Counter {
    /// A tally: a group of [`LISTING`] rows, or a per-minute figure.
    Tally(Vec<u8>),
    /// The jobs of a tenant waiting to run.
    Waiting(String),
    /// The unfinished jobs of a plugin version: tenant, name, digest.
    PluginRef(String, String, String),
}

/// Tag of the [`Counter::Waiting`] counts.
const WAITING: u8 = b'W';
/// Tag of the [`Counter::PluginRef`] counts.
const PLUGIN_REF: u8 = b'V';

impl Counter {
    /// Its key in [`COUNTS`] (a tally's own, not copied: every commit
    /// writes its tallies by these keys).
    pub(super) fn key(&self) -> Cow<'_, [u8]> {
        match self {
            Counter::Tally(key) => Cow::Borrowed(key),
            Counter::Waiting(tenant) => Cow::Owned(prefix(WAITING, tenant, "")),
            Counter::PluginRef(tenant, name, digest) => {
                let mut key = prefix(PLUGIN_REF, tenant, name);
                key.extend_from_slice(digest.as_bytes());
                Cow::Owned(key)
            }
        }
    }

    /// Its value as stored (zero when absent: [`COUNTS`] keeps no zeros).
    pub(super) fn stored(
        &self,
        counts: &impl ReadableTable<&'static [u8], u64>,
    ) -> Result<u64, StorageError> {
        Ok(counts.get(&*self.key())?.map_or(0, |v| v.value()))
    }
}

/// Whether any [`Counter::Waiting`] count is stored.
pub(super) fn any_waiting(
    counts: &impl ReadableTable<&'static [u8], u64>,
) -> Result<bool, StorageError> {
    Ok(counts.range::<&[u8]>(&[WAITING][..]..&[WAITING + 1][..])?.next().is_some())
}

/// A write transaction with the counts its writes changed, summed until
/// [`Txn::close`] writes them: a commit of a hundred jobs touches each
/// count once, and a job enqueued and claimed in one commit not at all.
/// Its tables are opened once each ([`Tables`]); the transaction itself
/// is its owner's to commit once this is closed.
pub(super) struct Txn<'t> {
    tables: Tables<'t>,
    sums: RefCell<BTreeMap<Counter, i64>>,
}

/// Its tables are reached through it: `txn.open_table(JOBS)`.
impl<'t> Deref for Txn<'t> {
    type Target = Tables<'t>;

    fn deref(&self) -> &Tables<'t> {
        &self.tables
    }
}

impl<'t> Txn<'t> {
    pub(super) fn new(txn: &'t WriteTransaction, ops: Ops) -> Self {
        Self { tables: Tables::new(txn, ops), sums: RefCell::default() }
    }

    /// Writes the summed counts and closes the tables, so the transaction
    /// can commit; returns its writes, for the journal.
    pub(super) fn close(self) -> Result<Ops, StorageError> {
        let mut counts = self.open_table(COUNTS)?;
        for (counter, delta) in self.sums.take() {
            if delta != 0 {
                add(&mut counts, &counter.key(), delta)?;
            }
        }
        drop(counts);
        Ok(self.take_ops())
    }

    /// Adds `delta` to `counter`.
    pub(super) fn add(&self, counter: Counter, delta: i64) {
        *self.sums.borrow_mut().entry(counter).or_default() += delta;
    }

    /// The value of `counter`, this transaction's own changes included.
    pub(super) fn count_of(&self, counter: &Counter) -> Result<u64, StorageError> {
        let stored = counter.stored(&*self.open_table(COUNTS)?)?;
        Ok(stored.saturating_add_signed(self.pending(counter)))
    }

    fn pending(&self, counter: &Counter) -> i64 {
        self.sums.borrow().get(counter).copied().unwrap_or(0)
    }

    fn count(&self, tallies: Vec<(Vec<u8>, i64)>, sign: i64) {
        for (key, n) in tallies {
            self.add(Counter::Tally(key), sign * n);
        }
    }
}

/// Adds `delta` to the count at `key` of `table`, which keeps no zeros.
fn add(table: &mut Lent<&'static [u8], u64>, key: &[u8], delta: i64) -> Result<(), StorageError> {
    let count = table.get(key)?.map_or(0, |v| v.value()).saturating_add_signed(delta);
    match count {
        0 => table.remove(key)?,
        count => table.insert(key, count)?,
    };
    Ok(())
}

/// Writes `job` over `before` (`None`: a new job), with its rows and
/// tallies changed by the difference. Every write of a job record whose
/// state, queue, plugin, owner, times or origin may differ goes here.
pub(super) fn rewrite(
    txn: &Txn,
    before: Option<&JobRecord>,
    job: &JobRecord,
) -> Result<(), StorageError> {
    reindex(txn, before, Some(job))?;
    txn.open_table(JOBS)?.insert(job.id.as_u128(), encode(job).as_slice())?;
    Ok(())
}

/// Takes a deleted job's rows and tallies out.
pub(super) fn unlist(txn: &Txn, job: &JobRecord) -> Result<(), StorageError> {
    reindex(txn, Some(job), None)
}

fn reindex(
    txn: &Txn,
    before: Option<&JobRecord>,
    after: Option<&JobRecord>,
) -> Result<(), StorageError> {
    let old = before.map(rows).unwrap_or_default();
    let new = after.map(rows).unwrap_or_default();
    if old == new && before.map(|b| (b.state, b.run_at)) == after.map(|a| (a.state, a.run_at)) {
        return Ok(());
    }
    let mut listing = txn.open_table(LISTING)?;
    for row in old.iter().filter(|row| !new.contains(row)) {
        listing.remove(row.as_slice())?;
    }
    for row in new.iter().filter(|row| !old.contains(row)) {
        listing.insert(row.as_slice(), ())?;
    }
    if let Some(before) = before {
        txn.count(tallies(before), -1);
    }
    if let Some(after) = after {
        txn.count(tallies(after), 1);
    }
    Ok(())
}

/// Up to `max` ids of jobs that finished before `before`, oldest first.
pub(super) fn finished_until(
    txn: &Txn,
    before: Millis,
    max: usize,
) -> Result<Vec<u128>, StorageError> {
    let end = [&[FINISHED][..], &position(before, 0)].concat();
    txn.open_table(LISTING)?
        .range::<&[u8]>(&[FINISHED][..]..end.as_slice())?
        .take(max)
        .map(|entry| Ok(row_position(entry?.0.value()).1))
        .collect()
}

/// Lists and counts every job of a file from before the indexes, once;
/// and moves the rows of running jobs a file from before [`row_state`]
/// grouped under `running` to their pending groups (it reads the leases,
/// so on a current file it costs one look per running job).
pub(super) fn upgrade(txn: &Txn) -> Result<(), StorageError> {
    if !txn.open_table(LISTING)?.is_empty()? || txn.open_table(JOBS)?.is_empty()? {
        return regroup_running(txn);
    }
    for entry in txn.open_table(JOBS)?.iter()? {
        let job: JobRecord = decode(entry?.1.value())?;
        reindex(txn, None, Some(&job))?;
    }
    Ok(())
}

fn regroup_running(txn: &Txn) -> Result<(), StorageError> {
    let ids: Vec<u128> = txn
        .open_table(RUNNING)?
        .iter()?
        .map(|e| e.map(|(k, _)| k.value()))
        .collect::<Result<_, _>>()?;
    let jobs = txn.open_table(JOBS)?;
    let mut listing = txn.open_table(LISTING)?;
    for id in ids {
        let Some(job) = jobs.get(id)?.map(|v| decode::<JobRecord>(v.value())).transpose()? else {
            continue;
        };
        for (old, new) in rows_in(&job, JobState::Running).iter().zip(rows(&job)) {
            if listing.remove(old.as_slice())?.is_some() {
                listing.insert(new.as_slice(), ())?;
            }
        }
    }
    Ok(())
}
