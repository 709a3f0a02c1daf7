//! [`WorkflowStore`] on PostgreSQL: a workflow's record in `workflows`,
//! its steps ordinary jobs written by `jobs::insert` in the same
//! transaction.

use super::apply::apply;
use super::jobs::{insert, resubmit_as_retry, tenant};
use super::{PgStorage, StorageError, Tx, decode, encode, read_job, records};
use crate::jobs::workflow::{WorkflowRecord, retried_step, retry_plan};
use crate::jobs::{JobRecord, Millis, NewJob, TenantDefaults, rules};
use crate::storage::WorkflowStore;
use std::collections::HashMap;
use uuid::Uuid;

#[async_trait::async_trait]
impl WorkflowStore for PgStorage {
    async fn create_workflow(
        &self,
        workflow: WorkflowRecord,
        steps: Vec<NewJob>,
        now: Millis,
    ) -> Result<Vec<JobRecord>, StorageError> {
        let defaults = self.defaults;
        self.write(move |tx| {
            let (workflow, steps) = (workflow.clone(), steps.clone());
            Box::pin(async move {
                room_for(tx, &workflow.tenant, steps.len(), &defaults).await?;
                let mut jobs = Vec::with_capacity(steps.len());
                for step in steps {
                    jobs.push(insert(tx, step, None, &defaults, now).await?);
                }
                put_workflow(tx, &workflow).await?;
                Ok(jobs)
            })
        })
        .await
    }

    async fn workflow(&self, id: Uuid) -> Result<WorkflowRecord, StorageError> {
        self.read(move |tx| Box::pin(read_workflow(tx, id, false))).await
    }

    async fn workflows(
        &self,
        tenant: Option<&str>,
        owner: Option<&str>,
        offset: usize,
        limit: usize,
    ) -> Result<(Vec<WorkflowRecord>, usize), StorageError> {
        let (tenant, owner) = (tenant.map(str::to_string), owner.map(str::to_string));
        self.read(move |tx| {
            Box::pin(async move {
                let of = "($1::text IS NULL OR tenant = $1) AND ($2::text IS NULL OR owner = $2)";
                let rows = tx
                    .query(
                        &format!(
                            "SELECT record FROM workflows WHERE {of} ORDER BY id DESC \
                             OFFSET $3 LIMIT $4"
                        ),
                        &[&tenant, &owner, &(offset as i64), &(limit as i64)],
                    )
                    .await?;
                let count = format!("SELECT count(*) FROM workflows WHERE {of}");
                let total = tx.query_opt(&count, &[&tenant, &owner]).await?;
                Ok((records(&rows)?, total.map_or(0, |row| row.get::<_, i64>(0) as usize)))
            })
        })
        .await
    }

    async fn cancel_workflow(&self, id: Uuid, now: Millis) -> Result<Vec<JobRecord>, StorageError> {
        self.write(move |tx| {
            Box::pin(async move {
                let workflow = read_workflow(tx, id, true).await?;
                for step in &workflow.steps {
                    // Read again each time: cancelling a step cancels its
                    // dependents too.
                    let job = read_job(tx, step.job, true).await?;
                    match rules::cancelled(&job, now) {
                        Ok(transition) if !job.cancel_requested => {
                            apply(tx, Some(&job), &transition, now).await?;
                        }
                        _ => {}
                    }
                }
                let mut jobs = Vec::with_capacity(workflow.steps.len());
                for step in &workflow.steps {
                    jobs.push(read_job(tx, step.job, false).await?);
                }
                Ok(jobs)
            })
        })
        .await
    }

    async fn retry_workflow(&self, id: Uuid, now: Millis) -> Result<WorkflowRecord, StorageError> {
        let defaults = self.defaults;
        self.write(move |tx| Box::pin(async move { retry(tx, id, &defaults, now).await })).await
    }
}

/// Enqueues again the steps [`retry_plan`] names, in order, each waiting
/// for the current jobs of its steps and taking their results.
async fn retry(
    tx: &Tx,
    id: Uuid,
    defaults: &TenantDefaults,
    now: Millis,
) -> Result<WorkflowRecord, StorageError> {
    let mut workflow = read_workflow(tx, id, true).await?;
    let mut jobs: Vec<Option<JobRecord>> = Vec::with_capacity(workflow.steps.len());
    for step in &workflow.steps {
        jobs.push(match read_job(tx, step.job, true).await {
            Ok(job) => Some(job),
            Err(StorageError::NotFound(_)) => None,
            Err(e) => return Err(e),
        });
    }
    let again = retry_plan(&workflow, &jobs).map_err(StorageError::Conflict)?;
    room_for(tx, &workflow.tenant, again.len(), defaults).await?;
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
        let job = resubmit_as_retry(tx, &old, new, defaults, now).await?;
        renamed.insert(old.id.to_string(), job.id.to_string());
        current.insert(step.name.clone(), job.id);
        step.job = job.id;
    }
    workflow.retries += 1;
    put_workflow(tx, &workflow).await?;
    Ok(workflow)
}

/// Refuses, before anything is written, `count` more waiting jobs over the
/// tenant's `max_queued`.
async fn room_for(
    tx: &Tx,
    tenant_name: &str,
    count: usize,
    defaults: &TenantDefaults,
) -> Result<(), StorageError> {
    let tenant = tenant(tx, tenant_name).await?;
    tx.admit_many();
    let waiting = tx.waiting(&tenant, defaults, count as u64).await?;
    let more = waiting.saturating_add(count.saturating_sub(1) as u64);
    rules::queued_quota(&tenant, defaults, more).map_err(|why| {
        StorageError::OverQuota(format!("{why}; this workflow needs room for {count} jobs"))
    })
}

async fn read_workflow(tx: &Tx, id: Uuid, lock: bool) -> Result<WorkflowRecord, StorageError> {
    let sql = if lock {
        "SELECT record FROM workflows WHERE id = $1 FOR UPDATE"
    } else {
        "SELECT record FROM workflows WHERE id = $1"
    };
    match tx.query_opt(sql, &[&id]).await? {
        Some(row) => decode(row.get::<_, &[u8]>(0)),
        None => Err(StorageError::NotFound(format!("workflow {id}"))),
    }
}

async fn put_workflow(tx: &Tx, workflow: &WorkflowRecord) -> Result<(), StorageError> {
    tx.execute(
        "INSERT INTO workflows (id, tenant, owner, record) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (id) DO UPDATE SET record = excluded.record",
        &[&workflow.id, &workflow.tenant, &workflow.owner, &encode(workflow)],
    )
    .await
    .map(drop)
}
