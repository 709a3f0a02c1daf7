//! The backend under test for the storage suites (`tests/storage.rs`,
//! `tests/listing.rs`): each opens it through [`open_in`], so a second
//! backend adds its opener here and passes the same tests.

use jobhost::jobs::TenantDefaults;
use jobhost::storage::{RedbStorage, Storage};
use std::path::Path;

/// Opens the backend on `dir`, as a host would at start (so opening it
/// again is a restart).
pub fn open_in(dir: &Path, defaults: TenantDefaults) -> Box<dyn Storage> {
    let storage = RedbStorage::open(&dir.join("jobhost.redb")).unwrap();
    Box::new(storage.with_tenant_defaults(defaults))
}
