//! [`JobStore`] on PostgreSQL: writes run the functions of `jobs` and
//! `claim` in a transaction; reads run on a pooled connection.

use super::jobs::{self, Due};
use super::schema::ms;
use super::tx::STORED_WAITING;
use super::{PgStorage, StorageError, claim, decode, encode, listing, read_job, records};
use crate::jobs::changes::{Relabel, Resubmit};
use crate::jobs::rules;
use crate::jobs::{JobEvent, JobRecord, JobState, LogLine, Millis, NewJob, QueueSettings};
use crate::storage::{
    ClaimRules, ClaimWaiting, Enqueued, Finishing, JobFilter, JobPage, JobStore, OutputBatch,
    QueueStats, Start,
};
use std::sync::atomic::Ordering;
use uuid::Uuid;

#[async_trait::async_trait]
impl JobStore for PgStorage {
    async fn enqueue(&self, new: NewJob, now: Millis) -> Result<Enqueued, StorageError> {
        let defaults = self.defaults;
        self.write(move |tx| {
            let new = new.clone();
            Box::pin(async move { jobs::enqueue(tx, new, &defaults, now).await })
        })
        .await
    }

    async fn enqueue_many(
        &self,
        batch: Vec<NewJob>,
        now: Millis,
    ) -> Result<Vec<Result<Enqueued, StorageError>>, StorageError> {
        let defaults = self.defaults;
        self.write(move |tx| {
            let batch = batch.clone();
            Box::pin(async move {
                if batch.len() > 1 {
                    tx.admit_many();
                }
                let mut results = Vec::with_capacity(batch.len());
                for new in batch {
                    results.push(match jobs::enqueue(tx, new, &defaults, now).await {
                        Err(e @ StorageError::OverQuota(_)) => Err(e),
                        other => Ok(other?),
                    });
                }
                Ok(results)
            })
        })
        .await
    }

    async fn get(&self, id: Uuid) -> Result<JobRecord, StorageError> {
        self.read(move |tx| Box::pin(read_job(tx, id, false))).await
    }

    async fn spawn_child(
        &self,
        parent: Uuid,
        attempt: u32,
        child: NewJob,
        now: Millis,
    ) -> Result<JobRecord, StorageError> {
        let defaults = self.defaults;
        self.write(move |tx| {
            let child = child.clone();
            Box::pin(
                async move { jobs::spawn_child(tx, parent, attempt, child, &defaults, now).await },
            )
        })
        .await
    }

    async fn get_many(&self, ids: &[Uuid]) -> Result<Vec<Option<JobRecord>>, StorageError> {
        let ids = ids.to_vec();
        self.read(move |tx| {
            Box::pin(async move {
                let rows =
                    tx.query("SELECT id, record FROM jobs WHERE id = ANY($1)", &[&ids]).await?;
                let mut found = std::collections::HashMap::new();
                for row in rows {
                    found.insert(row.get::<_, Uuid>(0), decode(row.get::<_, &[u8]>(1))?);
                }
                Ok(ids.iter().map(|id| found.remove(id)).collect())
            })
        })
        .await
    }

    async fn list(
        &self,
        filter: &JobFilter,
        start: Start,
        limit: usize,
    ) -> Result<JobPage, StorageError> {
        let filter = filter.clone();
        self.read(move |tx| Box::pin(async move { listing::list(tx, &filter, start, limit).await }))
            .await
    }

    async fn events(&self, id: Uuid, after: u64) -> Result<Vec<JobEvent>, StorageError> {
        self.read(move |tx| {
            Box::pin(async move {
                exists(tx, id).await?;
                let rows = tx
                    .query(
                        "SELECT body, seq FROM events WHERE job = $1 AND seq > $2 ORDER BY seq",
                        &[&id, &ms(after)],
                    )
                    .await?;
                // The column holds the seq (see `apply::journal`).
                let events: Vec<JobEvent> = records(&rows)?;
                let seqs = rows.iter().map(|row| row.get::<_, i64>(1) as u64);
                Ok(events.into_iter().zip(seqs).map(|(e, seq)| JobEvent { seq, ..e }).collect())
            })
        })
        .await
    }

    async fn logs(&self, id: Uuid, after: u64, limit: usize) -> Result<Vec<LogLine>, StorageError> {
        self.read(move |tx| {
            Box::pin(async move {
                exists(tx, id).await?;
                let rows = tx
                    .query(
                        "SELECT body FROM logs WHERE job = $1 AND seq > $2 ORDER BY seq LIMIT $3",
                        &[&id, &ms(after), &(limit.min(i64::MAX as usize) as i64)],
                    )
                    .await?;
                records(&rows)
            })
        })
        .await
    }

    async fn queue_position(&self, id: Uuid) -> Result<Option<usize>, StorageError> {
        self.read(move |tx| {
            Box::pin(async move {
                let job = read_job(tx, id, false).await?;
                if job.state != JobState::Pending {
                    return Ok(None);
                }
                // Ready jobs of its own tenant and queue ahead of it.
                let row = tx
                    .query_opt(
                        "SELECT count(*) FROM jobs WHERE state = 'pending' AND tenant = $1 \
                         AND queue = $2 AND (-priority, run_at, id) < ($3, $4, $5)",
                        &[&job.tenant, &job.queue, &-job.priority, &ms(job.run_at), &job.id],
                    )
                    .await?;
                Ok(row.map(|row| row.get::<_, i64>(0) as usize))
            })
        })
        .await
    }

    async fn claim(&self, rules: ClaimRules) -> Result<Vec<JobRecord>, StorageError> {
        self.claim_now(rules, false).await
    }

    async fn claim_waiting(
        &self,
        mut rules: ClaimRules,
        waiting: ClaimWaiting,
    ) -> Result<Vec<JobRecord>, StorageError> {
        let deadline = tokio::time::Instant::now() + waiting.wait;
        loop {
            // Listening before looking: a commit between the look and the
            // wait still wakes it.
            let woken = self.wake.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            rules.now = waiting.clock.now();
            let claimed = self.claim_now(rules.clone(), true).await?;
            if !claimed.is_empty() {
                return Ok(claimed);
            }
            if tokio::time::timeout_at(deadline, woken).await.is_err() {
                return Ok(Vec::new());
            }
        }
    }

    async fn finish(&self, id: Uuid, finishing: Finishing) -> Result<JobRecord, StorageError> {
        self.write(move |tx| {
            let finishing = finishing.clone();
            Box::pin(async move { jobs::finish(tx, id, finishing).await })
        })
        .await
    }

    async fn renew(
        &self,
        worker: &str,
        runs: Vec<(Uuid, u32)>,
        until: Millis,
    ) -> Result<Vec<(Uuid, u32)>, StorageError> {
        let worker = worker.to_string();
        self.write(move |tx| {
            let (runs, worker) = (runs.clone(), worker.clone());
            Box::pin(async move {
                let mut lost = Vec::new();
                for (id, attempt) in runs {
                    let renewed = tx
                        .execute(
                            "UPDATE jobs SET lease_until = $1 WHERE id = $2 \
                             AND state = 'running' AND worker = $3 AND attempt = $4",
                            &[&ms(until), &id, &worker, &i64::from(attempt)],
                        )
                        .await?;
                    if renewed == 0 {
                        lost.push((id, attempt));
                    }
                }
                Ok(lost)
            })
        })
        .await
    }

    async fn recover(&self, now: Millis) -> Result<Vec<Uuid>, StorageError> {
        let any = "SELECT 1 FROM jobs WHERE state = 'running' AND lease_until < $1 LIMIT 1";
        if !self.any(any, now).await? {
            return Ok(Vec::new());
        }
        self.write(move |tx| Box::pin(jobs::recover(tx, now))).await
    }

    async fn hand_back(
        &self,
        worker: &str,
        ids: Vec<Uuid>,
        now: Millis,
    ) -> Result<Vec<JobRecord>, StorageError> {
        let worker = worker.to_string();
        self.write(move |tx| {
            let (worker, ids) = (worker.clone(), ids.clone());
            Box::pin(async move { jobs::hand_back(tx, &worker, &ids, now).await })
        })
        .await
    }

    async fn promote(&self, now: Millis) -> Result<usize, StorageError> {
        let any = "SELECT 1 FROM jobs WHERE state = 'scheduled' AND run_at <= $1 LIMIT 1";
        if !self.any(any, now).await? {
            return Ok(0);
        }
        self.write(move |tx| {
            Box::pin(jobs::apply_due(tx, Due::Scheduled, now, |job, _| rules::due(job)))
        })
        .await
    }

    async fn expire(&self, now: Millis) -> Result<usize, StorageError> {
        let any = "SELECT 1 FROM jobs WHERE expires_at <= $1 \
                   AND state IN ('blocked', 'scheduled', 'pending') LIMIT 1";
        if !self.any(any, now).await? {
            return Ok(0);
        }
        self.write(move |tx| Box::pin(jobs::apply_due(tx, Due::Expiring, now, rules::expired)))
            .await
    }

    async fn append_output(
        &self,
        id: Uuid,
        attempt: u32,
        batch: OutputBatch,
    ) -> Result<(), StorageError> {
        self.write(move |tx| {
            let batch = batch.clone();
            Box::pin(async move { jobs::append_output(tx, id, attempt, batch).await })
        })
        .await
    }

    async fn relabel(&self, id: Uuid, change: Relabel) -> Result<JobRecord, StorageError> {
        self.write(move |tx| {
            let change = change.clone();
            Box::pin(async move {
                let job = read_job(tx, id, true).await?;
                let changed = crate::jobs::changes::relabel(&job, &change)
                    .map_err(|refusal| StorageError::Invalid(refusal.to_string()))?;
                super::schema::put_job(tx, &changed).await?;
                Ok(changed)
            })
        })
        .await
    }

    async fn cancel(&self, id: Uuid, now: Millis) -> Result<JobRecord, StorageError> {
        self.write(move |tx| Box::pin(jobs::cancel(tx, id, now))).await
    }

    async fn retry(
        &self,
        id: Uuid,
        changes: Resubmit,
        now: Millis,
    ) -> Result<JobRecord, StorageError> {
        let defaults = self.defaults;
        self.write(move |tx| {
            let changes = changes.clone();
            Box::pin(async move { jobs::retry(tx, id, changes, &defaults, now).await })
        })
        .await
    }

    async fn clone_job(
        &self,
        id: Uuid,
        changes: Resubmit,
        now: Millis,
    ) -> Result<JobRecord, StorageError> {
        let defaults = self.defaults;
        self.write(move |tx| {
            let changes = changes.clone();
            Box::pin(async move { jobs::clone_job(tx, id, changes, &defaults, now).await })
        })
        .await
    }

    async fn remove(&self, id: Uuid) -> Result<JobRecord, StorageError> {
        self.write(move |tx| Box::pin(jobs::remove(tx, id))).await
    }

    async fn prune(&self, finished_before: Millis, max: usize) -> Result<usize, StorageError> {
        self.write(move |tx| Box::pin(jobs::prune(tx, finished_before, max))).await
    }

    async fn queue_stats(
        &self,
        tenant: Option<&str>,
        now: Millis,
        window_ms: u64,
        stuck_after_ms: u64,
    ) -> Result<Vec<QueueStats>, StorageError> {
        let tenant = tenant.map(str::to_string);
        self.read(move |tx| {
            Box::pin(async move {
                listing::queue_stats(tx, tenant.as_deref(), now, window_ms, stuck_after_ms).await
            })
        })
        .await
    }

    async fn enqueue_broadcast(
        &self,
        new: NewJob,
        live_after: Millis,
        now: Millis,
    ) -> Result<Vec<JobRecord>, StorageError> {
        let defaults = self.defaults;
        self.write(move |tx| {
            let new = new.clone();
            Box::pin(
                async move { jobs::enqueue_broadcast(tx, new, live_after, &defaults, now).await },
            )
        })
        .await
    }

    async fn waiting(&self, tenant: &str) -> Result<u64, StorageError> {
        let tenant = tenant.to_string();
        self.read(move |tx| {
            Box::pin(async move {
                let row = tx.query_opt(STORED_WAITING, &[&tenant]).await?;
                Ok(row.map_or(0, |row| row.get::<_, i64>(0).max(0) as u64))
            })
        })
        .await
    }

    async fn set_queue(&self, name: &str, settings: QueueSettings) -> Result<(), StorageError> {
        let name = name.to_string();
        self.write(move |tx| {
            let (name, settings) = (name.clone(), encode(&settings));
            Box::pin(async move {
                tx.execute(
                    "INSERT INTO queues (name, settings) VALUES ($1, $2) \
                     ON CONFLICT (name) DO UPDATE SET settings = excluded.settings",
                    &[&name, &settings],
                )
                .await?;
                // A queue resumed or given more room may take jobs now.
                tx.wake();
                Ok(())
            })
        })
        .await
    }

    async fn queue(&self, name: &str) -> Result<QueueSettings, StorageError> {
        let name = name.to_string();
        self.read(move |tx| Box::pin(async move { jobs::queue(tx, &name).await })).await
    }

    async fn locks(&self) -> Result<Vec<(String, Uuid)>, StorageError> {
        self.read(|tx| {
            Box::pin(async move {
                let rows = tx.query("SELECT name, job FROM locks ORDER BY name", &[]).await?;
                Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
            })
        })
        .await
    }

    async fn clear_lock(&self, name: &str) -> Result<(), StorageError> {
        let name = name.to_string();
        self.write(move |tx| {
            let name = name.clone();
            Box::pin(async move {
                if tx.execute("DELETE FROM locks WHERE name = $1", &[&name]).await? == 0 {
                    return Err(StorageError::NotFound(format!("lock {name:?}")));
                }
                tx.wake();
                Ok(())
            })
        })
        .await
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("commits_total", self.stats.commits.load(Ordering::Relaxed)),
            ("conflict_retries_total", self.stats.retries.load(Ordering::Relaxed)),
        ]
    }
}

impl PgStorage {
    /// Claims in a transaction, moving this host's cursor on.
    async fn claim_now(
        &self,
        rules: ClaimRules,
        free_slots_only: bool,
    ) -> Result<Vec<JobRecord>, StorageError> {
        let defaults = self.defaults;
        let cursor = self.claim_cursor.lock().unwrap().clone();
        let (claimed, first) = self
            .write(move |tx| {
                let (rules, cursor) = (rules.clone(), cursor.clone());
                Box::pin(async move {
                    claim::claim(tx, &rules, free_slots_only, &defaults, &cursor).await
                })
            })
            .await?;
        if let Some(first) = first {
            *self.claim_cursor.lock().unwrap() = first;
        }
        Ok(claimed)
    }

    /// Whether the query (of a time `at`) finds a row: a look before a
    /// write, so an idle host does not commit.
    async fn any(&self, sql: &'static str, at: Millis) -> Result<bool, StorageError> {
        self.read(move |tx| {
            Box::pin(async move { Ok(tx.query_opt(sql, &[&ms(at)]).await?.is_some()) })
        })
        .await
    }
}

/// Refuses a job that is not stored.
async fn exists(tx: &super::Tx, id: Uuid) -> Result<(), StorageError> {
    match tx.query_opt("SELECT 1 FROM jobs WHERE id = $1", &[&id]).await? {
        Some(_) => Ok(()),
        None => Err(StorageError::NotFound(format!("job {id}"))),
    }
}
