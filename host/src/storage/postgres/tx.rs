//! A transaction on a pooled connection, with what it owes at commit: the
//! waiting counts it changed (summed, then written once per tenant at the
//! end, to one of the tenant's counter shards) and the wake-up of claims
//! waiting on any host, when a job may have become claimable.
//!
//! A tenant's `max_queued` holds across hosts without making its
//! enqueues take turns: an admission of one job, far from the cap, takes
//! the tenant's admission lock shared and checks the committed count plus
//! the most that could be in flight unseen (one per connection the server
//! allows); anything else (a batch, a chain, near the cap) takes it
//! exclusive, which waits for those in flight, and checks the exact count.

use super::StorageError;
use crate::jobs::{TenantDefaults, TenantRecord};
use deadpool_postgres::Object;
use futures::future::BoxFuture;
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio_postgres::Row;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;

/// The channel claims listen on.
pub(super) const WAKE_CHANNEL: &str = "jobhost_wake";

/// Counter rows per tenant: commits of one tenant's jobs lock one each,
/// so that many commit at once.
const SHARDS: usize = 16;

/// Adds a transaction's delta to its shard of a tenant's count.
const COUNT: &str = "INSERT INTO waiting (tenant, shard, count) VALUES ($1, $2, $3) \
     ON CONFLICT (tenant, shard) DO UPDATE SET count = waiting.count + excluded.count";

/// Wakes the claims of every host (`wake.rs`).
const NOTIFY: &str = "SELECT pg_notify($1, '')";

/// The advisory lock (with the tenant's hash) of a tenant's admissions.
const ADMISSIONS_LOCK: i32 = 7305;

/// The sum of a tenant's counter shards: its waiting jobs, committed.
pub(super) const STORED_WAITING: &str =
    "SELECT coalesce(sum(count), 0)::bigint FROM waiting WHERE tenant = $1";

/// What the transactions of one storage share about admissions.
pub(super) struct Admissions {
    /// Connections the server allows: at most that many admissions of one
    /// job each can be in flight, unseen by a count.
    in_flight: u64,
    /// Tenants whose last count was near the cap: they count strictly.
    near_cap: Mutex<HashSet<String>>,
    /// The shard the next transaction writes its counts to.
    next_shard: AtomicUsize,
}

impl Admissions {
    pub(super) fn new(max_connections: u64) -> Arc<Admissions> {
        Arc::new(Admissions {
            in_flight: max_connections,
            near_cap: Mutex::default(),
            next_shard: AtomicUsize::new(0),
        })
    }
}

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
    /// `None` for reads, which admit nothing.
    admissions: Option<Arc<Admissions>>,
    /// Tenants whose admission lock this holds exclusive, with their
    /// committed count read once it was taken: no admission commits while
    /// it is held, and what else may (a retry back in the queue) checks no
    /// cap, so this counts as if it came first.
    exclusive: Mutex<BTreeMap<String, i64>>,
    /// Tenants whose admission lock this holds shared.
    shared: Mutex<HashSet<String>>,
    /// This admits several jobs of a tenant: it counts strictly.
    many: AtomicBool,
    shard: i32,
}

impl Tx {
    pub(super) async fn begin(
        client: Object,
        admissions: &Arc<Admissions>,
    ) -> Result<Tx, StorageError> {
        let shard = admissions.next_shard.fetch_add(1, Ordering::Relaxed) % SHARDS;
        let tx = Tx::new(client, Some(admissions.clone()), shard as i32);
        tx.batch("BEGIN").await?;
        Ok(tx)
    }

    /// A connection for reads: each statement sees the latest commits.
    pub(super) fn reading(client: Object) -> Tx {
        Tx::new(client, None, 0)
    }

    fn new(client: Object, admissions: Option<Arc<Admissions>>, shard: i32) -> Tx {
        Tx {
            client: Some(client),
            open: admissions.is_some(),
            waiting: Mutex::default(),
            wake: AtomicBool::new(false),
            conflict: AtomicBool::new(false),
            admissions,
            exclusive: Mutex::default(),
            shared: Mutex::default(),
            many: AtomicBool::new(false),
            shard,
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

    /// Says this transaction may admit several jobs of one tenant (a
    /// batch), so its counts are exact from the first.
    pub(super) fn admit_many(&self) {
        self.many.store(true, Ordering::Relaxed);
    }

    /// The jobs of `tenant` waiting to run, counting this transaction's,
    /// for the admission of `adding` more under its `max_queued` (its own
    /// or `defaults`'); see the module's doc for how it stays exact across
    /// hosts. An admission that finds itself near the cap on the shared
    /// lock runs again, exclusive.
    pub(super) async fn waiting(
        &self,
        tenant: &TenantRecord,
        defaults: &TenantDefaults,
        adding: u64,
    ) -> Result<u64, StorageError> {
        let cap = u64::from(tenant.queued_quota(defaults));
        let tenant = tenant.name.as_str();
        let admissions = self.admissions.as_ref().expect("reads admit no job");
        let pending = self.waiting.lock().unwrap().get(tenant).copied().unwrap_or(0);
        if let Some(stored) = self.exclusive.lock().unwrap().get(tenant) {
            return Ok((stored + pending).max(0) as u64);
        }
        if self.shared.lock().unwrap().contains(tenant) {
            // A second admission under the shared lock: exact from the
            // start, next time.
            return Err(self.near_cap(admissions, tenant));
        }
        let strict = adding > 1
            || self.many.load(Ordering::Relaxed)
            || admissions.near_cap.lock().unwrap().contains(tenant);
        let lock = match strict {
            true => "SELECT pg_advisory_xact_lock($1, hashtext($2))",
            false => "SELECT pg_advisory_xact_lock_shared($1, hashtext($2))",
        };
        self.execute(lock, &[&ADMISSIONS_LOCK, &tenant]).await?;
        let row = self.query_opt(STORED_WAITING, &[&tenant]).await?;
        let stored = row.map_or(0, |row| row.get::<_, i64>(0));
        let waiting = (stored + pending).max(0) as u64;
        let unseen = admissions.in_flight;
        if strict {
            self.exclusive.lock().unwrap().insert(tenant.to_string(), stored);
            if waiting.saturating_add(adding).saturating_add(2 * unseen) <= cap {
                admissions.near_cap.lock().unwrap().remove(tenant);
            }
        } else {
            self.shared.lock().unwrap().insert(tenant.to_string());
            if waiting.saturating_add(unseen) > cap {
                return Err(self.near_cap(admissions, tenant));
            }
        }
        Ok(waiting)
    }

    /// Marks `tenant` near its cap and this transaction for another try.
    fn near_cap(&self, admissions: &Admissions, tenant: &str) -> StorageError {
        admissions.near_cap.lock().unwrap().insert(tenant.to_string());
        self.conflict.store(true, Ordering::Relaxed);
        StorageError::Conflict(format!("tenant {tenant:?} is near its max_queued"))
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

    /// The counts, the wake-up and `COMMIT` go in one round trip: their
    /// statements are prepared first, so each is sent as its future is
    /// first polled, in order, and the server runs them in that order.
    async fn finish_commit(&self) -> Result<(), StorageError> {
        let counts: Vec<(String, i64)> = std::mem::take(&mut *self.waiting.lock().unwrap())
            .into_iter()
            .filter(|(_, delta)| *delta != 0)
            .collect();
        let client = self.client();
        let count = match counts.is_empty() {
            true => None,
            false => Some(client.prepare_cached(COUNT).await.map_err(|e| self.failed(e))?),
        };
        let wake = self.wake.load(Ordering::Relaxed);
        let notify = match wake {
            true => Some(client.prepare_cached(NOTIFY).await.map_err(|e| self.failed(e))?),
            false => None,
        };
        let mut tail: Vec<BoxFuture<'_, Result<(), tokio_postgres::Error>>> = Vec::new();
        for (tenant, delta) in &counts {
            let count = count.as_ref().expect("prepared when there are counts");
            let params: [&(dyn ToSql + Sync); 3] = [tenant, &self.shard, delta];
            let sent = client.execute_raw(count, params);
            tail.push(Box::pin(async move { sent.await.map(drop) }));
        }
        if let Some(notify) = &notify {
            let sent = client.execute_raw(notify, [WAKE_CHANNEL]);
            tail.push(Box::pin(async move { sent.await.map(drop) }));
        }
        tail.push(Box::pin(client.batch_execute("COMMIT")));
        futures::future::try_join_all(tail).await.map(drop).map_err(|e| self.failed(e))
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
