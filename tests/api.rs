//! The HTTP API end to end: a real server on a loopback port, real HTTP,
//! real plugins, a real redb file. Walks the seed workflows.

use jobhost::jobs::Role;
use jobhost_tests::eventually;
use jobhost_tests::server::{
    ADMIN, SseEvent, TestServer, enqueue, error_code, error_message, wait_state, workers,
};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

async fn follow(
    server: &TestServer,
    token: &str,
    id: &str,
    last_event_id: Option<&str>,
) -> Vec<SseEvent> {
    let mut request = server.request(Method::GET, &format!("/v1/jobs/{id}/events"), token);
    if let Some(last) = last_event_id {
        request = request.header("Last-Event-ID", last);
    }
    TestServer::read_events(request.send().await.unwrap()).await
}

fn states(events: &[SseEvent]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e.event == "state")
        .map(|e| e.data["state"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_needs_no_token_and_everything_else_does() {
    let server = TestServer::start().await;
    let (status, body) = server.call(Method::GET, "/v1/health", "", None).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"status": "ok"})));
    let (status, body) = server.call(Method::GET, "/v1/jobs", "wrong", None).await;
    assert_eq!((status, error_code(&body)), (StatusCode::UNAUTHORIZED, "unauthorized"));
    let basic = server
        .request(Method::GET, "/v1/jobs", "")
        .basic_auth("script", Some(ADMIN))
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), StatusCode::OK, "basic auth with the token as password");
    let (status, body) = server.call(Method::GET, "/v1/nowhere", ADMIN, None).await;
    assert_eq!((status, error_code(&body)), (StatusCode::NOT_FOUND, "not_found"));
}

/// What an operator reads in `/proc/PID/status`: a host runs its process
/// on small pages (why: `small_pages_only` in host/src/host.rs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_runs_its_process_without_transparent_huge_pages() {
    let _server = TestServer::start().await;
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let thp = status.lines().find(|l| l.starts_with("THP_enabled:"));
    assert_eq!(thp.map(|l| l.split_whitespace().nth(1)), Some(Some("0")), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_workflow_from_job_types_to_an_empty_queue() {
    let server = TestServer::start().await;
    let token = server.token("seed", "ada", Role::Operator).await;

    // List job types.
    let (status, plugins) = server.call(Method::GET, "/v1/plugins", &token, None).await;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<&str> = plugins["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"examples.hello") && names.contains(&"examples.sleep"), "{names:?}");

    // Enqueue with follow: state, log and close events.
    let response = server
        .request(Method::POST, "/v1/jobs?follow=true", &token)
        .json(&json!({"job": "examples.hello", "args": {"name": "Ada"}}))
        .send()
        .await
        .unwrap();
    let events = TestServer::read_events(response).await;
    assert_eq!(states(&events), ["pending", "running", "completed"]);
    assert!(
        events.iter().any(|e| e.event == "log" && e.data["message"] == "greeting Ada"),
        "{events:?}"
    );
    assert_eq!(events.last().unwrap().event, "close");

    // Details of a past job.
    let (_, page) = server.call(Method::GET, "/v1/jobs?state=completed", &token, None).await;
    assert_eq!(page["total"], 1);
    let hello_id = page["jobs"][0]["id"].as_str().unwrap().to_string();
    let (_, details) =
        server.call(Method::GET, &format!("/v1/jobs/{hello_id}"), &token, None).await;
    assert_eq!(details["result"], json!({"greeting": "Hello, Ada!"}));
    assert_eq!(details["events"].as_array().unwrap().len(), 3);
    assert!(details["fuel_used"].as_u64().unwrap() > 0);

    // A current job, in the queue listing; kill it.
    let id = enqueue(
        &server,
        &token,
        json!({"job": "examples.sleep", "args": {"seconds": 30, "steps": 300}}),
    )
    .await;
    wait_state(&server, &token, &id, "running").await;
    let (_, running) = server.call(Method::GET, "/v1/jobs?state=running", &token, None).await;
    assert_eq!(running["jobs"][0]["id"], id.as_str());
    let (status, _) =
        server.call(Method::POST, &format!("/v1/jobs/{id}/cancel"), &token, None).await;
    assert_eq!(status, StatusCode::OK);
    let killed = wait_state(&server, &token, &id, "cancelled").await;
    assert_eq!(killed["error"]["kind"], "cancelled");

    // Restart: a new id, the old job journaled and linked.
    let (status, restarted) =
        server.call(Method::POST, &format!("/v1/jobs/{id}/retry"), &token, None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{restarted}");
    let new_id = restarted["id"].as_str().unwrap().to_string();
    assert_ne!(new_id, id);
    assert_eq!(restarted["retry_of"], id.as_str());
    let (_, old) = server.call(Method::GET, &format!("/v1/jobs/{id}"), &token, None).await;
    assert_eq!(old["retried_by"], new_id.as_str());
    let last_reason = old["events"].as_array().unwrap().last().unwrap()["reason"].clone();
    assert_eq!(last_reason, format!("retried as {new_id}"));

    // Follow the restarted job's log while it runs, then kill and remove it.
    wait_state(&server, &token, &new_id, "running").await;
    let logs = eventually("the restarted job logs", || async {
        let (_, logs) =
            server.call(Method::GET, &format!("/v1/jobs/{new_id}/logs"), &token, None).await;
        (!logs["logs"].as_array().unwrap().is_empty()).then_some(logs)
    })
    .await;
    assert_eq!(logs["logs"][0]["message"], "step 1 of 300");
    let (status, body) =
        server.call(Method::DELETE, &format!("/v1/jobs/{new_id}"), &token, None).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::CONFLICT, "conflict"),
        "a running job is not removed"
    );
    server.call(Method::POST, &format!("/v1/jobs/{new_id}/cancel"), &token, None).await;
    wait_state(&server, &token, &new_id, "cancelled").await;
    for job in [&new_id, &id, &hello_id] {
        let (status, _) =
            server.call(Method::DELETE, &format!("/v1/jobs/{job}"), &token, None).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
    }

    // The queue is empty.
    let (_, all) = server.call(Method::GET, "/v1/jobs", &token, None).await;
    assert_eq!(all["total"], 0, "{all}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn following_a_finished_job_replays_it_and_last_event_id_resumes() {
    let server = TestServer::start().await;
    let token = server.token("replay", "ada", Role::Operator).await;
    let id = enqueue(
        &server,
        &token,
        json!({"job": "examples.sleep", "args": {"seconds": 0.1, "steps": 2}}),
    )
    .await;
    wait_state(&server, &token, &id, "completed").await;
    let all = follow(&server, &token, &id, None).await;
    let with_ids: Vec<&SseEvent> = all.iter().filter(|e| e.id.is_some()).collect();
    assert_eq!(with_ids.len(), 5, "3 states and 2 log lines: {all:?}");
    let resumed = follow(&server, &token, &id, with_ids[1].id.as_deref()).await;
    let resumed_ids: Vec<_> = resumed.iter().filter_map(|e| e.id.clone()).collect();
    let expected: Vec<_> = with_ids[2..].iter().map(|e| e.id.clone().unwrap()).collect();
    assert_eq!(resumed_ids, expected, "nothing lost, nothing repeated");
    let (status, body) = server
        .request(Method::GET, &format!("/v1/jobs/{id}/events"), &token)
        .header("Last-Event-ID", "yesterday")
        .send()
        .await
        .map(|r| (r.status(), r))
        .unwrap();
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let body: Value = body.json().await.unwrap();
    assert!(error_message(&body).contains("Last-Event-ID"));

    let path = format!("/v1/jobs/{id}/events?logs=false");
    let quiet = server.request(Method::GET, &path, &token).send().await.unwrap();
    let quiet = TestServer::read_events(quiet).await;
    let names: Vec<&str> = quiet.iter().map(|e| e.event.as_str()).collect();
    let expected = ["state", "state", "state", "progress", "close"];
    assert_eq!(names, expected, "no log lines, and the final progress: {quiet:?}");
    assert_eq!(quiet[3].data["percent"], 100.0);
    let path = format!("/v1/jobs/{id}/events?logs=maybe");
    let (status, body) = server.call(Method::GET, &path, &token, None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(error_message(&body).contains("logs"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_returns_the_same_job() {
    let server = TestServer::start().await;
    let token = server.token("idem", "ada", Role::Submitter).await;
    let body =
        json!({"job": "examples.hello", "args": {"name": "once"}, "idempotency_key": "order-42"});
    let first = enqueue(&server, &token, body.clone()).await;
    let (status, again) = server.call(Method::POST, "/v1/jobs", &token, Some(body)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again["id"], first.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_are_uploaded_checked_and_private_to_their_tenant() {
    let server = TestServer::start().await;
    let acme = server.token("acme", "ops", Role::Operator).await;
    let globex = server.token("globex", "ops", Role::Operator).await;
    let hello = std::fs::read(jobhost_plugin_artifacts::HELLO).unwrap();

    let upload = |token: &str, name: &str, bytes: Vec<u8>| {
        server.request(Method::POST, &format!("/v1/plugins/{name}"), token).body(bytes).send()
    };
    let created = upload(&acme, "acme.greeter", hello.clone()).await.unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let created: Value = created.json().await.unwrap();
    assert_eq!(
        (created["name"].clone(), created["shared"].clone()),
        (json!("acme.greeter"), json!(false))
    );
    assert_eq!(created["uploader"], "ops");

    let refused = upload(&acme, "acme.junk", b"not wasm".to_vec()).await.unwrap();
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let refused: Value = refused.json().await.unwrap();
    assert!(error_message(&refused).contains("not a WebAssembly binary"), "{refused}");
    let command = std::fs::read(jobhost_plugin_artifacts::COMMAND).unwrap();
    let wrong: Value = upload(&acme, "acme.command", command).await.unwrap().json().await.unwrap();
    assert!(error_message(&wrong).contains("jobhost:plugin/job"), "{wrong}");
    let bad_name = upload(&acme, "Acme", hello.clone()).await.unwrap();
    assert_eq!(bad_name.status(), StatusCode::BAD_REQUEST);

    let id = enqueue(&server, &acme, json!({"job": "acme.greeter", "args": {"name": "own"}})).await;
    assert_eq!(
        wait_state(&server, &acme, &id, "completed").await["result"],
        json!({"greeting": "Hello, own!"})
    );
    let (status, body) = server.call(Method::GET, "/v1/plugins/acme.greeter", &globex, None).await;
    assert_eq!((status, error_code(&body)), (StatusCode::NOT_FOUND, "not_found"));
    let (status, _) =
        server.call(Method::POST, "/v1/jobs", &globex, Some(json!({"job": "acme.greeter"}))).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "another tenant's plugin does not exist");

    let (status, _) = server.call(Method::DELETE, "/v1/plugins/acme.greeter", &acme, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = server.call(Method::GET, "/v1/plugins/acme.greeter", &acme, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_tenants_jobs_do_not_exist() {
    let server = TestServer::start().await;
    let a = server.token("tenant-a", "a", Role::Operator).await;
    let b = server.token("tenant-b", "b", Role::Operator).await;
    let id = enqueue(
        &server,
        &a,
        json!({"job": "examples.sleep", "args": {"seconds": 30, "steps": 300}}),
    )
    .await;
    for (method, path) in [
        (Method::GET, format!("/v1/jobs/{id}")),
        (Method::GET, format!("/v1/jobs/{id}/events")),
        (Method::GET, format!("/v1/jobs/{id}/logs")),
        (Method::POST, format!("/v1/jobs/{id}/cancel")),
        (Method::POST, format!("/v1/jobs/{id}/retry")),
        (Method::DELETE, format!("/v1/jobs/{id}")),
    ] {
        let (status, body) = server.call(method.clone(), &path, &b, None).await;
        assert_eq!(
            (status, error_code(&body)),
            (StatusCode::NOT_FOUND, "not_found"),
            "{method} {path}"
        );
    }
    let (_, listed) = server.call(Method::GET, "/v1/jobs", &b, None).await;
    assert_eq!(listed["total"], 0);
    let (_, own) = server.call(Method::POST, &format!("/v1/jobs/{id}/cancel"), &a, None).await;
    assert_eq!(own["id"], id.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submitter_sees_only_its_own_jobs_and_a_viewer_cannot_enqueue() {
    let server = TestServer::start().await;
    let ada = server.token("shop", "ada", Role::Submitter).await;
    let bob = server.token("shop", "bob", Role::Submitter).await;
    let viewer = server.token("shop", "eve", Role::Viewer).await;
    let id =
        enqueue(&server, &ada, json!({"job": "examples.hello", "args": {"name": "mine"}})).await;
    let (status, _) = server.call(Method::GET, &format!("/v1/jobs/{id}"), &bob, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = server.call(Method::GET, &format!("/v1/jobs/{id}"), &viewer, None).await;
    assert_eq!(status, StatusCode::OK, "a viewer sees the tenant's jobs");
    let (status, body) = server
        .call(Method::POST, "/v1/jobs", &viewer, Some(json!({"job": "examples.hello"})))
        .await;
    assert_eq!((status, error_code(&body)), (StatusCode::FORBIDDEN, "forbidden"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_a_status_and_a_message_that_names_the_problem() {
    let server = TestServer::start().await;
    let token = server.token("errors", "ada", Role::Operator).await;
    let cases = [
        (json!({"job": "examples.hello", "prority": 3}), StatusCode::BAD_REQUEST, "prority"),
        (json!({"args": {}}), StatusCode::BAD_REQUEST, "job"),
        (json!({"job": "examples.nothing"}), StatusCode::NOT_FOUND, "examples.nothing"),
        (
            json!({"job": "examples.hello", "delay_ms": 5, "run_at": 5}),
            StatusCode::BAD_REQUEST,
            "delay_ms",
        ),
        (
            json!({"job": "examples.hello", "limits": {"memory_bytes": 1u64 << 40}}),
            StatusCode::BAD_REQUEST,
            "limits.memory_bytes",
        ),
        (json!({"job": "examples.hello", "limits": {"fule": 1}}), StatusCode::BAD_REQUEST, "fule"),
        (json!({"job": "examples.hello", "queue": "no spaces"}), StatusCode::BAD_REQUEST, "queue"),
        (
            json!({"job": "examples.hello", "args": {"name": "x".repeat(1 << 20)}}),
            StatusCode::PAYLOAD_TOO_LARGE,
            "args",
        ),
    ];
    for (body, status, named) in cases {
        let (got, answer) = server.call(Method::POST, "/v1/jobs", &token, Some(body.clone())).await;
        assert_eq!(got, status, "{answer}");
        assert!(error_message(&answer).contains(named), "{named}: {answer}");
    }
    // A body declared over the limit is refused before a byte of it is
    // read, and the connection closed.
    let address = server.base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let head = format!(
        "POST /v1/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        3 << 20
    );
    tokio::io::AsyncWriteExt::write_all(&mut stream, head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut answer);
    tokio::time::timeout(std::time::Duration::from_secs(30), read).await.unwrap().unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    let (status, _) = server.call(Method::GET, "/v1/jobs?per_page=0", &token, None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = server.call(Method::GET, "/v1/jobs/not-a-uuid", &token, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delayed_job_and_a_clone_with_new_args() {
    let server = TestServer::start().await;
    let token = server.token("later", "ada", Role::Operator).await;
    let (_, delayed) = server
        .call(
            Method::POST,
            "/v1/jobs",
            &token,
            Some(json!({"job": "examples.hello", "args": {"name": "soon"}, "delay_ms": 300})),
        )
        .await;
    assert_eq!(delayed["state"], "scheduled");
    let id = delayed["id"].as_str().unwrap();
    let done = wait_state(&server, &token, id, "completed").await;
    assert!(done["started_at"].as_u64().unwrap() >= delayed["run_at"].as_u64().unwrap());
    let (status, copy) = server
        .call(
            Method::POST,
            &format!("/v1/jobs/{id}/clone"),
            &token,
            Some(json!({"args": {"name": "copy"}})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let copy_id = copy["id"].as_str().unwrap();
    let copied = wait_state(&server, &token, copy_id, "completed").await;
    assert_eq!(copied["result"], json!({"greeting": "Hello, copy!"}));
    assert_eq!(copied["cloned_from"], id, "a clone names its original");
    assert!(copied["memory_peak"].as_u64().unwrap() > 0, "the memory it used: {copied}");
    let (_, clones) =
        server.call(Method::GET, &format!("/v1/jobs?cloned_from={id}"), &token, None).await;
    let ids: Vec<&str> =
        clones["jobs"].as_array().unwrap().iter().map(|j| j["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [copy_id], "the original's clones: {clones}");
    let (status, _) = server.call(Method::GET, "/v1/jobs?cloned_from=nope", &token, None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queues_pause_and_resume_per_tenant_and_report_health() {
    let server = TestServer::start().await;
    let a = server.token("qa", "ops", Role::Operator).await;
    let b = server.token("qb", "ops", Role::Operator).await;
    let (status, paused) = server.call(Method::POST, "/v1/queues/reports/pause", &a, None).await;
    assert_eq!((status, paused["paused"].clone()), (StatusCode::OK, json!(true)));
    let hello = json!({"job": "examples.hello", "args": {"name": "q"}, "queue": "reports"});
    let held = enqueue(&server, &a, hello.clone()).await;
    let other = enqueue(&server, &b, hello).await;
    wait_state(&server, &b, &other, "completed").await;
    let (_, job) = server.call(Method::GET, &format!("/v1/jobs/{held}"), &a, None).await;
    assert_eq!(
        (job["state"].clone(), job["queue"].clone()),
        (json!("pending"), json!("reports")),
        "B's queue is its own"
    );

    let (_, health) = server.call(Method::GET, "/v1/queues", &a, None).await;
    let reports = &health["queues"][0];
    assert_eq!(reports["queue"], "reports");
    assert_eq!(reports["counts"]["pending"], 1);
    assert!(
        reports["alerts"].as_array().unwrap().iter().any(|a| a == "paused with jobs waiting"),
        "{reports}"
    );

    server.call(Method::POST, "/v1/queues/reports/resume", &a, None).await;
    wait_state(&server, &a, &held, "completed").await;
    let (_, health) = server.call(Method::GET, "/v1/queues", &a, None).await;
    assert_eq!(health["queues"][0]["success_rate"], 1.0);
    let (status, body) = server
        .call(Method::PATCH, "/v1/queues/reports", &a, Some(json!({"concurrency": "many"})))
        .await;
    assert_eq!((status, error_code(&body)), (StatusCode::BAD_REQUEST, "bad_request"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_named_lock_is_held_listed_and_cleared_by_hand() {
    let server = TestServer::start().await;
    let token = server.token("locks", "ops", Role::Operator).await;
    let sleeper =
        json!({"job": "examples.sleep", "args": {"seconds": 30, "steps": 300}, "lock": "devices"});
    let holder = enqueue(&server, &token, sleeper.clone()).await;
    wait_state(&server, &token, &holder, "running").await;
    let waiter = enqueue(
        &server,
        &token,
        json!({"job": "examples.hello", "args": {"name": "l"}, "lock": "devices"}),
    )
    .await;
    let (_, locks) = server.call(Method::GET, "/v1/locks", &token, None).await;
    assert_eq!(locks["locks"], json!([{"name": "devices", "job": holder}]));
    let (_, job) = server.call(Method::GET, &format!("/v1/jobs/{waiter}"), &token, None).await;
    assert_eq!(job["state"], "pending", "waits while the lock is held");

    let (status, _) = server.call(Method::DELETE, "/v1/locks/devices", &token, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    wait_state(&server, &token, &waiter, "completed").await;
    let (status, body) = server.call(Method::DELETE, "/v1/locks/devices", &token, None).await;
    assert_eq!((status, error_code(&body)), (StatusCode::NOT_FOUND, "not_found"));
    server.call(Method::POST, &format!("/v1/jobs/{holder}/cancel"), &token, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_are_listed_and_only_admins_change_them() {
    let server = TestServer::start().await;
    let operator = server.token("w", "ops", Role::Operator).await;
    let workers = workers(&server, &operator).await;
    let id = workers[0]["id"].as_str().unwrap();
    assert_eq!(workers[0]["slots"], 64);
    let (status, _) =
        server.call(Method::POST, &format!("/v1/workers/{id}/drain"), &operator, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, worker) =
        server.call(Method::POST, &format!("/v1/workers/{id}/drain"), ADMIN, None).await;
    assert_eq!((status, worker["mode"].clone()), (StatusCode::OK, json!("draining")));
    let (status, _) =
        server.call(Method::POST, &format!("/v1/workers/{id}/explode"), ADMIN, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_describes_every_route_the_server_serves() {
    let server = TestServer::start().await;
    let (status, doc) = server.call(Method::GET, "/v1/openapi.json", "", None).await;
    assert_eq!(status, StatusCode::OK, "no token needed");
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{doc}");
    let schemas = &doc["components"]["schemas"];
    assert!(schemas["JobRequest"]["properties"]["idempotency_key"].is_object(), "{schemas}");
    assert!(schemas["JobView"]["properties"]["fuel_used"].is_object());
    assert!(schemas["ErrorBody"].is_object());
    assert_eq!(doc["components"]["securitySchemes"]["token"]["scheme"], "bearer");

    let paths = doc["paths"].as_object().unwrap();
    for route in ["/v1/jobs", "/v1/jobs/{id}/events", "/v1/tenants/{name}", "/metrics"] {
        assert!(paths.contains_key(route), "{route} is documented");
    }
    // Every documented path and method is served: none is an unknown route
    // or a method the router does not take.
    let mut checked = 0;
    for (path, item) in paths {
        let concrete =
            path.replace("{id}", "x").replace("{name}", "x").replace("{action}", "pause");
        for method in item.as_object().unwrap().keys() {
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let (status, body) = server.call(method.clone(), &concrete, ADMIN, None).await;
            assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}: {body}");
            let unknown =
                status == StatusCode::NOT_FOUND && error_message(&body) == "route not found";
            assert!(!unknown, "{method} {path} is documented but not served");
            checked += 1;
        }
    }
    assert!(checked >= 30, "only {checked} operations documented");
}

/// A webhook receiver on 127.0.0.1:0 that answers with `statuses` in turn
/// (then 200) and passes on every body it gets.
async fn webhook_receiver(
    statuses: Vec<u16>,
) -> (String, tokio::sync::mpsc::UnboundedReceiver<Value>) {
    use axum::extract::State;
    use std::sync::{Arc, Mutex};
    type Receiver = (Mutex<Vec<u16>>, tokio::sync::mpsc::UnboundedSender<Value>);
    async fn receive(
        State(receiver): State<Arc<Receiver>>,
        axum::Json(body): axum::Json<Value>,
    ) -> axum::http::StatusCode {
        receiver.1.send(body).unwrap();
        let mut statuses = receiver.0.lock().unwrap();
        let status = if statuses.is_empty() { 200 } else { statuses.remove(0) };
        axum::http::StatusCode::from_u16(status).unwrap()
    }
    let (sender, bodies) = tokio::sync::mpsc::unbounded_channel();
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(Arc::new((Mutex::new(statuses), sender)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, bodies)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_job_is_posted_to_its_callback_url_retried_until_accepted() {
    let server = TestServer::start().await;
    let token = server.token("hooks", "ada", Role::Operator).await;
    let (url, mut bodies) = webhook_receiver(vec![500, 503]).await;
    let body = json!({"job": "examples.hello", "args": {"name": "hook"}, "callback_url": url});
    let id = enqueue(&server, &token, body).await;
    let mut received = Vec::new();
    for _ in 0..3 {
        let body = tokio::time::timeout(std::time::Duration::from_secs(30), bodies.recv())
            .await
            .expect("the webhook arrives, and is retried after a failure")
            .unwrap();
        received.push(body);
    }
    for body in &received {
        assert_eq!((body["id"].as_str(), &body["state"]), (Some(id.as_str()), &json!("completed")));
        assert_eq!(body["result"], json!({"greeting": "Hello, hook!"}));
    }
    // A 2xx answer takes the webhook off the outbox: nothing is due, ever.
    eventually("the delivered webhook leaves the outbox", || async {
        server.storage.due_callbacks(u64::MAX, 10).await.unwrap().is_empty().then_some(())
    })
    .await;
    assert!(bodies.try_recv().is_err(), "a 2xx answer ends the deliveries");
    let (_, job) = server.call(Method::GET, &format!("/v1/jobs/{id}"), &token, None).await;
    assert_eq!(
        (&job["webhook"]["state"], &job["webhook"]["attempts"], &job["webhook"]["error"]),
        (&json!("delivered"), &json!(3), &Value::Null),
        "{job}"
    );

    for bad in ["https://example.test/hook", "ftp://x/y", "not a url"] {
        let body = json!({"job": "examples.hello", "callback_url": bad});
        let (status, answer) = server.call(Method::POST, "/v1/jobs", &token, Some(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(error_message(&answer).contains("callback_url"), "{answer}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_is_given_up_after_its_last_attempt_and_the_job_says_so() {
    let server = TestServer::start_with(|config| {
        config.webhook_attempts = 3;
        config.webhook_backoff_ms = 50;
    })
    .await;
    let token = server.token("hooks", "ada", Role::Operator).await;
    let (url, mut bodies) = webhook_receiver(vec![500; 10]).await;
    let body = json!({"job": "examples.hello", "args": {"name": "never"}, "callback_url": url});
    let id = enqueue(&server, &token, body).await;
    for _ in 0..3 {
        assert_eq!(next_webhook(&mut bodies).await["id"], id.as_str());
    }
    let path = format!("/v1/jobs/{id}");
    let webhook = eventually("the job says its webhook was given up", || async {
        let (_, job) = server.call(Method::GET, &path, &token, None).await;
        (job["webhook"]["state"] == "given_up").then(|| job["webhook"].clone())
    })
    .await;
    assert_eq!(webhook["attempts"], 3, "{webhook}");
    assert_eq!(webhook["next_attempt_at"], Value::Null, "{webhook}");
    assert!(webhook["error"].as_str().unwrap().contains("500"), "{webhook}");
    assert!(server.storage.due_callbacks(u64::MAX, 10).await.unwrap().is_empty());
    assert!(bodies.try_recv().is_err(), "no attempt after the last");

    // A job that has not finished has no webhook status yet.
    server.call(Method::POST, "/v1/queues/held/pause", &token, None).await;
    let body = json!({"job": "examples.hello", "queue": "held", "callback_url": url});
    let held = enqueue(&server, &token, body).await;
    let (_, job) = server.call(Method::GET, &format!("/v1/jobs/{held}"), &token, None).await;
    assert_eq!(job["webhook"], Value::Null, "{job}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_of_a_removed_or_pruned_job_leaves_the_outbox_undelivered() {
    for pruned in [false, true] {
        let server = TestServer::start_with(|config| {
            config.webhook_backoff_ms = 5_000;
            if pruned {
                (config.retention_s, config.prune_every_s) = (1, 1);
            }
        })
        .await;
        let token = server.token("hooks", "ada", Role::Operator).await;
        let (url, mut bodies) = webhook_receiver(vec![500; 10]).await;
        let body = json!({"job": "examples.hello", "args": {"name": "gone"}, "callback_url": url});
        let id = enqueue(&server, &token, body).await;
        assert_eq!(next_webhook(&mut bodies).await["id"], id.as_str(), "the first try");
        let path = format!("/v1/jobs/{id}");
        if pruned {
            eventually("retention removes the finished job", || async {
                let (status, _) = server.call(Method::GET, &path, &token, None).await;
                (status == StatusCode::NOT_FOUND).then_some(())
            })
            .await;
        } else {
            let (status, answer) = server.call(Method::DELETE, &path, &token, None).await;
            assert!(status.is_success(), "{status} {answer}");
        }
        eventually("the webhook of a job that is gone leaves the outbox", || async {
            server.storage.due_callbacks(u64::MAX, 10).await.unwrap().is_empty().then_some(())
        })
        .await;
        assert!(
            bodies.try_recv().is_err(),
            "no delivery after the job was gone (pruned: {pruned})"
        );
    }
}

/// The next webhook the receiver got, within a minute.
async fn next_webhook(bodies: &mut tokio::sync::mpsc::UnboundedReceiver<Value>) -> Value {
    tokio::time::timeout(std::time::Duration::from_secs(60), bodies.recv())
        .await
        .expect("a webhook arrives")
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_come_for_failed_cancelled_and_expired_jobs_and_survive_a_restart() {
    let server = TestServer::start_with(|config| config.shutdown_grace_ms = 200).await;
    let token = server.token("hooks", "ada", Role::Operator).await;
    let (url, mut bodies) = webhook_receiver(vec![]).await;
    let failed = json!({"job": "examples.fail", "args": {"message": "no"}, "callback_url": url});
    let failed = enqueue(&server, &token, failed).await;
    let hook = next_webhook(&mut bodies).await;
    assert_eq!((hook["id"].as_str(), &hook["state"]), (Some(failed.as_str()), &json!("failed")));
    assert_eq!(hook["error"]["message"], "no");

    let long = json!({"job": "examples.sleep", "args": {"seconds": 120}, "callback_url": url});
    let cancelled = enqueue(&server, &token, long).await;
    wait_state(&server, &token, &cancelled, "running").await;
    server.call(Method::POST, &format!("/v1/jobs/{cancelled}/cancel"), &token, None).await;
    let hook = next_webhook(&mut bodies).await;
    assert_eq!(
        (hook["id"].as_str(), &hook["state"]),
        (Some(cancelled.as_str()), &json!("cancelled"))
    );

    server.call(Method::POST, "/v1/queues/held/pause", &token, None).await;
    let late = json!({"job": "examples.hello", "queue": "held", "expires_in_ms": 200, "callback_url": url});
    let expired = enqueue(&server, &token, late).await;
    let hook = next_webhook(&mut bodies).await;
    assert_eq!((hook["id"].as_str(), &hook["state"]), (Some(expired.as_str()), &json!("expired")));

    // A receiver that is down when the host stops gets the job from the
    // next host: the outbox row outlives the process.
    let (down, mut later) = webhook_receiver(vec![503]).await;
    let body = json!({"job": "examples.hello", "args": {"name": "later"}, "callback_url": down});
    let id = enqueue(&server, &token, body).await;
    let refused = next_webhook(&mut later).await;
    assert_eq!(refused["id"], id.as_str(), "the first try was answered 503");
    let server = server.restart().await;
    let delivered = next_webhook(&mut later).await;
    assert_eq!(
        (delivered["id"].as_str(), &delivered["state"]),
        (Some(id.as_str()), &json!("completed"))
    );
    eventually("the delivered webhook leaves the outbox", || async {
        server.storage.due_callbacks(u64::MAX, 10).await.unwrap().is_empty().then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callback_urls_to_internal_addresses_are_refused_unless_the_operator_allows_them() {
    let server = TestServer::start_with(|config| config.webhook_allow.clear()).await;
    let token = server.token("egress", "ada", Role::Operator).await;
    for (url, why) in [
        ("http://127.0.0.1:9/hook", "loopback"),
        ("http://2130706433/", "loopback"),
        ("http://localhost:8080/", "loopback"),
        ("http://[::1]/", "loopback"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://10.0.0.1/", "private"),
        ("http://[::ffff:192.168.1.1]/", "private"),
        ("http://[fd00:ec2::254]/", "unique local"),
        ("http://0/", "unspecified"),
    ] {
        let body = json!({"job": "examples.hello", "callback_url": url});
        let (status, answer) = server.call(Method::POST, "/v1/jobs", &token, Some(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{url}: {answer}");
        let message = error_message(&answer);
        assert!(message.contains(why) && message.contains("--webhook-allow"), "{url}: {message}");
    }
    let item = json!({"job": "examples.hello", "callback_url": "http://127.0.0.1:9/"});
    let (status, batch) =
        server.call(Method::POST, "/v1/jobs/batch", &token, Some(json!({"jobs": [item]}))).await;
    assert_eq!(status, StatusCode::OK, "{batch}");
    assert_eq!(batch["results"][0]["status"], 400, "{batch}");
    let (_, jobs) = server.call(Method::GET, "/v1/jobs", &token, None).await;
    assert_eq!(jobs["total"], 0, "nothing refused was stored: {jobs}");

    let allowed = TestServer::start_with(|config| {
        config.webhook_allow = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await;
    let token = allowed.token("egress", "ada", Role::Operator).await;
    let (url, mut bodies) = webhook_receiver(vec![]).await;
    let id = enqueue(&allowed, &token, json!({"job": "examples.hello", "callback_url": url})).await;
    let delivered = tokio::time::timeout(std::time::Duration::from_secs(60), bodies.recv())
        .await
        .expect("an allowed receiver gets the webhook")
        .unwrap();
    assert_eq!(delivered["id"], id.as_str());
    let body = json!({"job": "examples.hello", "callback_url": "http://127.0.0.2/"});
    let (status, answer) = allowed.call(Method::POST, "/v1/jobs", &token, Some(body)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "only the allowed range: {answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_job_is_retried_with_backoff_then_fails() {
    let server = TestServer::start().await;
    let token = server.token("retries", "ada", Role::Operator).await;
    let body = json!({
        "job": "examples.fail",
        "args": {"panic": true},
        "max_retries": 2,
        "backoff": {"base_ms": 200, "max_ms": 2000},
    });
    let id = enqueue(&server, &token, body).await;
    let job = wait_state(&server, &token, &id, "failed").await;
    assert_eq!(job["attempt"], 3, "{job}");
    assert_eq!(job["error"]["kind"], "trap", "a trap is retried by default");
    let events = job["events"].as_array().unwrap();
    let mut retries = 0;
    for (i, event) in events.iter().enumerate() {
        let reason = event["reason"].as_str().unwrap();
        let Some((_, delay)) = reason.split_once(" in ") else { continue };
        let delay: u64 = delay.trim_end_matches(" ms").parse().unwrap();
        let next_claim = events[i..].iter().find(|e| e["state"] == "running").unwrap();
        let waited = next_claim["at"].as_u64().unwrap() - event["at"].as_u64().unwrap();
        assert!(delay >= 100 && waited >= delay, "{reason}: ran again after {waited} ms");
        retries += 1;
    }
    assert_eq!(retries, 2, "{events:?}");
}
