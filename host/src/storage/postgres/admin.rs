//! [`AdminStore`] and [`OutboxStore`] on PostgreSQL: workers, plugins and
//! their versions, component bytes (stored once, however many hosts load
//! them), tokens, tenants, and the webhook outbox, whose rows a delivery
//! takes `FOR UPDATE SKIP LOCKED` so each webhook goes out from one host.

use super::schema::{ms, put_job};
use super::{PgStorage, StorageError, Tx, decode, encode, read_job, records};
use crate::jobs::{
    JobRecord, Millis, PluginRecord, TenantDefaults, TenantRecord, TokenRecord, WebhookStatus,
    WorkerMode, WorkerRecord,
};
use crate::storage::{AdminStore, Callback, OutboxStore, PluginVersion};

/// How long a host holds a webhook it took to deliver.
const DELIVERY_LEASE_MS: u64 = 60_000;

async fn worker(tx: &Tx, id: &str, lock: bool) -> Result<Option<WorkerRecord>, StorageError> {
    let sql = if lock {
        "SELECT record FROM workers WHERE id = $1 FOR UPDATE"
    } else {
        "SELECT record FROM workers WHERE id = $1"
    };
    let row = tx.query_opt(sql, &[&id]).await?;
    row.map(|row| decode(row.get::<_, &[u8]>(0))).transpose()
}

async fn put_worker(tx: &Tx, record: &WorkerRecord) -> Result<(), StorageError> {
    tx.execute(
        "INSERT INTO workers (id, record) VALUES ($1, $2) \
         ON CONFLICT (id) DO UPDATE SET record = excluded.record",
        &[&record.id, &encode(record)],
    )
    .await
    .map(drop)
}

/// Unfinished jobs enqueued with a version.
async fn refs(tx: &Tx, tenant: &str, name: &str, digest: &str) -> Result<u64, StorageError> {
    let row = tx
        .query_opt(
            "SELECT count(*) FROM jobs WHERE tenant = $1 AND job = $2 AND plugin_digest = $3 \
             AND state NOT IN ('completed', 'failed', 'cancelled', 'expired')",
            &[&tenant, &name, &digest],
        )
        .await?;
    Ok(row.map_or(0, |row| row.get::<_, i64>(0) as u64))
}

/// Every version record of `tenant`'s plugin `name`, oldest upload first.
async fn version_records(
    tx: &Tx,
    tenant: &str,
    name: &str,
) -> Result<Vec<PluginRecord>, StorageError> {
    let rows = tx
        .query(
            "SELECT record FROM plugin_versions WHERE tenant = $1 AND name = $2 \
             ORDER BY uploaded_at, digest",
            &[&tenant, &name],
        )
        .await?;
    records(&rows)
}

async fn current(
    tx: &Tx,
    tenant: &str,
    name: &str,
    lock: bool,
) -> Result<Option<PluginRecord>, StorageError> {
    let sql = if lock {
        "SELECT record FROM plugins WHERE tenant = $1 AND name = $2 FOR UPDATE"
    } else {
        "SELECT record FROM plugins WHERE tenant = $1 AND name = $2"
    };
    let row = tx.query_opt(sql, &[&tenant, &name]).await?;
    row.map(|row| decode(row.get::<_, &[u8]>(0))).transpose()
}

/// Deletes the bytes of `digest` once no version of any plugin uses them.
async fn drop_unused_component(tx: &Tx, digest: &str) -> Result<(), StorageError> {
    tx.execute(
        "DELETE FROM components WHERE digest = $1 \
         AND NOT EXISTS (SELECT 1 FROM plugin_versions WHERE digest = $1)",
        &[&digest],
    )
    .await
    .map(drop)
}

async fn remove_version_row(tx: &Tx, record: &PluginRecord) -> Result<(), StorageError> {
    tx.execute(
        "DELETE FROM plugin_versions WHERE tenant = $1 AND name = $2 AND digest = $3",
        &[&record.tenant, &record.name, &record.digest],
    )
    .await?;
    drop_unused_component(tx, &record.digest).await
}

/// Stores a new current version within the tenant's plugin quota, and
/// drops the older versions no unfinished job needs.
async fn put_plugin(
    tx: &Tx,
    record: &PluginRecord,
    component: &[u8],
    defaults: &TenantDefaults,
) -> Result<(), StorageError> {
    // The tenant's plugins are counted one upload at a time.
    tx.execute("SELECT pg_advisory_xact_lock(7303, hashtext($1))", &[&record.tenant]).await?;
    if current(tx, &record.tenant, &record.name, true).await?.is_none() {
        let row = tx
            .query_opt("SELECT count(*) FROM plugins WHERE tenant = $1", &[&record.tenant])
            .await?;
        let count = row.map_or(0, |row| row.get::<_, i64>(0)) as usize;
        if count >= defaults.max_plugins {
            return Err(StorageError::OverQuota(format!(
                "tenant {:?} has {count} plugins, its quota; remove one first",
                record.tenant
            )));
        }
    }
    tx.execute(
        "INSERT INTO plugins (tenant, name, record) VALUES ($1, $2, $3) \
         ON CONFLICT (tenant, name) DO UPDATE SET record = excluded.record",
        &[&record.tenant, &record.name, &encode(record)],
    )
    .await?;
    tx.execute(
        "INSERT INTO components (digest, bytes) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        &[&record.digest, &component],
    )
    .await?;
    let older = version_records(tx, &record.tenant, &record.name).await?;
    tx.execute(
        "INSERT INTO plugin_versions (tenant, name, digest, uploaded_at, record) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant, name, digest) \
         DO UPDATE SET uploaded_at = excluded.uploaded_at, record = excluded.record",
        &[&record.tenant, &record.name, &record.digest, &ms(record.uploaded_at), &encode(record)],
    )
    .await?;
    for old in older.iter().filter(|old| old.digest != record.digest) {
        if refs(tx, &old.tenant, &old.name, &old.digest).await? == 0 {
            remove_version_row(tx, old).await?;
        }
    }
    Ok(())
}

/// Removes a plugin with every version, unless unfinished jobs need one.
async fn remove_plugin(tx: &Tx, tenant: &str, name: &str) -> Result<PluginRecord, StorageError> {
    let Some(record) = current(tx, tenant, name, true).await? else {
        return Err(StorageError::NotFound(format!("plugin {name:?}")));
    };
    let versions = version_records(tx, tenant, name).await?;
    let mut needed = 0;
    for version in &versions {
        needed += refs(tx, tenant, name, &version.digest).await?;
    }
    if needed > 0 {
        return Err(StorageError::Conflict(format!(
            "{needed} waiting or running jobs need plugin {name:?}; \
             cancel them or let them finish first"
        )));
    }
    tx.execute("DELETE FROM plugins WHERE tenant = $1 AND name = $2", &[&tenant, &name]).await?;
    for version in &versions {
        remove_version_row(tx, version).await?;
    }
    Ok(record)
}

/// Removes one version that is neither current nor needed by a job.
async fn remove_plugin_version(
    tx: &Tx,
    tenant: &str,
    name: &str,
    digest: &str,
) -> Result<PluginRecord, StorageError> {
    if current(tx, tenant, name, true).await?.is_some_and(|c| c.digest == digest) {
        return Err(StorageError::Conflict(format!(
            "{digest} is the current version of {name:?}: upload another or remove the plugin"
        )));
    }
    let needed = refs(tx, tenant, name, digest).await?;
    if needed > 0 {
        return Err(StorageError::Conflict(format!(
            "{needed} waiting or running jobs need version {digest} of {name:?}"
        )));
    }
    let row = tx
        .query_opt(
            "DELETE FROM plugin_versions WHERE tenant = $1 AND name = $2 AND digest = $3 \
             RETURNING record",
            &[&tenant, &name, &digest],
        )
        .await?;
    let Some(row) = row else {
        return Err(StorageError::NotFound(format!("version {digest} of plugin {name:?}")));
    };
    drop_unused_component(tx, digest).await?;
    decode(row.get::<_, &[u8]>(0))
}

#[async_trait::async_trait]
impl AdminStore for PgStorage {
    async fn heartbeat(
        &self,
        worker_id: &str,
        slots: u32,
        running: u32,
        now: Millis,
    ) -> Result<WorkerMode, StorageError> {
        let id = worker_id.to_string();
        self.write(move |tx| {
            let id = id.clone();
            Box::pin(async move {
                let known = worker(tx, &id, true).await?;
                let record = WorkerRecord::beat(known, &id, slots, running, now);
                put_worker(tx, &record).await?;
                Ok(record.mode)
            })
        })
        .await
    }

    async fn workers(&self) -> Result<Vec<WorkerRecord>, StorageError> {
        self.read(|tx| {
            Box::pin(async move {
                records(&tx.query("SELECT record FROM workers ORDER BY id", &[]).await?)
            })
        })
        .await
    }

    async fn set_worker_mode(
        &self,
        worker_id: &str,
        mode: WorkerMode,
    ) -> Result<WorkerRecord, StorageError> {
        let id = worker_id.to_string();
        self.write(move |tx| {
            let id = id.clone();
            Box::pin(async move {
                let mut record = worker(tx, &id, true)
                    .await?
                    .ok_or_else(|| StorageError::NotFound(format!("worker {id:?}")))?;
                record.mode = mode;
                put_worker(tx, &record).await?;
                if mode == WorkerMode::Active {
                    tx.wake();
                }
                Ok(record)
            })
        })
        .await
    }

    async fn put_plugin(
        &self,
        record: PluginRecord,
        component: Vec<u8>,
    ) -> Result<(), StorageError> {
        let defaults = self.defaults;
        let component = std::sync::Arc::new(component);
        self.write(move |tx| {
            let (record, component) = (record.clone(), component.clone());
            Box::pin(async move { put_plugin(tx, &record, &component, &defaults).await })
        })
        .await
    }

    async fn plugins(&self, tenant: Option<&str>) -> Result<Vec<PluginRecord>, StorageError> {
        let tenant = tenant.map(str::to_string);
        self.read(move |tx| {
            Box::pin(async move {
                let rows = tx
                    .query(
                        "SELECT record FROM plugins WHERE ($1::text IS NULL OR tenant = $1) \
                         ORDER BY tenant, name",
                        &[&tenant],
                    )
                    .await?;
                records(&rows)
            })
        })
        .await
    }

    async fn plugin(&self, tenant: &str, name: &str) -> Result<Option<PluginRecord>, StorageError> {
        let (tenant, name) = (tenant.to_string(), name.to_string());
        self.read(move |tx| Box::pin(async move { current(tx, &tenant, &name, false).await })).await
    }

    async fn component(&self, digest: &str) -> Result<Vec<u8>, StorageError> {
        let digest = digest.to_string();
        self.read(move |tx| {
            Box::pin(async move {
                let row = tx
                    .query_opt("SELECT bytes FROM components WHERE digest = $1", &[&digest])
                    .await?;
                row.map(|row| row.get::<_, Vec<u8>>(0))
                    .ok_or_else(|| StorageError::NotFound(format!("component {digest}")))
            })
        })
        .await
    }

    async fn remove_plugin(&self, tenant: &str, name: &str) -> Result<PluginRecord, StorageError> {
        let (tenant, name) = (tenant.to_string(), name.to_string());
        self.write(move |tx| {
            let (tenant, name) = (tenant.clone(), name.clone());
            Box::pin(async move { remove_plugin(tx, &tenant, &name).await })
        })
        .await
    }

    async fn plugin_versions(
        &self,
        tenant: &str,
        name: &str,
    ) -> Result<Vec<PluginVersion>, StorageError> {
        let (tenant, name) = (tenant.to_string(), name.to_string());
        self.read(move |tx| {
            Box::pin(async move {
                let Some(current) = current(tx, &tenant, &name, false).await? else {
                    return Err(StorageError::NotFound(format!("plugin {name:?}")));
                };
                let mut versions = Vec::new();
                for record in version_records(tx, &tenant, &name).await? {
                    let jobs = refs(tx, &tenant, &name, &record.digest).await?;
                    let is_current = record.digest == current.digest;
                    versions.push(PluginVersion { record, current: is_current, jobs });
                }
                Ok(versions)
            })
        })
        .await
    }

    async fn remove_plugin_version(
        &self,
        tenant: &str,
        name: &str,
        digest: &str,
    ) -> Result<PluginRecord, StorageError> {
        let (tenant, name, digest) = (tenant.to_string(), name.to_string(), digest.to_string());
        self.write(move |tx| {
            let (tenant, name, digest) = (tenant.clone(), name.clone(), digest.clone());
            Box::pin(async move { remove_plugin_version(tx, &tenant, &name, &digest).await })
        })
        .await
    }

    async fn put_token(&self, hash: &str, record: TokenRecord) -> Result<(), StorageError> {
        let (hash, record) = (hash.to_string(), encode(&record));
        self.write(move |tx| {
            let (hash, record) = (hash.clone(), record.clone());
            Box::pin(async move {
                tx.execute(
                    "INSERT INTO tokens (hash, record) VALUES ($1, $2) \
                     ON CONFLICT (hash) DO UPDATE SET record = excluded.record",
                    &[&hash, &record],
                )
                .await
                .map(drop)
            })
        })
        .await
    }

    async fn token(&self, hash: &str) -> Result<Option<TokenRecord>, StorageError> {
        let hash = hash.to_string();
        self.read(move |tx| {
            Box::pin(async move {
                let row =
                    tx.query_opt("SELECT record FROM tokens WHERE hash = $1", &[&hash]).await?;
                row.map(|row| decode(row.get::<_, &[u8]>(0))).transpose()
            })
        })
        .await
    }

    async fn tokens(&self) -> Result<Vec<(String, TokenRecord)>, StorageError> {
        self.read(|tx| {
            Box::pin(async move {
                let rows = tx.query("SELECT hash, record FROM tokens ORDER BY hash", &[]).await?;
                rows.iter().map(|row| Ok((row.get(0), decode(row.get::<_, &[u8]>(1))?))).collect()
            })
        })
        .await
    }

    async fn remove_token(&self, hash: &str) -> Result<(), StorageError> {
        let hash = hash.to_string();
        self.write(move |tx| {
            let hash = hash.clone();
            Box::pin(async move {
                match tx.execute("DELETE FROM tokens WHERE hash = $1", &[&hash]).await? {
                    0 => Err(StorageError::NotFound("token".into())),
                    _ => Ok(()),
                }
            })
        })
        .await
    }

    async fn put_tenant(&self, record: TenantRecord) -> Result<(), StorageError> {
        self.write(move |tx| {
            let (name, bytes) = (record.name.clone(), encode(&record));
            Box::pin(async move {
                tx.execute(
                    "INSERT INTO tenants (name, record) VALUES ($1, $2) \
                     ON CONFLICT (name) DO UPDATE SET record = excluded.record",
                    &[&name, &bytes],
                )
                .await?;
                // A quota raised may let waiting jobs run.
                tx.wake();
                Ok(())
            })
        })
        .await
    }

    async fn tenant(&self, name: &str) -> Result<TenantRecord, StorageError> {
        let name = name.to_string();
        self.read(move |tx| Box::pin(async move { super::jobs::tenant(tx, &name).await })).await
    }

    async fn tenants(&self) -> Result<Vec<TenantRecord>, StorageError> {
        self.read(|tx| {
            Box::pin(async move {
                records(&tx.query("SELECT record FROM tenants ORDER BY name", &[]).await?)
            })
        })
        .await
    }
}

#[async_trait::async_trait]
impl OutboxStore for PgStorage {
    /// Takes the due webhooks for this host: each row moves to a due time
    /// [`DELIVERY_LEASE_MS`] later, so no other host sends it meanwhile,
    /// and comes back due then if this host never says how it went.
    async fn due_callbacks(&self, now: Millis, max: usize) -> Result<Vec<Callback>, StorageError> {
        self.write(move |tx| {
            Box::pin(async move {
                let rows = tx
                    .query(
                        "UPDATE callbacks SET due = $3 WHERE (due, job) IN ( \
                             SELECT due, job FROM callbacks WHERE due <= $1 \
                             ORDER BY due, job LIMIT $2 FOR UPDATE SKIP LOCKED) \
                         RETURNING due, job, attempts",
                        &[&ms(now), &(max as i64), &ms(now + DELIVERY_LEASE_MS)],
                    )
                    .await?;
                let mut due: Vec<Callback> = rows
                    .iter()
                    .map(|row| Callback {
                        due: row.get::<_, i64>(0) as Millis,
                        job: row.get(1),
                        attempts: row.get::<_, i64>(2) as u32,
                    })
                    .collect();
                due.sort_by_key(|callback| callback.job);
                Ok(due)
            })
        })
        .await
    }

    async fn callback_done(
        &self,
        callback: Callback,
        status: Option<WebhookStatus>,
    ) -> Result<(), StorageError> {
        self.write(move |tx| {
            let status = status.clone();
            Box::pin(async move {
                tx.execute(
                    "DELETE FROM callbacks WHERE due = $1 AND job = $2",
                    &[&ms(callback.due), &callback.job],
                )
                .await?;
                let Some(status) = status else { return Ok(()) };
                let job = match read_job(tx, callback.job, true).await {
                    Ok(job) => job,
                    Err(StorageError::NotFound(_)) => return Ok(()),
                    Err(e) => return Err(e),
                };
                if let Some(at) = status.next_attempt_at {
                    tx.execute(
                        "INSERT INTO callbacks (due, job, attempts) VALUES ($1, $2, $3) \
                         ON CONFLICT DO NOTHING",
                        &[&ms(at), &callback.job, &i64::from(status.attempts)],
                    )
                    .await?;
                }
                put_job(tx, &JobRecord { webhook: Some(status), ..job }).await
            })
        })
        .await
    }
}
