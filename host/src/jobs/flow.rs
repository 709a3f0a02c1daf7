//! How jobs relate: a job may wait for others (`depends_on`), take their
//! results into its args (`{"$result": id}`), follow one as the next link
//! of a chain, be a step of a workflow, be spawned by a running job, or be
//! fired by a schedule. One rule decides what a waiting job does when the
//! jobs it waits for finish ([`settle`]); storage calls it in the
//! transaction that finishes each of them.

use super::rules::Transition;
use super::{FailureKind, JobError, JobRecord, JobState, Millis, NewJob};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashMap;
use utoipa::ToSchema;
use uuid::Uuid;

/// Most jobs one job may depend on.
pub const MAX_DEPENDENCIES: usize = 100;
/// The key that stands for another job's result in args.
pub const RESULT_REF: &str = "$result";
/// In a chained job's args, the job before it.
pub const PREVIOUS: &str = "previous";

/// What a job does when a job it depends on fails, is cancelled or expires.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DependencyFailure {
    /// It is cancelled too, with the reason (the default).
    #[default]
    Cancel,
    /// It runs anyway once all have finished; a failed one's `$result` is
    /// `null`.
    Run,
}

impl DependencyFailure {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// A job's links to other jobs, as stored on its record.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Flow {
    /// Jobs it waits for: it stays `blocked` until they all finished.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<Uuid>,
    /// What it does when one of them fails.
    #[serde(default, skip_serializing_if = "DependencyFailure::is_default")]
    pub if_dependency_fails: DependencyFailure,
    /// Its args as asked, with `$result` references, while the job's args
    /// are (once it is ready) the resolved ones: a retry resolves it again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(ignore)]
    pub args_template: Option<String>,
    /// The job that follows it in a chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_job_id: Option<Uuid>,
    /// The workflow it is a step of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow: Option<Uuid>,
    /// Its step's name in that workflow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// The job that spawned it from inside its run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<Uuid>,
    /// Jobs it spawned.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<Uuid>,
    /// Spawn depth: 0 for a job a client enqueued, 1 for its children...
    #[serde(default, skip_serializing_if = "is_zero")]
    pub depth: u32,
    /// The schedule that enqueued it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Uuid>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// The links a retry or clone of a job keeps: what it waits for and takes
/// results from (unless new args replace them), its parent and schedule;
/// not its place in a workflow (a workflow's retry sets that) or its
/// children and chain (the new job has none yet).
pub fn resubmitted(old: &Flow, new_args: bool) -> Flow {
    Flow {
        depends_on: old.depends_on.clone(),
        if_dependency_fails: old.if_dependency_fails,
        args_template: if new_args { None } else { old.args_template.clone() },
        parent: old.parent,
        depth: old.depth,
        schedule: old.schedule,
        ..Flow::default()
    }
}

/// A chained job's links to the job before it: it waits for it, and its
/// args are that job's result, or take it where they name `previous`.
pub fn chained(next: &mut super::NewJob, previous: Uuid) {
    let args = super::stored_json(&next.args);
    let template = if args == Value::Object(Default::default()) {
        serde_json::json!({ RESULT_REF: previous.to_string() })
    } else {
        rename_references(&args, &|name| (name == PREVIOUS).then(|| previous.to_string()))
    };
    next.args = template.to_string();
    next.flow.args_template = Some(next.args.clone());
    next.flow.depends_on = vec![previous];
}

/// The job ids (or names, for workflow steps) that `{"$result": …}`
/// objects in `args` name, in order of appearance.
pub fn references(args: &Value) -> Vec<String> {
    let mut found = Vec::new();
    walk(args, &mut |reference| found.push(reference.to_string()));
    found
}

fn walk(value: &Value, found: &mut impl FnMut(&str)) {
    match value {
        Value::Object(map) => match reference(map) {
            Some(name) => found(name),
            None => map.values().for_each(|v| walk(v, found)),
        },
        Value::Array(items) => items.iter().for_each(|v| walk(v, found)),
        _ => {}
    }
}

/// `{"$result": name}` or `{"$result": name, "pointer": "/a/b"}`.
fn reference(map: &serde_json::Map<String, Value>) -> Option<&str> {
    let name = map.get(RESULT_REF)?.as_str()?;
    let only_pointer = map.keys().all(|k| k == RESULT_REF || k == "pointer");
    only_pointer.then_some(name)
}

/// `args` with every `$result` reference renamed by `rename` (a step name
/// or "previous" to a job id, an old job id to its retry's).
pub fn rename_references(args: &Value, rename: &impl Fn(&str) -> Option<String>) -> Value {
    match args {
        Value::Object(map) => match reference(map) {
            Some(name) => {
                let mut map = map.clone();
                if let Some(new) = rename(name) {
                    map.insert(RESULT_REF.into(), Value::String(new));
                }
                Value::Object(map)
            }
            None => Value::Object(
                map.iter().map(|(k, v)| (k.clone(), rename_references(v, rename))).collect(),
            ),
        },
        Value::Array(items) => {
            Value::Array(items.iter().map(|v| rename_references(v, rename)).collect())
        }
        other => other.clone(),
    }
}

/// `template` with every `$result` reference replaced by that job's result
/// (at its `pointer`, if any); a job with no result gives `null`.
pub fn resolve(template: &Value, results: &HashMap<String, Value>) -> Value {
    match template {
        Value::Object(map) => match reference(map) {
            Some(name) => {
                let result = results.get(name).cloned().unwrap_or(Value::Null);
                match map.get("pointer").and_then(Value::as_str) {
                    Some(pointer) => result.pointer(pointer).cloned().unwrap_or(Value::Null),
                    None => result,
                }
            }
            None => {
                Value::Object(map.iter().map(|(k, v)| (k.clone(), resolve(v, results))).collect())
            }
        },
        Value::Array(items) => Value::Array(items.iter().map(|v| resolve(v, results)).collect()),
        other => other.clone(),
    }
}

/// A new job as it is written, given the records of the jobs it depends on
/// (each must be stored, of its tenant): its transition (for a broadcast
/// `copy`, pinned to the copy's worker with the broadcast's id) and the
/// next link of its chain, given an id and linked to it. Refused with the
/// reason when a dependency is not one of its tenant's jobs.
pub fn admitted(
    mut new: NewJob,
    copy: Option<(String, Uuid)>,
    deps: &[(Uuid, Option<JobRecord>)],
    now: Millis,
) -> Result<(Transition, Option<NewJob>), String> {
    for (id, dep) in deps {
        if dep.as_ref().is_none_or(|dep| dep.tenant != new.tenant) {
            return Err(format!("depends_on: there is no job {id}"));
        }
    }
    let id = new.id.take().unwrap_or_else(Uuid::now_v7);
    let mut next = new.next.take().map(|next| *next);
    if let Some(next) = &mut next {
        next.id = Some(Uuid::now_v7());
        chained(next, id);
    }
    let mut transition = enqueued_after(new, id, now, deps);
    if let Some((worker, broadcast)) = copy {
        transition.job.pinned_to = Some(worker);
        transition.job.broadcast = Some(broadcast);
    }
    transition.job.flow.next_job_id = next.as_ref().and_then(|next| next.id);
    Ok((transition, next))
}

/// A new job that depends on others, given their records: `blocked` while
/// some are unfinished, else as [`settle`] decides at once.
pub fn enqueued_after(
    new: NewJob,
    id: Uuid,
    now: Millis,
    deps: &[(Uuid, Option<JobRecord>)],
) -> Transition {
    let mut enqueued = super::rules::enqueued(new, id, now);
    if enqueued.job.flow.depends_on.is_empty() {
        return enqueued;
    }
    match settle(&enqueued.job, deps, now) {
        Some(settled) => {
            Transition { from: None, reason: format!("enqueued; {}", settled.reason), ..settled }
        }
        None => {
            enqueued.job.state = JobState::Blocked;
            let waiting =
                deps.iter().filter(|(_, d)| d.as_ref().is_some_and(|d| !d.state.is_terminal()));
            enqueued.reason = format!("enqueued, waiting for {} jobs", waiting.count());
            enqueued
        }
    }
}

/// What a job waiting for `deps` (its dependencies' records, `None` for one
/// no longer stored) does now: `None` while some are unfinished; else
/// cancelled (one failed, and it does not run anyway) or ready, its
/// `$result` references resolved, `pending` (or `scheduled` until its
/// `run_at`).
pub fn settle(
    job: &JobRecord,
    deps: &[(Uuid, Option<JobRecord>)],
    now: Millis,
) -> Option<Transition> {
    let unfinished =
        deps.iter().any(|(_, dep)| dep.as_ref().is_some_and(|d| !d.state.is_terminal()));
    if unfinished {
        return None;
    }
    let failed =
        deps.iter().find(|(_, dep)| dep.as_ref().is_none_or(|d| d.state != JobState::Completed));
    let mut next = job.clone();
    let from = Some(job.state);
    if let (Some((id, dep)), DependencyFailure::Cancel) = (failed, job.flow.if_dependency_fails) {
        let what = match dep {
            Some(dep) => {
                let step =
                    dep.flow.step.as_deref().map(|s| format!(" (step {s})")).unwrap_or_default();
                format!("dependency {id}{step} ended {}", dep.state.as_str())
            }
            None => format!("dependency {id} is no longer stored"),
        };
        next.state = JobState::Cancelled;
        next.finished_at = Some(now);
        let message = format!("{what}: not run");
        next.error = Some(JobError { kind: FailureKind::Cancelled, message: message.clone() });
        return Some(Transition { job: next, from, reason: message });
    }
    if let Some(template) = &job.flow.args_template {
        let results: HashMap<String, Value> = deps
            .iter()
            .filter_map(|(id, dep)| {
                let dep = dep.as_ref()?;
                let result = dep.result.as_deref().map(super::stored_json)?;
                Some((id.to_string(), result))
            })
            .collect();
        let template = super::stored_json(template);
        next.args = resolve(&template, &results).to_string();
    }
    next.run_at = next.run_at.max(now);
    next.state = if next.run_at > now { JobState::Scheduled } else { JobState::Pending };
    let reason = match failed {
        Some(_) => "dependencies finished, some not completed: runs anyway".to_string(),
        None => format!("{} dependencies completed", deps.len()),
    };
    Some(Transition { job: next, from, reason })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::NewJob;
    use serde_json::json;

    fn job(state: JobState, result: Option<&str>) -> JobRecord {
        let mut job = JobRecord::new(NewJob::default(), Uuid::now_v7(), 0);
        job.state = state;
        job.result = result.map(str::to_string);
        job
    }

    fn waiting_on(deps: &[&JobRecord], template: Value) -> JobRecord {
        let mut waiting = job(JobState::Blocked, None);
        waiting.flow.depends_on = deps.iter().map(|d| d.id).collect();
        waiting.flow.args_template = Some(template.to_string());
        waiting
    }

    fn records(deps: &[&JobRecord]) -> Vec<(Uuid, Option<JobRecord>)> {
        deps.iter().map(|d| (d.id, Some((*d).clone()))).collect()
    }

    #[test]
    fn a_job_waits_until_every_dependency_finished_then_takes_their_results() {
        let b = job(JobState::Completed, Some(r#"{"n": 2}"#));
        let mut c = job(JobState::Running, None);
        let template = json!({"b": {"$result": b.id.to_string()}, "c": {"$result": c.id.to_string(), "pointer": "/n"}, "k": [1]});
        let d = waiting_on(&[&b, &c], template);
        assert_eq!(settle(&d, &records(&[&b, &c]), 5), None, "c still runs");
        c.state = JobState::Completed;
        c.result = Some(r#"{"n": 3}"#.into());
        let ready = settle(&d, &records(&[&b, &c]), 5).unwrap();
        assert_eq!(ready.job.state, JobState::Pending);
        assert_eq!(stored(&ready.job.args), json!({"b": {"n": 2}, "c": 3, "k": [1]}));
    }

    #[test]
    fn a_failed_dependency_cancels_unless_the_job_runs_anyway() {
        let a = job(JobState::Failed, None);
        let mut d = waiting_on(&[&a], json!({"a": {"$result": a.id.to_string()}}));
        let cancelled = settle(&d, &records(&[&a]), 9).unwrap();
        assert_eq!(cancelled.job.state, JobState::Cancelled);
        let error = cancelled.job.error.unwrap();
        assert!(error.message.contains(&a.id.to_string()) && error.message.contains("failed"));
        d.flow.if_dependency_fails = DependencyFailure::Run;
        let anyway = settle(&d, &records(&[&a]), 9).unwrap();
        assert_eq!(
            (anyway.job.state, stored(&anyway.job.args)),
            (JobState::Pending, json!({"a": null}))
        );
    }

    #[test]
    fn references_are_found_and_renamed_but_lookalikes_are_left_alone() {
        let args = json!({"x": {"$result": "B"}, "y": [{"$result": "C", "pointer": "/a"}], "z": {"$result": "D", "other": 1}});
        assert_eq!(references(&args), ["B", "C"]);
        let renamed = rename_references(&args, &|name| Some(format!("id-{name}")));
        assert_eq!(references(&renamed), ["id-B", "id-C"]);
        assert_eq!(renamed["z"], args["z"]);
    }

    fn stored(text: &str) -> Value {
        serde_json::from_str(text).unwrap()
    }
}
