//! Claiming ready jobs: walk the pending index in claim order (priority,
//! run_at, FIFO) and take each job the rules allow, in one transaction.

use super::record::{JobRecord, JobState, TenantRecord};
use super::redb::{journal, put_job, read_job, unindex_waiting};
use super::schema::{
    JOBS, LOCKS, PENDING, QUEUES, RUNNING, TENANTS, decode, encode, pending_key_id,
};
use super::{ClaimRules, Lease, QueueSettings, StorageError};
use redb::{ReadableTable, WriteTransaction};
use std::collections::HashMap;
use std::ops::Bound;

/// Pending entries one claim looks at, at most: bounds the work of a claim
/// when many ready jobs are blocked (paused queue, held lock).
const SCAN_LIMIT: usize = 10_000;

/// Claims up to `rules.max` jobs.
pub(super) fn claim(
    txn: &WriteTransaction,
    rules: &ClaimRules,
) -> Result<Vec<JobRecord>, StorageError> {
    let mut claim = Claim::new(txn, rules)?;
    let mut scanned = 0;
    let mut after: Option<Vec<u8>> = None;
    // Read the pending index a chunk at a time (it cannot be iterated while
    // it is changed), so a claim costs what it takes and skips, not the
    // length of the queue.
    while claim.claimed.len() < rules.max && scanned < SCAN_LIMIT {
        let pending = txn.open_table(PENDING)?;
        let start = match &after {
            Some(key) => Bound::Excluded(key.as_slice()),
            None => Bound::Unbounded,
        };
        let candidates: Vec<(Vec<u8>, String)> = pending
            .range::<&[u8]>((start, Bound::Unbounded))?
            .take((rules.max * 4).clamp(16, 1024))
            .map(|entry| entry.map(|(k, q)| (k.value().to_vec(), q.value().to_string())))
            .collect::<Result<_, _>>()?;
        drop(pending);
        let Some((last, _)) = candidates.last() else { break };
        after = Some(last.clone());
        scanned += candidates.len();
        for (key, queue) in candidates {
            if claim.claimed.len() >= rules.max {
                break;
            }
            claim.consider(txn, &key, queue)?;
        }
    }
    Ok(claim.claimed)
}

/// What one claim knows while it walks the index.
struct Claim<'r> {
    rules: &'r ClaimRules,
    running_by_queue: HashMap<String, u32>,
    running_by_tenant: HashMap<String, u32>,
    queues: HashMap<String, QueueSettings>,
    /// Tenants' own running quotas, read when first needed.
    quotas: HashMap<String, Option<u32>>,
    claimed: Vec<JobRecord>,
}

impl<'r> Claim<'r> {
    fn new(txn: &WriteTransaction, rules: &'r ClaimRules) -> Result<Self, StorageError> {
        let mut claim = Claim {
            rules,
            running_by_queue: HashMap::new(),
            running_by_tenant: HashMap::new(),
            queues: HashMap::new(),
            quotas: HashMap::new(),
            claimed: Vec::new(),
        };
        for entry in txn.open_table(RUNNING)?.iter()? {
            let lease: Lease = decode(entry?.1.value())?;
            *claim.running_by_queue.entry(lease.queue).or_default() += 1;
            *claim.running_by_tenant.entry(lease.tenant).or_default() += 1;
        }
        for entry in txn.open_table(QUEUES)?.iter()? {
            let (name, value) = entry?;
            claim.queues.insert(name.value().to_string(), decode(value.value())?);
        }
        Ok(claim)
    }

    /// Takes the pending job at `key` if the rules allow; expires it if it
    /// is past its `expires_at`.
    fn consider(
        &mut self,
        txn: &WriteTransaction,
        key: &[u8],
        queue: String,
    ) -> Result<(), StorageError> {
        let rules = self.rules;
        let mut job = read_job(&txn.open_table(JOBS)?, pending_key_id(key))?;
        if job.pinned_to.as_ref().is_some_and(|worker| *worker != rules.worker) {
            return Ok(());
        }
        if job.expires_at.is_some_and(|at| at <= rules.now) {
            unindex_waiting(txn, &job)?;
            job.state = JobState::Expired;
            job.finished_at = Some(rules.now);
            put_job(txn, &job)?;
            journal(
                txn,
                &job,
                Some(JobState::Pending),
                rules.now,
                "expired: not started before expires_at",
            )?;
            return Ok(());
        }
        let settings = self.queues.get(&queue).cloned().unwrap_or_default();
        let running_in_queue = self.running_by_queue.get(&queue).copied().unwrap_or(0);
        if settings.paused || settings.concurrency.is_some_and(|limit| running_in_queue >= limit) {
            return Ok(());
        }
        let quota = self.quota(txn, &job.tenant)?.or(rules.tenant_quota);
        let tenant_running = self.running_by_tenant.get(&job.tenant).copied().unwrap_or(0);
        if quota.is_some_and(|quota| tenant_running >= quota) {
            return Ok(());
        }
        if let Some(lock) = &job.lock {
            let mut locks = txn.open_table(LOCKS)?;
            if locks.get(lock.as_str())?.is_some() {
                return Ok(());
            }
            locks.insert(lock.as_str(), job.id.as_u128())?;
        }
        unindex_waiting(txn, &job)?;
        let lease = Lease {
            worker: rules.worker.clone(),
            until: rules.now + rules.lease_ms,
            queue: job.queue.clone(),
            tenant: job.tenant.clone(),
        };
        txn.open_table(RUNNING)?.insert(job.id.as_u128(), encode(&lease).as_slice())?;
        job.state = JobState::Running;
        job.attempt += 1;
        job.started_at = Some(rules.now);
        job.worker = Some(rules.worker.clone());
        job.lease_until = Some(lease.until);
        put_job(txn, &job)?;
        journal(
            txn,
            &job,
            Some(JobState::Pending),
            rules.now,
            format!("claimed, attempt {}", job.attempt),
        )?;
        *self.running_by_queue.entry(queue).or_default() += 1;
        *self.running_by_tenant.entry(job.tenant.clone()).or_default() += 1;
        self.claimed.push(job);
        Ok(())
    }

    fn quota(&mut self, txn: &WriteTransaction, tenant: &str) -> Result<Option<u32>, StorageError> {
        if let Some(quota) = self.quotas.get(tenant) {
            return Ok(*quota);
        }
        let tenants = txn.open_table(TENANTS)?;
        let record = tenants.get(tenant)?.map(|v| decode::<TenantRecord>(v.value())).transpose()?;
        let quota = record.and_then(|t| t.max_running);
        self.quotas.insert(tenant.to_string(), quota);
        Ok(quota)
    }
}
