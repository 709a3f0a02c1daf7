//! Claiming ready jobs fairly, in one transaction. The ready index is
//! grouped by tenant and queue; a claim goes round the tenants that have
//! ready jobs, one job per tenant per round, each time the tenant's best
//! job (priority, run_at, FIFO) over its queues. A paused or full queue and
//! a tenant at its running quota are passed over without reading their
//! jobs; a job whose lock is held is parked out of line until the lock is
//! released. So no tenant's backlog, blocked or not, stands in front of
//! another tenant's runnable job, and a claim costs what it takes.

use super::apply::{apply, park};
use super::index::Txn;
use super::schema::{
    JOBS, LOCKS, QUEUES, READY, RUNNING, WORKERS, decode, ready_key_group, ready_key_id,
    ready_key_order,
};
use super::{Lease, StorageError, read_job};
use crate::jobs::rules::{self, ClaimView, Eligibility};
use crate::jobs::{JobRecord, QueueSettings, TenantDefaults, WorkerMode, WorkerRecord};
use crate::storage::ClaimRules;
use ::redb::ReadableTable;
use std::collections::HashMap;
use std::ops::Bound;

/// Ready entries read at once from one group.
const CHUNK: usize = 16;

/// Claims up to `rules.max` jobs (with `free_slots_only`, no more than the
/// worker's leases leave free of them), going round the tenants starting
/// after `cursor` (the tenant served first by the previous claim), which
/// it moves on.
pub(super) fn claim(
    txn: &Txn,
    rules: &ClaimRules,
    free_slots_only: bool,
    defaults: &TenantDefaults,
    cursor: &mut String,
) -> Result<Vec<JobRecord>, StorageError> {
    if !active(txn, &rules.worker)? {
        return Ok(Vec::new());
    }
    let mut claim = Claim::new(txn, rules, defaults)?;
    let max = if free_slots_only { rules.max.saturating_sub(claim.held) } else { rules.max };
    if max == 0 {
        return Ok(Vec::new());
    }
    // Once, not doubling as it fills: a record is large, and each regrowth
    // is fresh memory to fault in (max is the worker's slots).
    claim.claimed.reserve_exact(max);
    let mut groups = groups(txn)?;
    let mut tenants: Vec<String> = Vec::new();
    for group in &groups {
        if tenants.last() != Some(&group.tenant) {
            tenants.push(group.tenant.clone());
        }
    }
    let start = tenants.iter().position(|t| t > cursor).unwrap_or(0);
    tenants.rotate_left(start);
    let mut first_served = None;
    loop {
        let mut progress = false;
        for tenant in &tenants {
            if claim.claimed.len() >= max {
                break;
            }
            if claim.tenant_full(txn, tenant)? {
                continue;
            }
            let mut best: Option<usize> = None;
            for index in 0..groups.len() {
                if groups[index].tenant != *tenant || claim.queue_full(&groups[index].queue) {
                    continue;
                }
                if claim.head(txn, &mut groups[index])?.is_none() {
                    continue;
                }
                let order = |i: usize| groups[i].head.as_ref().map(|(key, _)| ready_key_order(key));
                if best.is_none_or(|b| order(index) < order(b)) {
                    best = Some(index);
                }
            }
            if let Some(index) = best {
                let (key, job) = groups[index].head.take().expect("the best group has a head");
                groups[index].after = Some(key);
                claim.take(txn, job)?;
                first_served.get_or_insert_with(|| tenant.clone());
                progress = true;
            }
        }
        if !progress || claim.claimed.len() >= max {
            break;
        }
    }
    if let Some(tenant) = first_served {
        *cursor = tenant;
    }
    Ok(claim.claimed)
}

/// Whether `worker` takes jobs: not when an operator paused, drained or
/// stopped it, as its record says in this same transaction (so a claim
/// waiting while the pause is written takes nothing after it). A worker
/// with no record yet is active.
fn active(txn: &Txn, worker: &str) -> Result<bool, StorageError> {
    let record = txn.open_table(WORKERS)?.get(worker)?.map(|v| decode::<WorkerRecord>(v.value()));
    Ok(record.transpose()?.is_none_or(|record| record.mode == WorkerMode::Active))
}

/// One tenant's queue in the ready index, and how far the claim read it.
struct Group {
    prefix: Vec<u8>,
    tenant: String,
    queue: String,
    /// The last key read, when some were.
    after: Option<Vec<u8>>,
    /// The first job that may run, once found.
    head: Option<(Vec<u8>, JobRecord)>,
    /// Nothing left to read.
    done: bool,
}

/// Every group with ready jobs, in key order (so by tenant), found by
/// jumping from one group's first key past its last.
fn groups(txn: &Txn) -> Result<Vec<Group>, StorageError> {
    let ready = txn.open_table(READY)?;
    let mut groups = Vec::new();
    let mut from: Vec<u8> = Vec::new();
    while let Some(entry) = ready.range::<&[u8]>(from.as_slice()..)?.next() {
        let key = entry?.0.value().to_vec();
        let (prefix, tenant) = ready_key_group(&key);
        let queue = &prefix[tenant.len() + 1..prefix.len() - 1];
        groups.push(Group {
            prefix: prefix.to_vec(),
            tenant: tenant.to_string(),
            queue: String::from_utf8_lossy(queue).into_owned(),
            after: None,
            head: None,
            done: false,
        });
        // Past every key of the group: its prefix ends in 0, so the same
        // prefix ending in 1 sorts after all of them and before the next.
        from = prefix.to_vec();
        *from.last_mut().expect("a prefix is never empty") = 1;
    }
    Ok(groups)
}

/// What one claim knows while it goes round.
struct Claim<'r> {
    rules: &'r ClaimRules,
    defaults: &'r TenantDefaults,
    running_by_queue: HashMap<String, u32>,
    running_by_tenant: HashMap<String, u32>,
    queues: HashMap<String, QueueSettings>,
    /// Tenants' running quotas, read when first needed.
    quotas: HashMap<String, Option<u32>>,
    /// Jobs the claiming worker holds (before this claim).
    held: usize,
    claimed: Vec<JobRecord>,
}

impl<'r> Claim<'r> {
    fn new(
        txn: &Txn,
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
            held: 0,
            claimed: Vec::new(),
        };
        for entry in txn.open_table(RUNNING)?.iter()? {
            let lease: Lease = decode(entry?.1.value())?;
            claim.held += usize::from(lease.worker == rules.worker);
            *claim.running_by_queue.entry(lease.queue).or_default() += 1;
            *claim.running_by_tenant.entry(lease.tenant).or_default() += 1;
        }
        for entry in txn.open_table(QUEUES)?.iter()? {
            let (name, value) = entry?;
            claim.queues.insert(name.value().to_string(), decode(value.value())?);
        }
        Ok(claim)
    }

    fn settings(&self, queue: &str) -> QueueSettings {
        self.queues.get(queue).cloned().unwrap_or_default()
    }

    fn running_in(&self, counts: &HashMap<String, u32>, key: &str) -> u32 {
        counts.get(key).copied().unwrap_or(0)
    }

    /// Whether the queue takes no job now (paused, or at its concurrency).
    fn queue_full(&self, queue: &str) -> bool {
        let settings = self.settings(queue);
        let running = self.running_in(&self.running_by_queue, queue);
        settings.paused || settings.concurrency.is_some_and(|limit| running >= limit)
    }

    /// Whether the tenant runs as many jobs as its quota allows.
    fn tenant_full(&mut self, txn: &Txn, tenant: &str) -> Result<bool, StorageError> {
        let quota = self.quota(txn, tenant)?;
        let running = self.running_in(&self.running_by_tenant, tenant);
        Ok(quota.is_some_and(|quota| running >= quota))
    }

    /// The group's first job that may run now, reading on from where the
    /// claim left it: a job past `expires_at` is expired, one whose lock is
    /// held is parked, one pinned to another worker is passed.
    fn head<'g>(
        &mut self,
        txn: &Txn,
        group: &'g mut Group,
    ) -> Result<Option<&'g (Vec<u8>, JobRecord)>, StorageError> {
        let now = self.rules.now;
        while group.head.is_none() && !group.done {
            let keys = self.read_chunk(txn, group)?;
            // A short chunk is the group's last, unless it stops at a head.
            group.done = keys.len() < CHUNK;
            for key in keys {
                group.after = Some(key.clone());
                let job = read_job(&*txn.open_table(JOBS)?, ready_key_id(&key))?;
                let lock_held = match &job.lock {
                    Some(lock) => txn.open_table(LOCKS)?.get(lock.as_str())?.is_some(),
                    None => false,
                };
                let tenant_quota = self.quota(txn, &job.tenant)?;
                let settings = self.settings(&group.queue);
                let view = ClaimView {
                    worker: &self.rules.worker,
                    now,
                    queue: &settings,
                    running_in_queue: self.running_in(&self.running_by_queue, &group.queue),
                    running_of_tenant: self.running_in(&self.running_by_tenant, &job.tenant),
                    tenant_quota,
                    lock_held,
                };
                match rules::eligibility(&job, &view) {
                    Eligibility::Take => {
                        group.head = Some((key, job));
                        group.done = false;
                        break;
                    }
                    Eligibility::Expire => {
                        apply(txn, Some(&job), &rules::expired(&job, now), now)?;
                    }
                    Eligibility::Skip => {
                        if let (true, Some(lock)) = (lock_held, &job.lock) {
                            park(txn, lock, &key)?;
                        }
                    }
                }
            }
        }
        Ok(group.head.as_ref())
    }

    /// The next keys of the group after where the claim left it.
    fn read_chunk(&self, txn: &Txn, group: &Group) -> Result<Vec<Vec<u8>>, StorageError> {
        let ready = txn.open_table(READY)?;
        let start = match &group.after {
            Some(key) => Bound::Excluded(key.as_slice()),
            None => Bound::Included(group.prefix.as_slice()),
        };
        ready
            .range::<&[u8]>((start, Bound::Unbounded))?
            .take(CHUNK)
            .map(|entry| entry.map(|(key, _)| key.value().to_vec()))
            .take_while(|key| key.as_ref().map_or(true, |key| key.starts_with(&group.prefix)))
            .collect::<Result<_, _>>()
            .map_err(Into::into)
    }

    /// Claims `job` for this worker.
    fn take(&mut self, txn: &Txn, job: JobRecord) -> Result<(), StorageError> {
        let rules = self.rules;
        let transition = rules::claimed(&job, &rules.worker, rules.now, rules.lease_ms);
        apply(txn, Some(&job), &transition, rules.now)?;
        *self.running_by_queue.entry(job.queue.clone()).or_default() += 1;
        *self.running_by_tenant.entry(job.tenant.clone()).or_default() += 1;
        self.claimed.push(transition.job);
        Ok(())
    }

    fn quota(&mut self, txn: &Txn, tenant: &str) -> Result<Option<u32>, StorageError> {
        if let Some(quota) = self.quotas.get(tenant) {
            return Ok(*quota);
        }
        let quota = super::jobs::tenant(txn, tenant)?.running_quota(self.defaults);
        self.quotas.insert(tenant.to_string(), quota);
        Ok(quota)
    }
}
