//! The views of what operators and admins manage: plugins, queues and
//! locks, workers, tokens, tenants.

use crate::jobs::enqueue::unscoped;
use crate::jobs::{
    LimitOverrides, Millis, QueueSettings, Role, TenantRecord, TokenRecord, WorkerMode,
    WorkerRecord,
};
use crate::runtime::PluginInfo;
use crate::storage::QueueStats;
use serde::Serialize;
use std::collections::BTreeMap;
use utoipa::ToSchema;
use uuid::Uuid;

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
    pub fn new(plugin: &PluginInfo, uploaded: Option<(Millis, &str)>) -> Self {
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
