//! The promise that nothing is lost or doubled, tried as a client would:
//! many clients racing on one idempotency key or on one job, and a data file
//! that is already in use or is not jobhost's.

use jobhost::host::Host;
use jobhost::jobs::Role;
use jobhost_tests::server::{SseEvent, TestServer, enqueue, test_config, wait_state};
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

/// The ids of `events` that carry one (state and log events).
fn cursor_ids(events: &[SseEvent]) -> Vec<String> {
    events.iter().filter_map(|e| e.id.clone()).collect()
}

async fn follow(server: &TestServer, token: &str, id: &str, last: Option<&str>) -> Vec<SseEvent> {
    let mut request = server.request(Method::GET, &format!("/v1/jobs/{id}/events"), token);
    if let Some(last) = last {
        request = request.header("Last-Event-ID", last);
    }
    TestServer::read_events(request.send().await.unwrap()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_jobs_tokens_and_stream_cursors_survive_a_restart() {
    let server = TestServer::start_with(|config| config.shutdown_grace_ms = 500).await;
    let ops = server.token("acme", "ops", Role::Operator).await;
    let hello = std::fs::read(jobhost_plugin_artifacts::HELLO).unwrap();
    let upload = server.request(Method::POST, "/v1/plugins/acme.greeter", &ops).body(hello);
    assert_eq!(upload.send().await.unwrap().status(), StatusCode::CREATED);
    let sleep = json!({"job": "examples.sleep", "args": {"seconds": 0.2, "steps": 4}});
    let done = enqueue(&server, &ops, sleep).await;
    wait_state(&server, &ops, &done, "completed").await;
    let before = cursor_ids(&follow(&server, &ops, &done, None).await);
    assert_eq!(before.len(), 7, "3 states and 4 log lines: {before:?}");
    server.call(Method::POST, "/v1/queues/held/pause", &ops, None).await;
    let held = json!({"job": "examples.hello", "queue": "held", "args": {"name": "later"}});
    let held = enqueue(&server, &ops, held).await;
    let long = json!({"job": "examples.sleep", "args": {"seconds": 120}});
    let running = enqueue(&server, &ops, long).await;
    wait_state(&server, &ops, &running, "running").await;

    let server = server.restart().await;
    let (status, plugin) = server.call(Method::GET, "/v1/plugins/acme.greeter", &ops, None).await;
    assert_eq!(status, StatusCode::OK, "the uploaded plugin is loaded again: {plugin}");
    let greet = json!({"job": "acme.greeter", "args": {"name": "again"}});
    let greeted = enqueue(&server, &ops, greet).await;
    let greeted = wait_state(&server, &ops, &greeted, "completed").await;
    assert_eq!(greeted["result"], json!({"greeting": "Hello, again!"}));

    let resumed = cursor_ids(&follow(&server, &ops, &done, Some(&before[2])).await);
    assert_eq!(resumed, before[3..], "Last-Event-ID resumes across a restart, nothing repeated");

    let (_, job) = server.call(Method::GET, &format!("/v1/jobs/{held}"), &ops, None).await;
    assert_eq!(job["state"], "pending", "a waiting job waits on: {job}");
    server.call(Method::POST, "/v1/queues/held/resume", &ops, None).await;
    wait_state(&server, &ops, &held, "completed").await;

    // The job that ran at the stop was handed back, not counted, and runs again.
    let again = wait_state(&server, &ops, &running, "running").await;
    let reasons: Vec<&str> =
        again["events"].as_array().unwrap().iter().map(|e| e["reason"].as_str().unwrap()).collect();
    assert!(reasons.iter().any(|r| r.contains("handed the job back")), "{reasons:?}");
    assert_eq!(again["attempt"], 1, "the handed-back run used no attempt: {again}");
    server.call(Method::POST, &format!("/v1/jobs/{running}/cancel"), &ops, None).await;
    wait_state(&server, &ops, &running, "cancelled").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_lock_holder_hands_the_lock_to_the_job_waiting_for_it() {
    let server = TestServer::start().await;
    let ops = server.token("acme", "ops", Role::Operator).await;
    let holder = json!({"job": "examples.sleep", "args": {"seconds": 120}, "lock": "report"});
    let holder = enqueue(&server, &ops, holder).await;
    wait_state(&server, &ops, &holder, "running").await;
    let waiter = json!({"job": "examples.hello", "args": {"name": "next"}, "lock": "report"});
    let waiter = enqueue(&server, &ops, waiter).await;
    let (_, locks) = server.call(Method::GET, "/v1/locks", &ops, None).await;
    assert_eq!(locks["locks"], json!([{"name": "report", "job": holder}]), "{locks}");
    let (_, job) = server.call(Method::GET, &format!("/v1/jobs/{waiter}"), &ops, None).await;
    assert_eq!(job["state"], "pending", "the waiter waits for the lock: {job}");

    server.call(Method::POST, &format!("/v1/jobs/{holder}/cancel"), &ops, None).await;
    wait_state(&server, &ops, &holder, "cancelled").await;
    let done = wait_state(&server, &ops, &waiter, "completed").await;
    assert_eq!(done["result"], json!({"greeting": "Hello, next!"}));
    let (_, locks) = server.call(Method::GET, "/v1/locks", &ops, None).await;
    assert_eq!(locks["locks"], json!([]), "{locks}");
}
