//! What a client may change of a job it enqueued: its labels, in any
//! state ([`relabel`]), and the settings of a retry or a clone of it
//! ([`resubmission`]), checked by the same rules as an enqueue.

use super::enqueue::{Refusal, check_label, check_labels, check_priority, scoped, when};
use super::{JobRecord, LimitOverrides, Millis, NewJob, TenantRecord};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

/// What a retry or a clone may change of the job it copies; every field
/// is optional and a missing one keeps the old job's.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResubmitRequest {
    /// New JSON args.
    #[schema(value_type = Option<Object>)]
    pub args: Option<Value>,
    /// Run no sooner than this many ms from now.
    pub delay_ms: Option<u64>,
    /// Run no sooner than this time: ms since the epoch, or RFC 3339.
    #[serde(default, deserialize_with = "super::when::optional")]
    #[schema(value_type = Option<String>)]
    pub run_at: Option<u64>,
    /// Another queue.
    pub queue: Option<String>,
    /// Another priority.
    pub priority: Option<i32>,
}

/// What changes when a job is enqueued again (retry, clone); `None` keeps
/// the old job's.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Resubmit {
    /// New JSON args.
    pub args: Option<String>,
    /// Limits, lowered to the tenant's caps of today.
    pub limits: Option<LimitOverrides>,
    /// Earliest start.
    pub run_at: Option<Millis>,
    /// Queue, scoped to the tenant.
    pub queue: Option<String>,
    /// Priority.
    pub priority: Option<i32>,
}

impl Resubmit {
    /// A new job with `old`'s settings and these changes: what retry and
    /// clone enqueue.
    pub fn new_job(self, old: &JobRecord) -> NewJob {
        let changes = self;
        NewJob {
            id: None,
            tenant: old.tenant.clone(),
            owner: old.owner.clone(),
            job: old.job.clone(),
            plugin_digest: old.plugin_digest.clone(),
            args: changes.args.clone().unwrap_or_else(|| {
                old.flow.args_template.clone().unwrap_or_else(|| old.args.clone())
            }),
            queue: changes.queue.unwrap_or_else(|| old.queue.clone()),
            priority: changes.priority.unwrap_or(old.priority),
            run_at: changes.run_at,
            expires_at: None,
            max_retries: old.max_retries,
            retry_on: old.retry_on.clone(),
            backoff: old.backoff,
            limits: changes.limits.unwrap_or(old.limits),
            lock: old.lock.clone(),
            idempotency_key: None,
            name: old.name.clone(),
            description: old.description.clone(),
            tags: old.tags.clone(),
            metadata: old.metadata.clone(),
            callback_url: old.callback_url.clone(),
            fingerprint: Default::default(),
            flow: crate::jobs::flow::resubmitted(&old.flow, changes.args.is_some()),
            next: None,
        }
    }
}

/// Checks what a retry or clone asks to change, for a job of `tenant`.
pub fn resubmission(
    request: ResubmitRequest,
    tenant: &TenantRecord,
    now: Millis,
) -> Result<Resubmit, Refusal> {
    let run_at = when(("delay_ms", "run_at"), request.delay_ms, request.run_at, now)?;
    if let Some(queue) = &request.queue {
        check_label("queue", queue, 64)?;
    }
    if let Some(priority) = request.priority {
        check_priority(priority, tenant)?;
    }
    Ok(Resubmit {
        args: request.args.map(|args| args.to_string()),
        limits: None,
        run_at,
        queue: request.queue.map(|queue| scoped(&tenant.name, &queue)),
        priority: request.priority,
    })
}

/// The labels a client may change after enqueueing (Tethys's extended
/// properties); a missing field keeps its value.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Relabel {
    /// A new label for people (`null` clears it).
    #[serde(default, deserialize_with = "some")]
    #[schema(value_type = Option<String>)]
    pub name: Option<Option<String>>,
    /// New free text (`null` clears it).
    #[serde(default, deserialize_with = "some")]
    #[schema(value_type = Option<String>)]
    pub description: Option<Option<String>>,
    /// New tags, replacing the old.
    pub tags: Option<Vec<String>>,
    /// Metadata to merge into the client's; a `null` value removes its key.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Map<String, Value>>,
}

/// A present field, even `null`, is `Some`.
fn some<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// `job` with `change` applied, within the label bounds.
pub fn relabel(job: &JobRecord, change: &Relabel) -> Result<JobRecord, Refusal> {
    let mut job = job.clone();
    if let Some(name) = &change.name {
        job.name = name.clone();
    }
    if let Some(description) = &change.description {
        job.description = description.clone();
    }
    if let Some(tags) = &change.tags {
        job.tags = tags.clone();
    }
    if let Some(metadata) = &change.metadata {
        for (key, value) in metadata {
            match value {
                Value::Null => job.metadata.remove(key),
                value => job.metadata.insert(key.clone(), value.clone()),
            };
        }
    }
    check_labels(job.name.as_deref(), job.description.as_deref(), &job.tags, &job.metadata)?;
    Ok(job)
}
