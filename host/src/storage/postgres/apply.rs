//! Writing a rule's [`Transition`]: the one way a job's state changes in
//! this backend. The row's columns follow the record; what else the states
//! left and entered call for is written here: the tenant's waiting count, a
//! running job's lock, the wake-up of waiting claims when a job becomes
//! ready or a slot or lock frees, a webhook in the outbox for a terminal
//! job with a `callback_url`, the journal, and the jobs that waited for
//! this one when it finished.

use super::schema::{ms, put_job};
use super::{StorageError, Tx, encode, read_job};
use crate::jobs::flow::settle;
use crate::jobs::{JobEvent, JobRecord, JobState, Millis, Transition, WebhookStatus};
use futures::future::BoxFuture;
use uuid::Uuid;

fn waits(state: JobState) -> bool {
    matches!(state, JobState::Blocked | JobState::Pending | JobState::Scheduled)
}

/// Writes `transition` at time `at`; `before` is the record as stored,
/// `None` for a new job.
pub(super) fn apply<'a>(
    tx: &'a Tx,
    before: Option<&'a JobRecord>,
    transition: &'a Transition,
    at: Millis,
) -> BoxFuture<'a, Result<JobEvent, StorageError>> {
    Box::pin(async move {
        let job = &transition.job;
        let was = before.map(|b| b.state);
        let delta = i64::from(waits(job.state)) - i64::from(was.is_some_and(waits));
        if delta != 0 {
            tx.add_waiting(&job.tenant, delta);
        }
        let was_running = was == Some(JobState::Running);
        if let (true, Some(before)) = (was_running && job.state != JobState::Running, before) {
            if let Some(lock) = &before.lock {
                tx.execute("DELETE FROM locks WHERE name = $1 AND job = $2", &[lock, &job.id])
                    .await?;
            }
            tx.wake();
        }
        if let (true, Some(lock)) = (job.state == JobState::Running && !was_running, &job.lock) {
            tx.execute(
                "INSERT INTO locks (name, job) VALUES ($1, $2) \
                 ON CONFLICT (name) DO UPDATE SET job = excluded.job",
                &[lock, &job.id],
            )
            .await?;
        }
        if job.state == JobState::Pending && was != Some(JobState::Pending) {
            tx.wake();
        }
        let closed = was.is_some_and(|s| !s.is_terminal()) && job.state.is_terminal();
        if job.state.is_terminal()
            && transition.from != Some(job.state)
            && job.callback_url.is_some()
        {
            tx.execute(
                "INSERT INTO callbacks (due, job, attempts) VALUES ($1, $2, 0) \
                 ON CONFLICT DO NOTHING",
                &[&ms(at), &job.id],
            )
            .await?;
            put_job(tx, &JobRecord { webhook: Some(WebhookStatus::pending(at)), ..job.clone() })
                .await?;
        } else {
            put_job(tx, job).await?;
        }
        let event = journal(tx, job, transition.from, at, &transition.reason).await?;
        if closed {
            settle_dependents(tx, job.id, at).await?;
        }
        Ok(event)
    })
}

/// Asks the settle rule about every job waiting for `finished`, now that
/// it finished, and writes what it decides.
async fn settle_dependents(tx: &Tx, finished: Uuid, at: Millis) -> Result<(), StorageError> {
    let rows =
        tx.query("DELETE FROM dependents WHERE dep = $1 RETURNING job", &[&finished]).await?;
    let mut waiting: Vec<Uuid> = rows.iter().map(|row| row.get(0)).collect();
    waiting.sort();
    for id in waiting {
        let job = read_job(tx, id, true).await?;
        if job.state != JobState::Blocked {
            continue;
        }
        let deps = dependencies(tx, &job.flow.depends_on).await?;
        if let Some(transition) = settle(&job, &deps, at) {
            apply(tx, Some(&job), &transition, at).await?;
        }
    }
    Ok(())
}

/// The records of the jobs `ids`, `None` for one not stored.
pub(super) async fn dependencies(
    tx: &Tx,
    ids: &[Uuid],
) -> Result<Vec<(Uuid, Option<JobRecord>)>, StorageError> {
    let mut found = Vec::with_capacity(ids.len());
    for id in ids {
        let record = match read_job(tx, *id, false).await {
            Ok(job) => Some(job),
            Err(StorageError::NotFound(_)) => None,
            Err(e) => return Err(e),
        };
        found.push((*id, record));
    }
    Ok(found)
}

/// Appends an event to the job's journal: the transition from `from` to the
/// job's current state, at `at`. One statement finds the next seq and
/// writes it (the job's row, locked or new, keeps its journal to this
/// transaction). The seq is the column's, which readers take; the body's
/// is 0.
pub(super) async fn journal(
    tx: &Tx,
    job: &JobRecord,
    from: Option<JobState>,
    at: Millis,
    reason: &str,
) -> Result<JobEvent, StorageError> {
    let mut event = JobEvent {
        seq: 0,
        at,
        state: job.state,
        from,
        worker: job.worker.clone(),
        reason: reason.to_string(),
    };
    let row = tx
        .query_opt(
            "INSERT INTO events (job, seq, body) \
             SELECT $1, coalesce(max(seq), 0) + 1, $2 FROM events WHERE job = $1 RETURNING seq",
            &[&job.id, &encode(&event)],
        )
        .await?;
    event.seq = row.map_or(0, |row| row.get::<_, i64>(0)) as u64;
    Ok(event)
}
