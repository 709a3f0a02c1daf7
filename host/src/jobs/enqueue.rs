//! The enqueue rules: what a client may ask for ([`JobRequest`]) and how a
//! request becomes a [`NewJob`] ([`admit`]): labels and sizes checked,
//! limits held to the tenant's caps, times made absolute, names scoped to
//! the tenant. And the idempotency rule: the same key means the same
//! request ([`JobRequest::fingerprint`], [`idempotency_conflict`]).

use super::flow::{self, MAX_DEPENDENCIES, PREVIOUS};
use super::{
    Backoff, DependencyFailure, FailureKind, Flow, JobRecord, LimitOverrides, Limits, Millis,
    NewJob, TenantRecord,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use utoipa::ToSchema;
use uuid::Uuid;

/// Priorities run from `-MAX_PRIORITY` to `MAX_PRIORITY`; a tenant's
/// `max_priority` may lower the top. Priority orders a tenant's own jobs:
/// claims go round the tenants, so no priority jumps another tenant's line.
pub const MAX_PRIORITY: i32 = 1000;
/// Most retries one job may ask for.
pub const MAX_RETRIES: u32 = 100;
/// Longest backoff a job may ask for between attempts: a week.
pub const MAX_BACKOFF_MS: u64 = 7 * 24 * 3600 * 1000;
/// Bounds on what a client attaches to a job for people and filters.
pub const MAX_NAME: usize = 256;
/// Longest description, in bytes.
pub const MAX_DESCRIPTION: usize = 4 << 10;
/// Most tags of one job.
pub const MAX_TAGS: usize = 32;
/// Most keys of the client's metadata.
pub const MAX_CLIENT_METADATA_KEYS: usize = 64;
/// Largest client metadata, as JSON.
pub const MAX_CLIENT_METADATA_BYTES: usize = 64 << 10;

/// Storage names of queues and locks carry the tenant (`tenant/name`), so
/// one tenant's queue settings and locks never touch another's.
pub fn scoped(tenant: &str, name: &str) -> String {
    format!("{tenant}/{name}")
}

/// The name a client knows, without the tenant.
pub fn unscoped(name: &str) -> &str {
    name.split_once('/').map_or(name, |(_, name)| name)
}

/// Why a request is refused, for the API to answer with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// A field is malformed or out of range; the message names it.
    #[error("{0}")]
    Invalid(String),
    /// A field is larger than its limit.
    #[error("{0}")]
    TooLarge(String),
}

/// The body of `POST /v1/jobs`: everything but `job` has a default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobRequest {
    /// Qualified plugin name.
    pub job: String,
    /// A version of the plugin to run (its `sha256:` digest, one of
    /// `GET /v1/plugins/{name}/versions`); default: the current one.
    pub version: Option<String>,
    /// JSON args for the job (default `{}`).
    #[serde(default = "empty_object")]
    #[schema(value_type = Object)]
    pub args: Value,
    /// Queue (default `default`).
    #[serde(default)]
    pub queue: Option<String>,
    /// Higher runs first among the tenant's jobs: -1000 to 1000, or the
    /// tenant's `max_priority`.
    #[serde(default)]
    pub priority: i32,
    /// Run no sooner than this many ms from now.
    pub delay_ms: Option<u64>,
    /// Run no sooner than this time: ms since the epoch, or RFC 3339.
    #[serde(default, deserialize_with = "super::when::optional")]
    #[schema(value_type = Option<String>)]
    pub run_at: Option<u64>,
    /// Retries after a retriable failure (at most 100).
    #[serde(default)]
    pub max_retries: u32,
    /// Failure kinds to retry (default: the plugin's setting, else every
    /// kind but `cancelled`).
    pub retry_on: Option<Vec<FailureKind>>,
    /// Delay between attempts.
    pub backoff: Option<Backoff>,
    /// Limits asked for, within the caps.
    #[serde(default)]
    pub limits: LimitOverrides,
    /// Expire if not started within this many ms.
    pub expires_in_ms: Option<u64>,
    /// Expire if not started by this time: ms since the epoch, or RFC 3339.
    #[serde(default, deserialize_with = "super::when::optional")]
    #[schema(value_type = Option<String>)]
    pub expires_at: Option<u64>,
    /// The same key in the same tenant returns the first job.
    pub idempotency_key: Option<String>,
    /// Named lock held while the job runs.
    pub lock: Option<String>,
    /// A label for people.
    pub name: Option<String>,
    /// Free text.
    pub description: Option<String>,
    /// Labels to filter by.
    #[serde(default)]
    pub tags: Vec<String>,
    /// What the client attaches.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub metadata: Map<String, Value>,
    /// An `http://` URL that receives the final job (POST, JSON) once the
    /// job finishes; retried with backoff until it answers 2xx.
    pub callback_url: Option<String>,
    /// Jobs (ids) this one waits for: it stays `blocked` until they all
    /// finished. Its args may take their results: `{"$result": "<id>"}`,
    /// optionally with `"pointer": "/field"`. In a workflow, step names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
    /// `cancel` (default): cancelled when a dependency fails, is cancelled
    /// or expires; `run`: runs anyway once all finished.
    #[serde(default, skip_serializing_if = "is_cancel")]
    pub if_dependency_fails: DependencyFailure,
    /// The job that follows this one once it completed (a chain): its args
    /// are this job's result, or, when given, may take it with
    /// `{"$result": "previous"}`. Written now, `blocked` until then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub next: Option<Box<JobRequest>>,
}

fn is_cancel(policy: &DependencyFailure) -> bool {
    *policy == DependencyFailure::Cancel
}

/// Most jobs one chain may hold.
pub const MAX_CHAIN: usize = 20;

fn empty_object() -> Value {
    Value::Object(Map::new())
}

/// What admitting a request depends on besides the request.
#[derive(Debug, Clone)]
pub struct Admission<'a> {
    /// The caller's tenant.
    pub tenant: &'a TenantRecord,
    /// Who enqueues it.
    pub owner: &'a str,
    /// Digest of the plugin version the job will run.
    pub plugin_digest: &'a str,
    /// The plugin's own `retry_on`, for a job that sets none.
    pub plugin_retry_on: Option<&'a [FailureKind]>,
    /// The host's limits of a job that asks for nothing.
    pub defaults: &'a Limits,
    /// The host's caps.
    pub caps: &'a Limits,
    /// The time of the enqueue.
    pub now: Millis,
    /// The job follows another in a chain: its args may name `previous`.
    pub chained: bool,
}

impl JobRequest {
    /// One short digest per field as the server understood it (defaults
    /// filled in), so the same request always has the same fingerprint.
    pub fn fingerprint(&self) -> BTreeMap<String, String> {
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
}

/// The fields in which `fingerprint` differs from the request that made
/// `existing`, named for a 409; `None` when it is the same request (or
/// `existing` predates fingerprints).
pub fn idempotency_conflict(
    existing: &JobRecord,
    fingerprint: &BTreeMap<String, String>,
) -> Option<String> {
    if existing.fingerprint.is_empty() {
        return None;
    }
    let differing: Vec<&str> = fingerprint
        .iter()
        .filter(|(field, digest)| existing.fingerprint.get(*field) != Some(digest))
        .map(|(field, _)| field.as_str())
        .collect();
    (!differing.is_empty()).then(|| differing.join(", "))
}

/// A label: 1 to `max` ASCII letters, digits, `-`, `_`, `.` or `:`.
pub fn check_label(field: &str, value: &str, max: usize) -> Result<(), Refusal> {
    let ok = !value.is_empty()
        && value.len() <= max
        && value.chars().all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c));
    if ok {
        Ok(())
    } else {
        Err(Refusal::Invalid(format!(
            "{field} must be 1 to {max} letters, digits, '-', '_', '.' or ':', not {value:?}"
        )))
    }
}

/// Checks what a client attaches to a job for people and filters.
pub fn check_labels(
    name: Option<&str>,
    description: Option<&str>,
    tags: &[String],
    metadata: &Map<String, Value>,
) -> Result<(), Refusal> {
    let too_long = |field: &str, text: Option<&str>, max: usize| match text {
        Some(text) if text.len() > max => Err(Refusal::Invalid(format!(
            "{field} must be at most {max} bytes, not {}",
            text.len()
        ))),
        _ => Ok(()),
    };
    too_long("name", name, MAX_NAME)?;
    too_long("description", description, MAX_DESCRIPTION)?;
    if tags.len() > MAX_TAGS {
        return Err(Refusal::Invalid(format!(
            "a job may have at most {MAX_TAGS} tags, not {}",
            tags.len()
        )));
    }
    for tag in tags {
        check_label("tags", tag, 64)?;
    }
    if metadata.len() > MAX_CLIENT_METADATA_KEYS {
        return Err(Refusal::Invalid(format!(
            "metadata may have at most {MAX_CLIENT_METADATA_KEYS} keys, not {}",
            metadata.len()
        )));
    }
    let bytes = Value::Object(metadata.clone()).to_string().len();
    if bytes > MAX_CLIENT_METADATA_BYTES {
        return Err(Refusal::TooLarge(format!(
            "metadata of {bytes} bytes is over the {MAX_CLIENT_METADATA_BYTES}-byte limit"
        )));
    }
    Ok(())
}

/// A priority within -[`MAX_PRIORITY`] and the tenant's top.
pub(super) fn check_priority(priority: i32, tenant: &TenantRecord) -> Result<(), Refusal> {
    let top = tenant.max_priority.unwrap_or(MAX_PRIORITY).min(MAX_PRIORITY);
    if (-MAX_PRIORITY..=top).contains(&priority) {
        return Ok(());
    }
    Err(Refusal::Invalid(format!(
        "priority must be between -{MAX_PRIORITY} and {top} for tenant {:?}, not {priority}",
        tenant.name
    )))
}

/// Exactly one of a relative and an absolute time, made absolute.
pub(super) fn when(
    names: (&str, &str),
    relative: Option<u64>,
    absolute: Option<u64>,
    now: Millis,
) -> Result<Option<Millis>, Refusal> {
    match (relative, absolute) {
        (Some(_), Some(_)) => {
            Err(Refusal::Invalid(format!("give {} or {}, not both", names.0, names.1)))
        }
        (Some(after), None) => Ok(Some(now.saturating_add(after))),
        (None, at) => Ok(at),
    }
}

/// Checks every field of `request` and turns it into a [`NewJob`] of the
/// caller's tenant: limits above the tenant's caps are refused, those not
/// asked for take the tenant's cap where it is below the default.
pub fn admit(request: JobRequest, admission: &Admission) -> Result<NewJob, Refusal> {
    let fingerprint =
        if request.idempotency_key.is_some() { request.fingerprint() } else { BTreeMap::new() };
    let tenant = admission.tenant;
    let tenant_caps = admission.caps.with(&tenant.max_limits, admission.caps);
    if let Some(refusal) = tenant_caps.refusal(&request.limits) {
        return Err(Refusal::Invalid(refusal));
    }
    let limits = request.limits.capped(&tenant.max_limits, admission.defaults);
    let args = request.args.to_string();
    let payload_limit = admission.defaults.with(&limits, admission.caps).payload_bytes;
    if args.len() as u64 > payload_limit {
        return Err(Refusal::TooLarge(format!(
            "args of {} bytes are over the {payload_limit}-byte limit",
            args.len()
        )));
    }
    let depends_on = dependencies(&request, admission.chained)?;
    let now = admission.now;
    let run_at = when(("delay_ms", "run_at"), request.delay_ms, request.run_at, now)?;
    let expires_at =
        when(("expires_in_ms", "expires_at"), request.expires_in_ms, request.expires_at, now)?;
    check_priority(request.priority, tenant)?;
    if request.max_retries > MAX_RETRIES {
        return Err(Refusal::Invalid(format!("max_retries must be at most {MAX_RETRIES}")));
    }
    let queue = request.queue.unwrap_or_else(|| "default".into());
    check_label("queue", &queue, 64)?;
    if let Some(lock) = &request.lock {
        check_label("lock", lock, 128)?;
    }
    if let Some(key) = &request.idempotency_key {
        check_label("idempotency_key", key, 128)?;
    }
    check_labels(
        request.name.as_deref(),
        request.description.as_deref(),
        &request.tags,
        &request.metadata,
    )?;
    let refers = !flow::references(&request.args).is_empty();
    let args_template = refers.then(|| args.clone());
    let backoff = request.backoff.unwrap_or_default();
    if backoff.base_ms > backoff.max_ms || backoff.max_ms > MAX_BACKOFF_MS {
        return Err(Refusal::Invalid(format!(
            "backoff needs base_ms <= max_ms <= {MAX_BACKOFF_MS}, not {} and {}",
            backoff.base_ms, backoff.max_ms
        )));
    }
    Ok(NewJob {
        id: None,
        fingerprint,
        tenant: tenant.name.clone(),
        owner: admission.owner.to_string(),
        job: request.job,
        plugin_digest: admission.plugin_digest.to_string(),
        args,
        queue: scoped(&tenant.name, &queue),
        priority: request.priority,
        run_at,
        expires_at,
        max_retries: request.max_retries,
        retry_on: request.retry_on.or_else(|| admission.plugin_retry_on.map(<[_]>::to_vec)),
        backoff,
        limits,
        lock: request.lock.map(|lock| scoped(&tenant.name, &lock)),
        idempotency_key: request.idempotency_key,
        name: request.name,
        description: request.description,
        tags: request.tags,
        metadata: request.metadata,
        callback_url: request.callback_url,
        flow: Flow {
            depends_on,
            if_dependency_fails: request.if_dependency_fails,
            args_template,
            ..Flow::default()
        },
        next: None,
    })
}

/// The ids a request depends on, checked, and every `$result` reference of
/// its args checked to name one of them (or `previous`, in a chain).
fn dependencies(request: &JobRequest, chained: bool) -> Result<Vec<Uuid>, Refusal> {
    if request.depends_on.len() > MAX_DEPENDENCIES {
        return Err(Refusal::Invalid(format!(
            "a job may depend on at most {MAX_DEPENDENCIES} jobs, not {}",
            request.depends_on.len()
        )));
    }
    let mut ids = Vec::with_capacity(request.depends_on.len());
    for text in &request.depends_on {
        let id = Uuid::parse_str(text).map_err(|_| {
            Refusal::Invalid(format!("depends_on: {text:?} is not a job id (a UUID)"))
        })?;
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    for reference in flow::references(&request.args) {
        let known = (chained && reference == PREVIOUS)
            || Uuid::parse_str(&reference).is_ok_and(|id| ids.contains(&id));
        if !known {
            let hint = if chained { " or \"previous\"" } else { "" };
            return Err(Refusal::Invalid(format!(
                "args take the result of {reference:?}, which is not in depends_on{hint}: \
                 a job can take only the results of the jobs it waits for"
            )));
        }
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(body: Value) -> JobRequest {
        serde_json::from_value(body).unwrap()
    }

    fn admit_as_acme(body: Value, tenant: &TenantRecord) -> Result<NewJob, Refusal> {
        let limits = Limits::default();
        let admission = Admission {
            tenant,
            owner: "ada",
            plugin_digest: "sha256:x",
            plugin_retry_on: None,
            defaults: &limits,
            caps: &limits,
            now: 1_000,
            chained: false,
        };
        admit(request(body), &admission)
    }

    fn acme() -> TenantRecord {
        TenantRecord { name: "acme".into(), ..TenantRecord::default() }
    }

    #[test]
    fn a_request_becomes_a_job_of_the_tenant_with_absolute_times() {
        let body =
            json!({"job": "a.b", "delay_ms": 500, "expires_in_ms": 60, "queue": "q", "lock": "l"});
        let new = admit_as_acme(body, &acme()).unwrap();
        assert_eq!((new.run_at, new.expires_at), (Some(1_500), Some(1_060)));
        assert_eq!((new.queue.as_str(), new.lock.as_deref()), ("acme/q", Some("acme/l")));
        assert_eq!(
            (new.tenant.as_str(), new.owner.as_str(), new.args.as_str()),
            ("acme", "ada", "{}")
        );
        assert!(new.fingerprint.is_empty(), "no key, nothing to compare");
    }

    #[test]
    fn bad_fields_are_refused_by_name() {
        let cases = [
            (json!({"job": "a.b", "delay_ms": 1, "run_at": 1}), "delay_ms"),
            (json!({"job": "a.b", "queue": "no spaces"}), "queue"),
            (json!({"job": "a.b", "max_retries": 101}), "max_retries"),
            (json!({"job": "a.b", "priority": 2_147_483_647}), "priority"),
            (json!({"job": "a.b", "priority": -1001}), "priority"),
            (json!({"job": "a.b", "backoff": {"base_ms": 9, "max_ms": 1}}), "backoff"),
            (json!({"job": "a.b", "tags": vec!["t"; 33]}), "tags"),
            (json!({"job": "a.b", "limits": {"fuel": u64::MAX}}), "limits.fuel"),
        ];
        for (body, field) in cases {
            let refusal = admit_as_acme(body, &acme()).unwrap_err();
            assert!(matches!(&refusal, Refusal::Invalid(m) if m.contains(field)), "{refusal:?}");
        }
        let big = json!({"job": "a.b", "args": {"x": "y".repeat(2 << 20)}});
        assert!(matches!(admit_as_acme(big, &acme()), Err(Refusal::TooLarge(_))));
    }

    #[test]
    fn a_tenant_cap_fills_in_and_refuses_above_it() {
        let capped = TenantRecord {
            max_limits: LimitOverrides { fuel: Some(1_000), ..LimitOverrides::default() },
            ..acme()
        };
        assert_eq!(admit_as_acme(json!({"job": "a.b"}), &capped).unwrap().limits.fuel, Some(1_000));
        let over = admit_as_acme(json!({"job": "a.b", "limits": {"fuel": 2_000}}), &capped);
        assert!(matches!(over, Err(Refusal::Invalid(m)) if m.contains("limits.fuel")));
        let modest = TenantRecord { max_priority: Some(10), ..acme() };
        assert!(admit_as_acme(json!({"job": "a.b", "priority": 10}), &modest).is_ok());
        let high = admit_as_acme(json!({"job": "a.b", "priority": 11}), &modest);
        assert!(matches!(high, Err(Refusal::Invalid(m)) if m.contains("between -1000 and 10")));
    }

    #[test]
    fn the_same_key_with_another_body_names_what_differs() {
        let first = json!({"job": "a.b", "args": {"n": 1}, "idempotency_key": "k"});
        let new = admit_as_acme(first.clone(), &acme()).unwrap();
        let job = JobRecord::new(new, uuid::Uuid::now_v7(), 1_000);
        assert_eq!(idempotency_conflict(&job, &request(first).fingerprint()), None);
        let other = json!({"job": "a.b", "args": {"n": 2}, "queue": "q", "idempotency_key": "k"});
        let differs = idempotency_conflict(&job, &request(other).fingerprint()).unwrap();
        assert_eq!(differs, "args, queue");
    }
}
