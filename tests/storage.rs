//! The storage suite (`suites/storage.rs`, written once against the
//! storage traits) on the embedded redb file, and what only that backend
//! has: group commits and the upgrade of files older versions wrote.

const BACKEND: Backend = Backend::Redb;
include!("suites/storage.rs");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_share_commits() {
    let db = open().await;
    let enqueues = (0..500).map(|i| db.storage.enqueue(job(&format!("bulk {i}")), now_ms()));
    for enqueued in futures::future::join_all(enqueues).await {
        enqueued.unwrap();
    }
    let (commits, writes) = (counter(&db, "commits_total"), counter(&db, "writes_total"));
    assert_eq!(writes, 500);
    assert!(commits < writes, "500 concurrent enqueues took {commits} commits");
    assert_eq!(
        db.storage.list(&JobFilter::default(), Start::Offset(0), 1).await.unwrap().total,
        500
    );
}

#[tokio::test]
async fn a_file_from_before_the_grouped_ready_index_is_upgraded_at_open() {
    use redb::{ReadableDatabase, ReadableTable, TableDefinition};
    const READY: TableDefinition<&[u8], ()> = TableDefinition::new("ready");
    const OLD: TableDefinition<&[u8], &str> = TableDefinition::new("pending");
    let db = open().await;
    let id = db.storage.enqueue(job("old"), now_ms()).await.unwrap().job.id;
    let path = db.dir.path().join("jobhost.redb");
    drop(db.storage);

    // Rewrite the file as the version before wrote it: the ready job in the
    // single `pending` index (priority, run_at, id → queue).
    let file = redb::Database::create(&path).unwrap();
    let txn = file.begin_write().unwrap();
    {
        let run_at = {
            let read = file.begin_read().unwrap();
            let ready = read.open_table(READY).unwrap();
            let key = ready.iter().unwrap().next().unwrap().unwrap().0.value().to_vec();
            u64::from_be_bytes(key[key.len() - 24..key.len() - 16].try_into().unwrap())
        };
        txn.open_table(READY).unwrap().retain(|_, _| false).unwrap();
        let mut key = Vec::new();
        key.extend_from_slice(&(!0x8000_0000u32).to_be_bytes()); // priority 0, inverted
        key.extend_from_slice(&run_at.to_be_bytes());
        key.extend_from_slice(&id.as_u128().to_be_bytes());
        txn.open_table(OLD).unwrap().insert(key.as_slice(), "default").unwrap();
    }
    txn.commit().unwrap();
    drop(file);

    let storage = open_in(BACKEND, db.dir.path(), TenantDefaults::default()).await;
    let claimed = storage.claim(rules("w1", 10)).await.unwrap();
    assert_eq!(claimed.iter().map(|j| j.id).collect::<Vec<_>>(), [id], "the old job is claimable");
}

#[tokio::test]
async fn a_file_that_listed_running_jobs_apart_is_regrouped_at_open() {
    use redb::{ReadableDatabase, ReadableTable, TableDefinition};
    const LISTING: TableDefinition<&[u8], ()> = TableDefinition::new("listing");
    const PENDING: u8 = 2;
    const RUNNING: u8 = 3;
    let db = open().await;
    let running = db.storage.enqueue(job("runs"), now_ms()).await.unwrap().job.id;
    assert_eq!(claim_names(&*db.storage, 1).await, ["runs"]);
    let waiting = db.storage.enqueue(job("waits"), now_ms()).await.unwrap().job.id;
    let path = db.dir.path().join("jobhost.redb");
    drop(db.storage);

    // Rewrite the file as the version before wrote it: the running job's
    // rows in groups of their own (the state byte before the position).
    let state_of = |key: &[u8]| key[key.len() - 25];
    let id_of = |key: &[u8]| u128::from_be_bytes(key[key.len() - 16..].try_into().unwrap());
    let file = redb::Database::create(&path).unwrap();
    let txn = file.begin_write().unwrap();
    {
        let mut listing = txn.open_table(LISTING).unwrap();
        let rows: Vec<Vec<u8>> = listing
            .iter()
            .unwrap()
            .map(|entry| entry.unwrap().0.value().to_vec())
            .filter(|key| id_of(key) == running.as_u128())
            .collect();
        assert!(rows.iter().all(|key| state_of(key) == PENDING), "running rows stay pending");
        for mut key in rows {
            listing.remove(key.as_slice()).unwrap();
            let at = key.len() - 25;
            key[at] = RUNNING;
            listing.insert(key.as_slice(), ()).unwrap();
        }
    }
    txn.commit().unwrap();
    drop(file);

    let storage = open_in(BACKEND, db.dir.path(), TenantDefaults::default()).await;
    let list = |state| {
        let filter = JobFilter { state: Some(state), ..JobFilter::default() };
        let storage = &storage;
        async move {
            let page = storage.list(&filter, Start::Offset(0), 10).await.unwrap();
            (page.jobs.iter().map(|job| job.id).collect::<Vec<_>>(), page.total)
        }
    };
    assert_eq!(list(JobState::Running).await, (vec![running], 1));
    assert_eq!(list(JobState::Pending).await, (vec![waiting], 1));
    let all = storage.list(&JobFilter::default(), Start::Offset(0), 10).await.unwrap();
    assert_eq!(all.jobs.iter().map(|job| job.id).collect::<Vec<_>>(), [waiting, running]);
    drop(storage);
    let file = redb::Database::create(&path).unwrap();
    let read = file.begin_read().unwrap();
    let listing = read.open_table(LISTING).unwrap();
    let left =
        listing.iter().unwrap().filter(|e| state_of(e.as_ref().unwrap().0.value()) == RUNNING);
    assert_eq!(left.count(), 0, "no row is left in a running group");
}

#[tokio::test]
async fn a_file_that_kept_waiting_and_version_counts_apart_is_upgraded_at_open() {
    use redb::{ReadableDatabase, ReadableTable, TableDefinition, TableHandle};
    const COUNTS: TableDefinition<&[u8], u64> = TableDefinition::new("counts");
    const WAITING: TableDefinition<&str, u64> = TableDefinition::new("waiting");
    const REFS: TableDefinition<(&str, &str, &str), u64> = TableDefinition::new("plugin_refs");
    let db = open().await;
    db.storage.put_plugin(plugin_record("acme"), b"abc".to_vec()).await.unwrap();
    for name in ["one", "two"] {
        let new = NewJob { plugin_digest: "sha256:abc".into(), ..job(name) };
        db.storage.enqueue(new, now_ms()).await.unwrap();
    }
    let path = db.dir.path().join("jobhost.redb");
    drop(db.storage);

    // Rewrite the file as the version before wrote it: the waiting jobs of
    // each tenant and the unfinished jobs of each plugin version in tables
    // of their own, not among the counts.
    let file = redb::Database::create(&path).unwrap();
    let txn = file.begin_write().unwrap();
    {
        let mut counts = txn.open_table(COUNTS).unwrap();
        let (mut waiting, mut refs) =
            (txn.open_table(WAITING).unwrap(), txn.open_table(REFS).unwrap());
        let apart: Vec<(Vec<u8>, u64)> = counts
            .iter()
            .unwrap()
            .map(|entry| entry.unwrap())
            .map(|(key, count)| (key.value().to_vec(), count.value()))
            .filter(|(key, _)| matches!(key[0], b'W' | b'V'))
            .collect();
        assert_eq!(apart.len(), 2, "one waiting count and one version count");
        for (key, count) in apart {
            counts.remove(key.as_slice()).unwrap();
            let text = String::from_utf8(key[1..].to_vec()).unwrap();
            let parts: Vec<&str> = text.split('\0').collect();
            match key[0] {
                b'W' => waiting.insert(parts[0], count).unwrap(),
                _ => refs.insert((parts[0], parts[1], parts[2]), count).unwrap(),
            };
        }
    }
    txn.commit().unwrap();
    drop(file);

    let storage = open_in(BACKEND, db.dir.path(), TenantDefaults::default()).await;
    assert_eq!(storage.waiting("acme").await.unwrap(), 2, "the tenant's jobs still wait");
    let versions = storage.plugin_versions("acme", "examples.hello").await.unwrap();
    assert_eq!(versions.iter().map(|v| v.jobs).collect::<Vec<_>>(), [2], "jobs need the version");
    assert!(
        storage.remove_plugin("acme", "examples.hello").await.is_err(),
        "a plugin its unfinished jobs need is kept"
    );
    let claimed = storage.claim(rules("w1", 10)).await.unwrap();
    assert_eq!(claimed.len(), 2);
    assert_eq!(storage.waiting("acme").await.unwrap(), 0, "claimed jobs wait no more");
    drop(storage);
    let file = redb::Database::create(&path).unwrap();
    let read = file.begin_read().unwrap();
    let tables: Vec<String> = read.list_tables().unwrap().map(|t| t.name().to_string()).collect();
    assert!(!tables.iter().any(|t| t == "waiting" || t == "plugin_refs"), "{tables:?}");
}

/// The writer's time counters (in `/metrics` and `/v1/stats`) tell an
/// operator where a write's latency goes: applying it, and syncing it.
#[tokio::test]
async fn commits_count_the_time_they_spend_applying_and_syncing() {
    let db = open().await;
    let counter = |name: &str| counter(&db, name);
    let (apply, sync) =
        (counter("commit_apply_microseconds_total"), counter("commit_sync_microseconds_total"));
    let started = std::time::Instant::now();
    for i in 0..20 {
        db.storage.enqueue(job(&format!("timed {i}")), now_ms()).await.unwrap();
    }
    let elapsed = started.elapsed().as_micros() as u64;
    let applied = counter("commit_apply_microseconds_total") - apply;
    let synced = counter("commit_sync_microseconds_total") - sync;
    assert!(
        applied > 0 && synced > 0,
        "20 commits took {applied} us applying, {synced} us syncing"
    );
    assert!(applied + synced <= elapsed, "{applied} + {synced} us counted in {elapsed} us");
}

/// A commit lives in the journal alone until a checkpoint: one comes once
/// writes stop, and the counters show it with the time it took.
#[tokio::test]
async fn writes_are_checkpointed_into_the_file_once_they_stop() {
    let db = open().await;
    let counter = |name: &str| counter(&db, name);
    let before = counter("checkpoints_total");
    for i in 0..5 {
        db.storage.enqueue(job(&format!("journaled {i}")), now_ms()).await.unwrap();
    }
    let started = std::time::Instant::now();
    while counter("checkpoints_total") == before {
        assert!(started.elapsed().as_secs() < 60, "no checkpoint came after the writes stopped");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(counter("checkpoint_microseconds_total") > 0);
}

/// The storage counter `name`, as `/metrics` shows it.
fn counter(db: &TestDb, name: &str) -> u64 {
    db.storage.counters().into_iter().find(|(n, _)| *n == name).map(|(_, v)| v).unwrap()
}
