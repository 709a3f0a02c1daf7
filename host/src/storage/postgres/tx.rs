//! A transaction on a pooled connection, with what it owes at commit: the
//! waiting counts it changed (summed, then written once per tenant, so a
//! tenant's counter row is locked for the shortest time) and the wake-up
//! of claims waiting on any host, when a job may have become claimable.

use super::StorageError;
use deadpool_postgres::Object;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio_postgres::Row;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;

/// The channel claims listen on.
pub(super) const WAKE_CHANNEL: &str = "jobhost_wake";

/// Parameters of a statement.
pub(super) type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// How a transaction ended without committing.
pub(super) enum Failed {
    /// The database aborted it for a conflict with another: run it again.
    Retry(StorageError),
    /// Anything else, returned as it is.
    Error(StorageError),
}

pub(super) struct Tx {
    /// `None` once committed or rolled back.
    client: Option<Object>,
    /// Whether `BEGIN` was sent (reads run without).
    open: bool,
    waiting: Mutex<BTreeMap<String, i64>>,
    wake: AtomicBool,
    /// A statement failed in a way another try may not.
    conflict: AtomicBool,
}

impl Tx {
    pub(super) async fn begin(client: Object) -> Result<Tx, StorageError> {
        let tx = Tx::new(client, true);
        tx.batch("BEGIN").await?;
        Ok(tx)
    }

    /// A connection for reads: each statement sees the latest commits.
    pub(super) fn reading(client: Object) -> Tx {
        Tx::new(client, false)
    }

    fn new(client: Object, open: bool) -> Tx {
        Tx {
            client: Some(client),
            open,
            waiting: Mutex::default(),
            wake: AtomicBool::new(false),
            conflict: AtomicBool::new(false),
        }
    }

    fn client(&self) -> &Object {
        self.client.as_ref().expect("a transaction is used only until it ends")
    }

    pub(super) async fn query(
        &self,
        sql: &str,
        params: Params<'_>,
    ) -> Result<Vec<Row>, StorageError> {
        let client = self.client();
        let statement = client.prepare_cached(sql).await.map_err(|e| self.failed(e))?;
        client.query(&statement, params).await.map_err(|e| self.failed(e))
    }

    pub(super) async fn query_opt(
        &self,
        sql: &str,
        params: Params<'_>,
    ) -> Result<Option<Row>, StorageError> {
        Ok(self.query(sql, params).await?.into_iter().next())
    }

    pub(super) async fn execute(&self, sql: &str, params: Params<'_>) -> Result<u64, StorageError> {
        let client = self.client();
        let statement = client.prepare_cached(sql).await.map_err(|e| self.failed(e))?;
        client.execute(&statement, params).await.map_err(|e| self.failed(e))
    }

    async fn batch(&self, sql: &str) -> Result<(), StorageError> {
        self.client().batch_execute(sql).await.map_err(|e| self.failed(e))
    }

    /// Maps a database error, noting one that another try may pass.
    fn failed(&self, error: tokio_postgres::Error) -> StorageError {
        let retry = [
            SqlState::T_R_SERIALIZATION_FAILURE,
            SqlState::T_R_DEADLOCK_DETECTED,
            SqlState::UNIQUE_VIOLATION,
        ];
        if error.code().is_some_and(|code| retry.contains(code)) {
            self.conflict.store(true, Ordering::Relaxed);
        }
        backend(error)
    }

    /// Counts `delta` more waiting jobs of `tenant` at commit.
    pub(super) fn add_waiting(&self, tenant: &str, delta: i64) {
        *self.waiting.lock().unwrap().entry(tenant.to_string()).or_default() += delta;
    }

    /// The jobs of `tenant` waiting to run, counting this transaction's,
    /// with the tenant's counter row locked until the end: two hosts
    /// admitting jobs of one tenant check its quota one after the other.
    pub(super) async fn waiting(&self, tenant: &str) -> Result<u64, StorageError> {
        // The no-op update takes the row's lock and returns its count.
        let row = self
            .query_opt(
                "INSERT INTO waiting (tenant, count) VALUES ($1, 0) \
                 ON CONFLICT (tenant) DO UPDATE SET count = waiting.count RETURNING count",
                &[&tenant],
            )
            .await?;
        let stored = row.map_or(0, |row| row.get::<_, i64>(0));
        let pending = self.waiting.lock().unwrap().get(tenant).copied().unwrap_or(0);
        Ok((stored + pending).max(0) as u64)
    }

    /// Claims waiting on any host look again once this commits.
    pub(super) fn wake(&self) {
        self.wake.store(true, Ordering::Relaxed);
    }

    /// Writes the counts, sends the wake-up, commits; true when it woke.
    pub(super) async fn commit(mut self) -> Result<bool, Failed> {
        let ended = self.finish_commit().await;
        match ended {
            Ok(()) => {
                self.client = None;
                Ok(self.wake.load(Ordering::Relaxed))
            }
            Err(e) => Err(self.rollback(e).await),
        }
    }

    async fn finish_commit(&self) -> Result<(), StorageError> {
        let counts: Vec<(String, i64)> = std::mem::take(&mut *self.waiting.lock().unwrap())
            .into_iter()
            .filter(|(_, delta)| *delta != 0)
            .collect();
        for (tenant, delta) in counts {
            self.execute(
                "INSERT INTO waiting (tenant, count) VALUES ($1, $2) \
                 ON CONFLICT (tenant) DO UPDATE SET count = waiting.count + excluded.count",
                &[&tenant, &delta],
            )
            .await?;
        }
        if self.wake.load(Ordering::Relaxed) {
            self.execute("SELECT pg_notify($1, '')", &[&WAKE_CHANNEL]).await?;
        }
        self.batch("COMMIT").await
    }

    /// Rolls back after `error`; says whether another try may pass.
    pub(super) async fn rollback(mut self, error: StorageError) -> Failed {
        if self.open && self.batch("ROLLBACK").await.is_ok() {
            self.client = None;
        }
        if self.conflict.load(Ordering::Relaxed) {
            Failed::Retry(error)
        } else {
            Failed::Error(error)
        }
    }
}

impl Drop for Tx {
    /// A transaction dropped before its end (its request went away) takes
    /// its connection out of the pool: closing it rolls the work back.
    fn drop(&mut self) {
        if let Some(client) = self.client.take().filter(|_| self.open) {
            drop(Object::take(client));
        }
    }
}

/// A database error as the storage reports it: a lost connection, or a
/// server shutting down, starting or out of connections, is
/// [`StorageError::Unavailable`] (the pool reconnects once it passes).
pub(super) fn backend(error: tokio_postgres::Error) -> StorageError {
    let away = error.code().is_none_or(|code| {
        let code = code.code();
        code.starts_with("08") || code.starts_with("57P") || code == "53300"
    });
    if error.is_closed() || away {
        return StorageError::Unavailable(format!("the database is unreachable: {error}"));
    }
    match error.as_db_error() {
        Some(db) => StorageError::Backend(format!("{} ({})", db.message(), db.code().code())),
        None => StorageError::Backend(error.to_string()),
    }
}
