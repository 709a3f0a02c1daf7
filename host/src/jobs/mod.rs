//! The job model: what a job is and the rules of its life, with no
//! wasmtime, redb or HTTP in it. Every other part speaks these types.
//!
//! - `record`: a job as stored ([`JobRecord`]), what a client asks for
//!   ([`NewJob`]), its states, journal events and log lines.
//! - `admin`: tenants and quotas, tokens and roles, plugins, workers.
//! - `enqueue`: what a client may ask for and how it becomes a job; the
//!   idempotency rule; `changes`: what it may change later (labels, a
//!   retry's or clone's settings).
//! - `limits`: sandbox limits as data, per job, per plugin, and the caps.
//! - `flow`: how jobs relate (dependencies, results passed on, chains,
//!   workflow steps, children, schedules) and the rule that settles a job
//!   whose dependencies finished; `workflow`: graphs of steps; `schedule`:
//!   cron schedules.
//! - `outcome`: how a run ended ([`Outcome`], [`FailureKind`]).
//! - `rules`: the rules as pure functions of (record, event, now): what a
//!   claim, an outcome, a lost worker, a cancel or the clock does to a job.
//!   Storage persists what they decide; a second backend reuses them.
//! - `clock`: where "now" comes from, so tests can drive time; `when`:
//!   times as clients send them (epoch ms or RFC 3339).

mod admin;
pub mod changes;
mod clock;
pub mod enqueue;
pub mod flow;
mod limits;
mod outcome;
mod record;
pub mod rules;
pub mod schedule;
pub mod when;
pub mod workflow;

pub use admin::{
    PluginRecord, QueueSettings, Role, TenantDefaults, TenantRecord, TokenRecord, WorkerMode,
    WorkerRecord,
};
pub use clock::{Clock, ManualClock, SystemClock};
pub use flow::{DependencyFailure, Flow};
pub use limits::{LimitOverrides, Limits};
pub use outcome::{FailureKind, LogLevel, Outcome, RunReport};
pub use record::{
    Backoff, JobError, JobEvent, JobRecord, JobState, LogLine, MAX_METADATA_BYTES,
    MAX_METADATA_KEYS, Millis, NewJob, Progress, WebhookState, WebhookStatus, now_ms, stored_json,
};
pub use rules::{RetryPolicy, Transition};
