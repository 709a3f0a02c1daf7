//! `POST /v1/jobs/batch`: many jobs in one request and one commit, with a
//! result per item (created, the existing job of an idempotency key, or the
//! item's own error), as BullMQ's addBulk, Sidekiq's push_bulk and River's
//! InsertMany do.

use super::ApiState;
use super::auth::CanSubmit;
use super::body::JsonBody;
use super::error::{ApiError, ErrorBody};
use super::jobs::{accepting, admit, same_request};
use super::views::JobView;
use crate::jobs::enqueue::JobRequest;
use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::ToSchema;

/// Most jobs one batch may carry.
pub const MAX_BATCH: usize = 1_000;

/// The body of a batch.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    /// Each job as `POST /v1/jobs` takes it; at most 1,000.
    jobs: Vec<JobRequest>,
}

/// What became of one item, in the order sent.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchItem {
    /// 202 created, 200 the existing job of its idempotency key, or the
    /// status `POST /v1/jobs` would have answered for it.
    pub status: u16,
    /// The job, when there is one.
    pub job: Option<JobView>,
    /// Why not, otherwise.
    pub error: Option<ErrorBody>,
}

/// The results of a batch.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchResult {
    /// One per item, in the order sent.
    pub results: Vec<BatchItem>,
    /// How many were created.
    pub created: usize,
}

fn failed(error: ApiError) -> BatchItem {
    BatchItem { status: error.status.as_u16(), job: None, error: Some(error.into()) }
}

/// `POST /v1/jobs/batch`.
#[utoipa::path(post, path = "/v1/jobs/batch", operation_id = "enqueue_batch", tag = "jobs", request_body = BatchRequest, responses((status = 200, description = "a result per item", body = BatchResult), (status = "4XX", description = "error", body = ErrorBody)))]
pub async fn enqueue_batch(
    State(state): State<Arc<ApiState>>,
    CanSubmit(caller): CanSubmit,
    JsonBody(batch): JsonBody<BatchRequest>,
) -> Result<Json<BatchResult>, ApiError> {
    accepting(&state)?;
    if batch.jobs.is_empty() || batch.jobs.len() > MAX_BATCH {
        return Err(ApiError::bad_request(format!(
            "a batch carries 1 to {MAX_BATCH} jobs, not {}",
            batch.jobs.len()
        )));
    }
    let tenant = state.storage.tenant(&caller.tenant).await?;
    let mut results: Vec<Option<BatchItem>> = Vec::with_capacity(batch.jobs.len());
    let mut admitted = Vec::new();
    for request in batch.jobs {
        match admit(&state, &caller, &tenant, request).await {
            Ok(new) => {
                admitted.push(((results.len(), new.fingerprint.clone()), new));
                results.push(None);
            }
            Err(error) => results.push(Some(failed(error))),
        }
    }
    let (places, news): (Vec<_>, Vec<_>) = admitted.into_iter().unzip();
    let stored = state.storage.enqueue_many(news, state.clock.now()).await?;
    let mut created = 0;
    for ((place, fingerprint), outcome) in places.into_iter().zip(stored) {
        results[place] = Some(match outcome {
            Ok(enqueued) if enqueued.created => {
                created += 1;
                BatchItem { status: 202, job: Some(JobView::from(&enqueued.job)), error: None }
            }
            Ok(enqueued) => match same_request(&caller, &enqueued.job, &fingerprint) {
                Ok(()) => {
                    BatchItem { status: 200, job: Some(JobView::from(&enqueued.job)), error: None }
                }
                Err(error) => failed(error),
            },
            Err(error) => failed(error.into()),
        });
    }
    if created > 0 {
        state.dispatcher.wake();
    }
    let results = results.into_iter().map(|item| item.expect("every item has a result")).collect();
    Ok(Json(BatchResult { results, created }))
}
