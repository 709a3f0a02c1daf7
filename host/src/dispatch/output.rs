//! A running job's output on its way out: published on the bus at once,
//! buffered for storage and written in batches (the latest progress always
//! kept, earlier ones coalesced).

use crate::events::{EventBus, JobUpdate};
use crate::jobs::LogLevel;
use crate::jobs::{Clock, Progress};
use crate::runtime::JobObserver;
use crate::storage::OutputBatch;
use std::sync::{Arc, Mutex};
use uuid::Uuid;

/// The observer the dispatcher gives each run.
pub(super) struct JobOutput {
    job: Uuid,
    tenant: String,
    bus: EventBus,
    clock: Arc<dyn Clock>,
    pending: Mutex<OutputBatch>,
}

impl JobOutput {
    pub(super) fn new(job: Uuid, tenant: String, bus: EventBus, clock: Arc<dyn Clock>) -> Self {
        Self { job, tenant, bus, clock, pending: Mutex::default() }
    }

    /// What was reported since the last call, for one storage write.
    pub(super) fn take(&self) -> Option<OutputBatch> {
        let batch = std::mem::take(&mut *self.pending.lock().unwrap());
        (batch != OutputBatch::default()).then_some(batch)
    }
}

impl JobObserver for JobOutput {
    fn log(&self, level: LogLevel, message: &str) {
        let at = self.clock.now();
        self.pending.lock().unwrap().logs.push((at, level, message.to_string()));
        let update = JobUpdate::Log { at, level, message: message.to_string() };
        self.bus.publish(self.job, &self.tenant, update);
    }

    fn progress(&self, percent: f32, message: Option<&str>) {
        let progress = Progress { percent, message: message.map(String::from) };
        self.pending.lock().unwrap().progress = Some(progress.clone());
        self.bus.publish(self.job, &self.tenant, JobUpdate::Progress(progress));
    }

    fn metadata(&self, key: &str, value: serde_json::Value) {
        self.pending.lock().unwrap().metadata.insert(key.to_string(), value);
    }
}
