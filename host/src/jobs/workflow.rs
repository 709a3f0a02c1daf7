//! Workflows: a graph of named steps submitted in one request, each step a
//! job that depends on the steps it names and may take their results. The
//! graph is checked and ordered here ([`plan`]); its steps become ordinary
//! jobs linked by `depends_on`, so the one settle rule of [`super::flow`]
//! runs them. A workflow's state is not stored: it is read from its steps
//! ([`summarize`]), so it can never disagree with them.

use super::enqueue::{JobRequest, Refusal, check_label, check_labels};
use super::flow::{self, MAX_DEPENDENCIES};
use super::{JobRecord, JobState, Millis};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use utoipa::ToSchema;
use uuid::Uuid;

/// Most steps of one workflow.
pub const MAX_STEPS: usize = 100;

/// The body of `POST /v1/workflows`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkflowRequest {
    /// A label for people.
    pub name: Option<String>,
    /// Free text.
    pub description: Option<String>,
    /// The steps, in any order: each names the steps it depends on.
    pub steps: Vec<StepRequest>,
}

/// One step: a name and the job it enqueues, whose `depends_on` names
/// other steps and whose args may take their results with
/// `{"$result": "<step>"}`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(try_from = "serde_json::Map<String, serde_json::Value>")]
pub struct StepRequest {
    /// The step's name, unique in its workflow.
    pub step: String,
    /// The job, as `POST /v1/jobs` takes it.
    #[serde(flatten)]
    pub job: JobRequest,
}

impl TryFrom<serde_json::Map<String, serde_json::Value>> for StepRequest {
    type Error = String;

    /// `step` taken out, the rest read as a job request, so an unknown
    /// field of a step is refused by name as it is in `POST /v1/jobs`
    /// (serde's flatten would let it pass).
    fn try_from(mut fields: serde_json::Map<String, serde_json::Value>) -> Result<Self, String> {
        let step = match fields.remove("step") {
            Some(serde_json::Value::String(step)) => step,
            Some(other) => return Err(format!("step must be a name, not {other}")),
            None => return Err("missing field `step` (the step's name)".into()),
        };
        let job = serde_json::from_value(serde_json::Value::Object(fields))
            .map_err(|e| format!("step {step:?}: {e}"))?;
        Ok(StepRequest { step, job })
    }
}

/// A workflow as stored: its steps in an order where each comes after the
/// steps it depends on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WorkflowRecord {
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
    /// The steps, dependencies first.
    pub steps: Vec<WorkflowStep>,
    /// Times it was retried.
    pub retries: u32,
}

/// A step of a stored workflow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WorkflowStep {
    /// Its name.
    pub name: String,
    /// The job running it now (a retry replaces it).
    pub job: Uuid,
    /// The steps it waits for.
    pub depends_on: Vec<String>,
}

/// Where a workflow stands, from its steps' states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WorkflowState {
    /// No step has started.
    Pending,
    /// Steps run or wait, and none has failed.
    Running,
    /// Steps differ while it goes on: some ended without completing (a
    /// failed branch), others still run or wait. Tethys's "Various".
    Various,
    /// Every step completed.
    Completed,
    /// Every step finished, and one failed (its dependents were cancelled).
    Failed,
    /// Every step was cancelled.
    Cancelled,
    /// Every step finished, none failed, some completed and some were
    /// cancelled or expired. Tethys's "Various-Complete".
    VariousComplete,
}

impl WorkflowState {
    /// True once every step finished.
    pub fn is_terminal(self) -> bool {
        !matches!(self, Self::Pending | Self::Running | Self::Various)
    }

    /// The snake_case name used in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Various => "various",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::VariousComplete => "various_complete",
        }
    }
}

/// A workflow's state and progress, from its steps' records.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Summary {
    /// The aggregate state.
    pub state: WorkflowState,
    /// Steps finished.
    pub done: usize,
    /// Steps in all.
    pub total: usize,
    /// `done` of `total`, 0 to 100.
    pub percent: f32,
    /// Steps per state (state name → count).
    pub counts: BTreeMap<&'static str, usize>,
}

/// The state and progress of a workflow whose steps are in `states` (a
/// removed step's job counts as finished, not as failed).
pub fn summarize(states: &[Option<JobState>]) -> Summary {
    let mut counts = BTreeMap::new();
    for state in states.iter().flatten() {
        *counts.entry(state.as_str()).or_default() += 1;
    }
    let count = |state: JobState| counts.get(state.as_str()).copied().unwrap_or(0);
    let total = states.len();
    let done = states.iter().filter(|s| s.is_none_or(JobState::is_terminal)).count();
    let ended_badly =
        count(JobState::Failed) + count(JobState::Cancelled) + count(JobState::Expired);
    let waiting = count(JobState::Blocked) + count(JobState::Pending) + count(JobState::Scheduled);
    let state = if done < total {
        if ended_badly > 0 {
            WorkflowState::Various
        } else if waiting == states.iter().flatten().count() {
            WorkflowState::Pending
        } else {
            WorkflowState::Running
        }
    } else if count(JobState::Failed) > 0 {
        WorkflowState::Failed
    } else if ended_badly == 0 {
        WorkflowState::Completed
    } else if count(JobState::Completed) == 0 {
        WorkflowState::Cancelled
    } else {
        WorkflowState::VariousComplete
    };
    let percent = if total == 0 { 100.0 } else { done as f32 * 100.0 / total as f32 };
    Summary { state, done, total, percent, counts }
}

/// A checked workflow: its record (steps ordered, dependencies first) and
/// each step's request, with its id, its `depends_on` and `$result`
/// references turned from step names into those ids.
pub fn plan(
    request: WorkflowRequest,
    id: Uuid,
    tenant: &str,
    owner: &str,
    now: Millis,
) -> Result<(WorkflowRecord, Vec<(Uuid, JobRequest)>), Refusal> {
    let invalid = |message: String| Err(Refusal::Invalid(message));
    check_labels(
        request.name.as_deref(),
        request.description.as_deref(),
        &[],
        &Default::default(),
    )?;
    if request.steps.is_empty() {
        return invalid("a workflow needs at least one step".into());
    }
    if request.steps.len() > MAX_STEPS {
        return invalid(format!(
            "a workflow may have at most {MAX_STEPS} steps, not {}",
            request.steps.len()
        ));
    }
    let mut by_name: HashMap<String, usize> = HashMap::new();
    for (i, step) in request.steps.iter().enumerate() {
        check_label("step", &step.step, 64)?;
        if by_name.insert(step.step.clone(), i).is_some() {
            return invalid(format!(
                "two steps are named {:?}: step names must be unique",
                step.step
            ));
        }
    }
    for step in &request.steps {
        let name = &step.step;
        if step.job.next.is_some() {
            return invalid(format!(
                "step {name:?} has next: in a workflow, name the step it leads to in that step's depends_on"
            ));
        }
        if step.job.idempotency_key.is_some() {
            return invalid(format!(
                "step {name:?} has an idempotency_key: steps are always new jobs"
            ));
        }
        if step.job.depends_on.len() > MAX_DEPENDENCIES {
            return invalid(format!("step {name:?} depends on more than {MAX_DEPENDENCIES} steps"));
        }
        for dep in &step.job.depends_on {
            if dep == name {
                return invalid(format!("step {name:?} depends on itself"));
            }
            if !by_name.contains_key(dep) {
                return invalid(format!(
                    "step {name:?} depends on {dep:?}, which is not a step of this workflow"
                ));
            }
        }
        for reference in flow::references(&step.job.args) {
            if !step.job.depends_on.contains(&reference) {
                return invalid(format!(
                    "step {name:?} takes the result of {reference:?}, which is not in its depends_on"
                ));
            }
        }
    }
    let order = topological(&request.steps, &by_name)?;
    let ids: HashMap<String, Uuid> =
        order.iter().map(|&i| (request.steps[i].step.clone(), Uuid::now_v7())).collect();
    let mut slots: Vec<Option<StepRequest>> = request.steps.into_iter().map(Some).collect();
    let mut steps = Vec::with_capacity(order.len());
    let mut jobs = Vec::with_capacity(order.len());
    for i in order {
        let StepRequest { step, mut job } = slots[i].take().expect("each step once");
        let depends_on = std::mem::take(&mut job.depends_on);
        job.depends_on = depends_on.iter().map(|dep| ids[dep].to_string()).collect();
        job.args = flow::rename_references(&job.args, &|name| ids.get(name).map(Uuid::to_string));
        let step_id = ids[&step];
        steps.push(WorkflowStep { name: step, job: step_id, depends_on });
        jobs.push((step_id, job));
    }
    let record = WorkflowRecord {
        id,
        tenant: tenant.to_string(),
        owner: owner.to_string(),
        name: request.name,
        description: request.description,
        created_at: now,
        steps,
        retries: 0,
    };
    Ok((record, jobs))
}

/// The steps in an order where each follows its dependencies (Kahn's
/// algorithm), or the refusal naming the steps caught in a cycle.
fn topological(
    steps: &[StepRequest],
    by_name: &HashMap<String, usize>,
) -> Result<Vec<usize>, Refusal> {
    let mut waiting_on: Vec<usize> = steps.iter().map(|s| s.job.depends_on.len()).collect();
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); steps.len()];
    for (i, step) in steps.iter().enumerate() {
        for dep in &step.job.depends_on {
            dependents[by_name[dep]].push(i);
        }
    }
    let mut ready: Vec<usize> = (0..steps.len()).filter(|&i| waiting_on[i] == 0).rev().collect();
    let mut order = Vec::with_capacity(steps.len());
    while let Some(i) = ready.pop() {
        order.push(i);
        for &next in dependents[i].iter().rev() {
            waiting_on[next] -= 1;
            if waiting_on[next] == 0 {
                ready.push(next);
            }
        }
    }
    if order.len() < steps.len() {
        let cycle: Vec<&str> = (0..steps.len())
            .filter(|&i| waiting_on[i] > 0)
            .map(|i| steps[i].step.as_str())
            .collect();
        return Err(Refusal::Invalid(format!(
            "the steps {} depend on each other in a cycle: a workflow must be a DAG",
            cycle.join(", ")
        )));
    }
    Ok(order)
}

/// The job that retries `step` (its old job `old`): the old job's
/// settings, waiting for the current jobs of the steps it depends on, its
/// `$result` references renamed from the retried jobs to their retries.
pub fn retried_step(
    workflow: Uuid,
    step: &WorkflowStep,
    old: &JobRecord,
    current: &HashMap<String, Uuid>,
    renamed: &HashMap<String, String>,
) -> super::NewJob {
    let mut new = super::changes::Resubmit::default().new_job(old);
    new.flow.depends_on = step.depends_on.iter().map(|dep| current[dep]).collect();
    new.flow.workflow = Some(workflow);
    new.flow.step = Some(step.name.clone());
    if let Some(template) = &new.flow.args_template {
        let args = flow::rename_references(&super::stored_json(template), &|old| {
            renamed.get(old).cloned()
        });
        new.args = args.to_string();
        new.flow.args_template = Some(new.args.clone());
    }
    new
}

/// The steps a retry runs again: every step that did not complete and every
/// step that depends on one of them, directly or not; refused while a step
/// is unfinished or when every step completed.
pub fn retry_plan(
    workflow: &WorkflowRecord,
    jobs: &[Option<JobRecord>],
) -> Result<BTreeSet<String>, String> {
    let mut again = BTreeSet::new();
    for (step, job) in workflow.steps.iter().zip(jobs) {
        let state = job.as_ref().map(|j| j.state);
        if state.is_some_and(|s| !s.is_terminal()) {
            return Err(format!(
                "workflow {} is still running (step {:?} is {}): cancel it or let it finish first",
                workflow.id,
                step.name,
                state.map_or("removed", JobState::as_str)
            ));
        }
        let redo = state != Some(JobState::Completed)
            || step.depends_on.iter().any(|dep| again.contains(dep));
        if redo {
            again.insert(step.name.clone());
        }
    }
    if again.is_empty() {
        return Err(format!("every step of workflow {} completed: nothing to retry", workflow.id));
    }
    Ok(again)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(steps: serde_json::Value) -> WorkflowRequest {
        serde_json::from_value(json!({ "steps": steps })).unwrap()
    }

    fn refusal(steps: serde_json::Value) -> String {
        plan(request(steps), Uuid::now_v7(), "acme", "ada", 0).unwrap_err().to_string()
    }

    #[test]
    fn a_diamond_is_ordered_dependencies_first_with_names_turned_into_ids() {
        let steps = json!([
            {"step": "D", "job": "x.y", "depends_on": ["B", "C"], "args": {"b": {"$result": "B"}, "c": {"$result": "C"}}},
            {"step": "B", "job": "x.y", "depends_on": ["A"]},
            {"step": "C", "job": "x.y", "depends_on": ["A"]},
            {"step": "A", "job": "x.y"},
        ]);
        let (record, jobs) = plan(request(steps), Uuid::now_v7(), "acme", "ada", 7).unwrap();
        let names: Vec<&str> = record.steps.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names[0], "A");
        assert_eq!(names[3], "D");
        let id = |name: &str| record.steps.iter().find(|s| s.name == name).unwrap().job.to_string();
        let d = &jobs[3].1;
        assert_eq!(d.depends_on, [id("B"), id("C")]);
        assert_eq!(d.args, json!({"b": {"$result": id("B")}, "c": {"$result": id("C")}}));
    }

    #[test]
    fn cycles_unknown_steps_and_bad_references_are_refused_by_name() {
        let cycle = refusal(json!([
            {"step": "A", "job": "x.y", "depends_on": ["C"]},
            {"step": "B", "job": "x.y", "depends_on": ["A"]},
            {"step": "C", "job": "x.y", "depends_on": ["B"]},
            {"step": "E", "job": "x.y"},
        ]));
        assert!(cycle.contains("A, B, C") && cycle.contains("cycle"), "{cycle}");
        let unknown = refusal(json!([{"step": "A", "job": "x.y", "depends_on": ["Z"]}]));
        assert!(unknown.contains("\"Z\", which is not a step"), "{unknown}");
        let reference = refusal(
            json!([{"step": "A", "job": "x.y"}, {"step": "B", "job": "x.y", "args": {"a": {"$result": "A"}}}]),
        );
        assert!(reference.contains("not in its depends_on"), "{reference}");
        let twice = refusal(json!([{"step": "A", "job": "x.y"}, {"step": "A", "job": "x.y"}]));
        assert!(twice.contains("unique"), "{twice}");
        let many: Vec<_> =
            (0..=MAX_STEPS).map(|i| json!({"step": format!("s{i}"), "job": "x.y"})).collect();
        assert!(refusal(json!(many)).contains("at most 100 steps"));
    }

    #[test]
    fn the_state_says_how_the_steps_stand() {
        use JobState::*;
        let state = |states: &[JobState]| {
            summarize(&states.iter().copied().map(Some).collect::<Vec<_>>()).state
        };
        assert_eq!(state(&[Pending, Blocked, Blocked]), WorkflowState::Pending);
        assert_eq!(state(&[Completed, Running, Blocked]), WorkflowState::Running);
        assert_eq!(state(&[Completed, Failed, Running, Cancelled]), WorkflowState::Various);
        assert_eq!(state(&[Completed, Completed]), WorkflowState::Completed);
        assert_eq!(state(&[Completed, Failed, Completed, Cancelled]), WorkflowState::Failed);
        assert_eq!(state(&[Cancelled, Cancelled]), WorkflowState::Cancelled);
        assert_eq!(state(&[Completed, Cancelled]), WorkflowState::VariousComplete);
        let half = summarize(&[Some(Completed), Some(Running)]);
        assert_eq!((half.done, half.total, half.percent), (1, 2, 50.0));
    }
}
