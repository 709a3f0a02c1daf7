//! [`ScheduleStore`] on redb: schedules in [`SCHEDULES`]; a round writes
//! its jobs through `jobs::enqueue` in the transaction that moves the
//! schedule's next time on, after checking that time is still the one the
//! round was planned for.

use super::index::Txn;
use super::jobs::enqueue;
use super::schema::{SCHEDULES, decode};
use super::{RedbStorage, StorageError, put_record, read_record};
use crate::jobs::Millis;
use crate::jobs::schedule::{MAX_SCHEDULES, ScheduleRecord};
use crate::storage::{Round, ScheduleStore};
use ::redb::ReadableTable;
use uuid::Uuid;

#[async_trait::async_trait]
impl ScheduleStore for RedbStorage {
    async fn create_schedule(&self, schedule: ScheduleRecord) -> Result<(), StorageError> {
        self.writer
            .write(move |txn| {
                let mut count = 0;
                for entry in txn.open_table(SCHEDULES)?.iter()? {
                    let other: ScheduleRecord = decode(entry?.1.value())?;
                    count += usize::from(other.tenant == schedule.tenant);
                }
                if count >= MAX_SCHEDULES {
                    return Err(StorageError::OverQuota(format!(
                        "tenant {:?} has {count} schedules, the most one tenant may have",
                        schedule.tenant
                    )));
                }
                put(txn, &schedule)
            })
            .await
    }

    async fn schedule(&self, id: Uuid) -> Result<ScheduleRecord, StorageError> {
        read_record(&self.begin_read()?.open_table(SCHEDULES)?, id, "schedule")
    }

    async fn schedules(&self, tenant: Option<&str>) -> Result<Vec<ScheduleRecord>, StorageError> {
        let tenant = tenant.map(str::to_string);
        self.read(move |txn| {
            let mut all = Vec::new();
            for entry in txn.open_table(SCHEDULES)?.iter()? {
                let schedule: ScheduleRecord = decode(entry?.1.value())?;
                if tenant.as_ref().is_none_or(|t| *t == schedule.tenant) {
                    all.push(schedule);
                }
            }
            Ok(all)
        })
        .await
    }

    async fn set_schedule_paused(
        &self,
        id: Uuid,
        paused: bool,
        next_run_at: Option<Millis>,
    ) -> Result<ScheduleRecord, StorageError> {
        self.writer
            .write(move |txn| {
                let mut schedule = read(txn, id)?;
                schedule.paused = paused;
                if !paused {
                    schedule.next_run_at = next_run_at;
                }
                put(txn, &schedule)?;
                Ok(schedule)
            })
            .await
    }

    async fn remove_schedule(&self, id: Uuid) -> Result<ScheduleRecord, StorageError> {
        self.writer
            .write(move |txn| {
                let schedule = read(txn, id)?;
                txn.open_table(SCHEDULES)?.remove(id.as_u128())?;
                Ok(schedule)
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
        self.writer
            .write(move |txn| {
                let table = txn.open_table(SCHEDULES)?;
                let stored = table.get(id.as_u128())?.map(|v| decode(v.value())).transpose()?;
                drop(table);
                let Some(mut schedule): Option<ScheduleRecord> = stored else { return Ok(None) };
                if schedule.paused || schedule.next_run_at != Some(expected) {
                    return Ok(None);
                }
                let mut error = round.error;
                for job in round.jobs {
                    match enqueue(txn, job, &defaults, round.now) {
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
                put(txn, &schedule)?;
                Ok(Some(schedule))
            })
            .await
    }
}

fn read(txn: &Txn, id: Uuid) -> Result<ScheduleRecord, StorageError> {
    read_record(&*txn.open_table(SCHEDULES)?, id, "schedule")
}

fn put(txn: &Txn, schedule: &ScheduleRecord) -> Result<(), StorageError> {
    put_record(txn, SCHEDULES, schedule.id, schedule)
}
