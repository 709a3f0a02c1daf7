//! Per-queue health, as an operator dashboard shows it: how many jobs are in
//! each state, how many look stuck, and over a recent window how many
//! finished, how many of those succeeded and how long they took.

use crate::jobs::{JobState, Millis, QueueSettings};
use serde::Serialize;
use std::collections::BTreeMap;

/// Health of one queue.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueueStats {
    /// Queue name.
    pub queue: String,
    /// Paused, concurrency.
    pub settings: QueueSettings,
    /// Jobs per state (state name → count).
    pub counts: BTreeMap<&'static str, usize>,
    /// Running jobs whose lease expired (their worker is gone) plus ready
    /// jobs that waited longer than the stuck threshold (to the minute).
    pub stuck: usize,
    /// Jobs that finished in the window (to the minute: a minute counts if
    /// any of it is in the window).
    pub finished: usize,
    /// Of those, completed.
    pub completed: usize,
    /// Finished jobs per minute over the window.
    pub throughput_per_minute: f64,
    /// completed / finished in the window; `None` when nothing finished.
    pub success_rate: Option<f64>,
    /// Mean run time (start to finish) of jobs completed in the window.
    pub average_duration_ms: Option<f64>,
    /// Jobs completed and failed in each of the last [`MINUTES`] minutes of
    /// the clock (the last one is the current minute), oldest first.
    #[serde(skip)]
    pub minutes: [Minute; MINUTES],
    #[serde(skip)]
    total_duration_ms: u64,
}

/// How many minutes [`QueueStats::minutes`] covers.
pub const MINUTES: usize = 60;

/// Jobs that finished in one minute.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Minute {
    /// Completed in it.
    pub completed: u32,
    /// Failed in it.
    pub failed: u32,
}

impl QueueStats {
    pub(super) fn new(queue: &str) -> Self {
        Self {
            queue: queue.to_string(),
            settings: QueueSettings::default(),
            counts: BTreeMap::new(),
            stuck: 0,
            finished: 0,
            completed: 0,
            throughput_per_minute: 0.0,
            success_rate: None,
            average_duration_ms: None,
            minutes: [Minute::default(); MINUTES],
            total_duration_ms: 0,
        }
    }

    /// Adds `count` jobs in `state`.
    pub(super) fn add_jobs(&mut self, state: JobState, count: u64) {
        *self.counts.entry(state.as_str()).or_default() += count as usize;
    }

    /// Adds the jobs that finished in the minute starting at `start`: those
    /// that `completed` (running `completed_ms` between them) and `failed`.
    /// A minute counts in the window if any of it does.
    pub(super) fn add_finished(
        &mut self,
        now: Millis,
        window_ms: u64,
        start: Millis,
        completed: u64,
        failed: u64,
        completed_ms: u64,
    ) {
        let ago = (now / 60_000).saturating_sub(start / 60_000) as usize;
        if let Some(minute) = MINUTES.checked_sub(ago + 1).map(|i| &mut self.minutes[i]) {
            minute.completed += completed as u32;
            minute.failed += failed as u32;
        }
        if start + 60_000 + window_ms > now {
            self.finished += (completed + failed) as usize;
            self.completed += completed as usize;
            self.total_duration_ms += completed_ms;
        }
    }

    /// Turns the sums into rates once every job is counted.
    pub(super) fn finish(&mut self, window_ms: u64) {
        self.throughput_per_minute = self.finished as f64 * 60_000.0 / window_ms.max(1) as f64;
        if self.finished > 0 {
            self.success_rate = Some(self.completed as f64 / self.finished as f64);
        }
        if self.completed > 0 {
            self.average_duration_ms = Some(self.total_duration_ms as f64 / self.completed as f64);
        }
    }
}
