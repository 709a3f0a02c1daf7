//! [`super::Storage`] on PostgreSQL, so several hosts share one database.
//! Each operation is one transaction on a pooled connection, written as the
//! same steps as the redb backend's (read the record, ask the rule, write
//! the transition): the database's row locks stand where redb's single
//! writer stood, so two hosts never change one job at once, and claims take
//! rows with `FOR UPDATE SKIP LOCKED` so they never wait for each other.
//!
//! - `schema`: the versioned migrations and the job row.
//! - `tx`: a transaction with the counts it changed and the wake-up it owes.
//! - `apply`: writes a rule's transition, the one way a job's state changes.
//! - `jobs`: the job operations; `claim`: the fair claim; `job_store`:
//!   [`super::JobStore`] over them; `listing`: lists and queue health.
//! - `workflows`, `schedules`, `admin`: the other traits.
//! - `wake`: `LISTEN` for the commits that may make a job claimable.
//! - `relay`: the job events of each host's bus, to the others.

mod admin;
mod apply;
mod claim;
mod job_store;
mod jobs;
mod listing;
mod relay;
mod schedules;
mod schema;
mod tx;
mod wake;
mod workflows;

pub use relay::Relay;

use super::StorageError;
use crate::jobs::{JobRecord, TenantDefaults};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use futures::future::BoxFuture;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::Notify;
use tokio_postgres::NoTls;
use tx::Tx;
use uuid::Uuid;

/// Connections a host keeps open: enough for its dispatcher, its API
/// requests and its background loops at once.
const POOL_SIZE: usize = 16;

/// Tries of a transaction the database aborted to resolve a conflict with
/// another (a deadlock, or two inserts of one idempotency key).
const TRIES: u32 = 5;

/// The storage on one PostgreSQL database. Clones share the pool.
#[derive(Clone)]
pub struct PgStorage {
    pool: Pool,
    /// Quotas of tenants without their own.
    defaults: TenantDefaults,
    /// The tenant this host's last claim served first.
    claim_cursor: Arc<std::sync::Mutex<String>>,
    /// Woken by a commit (of any host) that may make a job claimable.
    wake: Arc<Notify>,
    stats: Arc<Stats>,
    /// Where the database is, without its password.
    location: String,
    /// How to connect, for the connections outside the pool.
    config: tokio_postgres::Config,
    admissions: Arc<tx::Admissions>,
    _listener: Arc<wake::Listener>,
}

#[derive(Default)]
struct Stats {
    commits: AtomicU64,
    retries: AtomicU64,
}

impl std::fmt::Debug for PgStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStorage").finish_non_exhaustive()
    }
}

impl PgStorage {
    /// Connects to the database at `url` (`postgres://user@host/db`) and
    /// brings its schema up to date.
    pub async fn connect(url: &str) -> Result<PgStorage, StorageError> {
        let config: tokio_postgres::Config =
            url.parse().map_err(|e| StorageError::Invalid(format!("database URL: {e}")))?;
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig { recycling_method: RecyclingMethod::Fast },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .build()
            .map_err(|e| StorageError::Backend(e.to_string()))?;
        let mut client = pool.get().await.map_err(unreachable)?;
        schema::migrate(&mut client).await?;
        let row = client.query_one("SHOW max_connections", &[]).await.map_err(tx::backend)?;
        let max_connections = row.get::<_, &str>(0).parse().unwrap_or(u64::MAX);
        drop(client);
        let location = location(&config);
        let wake = Arc::new(Notify::new());
        let listener = Arc::new(wake::Listener::start(config.clone(), wake.clone()));
        Ok(PgStorage {
            pool,
            defaults: TenantDefaults::default(),
            claim_cursor: Arc::default(),
            wake,
            stats: Arc::default(),
            location,
            config,
            admissions: tx::Admissions::new(max_connections),
            _listener: listener,
        })
    }

    /// The database as the log shows it: user, hosts and name.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// This storage with `defaults` as the quotas of tenants that set none.
    pub fn with_tenant_defaults(self, defaults: TenantDefaults) -> Self {
        Self { defaults, ..self }
    }

    /// Runs `op` in a transaction and commits it; a transaction the
    /// database aborted for a conflict with another runs again.
    async fn write<T>(
        &self,
        op: impl for<'t> Fn(&'t Tx) -> BoxFuture<'t, Result<T, StorageError>> + Send + Sync,
    ) -> Result<T, StorageError> {
        let mut tries = 0;
        loop {
            tries += 1;
            let tx =
                Tx::begin(self.pool.get().await.map_err(unreachable)?, &self.admissions).await?;
            let done = match op(&tx).await {
                Ok(value) => tx.commit().await.map(|wakes| (value, wakes)),
                Err(e) => Err(tx.rollback(e).await),
            };
            match done {
                Ok((value, wakes)) => {
                    self.stats.commits.fetch_add(1, Ordering::Relaxed);
                    if wakes {
                        self.wake.notify_waiters();
                    }
                    return Ok(value);
                }
                Err(tx::Failed::Retry(_)) if tries < TRIES => {
                    self.stats.retries.fetch_add(1, Ordering::Relaxed);
                }
                Err(tx::Failed::Retry(e) | tx::Failed::Error(e)) => return Err(e),
            }
        }
    }

    /// Runs a read on a pooled connection, outside any transaction.
    async fn read<T>(
        &self,
        op: impl for<'t> FnOnce(&'t Tx) -> BoxFuture<'t, Result<T, StorageError>>,
    ) -> Result<T, StorageError> {
        let tx = Tx::reading(self.pool.get().await.map_err(unreachable)?);
        op(&tx).await
    }
}

/// `user@host:port/database`, the password left out.
fn location(config: &tokio_postgres::Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .zip(config.get_ports().iter().chain(std::iter::repeat(&5432)))
        .map(|(host, port)| match host {
            tokio_postgres::config::Host::Tcp(name) => format!("{name}:{port}"),
            tokio_postgres::config::Host::Unix(path) => format!("{}:{port}", path.display()),
        })
        .collect();
    let user = config.get_user().unwrap_or("");
    format!("{user}@{}/{}", hosts.join(","), config.get_dbname().unwrap_or(user))
}

/// The pool could not hand out a connection: the database is down or out
/// of reach, which a later try may find passed.
fn unreachable(error: deadpool_postgres::PoolError) -> StorageError {
    StorageError::Unavailable(format!("the database is unreachable: {error}"))
}

/// Decodes a stored record.
fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, StorageError> {
    serde_json::from_slice(bytes).map_err(|e| StorageError::Corrupt(e.to_string()))
}

/// Decodes the records of `rows`, whose first column is a record.
fn records<T: serde::de::DeserializeOwned>(
    rows: &[tokio_postgres::Row],
) -> Result<Vec<T>, StorageError> {
    rows.iter().map(|row| decode(row.get::<_, &[u8]>(0))).collect()
}

/// Encodes a record to store.
fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("records always serialise")
}

/// A job's record, or `NotFound`; `lock` takes its row for the transaction.
async fn read_job(tx: &Tx, id: Uuid, lock: bool) -> Result<JobRecord, StorageError> {
    let sql = if lock {
        "SELECT record FROM jobs WHERE id = $1 FOR UPDATE"
    } else {
        "SELECT record FROM jobs WHERE id = $1"
    };
    match tx.query_opt(sql, &[&id]).await? {
        Some(row) => decode(row.get::<_, &[u8]>(0)),
        None => Err(StorageError::NotFound(format!("job {id}"))),
    }
}
