//! [`JobStore`] on redb: writes go through the group-commit writer into the
//! functions of `jobs` and `claim`; reads open their own read transaction.

use super::apply::unlock;
use super::index::Counter;
use super::schema::{
    COUNTS, EVENTS, EXPIRING, JOBS, LOCKS, LOGS, QUEUES, READY, RUNNING, SCHEDULED, TimeIndex,
    decode, encode, ready_group, ready_key,
};
use super::{Lease, RedbStorage, StorageError, claim, jobs, listing, read_job};
use crate::jobs::changes::{Relabel, Resubmit};
use crate::jobs::rules;
use crate::jobs::{JobEvent, JobRecord, JobState, LogLine, Millis, NewJob, QueueSettings};
use crate::storage::{
    ClaimRules, ClaimWaiting, Enqueued, Finishing, JobFilter, JobPage, JobStore, OutputBatch,
    QueueStats, Start,
};
use ::redb::{ReadTransaction, ReadableTable};
use std::sync::atomic::Ordering;
use uuid::Uuid;

#[async_trait::async_trait]
impl JobStore for RedbStorage {
    async fn enqueue(&self, new: NewJob, now: Millis) -> Result<Enqueued, StorageError> {
        let defaults = self.defaults;
        self.writer.write(move |txn| jobs::enqueue(txn, new, &defaults, now)).await
    }

    async fn enqueue_many(
        &self,
        jobs: Vec<NewJob>,
        now: Millis,
    ) -> Result<Vec<Result<Enqueued, StorageError>>, StorageError> {
        let defaults = self.defaults;
        self.writer
            .write(move |txn| {
                let mut results = Vec::with_capacity(jobs.len());
                for new in jobs {
                    results.push(match jobs::enqueue(txn, new, &defaults, now) {
                        Err(e @ StorageError::OverQuota(_)) => Err(e),
                        other => Ok(other?),
                    });
                }
                Ok(results)
            })
            .await
    }

    async fn get(&self, id: Uuid) -> Result<JobRecord, StorageError> {
        read_job(&self.begin_read()?.open_table(JOBS)?, id)
    }

    async fn spawn_child(
        &self,
        parent: Uuid,
        attempt: u32,
        child: NewJob,
        now: Millis,
    ) -> Result<JobRecord, StorageError> {
        let defaults = self.defaults;
        self.writer
            .write(move |txn| jobs::spawn_child(txn, parent, attempt, child, &defaults, now))
            .await
    }

    async fn get_many(&self, ids: &[Uuid]) -> Result<Vec<Option<JobRecord>>, StorageError> {
        let txn = self.begin_read()?;
        let jobs = txn.open_table(JOBS)?;
        let mut found = Vec::with_capacity(ids.len());
        for id in ids {
            found.push(jobs.get(id.as_u128())?.map(|v| decode(v.value())).transpose()?);
        }
        Ok(found)
    }

    async fn list(
        &self,
        filter: &JobFilter,
        start: Start,
        limit: usize,
    ) -> Result<JobPage, StorageError> {
        let filter = filter.clone();
        self.read(move |txn| listing::list(txn, &filter, start, limit)).await
    }

    async fn events(&self, id: Uuid, after: u64) -> Result<Vec<JobEvent>, StorageError> {
        self.read(move |txn| {
            exists(txn, id)?;
            let key = id.as_u128();
            txn.open_table(EVENTS)?
                .range((key, after.saturating_add(1))..=(key, u64::MAX))?
                .map(|entry| decode(entry?.1.value()))
                .collect()
        })
        .await
    }

    async fn logs(&self, id: Uuid, after: u64, limit: usize) -> Result<Vec<LogLine>, StorageError> {
        self.read(move |txn| {
            exists(txn, id)?;
            let key = id.as_u128();
            txn.open_table(LOGS)?
                .range((key, after.saturating_add(1))..=(key, u64::MAX))?
                .take(limit)
                .map(|entry| decode(entry?.1.value()))
                .collect()
        })
        .await
    }

    async fn queue_position(&self, id: Uuid) -> Result<Option<usize>, StorageError> {
        self.read(move |txn| {
            let job = read_job(&txn.open_table(JOBS)?, id)?;
            if job.state != JobState::Pending {
                return Ok(None);
            }
            // Ready jobs of its own tenant and queue ahead of it: another
            // tenant's backlog is neither in front of it nor its business.
            let group = ready_group(&job.tenant, &job.queue);
            let key = ready_key(&job);
            let ahead = txn.open_table(READY)?.range(group.as_slice()..key.as_slice())?.count();
            Ok(Some(ahead))
        })
        .await
    }

    async fn claim(&self, rules: ClaimRules) -> Result<Vec<JobRecord>, StorageError> {
        let (defaults, cursor) = (self.defaults, self.claim_cursor.clone());
        self.writer
            .write(move |txn| {
                claim::claim(txn, &rules, false, &defaults, &mut cursor.lock().unwrap())
            })
            .await
    }

    async fn claim_waiting(
        &self,
        mut rules: ClaimRules,
        waiting: ClaimWaiting,
    ) -> Result<Vec<JobRecord>, StorageError> {
        let (defaults, cursor) = (self.defaults, self.claim_cursor.clone());
        let ClaimWaiting { clock, wait } = waiting;
        let claimed = self
            .writer
            .write_when(wait, move |txn| {
                rules.now = clock.now();
                let mut cursor = cursor.lock().unwrap();
                let claimed = claim::claim(txn, &rules, true, &defaults, &mut cursor)?;
                Ok((!claimed.is_empty()).then_some(claimed))
            })
            .await?;
        Ok(claimed.unwrap_or_default())
    }

    async fn finish(&self, id: Uuid, finishing: Finishing) -> Result<JobRecord, StorageError> {
        self.writer.write_deferred(move |txn| jobs::finish(txn, id, finishing)).await
    }

    async fn renew(
        &self,
        worker: &str,
        runs: Vec<(Uuid, u32)>,
        until: Millis,
    ) -> Result<Vec<(Uuid, u32)>, StorageError> {
        let worker = worker.to_string();
        self.writer
            .write(move |txn| {
                let mut running = txn.open_table(RUNNING)?;
                let mut lost = Vec::new();
                for (id, attempt) in runs {
                    let lease = running
                        .get(id.as_u128())?
                        .map(|l| decode::<Lease>(l.value()))
                        .transpose()?;
                    match lease.filter(|l| l.worker == worker && l.attempt == attempt) {
                        Some(mut lease) => {
                            lease.until = until;
                            running.insert(id.as_u128(), encode(&lease).as_slice())?;
                        }
                        None => lost.push((id, attempt)),
                    }
                }
                Ok(lost)
            })
            .await
    }

    async fn recover(&self, now: Millis) -> Result<Vec<Uuid>, StorageError> {
        let txn = self.begin_read()?;
        let running = txn.open_table(RUNNING)?;
        let any_expired =
            running.iter()?.try_fold(false, |found, entry| -> Result<bool, StorageError> {
                Ok(found || decode::<Lease>(entry?.1.value())?.until < now)
            })?;
        if !any_expired {
            return Ok(Vec::new());
        }
        self.writer.write(move |txn| jobs::recover(txn, now)).await
    }

    async fn hand_back(
        &self,
        worker: &str,
        ids: Vec<Uuid>,
        now: Millis,
    ) -> Result<Vec<JobRecord>, StorageError> {
        let worker = worker.to_string();
        self.writer.write(move |txn| jobs::hand_back(txn, &worker, &ids, now)).await
    }

    async fn promote(&self, now: Millis) -> Result<usize, StorageError> {
        self.apply_due(SCHEDULED, now, |job, _| rules::due(job)).await
    }

    async fn expire(&self, now: Millis) -> Result<usize, StorageError> {
        self.apply_due(EXPIRING, now, rules::expired).await
    }

    async fn append_output(
        &self,
        id: Uuid,
        attempt: u32,
        batch: OutputBatch,
    ) -> Result<(), StorageError> {
        self.writer.write(move |txn| jobs::append_output(txn, id, attempt, batch)).await
    }

    async fn relabel(&self, id: Uuid, change: Relabel) -> Result<JobRecord, StorageError> {
        self.writer
            .write(move |txn| {
                let job = read_job(&*txn.open_table(JOBS)?, id)?;
                let changed = crate::jobs::changes::relabel(&job, &change)
                    .map_err(|refusal| StorageError::Invalid(refusal.to_string()))?;
                super::put_job(txn, &changed)?;
                Ok(changed)
            })
            .await
    }

    async fn cancel(&self, id: Uuid, now: Millis) -> Result<JobRecord, StorageError> {
        self.writer.write(move |txn| jobs::cancel(txn, id, now)).await
    }

    async fn retry(
        &self,
        id: Uuid,
        changes: Resubmit,
        now: Millis,
    ) -> Result<JobRecord, StorageError> {
        let defaults = self.defaults;
        self.writer.write(move |txn| jobs::retry(txn, id, changes, &defaults, now)).await
    }

    async fn clone_job(
        &self,
        id: Uuid,
        changes: Resubmit,
        now: Millis,
    ) -> Result<JobRecord, StorageError> {
        let defaults = self.defaults;
        self.writer.write(move |txn| jobs::clone_job(txn, id, changes, &defaults, now)).await
    }

    async fn remove(&self, id: Uuid) -> Result<JobRecord, StorageError> {
        self.writer.write(move |txn| jobs::remove(txn, id)).await
    }

    async fn prune(&self, finished_before: Millis, max: usize) -> Result<usize, StorageError> {
        self.writer.write(move |txn| jobs::prune(txn, finished_before, max)).await
    }

    async fn queue_stats(
        &self,
        tenant: Option<&str>,
        now: Millis,
        window_ms: u64,
        stuck_after_ms: u64,
    ) -> Result<Vec<QueueStats>, StorageError> {
        let tenant = tenant.map(str::to_string);
        self.read(move |txn| {
            listing::queue_stats(txn, tenant.as_deref(), now, window_ms, stuck_after_ms)
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
        self.writer
            .write(move |txn| jobs::enqueue_broadcast(txn, new, live_after, &defaults, now))
            .await
    }

    async fn waiting(&self, tenant: &str) -> Result<u64, StorageError> {
        Counter::Waiting(tenant.to_string()).stored(&self.begin_read()?.open_table(COUNTS)?)
    }

    async fn set_queue(&self, name: &str, settings: QueueSettings) -> Result<(), StorageError> {
        let name = name.to_string();
        self.writer
            .write(move |txn| {
                txn.open_table(QUEUES)?.insert(name.as_str(), encode(&settings).as_slice())?;
                Ok(())
            })
            .await
    }

    async fn queue(&self, name: &str) -> Result<QueueSettings, StorageError> {
        let txn = self.begin_read()?;
        let table = txn.open_table(QUEUES)?;
        let settings = table.get(name)?.map(|v| decode(v.value())).transpose()?;
        Ok(settings.unwrap_or_default())
    }

    async fn locks(&self) -> Result<Vec<(String, Uuid)>, StorageError> {
        self.read(|txn| {
            txn.open_table(LOCKS)?
                .iter()?
                .map(|entry| {
                    let (name, holder) = entry?;
                    Ok((name.value().to_string(), Uuid::from_u128(holder.value())))
                })
                .collect()
        })
        .await
    }

    async fn clear_lock(&self, name: &str) -> Result<(), StorageError> {
        let name = name.to_string();
        self.writer
            .write(move |txn| {
                if txn.open_table(LOCKS)?.get(name.as_str())?.is_none() {
                    return Err(StorageError::NotFound(format!("lock {name:?}")));
                }
                unlock(txn, &name)
            })
            .await
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        let stats = self.writer.stats();
        vec![
            ("commits_total", stats.commits.load(Ordering::Relaxed)),
            ("writes_total", stats.writes.load(Ordering::Relaxed)),
            ("largest_commit_writes", stats.max_batch.load(Ordering::Relaxed)),
            ("commit_apply_microseconds_total", stats.apply_nanos.load(Ordering::Relaxed) / 1000),
            ("commit_sync_microseconds_total", stats.sync_nanos.load(Ordering::Relaxed) / 1000),
            ("checkpoints_total", stats.checkpoints.load(Ordering::Relaxed)),
            (
                "checkpoint_microseconds_total",
                stats.checkpoint_nanos.load(Ordering::Relaxed) / 1000,
            ),
        ]
    }
}

impl RedbStorage {
    /// Applies `rule` to the jobs of a time index due by `now`, writing only
    /// when there are some, so an idle host does not commit.
    async fn apply_due(
        &self,
        index: TimeIndex,
        now: Millis,
        rule: fn(&JobRecord, Millis) -> rules::Transition,
    ) -> Result<usize, StorageError> {
        let txn = self.begin_read()?;
        if txn.open_table(index)?.range(..=(now, u128::MAX))?.next().is_none() {
            return Ok(0);
        }
        self.writer.write(move |txn| jobs::apply_due(txn, index, now, rule)).await
    }
}

/// Refuses a job that is not stored, without decoding its record: a
/// follower asks this with every read of the journal or the log.
fn exists(txn: &ReadTransaction, id: Uuid) -> Result<(), StorageError> {
    match txn.open_table(JOBS)?.get(id.as_u128())? {
        Some(_) => Ok(()),
        None => Err(StorageError::NotFound(format!("job {id}"))),
    }
}
