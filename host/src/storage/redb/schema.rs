//! The redb tables and their key encodings. Values are JSON of the records
//! of [`crate::jobs`]; keys are laid out so that a range scan yields the order the
//! engine needs.

use super::StorageError;
use crate::jobs::{JobRecord, Millis};
use ::redb::TableDefinition;
use serde::{Serialize, de::DeserializeOwned};
use uuid::Uuid;

/// Job id (UUID as u128, time-ordered for v7) → [`JobRecord`] JSON.
pub(super) const JOBS: TableDefinition<u128, &[u8]> = TableDefinition::new("jobs");
/// [`ready_key`] → (). Ready jobs, grouped by tenant and queue, each group
/// in claim order, so a claim goes from group to group and never wades
/// through a paused queue's or a tenant-at-quota's jobs.
pub(super) const READY: TableDefinition<&[u8], ()> = TableDefinition::new("ready");
/// (lock, [`ready_key`]) → (). Ready jobs whose lock another job holds,
/// parked by a claim and put back into [`READY`] when the lock is released,
/// so they never stand in front of runnable jobs.
pub(super) const PARKED: TableDefinition<(&str, &[u8]), ()> = TableDefinition::new("parked");
/// The index of ready jobs before [`READY`]: priority, run_at, id → queue.
/// Read once at open, to move its jobs into [`READY`].
pub(super) const PENDING_V1: TableDefinition<&[u8], &str> = TableDefinition::new("pending");
/// A (time, job id) index: [`SCHEDULED`], [`EXPIRING`].
pub(super) type TimeIndex = TableDefinition<'static, (u64, u128), ()>;
/// (expires_at, id) → (). Waiting jobs with a deadline to start, so expiry
/// finds the late ones, in any queue, without a scan.
pub(super) const EXPIRING: TimeIndex = TableDefinition::new("expiring");
/// (run_at, id) → (). Jobs waiting for their time.
pub(super) const SCHEDULED: TimeIndex = TableDefinition::new("scheduled");
/// id → [`super::Lease`] JSON. Jobs being run, with their lease.
pub(super) const RUNNING: TableDefinition<u128, &[u8]> = TableDefinition::new("running");
/// (id, seq) → [`crate::jobs::JobEvent`] JSON. The journal.
pub(super) const EVENTS: TableDefinition<(u128, u64), &[u8]> = TableDefinition::new("events");
/// (id, seq) → [`crate::jobs::LogLine`] JSON.
pub(super) const LOGS: TableDefinition<(u128, u64), &[u8]> = TableDefinition::new("logs");
/// (tenant, key) → job id.
pub(super) const IDEMPOTENCY: TableDefinition<(&str, &str), u128> =
    TableDefinition::new("idempotency");
/// Lock name → id of the job holding it.
pub(super) const LOCKS: TableDefinition<&str, u128> = TableDefinition::new("locks");
/// Queue name → [`crate::jobs::QueueSettings`] JSON.
pub(super) const QUEUES: TableDefinition<&str, &[u8]> = TableDefinition::new("queues");

/// Worker id → [`crate::jobs::WorkerRecord`] JSON.
pub(super) const WORKERS: TableDefinition<&str, &[u8]> = TableDefinition::new("workers");
/// (tenant, plugin name) → [`crate::jobs::PluginRecord`] JSON.
pub(super) const PLUGINS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("plugins");
/// (tenant, plugin name, digest) → [`crate::jobs::PluginRecord`] JSON: every
/// version of an uploaded plugin that is current or that unfinished jobs
/// still need.
pub(super) const PLUGIN_VERSIONS: TableDefinition<(&str, &str, &str), &[u8]> =
    TableDefinition::new("plugin_versions");
/// The unfinished jobs of each plugin version before they were counted in
/// [`COUNTS`]: (tenant, plugin name, digest) → jobs. Read once at open.
pub(super) const PLUGIN_REFS_V1: TableDefinition<(&str, &str, &str), u64> =
    TableDefinition::new("plugin_refs");
/// Component digest → component bytes, shared by every upload of them.
pub(super) const COMPONENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("components");
/// Token hash (hex SHA-256 of the secret) → [`crate::jobs::TokenRecord`] JSON.
pub(super) const TOKENS: TableDefinition<&str, &[u8]> = TableDefinition::new("tokens");
/// Tenant name → [`crate::jobs::TenantRecord`] JSON.
pub(super) const TENANTS: TableDefinition<&str, &[u8]> = TableDefinition::new("tenants");
/// (due time, job id) → delivery attempts made. Completion webhooks to send.
pub(super) const CALLBACKS: TableDefinition<(u64, u128), u32> = TableDefinition::new("callbacks");
/// (job, job waiting for it) → (). Written when a job that depends on
/// unfinished jobs is enqueued; read and cleared when each finishes.
pub(super) const DEPENDENTS: TableDefinition<(u128, u128), ()> = TableDefinition::new("dependents");
/// Workflow id (UUID v7 as u128) → [`crate::jobs::workflow::WorkflowRecord`] JSON.
pub(super) const WORKFLOWS: TableDefinition<u128, &[u8]> = TableDefinition::new("workflows");
/// Schedule id (UUID v7 as u128) → [`crate::jobs::schedule::ScheduleRecord`] JSON.
pub(super) const SCHEDULES: TableDefinition<u128, &[u8]> = TableDefinition::new("schedules");
/// The waiting jobs of each tenant before they were counted in [`COUNTS`]:
/// tenant → jobs. Read once at open.
pub(super) const WAITING_V1: TableDefinition<&str, u64> = TableDefinition::new("waiting");

/// [`super::index`] row → (). The secondary indexes of every job: per
/// tenant, queue, plugin, owner, original (of clones) and schedule, each
/// in the job's state and newest first; and finished jobs by time, for
/// retention.
pub(super) const LISTING: TableDefinition<&[u8], ()> = TableDefinition::new("listing");
/// [`super::index::Counter`] → count: jobs per index group, jobs finished
/// per queue and minute, ready jobs per queue and minute they became due,
/// waiting jobs per tenant (so a queued-jobs quota costs one read per
/// enqueue), and unfinished jobs per plugin version (so a version they
/// need is never removed). Kept in the same commits as the jobs, so counts
/// never scan; one table, so a commit touches one table of counts.
pub(super) const COUNTS: TableDefinition<&[u8], u64> = TableDefinition::new("counts");
/// `"epoch"` → the epoch of the last commit made durable in the file
/// itself: the [journal](super::journal)'s frames after it are replayed at
/// open.
pub(super) const CHECKPOINT: TableDefinition<&str, u64> = TableDefinition::new("checkpoint");

/// Calls `$then!` with every table of the schema today (not the ones an
/// upgrade moves away): a new file creates them, and the journal's replay
/// finds a write's table among them by name.
macro_rules! each_table {
    ($then:ident) => {
        $then!(
            JOBS,
            READY,
            PARKED,
            SCHEDULED,
            EXPIRING,
            RUNNING,
            EVENTS,
            LOGS,
            IDEMPOTENCY,
            LOCKS,
            QUEUES,
            WORKERS,
            PLUGINS,
            COMPONENTS,
            PLUGIN_VERSIONS,
            TOKENS,
            TENANTS,
            CALLBACKS,
            DEPENDENTS,
            WORKFLOWS,
            SCHEDULES,
            LISTING,
            COUNTS,
            CHECKPOINT
        )
    };
}
pub(super) use each_table;

/// Length of the part of a [`ready_key`] after its group prefix.
const ORDER_LEN: usize = 28;

/// The group of a ready job: `tenant \0 queue \0` (names never hold `\0`).
pub(super) fn ready_group(tenant: &str, queue: &str) -> Vec<u8> {
    let mut group = Vec::with_capacity(tenant.len() + queue.len() + 2);
    group.extend_from_slice(tenant.as_bytes());
    group.push(0);
    group.extend_from_slice(queue.as_bytes());
    group.push(0);
    group
}

/// Key of a ready job: its group, then priority descending, then run_at,
/// then id (FIFO).
pub(super) fn ready_key(job: &JobRecord) -> Vec<u8> {
    let mut key = ready_group(&job.tenant, &job.queue);
    // Flip the sign bit so the i32 order matches byte order, then invert so
    // the highest priority sorts first.
    key.extend_from_slice(&(!((job.priority as u32) ^ 0x8000_0000)).to_be_bytes());
    key.extend_from_slice(&job.run_at.to_be_bytes());
    key.extend_from_slice(&job.id.as_u128().to_be_bytes());
    key
}

/// The id at the end of a [`ready_key`].
pub(super) fn ready_key_id(key: &[u8]) -> Uuid {
    let mut id = [0u8; 16];
    id.copy_from_slice(&key[key.len() - 16..]);
    Uuid::from_bytes(id)
}

/// The group prefix of a [`ready_key`], and its tenant.
pub(super) fn ready_key_group(key: &[u8]) -> (&[u8], &str) {
    let group = &key[..key.len() - ORDER_LEN];
    let tenant_end = group.iter().position(|&b| b == 0).unwrap_or(0);
    (group, std::str::from_utf8(&group[..tenant_end]).unwrap_or_default())
}

/// The claim-order part of a [`ready_key`]: compares across groups.
pub(super) fn ready_key_order(key: &[u8]) -> &[u8] {
    &key[key.len() - ORDER_LEN..]
}

/// The id at the end of a key of [`PENDING_V1`].
pub(super) fn pending_v1_id(key: &[u8]) -> Uuid {
    let mut id = [0u8; 16];
    id.copy_from_slice(&key[12..28]);
    Uuid::from_bytes(id)
}

/// Key of a scheduled job.
pub(super) fn scheduled_key(job: &JobRecord) -> (Millis, u128) {
    (job.run_at, job.id.as_u128())
}

pub(super) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("records always serialise")
}

pub(super) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StorageError> {
    serde_json::from_slice(bytes).map_err(|e| StorageError::Corrupt(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::NewJob;

    #[test]
    fn ready_keys_group_by_tenant_and_queue_then_sort_by_priority_time_and_fifo() {
        let job = |tenant: &str, priority, run_at| {
            let new = NewJob { tenant: tenant.into(), priority, ..NewJob::default() };
            let mut job = JobRecord::new(new, Uuid::now_v7(), 0);
            job.run_at = run_at;
            job
        };
        let jobs = [
            job("a", 5, 10),
            job("a", 5, 10),
            job("a", 0, 1),
            job("a", -3, 0),
            job("a", i32::MAX, 99),
            job("a", i32::MIN, 0),
            job("b", i32::MAX, 0),
        ];
        let mut keys: Vec<_> = jobs.iter().map(ready_key).collect();
        keys.sort();
        let order: Vec<Uuid> = keys.iter().map(|k| ready_key_id(k)).collect();
        let expected = [&jobs[4], &jobs[0], &jobs[1], &jobs[2], &jobs[3], &jobs[5], &jobs[6]];
        assert_eq!(order, expected.map(|j| j.id));
        assert_eq!(ready_key_group(&keys[0]), (ready_group("a", "default").as_slice(), "a"));
        assert_eq!(ready_key_group(&keys[6]).1, "b");
    }
}
