//! Lists, counts and queue health read from the backend's indexes and
//! tallies: written against the storage traits, checked against the job
//! records themselves after every kind of change, across tenants, and
//! after a restart.
//!
//! This file runs `suites/listing.rs` on the embedded redb file, and
//! checks what only that backend has: the upgrade of a file older
//! versions wrote.

const BACKEND: Backend = Backend::Redb;
include!("suites/listing.rs");

#[tokio::test]
async fn a_file_from_before_the_indexes_is_indexed_when_opened() {
    let dir = tempfile::tempdir().unwrap();
    let storage = open_in(BACKEND, dir.path(), TenantDefaults::default()).await;
    let mut ids = Vec::new();
    for (i, queue) in ["fast", "fast", "slow"].iter().enumerate() {
        let new = job("acme", queue, "examples.hello", "ada", &format!("j{i}"));
        ids.push(storage.enqueue(new, now_ms()).await.unwrap().job.id);
    }
    storage.cancel(ids[0], now_ms()).await.unwrap();
    drop(storage);
    let db = redb::Database::open(dir.path().join("jobhost.redb")).unwrap();
    let txn = db.begin_write().unwrap();
    txn.delete_table(redb::TableDefinition::<&[u8], ()>::new("listing")).unwrap();
    txn.delete_table(redb::TableDefinition::<&[u8], u64>::new("counts")).unwrap();
    txn.commit().unwrap();
    drop(db);

    let storage = open_in(BACKEND, dir.path(), TenantDefaults::default()).await;
    check(&*storage, &ids, "after the upgrade").await;
    let fast = JobFilter { queue: Some("fast".into()), ..JobFilter::default() };
    assert_eq!(storage.list(&fast, Start::Offset(0), 10).await.unwrap().total, 2);
}
