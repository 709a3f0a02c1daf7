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
/// [`pending_key`] → queue name. Ready jobs in claim order.
pub(super) const PENDING: TableDefinition<&[u8], &str> = TableDefinition::new("pending");
/// (run_at, id) → (). Jobs waiting for their time.
pub(super) const SCHEDULED: TableDefinition<(u64, u128), ()> = TableDefinition::new("scheduled");
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
/// Component digest → component bytes, shared by every upload of them.
pub(super) const COMPONENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("components");
/// Token hash (hex SHA-256 of the secret) → [`crate::jobs::TokenRecord`] JSON.
pub(super) const TOKENS: TableDefinition<&str, &[u8]> = TableDefinition::new("tokens");
/// Tenant name → [`crate::jobs::TenantRecord`] JSON.
pub(super) const TENANTS: TableDefinition<&str, &[u8]> = TableDefinition::new("tenants");
/// (due time, job id) → delivery attempts made. Completion webhooks to send.
pub(super) const CALLBACKS: TableDefinition<(u64, u128), u32> = TableDefinition::new("callbacks");
/// Tenant name → jobs of it waiting (pending or scheduled), kept with the
/// indexes so a queued-jobs quota costs one read per enqueue.
pub(super) const WAITING: TableDefinition<&str, u64> = TableDefinition::new("waiting");

/// Key of a pending job: priority descending, then run_at, then id (FIFO).
pub(super) fn pending_key(job: &JobRecord) -> [u8; 28] {
    let mut key = [0u8; 28];
    // Flip the sign bit so the i32 order matches byte order, then invert so
    // the highest priority sorts first.
    key[..4].copy_from_slice(&(!((job.priority as u32) ^ 0x8000_0000)).to_be_bytes());
    key[4..12].copy_from_slice(&job.run_at.to_be_bytes());
    key[12..].copy_from_slice(&job.id.as_u128().to_be_bytes());
    key
}

/// The id at the end of a [`pending_key`].
pub(super) fn pending_key_id(key: &[u8]) -> Uuid {
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
    fn pending_keys_sort_by_priority_then_time_then_fifo() {
        let job = |priority, run_at| {
            let mut job =
                JobRecord::new(NewJob { priority, ..NewJob::default() }, Uuid::now_v7(), 0);
            job.run_at = run_at;
            job
        };
        let jobs =
            [job(5, 10), job(5, 10), job(0, 1), job(-3, 0), job(i32::MAX, 99), job(i32::MIN, 0)];
        let mut keys: Vec<_> = jobs.iter().map(pending_key).collect();
        keys.sort();
        let order: Vec<Uuid> = keys.iter().map(|k| pending_key_id(k)).collect();
        let expected = [&jobs[4], &jobs[0], &jobs[1], &jobs[2], &jobs[3], &jobs[5]];
        assert_eq!(order, expected.map(|j| j.id));
    }
}
