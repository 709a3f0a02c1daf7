//! [`ScheduleStore`] on PostgreSQL: schedules in `schedules`; a round
//! writes its jobs through `jobs::enqueue` in the transaction that moves
//! the schedule's next time on, with the schedule's row locked, after
//! checking that time is still the one the round was planned for: of
//! hosts firing one schedule at once, one writes the round.

use super::jobs::enqueue;
use super::{PgStorage, StorageError, Tx, decode, encode, records};
use crate::jobs::Millis;
use crate::jobs::schedule::{MAX_SCHEDULES, ScheduleRecord};
use crate::storage::{Round, ScheduleStore};
use uuid::Uuid;

#[async_trait::async_trait]
impl ScheduleStore for PgStorage {
    async fn create_schedule(&self, schedule: ScheduleRecord) -> Result<(), StorageError> {
        self.write(move |tx| {
            let schedule = schedule.clone();
            Box::pin(async move {
                // The tenant's schedules are counted one creation at a time.
                tx.execute("SELECT pg_advisory_xact_lock(7304, hashtext($1))", &[&schedule.tenant])
                    .await?;
                let row = tx
                    .query_opt(
                        "SELECT count(*) FROM schedules WHERE tenant = $1",
                        &[&schedule.tenant],
                    )
                    .await?;
                let count = row.map_or(0, |row| row.get::<_, i64>(0)) as usize;
                if count >= MAX_SCHEDULES {
                    return Err(StorageError::OverQuota(format!(
                        "tenant {:?} has {count} schedules, the most one tenant may have",
                        schedule.tenant
                    )));
                }
                put(tx, &schedule).await
            })
        })
        .await
    }

    async fn schedule(&self, id: Uuid) -> Result<ScheduleRecord, StorageError> {
        self.read(move |tx| {
            Box::pin(async move { read(tx, id, false).await?.ok_or_else(|| missing(id)) })
        })
        .await
    }

    async fn schedules(&self, tenant: Option<&str>) -> Result<Vec<ScheduleRecord>, StorageError> {
        let tenant = tenant.map(str::to_string);
        self.read(move |tx| {
            Box::pin(async move {
                let rows = tx
                    .query(
                        "SELECT record FROM schedules WHERE ($1::text IS NULL OR tenant = $1) \
                         ORDER BY id",
                        &[&tenant],
                    )
                    .await?;
                records(&rows)
            })
        })
        .await
    }

    async fn set_schedule_paused(
        &self,
        id: Uuid,
        paused: bool,
        next_run_at: Option<Millis>,
    ) -> Result<ScheduleRecord, StorageError> {
        self.write(move |tx| {
            Box::pin(async move {
                let mut schedule = read(tx, id, true).await?.ok_or_else(|| missing(id))?;
                schedule.paused = paused;
                if !paused {
                    schedule.next_run_at = next_run_at;
                }
                put(tx, &schedule).await?;
                Ok(schedule)
            })
        })
        .await
    }

    async fn remove_schedule(&self, id: Uuid) -> Result<ScheduleRecord, StorageError> {
        self.write(move |tx| {
            Box::pin(async move {
                let schedule = read(tx, id, true).await?.ok_or_else(|| missing(id))?;
                tx.execute("DELETE FROM schedules WHERE id = $1", &[&id]).await?;
                Ok(schedule)
            })
        })
        .await
    }

    async fn due_schedules(&self, now: Millis) -> Result<Vec<ScheduleRecord>, StorageError> {
        let all = self.schedules(None).await?;
        Ok(all
            .into_iter()
            .filter(|s| !s.paused && s.next_run_at.is_some_and(|at| at <= now))
            .collect())
    }

    async fn fire_schedule(
        &self,
        id: Uuid,
        expected: Millis,
        round: Round,
    ) -> Result<Option<ScheduleRecord>, StorageError> {
        let defaults = self.defaults;
        self.write(move |tx| {
            let round = round.clone();
            Box::pin(async move {
                let Some(mut schedule) = read(tx, id, true).await? else { return Ok(None) };
                if schedule.paused || schedule.next_run_at != Some(expected) {
                    return Ok(None);
                }
                let mut error = round.error;
                for job in round.jobs {
                    match enqueue(tx, job, &defaults, round.now).await {
                        Ok(enqueued) => {
                            schedule.last_job = Some(enqueued.job.id);
                            schedule.runs += u64::from(enqueued.created);
                        }
                        Err(StorageError::OverQuota(why)) => error = Some(why),
                        Err(other) => return Err(other),
                    }
                }
                schedule.skipped += round.skipped;
                schedule.next_run_at = round.next_run_at;
                schedule.last_run_at = round.last_run_at.or(schedule.last_run_at);
                schedule.last_error = error;
                put(tx, &schedule).await?;
                Ok(Some(schedule))
            })
        })
        .await
    }
}

fn missing(id: Uuid) -> StorageError {
    StorageError::NotFound(format!("schedule {id}"))
}

async fn read(tx: &Tx, id: Uuid, lock: bool) -> Result<Option<ScheduleRecord>, StorageError> {
    let sql = if lock {
        "SELECT record FROM schedules WHERE id = $1 FOR UPDATE"
    } else {
        "SELECT record FROM schedules WHERE id = $1"
    };
    let row = tx.query_opt(sql, &[&id]).await?;
    row.map(|row| decode(row.get::<_, &[u8]>(0))).transpose()
}

async fn put(tx: &Tx, schedule: &ScheduleRecord) -> Result<(), StorageError> {
    tx.execute(
        "INSERT INTO schedules (id, tenant, record) VALUES ($1, $2, $3) \
         ON CONFLICT (id) DO UPDATE SET record = excluded.record",
        &[&schedule.id, &schedule.tenant, &encode(schedule)],
    )
    .await
    .map(drop)
}
