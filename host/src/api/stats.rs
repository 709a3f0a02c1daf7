//! Figures for people and for scrapers: `GET /v1/stats` sums the caller's
//! queues and shows this host's capacity; `GET /metrics` is the whole host
//! in the Prometheus text format, for admins.

use super::ApiState;
use super::auth::{CanAdministerHost, CanView};
use super::error::{ApiError, ErrorBody};
use super::queues::health;
use crate::storage::{MINUTES, Minute, QueueStats};
use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use utoipa::ToSchema;

/// The caller's tenant's figures and this host's.
#[derive(Debug, Serialize, ToSchema)]
pub struct Stats {
    /// The caller's tenant.
    pub tenant: String,
    /// How many queues it has.
    pub queues: usize,
    /// Its jobs by state.
    pub jobs: BTreeMap<String, usize>,
    /// Running jobs whose worker is gone plus ready jobs waiting too long.
    pub stuck: usize,
    /// Its last hour.
    pub last_hour: LastHour,
    /// Its jobs waiting to run.
    pub waiting: u64,
    /// This host.
    pub host: HostStats,
}

/// Jobs that finished in the last hour.
#[derive(Debug, Serialize, ToSchema)]
pub struct LastHour {
    /// Finished.
    pub finished: usize,
    /// Of those, completed.
    pub completed: usize,
    /// completed / finished; `null` when nothing finished.
    pub success_rate: Option<f64>,
    /// Its 60 minutes, oldest first: what completed and failed in each.
    pub minutes: Vec<MinuteView>,
}

/// Jobs that finished in one minute.
#[derive(Debug, Serialize, ToSchema)]
pub struct MinuteView {
    /// Start of the minute, ms since the epoch.
    pub start: u64,
    /// Jobs that completed in it.
    pub completed: u32,
    /// Jobs that failed in it.
    pub failed: u32,
}

/// What this host has and does now.
#[derive(Debug, Serialize, ToSchema)]
pub struct HostStats {
    /// Its worker id.
    pub worker: String,
    /// Jobs it runs at once.
    pub slots: usize,
    /// Jobs running now.
    pub running: usize,
    /// Open SSE streams.
    pub open_streams: usize,
    /// Open HTTP connections.
    pub open_connections: usize,
    /// Seconds since it started.
    pub uptime_s: u64,
    /// Figures of the storage backend (commits, writes).
    pub storage: BTreeMap<String, u64>,
}

fn host(state: &ApiState) -> HostStats {
    HostStats {
        worker: state.dispatcher.worker().to_string(),
        slots: state.dispatcher.slots(),
        running: state.dispatcher.running_count(),
        open_streams: state.streams.count(),
        open_connections: state.connections.count(),
        uptime_s: state.started.elapsed().as_secs(),
        storage: state.storage.counters().into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
    }
}

/// `GET /v1/stats`: the tenant's jobs by state and its last hour (finished,
/// completed, success rate), with this host's capacity.
#[utoipa::path(get, path = "/v1/stats", operation_id = "stats", tag = "system", responses((status = 200, description = "the tenant's jobs by state and last hour, this host's capacity", body = Stats), (status = "4XX", description = "error", body = ErrorBody)))]
pub async fn stats(
    State(state): State<Arc<ApiState>>,
    CanView(caller): CanView,
) -> Result<Json<Stats>, ApiError> {
    let queues = health(&state, Some(&caller.tenant)).await?;
    let mut jobs: BTreeMap<String, usize> = BTreeMap::new();
    let (mut finished, mut completed, mut stuck) = (0, 0, 0);
    let mut minutes = [Minute::default(); MINUTES];
    for queue in &queues {
        for (sum, minute) in minutes.iter_mut().zip(&queue.minutes) {
            sum.completed += minute.completed;
            sum.failed += minute.failed;
        }
        for (state, count) in &queue.counts {
            *jobs.entry(state.to_string()).or_default() += count;
        }
        finished += queue.finished;
        completed += queue.completed;
        stuck += queue.stuck;
    }
    let success_rate = (finished > 0).then(|| completed as f64 / finished as f64);
    let this_minute = state.clock.now() / 60_000 * 60_000;
    let minutes = (0..MINUTES as u64)
        .rev()
        .zip(minutes)
        .map(|(ago, minute)| MinuteView {
            start: this_minute.saturating_sub(ago * 60_000),
            completed: minute.completed,
            failed: minute.failed,
        })
        .collect();
    Ok(Json(Stats {
        waiting: state.storage.waiting(&caller.tenant).await?,
        tenant: caller.tenant,
        queues: queues.len(),
        jobs,
        stuck,
        last_hour: LastHour { finished, completed, success_rate, minutes },
        host: host(&state),
    }))
}

/// `GET /metrics`: Prometheus text, every tenant and queue (admins).
#[utoipa::path(get, path = "/metrics", operation_id = "metrics", tag = "system", responses((status = 200, description = "Prometheus text", content_type = "text/plain"), (status = "4XX", description = "error", body = ErrorBody)))]
pub async fn metrics(
    State(state): State<Arc<ApiState>>,
    _: CanAdministerHost,
) -> Result<impl IntoResponse, ApiError> {
    let queues = health(&state, None).await?;
    let text = render(&state, &queues);
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text))
}

fn render(state: &ApiState, queues: &[QueueStats]) -> String {
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, samples: Vec<(String, String)>| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    let queue_labels = |queue: &QueueStats| {
        let (tenant, name) = queue.queue.split_once('/').unwrap_or(("", &queue.queue));
        format!("tenant=\"{}\",queue=\"{}\"", escape(tenant), escape(name))
    };
    let per_queue = |value: &dyn Fn(&QueueStats) -> String| {
        queues.iter().map(|q| (format!("{{{}}}", queue_labels(q)), value(q))).collect::<Vec<_>>()
    };
    let by_state = queues
        .iter()
        .flat_map(|q| {
            q.counts.iter().map(move |(state, count)| {
                (format!("{{{},state=\"{state}\"}}", queue_labels(q)), count.to_string())
            })
        })
        .collect();
    family("jobhost_jobs", "gauge", "Jobs stored, by tenant, queue and state.", by_state);
    family(
        "jobhost_jobs_stuck",
        "gauge",
        "Jobs whose worker is gone or that waited too long to start.",
        per_queue(&|q| q.stuck.to_string()),
    );
    family(
        "jobhost_jobs_finished_last_hour",
        "gauge",
        "Jobs that completed or failed in the last hour.",
        per_queue(&|q| q.finished.to_string()),
    );
    family(
        "jobhost_jobs_completed_last_hour",
        "gauge",
        "Jobs that completed in the last hour.",
        per_queue(&|q| q.completed.to_string()),
    );
    let host = [
        ("jobhost_worker_slots", "gauge", "Jobs this host runs at once.", state.dispatcher.slots()),
        (
            "jobhost_running_jobs",
            "gauge",
            "Jobs running on this host.",
            state.dispatcher.running_count(),
        ),
        ("jobhost_open_streams", "gauge", "Open SSE streams.", state.streams.count()),
        (
            "jobhost_plugins_known",
            "gauge",
            "Plugins this host can run: shared ones and every upload.",
            state.runtime.registry().list().len(),
        ),
        (
            "jobhost_plugins_ready",
            "gauge",
            "Uploaded plugin versions compiled and linked, ready to run now.",
            state.runtime.registry().ready_count(),
        ),
        ("jobhost_open_connections", "gauge", "Open HTTP connections.", state.connections.count()),
        (
            "jobhost_uptime_seconds",
            "gauge",
            "Seconds since the server started.",
            state.started.elapsed().as_secs() as usize,
        ),
    ];
    family(
        "jobhost_dispatch_rounds_total",
        "counter",
        "Rounds of this host's dispatch loop (a stuck loop stops counting).",
        vec![(String::new(), state.dispatcher.rounds().to_string())],
    );
    for (name, kind, help, value) in host {
        family(name, kind, help, vec![(String::new(), value.to_string())]);
    }
    for (name, value) in state.storage.counters() {
        let kind = if name.ends_with("_total") { "counter" } else { "gauge" };
        let help = "Kept by the storage backend.";
        family(&format!("jobhost_{name}"), kind, help, vec![(String::new(), value.to_string())]);
    }
    out
}

/// A label value with `\`, `"` and newlines escaped.
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}
