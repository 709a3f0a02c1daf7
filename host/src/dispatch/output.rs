//! A running job's output on its way out: published on the bus at once,
//! buffered for storage and written in batches (the latest progress always
//! kept, earlier ones coalesced). Progress reaches the bus at most every
//! [`PROGRESS_EVERY`] per job, the latest sent with the next flush, so a
//! guest reporting in a tight loop cannot flood the bus every tenant shares.

use crate::events::{EventBus, JobUpdate};
use crate::jobs::LogLevel;
use crate::jobs::{Clock, Progress};
use crate::runtime::JobObserver;
use crate::storage::OutputBatch;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Shortest time between two progress events of one job on the bus.
const PROGRESS_EVERY: Duration = Duration::from_millis(50);

/// The observer the dispatcher gives each run.
pub(super) struct JobOutput {
    job: Uuid,
    tenant: String,
    bus: EventBus,
    clock: Arc<dyn Clock>,
    pending: Mutex<OutputBatch>,
    /// When progress last went to the bus, and the latest not sent yet.
    progress_sent: Mutex<(Option<Instant>, Option<Progress>)>,
}

impl JobOutput {
    pub(super) fn new(job: Uuid, tenant: String, bus: EventBus, clock: Arc<dyn Clock>) -> Self {
        Self { job, tenant, bus, clock, pending: Mutex::default(), progress_sent: Mutex::default() }
    }

    /// What was reported since the last call, for one storage write; the
    /// latest progress held back from the bus goes out now.
    pub(super) fn take(&self) -> Option<OutputBatch> {
        let unsent = self.progress_sent.lock().unwrap().1.take();
        if let Some(progress) = unsent {
            self.publish_progress(progress);
        }
        let batch = std::mem::take(&mut *self.pending.lock().unwrap());
        (batch != OutputBatch::default()).then_some(batch)
    }
}

impl JobOutput {
    fn publish_progress(&self, progress: Progress) {
        *self.progress_sent.lock().unwrap() = (Some(Instant::now()), None);
        self.bus.publish(self.job, &self.tenant, JobUpdate::Progress(progress));
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
        let mut sent = self.progress_sent.lock().unwrap();
        if sent.0.is_some_and(|at| at.elapsed() < PROGRESS_EVERY) {
            sent.1 = Some(progress);
            return;
        }
        drop(sent);
        self.publish_progress(progress);
    }

    fn metadata(&self, key: &str, value: serde_json::Value) {
        self.pending.lock().unwrap().metadata.insert(key.to_string(), value);
    }
}
