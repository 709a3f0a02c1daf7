//! Workflows: submit a graph of steps in one request, list, show, follow
//! as SSE, cancel (its unfinished steps) and retry (its failed steps and
//! what depends on them). A workflow belongs to its tenant and, for a
//! submitter, to its owner, exactly as jobs do.

use super::ApiState;
use super::auth::{self, Caller, CanSubmit};
use super::body::{JsonBody, QueryParams};
use super::error::{ApiError, ErrorBody};
use super::jobs::{accepting, admit};
use super::plugins::{default_per_page, first_page, offset};
use super::views::{WorkflowPage, WorkflowView};
use crate::jobs::workflow::{self, Summary, WorkflowRecord, WorkflowRequest};
use crate::jobs::{JobRecord, JobState};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};
use utoipa::IntoParams;
use uuid::Uuid;

/// Longest wait between reads of a followed workflow when the bus is quiet.
const POLL: Duration = Duration::from_millis(500);

/// `POST /v1/workflows`: 202 with the workflow and its steps' jobs.
#[utoipa::path(post, path = "/v1/workflows", operation_id = "submit_workflow", tag = "workflows", request_body = WorkflowRequest, responses((status = 202, description = "the workflow, its steps enqueued", body = WorkflowView), (status = "4XX", description = "error", body = ErrorBody)))]
pub async fn submit(
    State(state): State<Arc<ApiState>>,
    CanSubmit(caller): CanSubmit,
    JsonBody(request): JsonBody<WorkflowRequest>,
) -> Result<Response, ApiError> {
    accepting(&state)?;
    let tenant = state.storage.tenant(&caller.tenant).await?;
    let now = state.clock.now();
    let (record, steps) =
        workflow::plan(request, Uuid::now_v7(), &caller.tenant, &caller.name, now)?;
    let mut jobs = Vec::with_capacity(steps.len());
    for ((id, request), step) in steps.into_iter().zip(&record.steps) {
        let mut new = admit(&state, &caller, &tenant, request)
            .await
            .map_err(|e| e.prefixed(&format!("step {:?}: ", step.name)))?;
        new.id = Some(id);
        new.flow.workflow = Some(record.id);
        new.flow.step = Some(step.name.clone());
        jobs.push(new);
    }
    let written = state.storage.create_workflow(record.clone(), jobs, now).await?;
    state.dispatcher.wake();
    let view = WorkflowView::new(&record, &written.into_iter().map(Some).collect::<Vec<_>>());
    let location = format!("/v1/workflows/{}", record.id);
    let mut response = (StatusCode::ACCEPTED, Json(view)).into_response();
    let value = HeaderValue::from_str(&location).expect("a path is a header");
    response.headers_mut().insert(header::LOCATION, value);
    Ok(response)
}

/// Query of `GET /v1/workflows`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    #[serde(default = "first_page")]
    page: usize,
    #[serde(default = "default_per_page")]
    per_page: usize,
}

/// `GET /v1/workflows?page=&per_page=`: newest first, with their states.
#[utoipa::path(get, path = "/v1/workflows", operation_id = "list_workflows", tag = "workflows", params(ListQuery), responses((status = 200, description = "a page of workflows, newest first", body = WorkflowPage), (status = "4XX", description = "error", body = ErrorBody)))]
pub async fn list(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    QueryParams(query): QueryParams<ListQuery>,
) -> Result<Json<WorkflowPage>, ApiError> {
    let from = offset(query.page, query.per_page)?;
    let owner = (!caller.sees_all_jobs()).then_some(caller.name.as_str());
    let (records, total) =
        state.storage.workflows(Some(&caller.tenant), owner, from, query.per_page).await?;
    let mut workflows = Vec::with_capacity(records.len());
    for record in &records {
        workflows.push(WorkflowView::new(record, &steps(&state, record).await?));
    }
    Ok(Json(WorkflowPage { workflows, total, page: query.page, per_page: query.per_page }))
}

/// `GET /v1/workflows/{id}`: the workflow, its state, progress and steps.
#[utoipa::path(get, path = "/v1/workflows/{id}", operation_id = "get_workflow", tag = "workflows", params(("id" = String, Path, description = "workflow id")), responses((status = 200, description = "the workflow with its steps", body = WorkflowView), (status = "4XX", description = "error", body = ErrorBody)))]
pub async fn details(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<WorkflowView>, ApiError> {
    let record = visible(&state, &caller, &id).await?;
    Ok(Json(WorkflowView::new(&record, &steps(&state, &record).await?)))
}

/// `POST /v1/workflows/{id}/cancel`: cancels every unfinished step (a
/// running one is asked to stop).
#[utoipa::path(post, path = "/v1/workflows/{id}/cancel", operation_id = "cancel_workflow", tag = "workflows", params(("id" = String, Path, description = "workflow id")), responses((status = 200, description = "the workflow after the cancel", body = WorkflowView), (status = "4XX", description = "error", body = ErrorBody)))]
pub async fn cancel(
    State(state): State<Arc<ApiState>>,
    CanSubmit(caller): CanSubmit,
    Path(id): Path<String>,
) -> Result<Json<WorkflowView>, ApiError> {
    let record = visible(&state, &caller, &id).await?;
    let jobs = state.dispatcher.cancel_workflow(record.id).await?;
    Ok(Json(WorkflowView::new(&record, &jobs.into_iter().map(Some).collect::<Vec<_>>())))
}

/// `POST /v1/workflows/{id}/retry`: enqueues again the steps that did not
/// complete and every step that depends on them; 409 while a step is
/// unfinished or when every step completed.
#[utoipa::path(post, path = "/v1/workflows/{id}/retry", operation_id = "retry_workflow", tag = "workflows", params(("id" = String, Path, description = "workflow id")), responses((status = 202, description = "the workflow with its retried steps", body = WorkflowView), (status = "4XX", description = "error", body = ErrorBody)))]
pub async fn retry(
    State(state): State<Arc<ApiState>>,
    CanSubmit(caller): CanSubmit,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<WorkflowView>), ApiError> {
    let record = visible(&state, &caller, &id).await?;
    accepting(&state)?;
    let record = state.storage.retry_workflow(record.id, state.clock.now()).await?;
    state.dispatcher.wake();
    Ok((StatusCode::ACCEPTED, Json(WorkflowView::new(&record, &steps(&state, &record).await?))))
}

/// `GET /v1/workflows/{id}/events`: SSE. A `step` event each time a step
/// changes state (step, job, state), a `state` event each time the
/// workflow's state or progress changes, then `close` once every step
/// finished. The first events say where everything stands.
#[utoipa::path(get, path = "/v1/workflows/{id}/events", operation_id = "follow_workflow", tag = "workflows", params(("id" = String, Path, description = "workflow id")), responses((status = 200, description = "step, state and close events", content_type = "text/event-stream"), (status = "4XX", description = "error", body = ErrorBody)))]
pub async fn follow(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let record = visible(&state, &caller, &id).await?;
    let slot = state.streams.open(&caller.tenant)?;
    let (sender, mut receiver) = mpsc::channel::<Event>(64);
    tokio::spawn(async move {
        let _slot = slot;
        tokio::select! {
            () = pump(&state, record.id, &sender) => {}
            () = state.streams.stopped() => {}
        }
    });
    let events = futures::stream::poll_fn(move |cx| receiver.poll_recv(cx));
    Ok(Sse::new(events.map(Ok::<_, std::convert::Infallible>))
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// Sends what changed since the last read until the workflow finished, the
/// follower left or stopped reading for the stall time, or it was removed.
async fn pump(state: &ApiState, id: Uuid, sender: &mpsc::Sender<Event>) {
    let mut bus = state.bus.subscribe();
    let mut seen: HashMap<Uuid, JobState> = HashMap::new();
    let mut last: Option<Summary> = None;
    let send = |name: &str, data: serde_json::Value| {
        let event = Event::default().event(name).data(data.to_string());
        let stall = state.config.stream_stall;
        async move { matches!(tokio::time::timeout(stall, sender.send(event)).await, Ok(Ok(()))) }
    };
    loop {
        let Ok(record) = state.storage.workflow(id).await else { return };
        let Ok(jobs) = steps(state, &record).await else { return };
        let view = WorkflowView::new(&record, &jobs);
        for step in &view.steps {
            let Some(now) = step.state else { continue };
            if seen.insert(step.job, now) != Some(now) {
                let data = serde_json::json!({"workflow": id, "step": step.step, "job": step.job, "state": now});
                if !send("step", data).await {
                    return;
                }
            }
        }
        if last.as_ref() != Some(&view.summary) {
            let data = serde_json::json!({"workflow": id, "state": view.summary.state, "done": view.summary.done, "total": view.summary.total, "percent": view.summary.percent});
            if !send("state", data).await {
                return;
            }
            last = Some(view.summary.clone());
        }
        if view.summary.state.is_terminal() {
            send("close", serde_json::json!({"workflow": id, "state": view.summary.state})).await;
            return;
        }
        let ids: Vec<Uuid> = record.steps.iter().map(|s| s.job).collect();
        let deadline = tokio::time::sleep(POLL);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                () = &mut deadline => break,
                () = sender.closed() => return,
                notice = bus.recv() => match notice {
                    Ok(notice) if ids.contains(&notice.job) => break,
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(_)) => break,
                    Err(broadcast::error::RecvError::Closed) => return,
                },
            }
        }
    }
}

/// The workflow `id` if the caller may see it; any other is a 404, as a
/// job of another tenant is.
async fn visible(state: &ApiState, caller: &Caller, id: &str) -> Result<WorkflowRecord, ApiError> {
    let owner = |w: &WorkflowRecord| (w.tenant.clone(), w.owner.clone());
    auth::visible(caller, "workflow", id, |id| state.storage.workflow(id), owner).await
}

/// The current jobs of a workflow's steps, in its order.
async fn steps(
    state: &ApiState,
    record: &WorkflowRecord,
) -> Result<Vec<Option<JobRecord>>, ApiError> {
    let ids: Vec<Uuid> = record.steps.iter().map(|s| s.job).collect();
    Ok(state.storage.get_many(&ids).await?)
}
