//! [`WorkflowStore`] on redb: a workflow's record in [`WORKFLOWS`], its
//! steps ordinary jobs written by `jobs::insert` in the same transaction.

use super::apply::apply;
use super::index::{Counter, Txn};
use super::jobs::{insert, tenant};
use super::schema::{JOBS, WORKFLOWS, decode};
use super::{RedbStorage, StorageError, put_job, put_record, read_job, read_record};
use crate::jobs::workflow::{WorkflowRecord, retried_step, retry_plan};
use crate::jobs::{JobRecord, Millis, NewJob, TenantDefaults, Transition, rules};
use crate::storage::WorkflowStore;
use ::redb::ReadableTable;
use std::collections::HashMap;
use uuid::Uuid;

#[async_trait::async_trait]
impl WorkflowStore for RedbStorage {
    async fn create_workflow(
        &self,
        workflow: WorkflowRecord,
        steps: Vec<NewJob>,
        now: Millis,
    ) -> Result<Vec<JobRecord>, StorageError> {
        let defaults = self.defaults;
        self.writer
            .write(move |txn| {
                room_for(txn, &workflow.tenant, steps.len(), &defaults)?;
                let mut jobs = Vec::with_capacity(steps.len());
                for step in steps {
                    jobs.push(insert(txn, step, None, &defaults, now)?);
                }
                put_workflow(txn, &workflow)?;
                Ok(jobs)
            })
            .await
    }

    async fn workflow(&self, id: Uuid) -> Result<WorkflowRecord, StorageError> {
        read_record(&self.begin_read()?.open_table(WORKFLOWS)?, id, "workflow")
    }

    async fn workflows(
        &self,
        tenant: Option<&str>,
        owner: Option<&str>,
        offset: usize,
        limit: usize,
    ) -> Result<(Vec<WorkflowRecord>, usize), StorageError> {
        let (tenant, owner) = (tenant.map(str::to_string), owner.map(str::to_string));
        self.read(move |txn| {
            let mut page = Vec::new();
            let mut total = 0;
            for entry in txn.open_table(WORKFLOWS)?.iter()?.rev() {
                let workflow: WorkflowRecord = decode(entry?.1.value())?;
                let wanted = tenant.as_ref().is_none_or(|t| *t == workflow.tenant)
                    && owner.as_ref().is_none_or(|o| *o == workflow.owner);
                if wanted {
                    if total >= offset && page.len() < limit {
                        page.push(workflow);
                    }
                    total += 1;
                }
            }
            Ok((page, total))
        })
        .await
    }

    async fn cancel_workflow(&self, id: Uuid, now: Millis) -> Result<Vec<JobRecord>, StorageError> {
        self.writer
            .write(move |txn| {
                let workflow = read_workflow(txn, id)?;
                let mut jobs = Vec::with_capacity(workflow.steps.len());
                for step in &workflow.steps {
                    // Read again each time: cancelling a step cancels its
                    // dependents too.
                    let job = read_job(&*txn.open_table(JOBS)?, step.job)?;
                    match rules::cancelled(&job, now) {
                        Ok(transition) if !job.cancel_requested => {
                            apply(txn, Some(&job), &transition, now)?;
                        }
                        _ => {}
                    }
                }
                for step in &workflow.steps {
                    jobs.push(read_job(&*txn.open_table(JOBS)?, step.job)?);
                }
                Ok(jobs)
            })
            .await
    }

    async fn retry_workflow(&self, id: Uuid, now: Millis) -> Result<WorkflowRecord, StorageError> {
        let defaults = self.defaults;
        self.writer.write(move |txn| retry(txn, id, &defaults, now)).await
    }
}

/// Enqueues again the steps [`retry_plan`] names, in order, each waiting
/// for the current jobs of its steps and taking their results.
fn retry(
    txn: &Txn,
    id: Uuid,
    defaults: &TenantDefaults,
    now: Millis,
) -> Result<WorkflowRecord, StorageError> {
    let mut workflow = read_workflow(txn, id)?;
    let jobs: Vec<Option<JobRecord>> = {
        let table = txn.open_table(JOBS)?;
        let mut jobs = Vec::new();
        for step in &workflow.steps {
            jobs.push(table.get(step.job.as_u128())?.map(|v| decode(v.value())).transpose()?);
        }
        jobs
    };
    let again = retry_plan(&workflow, &jobs).map_err(StorageError::Conflict)?;
    room_for(txn, &workflow.tenant, again.len(), defaults)?;
    let mut current: HashMap<String, Uuid> =
        workflow.steps.iter().map(|s| (s.name.clone(), s.job)).collect();
    let mut renamed: HashMap<String, String> = HashMap::new();
    for (step, old) in workflow.steps.iter_mut().zip(jobs) {
        if !again.contains(&step.name) {
            continue;
        }
        let Some(old) = old else {
            return Err(StorageError::Conflict(format!(
                "step {:?} of workflow {id} was removed: it cannot be retried",
                step.name
            )));
        };
        let new = retried_step(workflow.id, step, &old, &current, &renamed);
        let mut job = insert(txn, new, None, defaults, now)?;
        job.retry_of = Some(old.id);
        put_job(txn, &job)?;
        let linked = JobRecord { retried_by: Some(job.id), ..old.clone() };
        let note = Transition {
            reason: format!("retried as {}", job.id),
            from: Some(old.state),
            job: linked,
        };
        apply(txn, Some(&old), &note, now)?;
        renamed.insert(old.id.to_string(), job.id.to_string());
        current.insert(step.name.clone(), job.id);
        step.job = job.id;
    }
    workflow.retries += 1;
    put_workflow(txn, &workflow)?;
    Ok(workflow)
}

/// Refuses, before anything is written, `count` more waiting jobs over the
/// tenant's `max_queued`.
fn room_for(
    txn: &Txn,
    tenant_name: &str,
    count: usize,
    defaults: &TenantDefaults,
) -> Result<(), StorageError> {
    let tenant = tenant(txn, tenant_name)?;
    let waiting = txn.count_of(&Counter::Waiting(tenant_name.to_string()))?;
    let more = waiting.saturating_add(count.saturating_sub(1) as u64);
    rules::queued_quota(&tenant, defaults, more).map_err(|why| {
        StorageError::OverQuota(format!("{why}; this workflow needs room for {count} jobs"))
    })
}

fn read_workflow(txn: &Txn, id: Uuid) -> Result<WorkflowRecord, StorageError> {
    read_record(&*txn.open_table(WORKFLOWS)?, id, "workflow")
}

fn put_workflow(txn: &Txn, workflow: &WorkflowRecord) -> Result<(), StorageError> {
    put_record(txn, WORKFLOWS, workflow.id, workflow)
}
