//! What clients of the four systems jobhost replaces (core4, Tethys,
//! Django-MOJO, CNaaS-NMS) do, over real HTTP, with two users of one tenant
//! and a second tenant where isolation is involved.

use jobhost::jobs::Role;
use jobhost_tests::server::{ADMIN, TestServer, enqueue, error_message, wait_state};
use reqwest::{Method, StatusCode};
use serde_json::json;

/// Two submitters and a viewer of `acme`, a submitter of `globex`.
struct People {
    ada: String,
    bob: String,
    viewer: String,
    gus: String,
}

async fn people(server: &TestServer) -> People {
    People {
        ada: server.token("acme", "ada", Role::Submitter).await,
        bob: server.token("acme", "bob", Role::Submitter).await,
        viewer: server.token("acme", "vera", Role::Viewer).await,
        gus: server.token("globex", "gus", Role::Submitter).await,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_learns_the_job_at_once_and_gets_every_event_to_close() {
    let server = TestServer::start().await;
    let p = people(&server).await;
    for (args, lines) in [
        (json!({"seconds": 0.5, "steps": 10_000}), 10_000),
        (json!({"seconds": 0, "steps": 100_000}), 10_001),
    ] {
        let response = server
            .request(Method::POST, "/v1/jobs?follow=true", &p.ada)
            .json(&json!({"job": "examples.sleep", "args": args}))
            .send()
            .await
            .unwrap();
        let id = response.headers()["job-id"].to_str().unwrap().to_string();
        assert_eq!(response.headers()["location"], format!("/v1/jobs/{id}").as_str());
        let events = TestServer::read_events(response).await;
        assert_eq!(events.last().unwrap().event, "close", "the stream ends with close");
        assert!(events.iter().all(|e| e.data["job"] == id.as_str()), "every event names the job");
        let logs: Vec<u64> = events
            .iter()
            .filter(|e| e.event == "log")
            .map(|e| e.data["seq"].as_u64().unwrap())
            .collect();
        assert_eq!(logs, (1..=lines).collect::<Vec<u64>>(), "every line, in order");
        let states: Vec<&str> = events
            .iter()
            .filter(|e| e.event == "state")
            .filter_map(|e| e.data["state"].as_str())
            .collect();
        assert_eq!(states.last(), Some(&"completed"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submitter_sees_its_own_jobs_and_not_the_tenants_figures() {
    let server = TestServer::start().await;
    let p = people(&server).await;
    for path in ["/v1/queues", "/v1/queues/default", "/v1/stats", "/v1/locks"] {
        let (status, body) = server.call(Method::GET, path, &p.ada, None).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {body}");
        let (status, body) = server.call(Method::GET, path, &p.viewer, None).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labels_change_after_enqueue_and_viewers_list_by_owner() {
    let server = TestServer::start().await;
    let p = people(&server).await;
    let hello = |name: &str| json!({"job": "examples.hello", "args": {"name": name}, "metadata": {"keep": 1, "drop": 2}});
    let mine = enqueue(&server, &p.ada, hello("ada")).await;
    let theirs = enqueue(&server, &p.bob, hello("bob")).await;
    let change = json!({"name": "monthly", "description": "the report", "tags": ["q4"], "metadata": {"drop": null, "new": "x"}});
    let path = format!("/v1/jobs/{mine}");
    let (status, job) = server.call(Method::PATCH, &path, &p.ada, Some(change.clone())).await;
    assert_eq!(status, StatusCode::OK, "{job}");
    assert_eq!(
        (job["name"].as_str(), job["description"].as_str()),
        (Some("monthly"), Some("the report"))
    );
    assert_eq!(job["tags"], json!(["q4"]));
    assert_eq!(job["metadata"], json!({"keep": 1, "new": "x"}));
    let (status, _) =
        server.call(Method::PATCH, &format!("/v1/jobs/{theirs}"), &p.ada, Some(change)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "another submitter's job");
    let (status, body) =
        server.call(Method::PATCH, &path, &p.ada, Some(json!({"name": "n".repeat(10_000)}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    let (status, page) = server.call(Method::GET, "/v1/jobs?owner=bob", &p.viewer, None).await;
    assert_eq!(status, StatusCode::OK);
    let owners: Vec<&str> =
        page["jobs"].as_array().unwrap().iter().map(|j| j["owner"].as_str().unwrap()).collect();
    assert_eq!(owners, ["bob"]);
    let (status, _) = server.call(Method::GET, "/v1/jobs?owner=bob", &p.ada, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a submitter lists its own jobs only");
    let (_, page) = server.call(Method::GET, "/v1/jobs?owner=bob", &p.gus, None).await;
    assert!(page.get("jobs").is_none(), "{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn times_may_be_rfc3339_wherever_milliseconds_are() {
    let server = TestServer::start().await;
    let p = people(&server).await;
    let body = json!({"job": "examples.hello", "args": {"name": "later"},
                      "run_at": "2099-01-01T00:00:00Z", "expires_at": "2099-01-02T00:00:00+00:00"});
    let id = enqueue(&server, &p.ada, body).await;
    let (_, job) = server.call(Method::GET, &format!("/v1/jobs/{id}"), &p.ada, None).await;
    assert_eq!(job["state"], "scheduled");
    assert_eq!(job["run_at"], 4_070_908_800_000u64);
    assert_eq!(job["expires_at"], 4_070_995_200_000u64);
    let (status, page) =
        server.call(Method::GET, "/v1/jobs?since=2020-01-01T00:00:00Z", &p.ada, None).await;
    assert_eq!((status, page["total"].as_u64()), (StatusCode::OK, Some(1)));
    let (status, page) =
        server.call(Method::GET, "/v1/jobs?since=2098-01-01T00:00:00Z", &p.ada, None).await;
    assert_eq!((status, page["total"].as_u64()), (StatusCode::OK, Some(0)));
    let bad = json!({"job": "examples.hello", "run_at": "next tuesday"});
    let (status, body) = server.call(Method::POST, "/v1/jobs", &p.ada, Some(bad)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(error_message(&body).contains("RFC 3339"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_queue_answers_its_health() {
    let server = TestServer::start().await;
    let p = people(&server).await;
    let id = enqueue(
        &server,
        &p.ada,
        json!({"job": "examples.hello", "args": {"name": "q"}, "queue": "reports"}),
    )
    .await;
    wait_state(&server, &p.ada, &id, "completed").await;
    let (status, queue) = server.call(Method::GET, "/v1/queues/reports", &p.viewer, None).await;
    assert_eq!(status, StatusCode::OK, "{queue}");
    assert_eq!(
        (queue["queue"].as_str(), &queue["counts"]["completed"]),
        (Some("reports"), &json!(1))
    );
    let (status, empty) = server.call(Method::GET, "/v1/queues/idle", &p.viewer, None).await;
    assert_eq!((status, &empty["counts"]), (StatusCode::OK, &json!({})));
    let (_, other) = server.call(Method::GET, "/v1/queues/reports", ADMIN, None).await;
    assert_eq!(other["counts"], json!({}), "another tenant's queue of the same name is its own");
}
