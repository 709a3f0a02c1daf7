//! What is stored about a job: its record, its state, the events journal and
//! its log lines. Records are plain serde types, so every backend stores the
//! same shape.

use super::{FailureKind, Flow, LimitOverrides, LogLevel};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;
use uuid::Uuid;

/// Metadata keys a job may set itself, over all its attempts.
pub const MAX_METADATA_KEYS: usize = 64;
/// Bytes of metadata (keys and JSON values) a job may hold, over all its
/// attempts: a guest cannot grow its record, and every read of it, past this.
pub const MAX_METADATA_BYTES: usize = 256 << 10;

/// Milliseconds since the Unix epoch.
pub type Millis = u64;

/// Now, in [`Millis`].
pub fn now_ms() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as Millis)
        .unwrap_or(0)
}

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting for the jobs it depends on to finish.
    Blocked,
    /// Waiting for its `run_at`.
    Scheduled,
    /// Ready to run.
    Pending,
    /// Claimed by a worker, which holds a lease.
    Running,
    /// Ran and returned a result.
    Completed,
    /// Ran and failed, with no retry left.
    Failed,
    /// Cancelled before or while running.
    Cancelled,
    /// Not started before its `expires_at`.
    Expired,
}

impl JobState {
    /// Every state. Storage keeps a state as its place here, so a new
    /// state goes at the end.
    pub const ALL: [JobState; 8] = [
        Self::Blocked,
        Self::Scheduled,
        Self::Pending,
        Self::Running,
        Self::Completed,
        Self::Failed,
        Self::Cancelled,
        Self::Expired,
    ];

    /// True for states a job never leaves.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Cancelled | Self::Expired)
    }

    /// The snake_case name used in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Blocked => "blocked",
            Self::Scheduled => "scheduled",
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::Expired => "expired",
        }
    }
}

/// Exponential backoff between attempts: `base * 2^(attempt-1)`, capped at
/// `max`, with up to 25 % random jitter so retries of many jobs spread out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Backoff {
    /// Delay before the first retry, in ms.
    pub base_ms: u64,
    /// Longest delay, in ms.
    pub max_ms: u64,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { base_ms: 1_000, max_ms: 300_000 }
    }
}

impl Backoff {
    /// The delay after attempt number `attempt` (1 = the first run)
    /// failed; `random` (any number, from the caller's generator) picks the
    /// jitter, so the rule itself stays a pure function.
    pub fn delay_ms(&self, attempt: u32, random: u64) -> u64 {
        let exponent = attempt.saturating_sub(1).min(32);
        let delay = self.base_ms.saturating_mul(1u64 << exponent).min(self.max_ms);
        delay.saturating_add(random % (delay / 4 + 1))
    }
}

/// The last progress a job reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Progress {
    /// 0..=100.
    pub percent: f32,
    /// What the job said with it.
    pub message: Option<String>,
}

/// Why a job failed: the runtime's failure kind and a message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobError {
    /// What kind of failure.
    pub kind: FailureKind,
    /// Details for a person.
    pub message: String,
}

/// What a client asks for when enqueuing. Everything but `job` has a default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NewJob {
    /// The id it gets; `None`: a new UUID v7. Set by the host only, for
    /// workflow steps, which are linked to each other before they are
    /// written.
    pub id: Option<Uuid>,
    /// Tenant the job belongs to.
    pub tenant: String,
    /// Who enqueued it (a user or token name).
    pub owner: String,
    /// Qualified plugin name.
    pub job: String,
    /// Digest of the plugin version it runs.
    pub plugin_digest: String,
    /// JSON args.
    pub args: String,
    /// Queue name; `default` when empty.
    pub queue: String,
    /// Higher runs first.
    pub priority: i32,
    /// Earliest start; `None` means now.
    pub run_at: Option<Millis>,
    /// Not started by then: `expired`.
    pub expires_at: Option<Millis>,
    /// Retries after a retriable failure.
    pub max_retries: u32,
    /// Failure kinds retried; `None` is the host's retry policy.
    pub retry_on: Option<Vec<FailureKind>>,
    /// Delay between attempts.
    pub backoff: Backoff,
    /// Limits asked for.
    pub limits: LimitOverrides,
    /// Named lock held while running.
    pub lock: Option<String>,
    /// The same key from the same tenant returns the existing job.
    pub idempotency_key: Option<String>,
    /// A label for people.
    pub name: Option<String>,
    /// Free text.
    pub description: Option<String>,
    /// Labels to filter by.
    pub tags: Vec<String>,
    /// Client metadata. What the job sets itself goes to
    /// [`JobRecord::plugin_metadata`], so a guest cannot overwrite it.
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// URL that receives the final job record once the job finishes.
    pub callback_url: Option<String>,
    /// One digest per field of the request that carried the idempotency
    /// key, so the same key with another body can be told apart.
    pub fingerprint: BTreeMap<String, String>,
    /// How it relates to other jobs: what it waits for, the workflow it is
    /// a step of, the job that spawned it, the schedule that fired it.
    pub flow: Flow,
    /// The job that follows it, given its result (a chain): written with
    /// it, `blocked` until it finishes.
    pub next: Option<Box<NewJob>>,
}

/// Everything stored about one job. A field at its default is left out
/// of the stored form ([`is_default`]): a job is written three times or
/// more and read at every step, and most of its fields stay empty: a
/// fresh job's record is a third of its full form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobRecord {
    /// UUID v7: time-ordered, so ids sort by creation.
    pub id: Uuid,
    /// Tenant.
    pub tenant: String,
    /// Who enqueued it.
    pub owner: String,
    /// Qualified plugin name.
    pub job: String,
    /// Plugin version.
    pub plugin_digest: String,
    /// JSON args (the API shows them as JSON, not a string).
    #[schema(value_type = Object)]
    pub args: String,
    /// Queue.
    pub queue: String,
    /// Higher runs first.
    #[serde(default, skip_serializing_if = "is_default")]
    pub priority: i32,
    /// Current state.
    pub state: JobState,
    /// Attempts started so far.
    #[serde(default, skip_serializing_if = "is_default")]
    pub attempt: u32,
    /// Retries allowed after the first attempt.
    #[serde(default, skip_serializing_if = "is_default")]
    pub max_retries: u32,
    /// Failure kinds retried; `None` is the host's retry policy.
    #[serde(default, skip_serializing_if = "is_default")]
    pub retry_on: Option<Vec<FailureKind>>,
    /// Delay between attempts.
    #[serde(default, skip_serializing_if = "is_default")]
    pub backoff: Backoff,
    /// Earliest (next) start.
    pub run_at: Millis,
    /// Enqueue time.
    pub created_at: Millis,
    /// Start of the latest attempt.
    #[serde(default, skip_serializing_if = "is_default")]
    pub started_at: Option<Millis>,
    /// When it reached a terminal state.
    #[serde(default, skip_serializing_if = "is_default")]
    pub finished_at: Option<Millis>,
    /// Deadline to start.
    #[serde(default, skip_serializing_if = "is_default")]
    pub expires_at: Option<Millis>,
    /// Limits asked for.
    #[serde(default, skip_serializing_if = "is_default")]
    pub limits: LimitOverrides,
    /// Named lock.
    #[serde(default, skip_serializing_if = "is_default")]
    pub lock: Option<String>,
    /// Idempotency key.
    #[serde(default, skip_serializing_if = "is_default")]
    pub idempotency_key: Option<String>,
    /// Label.
    #[serde(default, skip_serializing_if = "is_default")]
    pub name: Option<String>,
    /// Free text.
    #[serde(default, skip_serializing_if = "is_default")]
    pub description: Option<String>,
    /// Labels.
    #[serde(default, skip_serializing_if = "is_default")]
    pub tags: Vec<String>,
    /// Metadata the client set.
    #[schema(value_type = Object)]
    #[serde(default, skip_serializing_if = "is_default")]
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// Metadata the job set with `set-metadata`, kept apart from the
    /// client's and bounded by [`MAX_METADATA_KEYS`] and
    /// [`MAX_METADATA_BYTES`].
    #[schema(value_type = Object)]
    #[serde(default, skip_serializing_if = "is_default")]
    pub plugin_metadata: serde_json::Map<String, serde_json::Value>,
    /// Latest progress.
    #[serde(default, skip_serializing_if = "is_default")]
    pub progress: Option<Progress>,
    /// JSON result when completed (shown as JSON by the API).
    #[schema(value_type = Option<Object>)]
    #[serde(default, skip_serializing_if = "is_default")]
    pub result: Option<String>,
    /// Failure of the latest attempt.
    #[serde(default, skip_serializing_if = "is_default")]
    pub error: Option<JobError>,
    /// Fuel used over all attempts.
    #[serde(default, skip_serializing_if = "is_default")]
    pub fuel_used: u64,
    /// Most linear memory any attempt held at once, in bytes.
    #[serde(default, skip_serializing_if = "is_default")]
    pub memory_peak: u64,
    /// Worker running it (or that ran it last).
    #[serde(default, skip_serializing_if = "is_default")]
    pub worker: Option<String>,
    /// While running: the lease expiry; recovery requeues it after that.
    #[serde(default, skip_serializing_if = "is_default")]
    pub lease_until: Option<Millis>,
    /// The job this one retries.
    #[serde(default, skip_serializing_if = "is_default")]
    pub retry_of: Option<Uuid>,
    /// The job that retried this one.
    #[serde(default, skip_serializing_if = "is_default")]
    pub retried_by: Option<Uuid>,
    /// The job this one is a clone of.
    #[serde(default, skip_serializing_if = "is_default")]
    pub cloned_from: Option<Uuid>,
    /// Someone asked to cancel it while it ran; recovery cancels instead of
    /// requeuing, and a worker that claims it late cancels at once.
    #[serde(default, skip_serializing_if = "is_default")]
    pub cancel_requested: bool,
    /// Times its worker died (lease expired) while running it.
    #[serde(default, skip_serializing_if = "is_default")]
    pub leases_lost: u32,
    /// Only this worker may run it (one copy of a broadcast job).
    #[serde(default, skip_serializing_if = "is_default")]
    pub pinned_to: Option<String>,
    /// The broadcast this job is a copy of: every copy has the same id.
    #[serde(default, skip_serializing_if = "is_default")]
    pub broadcast: Option<Uuid>,
    /// URL that receives the final job record once the job finishes.
    #[serde(default, skip_serializing_if = "is_default")]
    pub callback_url: Option<String>,
    /// How its completion webhook went, once one was tried.
    #[serde(default, skip_serializing_if = "is_default")]
    pub webhook: Option<WebhookStatus>,
    /// Digests of the enqueue request's fields (see [`NewJob::fingerprint`]).
    #[schema(ignore)]
    #[serde(default, skip_serializing_if = "is_default")]
    pub fingerprint: BTreeMap<String, String>,
    /// Dependencies, chain, workflow, parent and children, schedule.
    #[serde(default, skip_serializing_if = "is_default")]
    pub flow: Flow,
}

/// Whether a field of [`JobRecord`] is at its default, which a record
/// read back takes for a field it lacks.
fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

impl JobRecord {
    /// A record for `new` with id `id` (a UUID v7), created at `now`.
    pub fn new(new: NewJob, id: Uuid, now: Millis) -> JobRecord {
        let run_at = new.run_at.unwrap_or(now).max(now);
        let state = if run_at > now { JobState::Scheduled } else { JobState::Pending };
        JobRecord {
            id,
            tenant: new.tenant,
            owner: new.owner,
            job: new.job,
            plugin_digest: new.plugin_digest,
            args: new.args,
            queue: if new.queue.is_empty() { "default".into() } else { new.queue },
            priority: new.priority,
            state,
            attempt: 0,
            max_retries: new.max_retries,
            retry_on: new.retry_on,
            backoff: new.backoff,
            run_at,
            created_at: now,
            started_at: None,
            finished_at: None,
            expires_at: new.expires_at,
            limits: new.limits,
            lock: new.lock,
            idempotency_key: new.idempotency_key,
            name: new.name,
            description: new.description,
            tags: new.tags,
            metadata: new.metadata,
            plugin_metadata: Default::default(),
            progress: None,
            result: None,
            error: None,
            fuel_used: 0,
            memory_peak: 0,
            worker: None,
            lease_until: None,
            retry_of: None,
            retried_by: None,
            cloned_from: None,
            cancel_requested: false,
            leases_lost: 0,
            pinned_to: None,
            broadcast: None,
            callback_url: new.callback_url,
            webhook: None,
            fingerprint: new.fingerprint,
            flow: new.flow,
        }
    }
}

impl JobRecord {
    /// Adds what the job set with `set-metadata`, within the per-job caps
    /// over all attempts; returns the keys left out.
    pub fn add_plugin_metadata(
        &mut self,
        entries: impl IntoIterator<Item = (String, serde_json::Value)>,
    ) -> Vec<String> {
        let size = |key: &str, value: &serde_json::Value| key.len() + value.to_string().len();
        let mut total: usize = self.plugin_metadata.iter().map(|(k, v)| size(k, v)).sum();
        let mut left_out = Vec::new();
        for (key, value) in entries {
            let replaced = self.plugin_metadata.get(&key).map(|old| size(&key, old));
            let after = total - replaced.unwrap_or(0) + size(&key, &value);
            let too_many = replaced.is_none() && self.plugin_metadata.len() >= MAX_METADATA_KEYS;
            if too_many || after > MAX_METADATA_BYTES {
                left_out.push(key);
                continue;
            }
            total = after;
            self.plugin_metadata.insert(key, value);
        }
        left_out
    }
}

/// One entry of a job's journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobEvent {
    /// Position in the job's journal, from 1; SSE uses it as the event id.
    pub seq: u64,
    /// When it happened.
    pub at: Millis,
    /// The state entered.
    pub state: JobState,
    /// The state left, `None` for the enqueue.
    pub from: Option<JobState>,
    /// Worker involved, if any.
    pub worker: Option<String>,
    /// Why, for a person ("claimed", "lease expired", "retry in 2 s", ...).
    pub reason: String,
}

/// One line of a job's log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LogLine {
    /// Position in the job's log, from 1.
    pub seq: u64,
    /// When it was written.
    pub at: Millis,
    /// The attempt that wrote it.
    pub attempt: u32,
    /// Severity.
    pub level: LogLevel,
    /// The text.
    pub message: String,
}

/// JSON a job stored as text (its result, its metadata) as a value, or as
/// a string if the text is not JSON, for whoever shows it.
pub fn stored_json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|_| serde_json::Value::String(text.to_string()))
}

/// How the completion webhook of a finished job went, after its latest try.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WebhookStatus {
    /// Where it stands now.
    pub state: WebhookState,
    /// Deliveries tried.
    pub attempts: u32,
    /// When the latest was tried.
    pub last_attempt_at: Option<Millis>,
    /// When the next will be, while retrying.
    pub next_attempt_at: Option<Millis>,
    /// Why the latest failed.
    pub error: Option<String>,
}

impl WebhookStatus {
    /// A webhook due at `at`, not tried yet: written as the job finishes.
    pub fn pending(at: Millis) -> Self {
        let state = WebhookState::Pending;
        Self { state, attempts: 0, last_attempt_at: None, next_attempt_at: Some(at), error: None }
    }
}

/// Where a completion webhook stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WebhookState {
    /// The job finished; no delivery tried yet.
    Pending,
    /// A delivery failed; another comes at `next_attempt_at`.
    Retrying,
    /// The receiver answered 2xx.
    Delivered,
    /// Every attempt failed; no more come.
    GivenUp,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_exponentially_with_bounded_jitter_and_a_cap() {
        let backoff = Backoff { base_ms: 100, max_ms: 1_000 };
        for random in [0, 1, 24, 25, 26, u64::MAX] {
            assert!((100..=125).contains(&backoff.delay_ms(1, random)));
            assert!((400..=500).contains(&backoff.delay_ms(3, random)));
            assert!((1_000..=1_250).contains(&backoff.delay_ms(30, random)));
        }
        assert_eq!((backoff.delay_ms(1, 0), backoff.delay_ms(1, 25)), (100, 125));
        let huge = Backoff { base_ms: u64::MAX, max_ms: u64::MAX };
        assert_eq!(huge.delay_ms(40, u64::MAX), u64::MAX, "saturates instead of wrapping");
    }

    #[test]
    fn a_future_run_at_schedules_and_queue_defaults() {
        let now = 1_000;
        let later = JobRecord::new(
            NewJob { run_at: Some(5_000), ..NewJob::default() },
            Uuid::now_v7(),
            now,
        );
        assert_eq!((later.state, later.run_at), (JobState::Scheduled, 5_000));
        let past =
            JobRecord::new(NewJob { run_at: Some(10), ..NewJob::default() }, Uuid::now_v7(), now);
        assert_eq!(
            (past.state, past.run_at, past.queue.as_str()),
            (JobState::Pending, now, "default")
        );
    }

    #[test]
    fn a_record_leaves_its_defaults_out_and_reads_the_full_form_stored_before() {
        let stored_before = r#"{"id":"01a25032-798e-70c2-90d4-09b787a77a74","tenant":"default","owner":"admin","job":"examples.hello","plugin_digest":"sha256:0fd644d350c1b6fd2ae5f2a4fbc78c7367036b77bfed87695a42bb0e8bd7698d","args":"{\"name\":\"bench\"}","queue":"default/wrk","priority":0,"state":"pending","attempt":0,"max_retries":0,"backoff":{"base_ms":1000,"max_ms":300000},"run_at":1796641814926,"created_at":1796641814926,"started_at":null,"finished_at":null,"expires_at":null,"limits":{"fuel":null,"wall_time":null,"memory_bytes":null,"table_elements":null,"log_lines":null,"log_bytes":null,"payload_bytes":null,"cancel_grace":null},"lock":null,"idempotency_key":null,"name":null,"description":null,"tags":[],"metadata":{},"plugin_metadata":{},"progress":null,"result":null,"error":null,"fuel_used":0,"memory_peak":0,"worker":null,"lease_until":null,"retry_of":null,"retried_by":null,"cancel_requested":false,"leases_lost":0,"pinned_to":null,"flow":{}}"#;
        let job: JobRecord = serde_json::from_str(stored_before).expect("the older form reads");
        assert_eq!(
            (job.state, job.args.as_str(), job.started_at),
            (JobState::Pending, r#"{"name":"bench"}"#, None)
        );
        let written = serde_json::to_string(&job).unwrap();
        assert!(written.len() * 2 < stored_before.len(), "{written}");
        for absent in ["started_at", "limits", "tags", "metadata", "attempt", "flow", "backoff"] {
            assert!(!written.contains(absent), "{absent} at its default is left out: {written}");
        }
        assert_eq!(serde_json::from_str::<JobRecord>(&written).unwrap(), job);

        let mut set = job.clone();
        set.attempt = 2;
        set.cancel_requested = true;
        set.tags = vec!["nightly".into()];
        set.limits.fuel = Some(7);
        set.backoff = Backoff { base_ms: 5, max_ms: 50 };
        set.started_at = Some(1);
        let written = serde_json::to_string(&set).unwrap();
        assert_eq!(serde_json::from_str::<JobRecord>(&written).unwrap(), set, "{written}");
    }
}
