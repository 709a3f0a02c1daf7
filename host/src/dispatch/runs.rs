//! The runs going on on this worker, and the cancels that reached it
//! before their run did.

use crate::jobs::{JobRecord, JobState};
use crate::runtime::CancelToken;
use std::collections::{HashMap, VecDeque};
use std::ops::Deref;
use uuid::Uuid;

/// One run of a job on this worker: its attempt, and how to stop it.
#[derive(Debug, Clone)]
pub(super) struct Run {
    pub(super) attempt: u32,
    pub(super) cancel: CancelToken,
}

/// The runs by job. A cancel committed after a claim's commit but looked up
/// before the claim's runs were entered finds no run: it is kept here, and
/// the run starts cancelled. So a run needs no read of its record to learn
/// of a cancel. Both sides hold the one lock of this map, and a run comes
/// and goes only by [`enter`](Self::enter) and [`leave`](Self::leave).
#[derive(Debug)]
pub(super) struct Runs {
    /// This worker.
    worker: String,
    /// Its slots: no more early cancels than these can be pending.
    slots: usize,
    by_job: HashMap<Uuid, Run>,
    /// Attempts cancelled before their run was entered, newest last; no
    /// more than a claim's worth can be, so the oldest go beyond that.
    cancelled_early: VecDeque<(Uuid, u32)>,
}

impl Runs {
    pub(super) fn new(worker: String, slots: usize) -> Self {
        Runs {
            worker,
            slots: slots.max(1),
            by_job: HashMap::new(),
            cancelled_early: VecDeque::new(),
        }
    }

    /// Enters `run` of `job`; returns the run of an earlier attempt it
    /// replaces. The run is cancelled if its cancel came first.
    pub(super) fn enter(&mut self, job: Uuid, run: Run) -> Option<Run> {
        let early = self.cancelled_early.iter().position(|entry| *entry == (job, run.attempt));
        if let Some(early) = early {
            self.cancelled_early.remove(early);
            run.cancel.cancel();
        }
        self.by_job.insert(job, run)
    }

    /// Takes out the run of `job`'s `attempt` (not a later attempt's).
    pub(super) fn leave(&mut self, job: Uuid, attempt: u32) {
        if self.by_job.get(&job).is_some_and(|run| run.attempt == attempt) {
            self.by_job.remove(&job);
        }
    }

    /// Tells the run of `job` (as its cancel left it) to stop, or, when it
    /// is running on this worker but not entered yet, makes it start
    /// cancelled.
    pub(super) fn cancel(&mut self, job: &JobRecord) {
        match self.by_job.get(&job.id) {
            Some(run) => run.cancel.cancel(),
            None if job.state == JobState::Running
                && job.worker.as_deref() == Some(self.worker.as_str()) =>
            {
                if self.cancelled_early.len() >= self.slots {
                    self.cancelled_early.pop_front();
                }
                self.cancelled_early.push_back((job.id, job.attempt));
            }
            None => {}
        }
    }
}

/// Reading the runs (how many, which, of what attempt) is open to all.
impl Deref for Runs {
    type Target = HashMap<Uuid, Run>;

    fn deref(&self) -> &Self::Target {
        &self.by_job
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::{JobRecord, NewJob};

    fn running_on(worker: &str) -> JobRecord {
        let mut job = JobRecord::new(NewJob::default(), Uuid::now_v7(), 0);
        job.state = JobState::Running;
        job.worker = Some(worker.into());
        job.attempt = 1;
        job
    }

    fn run(attempt: u32) -> Run {
        Run { attempt, cancel: CancelToken::new() }
    }

    #[test]
    fn a_cancel_before_the_run_is_entered_starts_it_cancelled() {
        let mut runs = Runs::new("w1".into(), 4);
        let job = running_on("w1");
        runs.cancel(&job);
        let entered = run(1);
        runs.enter(job.id, entered.clone());
        assert!(entered.cancel.is_cancelled());
        let again = run(2);
        runs.enter(job.id, again.clone());
        assert!(!again.cancel.is_cancelled(), "the early cancel was of attempt 1 only");
    }

    #[test]
    fn a_cancel_finds_an_entered_run_and_keeps_nothing_for_other_workers() {
        let mut runs = Runs::new("w1".into(), 4);
        let job = running_on("w1");
        let entered = run(1);
        runs.enter(job.id, entered.clone());
        runs.cancel(&job);
        assert!(entered.cancel.is_cancelled());
        let elsewhere = running_on("w2");
        runs.cancel(&elsewhere);
        let later = run(1);
        runs.enter(elsewhere.id, later.clone());
        assert!(!later.cancel.is_cancelled(), "its run is on w2, not here");
    }

    #[test]
    fn early_cancels_are_bounded_by_the_slots() {
        let mut runs = Runs::new("w1".into(), 3);
        let jobs: Vec<JobRecord> = (0..10).map(|_| running_on("w1")).collect();
        for job in &jobs {
            runs.cancel(job);
        }
        assert_eq!(runs.cancelled_early.len(), 3);
        let newest = run(1);
        runs.enter(jobs[9].id, newest.clone());
        assert!(newest.cancel.is_cancelled());
    }
}
