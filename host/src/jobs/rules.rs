//! The rules of a job's life as pure functions: each takes the record as it
//! is, what happened, and `now`, and returns the [`Transition`] it calls for
//! (the record as it must become, and why), or a refusal that says why
//! not. Nothing here reads a clock, a database or a random generator:
//! storage reads the record, asks the rule, and persists the answer in the
//! same transaction, so every backend applies the same rules.

use super::{
    FailureKind, JobError, JobRecord, JobState, Millis, NewJob, Outcome, QueueSettings, RunReport,
    TenantDefaults, TenantRecord,
};
use uuid::Uuid;

/// The lost-worker rule's default: a job whose worker died this many times
/// fails instead of going back to the queue, since it is probably what
/// kills its workers. A queue may set its own (`max_lost_leases`); a lost
/// lease never uses up one of the job's retries, since the job itself did
/// not fail.
pub const MAX_LEASES_LOST: u32 = 3;

/// A change of a job's state: the record as it must be written, the state
/// it left (`None` for a new job) and the reason the journal gives.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    /// The record after the change.
    pub job: JobRecord,
    /// The state before; `None` when the job is new.
    pub from: Option<JobState>,
    /// Why, for a person ("claimed, attempt 1", "trap; retry 1 of 3 ...").
    pub reason: String,
}

/// Which failures are worth another attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Failure kinds worth another attempt. `cancelled` is never retried.
    pub retriable: Vec<FailureKind>,
}

impl Default for RetryPolicy {
    /// Every failure but a cancel, which was asked for: a job that asks for
    /// retries most often wants its own error retried (a mail server down).
    fn default() -> Self {
        use FailureKind::*;
        Self { retriable: vec![PluginError, Trap, FuelExhausted, Timeout, MemoryLimit, HostError] }
    }
}

impl RetryPolicy {
    /// Whether a failure of `kind` is retried (while retries are left).
    pub fn retries(&self, kind: FailureKind) -> bool {
        kind != FailureKind::Cancelled && self.retriable.contains(&kind)
    }
}

/// A new job from what a client asked, with its id, created at `now`:
/// `scheduled` when its `run_at` is ahead, `pending` otherwise.
pub fn enqueued(new: NewJob, id: Uuid, now: Millis) -> Transition {
    let job = JobRecord::new(new, id, now);
    let reason = match job.state {
        JobState::Scheduled => format!("enqueued to run at {}", job.run_at),
        _ => "enqueued".to_string(),
    };
    Transition { job, from: None, reason }
}

/// Refuses a new job of a tenant that has its `max_queued` jobs waiting.
pub fn queued_quota(
    tenant: &TenantRecord,
    defaults: &TenantDefaults,
    waiting: u64,
) -> Result<(), String> {
    let max = tenant.queued_quota(defaults);
    if waiting >= u64::from(max) {
        return Err(format!(
            "tenant {:?} has {waiting} jobs waiting, its max_queued quota is {max}",
            tenant.name
        ));
    }
    Ok(())
}

/// Refuses another child of `parent` past its tenant's `max_children`, or
/// one deeper than its `max_spawn_depth`.
pub fn spawn_refusal(
    parent: &JobRecord,
    tenant: &TenantRecord,
    defaults: &TenantDefaults,
) -> Option<String> {
    let (max, deepest) = (tenant.children_quota(defaults), tenant.spawn_depth_quota(defaults));
    let spawned = parent.flow.children.len();
    if spawned >= max as usize {
        return Some(format!(
            "job {} has spawned {spawned} children, the max_children quota of tenant {:?} is {max}",
            parent.id, tenant.name
        ));
    }
    let depth = parent.flow.depth + 1;
    (depth > deepest).then(|| {
        format!(
            "a child of job {} would be spawned {depth} levels deep, the max_spawn_depth quota of tenant {:?} is {deepest}",
            parent.id, tenant.name
        )
    })
}

/// What a claim sees around one pending job.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimView<'a> {
    /// The claiming worker.
    pub worker: &'a str,
    /// The time of the claim.
    pub now: Millis,
    /// The job's queue's settings.
    pub queue: &'a QueueSettings,
    /// Jobs of the queue running now.
    pub running_in_queue: u32,
    /// Jobs of the tenant running now.
    pub running_of_tenant: u32,
    /// The tenant's `max_running`, if any.
    pub tenant_quota: Option<u32>,
    /// Whether the job's named lock is held by another job.
    pub lock_held: bool,
}

/// What a claim does with one pending job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Eligibility {
    /// Run it now.
    Take,
    /// Leave it pending: its queue, tenant, lock or worker says not now.
    Skip,
    /// Its `expires_at` passed before it started: it ends `expired`.
    Expire,
}

/// Whether a pending job may be claimed now, in the order the checks
/// matter: expiry first (an expired job never runs), then the worker it is
/// pinned to, its queue's pause and concurrency, its tenant's quota, and its
/// lock.
pub fn eligibility(job: &JobRecord, view: &ClaimView) -> Eligibility {
    if job.expires_at.is_some_and(|at| at <= view.now) {
        return Eligibility::Expire;
    }
    let pinned_elsewhere = job.pinned_to.as_deref().is_some_and(|w| w != view.worker);
    let queue_full = view.queue.paused
        || view.queue.concurrency.is_some_and(|limit| view.running_in_queue >= limit);
    let tenant_full = view.tenant_quota.is_some_and(|quota| view.running_of_tenant >= quota);
    if pinned_elsewhere || queue_full || tenant_full || view.lock_held {
        Eligibility::Skip
    } else {
        Eligibility::Take
    }
}

/// A pending job claimed by `worker`: running, one more attempt, with a
/// lease until `now + lease_ms`.
pub fn claimed(job: &JobRecord, worker: &str, now: Millis, lease_ms: u64) -> Transition {
    let mut job = job.clone();
    job.state = JobState::Running;
    job.attempt += 1;
    job.started_at = Some(now);
    job.worker = Some(worker.to_string());
    job.lease_until = Some(now.saturating_add(lease_ms));
    let reason = format!("claimed, attempt {}", job.attempt);
    Transition { job, from: Some(JobState::Pending), reason }
}

/// A pending job past its `expires_at`.
pub fn expired(job: &JobRecord, now: Millis) -> Transition {
    let mut job = job.clone();
    let from = job.state;
    job.state = JobState::Expired;
    job.finished_at = Some(now);
    Transition { job, from: Some(from), reason: "expired: not started before expires_at".into() }
}

/// A scheduled job whose time came.
pub fn due(job: &JobRecord) -> Transition {
    let mut job = job.clone();
    job.state = JobState::Pending;
    Transition { job, from: Some(JobState::Scheduled), reason: "due".into() }
}

/// How a run ended, decided: `completed`; a retry after the backoff (while
/// the policy retries the failure and retries are left); else `failed`, or
/// `cancelled` for a cancelled run. `random` picks the backoff's jitter.
pub fn finished(
    job: &JobRecord,
    report: &RunReport,
    policy: &RetryPolicy,
    now: Millis,
    random: u64,
) -> Transition {
    let mut job = job.clone();
    job.lease_until = None;
    job.fuel_used = job.fuel_used.saturating_add(report.fuel_used);
    job.memory_peak = job.memory_peak.max(report.memory_peak);
    let reason = match &report.outcome {
        Outcome::Completed { result } => {
            job.state = JobState::Completed;
            job.result = Some(result.clone());
            job.error = None;
            job.finished_at = Some(now);
            "completed".to_string()
        }
        Outcome::Failed { kind, message } => {
            let kind = *kind;
            job.error = Some(JobError { kind, message: message.clone() });
            let retried = match &job.retry_on {
                Some(kinds) => kind != FailureKind::Cancelled && kinds.contains(&kind),
                None => policy.retries(kind),
            };
            if retried && job.attempt <= job.max_retries {
                let delay = job.backoff.delay_ms(job.attempt, random);
                job.run_at = now.saturating_add(delay);
                job.state = if delay == 0 { JobState::Pending } else { JobState::Scheduled };
                let why = excerpt(message);
                format!("{kind}: {why}; retry {} of {} in {delay} ms", job.attempt, job.max_retries)
            } else {
                job.state = match kind {
                    FailureKind::Cancelled => JobState::Cancelled,
                    _ => JobState::Failed,
                };
                job.finished_at = Some(now);
                kind.to_string()
            }
        }
    };
    Transition { job, from: Some(JobState::Running), reason }
}

/// The start of a failure message, for the journal's one line.
fn excerpt(message: &str) -> String {
    let line = message.lines().next().unwrap_or_default();
    match line.char_indices().nth(200) {
        Some((end, _)) => format!("{}…", &line[..end]),
        None => line.to_string(),
    }
}

/// Why a running job leaves its worker without an outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// The worker died (its lease expired): the job fails once it lost
    /// `limit` workers (the queue's lost-worker rule).
    LeaseExpired {
        /// The queue's `max_lost_leases`.
        limit: u32,
    },
    /// The worker stopped and gave it back: as if the attempt never began.
    HandedBack,
}

/// A running job taken off its worker: back to pending, or finished when it
/// must not run again (a cancel was asked, a broadcast copy pinned to that
/// worker, a job that lost its worker as often as its queue allows).
pub fn taken_off_worker(job: &JobRecord, why: Release, now: Millis) -> Transition {
    let mut job = job.clone();
    job.lease_until = None;
    let worker = job.worker.clone().unwrap_or_default();
    let mut limit = u32::MAX;
    let what = match why {
        Release::LeaseExpired { limit: queue_limit } => {
            job.leases_lost += 1;
            limit = queue_limit;
            format!("lease of worker {worker} expired")
        }
        Release::HandedBack => {
            job.attempt = job.attempt.saturating_sub(1);
            format!("worker {worker} stopped and handed the job back")
        }
    };
    let fail = |job: &mut JobRecord, message: String| {
        job.state = JobState::Failed;
        job.finished_at = Some(now);
        job.error = Some(JobError { kind: FailureKind::HostError, message: message.clone() });
        message
    };
    let reason = if job.cancel_requested {
        job.state = JobState::Cancelled;
        job.finished_at = Some(now);
        format!("{what} after a cancel request: cancelled")
    } else if job.pinned_to.is_some() {
        fail(&mut job, format!("{what}; a broadcast copy runs nowhere else"))
    } else if job.leases_lost >= limit {
        let rule = format!(
            "failed by the lost-worker rule: the job lost its worker {limit} times \
             (max_lost_leases of its queue)"
        );
        fail(&mut job, format!("{what}; {rule}"))
    } else {
        job.state = JobState::Pending;
        job.run_at = now;
        format!("{what}; back to pending")
    };
    Transition { job, from: Some(JobState::Running), reason }
}

/// A cancel: a waiting job ends `cancelled` at once; a running one is
/// marked and goes on until its run ends (the runtime stops it); a finished
/// one cannot be cancelled.
pub fn cancelled(job: &JobRecord, now: Millis) -> Result<Transition, String> {
    let mut job = job.clone();
    let from = job.state;
    let reason = match from {
        JobState::Blocked | JobState::Scheduled | JobState::Pending => {
            job.state = JobState::Cancelled;
            job.finished_at = Some(now);
            "cancelled before it started"
        }
        JobState::Running => {
            job.cancel_requested = true;
            "cancel requested"
        }
        done => return Err(format!("job {} is already {}", job.id, done.as_str())),
    };
    Ok(Transition { job, from: Some(from), reason: reason.into() })
}

/// Whether a finished job may be enqueued again as a retry.
pub fn retry_refusal(job: &JobRecord) -> Option<String> {
    if !job.state.is_terminal() {
        return Some(format!(
            "job {} is {}: only a finished job can be retried",
            job.id,
            job.state.as_str()
        ));
    }
    job.retried_by.map(|newer| format!("job {} was already retried as {newer}", job.id))
}

/// Whether a job may be removed: only once it finished.
pub fn remove_refusal(job: &JobRecord) -> Option<String> {
    (!job.state.is_terminal())
        .then(|| format!("job {} is {}: cancel it before removing it", job.id, job.state.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::{Backoff, Clock, ManualClock};
    use std::time::Duration;

    fn job(clock: &ManualClock) -> JobRecord {
        let new = NewJob {
            max_retries: 2,
            backoff: Backoff { base_ms: 100, max_ms: 1_000 },
            ..NewJob::default()
        };
        enqueued(new, Uuid::now_v7(), clock.now()).job
    }

    fn failed(kind: FailureKind) -> RunReport {
        RunReport {
            outcome: Outcome::Failed { kind, message: "boom".into() },
            fuel_used: 5,
            duration: Duration::ZERO,
            memory_peak: 0,
        }
    }

    fn view(queue: &QueueSettings) -> ClaimView<'_> {
        ClaimView {
            worker: "w1",
            now: 1_000,
            queue,
            running_in_queue: 0,
            running_of_tenant: 0,
            tenant_quota: None,
            lock_held: false,
        }
    }

    #[test]
    fn a_job_enqueued_for_later_is_scheduled_and_becomes_pending_when_due() {
        let clock = ManualClock::at(1_000);
        let new = NewJob { run_at: Some(5_000), ..NewJob::default() };
        let later = enqueued(new, Uuid::now_v7(), clock.now());
        assert_eq!((later.job.state, later.from), (JobState::Scheduled, None));
        assert!(later.reason.contains("5000"));
        assert_eq!(due(&later.job).job.state, JobState::Pending);
    }

    #[test]
    fn a_failure_the_policy_retries_is_rescheduled_with_backoff_until_retries_run_out() {
        let clock = ManualClock::at(10_000);
        let policy = RetryPolicy::default();
        let mut job = claimed(&job(&clock), "w1", clock.now(), 30_000).job;
        let retry = finished(&job, &failed(FailureKind::Trap), &policy, clock.now(), 0);
        assert_eq!(retry.job.state, JobState::Scheduled);
        assert_eq!(retry.job.run_at, 10_100, "base delay after the first attempt");
        assert_eq!(retry.reason, "trap: boom; retry 1 of 2 in 100 ms");
        job = claimed(&retry.job, "w1", clock.now(), 30_000).job;
        job =
            claimed(&finished(&job, &failed(FailureKind::Trap), &policy, 0, 0).job, "w1", 0, 1).job;
        let last = finished(&job, &failed(FailureKind::Trap), &policy, clock.now(), 0);
        assert_eq!((last.job.state, last.job.attempt), (JobState::Failed, 3));
        assert_eq!(last.job.fuel_used, 15, "fuel adds up over attempts");
    }

    #[test]
    fn a_job_error_is_retried_unless_the_job_says_otherwise_and_a_cancel_never_is() {
        let clock = ManualClock::at(0);
        let running = claimed(&job(&clock), "w1", 0, 1).job;
        let policy = RetryPolicy::default();
        let own = finished(&running, &failed(FailureKind::PluginError), &policy, 5, 0);
        assert_eq!(own.job.state, JobState::Scheduled, "asked for retries, gets them");
        assert!(own.reason.starts_with("plugin_error: boom; retry 1 of 2"), "{}", own.reason);
        let picky = JobRecord { retry_on: Some(vec![FailureKind::Timeout]), ..running.clone() };
        let own = finished(&picky, &failed(FailureKind::PluginError), &policy, 5, 0);
        assert_eq!((own.job.state, own.job.finished_at), (JobState::Failed, Some(5)));
        let stopped = finished(&running, &failed(FailureKind::Cancelled), &policy, 5, 0);
        assert_eq!(stopped.job.state, JobState::Cancelled);
        let all = JobRecord { retry_on: Some(vec![FailureKind::Cancelled]), ..running };
        let stopped = finished(&all, &failed(FailureKind::Cancelled), &policy, 5, 0);
        assert_eq!(stopped.job.state, JobState::Cancelled, "a cancel is never retried");
    }

    #[test]
    fn a_lost_worker_returns_the_job_until_the_third_time_then_fails_it() {
        let clock = ManualClock::at(0);
        let mut job = job(&clock);
        for round in 1..=MAX_LEASES_LOST {
            clock.advance(1_000);
            let running = claimed(&job, "w1", clock.now(), 10).job;
            let lost = Release::LeaseExpired { limit: MAX_LEASES_LOST };
            let back = taken_off_worker(&running, lost, clock.now());
            job = back.job;
            if round < MAX_LEASES_LOST {
                assert_eq!((job.state, job.run_at), (JobState::Pending, clock.now()));
            }
        }
        assert_eq!(job.state, JobState::Failed);
        assert!(job.error.unwrap().message.contains("lost-worker rule"));
        let patient = QueueSettings { max_lost_leases: Some(10), ..QueueSettings::default() };
        assert_eq!(patient.lost_lease_limit(), 10);
    }

    #[test]
    fn a_handed_back_job_keeps_its_attempt_and_a_cancelled_one_ends() {
        let running = claimed(&job(&ManualClock::at(0)), "w1", 0, 10).job;
        let back = taken_off_worker(&running, Release::HandedBack, 1);
        assert_eq!(
            (back.job.state, back.job.attempt, back.job.leases_lost),
            (JobState::Pending, 0, 0)
        );
        let asked = cancelled(&running, 1).unwrap().job;
        assert!(asked.cancel_requested && asked.state == JobState::Running);
        let gone = taken_off_worker(&asked, Release::LeaseExpired { limit: 3 }, 2);
        assert_eq!(gone.job.state, JobState::Cancelled);
        assert!(cancelled(&gone.job, 3).unwrap_err().contains("already cancelled"));
    }

    #[test]
    fn a_pinned_copy_fails_when_its_worker_dies() {
        let mut pinned = job(&ManualClock::at(0));
        pinned.pinned_to = Some("w1".into());
        let running = claimed(&pinned, "w1", 0, 10).job;
        let lost = taken_off_worker(&running, Release::LeaseExpired { limit: 3 }, 20);
        assert_eq!(lost.job.state, JobState::Failed);
        let open = QueueSettings::default();
        assert_eq!(eligibility(&pinned, &view(&open)), Eligibility::Take);
        let elsewhere = ClaimView { worker: "w2", ..view(&open) };
        assert_eq!(eligibility(&pinned, &elsewhere), Eligibility::Skip);
    }

    #[test]
    fn a_claim_skips_what_queue_tenant_or_lock_forbid_and_expires_the_late() {
        let job = job(&ManualClock::at(0));
        let open = QueueSettings::default();
        let paused = QueueSettings { paused: true, ..QueueSettings::default() };
        let narrow = QueueSettings { concurrency: Some(1), ..QueueSettings::default() };
        assert_eq!(eligibility(&job, &view(&open)), Eligibility::Take);
        assert_eq!(eligibility(&job, &view(&paused)), Eligibility::Skip);
        let full = ClaimView { running_in_queue: 1, ..view(&narrow) };
        assert_eq!(eligibility(&job, &full), Eligibility::Skip);
        let quota = ClaimView { tenant_quota: Some(2), running_of_tenant: 2, ..view(&open) };
        assert_eq!(eligibility(&job, &quota), Eligibility::Skip);
        assert_eq!(
            eligibility(&job, &ClaimView { lock_held: true, ..view(&open) }),
            Eligibility::Skip
        );
        let late = JobRecord { expires_at: Some(1_000), ..job.clone() };
        assert_eq!(eligibility(&late, &view(&paused)), Eligibility::Expire);
        assert_eq!(expired(&late, 1_000).job.state, JobState::Expired);
    }

    #[test]
    fn the_queued_quota_refuses_at_its_limit_and_defaults_for_a_tenant_without_one() {
        let defaults = TenantDefaults { max_queued: 10, ..TenantDefaults::default() };
        let tenant =
            TenantRecord { name: "acme".into(), max_queued: Some(2), ..TenantRecord::default() };
        assert!(queued_quota(&tenant, &defaults, 1).is_ok());
        let refusal = queued_quota(&tenant, &defaults, 2).unwrap_err();
        assert!(refusal.contains("max_queued quota is 2"), "{refusal}");
        let unset = TenantRecord::default();
        assert!(queued_quota(&unset, &defaults, 9).is_ok());
        assert!(queued_quota(&unset, &defaults, 10).is_err());
    }

    #[test]
    fn only_finished_jobs_are_retried_once_or_removed() {
        let pending = job(&ManualClock::at(0));
        assert!(retry_refusal(&pending).unwrap().contains("only a finished job"));
        assert!(remove_refusal(&pending).unwrap().contains("cancel it"));
        let done = cancelled(&pending, 1).unwrap().job;
        assert_eq!((retry_refusal(&done), remove_refusal(&done)), (None, None));
        let retried = JobRecord { retried_by: Some(Uuid::now_v7()), ..done };
        assert!(retry_refusal(&retried).unwrap().contains("already retried"));
    }
}
