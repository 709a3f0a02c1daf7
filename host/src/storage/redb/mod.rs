//! [`super::Storage`] on an embedded redb file. Reads open their own read
//! transaction (MVCC: they never wait for writes); writes go through the
//! group-commit [`Writer`].
//!
//! - `schema`: the tables and their key encodings.
//! - `writer`: the group-commit writer thread; `tables`: a write
//!   transaction's tables, each opened once.
//! - `apply`: writes a rule's transition with its indexes and journal, the
//!   one way a job's state changes here.
//! - `index`: the secondary indexes and tallies every job write keeps;
//!   `listing`: the lists and queue health read from them.
//! - `jobs`: the job operations inside a write transaction; `claim`: the
//!   claim walk; `job_store`: [`super::JobStore`] over them and the reads.
//! - `workflows`: [`super::WorkflowStore`]; `schedules`:
//!   [`super::ScheduleStore`].
//! - `admin`: [`super::AdminStore`] and [`super::OutboxStore`]; `plugins`:
//!   plugin versions, kept while jobs need them.

mod admin;
mod apply;
mod claim;
mod file;
mod index;
mod job_store;
mod jobs;
mod journal;
mod listing;
mod plugins;
mod schedules;
mod schema;
mod tables;
mod workflows;
mod writer;

use super::StorageError;
use crate::jobs::{JobRecord, Millis, TenantDefaults};
use ::redb::{Database, ReadTransaction, ReadableDatabase, ReadableTable, TableHandle};
use file::{DbFile, Opened};
use index::Txn;
use journal::{Journal, Ops};
use schema::{
    CALLBACKS, CHECKPOINT, COMPONENTS, COUNTS, DEPENDENTS, EVENTS, EXPIRING, IDEMPOTENCY, JOBS,
    LISTING, LOCKS, LOGS, PARKED, PLUGIN_VERSIONS, PLUGINS, QUEUES, READY, RUNNING, SCHEDULED,
    SCHEDULES, TENANTS, TOKENS, WORKERS, WORKFLOWS, decode, encode,
};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Arc;
use uuid::Uuid;
use writer::Writer;

/// The embedded storage: one redb file. Clones share it; the file closes
/// when the last clone is dropped.
#[derive(Clone)]
pub struct RedbStorage {
    db: Arc<DbFile>,
    writer: Writer,
    /// Quotas of tenants without their own.
    defaults: TenantDefaults,
    /// The tenant the last claim served first; the next starts after it.
    claim_cursor: Arc<std::sync::Mutex<String>>,
}

impl std::fmt::Debug for RedbStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStorage").finish_non_exhaustive()
    }
}

impl From<::redb::Error> for StorageError {
    /// An I/O failure is [`StorageError::Unavailable`]: the file reopens
    /// once it passes; anything else is a backend error.
    fn from(error: ::redb::Error) -> Self {
        match error {
            ::redb::Error::Io(e) => StorageError::Unavailable(e.to_string()),
            ::redb::Error::PreviousIo => {
                StorageError::Unavailable("an earlier write to the database file failed".into())
            }
            other => StorageError::Backend(other.to_string()),
        }
    }
}

macro_rules! backend_errors {
    ($($error:ty),*) => {$(
        impl From<$error> for StorageError {
            fn from(error: $error) -> Self {
                StorageError::from(::redb::Error::from(error))
            }
        }
    )*};
}
backend_errors!(
    ::redb::DatabaseError,
    ::redb::TransactionError,
    ::redb::TableError,
    ::redb::StorageError,
    ::redb::CommitError
);

/// The lease of a running job, kept in the running index so claims and
/// recovery read it without decoding job records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Lease {
    /// Worker holding it.
    worker: String,
    /// Recovery takes the job off its worker after this.
    until: Millis,
    /// The job's queue, for concurrency limits.
    queue: String,
    /// The job's tenant, for quotas.
    tenant: String,
    /// The attempt the lease is for (0 in files from before it was kept).
    #[serde(default)]
    attempt: u32,
}

impl RedbStorage {
    /// Opens (or creates) the database file at `path` and creates its tables;
    /// a redb file of another program is refused rather than written to.
    pub fn open(path: &Path) -> Result<RedbStorage, StorageError> {
        let db = Arc::new(DbFile::new(path, open_database)?);
        let defaults = TenantDefaults::default();
        let claim_cursor = Arc::default();
        Ok(RedbStorage { writer: Writer::start(db.clone()), db, defaults, claim_cursor })
    }

    /// This storage with `defaults` as the quotas of tenants that set none.
    pub fn with_tenant_defaults(self, defaults: TenantDefaults) -> Self {
        Self { defaults, ..self }
    }
}

/// redb's own page cache. Bounded (redb's default is 1 GiB) so a host's
/// memory does not grow with the jobs it stores; the kernel's page cache
/// keeps the rest of a hot file close.
const CACHE_BYTES: usize = 64 << 20;

/// Opens the file, refuses a foreign one, creates the tables a new file
/// lacks, replays the journal's commits after the last checkpoint and
/// upgrades an old file, then makes all that a checkpoint: at start, and
/// again after an I/O failure.
fn open_database(path: &Path) -> Result<Opened, StorageError> {
    let db = Database::builder().set_cache_size(CACHE_BYTES).create(path)?;
    refuse_foreign(&db)?;
    let mut journal = Journal::open(path)?;
    let write = db.begin_write()?;
    let txn = Txn::new(&write, Ops::default());
    let epoch = {
        macro_rules! create {
            ($($table:ident),*) => { $(txn.open_table($table)?;)* };
        }
        schema::each_table!(create);
        let checkpoint = txn.open_table(CHECKPOINT)?.get("epoch")?.map_or(0, |v| v.value());
        let frames = journal.frames_after(checkpoint)?;
        let epoch = frames.last().map_or(checkpoint, |(epoch, _)| *epoch);
        if !frames.is_empty() {
            tracing::info!("replaying {} commits from {}", frames.len(), path.display());
        }
        for (_, ops) in frames {
            journal::Ops::each(&ops, |table, key, value| replay(&txn, table, key, value))?;
        }
        apply::upgrade(&txn)?;
        index::upgrade(&txn)?;
        txn.open_table(CHECKPOINT)?.insert("epoch", epoch)?;
        epoch
    };
    txn.close()?;
    write.commit()?;
    journal.checkpointed(epoch);
    Ok(Opened { db, journal: std::sync::Mutex::new(journal) })
}

/// Writes one journaled write again, into its table found by name.
fn replay(txn: &Txn, table: &str, key: &[u8], value: Option<&[u8]>) -> Result<(), StorageError> {
    macro_rules! find {
        ($($def:ident),*) => {
            match table {
                $(name if name == $def.name() => txn.open_table($def)?.write_bytes(key, value),)*
                name => Err(StorageError::Corrupt(format!("the journal writes to no table {name}"))),
            }
        };
    }
    schema::each_table!(find)
}

/// A jobhost database has a `jobs` table from its first open; a file with
/// tables and none of that name belongs to someone else.
fn refuse_foreign(db: &Database) -> Result<(), StorageError> {
    let names: Vec<String> =
        db.begin_read()?.list_tables()?.map(|table| table.name().to_string()).collect();
    if names.is_empty() || names.iter().any(|name| name == JOBS.name()) {
        return Ok(());
    }
    Err(StorageError::Backend(format!(
        "not a jobhost database: it holds the tables {} and no jobs table",
        names.join(", ")
    )))
}

impl RedbStorage {
    /// A read transaction on the open file.
    fn begin_read(&self) -> Result<ReadTransaction, StorageError> {
        Ok(self.db.get()?.begin_read()?)
    }

    /// Runs a read on a blocking thread, so a scan of many records never
    /// holds one of the async workers every request shares.
    async fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&ReadTransaction) -> Result<T, StorageError> + Send + 'static,
    ) -> Result<T, StorageError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || read(&db.get()?.begin_read()?))
            .await
            .map_err(|e| StorageError::Backend(format!("a read task failed: {e}")))?
    }
}

fn read_job(
    table: &impl ReadableTable<u128, &'static [u8]>,
    id: Uuid,
) -> Result<JobRecord, StorageError> {
    read_record(table, id, "job")
}

/// Writes a job whose indexed fields (see [`index::rewrite`]) did not
/// change: its progress, labels, links, webhook status.
fn put_job(txn: &Txn, job: &JobRecord) -> Result<(), StorageError> {
    put_record(txn, JOBS, job.id, job)
}

/// Record `id` of a table keyed by id (jobs, workflows, schedules); a
/// missing one is `NotFound` naming it as `what`.
fn read_record<T: serde::de::DeserializeOwned>(
    table: &impl ReadableTable<u128, &'static [u8]>,
    id: Uuid,
    what: &str,
) -> Result<T, StorageError> {
    match table.get(id.as_u128())? {
        Some(bytes) => decode(bytes.value()),
        None => Err(StorageError::NotFound(format!("{what} {id}"))),
    }
}

/// Writes record `id` of a table keyed by id.
fn put_record<T: Serialize>(
    txn: &Txn,
    table: ::redb::TableDefinition<u128, &[u8]>,
    id: Uuid,
    record: &T,
) -> Result<(), StorageError> {
    txn.open_table(table)?.insert(id.as_u128(), encode(record).as_slice())?;
    Ok(())
}

fn read_all<T: serde::de::DeserializeOwned>(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
) -> Result<Vec<(String, T)>, StorageError> {
    table
        .iter()?
        .map(|entry| {
            let (key, value) = entry?;
            Ok((key.value().to_string(), decode(value.value())?))
        })
        .collect()
}
