//! What the API answers: the response bodies, apart from the stored
//! records, with no internal fields (leases, lost-lease counts, pins, cancel
//! flags, request fingerprints stay inside). Each derives the schema the
//! OpenAPI document shows, so the document describes the real bodies.
//! Queue and lock names appear as the client named them, without the
//! tenant prefix storage keeps.

use crate::jobs::enqueue::unscoped;
use crate::jobs::schedule::{ScheduleRecord, When};
use crate::jobs::workflow::{Summary, WorkflowStep};
use crate::jobs::{
    Backoff, DependencyFailure, FailureKind, JobError, JobEvent, JobRecord, JobState,
    LimitOverrides, LogLine, Millis, Progress, QueueSettings, Role, TenantRecord, TokenRecord,
    WebhookStatus, WorkerMode, WorkerRecord, stored_json,
};
use crate::runtime::Plugin;
use crate::storage::QueueStats;
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
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

/// A workflow as a client sees it: its steps and, read from them, its
/// state and progress.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WorkflowView {
    /// UUID v7.
    pub id: Uuid,
    /// Tenant.
    pub tenant: String,
    /// Who submitted it.
    pub owner: String,
    /// Label.
    pub name: Option<String>,
    /// Free text.
    pub description: Option<String>,
    /// Submission time.
    pub created_at: Millis,
    /// Times it was retried.
    pub retries: u32,
    /// State, progress (`done` of `total`, `percent`) and steps per state.
    #[serde(flatten)]
    pub summary: Summary,
    /// The steps, each after those it depends on.
    pub steps: Vec<StepView>,
}

/// A step of a workflow, with the state of its current job.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StepView {
    /// The step's name.
    pub step: String,
    /// Its current job (a retry replaces it).
    pub job: Uuid,
    /// The job's state; `null` once the job was removed.
    pub state: Option<JobState>,
    /// The steps it waits for.
    pub depends_on: Vec<String>,
    /// Start of its latest attempt.
    pub started_at: Option<Millis>,
    /// When it finished.
    pub finished_at: Option<Millis>,
    /// Its result, once completed.
    pub result: Option<Value>,
    /// Why it failed or was cancelled.
    pub error: Option<JobError>,
}

impl StepView {
    /// The view of `step`, whose job is `job`.
    pub fn new(step: &WorkflowStep, job: Option<&JobRecord>) -> Self {
        StepView {
            step: step.name.clone(),
            job: step.job,
            state: job.map(|j| j.state),
            depends_on: step.depends_on.clone(),
            started_at: job.and_then(|j| j.started_at),
            finished_at: job.and_then(|j| j.finished_at),
            result: job.and_then(|j| j.result.as_deref().map(stored_json)),
            error: job.and_then(|j| j.error.clone()),
        }
    }
}

/// A page of workflows, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct WorkflowPage {
    /// The workflows of this page.
    pub workflows: Vec<WorkflowView>,
    /// How many in all.
    pub total: usize,
    /// This page, from 1.
    pub page: usize,
    /// Page size.
    pub per_page: usize,
}

/// A schedule as a client sees it, with its next run times.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ScheduleView {
    /// The stored schedule.
    #[serde(flatten)]
    pub schedule: ScheduleRecord,
    /// Its next run times, RFC 3339 in its time zone (none while paused).
    pub next_runs: Vec<String>,
}

impl From<&ScheduleRecord> for ScheduleView {
    fn from(schedule: &ScheduleRecord) -> Self {
        let next_runs = match When::parse(&schedule.cron, &schedule.timezone) {
            Ok(when) if !schedule.paused => when.upcoming(schedule.next_run_at),
            _ => Vec::new(),
        };
        ScheduleView { schedule: schedule.clone(), next_runs }
    }
}

/// Schedules, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScheduleList {
    /// The schedules.
    pub schedules: Vec<ScheduleView>,
}

/// A page of jobs, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobPage {
    /// The jobs of this page.
    pub jobs: Vec<JobView>,
    /// How many matched in all.
    pub total: usize,
    /// This page, from 1.
    pub page: usize,
    /// Jobs per page.
    pub per_page: usize,
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

/// A plugin as a tenant sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct PluginView {
    /// Qualified name.
    pub name: String,
    /// Loaded from the host's folder for every tenant, not uploaded.
    pub shared: bool,
    /// `sha256:` digest of the component.
    pub digest: String,
    /// Component size in bytes.
    pub size: u64,
    /// Interfaces it imports.
    pub imports: Vec<String>,
    /// What it exports.
    pub exports: Vec<String>,
    /// Upload time (uploaded plugins).
    pub uploaded_at: Option<Millis>,
    /// Who uploaded it (uploaded plugins).
    pub uploader: Option<String>,
}

impl PluginView {
    /// The view of `plugin`, with its upload record if it has one.
    pub fn new(plugin: &Plugin, uploaded: Option<(Millis, &str)>) -> Self {
        PluginView {
            name: plugin.name.clone(),
            shared: plugin.tenant.is_none(),
            digest: plugin.digest.clone(),
            size: plugin.size as u64,
            imports: plugin.imports.clone(),
            exports: plugin.exports.clone(),
            uploaded_at: uploaded.map(|(at, _)| at),
            uploader: uploaded.map(|(_, by)| by.to_string()),
        }
    }
}

/// A version of a plugin.
#[derive(Debug, Serialize, ToSchema)]
pub struct PluginVersionView {
    /// `sha256:` digest of the component: what `version` names at enqueue.
    pub digest: String,
    /// Component size in bytes.
    pub size: u64,
    /// Upload time (uploaded plugins).
    pub uploaded_at: Option<Millis>,
    /// Who uploaded it (uploaded plugins).
    pub uploader: Option<String>,
    /// New jobs run this version.
    pub current: bool,
    /// Waiting or running jobs enqueued with it; it stays while there are.
    pub jobs: u64,
}

/// The versions of a plugin, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct PluginVersions {
    /// Qualified name.
    pub name: String,
    /// Each version kept.
    pub versions: Vec<PluginVersionView>,
}

/// A page of plugins.
#[derive(Debug, Serialize, ToSchema)]
pub struct PluginPage {
    /// The plugins of this page.
    pub plugins: Vec<PluginView>,
    /// How many matched in all.
    pub total: usize,
    /// This page, from 1.
    pub page: usize,
    /// Plugins per page.
    pub per_page: usize,
}

/// Health of one queue.
#[derive(Debug, Serialize, ToSchema)]
pub struct QueueView {
    /// Queue name.
    pub queue: String,
    /// Paused, concurrency.
    pub settings: QueueSettings,
    /// Jobs per state.
    pub counts: BTreeMap<String, usize>,
    /// Running jobs whose worker is gone plus ready jobs waiting too long.
    pub stuck: usize,
    /// Jobs that finished in the last hour.
    pub finished: usize,
    /// Of those, completed.
    pub completed: usize,
    /// Finished jobs per minute over the last hour.
    pub throughput_per_minute: f64,
    /// completed / finished in the last hour.
    pub success_rate: Option<f64>,
    /// Mean run time of jobs completed in the last hour.
    pub average_duration_ms: Option<f64>,
    /// What an operator should look at.
    pub alerts: Vec<String>,
}

impl QueueView {
    /// A queue with no job, as `settings` say.
    pub fn empty(name: &str, settings: QueueSettings) -> Self {
        QueueView {
            queue: name.to_string(),
            settings,
            counts: BTreeMap::new(),
            stuck: 0,
            finished: 0,
            completed: 0,
            throughput_per_minute: 0.0,
            success_rate: None,
            average_duration_ms: None,
            alerts: Vec::new(),
        }
    }
}

impl From<&QueueStats> for QueueView {
    fn from(stats: &QueueStats) -> Self {
        let mut alerts = Vec::new();
        if stats.stuck > 0 {
            alerts.push(format!("{} stuck jobs", stats.stuck));
        }
        if stats.success_rate.is_some_and(|rate| rate < 0.9) {
            alerts.push("success rate below 90 % in the last hour".to_string());
        }
        if stats.settings.paused && stats.counts.get("pending").is_some_and(|&n| n > 0) {
            alerts.push("paused with jobs waiting".to_string());
        }
        QueueView {
            queue: unscoped(&stats.queue).to_string(),
            settings: stats.settings.clone(),
            counts: stats.counts.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            stuck: stats.stuck,
            finished: stats.finished,
            completed: stats.completed,
            throughput_per_minute: stats.throughput_per_minute,
            success_rate: stats.success_rate,
            average_duration_ms: stats.average_duration_ms,
            alerts,
        }
    }
}

/// The tenant's queues.
#[derive(Debug, Serialize, ToSchema)]
pub struct QueueList {
    /// Health of each queue.
    pub queues: Vec<QueueView>,
}

/// A queue's settings after a change.
#[derive(Debug, Serialize, ToSchema)]
pub struct QueueSettingsView {
    /// Queue name.
    pub queue: String,
    /// Starts no job while true.
    pub paused: bool,
    /// Most jobs running at once.
    pub concurrency: Option<u32>,
    /// Lost workers after which a job of the queue fails.
    pub max_lost_leases: u32,
}

/// A held lock.
#[derive(Debug, Serialize, ToSchema)]
pub struct LockView {
    /// Lock name.
    pub name: String,
    /// The job holding it.
    pub job: Uuid,
}

/// The tenant's held locks.
#[derive(Debug, Serialize, ToSchema)]
pub struct LockList {
    /// Each held lock.
    pub locks: Vec<LockView>,
}

/// A worker as it last reported itself.
#[derive(Debug, Serialize, ToSchema)]
pub struct WorkerView {
    /// Worker id.
    pub id: String,
    /// Jobs it runs at once.
    pub slots: u32,
    /// Jobs it was running at its last heartbeat.
    pub running: u32,
    /// Last heartbeat.
    pub heartbeat: Millis,
    /// First heartbeat.
    pub started_at: Millis,
    /// How long ago the last heartbeat was, in ms: a live worker beats
    /// three times per lease.
    pub heartbeat_age_ms: u64,
    /// Set by an operator.
    pub mode: WorkerMode,
}

impl WorkerView {
    /// The view of `worker` at time `now`.
    pub fn new(worker: &WorkerRecord, now: Millis) -> Self {
        WorkerView {
            id: worker.id.clone(),
            slots: worker.slots,
            running: worker.running,
            heartbeat: worker.heartbeat,
            started_at: worker.started_at,
            heartbeat_age_ms: now.saturating_sub(worker.heartbeat),
            mode: worker.mode,
        }
    }
}

/// Every worker.
#[derive(Debug, Serialize, ToSchema)]
pub struct WorkerList {
    /// Each worker.
    pub workers: Vec<WorkerView>,
}

/// A token, without its secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenView {
    /// Its id (the hash of its secret), for revoking it.
    pub id: String,
    /// A name for people.
    pub name: String,
    /// The tenant it acts for.
    pub tenant: String,
    /// What it may do.
    pub role: Role,
    /// When it was made.
    pub created_at: Millis,
    /// The secret: shown once, in the answer that made the token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

impl TokenView {
    /// The view of the token with this id.
    pub fn new(id: &str, record: &TokenRecord) -> Self {
        TokenView {
            id: id.to_string(),
            name: record.name.clone(),
            tenant: record.tenant.clone(),
            role: record.role,
            created_at: record.created_at,
            secret: None,
        }
    }
}

/// Every token.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenList {
    /// Each token, without secrets.
    pub tokens: Vec<TokenView>,
}

/// A tenant, its quotas and its waiting jobs.
#[derive(Debug, Serialize, ToSchema)]
pub struct TenantView {
    /// Tenant name.
    pub name: String,
    /// Most jobs running at once; `null`: the host's default.
    pub max_running: Option<u32>,
    /// Most jobs waiting; `null`: the host's default.
    pub max_queued: Option<u32>,
    /// Caps on the limits its jobs may ask for.
    pub max_limits: LimitOverrides,
    /// Highest priority its jobs may ask for; `null`: the bound of 1000.
    pub max_priority: Option<i32>,
    /// Most children one of its jobs may spawn; `null`: the host's default.
    pub max_children: Option<u32>,
    /// Deepest spawn of its jobs; `null`: the host's default.
    pub max_spawn_depth: Option<u32>,
    /// Jobs waiting now.
    pub waiting: u64,
    /// The `max_queued` in force.
    pub queued_quota: u32,
}

impl TenantView {
    /// The view of `record` with its figures.
    pub fn new(record: &TenantRecord, waiting: u64, queued_quota: u32) -> Self {
        TenantView {
            name: record.name.clone(),
            max_running: record.max_running,
            max_queued: record.max_queued,
            max_limits: record.max_limits,
            max_priority: record.max_priority,
            max_children: record.max_children,
            max_spawn_depth: record.max_spawn_depth,
            waiting,
            queued_quota,
        }
    }
}

/// Every tenant with quotas set.
#[derive(Debug, Serialize, ToSchema)]
pub struct TenantList {
    /// Each tenant.
    pub tenants: Vec<TenantView>,
}
