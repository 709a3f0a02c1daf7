//! Where a running job's live output goes. The runtime calls the observer
//! synchronously from host imports, so implementations must be quick: hand
//! the value to a channel or buffer, never block on I/O.

use crate::jobs::LogLevel;

/// Receives what a job reports while it runs. Log lines arrive already
/// bounded by the job's limits; progress arrives clamped to 0..=100.
pub trait JobObserver: Send + Sync {
    /// One line of the job log.
    fn log(&self, level: LogLevel, message: &str);
    /// A progress update.
    fn progress(&self, percent: f32, message: Option<&str>);
    /// A metadata value the job attached under `key`.
    fn metadata(&self, key: &str, value: serde_json::Value);
}

/// An observer that drops everything, for callers that only want the outcome.
#[derive(Debug, Clone, Copy, Default)]
pub struct IgnoreOutput;

impl JobObserver for IgnoreOutput {
    fn log(&self, _: LogLevel, _: &str) {}
    fn progress(&self, _: f32, _: Option<&str>) {}
    fn metadata(&self, _: &str, _: serde_json::Value) {}
}
