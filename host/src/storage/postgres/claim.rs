//! Claiming ready jobs fairly, as the redb backend does (one job per tenant
//! per round, each time the tenant's best: priority, run_at, FIFO), with
//! rows taken `FOR UPDATE SKIP LOCKED`: claims of several hosts at once
//! never wait for each other and never take one job twice. Paused and
//! full queues, jobs pinned to other workers and jobs whose lock is held
//! are left out by the query; the claim rule judges the rest.
//!
//! Counting running jobs against a queue's concurrency or a tenant's
//! quota is only right if no other claim counts at the same time, so a
//! claim that any such limit may bind first takes an advisory lock that
//! orders those claims across hosts; without limits, nothing serialises.

use super::apply::apply;
use super::{StorageError, Tx, decode, records};
use crate::jobs::rules::{self, ClaimView, Eligibility};
use crate::jobs::{
    JobRecord, QueueSettings, TenantDefaults, TenantRecord, WorkerMode, WorkerRecord,
};
use crate::storage::ClaimRules;
use std::collections::{HashMap, VecDeque};
use uuid::Uuid;

/// Ready jobs read at once from one tenant.
const CHUNK: i64 = 16;

/// The advisory lock of claims that count against limits.
const LIMITS_LOCK: i64 = 7302;

/// Claims up to `rules.max` jobs (with `free_slots_only`, no more than the
/// worker's leases leave free of them), going round the tenants starting
/// after `cursor`; returns them and the tenant served first.
pub(super) async fn claim(
    tx: &Tx,
    rules: &ClaimRules,
    free_slots_only: bool,
    defaults: &TenantDefaults,
    cursor: &str,
) -> Result<(Vec<JobRecord>, Option<String>), StorageError> {
    if !active(tx, &rules.worker).await? {
        return Ok((Vec::new(), None));
    }
    let mut claim = Claim::new(tx, rules, defaults).await?;
    let max = if free_slots_only { rules.max.saturating_sub(claim.held) } else { rules.max };
    if max == 0 {
        return Ok((Vec::new(), None));
    }
    let mut tenants = ready_tenants(tx).await?;
    let start = tenants.iter().position(|t| t.as_str() > cursor).unwrap_or(0);
    tenants.rotate_left(start);
    let mut lines: Vec<Line> = tenants.into_iter().map(Line::new).collect();
    let mut first_served = None;
    loop {
        let mut progress = false;
        for line in &mut lines {
            if claim.claimed.len() >= max {
                break;
            }
            if claim.tenant_full(&line.tenant) {
                continue;
            }
            if let Some(job) = claim.head(tx, line).await? {
                claim.take(tx, job).await?;
                first_served.get_or_insert_with(|| line.tenant.clone());
                progress = true;
            }
        }
        if !progress || claim.claimed.len() >= max {
            break;
        }
    }
    Ok((claim.claimed, first_served))
}

/// Whether `worker` takes jobs (a worker with no record yet does).
async fn active(tx: &Tx, worker: &str) -> Result<bool, StorageError> {
    let row = tx.query_opt("SELECT record FROM workers WHERE id = $1", &[&worker]).await?;
    let record = row.map(|row| decode::<WorkerRecord>(row.get::<_, &[u8]>(0))).transpose()?;
    Ok(record.is_none_or(|record| record.mode == WorkerMode::Active))
}

/// The tenants with ready jobs, in order, found by jumping along the
/// ready index from one tenant to the next (a loose index scan), so the
/// cost follows the tenants, not their jobs.
async fn ready_tenants(tx: &Tx) -> Result<Vec<String>, StorageError> {
    let rows = tx
        .query(
            "WITH RECURSIVE t (tenant) AS ( \
                 (SELECT tenant FROM jobs WHERE state = 'pending' ORDER BY tenant LIMIT 1) \
                 UNION ALL \
                 SELECT (SELECT j.tenant FROM jobs j WHERE j.state = 'pending' \
                         AND j.tenant > t.tenant ORDER BY j.tenant LIMIT 1) \
                 FROM t WHERE t.tenant IS NOT NULL) \
             SELECT tenant FROM t WHERE tenant IS NOT NULL",
            &[],
        )
        .await?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}

/// One tenant's ready jobs, read a chunk at a time.
struct Line {
    tenant: String,
    read: VecDeque<JobRecord>,
    /// Every job read, so the next chunk starts past them.
    seen: Vec<Uuid>,
    done: bool,
}

impl Line {
    fn new(tenant: String) -> Self {
        Self { tenant, read: VecDeque::new(), seen: Vec::new(), done: false }
    }
}

/// What one claim knows while it goes round.
struct Claim<'r> {
    rules: &'r ClaimRules,
    defaults: &'r TenantDefaults,
    running_by_queue: HashMap<String, u32>,
    running_by_tenant: HashMap<String, u32>,
    queues: HashMap<String, QueueSettings>,
    tenants: HashMap<String, TenantRecord>,
    held: usize,
    claimed: Vec<JobRecord>,
}

impl<'r> Claim<'r> {
    async fn new(
        tx: &Tx,
        rules: &'r ClaimRules,
        defaults: &'r TenantDefaults,
    ) -> Result<Claim<'r>, StorageError> {
        let mut queues = HashMap::new();
        for row in tx.query("SELECT name, settings FROM queues", &[]).await? {
            queues.insert(row.get::<_, String>(0), decode(row.get::<_, &[u8]>(1))?);
        }
        let tenants: HashMap<String, TenantRecord> =
            records::<TenantRecord>(&tx.query("SELECT record FROM tenants", &[]).await?)?
                .into_iter()
                .map(|tenant| (tenant.name.clone(), tenant))
                .collect();
        let limited = defaults.max_running.is_some()
            || tenants.values().any(|t| t.max_running.is_some())
            || queues.values().any(|q: &QueueSettings| q.concurrency.is_some());
        if limited {
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LIMITS_LOCK]).await?;
        }
        let mut claim = Claim {
            rules,
            defaults,
            running_by_queue: HashMap::new(),
            running_by_tenant: HashMap::new(),
            queues,
            tenants,
            held: 0,
            claimed: Vec::new(),
        };
        let running =
            tx.query("SELECT queue, tenant, worker FROM jobs WHERE state = 'running'", &[]).await?;
        for row in running {
            claim.held += usize::from(row.get::<_, Option<&str>>(2) == Some(&rules.worker));
            *claim.running_by_queue.entry(row.get(0)).or_default() += 1;
            *claim.running_by_tenant.entry(row.get(1)).or_default() += 1;
        }
        Ok(claim)
    }

    fn settings(&self, queue: &str) -> QueueSettings {
        self.queues.get(queue).cloned().unwrap_or_default()
    }

    fn running_in(counts: &HashMap<String, u32>, key: &str) -> u32 {
        counts.get(key).copied().unwrap_or(0)
    }

    fn quota(&self, tenant: &str) -> Option<u32> {
        match self.tenants.get(tenant) {
            Some(record) => record.running_quota(self.defaults),
            None => self.defaults.max_running,
        }
    }

    fn tenant_full(&self, tenant: &str) -> bool {
        let running = Self::running_in(&self.running_by_tenant, tenant);
        self.quota(tenant).is_some_and(|quota| running >= quota)
    }

    /// The queues that take no job now (paused, or at their concurrency).
    fn full_queues(&self) -> Vec<String> {
        self.queues
            .iter()
            .filter(|(name, settings)| {
                let running = Self::running_in(&self.running_by_queue, name);
                settings.paused || settings.concurrency.is_some_and(|limit| running >= limit)
            })
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// The tenant's first job that may run now: one past `expires_at` is
    /// expired on the way.
    async fn head(&mut self, tx: &Tx, line: &mut Line) -> Result<Option<JobRecord>, StorageError> {
        let now = self.rules.now;
        loop {
            if line.read.is_empty() && !line.done {
                let chunk = self.read_chunk(tx, line).await?;
                line.done = chunk.len() < CHUNK as usize;
                line.seen.extend(chunk.iter().map(|job| job.id));
                line.read.extend(chunk);
            }
            let Some(job) = line.read.pop_front() else { return Ok(None) };
            let settings = self.settings(&job.queue);
            let view = ClaimView {
                worker: &self.rules.worker,
                now,
                queue: &settings,
                running_in_queue: Self::running_in(&self.running_by_queue, &job.queue),
                running_of_tenant: Self::running_in(&self.running_by_tenant, &job.tenant),
                tenant_quota: self.quota(&job.tenant),
                lock_held: false,
            };
            match rules::eligibility(&job, &view) {
                Eligibility::Take if self.lock(tx, &job).await? => return Ok(Some(job)),
                Eligibility::Take | Eligibility::Skip => {}
                Eligibility::Expire => {
                    apply(tx, Some(&job), &rules::expired(&job, now), now).await?;
                }
            }
        }
    }

    /// Takes the job's lock, if it has one; false when another job holds
    /// it (taken since the chunk was read, by this claim or another).
    async fn lock(&self, tx: &Tx, job: &JobRecord) -> Result<bool, StorageError> {
        let Some(lock) = &job.lock else { return Ok(true) };
        let taken = tx
            .execute(
                "INSERT INTO locks (name, job) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[lock, &job.id],
            )
            .await?;
        Ok(taken == 1)
    }

    /// The tenant's next ready jobs past those read, as the claim may take
    /// them, each row locked for this claim.
    async fn read_chunk(&self, tx: &Tx, line: &Line) -> Result<Vec<JobRecord>, StorageError> {
        let full = self.full_queues();
        let rows = tx
            .query(
                "SELECT record FROM jobs WHERE state = 'pending' AND tenant = $1 \
                 AND NOT (id = ANY($2)) AND NOT (queue = ANY($3)) \
                 AND (pinned_to IS NULL OR pinned_to = $4) \
                 AND (lock IS NULL OR NOT EXISTS (SELECT 1 FROM locks l WHERE l.name = jobs.lock)) \
                 ORDER BY priority DESC, run_at, id LIMIT $5 FOR UPDATE SKIP LOCKED",
                &[&line.tenant, &line.seen, &full, &self.rules.worker, &CHUNK],
            )
            .await?;
        records(&rows)
    }

    /// Claims `job` for this worker.
    async fn take(&mut self, tx: &Tx, job: JobRecord) -> Result<(), StorageError> {
        let rules = self.rules;
        let transition = rules::claimed(&job, &rules.worker, rules.now, rules.lease_ms);
        apply(tx, Some(&job), &transition, rules.now).await?;
        *self.running_by_queue.entry(job.queue.clone()).or_default() += 1;
        *self.running_by_tenant.entry(job.tenant.clone()).or_default() += 1;
        self.claimed.push(transition.job);
        Ok(())
    }
}
