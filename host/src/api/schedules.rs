//! Recurring schedules: create, list, show (with the next run times),
//! pause, resume, delete. A schedule belongs to its tenant and, for a
//! submitter, to its owner, as jobs do; its runs' jobs are enqueued as its
//! owner and link back to it (`schedule`, `GET /v1/jobs?schedule=`).

use super::ApiState;
use super::auth::{self, Caller, CanSubmit};
use super::body::JsonBody;
use super::error::{ApiError, ErrorBody};
use super::jobs::admit;
use super::views::{ScheduleList, ScheduleView};
use crate::jobs::schedule::{self, ScheduleRecord, ScheduleRequest, When};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use std::sync::Arc;
use uuid::Uuid;

/// `POST /v1/schedules`: 201 with the schedule and its next run times. Its
/// job is admitted now as a run would be, so a schedule that could never
/// enqueue (an unknown plugin, args over the limit) is refused at once.
#[utoipa::path(post, path = "/v1/schedules", operation_id = "create_schedule", tag = "schedules", request_body = ScheduleRequest, responses((status = 201, description = "the schedule", body = ScheduleView), (status = "4XX", description = "error", body = ErrorBody)))]
pub async fn create(
    State(state): State<Arc<ApiState>>,
    CanSubmit(caller): CanSubmit,
    JsonBody(request): JsonBody<ScheduleRequest>,
) -> Result<(StatusCode, Json<ScheduleView>), ApiError> {
    let now = state.clock.now();
    let record = schedule::admit(request, Uuid::now_v7(), &caller.tenant, &caller.name, now)?;
    let tenant = state.storage.tenant(&caller.tenant).await?;
    admit(&state, &caller, &tenant, record.job.clone()).await.map_err(|e| e.prefixed("job: "))?;
    state.storage.create_schedule(record.clone()).await?;
    Ok((StatusCode::CREATED, Json(ScheduleView::from(&record))))
}

/// `GET /v1/schedules`: the caller's tenant's schedules (a submitter's
/// own), oldest first.
#[utoipa::path(get, path = "/v1/schedules", operation_id = "list_schedules", tag = "schedules", responses((status = 200, description = "schedules", body = ScheduleList), (status = "4XX", description = "error", body = ErrorBody)))]
pub async fn list(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
) -> Result<Json<ScheduleList>, ApiError> {
    let all = state.storage.schedules(Some(&caller.tenant)).await?;
    let schedules = all
        .iter()
        .filter(|s| caller.may_see_owned(&s.tenant, &s.owner))
        .map(ScheduleView::from)
        .collect();
    Ok(Json(ScheduleList { schedules }))
}

/// `GET /v1/schedules/{id}`.
#[utoipa::path(get, path = "/v1/schedules/{id}", operation_id = "get_schedule", tag = "schedules", params(("id" = String, Path, description = "schedule id")), responses((status = 200, description = "the schedule with its next run times", body = ScheduleView), (status = "4XX", description = "error", body = ErrorBody)))]
pub async fn details(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<ScheduleView>, ApiError> {
    Ok(Json(ScheduleView::from(&visible(&state, &caller, &id).await?)))
}

/// `POST /v1/schedules/{id}/pause`: fires nothing until resumed.
#[utoipa::path(post, path = "/v1/schedules/{id}/pause", operation_id = "pause_schedule", tag = "schedules", params(("id" = String, Path, description = "schedule id")), responses((status = 200, description = "the paused schedule", body = ScheduleView), (status = "4XX", description = "error", body = ErrorBody)))]
pub async fn pause(
    State(state): State<Arc<ApiState>>,
    CanSubmit(caller): CanSubmit,
    Path(id): Path<String>,
) -> Result<Json<ScheduleView>, ApiError> {
    let record = visible(&state, &caller, &id).await?;
    let paused = state.storage.set_schedule_paused(record.id, true, None).await?;
    Ok(Json(ScheduleView::from(&paused)))
}

/// `POST /v1/schedules/{id}/resume`: fires again from its next time after
/// now; the runs that fell while it was paused are not fired.
#[utoipa::path(post, path = "/v1/schedules/{id}/resume", operation_id = "resume_schedule", tag = "schedules", params(("id" = String, Path, description = "schedule id")), responses((status = 200, description = "the resumed schedule", body = ScheduleView), (status = "4XX", description = "error", body = ErrorBody)))]
pub async fn resume(
    State(state): State<Arc<ApiState>>,
    CanSubmit(caller): CanSubmit,
    Path(id): Path<String>,
) -> Result<Json<ScheduleView>, ApiError> {
    let record = visible(&state, &caller, &id).await?;
    let when = When::parse(&record.cron, &record.timezone)?;
    let next = when.next_after(state.clock.now());
    let resumed = state.storage.set_schedule_paused(record.id, false, next).await?;
    Ok(Json(ScheduleView::from(&resumed)))
}

/// `DELETE /v1/schedules/{id}`: the jobs it enqueued stay.
#[utoipa::path(delete, path = "/v1/schedules/{id}", operation_id = "delete_schedule", tag = "schedules", params(("id" = String, Path, description = "schedule id")), responses((status = 204, description = "deleted"), (status = "4XX", description = "error", body = ErrorBody)))]
pub async fn remove(
    State(state): State<Arc<ApiState>>,
    CanSubmit(caller): CanSubmit,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let record = visible(&state, &caller, &id).await?;
    state.storage.remove_schedule(record.id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The schedule `id` if the caller may see it; any other is a 404.
async fn visible(state: &ApiState, caller: &Caller, id: &str) -> Result<ScheduleRecord, ApiError> {
    let owner = |s: &ScheduleRecord| (s.tenant.clone(), s.owner.clone());
    auth::visible(caller, "schedule", id, |id| state.storage.schedule(id), owner).await
}
