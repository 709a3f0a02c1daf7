//! Durable storage of jobs and of what admins manage, behind five traits
//! split by concern: [`JobStore`] (jobs, queues, locks: the hot path),
//! [`AdminStore`] (workers, plugins, tokens, tenants), [`OutboxStore`]
//! (completion webhooks), [`WorkflowStore`] and [`ScheduleStore`].
//! [`Storage`] is all of them, what the host holds.
//!
//! Storage persists what the job model decides ([`crate::jobs::rules`]) and
//! owns no policy: every operation that changes a job reads the record,
//! asks the rule, and writes the [`crate::jobs::Transition`] with its
//! indexes and journal in one transaction. Time comes in as a parameter.
//!
//! - `redb/`: the embedded default, [`RedbStorage`], one redb file.
//! - `postgres/`: [`PgStorage`], one PostgreSQL database shared by hosts.
//! - `listing`: what a job list asks for and gets.
//! - `queue_stats`: per-queue health.

mod listing;
mod postgres;
mod queue_stats;
mod redb;

pub use self::postgres::{PgStorage, Relay};
pub use self::redb::RedbStorage;
pub use listing::{Cursor, JobFilter, JobPage, Start};
pub use queue_stats::{MINUTES, Minute, QueueStats};

use crate::jobs::changes::{Relabel, Resubmit};
use crate::jobs::schedule::ScheduleRecord;
use crate::jobs::workflow::WorkflowRecord;
use crate::jobs::{
    Clock, JobEvent, JobRecord, LogLevel, LogLine, Millis, NewJob, PluginRecord, Progress,
    QueueSettings, RetryPolicy, RunReport, TenantRecord, TokenRecord, WebhookStatus, WorkerMode,
    WorkerRecord,
};
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// Why a storage operation did not happen. The API maps these to statuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StorageError {
    /// No such job (or other object).
    #[error("{0} not found")]
    NotFound(String),
    /// The object is not in a state that allows this.
    #[error("{0}")]
    Conflict(String),
    /// The change asked for breaks a rule of the model; the message says which.
    #[error("{0}")]
    Invalid(String),
    /// Stored bytes did not decode: a bug or a damaged file.
    #[error("corrupt record: {0}")]
    Corrupt(String),
    /// The database failed.
    #[error("database error: {0}")]
    Backend(String),
    /// The database file could not be read or written (a full disk, say);
    /// nothing was changed, and a later try may succeed.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
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

/// How claims are made.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimRules {
    /// The claiming worker.
    pub worker: String,
    /// Most jobs to claim. For [`JobStore::claim_waiting`] the worker's
    /// slots: the claim takes no more than the worker's leases leave free
    /// of them in the claim's own transaction, so a job that finishes in
    /// that commit hands its slot on in it.
    pub max: usize,
    /// The time of the claim (a waiting claim reads [`ClaimWaiting::clock`]
    /// at each try instead: a job claimed later starts later).
    pub now: Millis,
    /// Lease length.
    pub lease_ms: u64,
}

/// How [`JobStore::claim_waiting`] waits for work.
#[derive(Debug, Clone)]
pub struct ClaimWaiting {
    /// The time of each try.
    pub clock: Arc<dyn Clock>,
    /// The longest wait.
    pub wait: Duration,
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

/// A version of a plugin as kept.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginVersion {
    /// Who uploaded which bytes when.
    pub record: PluginRecord,
    /// New jobs of the plugin run this version.
    pub current: bool,
    /// Unfinished jobs enqueued with it.
    pub jobs: u64,
}

/// How a run ended, for [`JobStore::finish`]: the rule it is decided by
/// gets the worker's report, the policy, the time and a random number for
/// the backoff's jitter.
#[derive(Debug, Clone, PartialEq)]
pub struct Finishing {
    /// The worker that ran it; refused if it no longer holds the job.
    pub worker: String,
    /// The attempt that ran; refused if the job has gone on to another.
    pub attempt: u32,
    /// How the run ended.
    pub report: RunReport,
    /// Which failures are retried.
    pub policy: RetryPolicy,
    /// The time of the outcome.
    pub now: Millis,
    /// Picks the retry's jitter.
    pub random: u64,
    /// The run's output not written yet, written in the same commit as
    /// the outcome (a short job's output costs no write of its own).
    pub output: OutputBatch,
}

/// Jobs, their queues and locks: what enqueue, dispatch and the job routes
/// use. Every change of a job goes through a rule of [`crate::jobs::rules`].
#[async_trait::async_trait]
pub trait JobStore: Send + Sync {
    /// Writes a new job (`scheduled` or `pending`) created at `now`, with
    /// its index entry and first event, or returns the job of a repeated
    /// idempotency key; refused over the tenant's `max_queued`.
    async fn enqueue(&self, new: NewJob, now: Millis) -> Result<Enqueued, StorageError>;
    /// Writes many jobs in one transaction, each as [`JobStore::enqueue`]
    /// would: a job refused (over quota) changes nothing and does not stop
    /// the others.
    async fn enqueue_many(
        &self,
        jobs: Vec<NewJob>,
        now: Millis,
    ) -> Result<Vec<Result<Enqueued, StorageError>>, StorageError>;
    /// One job.
    async fn get(&self, id: Uuid) -> Result<JobRecord, StorageError>;
    /// Enqueues `child` for the running attempt `attempt` of job `parent`
    /// and links them both ways; refused past the tenant's `max_children`
    /// or `max_spawn_depth` (and `max_queued`), or when the parent no
    /// longer runs that attempt.
    async fn spawn_child(
        &self,
        parent: Uuid,
        attempt: u32,
        child: NewJob,
        now: Millis,
    ) -> Result<JobRecord, StorageError>;
    /// The jobs `ids`, read at one moment; `None` for one not stored.
    async fn get_many(&self, ids: &[Uuid]) -> Result<Vec<Option<JobRecord>>, StorageError>;
    /// A page of at most `limit` jobs matching `filter` from `start`,
    /// newest first, with the total that matched; it costs about what it
    /// returns, however many jobs are stored.
    async fn list(
        &self,
        filter: &JobFilter,
        start: Start,
        limit: usize,
    ) -> Result<JobPage, StorageError>;
    /// A job's journal after event `after` (0 for all).
    async fn events(&self, id: Uuid, after: u64) -> Result<Vec<JobEvent>, StorageError>;
    /// Up to `limit` log lines of a job after line `after`.
    async fn logs(&self, id: Uuid, after: u64, limit: usize) -> Result<Vec<LogLine>, StorageError>;
    /// How many ready jobs would be claimed before this pending one.
    async fn queue_position(&self, id: Uuid) -> Result<Option<usize>, StorageError>;
    /// Claims ready jobs in order (priority, run_at, FIFO) as the claim rule
    /// allows, expiring those past `expires_at`. Each claimed job is
    /// `running` with a lease. A worker whose stored mode is not `active`
    /// (an operator paused, drained or stopped it) claims nothing.
    async fn claim(&self, rules: ClaimRules) -> Result<Vec<JobRecord>, StorageError>;
    /// Claims as [`claim`](Self::claim) does, into the worker's free slots
    /// (of `rules.max`); or, when it has none or no job may be claimed,
    /// waits (as `waiting` says) for a change that makes one claimable and
    /// claims it in that change's own commit: the enqueue of a job, or the
    /// finish of the job whose slot it takes. So no commit of its own
    /// stands between a job and its start. Returns nothing when the wait
    /// ran out.
    async fn claim_waiting(
        &self,
        rules: ClaimRules,
        waiting: ClaimWaiting,
    ) -> Result<Vec<JobRecord>, StorageError>;
    /// Records how a claimed job's run ended, as the outcome rule decides;
    /// refused if the worker lost the job.
    async fn finish(&self, id: Uuid, finishing: Finishing) -> Result<JobRecord, StorageError>;
    /// Extends the leases `worker` holds on `runs` (job, attempt) to
    /// `until`; returns the runs it no longer holds (recovered, or claimed
    /// again as a later attempt), which the worker must stop.
    async fn renew(
        &self,
        worker: &str,
        runs: Vec<(Uuid, u32)>,
        until: Millis,
    ) -> Result<Vec<(Uuid, u32)>, StorageError>;
    /// Takes the jobs whose lease ended before `now` off their dead workers
    /// (the lost-worker rule: back to pending, or finished).
    async fn recover(&self, now: Millis) -> Result<Vec<Uuid>, StorageError>;
    /// Returns the jobs `ids` still running on `worker` to `pending`, as if
    /// their attempt never began: a worker that stops gives back what it
    /// could not finish. Returns the jobs handed back.
    async fn hand_back(
        &self,
        worker: &str,
        ids: Vec<Uuid>,
        now: Millis,
    ) -> Result<Vec<JobRecord>, StorageError>;
    /// Moves scheduled jobs that are due by `now` to `pending`.
    async fn promote(&self, now: Millis) -> Result<usize, StorageError>;
    /// Expires the waiting jobs whose `expires_at` is not after `now`, in
    /// any queue, paused ones included. Returns how many.
    async fn expire(&self, now: Millis) -> Result<usize, StorageError>;
    /// Appends a running job's output: log lines, latest progress, metadata;
    /// refused (`Conflict`, nothing written) unless the job is running
    /// `attempt`, so a run that lost its lease writes nothing more.
    async fn append_output(
        &self,
        id: Uuid,
        attempt: u32,
        batch: OutputBatch,
    ) -> Result<(), StorageError>;
    /// Changes a job's labels (name, description, tags, client metadata) as
    /// [`crate::jobs::changes::relabel`] allows, in any state.
    async fn relabel(&self, id: Uuid, change: Relabel) -> Result<JobRecord, StorageError>;
    /// Cancels a job as the cancel rule says.
    async fn cancel(&self, id: Uuid, now: Millis) -> Result<JobRecord, StorageError>;
    /// Enqueues a finished job again as a new job with `changes`, linked
    /// both ways (`retry_of`, `retried_by`); refused for a job not finished
    /// or already retried.
    async fn retry(
        &self,
        id: Uuid,
        changes: Resubmit,
        now: Millis,
    ) -> Result<JobRecord, StorageError>;
    /// Enqueues a new job with this job's settings and `changes`.
    async fn clone_job(
        &self,
        id: Uuid,
        changes: Resubmit,
        now: Millis,
    ) -> Result<JobRecord, StorageError>;
    /// Deletes a finished job with its journal and logs; refused for a job
    /// that is not finished.
    async fn remove(&self, id: Uuid) -> Result<JobRecord, StorageError>;
    /// Deletes up to `max` jobs that finished before `finished_before`, with
    /// their journals and logs (retention), oldest first. Returns how many.
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
        now: Millis,
    ) -> Result<Vec<JobRecord>, StorageError>;
    /// Jobs of `tenant` waiting to run (pending or scheduled).
    async fn waiting(&self, tenant: &str) -> Result<u64, StorageError>;
    /// Sets a queue's settings.
    async fn set_queue(&self, name: &str, settings: QueueSettings) -> Result<(), StorageError>;
    /// A queue's settings (the default for a queue never set).
    async fn queue(&self, name: &str) -> Result<QueueSettings, StorageError>;
    /// Locks held, with the job holding each.
    async fn locks(&self) -> Result<Vec<(String, Uuid)>, StorageError>;
    /// Releases a lock by hand.
    async fn clear_lock(&self, name: &str) -> Result<(), StorageError>;
    /// Figures of the backend for stats and metrics, as (name, value); a
    /// name ending in `_total` only grows (commits, writes committed).
    fn counters(&self) -> Vec<(&'static str, u64)>;
}

/// What admins manage: workers, plugins, tokens, tenants.
#[async_trait::async_trait]
pub trait AdminStore: Send + Sync {
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
    /// `tenant`'s uploaded plugin `name`, if there is one: what an enqueue
    /// reads, so it costs one lookup whatever the tenant holds.
    async fn plugin(&self, tenant: &str, name: &str) -> Result<Option<PluginRecord>, StorageError>;
    /// The component bytes of a digest.
    async fn component(&self, digest: &str) -> Result<Vec<u8>, StorageError>;
    /// Removes a plugin with its versions (and their bytes, when no other
    /// plugin uses them); refused while unfinished jobs need a version.
    async fn remove_plugin(&self, tenant: &str, name: &str) -> Result<PluginRecord, StorageError>;
    /// The versions of `tenant`'s plugin `name` kept (the current one and
    /// those unfinished jobs need), oldest first.
    async fn plugin_versions(
        &self,
        tenant: &str,
        name: &str,
    ) -> Result<Vec<PluginVersion>, StorageError>;
    /// Removes one version, unless it is current or unfinished jobs need it.
    async fn remove_plugin_version(
        &self,
        tenant: &str,
        name: &str,
        digest: &str,
    ) -> Result<PluginRecord, StorageError>;
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
}

/// The outbox of completion webhooks, written with the finishing
/// transition of a job that names a `callback_url`.
#[async_trait::async_trait]
pub trait OutboxStore: Send + Sync {
    /// Completion webhooks due by `now`, oldest first, at most `max`.
    async fn due_callbacks(&self, now: Millis, max: usize) -> Result<Vec<Callback>, StorageError>;
    /// Records how a delivery went on its job (`None`: the job has no
    /// webhook any more) and takes the webhook off the outbox, or makes it
    /// due again at the status's `next_attempt_at`.
    async fn callback_done(
        &self,
        callback: Callback,
        status: Option<WebhookStatus>,
    ) -> Result<(), StorageError>;
}

/// Workflows: graphs of step jobs written in one transaction.
#[async_trait::async_trait]
pub trait WorkflowStore: Send + Sync {
    /// Writes a workflow and its steps (dependencies first, each with its
    /// id), all or none: refused as a whole over the tenant's `max_queued`.
    async fn create_workflow(
        &self,
        workflow: WorkflowRecord,
        steps: Vec<NewJob>,
        now: Millis,
    ) -> Result<Vec<JobRecord>, StorageError>;
    /// One workflow.
    async fn workflow(&self, id: Uuid) -> Result<WorkflowRecord, StorageError>;
    /// A page of the workflows of `tenant` (or all) and `owner` (or
    /// anyone's), newest first, with the total that matched.
    async fn workflows(
        &self,
        tenant: Option<&str>,
        owner: Option<&str>,
        offset: usize,
        limit: usize,
    ) -> Result<(Vec<WorkflowRecord>, usize), StorageError>;
    /// Cancels every unfinished step (as the cancel rule says for each);
    /// returns the steps' jobs after it.
    async fn cancel_workflow(&self, id: Uuid, now: Millis) -> Result<Vec<JobRecord>, StorageError>;
    /// Enqueues again, as retries of the old jobs, the steps that did not
    /// complete and every step depending on them (see
    /// [`crate::jobs::workflow::retry_plan`]), linked to the steps kept.
    async fn retry_workflow(&self, id: Uuid, now: Millis) -> Result<WorkflowRecord, StorageError>;
}

/// One round of a schedule, for [`ScheduleStore::fire_schedule`].
#[derive(Debug, Clone, PartialEq)]
pub struct Round {
    /// A job per run to fire, each with its run's idempotency key.
    pub jobs: Vec<NewJob>,
    /// Runs skipped.
    pub skipped: u64,
    /// The schedule's next time after this round.
    pub next_run_at: Option<Millis>,
    /// The latest run time this round covers.
    pub last_run_at: Option<Millis>,
    /// Why a run could not be admitted, if one could not.
    pub error: Option<String>,
    /// The time of the round.
    pub now: Millis,
}

/// Recurring schedules.
#[async_trait::async_trait]
pub trait ScheduleStore: Send + Sync {
    /// Writes a new schedule; refused past
    /// [`crate::jobs::schedule::MAX_SCHEDULES`] of its tenant.
    async fn create_schedule(&self, schedule: ScheduleRecord) -> Result<(), StorageError>;
    /// One schedule.
    async fn schedule(&self, id: Uuid) -> Result<ScheduleRecord, StorageError>;
    /// The schedules of `tenant` (or all), oldest first.
    async fn schedules(&self, tenant: Option<&str>) -> Result<Vec<ScheduleRecord>, StorageError>;
    /// Pauses, or resumes with its next time set to `next_run_at`.
    async fn set_schedule_paused(
        &self,
        id: Uuid,
        paused: bool,
        next_run_at: Option<Millis>,
    ) -> Result<ScheduleRecord, StorageError>;
    /// Deletes a schedule; the jobs it enqueued stay.
    async fn remove_schedule(&self, id: Uuid) -> Result<ScheduleRecord, StorageError>;
    /// Schedules not paused whose next time is not after `now`.
    async fn due_schedules(&self, now: Millis) -> Result<Vec<ScheduleRecord>, StorageError>;
    /// Writes one round, in one transaction, if the schedule's next time is
    /// still `expected` and it is not paused: its jobs enqueued (a run's
    /// idempotency key already used enqueues nothing more), its counters
    /// and next time. `None` when another host fired it first, or it was
    /// paused or removed meanwhile.
    async fn fire_schedule(
        &self,
        id: Uuid,
        expected: Millis,
        round: Round,
    ) -> Result<Option<ScheduleRecord>, StorageError>;
}

/// Everything the host stores: one backend implementing the traits.
pub trait Storage:
    JobStore + AdminStore + OutboxStore + WorkflowStore + ScheduleStore + std::fmt::Debug
{
}

impl<T: JobStore + AdminStore + OutboxStore + WorkflowStore + ScheduleStore + std::fmt::Debug>
    Storage for T
{
}
