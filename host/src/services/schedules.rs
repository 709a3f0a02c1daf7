//! Schedules: each round fires the runs of the schedules that are due, as
//! [`crate::jobs::schedule::plan_firing`] decides (runs missed while no
//! host was up become one job, or none). A run's job is admitted like any
//! other, as the schedule's owner, and written by
//! [`crate::storage::ScheduleStore::fire_schedule`] only if no other host
//! fired the round first.

use super::Service;
use crate::admission::Admitter;
use crate::dispatch::Dispatcher;
use crate::egress::EgressPolicy;
use crate::jobs::schedule::{ScheduleRecord, When, plan_firing, run_key, utc_time};
use crate::jobs::{Clock, Millis};
use crate::runtime::Runtime;
use crate::storage::{Round, Storage};
use std::sync::Arc;
use std::time::Duration;

/// Runs due this long before the host started still count as on time: a
/// host that starts while another fires is not "back from an outage".
const MISSED_GRACE_MS: Millis = 2_000;

/// Fires due schedules.
#[derive(Debug)]
pub struct Schedules {
    /// Where schedules and jobs are.
    pub storage: Arc<dyn Storage>,
    /// Plugins, for admitting each run's job.
    pub runtime: Arc<Runtime>,
    /// Where a run's callback may go.
    pub egress: EgressPolicy,
    /// What "due" is measured against.
    pub clock: Arc<dyn Clock>,
    /// Woken when jobs were enqueued.
    pub dispatcher: Arc<Dispatcher>,
    /// When this host started: runs due before were missed while down.
    pub up_since: Millis,
    /// How often to look.
    pub period: Duration,
}

#[async_trait::async_trait]
impl Service for Schedules {
    fn name(&self) -> &'static str {
        "schedules"
    }

    fn period(&self) -> Duration {
        self.period
    }

    async fn tick(&self) {
        let now = self.clock.now();
        let due = match self.storage.due_schedules(now).await {
            Ok(due) => due,
            Err(e) => return tracing::error!("reading due schedules: {e}"),
        };
        let mut fired = false;
        for schedule in due {
            match self.fire(&schedule, now).await {
                Ok(any) => fired |= any,
                Err(e) => tracing::error!(schedule = %schedule.id, "firing: {e}"),
            }
        }
        if fired {
            self.dispatcher.wake();
        }
    }
}

impl Schedules {
    /// Fires one due schedule's round; says whether it enqueued anything.
    async fn fire(&self, schedule: &ScheduleRecord, now: Millis) -> anyhow::Result<bool> {
        let Some(expected) = schedule.next_run_at else { return Ok(false) };
        let when = When::parse(&schedule.cron, &schedule.timezone)?;
        let up_since = self.up_since.saturating_sub(MISSED_GRACE_MS);
        let firing = plan_firing(schedule, &when, now, up_since);
        let tenant = self.storage.tenant(&schedule.tenant).await?;
        let admitter = Admitter {
            storage: self.storage.as_ref(),
            runtime: &self.runtime,
            egress: &self.egress,
            now,
        };
        let mut jobs = Vec::with_capacity(firing.runs.len());
        let mut error = None;
        for &at in &firing.runs {
            let mut request = schedule.job.clone();
            request.idempotency_key = Some(run_key(schedule.id, at));
            match admitter.admit(&tenant, &schedule.owner, request).await {
                Ok(mut job) => {
                    job.flow.schedule = Some(schedule.id);
                    jobs.push(job);
                }
                Err(e) => {
                    error = Some(format!("the run of {} enqueued nothing: {e}", utc_time(at)))
                }
            }
        }
        let enqueues = !jobs.is_empty();
        let round = Round {
            jobs,
            skipped: firing.skipped,
            next_run_at: firing.next_run_at,
            last_run_at: firing.runs.last().copied(),
            error,
            now,
        };
        let written = self.storage.fire_schedule(schedule.id, expected, round).await?;
        Ok(enqueues && written.is_some())
    }
}
