//! The tables, as numbered migrations run at start, and a job's row.
//!
//! A record is stored whole (JSON, as redb stores it) beside the columns
//! the queries filter and sort by, which are written from the record at
//! every write ([`put_job`]), so the two never disagree. Times are
//! milliseconds since the epoch in `bigint`.

use super::StorageError;
use super::encode;
use super::tx::{Tx, backend};
use crate::jobs::JobRecord;

/// Each migration once, in order; a new one goes at the end. The version
/// reached is kept in `jobhost_schema`, so a host starting on a database
/// another host already migrated does nothing, and two starting at once
/// take turns on an advisory lock.
const MIGRATIONS: &[&str] = &[
    r"
CREATE TABLE jobs (
    id uuid PRIMARY KEY,
    tenant text NOT NULL,
    owner text NOT NULL,
    job text NOT NULL,
    plugin_digest text NOT NULL,
    queue text NOT NULL,
    state text NOT NULL,
    priority integer NOT NULL,
    run_at bigint NOT NULL,
    created_at bigint NOT NULL,
    started_at bigint,
    finished_at bigint,
    expires_at bigint,
    lock text,
    pinned_to text,
    worker text,
    attempt bigint NOT NULL,
    lease_until bigint,
    cloned_from uuid,
    schedule uuid,
    search text NOT NULL,
    record bytea NOT NULL
);
CREATE INDEX jobs_ready ON jobs (tenant, priority DESC, run_at, id) WHERE state = 'pending';
CREATE INDEX jobs_scheduled ON jobs (run_at) WHERE state = 'scheduled';
CREATE INDEX jobs_expiring ON jobs (expires_at)
    WHERE expires_at IS NOT NULL AND state IN ('blocked', 'scheduled', 'pending');
CREATE INDEX jobs_running ON jobs (lease_until) WHERE state = 'running';
CREATE INDEX jobs_finished ON jobs (finished_at)
    WHERE state IN ('completed', 'failed', 'cancelled', 'expired');
CREATE INDEX jobs_newest ON jobs (created_at DESC, id DESC);
CREATE INDEX jobs_tenant_newest ON jobs (tenant, created_at DESC, id DESC);
CREATE INDEX jobs_by_queue ON jobs (tenant, queue, state);
CREATE INDEX jobs_by_plugin ON jobs (tenant, job, plugin_digest)
    WHERE state NOT IN ('completed', 'failed', 'cancelled', 'expired');
CREATE INDEX jobs_by_owner ON jobs (tenant, owner, created_at DESC);
CREATE INDEX jobs_by_clone ON jobs (cloned_from) WHERE cloned_from IS NOT NULL;
CREATE INDEX jobs_by_schedule ON jobs (schedule) WHERE schedule IS NOT NULL;
CREATE TABLE events (job uuid NOT NULL, seq bigint NOT NULL, body bytea NOT NULL,
    PRIMARY KEY (job, seq));
CREATE TABLE logs (job uuid NOT NULL, seq bigint NOT NULL, body bytea NOT NULL,
    PRIMARY KEY (job, seq));
CREATE TABLE idempotency (tenant text NOT NULL, key text NOT NULL, job uuid NOT NULL,
    PRIMARY KEY (tenant, key));
CREATE TABLE dependents (dep uuid NOT NULL, job uuid NOT NULL, PRIMARY KEY (dep, job));
CREATE TABLE locks (name text PRIMARY KEY, job uuid NOT NULL);
CREATE TABLE waiting (tenant text PRIMARY KEY, count bigint NOT NULL);
CREATE TABLE queues (name text PRIMARY KEY, settings bytea NOT NULL);
CREATE TABLE workers (id text PRIMARY KEY, record bytea NOT NULL);
CREATE TABLE plugins (tenant text NOT NULL, name text NOT NULL, record bytea NOT NULL,
    PRIMARY KEY (tenant, name));
CREATE TABLE plugin_versions (tenant text NOT NULL, name text NOT NULL, digest text NOT NULL,
    uploaded_at bigint NOT NULL, record bytea NOT NULL, PRIMARY KEY (tenant, name, digest));
CREATE INDEX plugin_versions_by_digest ON plugin_versions (digest);
CREATE TABLE components (digest text PRIMARY KEY, bytes bytea NOT NULL);
CREATE TABLE tokens (hash text PRIMARY KEY, record bytea NOT NULL);
CREATE TABLE tenants (name text PRIMARY KEY, record bytea NOT NULL);
CREATE TABLE callbacks (due bigint NOT NULL, job uuid NOT NULL, attempts bigint NOT NULL,
    PRIMARY KEY (due, job));
CREATE TABLE workflows (id uuid PRIMARY KEY, tenant text NOT NULL, owner text NOT NULL,
    record bytea NOT NULL);
CREATE INDEX workflows_by_tenant ON workflows (tenant, id DESC);
CREATE TABLE schedules (id uuid PRIMARY KEY, tenant text NOT NULL, record bytea NOT NULL);
CREATE INDEX schedules_by_tenant ON schedules (tenant);
",
    r"
-- 2: a tenant's waiting count in shards (`tx.rs`), so the commits of its
-- jobs do not all queue for one row.
ALTER TABLE waiting ADD COLUMN shard integer NOT NULL DEFAULT 0;
ALTER TABLE waiting DROP CONSTRAINT waiting_pkey;
ALTER TABLE waiting ADD PRIMARY KEY (tenant, shard);
",
];

/// Brings the database's schema to the newest version, refusing one from
/// a newer jobhost than this one.
pub(super) async fn migrate(
    client: &mut deadpool_postgres::ClientWrapper,
) -> Result<(), StorageError> {
    let tx = client.transaction().await.map_err(backend)?;
    tx.batch_execute(
        "SELECT pg_advisory_xact_lock(7301);
         CREATE TABLE IF NOT EXISTS jobhost_schema (version integer NOT NULL);",
    )
    .await
    .map_err(backend)?;
    let row = tx.query_opt("SELECT version FROM jobhost_schema", &[]).await.map_err(backend)?;
    let version = row.map_or(0, |row| row.get::<_, i32>(0)) as usize;
    if version > MIGRATIONS.len() {
        return Err(StorageError::Backend(format!(
            "the database's schema is version {version}, newer than this jobhost's {}: \
             upgrade jobhost",
            MIGRATIONS.len()
        )));
    }
    for migration in &MIGRATIONS[version..] {
        tx.batch_execute(migration).await.map_err(backend)?;
    }
    let newest = MIGRATIONS.len() as i32;
    tx.execute("DELETE FROM jobhost_schema", &[]).await.map_err(backend)?;
    tx.execute("INSERT INTO jobhost_schema (version) VALUES ($1)", &[&newest])
        .await
        .map_err(backend)?;
    tx.commit().await.map_err(backend)
}

/// The text a search looks in: plugin, name, description and tags,
/// lowercased, one per line, so a match never spans two of them.
fn search_text(job: &JobRecord) -> String {
    let mut text = vec![job.job.as_str()];
    text.extend(job.name.as_deref());
    text.extend(job.description.as_deref());
    text.extend(job.tags.iter().map(String::as_str));
    text.join("\n").to_lowercase()
}

/// Milliseconds as a column holds them.
pub(super) fn ms(at: u64) -> i64 {
    at.min(i64::MAX as u64) as i64
}

/// Writes a job's row: the record and the columns read from it.
pub(super) async fn put_job(tx: &Tx, job: &JobRecord) -> Result<(), StorageError> {
    let opt = |at: Option<u64>| at.map(ms);
    tx.execute(
        "INSERT INTO jobs (id, tenant, owner, job, plugin_digest, queue, state, priority, \
             run_at, created_at, started_at, finished_at, expires_at, lock, pinned_to, worker, \
             attempt, lease_until, cloned_from, schedule, search, record) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, \
             $18, $19, $20, $21, $22) \
         ON CONFLICT (id) DO UPDATE SET tenant = excluded.tenant, owner = excluded.owner, \
             job = excluded.job, plugin_digest = excluded.plugin_digest, \
             queue = excluded.queue, state = excluded.state, priority = excluded.priority, \
             run_at = excluded.run_at, created_at = excluded.created_at, \
             started_at = excluded.started_at, finished_at = excluded.finished_at, \
             expires_at = excluded.expires_at, lock = excluded.lock, \
             pinned_to = excluded.pinned_to, worker = excluded.worker, \
             attempt = excluded.attempt, lease_until = excluded.lease_until, \
             cloned_from = excluded.cloned_from, schedule = excluded.schedule, \
             search = excluded.search, record = excluded.record",
        &[
            &job.id,
            &job.tenant,
            &job.owner,
            &job.job,
            &job.plugin_digest,
            &job.queue,
            &job.state.as_str(),
            &job.priority,
            &ms(job.run_at),
            &ms(job.created_at),
            &opt(job.started_at),
            &opt(job.finished_at),
            &opt(job.expires_at),
            &job.lock,
            &job.pinned_to,
            &job.worker,
            &i64::from(job.attempt),
            &opt(job.lease_until),
            &job.cloned_from,
            &job.flow.schedule,
            &search_text(job),
            &encode(job),
        ],
    )
    .await?;
    Ok(())
}
