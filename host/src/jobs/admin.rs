//! What admins manage beside jobs: tenants and their quotas, tokens and
//! roles, plugin versions, workers. Plain serde records, like the jobs.

use super::{FailureKind, LimitOverrides, Millis};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What a worker is doing, as set by an operator.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WorkerMode {
    /// Claims jobs.
    #[default]
    Active,
    /// Claims nothing until resumed; running jobs go on.
    Paused,
    /// Claims nothing, finishes what it runs; for a planned stop.
    Draining,
    /// Claims nothing, finishes what it runs (within the shutdown grace,
    /// handing back the rest), then its host shuts down.
    Stopping,
}

/// A worker as it last reported itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerRecord {
    /// Worker id.
    pub id: String,
    /// Jobs it runs at once.
    pub slots: u32,
    /// Jobs it was running at the heartbeat.
    pub running: u32,
    /// Last heartbeat.
    pub heartbeat: Millis,
    /// First heartbeat.
    pub started_at: Millis,
    /// Set by an operator.
    pub mode: WorkerMode,
}

impl WorkerRecord {
    /// The record of `id` after a heartbeat at `now`, from the one `known`
    /// before (if any): the mode an operator set and the first heartbeat
    /// stay.
    pub fn beat(
        known: Option<WorkerRecord>,
        id: &str,
        slots: u32,
        running: u32,
        now: Millis,
    ) -> Self {
        let (started_at, mode) =
            known.map_or((now, WorkerMode::Active), |w| (w.started_at, w.mode));
        WorkerRecord { id: id.to_string(), slots, running, heartbeat: now, started_at, mode }
    }
}

/// A plugin as stored: who uploaded which version. The component bytes are
/// stored once per digest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginRecord {
    /// Owning tenant.
    pub tenant: String,
    /// Qualified name.
    pub name: String,
    /// `sha256:` digest of the current version.
    pub digest: String,
    /// Component size in bytes.
    pub size: u64,
    /// Upload time.
    pub uploaded_at: Millis,
    /// Who uploaded it.
    pub uploader: String,
    /// Failure kinds its jobs retry unless a job says otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_on: Option<Vec<FailureKind>>,
    /// What the current version imports, so a host shows it without
    /// loading it (empty in records from before they were kept).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub imports: Vec<String>,
    /// What it exports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exports: Vec<String>,
}

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Administers the host: every tenant's quotas and tokens, the workers,
    /// the metrics. The bootstrap token has this role.
    HostAdmin,
    /// Everything within its own tenant, its tokens included.
    Admin,
    /// Manage jobs, queues, workers and locks of the tenant.
    Operator,
    /// Read everything of the tenant.
    Viewer,
    /// Enqueue and see their own jobs.
    Submitter,
}

/// An API token, stored by the hash of its secret (never the secret).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// A name for people ("ci", "ada").
    pub name: String,
    /// The tenant it acts for.
    pub tenant: String,
    /// What it may do.
    pub role: Role,
    /// When it was made.
    pub created_at: Millis,
}

impl TenantRecord {
    /// The `max_queued` quota in force: its own, or the host's default.
    pub fn queued_quota(&self, defaults: &TenantDefaults) -> u32 {
        self.max_queued.unwrap_or(defaults.max_queued)
    }

    /// The `max_children` quota in force.
    pub fn children_quota(&self, defaults: &TenantDefaults) -> u32 {
        self.max_children.unwrap_or(defaults.max_children)
    }

    /// The `max_spawn_depth` quota in force.
    pub fn spawn_depth_quota(&self, defaults: &TenantDefaults) -> u32 {
        self.max_spawn_depth.unwrap_or(defaults.max_spawn_depth)
    }

    /// The `max_running` quota in force, if any.
    pub fn running_quota(&self, defaults: &TenantDefaults) -> Option<u32> {
        self.max_running.or(defaults.max_running)
    }
}

/// Quotas of a tenant that set none of its own, from the host's config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TenantDefaults {
    /// Jobs waiting at most: a runaway client fills its own queue, not the
    /// host's disk.
    pub max_queued: u32,
    /// Jobs running at once at most; `None` is no limit.
    pub max_running: Option<u32>,
    /// Plugins it may upload.
    pub max_plugins: usize,
    /// Children one job may spawn.
    pub max_children: u32,
    /// How deep jobs may spawn jobs: 1 lets a job have children, and
    /// those none.
    pub max_spawn_depth: u32,
}

impl Default for TenantDefaults {
    fn default() -> Self {
        Self {
            max_queued: 100_000,
            max_running: None,
            max_plugins: 100,
            max_children: 100,
            max_spawn_depth: 3,
        }
    }
}

/// A tenant and its quotas; `None` is no limit (but see `max_queued`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TenantRecord {
    /// Tenant name.
    pub name: String,
    /// Most jobs running at once.
    pub max_running: Option<u32>,
    /// Most jobs waiting (scheduled or pending); `None` is the host's
    /// default ([`TenantDefaults`]).
    pub max_queued: Option<u32>,
    /// Caps on the limits its jobs may ask for.
    pub max_limits: LimitOverrides,
    /// Highest priority its jobs may ask for (at most
    /// [`crate::jobs::enqueue::MAX_PRIORITY`]); `None` is that bound.
    #[serde(default)]
    pub max_priority: Option<i32>,
    /// Most children one of its jobs may spawn; `None` is the host's
    /// default.
    #[serde(default)]
    pub max_children: Option<u32>,
    /// Deepest spawn of its jobs; `None` is the host's default.
    #[serde(default)]
    pub max_spawn_depth: Option<u32>,
}

/// What an operator set for a queue.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct QueueSettings {
    /// A paused queue keeps its jobs but starts none.
    pub paused: bool,
    /// Most jobs of the queue running at once; `None` is no limit.
    pub concurrency: Option<u32>,
    /// A job of the queue whose worker dies this many times fails instead
    /// of going back (the lost-worker rule); `None` is the default of
    /// [`crate::jobs::rules::MAX_LEASES_LOST`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_lost_leases: Option<u32>,
}

impl QueueSettings {
    /// The lost-worker rule's limit in force for the queue.
    pub fn lost_lease_limit(&self) -> u32 {
        self.max_lost_leases.unwrap_or(crate::jobs::rules::MAX_LEASES_LOST)
    }
}
