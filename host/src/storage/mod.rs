//! Durable storage of jobs: records, queue indexes, the events journal, logs,
//! locks, idempotency keys and queue settings.
//!
//! The rest of the host talks to the [`Storage`] trait, so a PostgreSQL
//! backend can sit beside the embedded default, [`RedbStorage`] (one redb file
//! in the data directory, writes through a group-commit writer).
//!
//! - `record`: the stored shapes ([`JobRecord`], [`JobEvent`], [`LogLine`]).
//! - `schema`: redb tables and key encodings.
//! - `writer`: the group-commit writer thread.
//! - `redb`: the operations on redb; `claim`: the claim walk.
//! - `queue_stats`: per-queue health, computed from job records.

mod claim;
mod queue_stats;
mod record;
mod redb;
mod schema;
mod writer;

pub use self::redb::RedbStorage;
pub use queue_stats::QueueStats;
pub use record::{
    Backoff, JobError, JobEvent, JobRecord, JobState, LogLine, Millis, NewJob, PluginRecord,
    Progress, Role, TenantRecord, TokenRecord, WorkerMode, WorkerRecord, now_ms,
};
pub use writer::CommitStats;

use crate::runtime::{FailureKind, LogLevel, RunReport};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A job whose worker died this many times fails instead of going back to
/// the queue: it is probably what kills its workers. A lost lease does not
/// use up one of the job's retries, since the job itself did not fail.
pub const MAX_LEASES_LOST: u32 = 3;

/// Why a storage operation did not happen. The API maps these to statuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StorageError {
    /// No such job (or other object).
    #[error("{0} not found")]
    NotFound(String),
    /// The object is not in a state that allows this.
    #[error("{0}")]
    Conflict(String),
    /// Stored bytes did not decode: a bug or a damaged file.
    #[error("corrupt record: {0}")]
    Corrupt(String),
    /// The database failed.
    #[error("database error: {0}")]
    Backend(String),
    /// The tenant is over one of its quotas.
    #[error("{0}")]
    OverQuota(String),
    /// The storage was shut down.
    #[error("storage is closed")]
    Closed,
}

/// A completion webhook waiting to be sent: written in the transaction that
/// finishes a job with a `callback_url`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Callback {
    /// When it is due.
    pub due: Millis,
    /// The finished job.
    pub job: Uuid,
    /// Deliveries tried so far.
    pub attempts: u32,
}

/// The answer to an enqueue.
#[derive(Debug, Clone, PartialEq)]
pub struct Enqueued {
    /// The job, new or (for a repeated idempotency key) the existing one.
    pub job: JobRecord,
    /// False when the idempotency key matched an existing job.
    pub created: bool,
}

/// The lease of a running job, kept in the running index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lease {
    /// Worker holding it.
    pub worker: String,
    /// Recovery requeues the job after this.
    pub until: Millis,
    /// The job's queue, for concurrency limits.
    pub queue: String,
    /// The job's tenant, for quotas.
    pub tenant: String,
}

/// Per-queue settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueSettings {
    /// A paused queue keeps its jobs but starts none.
    pub paused: bool,
    /// Most jobs of the queue running at once; `None` is no limit.
    pub concurrency: Option<u32>,
}

/// How claims are made.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimRules {
    /// The claiming worker.
    pub worker: String,
    /// Most jobs to claim.
    pub max: usize,
    /// The time of the claim.
    pub now: Millis,
    /// Lease length.
    pub lease_ms: u64,
    /// Most running jobs of a tenant without its own `max_running` in the
    /// tenants table; `None` is no quota.
    pub tenant_quota: Option<u32>,
}

/// Output of a running job, batched by the engine.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OutputBatch {
    /// Log lines: time, level, message.
    pub logs: Vec<(Millis, LogLevel, String)>,
    /// Latest progress, if it changed.
    pub progress: Option<Progress>,
    /// Metadata set by the job, the latest value of each key.
    pub metadata: std::collections::BTreeMap<String, serde_json::Value>,
}

/// What changes when a job is enqueued again (retry, clone); `None` keeps
/// the old job's.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Resubmit {
    /// New JSON args.
    pub args: Option<String>,
    /// Limits, lowered to the tenant's caps of today by the caller.
    pub limits: Option<crate::runtime::LimitOverrides>,
}

/// What a job list is filtered by; `None` matches everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobFilter {
    /// Only this tenant's jobs.
    pub tenant: Option<String>,
    /// Only jobs enqueued by this owner.
    pub owner: Option<String>,
    /// Only jobs in this state.
    pub state: Option<JobState>,
    /// Only this queue.
    pub queue: Option<String>,
    /// Only this plugin.
    pub job: Option<String>,
    /// Only jobs created at or after this time.
    pub since: Option<Millis>,
    /// Case-insensitive text in the name, description, plugin or tags.
    pub search: Option<String>,
}

/// One page of a list, with the total that matched.
#[derive(Debug, Clone, PartialEq)]
pub struct JobPage {
    /// The jobs of this page, newest first.
    pub jobs: Vec<JobRecord>,
    /// How many jobs matched the filter in all.
    pub total: usize,
}

/// How a run's failure is treated.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Failure kinds worth another attempt. `cancelled` is never retried.
    pub retriable: Vec<FailureKind>,
}

impl Default for RetryPolicy {
    /// Everything but the job's own error and cancellation: those would fail
    /// the same way again or were asked for.
    fn default() -> Self {
        use FailureKind::*;
        Self { retriable: vec![Trap, FuelExhausted, Timeout, MemoryLimit, HostError] }
    }
}

impl RetryPolicy {
    fn retries(&self, kind: FailureKind) -> bool {
        kind != FailureKind::Cancelled && self.retriable.contains(&kind)
    }
}

/// The storage the engine and the API use.
#[async_trait::async_trait]
pub trait Storage: Send + Sync {
    /// Writes a new job (`scheduled` or `pending`) with its index entry and
    /// first event, or returns the job of a repeated idempotency key.
    async fn enqueue(&self, new: NewJob) -> Result<Enqueued, StorageError>;
    /// One job.
    async fn get(&self, id: Uuid) -> Result<JobRecord, StorageError>;
    /// A page of jobs matching `filter`, newest first.
    async fn list(
        &self,
        filter: &JobFilter,
        offset: usize,
        limit: usize,
    ) -> Result<JobPage, StorageError>;
    /// A job's journal after event `after` (0 for all).
    async fn events(&self, id: Uuid, after: u64) -> Result<Vec<JobEvent>, StorageError>;
    /// Up to `limit` log lines of a job after line `after`.
    async fn logs(&self, id: Uuid, after: u64, limit: usize) -> Result<Vec<LogLine>, StorageError>;
    /// How many ready jobs would be claimed before this pending one.
    async fn queue_position(&self, id: Uuid) -> Result<Option<usize>, StorageError>;
    /// Claims ready jobs in order (priority, run_at, FIFO), skipping paused
    /// or full queues, tenants at quota and held locks; expires those past
    /// `expires_at`. Each claimed job is `running` with a lease.
    async fn claim(&self, rules: ClaimRules) -> Result<Vec<JobRecord>, StorageError>;
    /// Records how a claimed job's run ended: `completed`, a retry with
    /// backoff, or `failed`/`cancelled`. Refused if `worker` lost the lease.
    async fn finish(
        &self,
        id: Uuid,
        worker: &str,
        report: RunReport,
        policy: &RetryPolicy,
    ) -> Result<JobRecord, StorageError>;
    /// Extends the leases `worker` holds on `ids` to `until`.
    async fn renew(&self, worker: &str, ids: Vec<Uuid>, until: Millis) -> Result<(), StorageError>;
    /// Returns jobs whose lease ended before `before` to `pending` (or
    /// `failed` once they lost [`MAX_LEASES_LOST`] leases, `cancelled` if a
    /// cancel was asked for), releasing their locks.
    async fn recover(&self, before: Millis) -> Result<Vec<Uuid>, StorageError>;
    /// Returns the jobs `ids` still running on `worker` to `pending`, as if
    /// their attempt never began: a worker that stops gives back what it
    /// could not finish. Returns the jobs handed back.
    async fn hand_back(&self, worker: &str, ids: Vec<Uuid>)
    -> Result<Vec<JobRecord>, StorageError>;
    /// Moves scheduled jobs that are due by `now` to `pending`.
    async fn promote(&self, now: Millis) -> Result<usize, StorageError>;
    /// Appends a running job's output: log lines, latest progress, metadata.
    async fn append_output(
        &self,
        id: Uuid,
        attempt: u32,
        batch: OutputBatch,
    ) -> Result<(), StorageError>;
    /// Cancels a job: a waiting one at once; a running one gets a "cancel
    /// requested" event and stays `running` until its run ends.
    async fn cancel(&self, id: Uuid) -> Result<JobRecord, StorageError>;
    /// Sets a queue's settings.
    async fn set_queue(&self, name: &str, settings: QueueSettings) -> Result<(), StorageError>;
    /// A queue's settings (the default for a queue never set).
    async fn queue(&self, name: &str) -> Result<QueueSettings, StorageError>;
    /// Locks held, with the job holding each.
    async fn locks(&self) -> Result<Vec<(String, Uuid)>, StorageError>;
    /// Releases a lock by hand.
    async fn clear_lock(&self, name: &str) -> Result<(), StorageError>;
    /// Enqueues a finished job again as a new job with `changes`, linked
    /// both ways (`retry_of`, `retried_by`); refused for a job not finished
    /// or already retried.
    async fn retry(&self, id: Uuid, changes: Resubmit) -> Result<JobRecord, StorageError>;
    /// Enqueues a new job with this job's settings and `changes`.
    async fn clone_job(&self, id: Uuid, changes: Resubmit) -> Result<JobRecord, StorageError>;
    /// Deletes a finished job with its journal and logs; refused for a job
    /// that is not finished.
    async fn remove(&self, id: Uuid) -> Result<JobRecord, StorageError>;
    /// Deletes up to `max` jobs that finished before `finished_before`, with
    /// their journals and logs (retention). Returns how many.
    async fn prune(&self, finished_before: Millis, max: usize) -> Result<usize, StorageError>;
    /// Health of every queue (of `tenant`, or all): counts by state, stuck
    /// jobs, and over the last `window_ms`: throughput, success rate and
    /// average duration.
    async fn queue_stats(
        &self,
        tenant: Option<&str>,
        now: Millis,
        window_ms: u64,
        stuck_after_ms: u64,
    ) -> Result<Vec<QueueStats>, StorageError>;
    /// Enqueues one copy of `new` for every worker whose heartbeat is not
    /// older than `live_after`, each pinned to its worker.
    async fn enqueue_broadcast(
        &self,
        new: NewJob,
        live_after: Millis,
    ) -> Result<Vec<JobRecord>, StorageError>;
    /// Records that `worker` is alive with `slots` and `running` jobs;
    /// returns the mode an operator set for it.
    async fn heartbeat(
        &self,
        worker: &str,
        slots: u32,
        running: u32,
        now: Millis,
    ) -> Result<WorkerMode, StorageError>;
    /// Every worker that ever reported, with its last heartbeat.
    async fn workers(&self) -> Result<Vec<WorkerRecord>, StorageError>;
    /// Pauses, drains or resumes a worker.
    async fn set_worker_mode(
        &self,
        worker: &str,
        mode: WorkerMode,
    ) -> Result<WorkerRecord, StorageError>;
    /// Stores a plugin version: its record and its component bytes.
    async fn put_plugin(
        &self,
        record: PluginRecord,
        component: Vec<u8>,
    ) -> Result<(), StorageError>;
    /// Plugins of `tenant` (or all), by tenant and name.
    async fn plugins(&self, tenant: Option<&str>) -> Result<Vec<PluginRecord>, StorageError>;
    /// The component bytes of a digest.
    async fn component(&self, digest: &str) -> Result<Vec<u8>, StorageError>;
    /// Removes a plugin (and its bytes, when no other plugin uses them).
    async fn remove_plugin(&self, tenant: &str, name: &str) -> Result<PluginRecord, StorageError>;
    /// Stores a token under the hash of its secret.
    async fn put_token(&self, hash: &str, record: TokenRecord) -> Result<(), StorageError>;
    /// The token with this secret hash.
    async fn token(&self, hash: &str) -> Result<Option<TokenRecord>, StorageError>;
    /// Every token, by hash.
    async fn tokens(&self) -> Result<Vec<(String, TokenRecord)>, StorageError>;
    /// Revokes a token.
    async fn remove_token(&self, hash: &str) -> Result<(), StorageError>;
    /// Creates or updates a tenant.
    async fn put_tenant(&self, record: TenantRecord) -> Result<(), StorageError>;
    /// A tenant (no quotas if never set).
    async fn tenant(&self, name: &str) -> Result<TenantRecord, StorageError>;
    /// Every tenant with quotas set.
    async fn tenants(&self) -> Result<Vec<TenantRecord>, StorageError>;
    /// Completion webhooks due by `now`, oldest first, at most `max`.
    async fn due_callbacks(&self, now: Millis, max: usize) -> Result<Vec<Callback>, StorageError>;
    /// Takes a webhook off the outbox: delivered or given up (`None`), or
    /// due again at `retry_at` with one more attempt counted.
    async fn callback_done(
        &self,
        callback: Callback,
        retry_at: Option<Millis>,
    ) -> Result<(), StorageError>;
    /// Jobs of `tenant` waiting to run (pending or scheduled).
    async fn waiting(&self, tenant: &str) -> Result<u64, StorageError>;
    /// Group-commit counters.
    fn commit_stats(&self) -> &CommitStats;
}
