//! Queues of the caller's tenant: health (counts by state, stuck jobs,
//! throughput, success rate, average duration, alerts), pause, resume and
//! concurrency.

use super::ApiState;
use super::auth::{CanOperate, CanView};
use super::body::JsonBody;
use super::error::{ApiError, ErrorBody};
use super::views::{LockList, LockView, QueueList, QueueSettingsView, QueueView};
use crate::jobs::QueueSettings;
use crate::jobs::enqueue::check_label;
use crate::jobs::enqueue::{scoped, unscoped};
use crate::storage::QueueStats;
use axum::Json;
use axum::extract::{Path, State};
use serde::Deserialize;
use std::sync::Arc;
use utoipa::ToSchema;

/// The window health figures are computed over.
const WINDOW_MS: u64 = 3_600_000;
/// A ready job waiting longer than this counts as stuck.
const STUCK_AFTER_MS: u64 = 600_000;

/// Health of the queues of `tenant` (of every tenant for `None`) over the
/// last hour: the one window the queue list, stats and metrics share.
pub(super) async fn health(
    state: &ApiState,
    tenant: Option<&str>,
) -> Result<Vec<QueueStats>, ApiError> {
    Ok(state.storage.queue_stats(tenant, state.clock.now(), WINDOW_MS, STUCK_AFTER_MS).await?)
}

/// `GET /v1/queues`: health of every queue of the tenant.
#[utoipa::path(get, path = "/v1/queues", operation_id = "list_queues", tag = "queues", responses((status = 200, description = "health of every queue of the tenant", body = QueueList), (status = "4XX", description = "error", body = ErrorBody)))]
pub async fn list(
    State(state): State<Arc<ApiState>>,
    CanView(caller): CanView,
) -> Result<Json<QueueList>, ApiError> {
    let stats = health(&state, Some(&caller.tenant)).await?;
    Ok(Json(QueueList { queues: stats.iter().map(QueueView::from).collect() }))
}

/// `GET /v1/queues/{name}`: health of one queue of the tenant (a queue
/// without jobs answers with zeros and its settings).
#[utoipa::path(get, path = "/v1/queues/{name}", operation_id = "get_queue", tag = "queues", params(("name" = String, Path, description = "queue")), responses((status = 200, description = "health of the queue", body = QueueView), (status = "4XX", description = "error", body = ErrorBody)))]
pub async fn details(
    State(state): State<Arc<ApiState>>,
    CanView(caller): CanView,
    Path(name): Path<String>,
) -> Result<Json<QueueView>, ApiError> {
    check_label("queue", &name, 64)?;
    let key = scoped(&caller.tenant, &name);
    let stats = health(&state, Some(&caller.tenant)).await?;
    match stats.iter().find(|queue| queue.queue == key) {
        Some(queue) => Ok(Json(QueueView::from(queue))),
        None => Ok(Json(QueueView::empty(&name, state.storage.queue(&key).await?))),
    }
}

/// What `PATCH /v1/queues/{name}` may change.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueueChange {
    paused: Option<bool>,
    /// `null` removes the limit.
    #[serde(default, with = "double_option")]
    #[schema(value_type = Option<u32>)]
    concurrency: Option<Option<u32>>,
    /// Lost workers after which a job of the queue fails (1 to 100);
    /// `null` restores the default of 3.
    #[serde(default, with = "double_option")]
    #[schema(value_type = Option<u32>)]
    max_lost_leases: Option<Option<u32>>,
}

mod double_option {
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<u32>>, D::Error> {
        Option::<u32>::deserialize(d).map(Some)
    }
}

/// `PATCH /v1/queues/{name}` with `{"paused": bool, "concurrency": n|null,
/// "max_lost_leases": n|null}`.
#[utoipa::path(patch, path = "/v1/queues/{name}", operation_id = "change_queue", tag = "queues", params(("name" = String, Path, description = "queue")), request_body = QueueChange, responses((status = 200, description = "the queue settings", body = QueueSettingsView), (status = "4XX", description = "error", body = ErrorBody)))]
pub async fn change(
    State(state): State<Arc<ApiState>>,
    CanOperate(caller): CanOperate,
    Path(name): Path<String>,
    JsonBody(change): JsonBody<QueueChange>,
) -> Result<Json<QueueSettingsView>, ApiError> {
    change_queue(State(state), CanOperate(caller), Path(name), change).await
}

async fn change_queue(
    State(state): State<Arc<ApiState>>,
    CanOperate(caller): CanOperate,
    Path(name): Path<String>,
    change: QueueChange,
) -> Result<Json<QueueSettingsView>, ApiError> {
    check_label("queue", &name, 64)?;
    let key = scoped(&caller.tenant, &name);
    let mut settings = state.storage.queue(&key).await?;
    if let Some(paused) = change.paused {
        settings.paused = paused;
    }
    if let Some(concurrency) = change.concurrency {
        settings.concurrency = concurrency;
    }
    if let Some(limit) = change.max_lost_leases {
        if limit.is_some_and(|limit| !(1..=100).contains(&limit)) {
            return Err(ApiError::bad_request("max_lost_leases must be between 1 and 100"));
        }
        settings.max_lost_leases = limit;
    }
    state.storage.set_queue(&key, settings.clone()).await?;
    state.dispatcher.wake();
    let max_lost_leases = settings.lost_lease_limit();
    let QueueSettings { paused, concurrency, .. } = settings;
    Ok(Json(QueueSettingsView { queue: name, paused, concurrency, max_lost_leases }))
}

/// `POST /v1/queues/{name}/pause`.
#[utoipa::path(post, path = "/v1/queues/{name}/pause", operation_id = "pause_queue", tag = "queues", params(("name" = String, Path, description = "queue")), responses((status = 200, description = "paused", body = QueueSettingsView), (status = "4XX", description = "error", body = ErrorBody)))]
pub async fn pause(
    state: State<Arc<ApiState>>,
    caller: CanOperate,
    name: Path<String>,
) -> Result<Json<QueueSettingsView>, ApiError> {
    let change = QueueChange { paused: Some(true), concurrency: None, max_lost_leases: None };
    change_queue(state, caller, name, change).await
}

/// `POST /v1/queues/{name}/resume`.
#[utoipa::path(post, path = "/v1/queues/{name}/resume", operation_id = "resume_queue", tag = "queues", params(("name" = String, Path, description = "queue")), responses((status = 200, description = "resumed", body = QueueSettingsView), (status = "4XX", description = "error", body = ErrorBody)))]
pub async fn resume(
    state: State<Arc<ApiState>>,
    caller: CanOperate,
    name: Path<String>,
) -> Result<Json<QueueSettingsView>, ApiError> {
    let change = QueueChange { paused: Some(false), concurrency: None, max_lost_leases: None };
    change_queue(state, caller, name, change).await
}

/// `GET /v1/locks`: the tenant's held locks and the job holding each.
#[utoipa::path(get, path = "/v1/locks", operation_id = "list_locks", tag = "queues", responses((status = 200, description = "held locks and their jobs", body = LockList), (status = "4XX", description = "error", body = ErrorBody)))]
pub async fn locks(
    State(state): State<Arc<ApiState>>,
    CanView(caller): CanView,
) -> Result<Json<LockList>, ApiError> {
    let prefix = scoped(&caller.tenant, "");
    let locks = state
        .storage
        .locks()
        .await?
        .into_iter()
        .filter(|(name, _)| name.starts_with(&prefix))
        .map(|(name, job)| LockView { name: unscoped(&name).to_string(), job })
        .collect();
    Ok(Json(LockList { locks }))
}

/// `DELETE /v1/locks/{name}`: releases a lock by hand.
#[utoipa::path(delete, path = "/v1/locks/{name}", operation_id = "clear_lock", tag = "queues", params(("name" = String, Path, description = "lock")), responses((status = 204, description = "released"), (status = "4XX", description = "error", body = ErrorBody)))]
pub async fn clear_lock(
    State(state): State<Arc<ApiState>>,
    CanOperate(caller): CanOperate,
    Path(name): Path<String>,
) -> Result<axum::http::StatusCode, ApiError> {
    check_label("lock", &name, 128)?;
    state.storage.clear_lock(&scoped(&caller.tenant, &name)).await?;
    state.dispatcher.wake();
    Ok(axum::http::StatusCode::NO_CONTENT)
}
