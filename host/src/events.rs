//! The in-process events bus: every state change, progress update and log
//! line of every job, published at once for live followers (SSE). Durable
//! history is in storage; the bus is only "what is happening now", so a
//! follower that lags too far is told so and reads the rest from storage.

use crate::jobs::LogLevel;
use crate::jobs::{JobState, Millis, Progress};
use std::sync::Arc;
use tokio::sync::broadcast;
use uuid::Uuid;

/// Events kept for slow subscribers before they lag.
const CAPACITY: usize = 4096;

/// What happened to a job.
#[derive(Debug, Clone, PartialEq)]
pub enum JobUpdate {
    /// It entered `state`.
    State {
        /// The new state.
        state: JobState,
        /// Why, as journaled.
        reason: String,
    },
    /// It reported progress.
    Progress(Progress),
    /// It logged a line.
    Log {
        /// When.
        at: Millis,
        /// Severity.
        level: LogLevel,
        /// Text.
        message: String,
    },
}

/// One event on the bus.
#[derive(Debug, Clone, PartialEq)]
pub struct JobEventNotice {
    /// The job.
    pub job: Uuid,
    /// Its tenant, so followers filter without a lookup.
    pub tenant: String,
    /// What happened.
    pub update: JobUpdate,
}

/// A cloneable handle on the bus.
#[derive(Debug, Clone)]
pub struct EventBus {
    sender: broadcast::Sender<Arc<JobEventNotice>>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self { sender: broadcast::channel(CAPACITY).0 }
    }
}

impl EventBus {
    /// Publishes; nobody listening is fine.
    pub fn publish(&self, job: Uuid, tenant: &str, update: JobUpdate) {
        let _ =
            self.sender.send(Arc::new(JobEventNotice { job, tenant: tenant.to_string(), update }));
    }

    /// Receives everything published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<JobEventNotice>> {
        self.sender.subscribe()
    }
}
