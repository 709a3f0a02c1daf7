//! How a run ended, and the severity of what a job logs on the way. Each way a job can fail has its own kind, so callers
//! (retry policy, the API, a user reading the job) can branch on it.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// Why a run did not complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The job returned its own error.
    PluginError,
    /// The guest trapped: a panic, `unreachable`, a stack overflow, a bad access.
    Trap,
    /// The fuel budget ran out.
    FuelExhausted,
    /// The wall-time limit passed.
    Timeout,
    /// The guest needed more memory (or table space) than its limit.
    MemoryLimit,
    /// Someone cancelled the job.
    Cancelled,
    /// The host could not run the job (bad args size, instantiation failure).
    HostError,
}

impl FailureKind {
    /// The stable snake_case name used in job records and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::PluginError => "plugin_error",
            FailureKind::Trap => "trap",
            FailureKind::FuelExhausted => "fuel_exhausted",
            FailureKind::Timeout => "timeout",
            FailureKind::MemoryLimit => "memory_limit",
            FailureKind::Cancelled => "cancelled",
            FailureKind::HostError => "host_error",
        }
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The end of one run: the job's JSON result, or a failure with a message
/// that names the limit or error that stopped it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome {
    /// `run` returned `ok`; `result` is its JSON.
    Completed {
        /// The job's result, as JSON text.
        result: String,
    },
    /// The run failed.
    Failed {
        /// What kind of failure.
        kind: FailureKind,
        /// Details for a person: the plugin's message, the trap, the limit.
        message: String,
    },
}

impl Outcome {
    pub(crate) fn failed(kind: FailureKind, message: impl Into<String>) -> Self {
        Outcome::Failed { kind, message: message.into() }
    }

    /// The failure kind, or `None` when the run completed.
    pub fn failure_kind(&self) -> Option<FailureKind> {
        match self {
            Outcome::Completed { .. } => None,
            Outcome::Failed { kind, .. } => Some(*kind),
        }
    }
}

/// What the runtime measured about one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    /// How it ended.
    pub outcome: Outcome,
    /// Fuel burnt by the guest.
    pub fuel_used: u64,
    /// Wall time from the start of instantiation to the end (JSON: ms).
    #[serde(with = "super::limits::millis")]
    pub duration: Duration,
    /// Largest total linear memory the guest held, in bytes.
    pub memory_peak: u64,
}

/// Severity of a log line, from the guest's `log` or its stdout (`Info`) and
/// stderr (`Error`).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Very detailed tracing.
    Trace,
    /// Debugging detail.
    Debug,
    /// Normal information, and guest stdout.
    Info,
    /// Something unexpected the job survived.
    Warn,
    /// Failures, and guest stderr (where panics are printed).
    Error,
}
