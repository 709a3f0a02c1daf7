//! The views of workflows and schedules.

use crate::jobs::schedule::{ScheduleRecord, When};
use crate::jobs::workflow::{self, Summary, WorkflowRecord, WorkflowStep};
use crate::jobs::{JobError, JobRecord, JobState, Millis, stored_json};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

/// A workflow as a client sees it: its steps and, read from them, its
/// state and progress.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WorkflowView {
    /// UUID v7.
    pub id: Uuid,
    /// Tenant.
    pub tenant: String,
    /// Who submitted it.
    pub owner: String,
    /// Label.
    pub name: Option<String>,
    /// Free text.
    pub description: Option<String>,
    /// Submission time.
    pub created_at: Millis,
    /// Times it was retried.
    pub retries: u32,
    /// State, progress (`done` of `total`, `percent`) and steps per state.
    #[serde(flatten)]
    pub summary: Summary,
    /// The steps, each after those it depends on.
    pub steps: Vec<StepView>,
}

/// A step of a workflow, with the state of its current job.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StepView {
    /// The step's name.
    pub step: String,
    /// Its current job (a retry replaces it).
    pub job: Uuid,
    /// The job's state; `null` once the job was removed.
    pub state: Option<JobState>,
    /// The steps it waits for.
    pub depends_on: Vec<String>,
    /// Start of its latest attempt.
    pub started_at: Option<Millis>,
    /// When it finished.
    pub finished_at: Option<Millis>,
    /// Its result, once completed.
    pub result: Option<Value>,
    /// Why it failed or was cancelled.
    pub error: Option<JobError>,
}

impl WorkflowView {
    /// The view of `record` whose steps' jobs are `jobs` (same order).
    pub fn new(record: &WorkflowRecord, jobs: &[Option<JobRecord>]) -> Self {
        let states: Vec<Option<JobState>> =
            jobs.iter().map(|j| j.as_ref().map(|j| j.state)).collect();
        let steps = record
            .steps
            .iter()
            .zip(jobs)
            .map(|(step, job)| StepView::new(step, job.as_ref()))
            .collect();
        WorkflowView {
            id: record.id,
            tenant: record.tenant.clone(),
            owner: record.owner.clone(),
            name: record.name.clone(),
            description: record.description.clone(),
            created_at: record.created_at,
            retries: record.retries,
            summary: workflow::summarize(&states),
            steps,
        }
    }
}

impl StepView {
    /// The view of `step`, whose job is `job`.
    pub fn new(step: &WorkflowStep, job: Option<&JobRecord>) -> Self {
        StepView {
            step: step.name.clone(),
            job: step.job,
            state: job.map(|j| j.state),
            depends_on: step.depends_on.clone(),
            started_at: job.and_then(|j| j.started_at),
            finished_at: job.and_then(|j| j.finished_at),
            result: job.and_then(|j| j.result.as_deref().map(stored_json)),
            error: job.and_then(|j| j.error.clone()),
        }
    }
}

/// A page of workflows, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct WorkflowPage {
    /// The workflows of this page.
    pub workflows: Vec<WorkflowView>,
    /// How many in all.
    pub total: usize,
    /// This page, from 1.
    pub page: usize,
    /// Page size.
    pub per_page: usize,
}

/// A schedule as a client sees it, with its next run times.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ScheduleView {
    /// The stored schedule.
    #[serde(flatten)]
    pub schedule: ScheduleRecord,
    /// Its next run times, RFC 3339 in its time zone (none while paused).
    pub next_runs: Vec<String>,
}

impl From<&ScheduleRecord> for ScheduleView {
    fn from(schedule: &ScheduleRecord) -> Self {
        let next_runs = match When::parse(&schedule.cron, &schedule.timezone) {
            Ok(when) if !schedule.paused => when.upcoming(schedule.next_run_at),
            _ => Vec::new(),
        };
        ScheduleView { schedule: schedule.clone(), next_runs }
    }
}

/// Schedules, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScheduleList {
    /// The schedules.
    pub schedules: Vec<ScheduleView>,
}
