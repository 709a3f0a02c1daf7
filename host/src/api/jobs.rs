//! Jobs: enqueue (optionally following it as SSE), list, details, logs,
//! cancel, retry, clone, remove. Every job belongs to the caller's tenant;
//! another tenant's job answers exactly like a missing one, and a submitter
//! sees only the jobs it submitted.

use super::ApiState;
use super::auth::{Caller, CanSubmit, visible_job};
use super::body::{JsonBody, QueryParams};
use super::error::{ApiError, ErrorBody};
use super::plugins::{default_per_page, offset};
use super::sse;
use super::views::{BroadcastView, JobDetails, JobPage, JobView, LogPage};
use crate::admission::Admitter;
use crate::jobs::changes::{self, Relabel, Resubmit, ResubmitRequest};
use crate::jobs::enqueue::{self, JobRequest, scoped};
use crate::jobs::{JobRecord, JobState, NewJob, TenantRecord};
use crate::storage::{JobFilter, Start};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use utoipa::IntoParams;
use uuid::Uuid;

/// A 503 when this host takes no new jobs (shutting down, paused, draining).
pub(super) fn accepting(state: &ApiState) -> Result<(), ApiError> {
    match state.dispatcher.refusal() {
        Some(reason) => Err(ApiError::unavailable(format!("{reason}: it takes no new jobs"))),
        None => Ok(()),
    }
}

/// Admits `request` for the caller by the enqueue rules (see
/// [`crate::admission`]).
pub(super) async fn admit(
    state: &ApiState,
    caller: &Caller,
    tenant: &TenantRecord,
    request: JobRequest,
) -> Result<NewJob, ApiError> {
    let admitter = Admitter {
        storage: state.storage.as_ref(),
        runtime: &state.runtime,
        egress: &state.config.egress,
        now: state.clock.now(),
    };
    Ok(admitter.admit(tenant, &caller.name, request).await?)
}

/// Query of `POST /v1/jobs`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct EnqueueQuery {
    /// Stream the job as SSE until it finishes.
    #[serde(default)]
    follow: bool,
}

/// `POST /v1/jobs`: 202 with the job (200 for a repeated idempotency key),
/// or with `?follow=true` / `Accept: text/event-stream` the job as SSE.
#[utoipa::path(post, path = "/v1/jobs", operation_id = "enqueue_job", tag = "jobs", params(EnqueueQuery), request_body = JobRequest, responses((status = 202, description = "enqueued", body = JobView), (status = 200, description = "the job of a repeated idempotency key", body = JobView), (status = "2XX", description = "with follow or Accept: text/event-stream, the job as SSE", content_type = "text/event-stream"), (status = "4XX", description = "error", body = ErrorBody)))]
pub async fn enqueue(
    State(state): State<Arc<ApiState>>,
    CanSubmit(caller): CanSubmit,
    headers: HeaderMap,
    QueryParams(query): QueryParams<EnqueueQuery>,
    JsonBody(request): JsonBody<JobRequest>,
) -> Result<Response, ApiError> {
    accepting(&state)?;
    let tenant = state.storage.tenant(&caller.tenant).await?;
    let new = admit(&state, &caller, &tenant, request).await?;
    let fingerprint = new.fingerprint.clone();
    let enqueued = state.storage.enqueue(new, state.clock.now()).await?;
    if !enqueued.created {
        same_request(&caller, &enqueued.job, &fingerprint)?;
    }
    state.dispatcher.wake();
    let wants_stream = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("text/event-stream"));
    let id = enqueued.job.id;
    let mut response = if query.follow || wants_stream {
        sse::stream(state, &caller, id, sse::Cursor::default(), true)?.into_response()
    } else {
        let status = if enqueued.created { StatusCode::ACCEPTED } else { StatusCode::OK };
        (status, Json(JobView::from(&enqueued.job))).into_response()
    };
    // A follower learns the job at once, before its first event.
    let headers = response.headers_mut();
    headers.insert("job-id", HeaderValue::from_str(&id.to_string()).expect("a uuid is a header"));
    let location = format!("/v1/jobs/{id}");
    headers.insert(header::LOCATION, HeaderValue::from_str(&location).expect("a path is a header"));
    Ok(response)
}

/// An idempotency key that matched an existing job answers with that job
/// only for the same request from a caller who may see it; anything else
/// is a 409, so no caller receives a job it may not see or believes new
/// work was queued when it was not.
pub(super) fn same_request(
    caller: &Caller,
    existing: &JobRecord,
    fingerprint: &BTreeMap<String, String>,
) -> Result<(), ApiError> {
    let key = existing.idempotency_key.as_deref().unwrap_or_default();
    if !caller.may_see(existing) {
        return Err(ApiError::conflict(format!(
            "idempotency key {key:?} is already used by another job of this tenant; choose another key"
        )));
    }
    match enqueue::idempotency_conflict(existing, fingerprint) {
        None => Ok(()),
        Some(differing) => Err(ApiError::conflict(format!(
            "idempotency key {key:?} was used for job {} with a different {differing}; use a new key for new work",
            existing.id
        ))),
    }
}

/// `POST /v1/jobs/broadcast`: one copy of the job for every live worker
/// (one whose heartbeat is within three leases), each pinned to its worker
/// and carrying the broadcast's id.
#[utoipa::path(post, path = "/v1/jobs/broadcast", operation_id = "broadcast_job", tag = "jobs", request_body = JobRequest, responses((status = 202, description = "a copy per live worker", body = BroadcastView), (status = "4XX", description = "error", body = ErrorBody)))]
pub async fn broadcast(
    State(state): State<Arc<ApiState>>,
    CanSubmit(caller): CanSubmit,
    JsonBody(request): JsonBody<JobRequest>,
) -> Result<(StatusCode, Json<BroadcastView>), ApiError> {
    accepting(&state)?;
    if request.idempotency_key.is_some() {
        return Err(ApiError::bad_request("a broadcast takes no idempotency_key"));
    }
    let tenant = state.storage.tenant(&caller.tenant).await?;
    let new = admit(&state, &caller, &tenant, request).await?;
    let now = state.clock.now();
    let live_after = now.saturating_sub(3 * state.dispatcher.lease().as_millis() as u64);
    let copies = state.storage.enqueue_broadcast(new, live_after, now).await?;
    state.dispatcher.wake();
    let broadcast = copies[0].broadcast.expect("broadcast copies carry the broadcast");
    let jobs = copies.iter().map(JobView::from).collect();
    Ok((StatusCode::ACCEPTED, Json(BroadcastView { broadcast, jobs })))
}

/// Query of `GET /v1/jobs`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    state: Option<JobState>,
    queue: Option<String>,
    job: Option<String>,
    /// Jobs of this submitter (a token name); viewers and above only.
    owner: Option<String>,
    /// Created at or after: ms since the epoch, or RFC 3339.
    #[serde(default, deserialize_with = "crate::jobs::when::optional")]
    #[param(value_type = Option<String>)]
    since: Option<u64>,
    search: Option<String>,
    /// Only clones of this job.
    cloned_from: Option<Uuid>,
    /// Only jobs this schedule enqueued.
    schedule: Option<Uuid>,
    /// Page number, from 1; or give `cursor` instead.
    page: Option<usize>,
    #[serde(default = "default_per_page")]
    per_page: usize,
    /// Where to continue: the `next_cursor` of the page before.
    cursor: Option<String>,
}

/// `GET /v1/jobs?state=&queue=&job=&owner=&since=&search=&cloned_from=&schedule=&page=&per_page=&cursor=`,
/// newest first, with the total that matched.
#[utoipa::path(get, path = "/v1/jobs", operation_id = "list_jobs", tag = "jobs", params(ListQuery), responses((status = 200, description = "a page of jobs, newest first, with the total", body = JobPage), (status = "4XX", description = "error", body = ErrorBody)))]
pub async fn list(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    QueryParams(query): QueryParams<ListQuery>,
) -> Result<Json<JobPage>, ApiError> {
    let start = match (&query.cursor, query.page) {
        (Some(_), Some(_)) => return Err(ApiError::bad_request("give page or cursor, not both")),
        (Some(cursor), None) => {
            offset(1, query.per_page)?;
            Start::After(cursor.parse().map_err(ApiError::bad_request)?)
        }
        (None, page) => Start::Offset(offset(page.unwrap_or(1), query.per_page)?),
    };
    if query.owner.is_some() && !caller.sees_all_jobs() {
        return Err(ApiError::forbidden("a submitter lists its own jobs only; drop owner"));
    }
    let filter = JobFilter {
        tenant: Some(caller.tenant.clone()),
        owner: if caller.sees_all_jobs() { query.owner } else { Some(caller.name.clone()) },
        state: query.state,
        queue: query.queue.map(|queue| scoped(&caller.tenant, &queue)),
        job: query.job,
        since: query.since,
        search: query.search,
        cloned_from: query.cloned_from,
        schedule: query.schedule,
    };
    let page = state.storage.list(&filter, start, query.per_page).await?;
    Ok(Json(JobPage {
        jobs: page.jobs.iter().map(JobView::from).collect(),
        total: page.total,
        total_exact: page.total_exact,
        page: query.cursor.is_none().then(|| query.page.unwrap_or(1)),
        per_page: query.per_page,
        next_cursor: page.next.map(|cursor| cursor.to_string()),
    }))
}

/// `GET /v1/jobs/{id}`: the job with its journal and queue position.
#[utoipa::path(get, path = "/v1/jobs/{id}", operation_id = "get_job", tag = "jobs", params(("id" = String, Path, description = "job id")), responses((status = 200, description = "the job with events and queue_position", body = JobDetails), (status = "4XX", description = "error", body = ErrorBody)))]
pub async fn details(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<JobDetails>, ApiError> {
    let job = visible_job(&state, &caller, &id).await?;
    let events = state.storage.events(job.id, 0).await?;
    let queue_position = state.storage.queue_position(job.id).await?;
    Ok(Json(JobDetails { job: JobView::from(&job), events, queue_position }))
}

/// Query of the log page.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct LogQuery {
    #[serde(default)]
    after: u64,
    #[serde(default = "default_log_page")]
    limit: usize,
}

fn default_log_page() -> usize {
    500
}

/// `GET /v1/jobs/{id}/logs?after=&limit=`: lines after line `after`.
#[utoipa::path(get, path = "/v1/jobs/{id}/logs", operation_id = "job_logs", tag = "jobs", params(("id" = String, Path, description = "job id"), LogQuery), responses((status = 200, description = "log lines after `after`, and next_after", body = LogPage), (status = "4XX", description = "error", body = ErrorBody)))]
pub async fn logs(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    Path(id): Path<String>,
    QueryParams(query): QueryParams<LogQuery>,
) -> Result<Json<LogPage>, ApiError> {
    if !(1..=10_000).contains(&query.limit) {
        return Err(ApiError::bad_request("limit must be between 1 and 10000"));
    }
    let job = visible_job(&state, &caller, &id).await?;
    let lines = state.storage.logs(job.id, query.after, query.limit).await?;
    let next_after = lines.last().map_or(query.after, |l| l.seq);
    Ok(Json(LogPage { logs: lines, next_after }))
}

/// `POST /v1/jobs/{id}/cancel`.
#[utoipa::path(post, path = "/v1/jobs/{id}/cancel", operation_id = "cancel_job", tag = "jobs", params(("id" = String, Path, description = "job id")), responses((status = 200, description = "cancelled, or asked to stop", body = JobView), (status = "4XX", description = "error", body = ErrorBody)))]
pub async fn cancel(
    State(state): State<Arc<ApiState>>,
    CanSubmit(caller): CanSubmit,
    Path(id): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    let job = visible_job(&state, &caller, &id).await?;
    Ok(Json(JobView::from(&state.dispatcher.cancel(job.id).await?)))
}

/// `POST /v1/jobs/{id}/retry`: a new job, linked both ways to this one,
/// with what the body changes (args, `delay_ms` or `run_at`, queue,
/// priority).
#[utoipa::path(post, path = "/v1/jobs/{id}/retry", operation_id = "retry_job", tag = "jobs", params(("id" = String, Path, description = "job id")), request_body = ResubmitRequest, responses((status = 202, description = "a new job linked to this one", body = JobView), (status = "4XX", description = "error", body = ErrorBody)))]
pub async fn retry(
    State(state): State<Arc<ApiState>>,
    CanSubmit(caller): CanSubmit,
    Path(id): Path<String>,
    JsonBody(request): JsonBody<ResubmitRequest>,
) -> Result<(StatusCode, Json<JobView>), ApiError> {
    copy(&state, &caller, &id, request, CopyKind::Retry).await
}

/// The two ways to enqueue a job again: a retry is linked both ways to the
/// job it retries and only for a finished job not yet retried; a clone is a
/// plain copy.
enum CopyKind {
    Retry,
    Clone,
}

/// A new job from the visible job `id`, changed as `request` says.
async fn copy(
    state: &ApiState,
    caller: &Caller,
    id: &str,
    request: ResubmitRequest,
    kind: CopyKind,
) -> Result<(StatusCode, Json<JobView>), ApiError> {
    let job = visible_job(state, caller, id).await?;
    accepting(state)?;
    let changes = resubmit(state, &job, request).await?;
    let now = state.clock.now();
    let new = match kind {
        CopyKind::Retry => state.storage.retry(job.id, changes, now).await?,
        CopyKind::Clone => state.storage.clone_job(job.id, changes, now).await?,
    };
    state.dispatcher.wake();
    Ok((StatusCode::ACCEPTED, Json(JobView::from(&new))))
}

/// What a copy of `job` changes: what the client asked (checked like an
/// enqueue), its limits lowered to the tenant's caps of today, and its args
/// checked against the size limit.
async fn resubmit(
    state: &ApiState,
    job: &JobRecord,
    request: ResubmitRequest,
) -> Result<Resubmit, ApiError> {
    let tenant = state.storage.tenant(&job.tenant).await?;
    let mut changes = changes::resubmission(request, &tenant, state.clock.now())?;
    let limits = job
        .limits
        .lowered_to(&tenant.max_limits)
        .capped(&tenant.max_limits, state.runtime.defaults());
    let payload_limit = state.runtime.limits(&limits).payload_bytes;
    let size = changes.args.as_ref().map_or(job.args.len(), String::len);
    if size as u64 > payload_limit {
        return Err(ApiError::too_large(format!(
            "args of {size} bytes are over the {payload_limit}-byte limit"
        )));
    }
    changes.limits = Some(limits);
    Ok(changes)
}

/// `POST /v1/jobs/{id}/clone`: a copy, with what the body changes (args,
/// `delay_ms` or `run_at`, queue, priority).
#[utoipa::path(post, path = "/v1/jobs/{id}/clone", operation_id = "clone_job", tag = "jobs", params(("id" = String, Path, description = "job id")), request_body = ResubmitRequest, responses((status = 202, description = "a copy, optionally with new args", body = JobView), (status = "4XX", description = "error", body = ErrorBody)))]
pub async fn clone(
    State(state): State<Arc<ApiState>>,
    CanSubmit(caller): CanSubmit,
    Path(id): Path<String>,
    JsonBody(request): JsonBody<ResubmitRequest>,
) -> Result<(StatusCode, Json<JobView>), ApiError> {
    copy(&state, &caller, &id, request, CopyKind::Clone).await
}

/// `PATCH /v1/jobs/{id}`: changes the job's name, description, tags or
/// client metadata (merged; a `null` value removes a key), in any state.
#[utoipa::path(patch, path = "/v1/jobs/{id}", operation_id = "relabel_job", tag = "jobs", params(("id" = String, Path, description = "job id")), request_body = Relabel, responses((status = 200, description = "the job with its new labels", body = JobView), (status = "4XX", description = "error", body = ErrorBody)))]
pub async fn relabel(
    State(state): State<Arc<ApiState>>,
    CanSubmit(caller): CanSubmit,
    Path(id): Path<String>,
    JsonBody(change): JsonBody<Relabel>,
) -> Result<Json<JobView>, ApiError> {
    let job = visible_job(&state, &caller, &id).await?;
    Ok(Json(JobView::from(&state.storage.relabel(job.id, change).await?)))
}

/// `DELETE /v1/jobs/{id}`: a finished job, with its logs and journal.
#[utoipa::path(delete, path = "/v1/jobs/{id}", operation_id = "remove_job", tag = "jobs", params(("id" = String, Path, description = "job id")), responses((status = 204, description = "removed with its logs and journal"), (status = "4XX", description = "error", body = ErrorBody)))]
pub async fn remove(
    State(state): State<Arc<ApiState>>,
    CanSubmit(caller): CanSubmit,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let job = visible_job(&state, &caller, &id).await?;
    state.storage.remove(job.id).await?;
    Ok(StatusCode::NO_CONTENT)
}
