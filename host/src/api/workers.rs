//! Workers of the host (shared by every tenant, so changing them is for
//! admins): list with slots, running jobs and heartbeat; pause, resume, drain.

use super::ApiState;
use super::auth::{CanAdministerHost, CanView};
use super::error::{ApiError, ErrorBody};
use super::views::{WorkerList, WorkerView};
use crate::jobs::WorkerMode;
use axum::Json;
use axum::extract::{Path, State};
use std::sync::Arc;

/// `GET /v1/workers`.
#[utoipa::path(get, path = "/v1/workers", operation_id = "list_workers", tag = "workers", responses((status = 200, description = "workers with slots, running jobs and heartbeat", body = WorkerList), (status = "4XX", description = "error", body = ErrorBody)))]
pub async fn list(
    State(state): State<Arc<ApiState>>,
    _: CanView,
) -> Result<Json<WorkerList>, ApiError> {
    let workers = state.storage.workers().await?;
    Ok(Json(WorkerList { workers: workers.iter().map(WorkerView::from).collect() }))
}

/// `POST /v1/workers/{id}/{pause|resume|drain}`.
#[utoipa::path(post, path = "/v1/workers/{id}/{action}", operation_id = "set_worker_mode", tag = "workers", params(("id" = String, Path, description = "worker id"), ("action" = String, Path, description = "pause, resume or drain")), responses((status = 200, description = "the worker", body = WorkerView), (status = "4XX", description = "error", body = ErrorBody)))]
pub async fn set_mode(
    State(state): State<Arc<ApiState>>,
    _: CanAdministerHost,
    Path((id, action)): Path<(String, String)>,
) -> Result<Json<WorkerView>, ApiError> {
    let mode = match action.as_str() {
        "pause" => WorkerMode::Paused,
        "resume" => WorkerMode::Active,
        "drain" => WorkerMode::Draining,
        other => return Err(ApiError::not_found(format!("worker action {other:?}"))),
    };
    let worker = state.storage.set_worker_mode(&id, mode).await?;
    if id == state.dispatcher.worker() {
        state.dispatcher.heartbeat().await;
    }
    Ok(Json(WorkerView::from(&worker)))
}
