//! [`AdminStore`] and [`OutboxStore`] on redb: workers, plugins and their
//! component bytes, tokens, tenants, and the webhook outbox.

use super::index::Txn;
use super::schema::{
    CALLBACKS, COMPONENTS, JOBS, PLUGINS, TENANTS, TOKENS, WORKERS, decode, encode,
};
use super::{RedbStorage, StorageError, plugins, put_job, read_all, read_job};
use crate::jobs::{
    JobRecord, Millis, PluginRecord, TenantRecord, TokenRecord, WebhookStatus, WorkerMode,
    WorkerRecord,
};
use crate::storage::{AdminStore, Callback, OutboxStore, PluginVersion};
use ::redb::ReadableTable;
use uuid::Uuid;

fn heartbeat(
    txn: &Txn,
    id: &str,
    slots: u32,
    running: u32,
    now: Millis,
) -> Result<WorkerMode, StorageError> {
    let mut workers = txn.open_table(WORKERS)?;
    let known = workers.get(id)?.map(|w| decode::<WorkerRecord>(w.value())).transpose()?;
    let record = WorkerRecord::beat(known, id, slots, running, now);
    workers.insert(id, encode(&record).as_slice())?;
    Ok(record.mode)
}

#[async_trait::async_trait]
impl AdminStore for RedbStorage {
    async fn heartbeat(
        &self,
        worker: &str,
        slots: u32,
        running: u32,
        now: Millis,
    ) -> Result<WorkerMode, StorageError> {
        let worker = worker.to_string();
        self.writer.write(move |txn| heartbeat(txn, &worker, slots, running, now)).await
    }

    async fn workers(&self) -> Result<Vec<WorkerRecord>, StorageError> {
        self.read(|txn| {
            Ok(read_all(&txn.open_table(WORKERS)?)?.into_iter().map(|(_, w)| w).collect())
        })
        .await
    }

    async fn set_worker_mode(
        &self,
        worker: &str,
        mode: WorkerMode,
    ) -> Result<WorkerRecord, StorageError> {
        let worker = worker.to_string();
        self.writer
            .write(move |txn| {
                let mut workers = txn.open_table(WORKERS)?;
                let known = workers
                    .get(worker.as_str())?
                    .map(|w| decode::<WorkerRecord>(w.value()))
                    .transpose()?;
                let mut record =
                    known.ok_or_else(|| StorageError::NotFound(format!("worker {worker:?}")))?;
                record.mode = mode;
                workers.insert(worker.as_str(), encode(&record).as_slice())?;
                Ok(record)
            })
            .await
    }

    async fn put_plugin(
        &self,
        record: PluginRecord,
        component: Vec<u8>,
    ) -> Result<(), StorageError> {
        let defaults = self.defaults;
        self.writer.write(move |txn| plugins::put(txn, &record, &component, &defaults)).await
    }

    async fn plugins(&self, tenant: Option<&str>) -> Result<Vec<PluginRecord>, StorageError> {
        let tenant = tenant.map(str::to_string);
        self.read(move |txn| {
            let table = txn.open_table(PLUGINS)?;
            let entries = match tenant.as_deref() {
                Some(tenant) => table.range((tenant, "")..)?,
                None => table.iter()?,
            };
            let mut all = Vec::new();
            for entry in entries {
                let (key, value) = entry?;
                if tenant.as_deref().is_some_and(|t| t != key.value().0) {
                    break;
                }
                all.push(decode(value.value())?);
            }
            Ok(all)
        })
        .await
    }

    async fn plugin(&self, tenant: &str, name: &str) -> Result<Option<PluginRecord>, StorageError> {
        let table = self.begin_read()?.open_table(PLUGINS)?;
        let value = table.get((tenant, name))?;
        value.map(|value| decode(value.value())).transpose()
    }

    async fn component(&self, digest: &str) -> Result<Vec<u8>, StorageError> {
        let digest = digest.to_string();
        self.read(move |txn| {
            let bytes =
                txn.open_table(COMPONENTS)?.get(digest.as_str())?.map(|b| b.value().to_vec());
            bytes.ok_or_else(|| StorageError::NotFound(format!("component {digest}")))
        })
        .await
    }

    async fn remove_plugin(&self, tenant: &str, name: &str) -> Result<PluginRecord, StorageError> {
        let (tenant, name) = (tenant.to_string(), name.to_string());
        self.writer.write(move |txn| plugins::remove(txn, &tenant, &name)).await
    }

    async fn plugin_versions(
        &self,
        tenant: &str,
        name: &str,
    ) -> Result<Vec<PluginVersion>, StorageError> {
        let (tenant, name) = (tenant.to_string(), name.to_string());
        self.read(move |txn| plugins::versions(txn, &tenant, &name)).await
    }

    async fn remove_plugin_version(
        &self,
        tenant: &str,
        name: &str,
        digest: &str,
    ) -> Result<PluginRecord, StorageError> {
        let (tenant, name, digest) = (tenant.to_string(), name.to_string(), digest.to_string());
        self.writer.write(move |txn| plugins::remove_version(txn, &tenant, &name, &digest)).await
    }

    async fn put_token(&self, hash: &str, record: TokenRecord) -> Result<(), StorageError> {
        let hash = hash.to_string();
        self.writer
            .write(move |txn| {
                txn.open_table(TOKENS)?.insert(hash.as_str(), encode(&record).as_slice())?;
                Ok(())
            })
            .await
    }

    async fn token(&self, hash: &str) -> Result<Option<TokenRecord>, StorageError> {
        let txn = self.begin_read()?;
        let table = txn.open_table(TOKENS)?;
        let value = table.get(hash)?;
        value.map(|v| decode(v.value())).transpose()
    }

    async fn tokens(&self) -> Result<Vec<(String, TokenRecord)>, StorageError> {
        self.read(|txn| read_all(&txn.open_table(TOKENS)?)).await
    }

    async fn remove_token(&self, hash: &str) -> Result<(), StorageError> {
        let hash = hash.to_string();
        self.writer
            .write(move |txn| match txn.open_table(TOKENS)?.remove(hash.as_str())? {
                Some(_) => Ok(()),
                None => Err(StorageError::NotFound("token".into())),
            })
            .await
    }

    async fn put_tenant(&self, record: TenantRecord) -> Result<(), StorageError> {
        self.writer
            .write(move |txn| {
                txn.open_table(TENANTS)?
                    .insert(record.name.as_str(), encode(&record).as_slice())?;
                Ok(())
            })
            .await
    }

    async fn tenant(&self, name: &str) -> Result<TenantRecord, StorageError> {
        let txn = self.begin_read()?;
        let table = txn.open_table(TENANTS)?;
        let value = table.get(name)?;
        let stored = value.map(|v| decode(v.value())).transpose()?;
        Ok(stored
            .unwrap_or_else(|| TenantRecord { name: name.to_string(), ..TenantRecord::default() }))
    }

    async fn tenants(&self) -> Result<Vec<TenantRecord>, StorageError> {
        let all = self.read(|txn| read_all(&txn.open_table(TENANTS)?)).await?;
        Ok(all.into_iter().map(|(_, record)| record).collect())
    }
}

#[async_trait::async_trait]
impl OutboxStore for RedbStorage {
    async fn due_callbacks(&self, now: Millis, max: usize) -> Result<Vec<Callback>, StorageError> {
        self.read(move |txn| {
            txn.open_table(CALLBACKS)?
                .range(..=(now, u128::MAX))?
                .take(max)
                .map(|entry| {
                    let (key, attempts) = entry?;
                    let (due, id) = key.value();
                    Ok(Callback { due, job: Uuid::from_u128(id), attempts: attempts.value() })
                })
                .collect()
        })
        .await
    }

    async fn callback_done(
        &self,
        callback: Callback,
        status: Option<WebhookStatus>,
    ) -> Result<(), StorageError> {
        self.writer
            .write(move |txn| {
                let id = callback.job.as_u128();
                let mut table = txn.open_table(CALLBACKS)?;
                table.remove((callback.due, id))?;
                let Some(status) = status else { return Ok(()) };
                let jobs = txn.open_table(JOBS)?;
                let job = match read_job(&*jobs, callback.job) {
                    Ok(job) => job,
                    Err(StorageError::NotFound(_)) => return Ok(()),
                    Err(e) => return Err(e),
                };
                drop(jobs);
                if let Some(at) = status.next_attempt_at {
                    table.insert((at, id), status.attempts)?;
                }
                put_job(txn, &JobRecord { webhook: Some(status), ..job })
            })
            .await
    }
}
