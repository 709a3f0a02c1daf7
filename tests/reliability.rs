//! The promise that nothing is lost or doubled, tried as a client would:
//! many clients racing on one idempotency key or on one job, and a data file
//! that is already in use or is not jobhost's.

use jobhost::host::Host;
use jobhost::jobs::Role;
use jobhost_tests::server::{TestServer, enqueue, test_config, wait_state};
use redb::{ReadableDatabase, TableHandle};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_enqueues_with_one_key_make_one_job() {
    let server = Arc::new(TestServer::start().await);
    let ada = server.token("acme", "ada", Role::Submitter).await;
    let body = json!({"job": "examples.hello", "args": {"name": "once"}, "idempotency_key": "k"});
    let calls = (0..100).map(|_| {
        let (server, ada, body) = (server.clone(), ada.clone(), body.clone());
        tokio::spawn(async move { server.call(Method::POST, "/v1/jobs", &ada, Some(body)).await })
    });
    let mut created = 0;
    let mut ids = HashSet::new();
    for call in calls {
        let (status, job) = call.await.unwrap();
        assert!(status == StatusCode::ACCEPTED || status == StatusCode::OK, "{status} {job}");
        created += usize::from(status == StatusCode::ACCEPTED);
        ids.insert(job["id"].as_str().unwrap().to_string());
    }
    assert_eq!((created, ids.len()), (1, 1));
    let id = ids.into_iter().next().unwrap();
    wait_state(&server, &ada, &id, "completed").await;
    let (_, list) = server.call(Method::GET, "/v1/jobs?job=examples.hello", &ada, None).await;
    assert_eq!(list["total"], 1, "{list}");
}

/// A journal without gaps, whose every step leaves the state the previous one
/// entered and whose last step is the job's state.
fn assert_journal_consistent(job: &Value) {
    let events = job["events"].as_array().unwrap();
    let mut state = Value::Null;
    for (i, event) in events.iter().enumerate() {
        assert_eq!((event["seq"].as_u64(), &event["from"]), (Some(i as u64 + 1), &state), "{job}");
        state = event["state"].clone();
    }
    assert_eq!(state, job["state"], "{job}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_cancel_retry_and_remove_of_one_job_leave_it_consistent() {
    let server = Arc::new(TestServer::start().await);
    let ops = server.token("acme", "ops", Role::Operator).await;
    for round in 0..10 {
        let sleep = json!({"job": "examples.sleep", "args": {"seconds": 0.2, "steps": 2}});
        let id = enqueue(&server, &ops, sleep).await;
        if round % 2 == 1 {
            wait_state(&server, &ops, &id, "running").await;
        }
        let actions = [
            (Method::POST, format!("/v1/jobs/{id}/cancel")),
            (Method::POST, format!("/v1/jobs/{id}/retry")),
            (Method::DELETE, format!("/v1/jobs/{id}")),
            (Method::POST, format!("/v1/jobs/{id}/cancel")),
        ];
        let calls: Vec<_> = actions
            .into_iter()
            .map(|(method, path)| {
                let (server, ops) = (server.clone(), ops.clone());
                tokio::spawn(async move { server.call(method, &path, &ops, None).await })
            })
            .collect();
        let mut answers = Vec::new();
        for call in calls {
            let (status, body) = call.await.unwrap();
            assert!(status.is_success() || status.is_client_error(), "{status} {body}");
            answers.push((status, body));
        }
        let path = format!("/v1/jobs/{id}");
        let (status, job) = server.call(Method::GET, &path, &ops, None).await;
        if answers[2].0 == StatusCode::NO_CONTENT {
            assert_eq!(status, StatusCode::NOT_FOUND, "a removed job is gone: {job}");
        } else {
            assert_eq!(status, StatusCode::OK, "{job}");
            assert_journal_consistent(&wait_state(&server, &ops, &id, "cancelled").await);
        }
        if answers[1].0 == StatusCode::ACCEPTED {
            let copy = answers[1].1["id"].as_str().unwrap();
            let (status, job) =
                server.call(Method::GET, &format!("/v1/jobs/{copy}"), &ops, None).await;
            assert_eq!(status, StatusCode::OK, "a retry is a job of its own: {job}");
            assert_journal_consistent(&job);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_host_on_one_data_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let first = Host::start(test_config(dir.path())).await.unwrap();
    let error = Host::start(test_config(dir.path())).await.unwrap_err();
    let message = format!("{error:#}");
    assert!(message.contains("jobhost.redb") && message.contains("already open"), "{message}");
    drop(first);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_data_file_is_refused_and_left_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("jobhost.redb");
    let foreign = b"SQLite format 3\0 this is somebody else's data".repeat(200);
    std::fs::write(&file, &foreign).unwrap();
    let error = Host::start(test_config(dir.path())).await.unwrap_err();
    let message = format!("{error:#}");
    assert!(
        message.contains("jobhost.redb") && message.contains("Not a redb database"),
        "{message}"
    );
    assert!(std::fs::read(&file).unwrap() == foreign, "the file is not overwritten");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_programs_redb_file_is_refused_and_left_as_it_was() {
    const THEIRS: redb::TableDefinition<&str, u64> = redb::TableDefinition::new("accounts");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("jobhost.redb");
    {
        let db = redb::Database::create(&file).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(THEIRS).unwrap().insert("alice", 10).unwrap();
        txn.commit().unwrap();
    }
    let error = Host::start(test_config(dir.path())).await.unwrap_err();
    let message = format!("{error:#}");
    assert!(
        message.contains("not a jobhost database") && message.contains("accounts"),
        "{message}"
    );
    // redb itself rewrites its header on open, so compare what they stored.
    let db = redb::Database::open(&file).unwrap();
    let txn = db.begin_read().unwrap();
    let tables: Vec<String> = txn.list_tables().unwrap().map(|t| t.name().to_string()).collect();
    assert_eq!(tables, ["accounts"], "no table of ours was added");
    assert_eq!(txn.open_table(THEIRS).unwrap().get("alice").unwrap().map(|v| v.value()), Some(10));
}
