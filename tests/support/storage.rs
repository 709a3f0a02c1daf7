//! The backends under test for the storage suites (`suites/storage.rs`,
//! `suites/listing.rs`): each suite runs once per backend, from a file
//! that names it (`storage.rs`, `storage_postgres.rs`, ...), and opens it
//! through [`open_in`].

use jobhost::jobs::TenantDefaults;
use jobhost::storage::{PgStorage, RedbStorage, Storage};
use std::path::Path;

/// A storage backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The embedded redb file.
    Redb,
    /// PostgreSQL, on the throwaway cluster of [`crate::postgres`].
    Postgres,
}

/// Opens the backend's storage of `dir` (a test's own temporary folder:
/// the redb file in it, or a database named after it), as a host would at
/// start, so opening it again is a restart.
pub async fn open_in(backend: Backend, dir: &Path, defaults: TenantDefaults) -> Box<dyn Storage> {
    match backend {
        Backend::Redb => {
            let storage = RedbStorage::open(&dir.join("jobhost.redb")).unwrap();
            Box::new(storage.with_tenant_defaults(defaults))
        }
        Backend::Postgres => {
            let key = dir.file_name().expect("a temporary folder has a name").to_string_lossy();
            let url = crate::postgres::database_url(&key);
            let storage = PgStorage::connect(&url).await.unwrap();
            Box::new(storage.with_tenant_defaults(defaults))
        }
    }
}
