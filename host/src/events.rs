//! The in-process events bus: every state change, progress update and log
//! line of every job, published at once for live followers (SSE). Durable
//! history is in storage; the bus is only "what is happening now", so a
//! follower that lags too far is told so and reads the rest from storage.
//! Hosts sharing a PostgreSQL database relay their buses to each other
//! (`storage::postgres::relay`), so a follower on one host sees a job that
//! runs on another as it happens.

use crate::jobs::LogLevel;
use crate::jobs::{JobState, Millis, Progress};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tokio::sync::broadcast;
use uuid::Uuid;

/// Events kept for slow subscribers before they lag.
const CAPACITY: usize = 4096;

/// What happened to a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobEventNotice {
    /// The job.
    pub job: Uuid,
    /// Its tenant, so followers filter without a lookup.
    pub tenant: String,
    /// What happened.
    pub update: JobUpdate,
    /// It happened on another host and was relayed here, so it is never
    /// relayed again.
    #[serde(skip)]
    pub relayed: bool,
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
        let tenant = tenant.to_string();
        let _ = self.sender.send(Arc::new(JobEventNotice { job, tenant, update, relayed: false }));
    }

    /// Publishes what another host published on its bus.
    pub fn publish_relayed(&self, notice: JobEventNotice) {
        let _ = self.sender.send(Arc::new(JobEventNotice { relayed: true, ..notice }));
    }

    /// Receives everything published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<JobEventNotice>> {
        self.sender.subscribe()
    }
}
