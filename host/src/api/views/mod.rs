//! What the API answers: the response bodies, apart from the stored
//! records, with no internal fields (leases, lost-lease counts, pins, cancel
//! flags, request fingerprints stay inside). Each derives the schema the
//! OpenAPI document shows, so the document describes the real bodies.
//! Queue and lock names appear as the client named them, without the
//! tenant prefix storage keeps.
//!
//! `admin` holds the views of plugins, queues, locks, workers, tokens and
//! tenants; `flows` those of workflows and schedules.

mod admin;
mod flows;

pub use admin::{
    LockList, LockView, PluginPage, PluginVersionView, PluginVersions, PluginView, QueueList,
    QueueSettingsView, QueueView, TenantList, TenantView, TokenList, TokenView, WorkerList,
    WorkerView,
};
pub use flows::{ScheduleList, ScheduleView, WorkflowPage, WorkflowView};

use crate::jobs::enqueue::unscoped;
use crate::jobs::{
    Backoff, DependencyFailure, FailureKind, JobError, JobEvent, JobRecord, JobState,
    LimitOverrides, LogLine, Millis, Progress, WebhookStatus, stored_json,
};
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;
use uuid::Uuid;

/// A job as a client sees it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct JobView {
    /// UUID v7: ids sort by creation.
    pub id: Uuid,
    /// Tenant.
    pub tenant: String,
    /// Who enqueued it (a token name).
    pub owner: String,
    /// Qualified plugin name.
    pub job: String,
    /// Digest of the plugin version it was enqueued with.
    pub plugin_digest: String,
    /// The JSON args.
    pub args: Value,
    /// Queue.
    pub queue: String,
    /// Higher runs first.
    pub priority: i32,
    /// Current state.
    pub state: JobState,
    /// Attempts started so far.
    pub attempt: u32,
    /// Retries allowed after the first attempt.
    pub max_retries: u32,
    /// Failure kinds retried; `null`: every kind but `cancelled`.
    pub retry_on: Option<Vec<FailureKind>>,
    /// Delay between attempts.
    pub backoff: Backoff,
    /// Earliest (next) start, ms since the epoch.
    pub run_at: Millis,
    /// Enqueue time.
    pub created_at: Millis,
    /// Start of the latest attempt.
    pub started_at: Option<Millis>,
    /// When it reached a terminal state.
    pub finished_at: Option<Millis>,
    /// Deadline to start.
    pub expires_at: Option<Millis>,
    /// Limits asked for.
    pub limits: LimitOverrides,
    /// Named lock held while it runs.
    pub lock: Option<String>,
    /// Idempotency key.
    pub idempotency_key: Option<String>,
    /// Label.
    pub name: Option<String>,
    /// Free text.
    pub description: Option<String>,
    /// Labels to filter by.
    pub tags: Vec<String>,
    /// What the client attached.
    pub metadata: Map<String, Value>,
    /// What the job attached itself (`set-metadata`).
    pub plugin_metadata: Map<String, Value>,
    /// Latest progress.
    pub progress: Option<Progress>,
    /// The JSON result, once completed.
    pub result: Option<Value>,
    /// Failure of the latest attempt.
    pub error: Option<JobError>,
    /// Fuel used over all attempts.
    pub fuel_used: u64,
    /// Most linear memory any attempt held at once, in bytes.
    pub memory_peak: u64,
    /// Worker running it, or that ran it last.
    pub worker: Option<String>,
    /// The job this one retries.
    pub retry_of: Option<Uuid>,
    /// The job that retried this one.
    pub retried_by: Option<Uuid>,
    /// The job this one is a clone of (its clones: `GET /v1/jobs?cloned_from=`).
    pub cloned_from: Option<Uuid>,
    /// URL that receives the final job once it finishes.
    pub callback_url: Option<String>,
    /// How the delivery to `callback_url` goes, once the job finished.
    pub webhook: Option<WebhookStatus>,
    /// The broadcast this job is one copy of, and the worker it runs on.
    pub broadcast: Option<Uuid>,
    /// The worker a broadcast copy runs on.
    pub pinned_to: Option<String>,
    /// Jobs it waits for (`blocked` until they all finished).
    pub depends_on: Vec<Uuid>,
    /// `cancel` or `run` when one of them fails.
    pub if_dependency_fails: DependencyFailure,
    /// The job that follows it in a chain.
    pub next_job_id: Option<Uuid>,
    /// The workflow it is a step of, and the step's name.
    pub workflow: Option<Uuid>,
    /// Its step in that workflow.
    pub step: Option<String>,
    /// The job that spawned it.
    pub parent: Option<Uuid>,
    /// The jobs it spawned.
    pub children: Vec<Uuid>,
    /// The schedule that enqueued it.
    pub schedule: Option<Uuid>,
}

impl From<&JobRecord> for JobView {
    fn from(job: &JobRecord) -> Self {
        JobView {
            id: job.id,
            tenant: job.tenant.clone(),
            owner: job.owner.clone(),
            job: job.job.clone(),
            plugin_digest: job.plugin_digest.clone(),
            args: stored_json(&job.args),
            queue: unscoped(&job.queue).to_string(),
            priority: job.priority,
            state: job.state,
            attempt: job.attempt,
            max_retries: job.max_retries,
            retry_on: job.retry_on.clone(),
            backoff: job.backoff,
            run_at: job.run_at,
            created_at: job.created_at,
            started_at: job.started_at,
            finished_at: job.finished_at,
            expires_at: job.expires_at,
            limits: job.limits,
            lock: job.lock.as_deref().map(|lock| unscoped(lock).to_string()),
            idempotency_key: job.idempotency_key.clone(),
            name: job.name.clone(),
            description: job.description.clone(),
            tags: job.tags.clone(),
            metadata: job.metadata.clone(),
            plugin_metadata: job.plugin_metadata.clone(),
            progress: job.progress.clone(),
            result: job.result.as_deref().map(stored_json),
            error: job.error.clone(),
            fuel_used: job.fuel_used,
            memory_peak: job.memory_peak,
            worker: job.worker.clone(),
            retry_of: job.retry_of,
            retried_by: job.retried_by,
            cloned_from: job.cloned_from,
            callback_url: job.callback_url.clone(),
            webhook: job.webhook.clone(),
            broadcast: job.broadcast,
            pinned_to: job.pinned_to.clone(),
            depends_on: job.flow.depends_on.clone(),
            if_dependency_fails: job.flow.if_dependency_fails,
            next_job_id: job.flow.next_job_id,
            workflow: job.flow.workflow,
            step: job.flow.step.clone(),
            parent: job.flow.parent,
            children: job.flow.children.clone(),
            schedule: job.flow.schedule,
        }
    }
}

/// The job as the webhook receiver gets it.
pub fn job_view(job: &JobRecord) -> Value {
    serde_json::to_value(JobView::from(job)).expect("views serialise")
}

/// A job with its journal and its place in the queue.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobDetails {
    /// The job.
    #[serde(flatten)]
    pub job: JobView,
    /// Every state change, oldest first.
    pub events: Vec<JobEvent>,
    /// Ready jobs claimed before this one, while it is pending.
    pub queue_position: Option<usize>,
}

/// A page of jobs, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobPage {
    /// The jobs of this page.
    pub jobs: Vec<JobView>,
    /// How many matched in all; at least this many when `total_exact` is
    /// false (a text search over many jobs stops counting).
    pub total: usize,
    /// Whether `total` is the exact count.
    pub total_exact: bool,
    /// This page, from 1; `null` for a page asked for by `cursor`.
    pub page: Option<usize>,
    /// Jobs per page.
    pub per_page: usize,
    /// Pass as `cursor` for the next page; `null` on the last page. A
    /// cursor page costs the same however deep it is. A text search reads
    /// a bounded number of jobs per request: its page may be short (even
    /// empty) with a `next_cursor` to go on.
    pub next_cursor: Option<String>,
}

/// The copies of a broadcast job, one per live worker.
#[derive(Debug, Serialize, ToSchema)]
pub struct BroadcastView {
    /// The id every copy carries in `broadcast`.
    pub broadcast: Uuid,
    /// Each copy, pinned to its worker.
    pub jobs: Vec<JobView>,
}

/// A page of a job's log.
#[derive(Debug, Serialize, ToSchema)]
pub struct LogPage {
    /// The lines after `after`.
    pub logs: Vec<LogLine>,
    /// Pass as `after` for the next page.
    pub next_after: u64,
}
