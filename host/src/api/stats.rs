//! Figures for people and for scrapers: `GET /v1/stats` sums the caller's
//! queues and shows this host's capacity; `GET /metrics` is the whole host
//! in the Prometheus text format, for admins.

use super::ApiState;
use super::auth::{Caller, CanAdminister};
use super::error::{ApiError, ErrorBody};
use super::queues::health;
use crate::storage::QueueStats;
use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

/// What this host has and does now.
fn host(state: &ApiState) -> Value {
    let mut host = json!({
        "worker": state.dispatcher.worker(),
        "slots": state.dispatcher.slots(),
        "running": state.dispatcher.running_count(),
        "open_streams": state.streams.count(),
        "uptime_s": state.started.elapsed().as_secs(),
    });
    for (name, value) in state.storage.counters() {
        host[name] = json!(value);
    }
    host
}

/// `GET /v1/stats`: the tenant's jobs by state and its last hour (finished,
/// completed, success rate), with this host's capacity.
#[utoipa::path(get, path = "/v1/stats", tag = "system", responses((status = 200, description = "the tenant's jobs by state and last hour, this host's capacity"), (status = "4XX", description = "error", body = ErrorBody)))]
pub async fn stats(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    let queues = health(&state, Some(&caller.tenant)).await?;
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    let (mut finished, mut completed, mut stuck) = (0, 0, 0);
    for queue in &queues {
        for (state, count) in &queue.counts {
            *counts.entry(state).or_default() += count;
        }
        finished += queue.finished;
        completed += queue.completed;
        stuck += queue.stuck;
    }
    Ok(Json(json!({
        "tenant": caller.tenant,
        "queues": queues.len(),
        "jobs": counts,
        "stuck": stuck,
        "last_hour": {
            "finished": finished,
            "completed": completed,
            "success_rate": (finished > 0).then(|| completed as f64 / finished as f64),
        },
        "waiting": state.storage.waiting(&caller.tenant).await?,
        "host": host(&state),
    })))
}

/// `GET /metrics`: Prometheus text, every tenant and queue (admins).
#[utoipa::path(get, path = "/metrics", tag = "system", responses((status = 200, description = "Prometheus text", content_type = "text/plain"), (status = "4XX", description = "error", body = ErrorBody)))]
pub async fn metrics(
    State(state): State<Arc<ApiState>>,
    _: CanAdminister,
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
            "jobhost_uptime_seconds",
            "gauge",
            "Seconds since the server started.",
            state.started.elapsed().as_secs() as usize,
        ),
    ];
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
