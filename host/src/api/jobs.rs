//! Jobs: enqueue (optionally following it as SSE), list, details, logs,
//! cancel, retry, clone, remove. Every job belongs to the caller's tenant;
//! another tenant's job answers exactly like a missing one, and a submitter
//! sees only the jobs it submitted.

use super::ApiState;
use super::auth::{Caller, CanSubmit, visible_job};
use super::body::{JsonBody, QueryParams};
use super::error::{ApiError, ErrorBody};
use super::plugins::{default_per_page, first_page, offset};
use super::sse;
use super::views::{JobDetails, JobPage, JobView, LogPage, scoped};
use crate::jobs::LimitOverrides;
use crate::jobs::{Backoff, JobRecord, JobState, NewJob, TenantRecord};
use crate::storage::{JobFilter, Resubmit};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};

/// The body of `POST /v1/jobs`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnqueueRequest {
    /// Qualified plugin name.
    job: String,
    /// JSON args for the job (default `{}`).
    #[serde(default = "empty_object")]
    #[schema(value_type = Object)]
    args: Value,
    #[serde(default)]
    queue: Option<String>,
    #[serde(default)]
    priority: i32,
    delay_ms: Option<u64>,
    run_at: Option<u64>,
    #[serde(default)]
    max_retries: u32,
    backoff: Option<Backoff>,
    #[serde(default)]
    limits: LimitOverrides,
    expires_in_ms: Option<u64>,
    expires_at: Option<u64>,
    idempotency_key: Option<String>,
    lock: Option<String>,
    name: Option<String>,
    description: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    #[schema(value_type = Object)]
    metadata: Map<String, Value>,
    /// An `http://` URL that receives the final job record (POST, JSON)
    /// once the job finishes; retried with backoff until it answers 2xx.
    callback_url: Option<String>,
}

fn empty_object() -> Value {
    Value::Object(Map::new())
}

/// A 503 when this host takes no new jobs (shutting down, paused, draining).
fn accepting(state: &ApiState) -> Result<(), ApiError> {
    match state.dispatcher.refusal() {
        Some(reason) => Err(ApiError::unavailable(format!("{reason}: it takes no new jobs"))),
        None => Ok(()),
    }
}

/// Most retries one job may ask for.
const MAX_RETRIES: u32 = 100;
/// Longest backoff a job may ask for between attempts: a week.
const MAX_BACKOFF_MS: u64 = 7 * 24 * 3600 * 1000;
/// Bounds on what a client attaches to a job for people and filters.
const MAX_NAME: usize = 256;
const MAX_DESCRIPTION: usize = 4 << 10;
const MAX_TAGS: usize = 32;
const MAX_METADATA_KEYS: usize = 64;
const MAX_METADATA_BYTES: usize = 64 << 10;

/// Checks the labels a client attaches to a job.
pub(super) fn check_labels(
    name: Option<&str>,
    description: Option<&str>,
    tags: &[String],
    metadata: &Map<String, Value>,
) -> Result<(), ApiError> {
    let too_long = |field: &str, text: Option<&str>, max: usize| match text {
        Some(text) if text.len() > max => Err(ApiError::bad_request(format!(
            "{field} must be at most {max} bytes, not {}",
            text.len()
        ))),
        _ => Ok(()),
    };
    too_long("name", name, MAX_NAME)?;
    too_long("description", description, MAX_DESCRIPTION)?;
    if tags.len() > MAX_TAGS {
        return Err(ApiError::bad_request(format!(
            "a job may have at most {MAX_TAGS} tags, not {}",
            tags.len()
        )));
    }
    for tag in tags {
        check_label("tags", tag, 64)?;
    }
    if metadata.len() > MAX_METADATA_KEYS {
        return Err(ApiError::bad_request(format!(
            "metadata may have at most {MAX_METADATA_KEYS} keys, not {}",
            metadata.len()
        )));
    }
    let bytes = Value::Object(metadata.clone()).to_string().len();
    if bytes > MAX_METADATA_BYTES {
        return Err(ApiError::too_large(format!(
            "metadata of {bytes} bytes is over the {MAX_METADATA_BYTES}-byte limit"
        )));
    }
    Ok(())
}

pub(super) fn check_label(field: &str, value: &str, max: usize) -> Result<(), ApiError> {
    let ok = !value.is_empty()
        && value.len() <= max
        && value.chars().all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c));
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "{field} must be 1 to {max} letters, digits, '-', '_', '.' or ':', not {value:?}"
        )))
    }
}

impl EnqueueRequest {
    /// One short digest per field as the server understood it (defaults
    /// filled in), so the same request always has the same fingerprint.
    fn fingerprint(&self) -> BTreeMap<String, String> {
        let Value::Object(fields) = serde_json::to_value(self).expect("requests serialise") else {
            unreachable!("a struct serialises to an object")
        };
        fields
            .into_iter()
            .filter(|(field, _)| field != "idempotency_key")
            .map(|(field, value)| {
                let digest = Sha256::digest(value.to_string().as_bytes());
                (field, hex::encode(&digest[..8]))
            })
            .collect()
    }

    /// Checks every field and turns the request into a [`NewJob`].
    fn into_new_job(
        self,
        state: &ApiState,
        caller: &Caller,
        tenant: &TenantRecord,
    ) -> Result<NewJob, ApiError> {
        let fingerprint =
            if self.idempotency_key.is_some() { self.fingerprint() } else { BTreeMap::new() };
        let plugin = state.runtime.registry().resolve(&caller.tenant, &self.job)?;
        let caps = state.runtime.caps();
        let tenant_caps = caps.with(&tenant.max_limits, caps);
        if let Some(refusal) = tenant_caps.refusal(&self.limits) {
            return Err(ApiError::bad_request(refusal));
        }
        let limits = self.limits.capped(&tenant.max_limits, state.runtime.defaults());
        let args = self.args.to_string();
        let payload_limit = state.runtime.limits(&limits).payload_bytes;
        if args.len() as u64 > payload_limit {
            return Err(ApiError::too_large(format!(
                "args of {} bytes are over the {payload_limit}-byte limit",
                args.len()
            )));
        }
        let now = state.clock.now();
        let run_at = match (self.delay_ms, self.run_at) {
            (Some(_), Some(_)) => {
                return Err(ApiError::bad_request("give delay_ms or run_at, not both"));
            }
            (Some(delay), None) => Some(now.saturating_add(delay)),
            (None, at) => at,
        };
        let expires_at = match (self.expires_in_ms, self.expires_at) {
            (Some(_), Some(_)) => {
                return Err(ApiError::bad_request("give expires_in_ms or expires_at, not both"));
            }
            (Some(within), None) => Some(now.saturating_add(within)),
            (None, at) => at,
        };
        if self.max_retries > MAX_RETRIES {
            return Err(ApiError::bad_request(format!(
                "max_retries must be at most {MAX_RETRIES}"
            )));
        }
        let queue = self.queue.unwrap_or_else(|| "default".into());
        check_label("queue", &queue, 64)?;
        if let Some(lock) = &self.lock {
            check_label("lock", lock, 128)?;
        }
        if let Some(key) = &self.idempotency_key {
            check_label("idempotency_key", key, 128)?;
        }
        check_labels(
            self.name.as_deref(),
            self.description.as_deref(),
            &self.tags,
            &self.metadata,
        )?;
        let backoff = self.backoff.unwrap_or_default();
        if backoff.base_ms > backoff.max_ms || backoff.max_ms > MAX_BACKOFF_MS {
            return Err(ApiError::bad_request(format!(
                "backoff needs base_ms <= max_ms <= {MAX_BACKOFF_MS}, not {} and {}",
                backoff.base_ms, backoff.max_ms
            )));
        }
        if let Some(url) = &self.callback_url {
            crate::services::webhooks::check_url(url).map_err(ApiError::bad_request)?;
        }
        Ok(NewJob {
            fingerprint,
            tenant: caller.tenant.clone(),
            owner: caller.name.clone(),
            job: self.job,
            plugin_digest: plugin.digest.clone(),
            args,
            queue: scoped(&caller.tenant, &queue),
            priority: self.priority,
            run_at,
            expires_at,
            max_retries: self.max_retries,
            backoff,
            limits,
            lock: self.lock.map(|lock| scoped(&caller.tenant, &lock)),
            idempotency_key: self.idempotency_key,
            name: self.name,
            description: self.description,
            tags: self.tags,
            metadata: self.metadata,
            callback_url: self.callback_url,
        })
    }
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
#[utoipa::path(post, path = "/v1/jobs", tag = "jobs", params(EnqueueQuery), request_body = EnqueueRequest, responses((status = 202, description = "enqueued", body = JobView), (status = 200, description = "the job of a repeated idempotency key", body = JobView), (status = "2XX", description = "with follow or Accept: text/event-stream, the job as SSE", content_type = "text/event-stream"), (status = "4XX", description = "error", body = ErrorBody)))]
pub async fn enqueue(
    State(state): State<Arc<ApiState>>,
    CanSubmit(caller): CanSubmit,
    headers: HeaderMap,
    QueryParams(query): QueryParams<EnqueueQuery>,
    JsonBody(request): JsonBody<EnqueueRequest>,
) -> Result<Response, ApiError> {
    accepting(&state)?;
    let tenant = state.storage.tenant(&caller.tenant).await?;
    let new = request.into_new_job(&state, &caller, &tenant)?;
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
    if query.follow || wants_stream {
        return Ok(
            sse::stream(state, &caller, enqueued.job.id, sse::Cursor::default())?.into_response()
        );
    }
    let status = if enqueued.created { StatusCode::ACCEPTED } else { StatusCode::OK };
    Ok((status, Json(JobView::from(&enqueued.job))).into_response())
}

/// An idempotency key that matched an existing job answers with that job
/// only for the same request from a caller who may see it; anything else
/// is a 409, so no caller receives a job it may not see or believes new
/// work was queued when it was not.
fn same_request(
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
    // Jobs stored before fingerprints were kept have none to compare.
    if existing.fingerprint.is_empty() {
        return Ok(());
    }
    let differing: Vec<&str> = fingerprint
        .iter()
        .filter(|(field, digest)| existing.fingerprint.get(*field) != Some(digest))
        .map(|(field, _)| field.as_str())
        .collect();
    if differing.is_empty() {
        return Ok(());
    }
    Err(ApiError::conflict(format!(
        "idempotency key {key:?} was used for job {} with a different {}; use a new key for new work",
        existing.id,
        differing.join(", ")
    )))
}

/// Query of `GET /v1/jobs`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    state: Option<JobState>,
    queue: Option<String>,
    job: Option<String>,
    since: Option<u64>,
    search: Option<String>,
    #[serde(default = "first_page")]
    page: usize,
    #[serde(default = "default_per_page")]
    per_page: usize,
}

/// `GET /v1/jobs?state=&queue=&job=&since=&search=&page=&per_page=`,
/// newest first, with the total that matched.
#[utoipa::path(get, path = "/v1/jobs", tag = "jobs", params(ListQuery), responses((status = 200, description = "a page of jobs, newest first, with the total", body = JobPage), (status = "4XX", description = "error", body = ErrorBody)))]
pub async fn list(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    QueryParams(query): QueryParams<ListQuery>,
) -> Result<Json<JobPage>, ApiError> {
    let start = offset(query.page, query.per_page)?;
    let filter = JobFilter {
        tenant: Some(caller.tenant.clone()),
        owner: (!caller.sees_all_jobs()).then(|| caller.name.clone()),
        state: query.state,
        queue: query.queue.map(|queue| scoped(&caller.tenant, &queue)),
        job: query.job,
        since: query.since,
        search: query.search,
    };
    let page = state.storage.list(&filter, start, query.per_page).await?;
    Ok(Json(JobPage {
        jobs: page.jobs.iter().map(JobView::from).collect(),
        total: page.total,
        page: query.page,
        per_page: query.per_page,
    }))
}

/// `GET /v1/jobs/{id}`: the job with its journal and queue position.
#[utoipa::path(get, path = "/v1/jobs/{id}", tag = "jobs", params(("id" = String, Path, description = "job id")), responses((status = 200, description = "the job with events and queue_position", body = JobDetails), (status = "4XX", description = "error", body = ErrorBody)))]
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
#[utoipa::path(get, path = "/v1/jobs/{id}/logs", tag = "jobs", params(("id" = String, Path, description = "job id"), LogQuery), responses((status = 200, description = "log lines after `after`, and next_after", body = LogPage), (status = "4XX", description = "error", body = ErrorBody)))]
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
#[utoipa::path(post, path = "/v1/jobs/{id}/cancel", tag = "jobs", params(("id" = String, Path, description = "job id")), responses((status = 200, description = "cancelled, or asked to stop", body = JobView), (status = "4XX", description = "error", body = ErrorBody)))]
pub async fn cancel(
    State(state): State<Arc<ApiState>>,
    CanSubmit(caller): CanSubmit,
    Path(id): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    let job = visible_job(&state, &caller, &id).await?;
    Ok(Json(JobView::from(&state.dispatcher.cancel(job.id).await?)))
}

/// `POST /v1/jobs/{id}/retry`: a new job, linked both ways to this one.
#[utoipa::path(post, path = "/v1/jobs/{id}/retry", tag = "jobs", params(("id" = String, Path, description = "job id")), responses((status = 202, description = "a new job linked to this one", body = JobView), (status = "4XX", description = "error", body = ErrorBody)))]
pub async fn retry(
    State(state): State<Arc<ApiState>>,
    CanSubmit(caller): CanSubmit,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<JobView>), ApiError> {
    let job = visible_job(&state, &caller, &id).await?;
    accepting(&state)?;
    let changes = resubmit(&state, &job, None).await?;
    let new = state.storage.retry(job.id, changes, state.clock.now()).await?;
    state.dispatcher.wake();
    Ok((StatusCode::ACCEPTED, Json(JobView::from(&new))))
}

/// What a copy of `job` changes: its limits lowered to the tenant's caps
/// of today, and new `args` checked against the size limit like an
/// enqueue's.
async fn resubmit(
    state: &ApiState,
    job: &JobRecord,
    args: Option<String>,
) -> Result<Resubmit, ApiError> {
    let tenant = state.storage.tenant(&job.tenant).await?;
    let limits = job
        .limits
        .lowered_to(&tenant.max_limits)
        .capped(&tenant.max_limits, state.runtime.defaults());
    let payload_limit = state.runtime.limits(&limits).payload_bytes;
    let size = args.as_ref().map_or(job.args.len(), String::len);
    if size as u64 > payload_limit {
        return Err(ApiError::too_large(format!(
            "args of {size} bytes are over the {payload_limit}-byte limit"
        )));
    }
    Ok(Resubmit { args, limits: Some(limits) })
}

/// The body of a clone.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CloneRequest {
    /// New args; the original job's when missing.
    #[schema(value_type = Option<Object>)]
    args: Option<Value>,
}

/// `POST /v1/jobs/{id}/clone` with optional new `args`.
#[utoipa::path(post, path = "/v1/jobs/{id}/clone", tag = "jobs", params(("id" = String, Path, description = "job id")), request_body = CloneRequest, responses((status = 202, description = "a copy, optionally with new args", body = JobView), (status = "4XX", description = "error", body = ErrorBody)))]
pub async fn clone(
    State(state): State<Arc<ApiState>>,
    CanSubmit(caller): CanSubmit,
    Path(id): Path<String>,
    JsonBody(request): JsonBody<CloneRequest>,
) -> Result<(StatusCode, Json<JobView>), ApiError> {
    let job = visible_job(&state, &caller, &id).await?;
    accepting(&state)?;
    let changes = resubmit(&state, &job, request.args.map(|args| args.to_string())).await?;
    let new = state.storage.clone_job(job.id, changes, state.clock.now()).await?;
    state.dispatcher.wake();
    Ok((StatusCode::ACCEPTED, Json(JobView::from(&new))))
}

/// `DELETE /v1/jobs/{id}`: a finished job, with its logs and journal.
#[utoipa::path(delete, path = "/v1/jobs/{id}", tag = "jobs", params(("id" = String, Path, description = "job id")), responses((status = 204, description = "removed with its logs and journal"), (status = "4XX", description = "error", body = ErrorBody)))]
pub async fn remove(
    State(state): State<Arc<ApiState>>,
    CanSubmit(caller): CanSubmit,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let job = visible_job(&state, &caller, &id).await?;
    state.storage.remove(job.id).await?;
    Ok(StatusCode::NO_CONTENT)
}
