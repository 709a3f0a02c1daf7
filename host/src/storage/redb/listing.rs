//! The job list and queue health, read from the indexes and tallies of
//! [`super::index`] rather than from the job records: a page reads its
//! rows and records, a count or a queue's health reads its tallies.
//!
//! A list picks, of the dimensions its filter names (the tenant always),
//! the one with the fewest jobs in the states asked for, and walks that
//! dimension's groups newest first, merged. When that one dimension (and
//! the state and `since`) is the whole filter, rows match without reading
//! records and the total is a tally; otherwise each row's record is read
//! and matched; counting past the page stops after [`COUNT_BUDGET`] rows
//! and reading after [`SCAN_BUDGET`] records, so a text search over
//! millions stays bounded (its total is then a lower bound, and its page
//! may be short, with a cursor to go on).

use super::index::{
    Dim, MINUTE, READY_SINCE, STATES, group, minute, position, row_position, row_state, state_code,
};
use super::schema::{COUNTS, JOBS, LISTING, QUEUES, RUNNING, decode};
use super::{Lease, StorageError, read_job};
use crate::jobs::{JobState, Millis};
use crate::storage::{Cursor, JobFilter, JobPage, QueueStats, Start};
use ::redb::{ReadOnlyTable, ReadTransaction, ReadableTable};
use std::collections::BTreeMap;
use std::ops::Bound;
use uuid::Uuid;

/// Rows a list reads past its page to count the matches of a filter its
/// tallies cannot answer.
const COUNT_BUDGET: usize = 10_000;
/// Records a list reads in all to match a filter its rows cannot answer
/// (a text search): past that it returns the matches found so far, with a
/// cursor to go on from the last record read.
const SCAN_BUDGET: usize = 100_000;

type Counts = ReadOnlyTable<&'static [u8], u64>;

/// The groups a list walks, how many jobs they hold, and whether every row
/// in them matches the filter.
struct Plan {
    groups: Vec<Vec<u8>>,
    jobs: u64,
    covers: bool,
}

pub(super) fn list(
    txn: &ReadTransaction,
    filter: &JobFilter,
    start: Start,
    limit: usize,
) -> Result<JobPage, StorageError> {
    let mut plan = plan(&txn.open_table(COUNTS)?, filter)?;
    let (offset, after) = match start {
        Start::Offset(offset) => (offset, None),
        Start::After(cursor) => (0, Some(cursor)),
    };
    let listing = txn.open_table(LISTING)?;
    let jobs = txn.open_table(JOBS)?;
    let running = txn.open_table(RUNNING)?;
    // Running jobs share the pending rows (index::row_state): a list of
    // the running reads their leases, one of the pending passes them.
    let only_running = filter.state == Some(JobState::Running);
    let pass_running = filter.state == Some(JobState::Pending);
    let positions: Box<dyn Iterator<Item = Position>> = if only_running {
        plan.covers = false;
        Box::new(running_newest_first(&running, &jobs, filter, after)?.into_iter().map(Ok))
    } else {
        Box::new(newest_first(&listing, &plan.groups, filter.since, after)?)
    };
    let tallied = (plan.covers && filter.since.is_none()).then_some(plan.jobs as usize);
    let mut page = Vec::new();
    let (mut matched, mut read, mut past_page) = (0, 0, 0);
    let (mut more, mut ended, mut last_read) = (false, true, None);
    for entry in positions {
        let (created_at, id) = entry?;
        if pass_running && running.get(id)?.is_some() {
            continue;
        }
        let id = Uuid::from_u128(id);
        let full = page.len() >= limit;
        let counted_enough = tallied.is_some() || past_page >= COUNT_BUDGET;
        if (full && counted_enough) || (!plan.covers && read >= SCAN_BUDGET) {
            (more, ended) = (true, tallied.is_some());
            break;
        }
        past_page += usize::from(full);
        let job = match (plan.covers, !full && matched >= offset) {
            (true, false) => None,
            _ => Some(read_job(&jobs, id)?),
        };
        if !plan.covers {
            read += 1;
            last_read = Some(Cursor { created_at, id });
            if !job.as_ref().is_some_and(|job| filter.matches(job)) {
                continue;
            }
        }
        more |= full;
        matched += 1;
        if let Some(job) = job.filter(|_| !full && matched > offset) {
            page.push(job);
        }
    }
    let next = match page.last() {
        Some(job) if page.len() >= limit => more.then(|| Cursor::after(job)),
        _ => last_read.filter(|_| more),
    };
    let (total, total_exact) = match tallied {
        Some(total) => (total, true),
        None => (matched, ended && after.is_none()),
    };
    Ok(JobPage { jobs: page, total, total_exact, next })
}

/// Which groups a list of `filter` walks: the named dimension with the
/// fewest jobs in the states asked for (the tenant's own groups when it
/// names none), or every tenant's when it names no tenant.
fn plan(counts: &Counts, filter: &JobFilter) -> Result<Plan, StorageError> {
    let states: Vec<JobState> = filter.state.map_or(STATES.to_vec(), |state| vec![state]);
    let named: Vec<(Dim, String)> = [
        (Dim::Queue, filter.queue.clone()),
        (Dim::Plugin, filter.job.clone()),
        (Dim::Owner, filter.owner.clone()),
        (Dim::ClonedFrom, filter.cloned_from.map(|id| id.to_string())),
        (Dim::Schedule, filter.schedule.map(|id| id.to_string())),
    ]
    .into_iter()
    .filter_map(|(dim, value)| Some((dim, value?)))
    .collect();
    let alone = named.len() <= 1 && filter.search.is_none();
    let Some(tenant) = &filter.tenant else {
        let mut plan = Plan { groups: Vec::new(), jobs: 0, covers: named.is_empty() && alone };
        for entry in
            counts.range::<&[u8]>(&[Dim::Tenant as u8][..]..&[Dim::Tenant as u8 + 1][..])?
        {
            let (key, count) = entry?;
            let key = key.value();
            let state = STATES[key[key.len() - 1] as usize];
            if states.contains(&state) {
                let mut rows = key.to_vec();
                *rows.last_mut().expect("a group ends in its state") = state_code(row_state(state));
                if !plan.groups.contains(&rows) {
                    plan.groups.push(rows);
                }
                plan.jobs += count.value();
            }
        }
        return Ok(plan);
    };
    let mut best: Option<Plan> = None;
    for (dim, value) in named.iter().cloned().chain([(Dim::Tenant, String::new())]) {
        let mut jobs = 0;
        let mut groups: Vec<Vec<u8>> = Vec::new();
        for state in &states {
            jobs +=
                counts.get(group(dim, tenant, &value, *state).as_slice())?.map_or(0, |v| v.value());
            let rows = group(dim, tenant, &value, row_state(*state));
            if !groups.contains(&rows) {
                groups.push(rows);
            }
        }
        if best.as_ref().is_none_or(|best| jobs < best.jobs) {
            let covers = alone && (dim != Dim::Tenant || named.is_empty());
            best = Some(Plan { groups, jobs, covers });
        }
    }
    Ok(best.expect("the tenant is always a candidate"))
}

type Position = Result<(Millis, u128), StorageError>;

/// The running jobs of the filter's tenant (or of all) created at or after
/// its `since` and before `after`, newest first, from their leases: they
/// are few, as many as the hosts have slots.
fn running_newest_first(
    running: &ReadOnlyTable<u128, &'static [u8]>,
    jobs: &ReadOnlyTable<u128, &'static [u8]>,
    filter: &JobFilter,
    after: Option<Cursor>,
) -> Result<Vec<(Millis, u128)>, StorageError> {
    let mut found = Vec::new();
    for entry in running.iter()? {
        let (id, lease) = entry?;
        let lease: Lease = decode(lease.value())?;
        if filter.tenant.as_ref().is_some_and(|tenant| *tenant != lease.tenant) {
            continue;
        }
        let id = id.value();
        let created_at = read_job(jobs, Uuid::from_u128(id))?.created_at;
        let at = (created_at, id);
        let before_cursor = after.is_none_or(|c| at < (c.created_at, c.id.as_u128()));
        if before_cursor && filter.since.is_none_or(|since| created_at >= since) {
            found.push(at);
        }
    }
    found.sort_unstable_by(|a, b| b.cmp(a));
    Ok(found)
}

/// The rows of `groups` created at or after `since` and before `after`,
/// newest first: one backwards walk per group, merged.
fn newest_first<'a>(
    listing: &'a ReadOnlyTable<&'static [u8], ()>,
    groups: &[Vec<u8>],
    since: Option<Millis>,
    after: Option<Cursor>,
) -> Result<impl Iterator<Item = Position> + 'a, StorageError> {
    let mut walks = Vec::with_capacity(groups.len());
    for group in groups {
        let low = [group.as_slice(), &position(since.unwrap_or(0), 0)].concat();
        let high = match after {
            Some(cursor) => {
                let end = position(cursor.created_at, cursor.id.as_u128());
                Bound::Excluded([group.as_slice(), &end].concat())
            }
            None => Bound::Included([group.as_slice(), &[0xff; 24]].concat()),
        };
        let high = match &high {
            Bound::Included(key) => Bound::Included(key.as_slice()),
            Bound::Excluded(key) => Bound::Excluded(key.as_slice()),
            Bound::Unbounded => Bound::Unbounded,
        };
        let walk = listing
            .range::<&[u8]>((Bound::Included(low.as_slice()), high))?
            .rev()
            .map(|entry| Ok(row_position(entry?.0.value())));
        walks.push(walk.peekable());
    }
    Ok(std::iter::from_fn(move || {
        let newest = walks
            .iter_mut()
            .enumerate()
            .filter_map(|(i, walk)| Some((i, walk.peek()?)))
            .max_by_key(|(_, head)| head.as_ref().ok().copied().unwrap_or((u64::MAX, 0)))?
            .0;
        walks[newest].next()
    }))
}

/// Health of every queue of `tenant` (or of all) from the tallies: jobs
/// per state, jobs finished per minute, ready jobs by the minute they
/// became due; and the running ones whose lease ran out.
pub(super) fn queue_stats(
    txn: &ReadTransaction,
    tenant: Option<&str>,
    now: Millis,
    window_ms: u64,
    stuck_after_ms: u64,
) -> Result<Vec<QueueStats>, StorageError> {
    let counts = txn.open_table(COUNTS)?;
    let mut by_queue: BTreeMap<String, QueueStats> = BTreeMap::new();
    for (queue, rest, count) in tallies(&counts, Dim::Queue as u8, tenant)? {
        stats(&mut by_queue, &queue).add_jobs(STATES[rest[0] as usize], count);
    }
    for (queue, rest, count) in tallies(&counts, MINUTE, tenant)? {
        let start = u64::from_be_bytes(rest[..8].try_into().expect("8 bytes")) * 60_000;
        let [completed, failed, ran] = match rest[8] {
            minute::COMPLETED => [count, 0, 0],
            minute::FAILED => [0, count, 0],
            _ => [0, 0, count],
        };
        stats(&mut by_queue, &queue).add_finished(now, window_ms, start, completed, failed, ran);
    }
    let due_by = now.saturating_sub(stuck_after_ms) / 60_000;
    for (queue, rest, count) in tallies(&counts, READY_SINCE, tenant)? {
        if u64::from_be_bytes(rest[..8].try_into().expect("8 bytes")) < due_by {
            stats(&mut by_queue, &queue).stuck += count as usize;
        }
    }
    for entry in txn.open_table(RUNNING)?.iter()? {
        let lease: Lease = decode(entry?.1.value())?;
        if lease.until < now && tenant.is_none_or(|t| t == lease.tenant) {
            stats(&mut by_queue, &lease.queue).stuck += 1;
        }
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

fn stats<'a>(by_queue: &'a mut BTreeMap<String, QueueStats>, queue: &str) -> &'a mut QueueStats {
    by_queue.entry(queue.to_string()).or_insert_with(|| QueueStats::new(queue))
}

/// The tallies tagged `tag` of `tenant` (or of all), each as its queue, the
/// rest of its key and its count.
fn tallies(
    counts: &Counts,
    tag: u8,
    tenant: Option<&str>,
) -> Result<Vec<(String, Vec<u8>, u64)>, StorageError> {
    let mut start = vec![tag];
    if let Some(tenant) = tenant {
        start.extend_from_slice(tenant.as_bytes());
        start.push(0);
    }
    let mut found = Vec::new();
    for entry in counts.range::<&[u8]>(start.as_slice()..)? {
        let (key, count) = entry?;
        let key = key.value();
        if !key.starts_with(&start) {
            break;
        }
        let mut parts = key[1..].splitn(3, |b| *b == 0);
        let (Some(_tenant), Some(queue), Some(rest)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(StorageError::Corrupt(format!("tally key {key:?}")));
        };
        let queue = String::from_utf8_lossy(queue).into_owned();
        found.push((queue, rest.to_vec(), count.value()));
    }
    Ok(found)
}
