//! The job list and queue health as queries. A list's filter becomes a
//! `WHERE` on the indexed columns, newest first, with the exact count
//! beside it; a text search reads at most [`SCAN_BUDGET`] jobs in order
//! and counts at most [`COUNT_BUDGET`] past its page, as on redb, so its
//! cost stays bounded however many jobs match the rest of the filter.

use super::schema::ms;
use super::{StorageError, Tx, decode, records};
use crate::jobs::{JobRecord, JobState, Millis};
use crate::storage::{Cursor, JobFilter, JobPage, QueueStats, Start};
use std::collections::BTreeMap;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

/// Matches counted past the page of a search.
const COUNT_BUDGET: usize = 10_000;
/// Jobs a search reads in all.
const SCAN_BUDGET: i64 = 100_000;

/// A `WHERE` clause and its parameters, built up condition by condition.
#[derive(Default)]
struct Clause {
    conditions: Vec<String>,
    params: Vec<Box<dyn ToSql + Sync + Send>>,
}

impl Clause {
    /// Adds `condition`, whose `$` stands for the next parameter.
    fn and(&mut self, condition: &str, value: impl ToSql + Sync + Send + 'static) {
        self.params.push(Box::new(value));
        self.conditions.push(condition.replace('$', &format!("${}", self.params.len())));
    }

    fn sql(&self) -> String {
        match self.conditions.is_empty() {
            true => String::new(),
            false => format!("WHERE {}", self.conditions.join(" AND ")),
        }
    }

    fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.params.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync)).collect()
    }
}

/// The filter's conditions, but for its search.
fn clause(filter: &JobFilter) -> Clause {
    let mut clause = Clause::default();
    let text = |clause: &mut Clause, column: &str, value: &Option<String>| {
        if let Some(value) = value {
            clause.and(&format!("{column} = $"), value.clone());
        }
    };
    text(&mut clause, "tenant", &filter.tenant);
    text(&mut clause, "owner", &filter.owner);
    text(&mut clause, "queue", &filter.queue);
    text(&mut clause, "job", &filter.job);
    if let Some(state) = filter.state {
        clause.and("state = $", state.as_str().to_string());
    }
    if let Some(since) = filter.since {
        clause.and("created_at >= $", ms(since));
    }
    if let Some(original) = filter.cloned_from {
        clause.and("cloned_from = $", original);
    }
    if let Some(schedule) = filter.schedule {
        clause.and("schedule = $", schedule);
    }
    clause
}

/// `text` as a `LIKE` pattern matching it anywhere, its wildcards escaped.
fn containing(text: &str) -> String {
    let escaped = text.to_lowercase().replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
    format!("%{escaped}%")
}

pub(super) async fn list(
    tx: &Tx,
    filter: &JobFilter,
    start: Start,
    limit: usize,
) -> Result<JobPage, StorageError> {
    let mut page_clause = clause(filter);
    let (offset, after) = match start {
        Start::Offset(offset) => (offset, None),
        Start::After(cursor) => (0, Some(cursor)),
    };
    if let Some(cursor) = after {
        page_clause.params.push(Box::new(ms(cursor.created_at)));
        page_clause.params.push(Box::new(cursor.id));
        let n = page_clause.params.len();
        page_clause.conditions.push(format!("(created_at, id) < (${}, ${n})", n - 1));
    }
    match &filter.search {
        Some(text) => search(tx, page_clause, &containing(text), offset, after, limit).await,
        None => {
            let sql = format!(
                "SELECT record FROM jobs {} ORDER BY created_at DESC, id DESC \
                 OFFSET {offset} LIMIT {}",
                page_clause.sql(),
                limit + 1
            );
            let mut jobs: Vec<JobRecord> = records(&tx.query(&sql, &page_clause.params()).await?)?;
            let more = jobs.len() > limit;
            jobs.truncate(limit);
            let counted = clause(filter);
            let sql = format!("SELECT count(*) FROM jobs {}", counted.sql());
            let row = tx.query_opt(&sql, &counted.params()).await?;
            let total = row.map_or(0, |row| row.get::<_, i64>(0) as usize);
            let next = jobs.last().filter(|_| more).map(Cursor::after);
            Ok(JobPage { jobs, total, total_exact: true, next })
        }
    }
}

/// A page of the jobs whose text contains `pattern`, reading at most
/// [`SCAN_BUDGET`] jobs of the rest of the filter newest first.
async fn search(
    tx: &Tx,
    mut clause: Clause,
    pattern: &str,
    offset: usize,
    after: Option<Cursor>,
    limit: usize,
) -> Result<JobPage, StorageError> {
    clause.params.push(Box::new(pattern.to_string()));
    let pattern_param = clause.params.len();
    let sql = format!(
        "SELECT created_at, id, CASE WHEN search LIKE ${pattern_param} THEN record END \
         FROM jobs {} ORDER BY created_at DESC, id DESC LIMIT {SCAN_BUDGET}",
        clause.sql()
    );
    let rows = tx.query(&sql, &clause.params()).await?;
    let read_all = (rows.len() as i64) < SCAN_BUDGET;
    let mut page = Vec::new();
    let (mut matched, mut past_page, mut more, mut ended) = (0, 0, false, read_all);
    let mut last_read = None;
    for row in &rows {
        let full = page.len() >= limit;
        if full && past_page >= COUNT_BUDGET {
            (more, ended) = (true, false);
            break;
        }
        let created_at = row.get::<_, i64>(0) as Millis;
        last_read = Some(Cursor { created_at, id: row.get::<_, Uuid>(1) });
        let Some(record) = row.get::<_, Option<&[u8]>>(2) else { continue };
        past_page += usize::from(full);
        more |= full;
        matched += 1;
        if !full && matched > offset {
            page.push(decode::<JobRecord>(record)?);
        }
    }
    more |= !read_all;
    let next = match page.last() {
        Some(job) if page.len() >= limit => more.then(|| Cursor::after(job)),
        _ => last_read.filter(|_| more),
    };
    Ok(JobPage { jobs: page, total: matched, total_exact: ended && after.is_none(), next })
}

/// A state from its column.
fn state(name: &str) -> Result<JobState, StorageError> {
    JobState::ALL
        .into_iter()
        .find(|state| state.as_str() == name)
        .ok_or_else(|| StorageError::Corrupt(format!("job state {name:?}")))
}

/// Health of every queue of `tenant` (or of all): jobs per state, jobs
/// finished per minute over the window and the last hour, ready jobs due
/// long ago and running ones whose lease ran out.
pub(super) async fn queue_stats(
    tx: &Tx,
    tenant: Option<&str>,
    now: Millis,
    window_ms: u64,
    stuck_after_ms: u64,
) -> Result<Vec<QueueStats>, StorageError> {
    let tenant = tenant.map(str::to_string);
    let mut by_queue: BTreeMap<String, QueueStats> = BTreeMap::new();
    let of_tenant = "($1::text IS NULL OR tenant = $1)";
    let sql = format!("SELECT queue, state, count(*) FROM jobs WHERE {of_tenant} GROUP BY 1, 2");
    for row in tx.query(&sql, &[&tenant]).await? {
        let count = row.get::<_, i64>(2) as u64;
        stats(&mut by_queue, row.get(0)).add_jobs(state(row.get(1))?, count);
    }
    // The oldest minute either the window or the hour of minutes needs.
    let this_minute = now / 60_000;
    let oldest = (now.saturating_sub(window_ms + 60_000) / 60_000)
        .min(this_minute.saturating_sub(crate::storage::MINUTES as u64 - 1));
    let sql = format!(
        "SELECT queue, finished_at / 60000, state, count(*), \
             sum(finished_at - coalesce(started_at, created_at))::bigint \
         FROM jobs WHERE {of_tenant} AND state IN ('completed', 'failed') AND finished_at >= $2 \
         GROUP BY 1, 2, 3"
    );
    for row in tx.query(&sql, &[&tenant, &ms(oldest * 60_000)]).await? {
        let start = row.get::<_, i64>(1) as u64 * 60_000;
        let count = row.get::<_, i64>(3) as u64;
        let (completed, failed, ran) = match state(row.get(2))? {
            JobState::Completed => (count, 0, row.get::<_, Option<i64>>(4).unwrap_or(0) as u64),
            _ => (0, count, 0),
        };
        stats(&mut by_queue, row.get(0))
            .add_finished(now, window_ms, start, completed, failed, ran);
    }
    let due_by = now.saturating_sub(stuck_after_ms) / 60_000 * 60_000;
    let sql = format!(
        "SELECT queue, count(*) FROM jobs WHERE {of_tenant} AND \
         ((state = 'pending' AND run_at < $2) OR (state = 'running' AND lease_until < $3)) \
         GROUP BY 1"
    );
    for row in tx.query(&sql, &[&tenant, &ms(due_by), &ms(now)]).await? {
        stats(&mut by_queue, row.get(0)).stuck += row.get::<_, i64>(1) as usize;
    }
    let mut all: Vec<QueueStats> = by_queue.into_values().collect();
    for stats in &mut all {
        stats.settings = super::jobs::queue(tx, &stats.queue).await?;
        stats.finish(window_ms);
    }
    Ok(all)
}

fn stats<'a>(by_queue: &'a mut BTreeMap<String, QueueStats>, queue: &str) -> &'a mut QueueStats {
    by_queue.entry(queue.to_string()).or_insert_with(|| QueueStats::new(queue))
}
