//! Workers (shared by every tenant, so changing them is for host admins):
//! list and ping (slots, running jobs, heartbeat and its age); pause (jobs
//! are still taken and wait), resume, drain, stop (its host finishes what it
//! runs and shuts down), one worker or every worker at once.

use super::ApiState;
use super::auth::{CanAdministerHost, CanView};
use super::body::JsonBody;
use super::error::{ApiError, ErrorBody};
use super::views::{WorkerList, WorkerView};
use crate::jobs::WorkerMode;
use axum::Json;
use axum::extract::{Path, State};
use serde::Deserialize;
use std::sync::Arc;
use utoipa::ToSchema;

/// `GET /v1/workers`.
#[utoipa::path(get, path = "/v1/workers", operation_id = "list_workers", tag = "workers", responses((status = 200, description = "workers with slots, running jobs and heartbeat", body = WorkerList), (status = "4XX", description = "error", body = ErrorBody)))]
pub async fn list(
    State(state): State<Arc<ApiState>>,
    _: CanView,
) -> Result<Json<WorkerList>, ApiError> {
    let (workers, now) = (state.storage.workers().await?, state.clock.now());
    Ok(Json(WorkerList { workers: workers.iter().map(|w| WorkerView::new(w, now)).collect() }))
}

/// `GET /v1/workers/{id}`: ping one worker: its heartbeat and how old it
/// is, slots, running jobs, mode.
#[utoipa::path(get, path = "/v1/workers/{id}", operation_id = "ping_worker", tag = "workers", params(("id" = String, Path, description = "worker id")), responses((status = 200, description = "the worker as it last reported", body = WorkerView), (status = "4XX", description = "error", body = ErrorBody)))]
pub async fn ping(
    State(state): State<Arc<ApiState>>,
    _: CanView,
    Path(id): Path<String>,
) -> Result<Json<WorkerView>, ApiError> {
    let workers = state.storage.workers().await?;
    let worker = workers.iter().find(|w| w.id == id);
    let worker = worker.ok_or_else(|| ApiError::not_found(format!("worker {id:?}")))?;
    Ok(Json(WorkerView::new(worker, state.clock.now())))
}

/// The mode an action asks for.
fn mode(action: &str) -> Result<WorkerMode, ApiError> {
    match action {
        "pause" => Ok(WorkerMode::Paused),
        "resume" => Ok(WorkerMode::Active),
        "drain" => Ok(WorkerMode::Draining),
        "stop" => Ok(WorkerMode::Stopping),
        other => Err(ApiError::not_found(format!("worker action {other:?}"))),
    }
}

/// Sets `mode` on worker `id`; this host's worker learns it at once.
async fn set(state: &ApiState, id: &str, mode: WorkerMode) -> Result<WorkerView, ApiError> {
    let worker = state.storage.set_worker_mode(id, mode).await?;
    if id == state.dispatcher.worker() {
        state.dispatcher.heartbeat().await;
    }
    Ok(WorkerView::new(&worker, state.clock.now()))
}

/// `POST /v1/workers/{id}/{pause|resume|drain|stop}`.
#[utoipa::path(post, path = "/v1/workers/{id}/{action}", operation_id = "set_worker_mode", tag = "workers", params(("id" = String, Path, description = "worker id"), ("action" = String, Path, description = "pause, resume, drain or stop")), responses((status = 200, description = "the worker", body = WorkerView), (status = "4XX", description = "error", body = ErrorBody)))]
pub async fn set_mode(
    State(state): State<Arc<ApiState>>,
    _: CanAdministerHost,
    Path((id, action)): Path<(String, String)>,
) -> Result<Json<WorkerView>, ApiError> {
    Ok(Json(set(&state, &id, mode(&action)?).await?))
}

/// A command to every worker at once.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Command {
    /// pause, resume, drain or stop.
    action: String,
}

/// `POST /v1/workers` with `{"action": "pause"}`: the same mode for every
/// worker that ever reported.
#[utoipa::path(post, path = "/v1/workers", operation_id = "command_workers", tag = "workers", request_body = Command, responses((status = 200, description = "every worker, changed", body = WorkerList), (status = "4XX", description = "error", body = ErrorBody)))]
pub async fn command(
    State(state): State<Arc<ApiState>>,
    _: CanAdministerHost,
    JsonBody(command): JsonBody<Command>,
) -> Result<Json<WorkerList>, ApiError> {
    let mode = mode(&command.action)?;
    let mut workers = Vec::new();
    for worker in state.storage.workers().await? {
        workers.push(set(&state, &worker.id, mode).await?);
    }
    Ok(Json(WorkerList { workers }))
}
