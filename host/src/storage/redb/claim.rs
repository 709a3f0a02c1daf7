//! Claiming ready jobs: walk the pending index in claim order (priority,
//! run_at, FIFO) and take each job the claim rule allows, in one
//! transaction.

use super::apply::apply;
use super::schema::{JOBS, LOCKS, PENDING, QUEUES, RUNNING, decode, pending_key_id};
use super::{Lease, StorageError, read_job};
use crate::jobs::rules::{self, ClaimView, Eligibility};
use crate::jobs::{JobRecord, QueueSettings, TenantDefaults};
use crate::storage::ClaimRules;
use ::redb::{ReadableTable, WriteTransaction};
use std::collections::HashMap;
use std::ops::Bound;

/// Pending entries one claim looks at, at most: bounds the work of a claim
/// when many ready jobs are blocked (paused queue, held lock).
const SCAN_LIMIT: usize = 10_000;

/// Claims up to `rules.max` jobs.
pub(super) fn claim(
    txn: &WriteTransaction,
    rules: &ClaimRules,
    defaults: &TenantDefaults,
) -> Result<Vec<JobRecord>, StorageError> {
    let mut claim = Claim::new(txn, rules, defaults)?;
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
    defaults: &'r TenantDefaults,
    running_by_queue: HashMap<String, u32>,
    running_by_tenant: HashMap<String, u32>,
    queues: HashMap<String, QueueSettings>,
    /// Tenants' own running quotas, read when first needed.
    quotas: HashMap<String, Option<u32>>,
    claimed: Vec<JobRecord>,
}

impl<'r> Claim<'r> {
    fn new(
        txn: &WriteTransaction,
        rules: &'r ClaimRules,
        defaults: &'r TenantDefaults,
    ) -> Result<Self, StorageError> {
        let mut claim = Claim {
            rules,
            defaults,
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

    /// Takes the pending job at `key` if the claim rule allows; expires it
    /// if it is past its `expires_at`.
    fn consider(
        &mut self,
        txn: &WriteTransaction,
        key: &[u8],
        queue: String,
    ) -> Result<(), StorageError> {
        let rules = self.rules;
        let job = read_job(&txn.open_table(JOBS)?, pending_key_id(key))?;
        let settings = self.queues.get(&queue).cloned().unwrap_or_default();
        let lock_held = match &job.lock {
            Some(lock) => txn.open_table(LOCKS)?.get(lock.as_str())?.is_some(),
            None => false,
        };
        let view = ClaimView {
            worker: &rules.worker,
            now: rules.now,
            queue: &settings,
            running_in_queue: self.running_by_queue.get(&queue).copied().unwrap_or(0),
            running_of_tenant: self.running_by_tenant.get(&job.tenant).copied().unwrap_or(0),
            tenant_quota: self.quota(txn, &job.tenant)?,
            lock_held,
        };
        let transition = match rules::eligibility(&job, &view) {
            Eligibility::Skip => return Ok(()),
            Eligibility::Expire => {
                return apply(txn, Some(&job), &rules::expired(&job, rules.now), rules.now)
                    .map(drop);
            }
            Eligibility::Take => rules::claimed(&job, &rules.worker, rules.now, rules.lease_ms),
        };
        apply(txn, Some(&job), &transition, rules.now)?;
        *self.running_by_queue.entry(queue).or_default() += 1;
        *self.running_by_tenant.entry(job.tenant.clone()).or_default() += 1;
        self.claimed.push(transition.job);
        Ok(())
    }

    fn quota(&mut self, txn: &WriteTransaction, tenant: &str) -> Result<Option<u32>, StorageError> {
        if let Some(quota) = self.quotas.get(tenant) {
            return Ok(*quota);
        }
        let quota = super::jobs::tenant(txn, tenant)?.running_quota(self.defaults);
        self.quotas.insert(tenant.to_string(), quota);
        Ok(quota)
    }
}
