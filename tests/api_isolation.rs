//! What one user or tenant can do to another, tried as a client would over
//! real HTTP: idempotency keys that must not hand over someone else's job,
//! job errors that must not show the host's internals, metadata and labels
//! that must not grow without bound, bodies that must not hold connections,
//! and connection floods that must not shut other clients out.

use jobhost::jobs::{MAX_METADATA_BYTES, MAX_METADATA_KEYS, Role};
use jobhost_tests::server::{
    ADMIN, TestServer, enqueue, error_code, error_message, read_to_close, wait_state,
};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

async fn post_job(
    server: &TestServer,
    token: &str,
    path: &str,
    body: &Value,
) -> (StatusCode, Value) {
    let response = server.request(Method::POST, path, token).json(body).send().await.unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_never_hands_a_job_to_someone_who_may_not_see_it() {
    let server = TestServer::start().await;
    let ada = server.token("acme", "ada", Role::Submitter).await;
    let bob = server.token("acme", "bob", Role::Submitter).await;
    let ops = server.token("acme", "ops", Role::Operator).await;
    let globex = server.token("globex", "gus", Role::Submitter).await;
    let request = json!({
        "job": "examples.hello", "args": {"name": "Ada's secret"},
        "idempotency_key": "invoice-42", "metadata": {"account": "ada-private"}
    });

    let (status, first) = post_job(&server, &ada, "/v1/jobs", &request).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    let id = first["id"].as_str().unwrap().to_string();
    let (status, again) = post_job(&server, &ada, "/v1/jobs", &request).await;
    assert_eq!((status, again["id"].as_str()), (StatusCode::OK, Some(id.as_str())));
    assert!(again.get("fingerprint").is_none(), "internal fields stay inside: {again}");

    // Another submitter of the tenant: neither the job nor its stream.
    for path in ["/v1/jobs", "/v1/jobs?follow=true"] {
        let (status, body) = post_job(&server, &bob, path, &request).await;
        assert_eq!(status, StatusCode::CONFLICT, "{path}: {body}");
        let text = body.to_string();
        assert!(!text.contains("secret") && !text.contains("ada-private") && !text.contains(&id));
        assert!(error_message(&body).contains("invoice-42"), "{body}");
    }
    let (status, _) = server.call(Method::GET, &format!("/v1/jobs/{id}"), &bob, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The same key with other work is a conflict naming what differs.
    let mut other = request.clone();
    other["args"] = json!({"name": "Eve"});
    other["queue"] = json!("urgent");
    let (status, body) = post_job(&server, &ada, "/v1/jobs", &other).await;
    assert_eq!((status, error_code(&body)), (StatusCode::CONFLICT, "conflict"), "{body}");
    let message = error_message(&body);
    assert!(message.contains("args") && message.contains("queue"), "{message}");

    // Whoever sees every job of the tenant gets the job for the same request.
    let (status, seen) = post_job(&server, &ops, "/v1/jobs", &request).await;
    assert_eq!((status, seen["id"].as_str()), (StatusCode::OK, Some(id.as_str())));

    // Keys are per tenant: another tenant's same key is its own new job.
    let (status, theirs) = post_job(&server, &globex, "/v1/jobs", &request).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{theirs}");
    assert_ne!(theirs["id"].as_str(), Some(id.as_str()));
    wait_state(&server, &ada, &id, "completed").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_job_fails_with_its_own_message_not_the_hosts_stack() {
    let server = TestServer::start().await;
    let token = server.token("acme", "ada", Role::Submitter).await;
    let body =
        json!({"job": "examples.fail", "args": {"panic": true, "message": "mail server down"}});
    let id = enqueue(&server, &token, body).await;
    let job = wait_state(&server, &token, &id, "failed").await;
    let message = job["error"]["message"].as_str().unwrap();
    assert_eq!(job["error"]["kind"], "trap");
    assert!(
        message.starts_with("panicked at") && message.contains("mail server down"),
        "{message}"
    );
    assert!(message.lines().count() == 1 && message.len() < 300, "one line: {message}");
    for internal in ["backtrace", "jobhost::", "wasmtime", ".cargo", "/rustc/"] {
        assert!(!message.contains(internal), "{internal} in {message}");
    }
    let (_, logs) = server.call(Method::GET, &format!("/v1/jobs/{id}/logs"), &token, None).await;
    let lines: Vec<&str> =
        logs["logs"].as_array().unwrap().iter().map(|l| l["message"].as_str().unwrap()).collect();
    assert!(lines.iter().any(|l| l.starts_with("wasm backtrace")), "{lines:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_cannot_grow_its_metadata_or_overwrite_the_clients() {
    let server = TestServer::start().await;
    let token = server.token("acme", "ada", Role::Submitter).await;
    let other = server.token("globex", "gus", Role::Submitter).await;
    let body = json!({
        "job": "tests.memhog",
        "args": {"metadata_keys": 200, "metadata_bytes": 10_000},
        "metadata": {"key-1": "the client's"}
    });
    let id = enqueue(&server, &token, body).await;
    let hello =
        enqueue(&server, &other, json!({"job": "examples.hello", "args": {"name": "Gus"}})).await;
    let job = wait_state(&server, &token, &id, "completed").await;
    let set = job["result"]["metadata_set"].as_u64().unwrap() as usize;
    assert!(set <= MAX_METADATA_KEYS, "{set}");
    assert!(job["result"]["metadata_refused"].as_str().unwrap().contains("at most"), "{job}");
    assert_eq!(job["metadata"], json!({"key-1": "the client's"}), "the client's stays");
    let guest = job["plugin_metadata"].as_object().unwrap();
    let bytes: usize = guest.iter().map(|(k, v)| k.len() + v.to_string().len()).sum();
    assert!(!guest.is_empty() && bytes <= MAX_METADATA_BYTES, "{bytes}");
    wait_state(&server, &other, &hello, "completed").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labels_metadata_backoff_and_media_type_are_checked() {
    let server = TestServer::start().await;
    let token = server.token("acme", "ada", Role::Submitter).await;
    let hello = |extra: Value| {
        let mut body = json!({"job": "examples.hello"});
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        body
    };
    let many: serde_json::Map<String, Value> =
        (0..65).map(|i| (format!("k{i}"), json!(i))).collect();
    let cases = [
        (json!({"name": "n".repeat(10_000)}), StatusCode::BAD_REQUEST, "name"),
        (json!({"description": "d".repeat(5_000)}), StatusCode::BAD_REQUEST, "description"),
        (json!({"tags": vec!["t"; 33]}), StatusCode::BAD_REQUEST, "tags"),
        (json!({"metadata": many}), StatusCode::BAD_REQUEST, "metadata"),
        (
            json!({"metadata": {"blob": "x".repeat(100_000)}}),
            StatusCode::PAYLOAD_TOO_LARGE,
            "metadata",
        ),
        (
            json!({"backoff": {"base_ms": u64::MAX, "max_ms": u64::MAX}}),
            StatusCode::BAD_REQUEST,
            "backoff",
        ),
        (json!({"backoff": {"base_ms": 5000, "max_ms": 10}}), StatusCode::BAD_REQUEST, "backoff"),
    ];
    for (extra, status, field) in cases {
        let (got, body) = server.call(Method::POST, "/v1/jobs", &token, Some(hello(extra))).await;
        assert_eq!(got, status, "{field}: {body}");
        assert!(error_message(&body).contains(field), "{field}: {body}");
    }

    let json_text = r#"{"job":"examples.hello"}"#;
    for content_type in [Some("text/plain"), Some("application/x-www-form-urlencoded"), None] {
        let mut request = server.request(Method::POST, "/v1/jobs", &token).body(json_text);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE, "{content_type:?}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(error_code(&body), "unsupported_media_type");
    }
    let (status, _) = server.call(Method::GET, "/v1/jobs", &token, None).await;
    assert_eq!(status, StatusCode::OK);
    let (_, page) = server.call(Method::GET, "/v1/jobs", &token, None).await;
    assert_eq!(page["total"], 0, "nothing refused was stored: {page}");

    let (status, tenant) = server.call(Method::GET, "/v1/tenants/acme", &token, None).await;
    assert_eq!((status, &tenant["queued_quota"]), (StatusCode::OK, &json!(100_000)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_of_a_job_obeys_the_size_limit_and_todays_caps() {
    let server = TestServer::start().await;
    let token = server.token("acme", "ada", Role::Submitter).await;
    let body = json!({
        "job": "examples.hello", "args": {"name": "Ada"}, "limits": {"fuel": 5_000_000_000u64}
    });
    let id = enqueue(&server, &token, body).await;
    wait_state(&server, &token, &id, "completed").await;

    let quotas = json!({"max_limits": {"fuel": 1_000_000_000u64}});
    let (status, body) = server.call(Method::PUT, "/v1/tenants/acme", ADMIN, Some(quotas)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for action in ["clone", "retry"] {
        let (status, copy) =
            server.call(Method::POST, &format!("/v1/jobs/{id}/{action}"), &token, None).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{action}: {copy}");
        assert_eq!(copy["limits"]["fuel"], 1_000_000_000u64, "{action} lowered to today's cap");
    }
    let huge = json!({"args": {"name": "x".repeat(1_100_000)}});
    let (status, body) =
        server.call(Method::POST, &format!("/v1/jobs/{id}/clone"), &token, Some(huge)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
}

/// A raw connection from `from` to the server.
async fn connect(server: &TestServer, from: [u8; 4]) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind((std::net::Ipv4Addr::from(from), 0).into()).unwrap();
    let address = server.base.trim_start_matches("http://").parse().unwrap();
    socket.connect(address).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_bodies_and_connection_floods_cannot_shut_others_out() {
    let server = TestServer::start_with(|config| {
        config.body_timeout_ms = 1_000;
        config.max_connections_per_address = 8;
    })
    .await;
    let viewer = server.token("acme", "watcher", Role::Viewer).await;
    let other = server.token("globex", "gus", Role::Submitter).await;

    // A role that may not change the queue is refused before its body.
    let mut stream = connect(&server, [127, 0, 0, 1]).await;
    let head = format!(
        "PATCH /v1/queues/default HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {viewer}\r\n\
         Content-Type: application/json\r\nContent-Length: 1000\r\nConnection: close\r\n\r\n{{"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let answer = read_to_close(&mut stream, Duration::from_secs(30)).await;
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");

    // A body trickled a byte at a time is cut off at the deadline, however
    // often its bytes come.
    let mut stream = connect(&server, [127, 0, 0, 1]).await;
    let head = format!(
        "POST /v1/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN}\r\n\
         Content-Type: application/json\r\nContent-Length: 1000\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let trickle = async {
        for _ in 0..1000 {
            if stream.write_all(b" ").await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(60), trickle).await.expect("the server cut it off");
    let answer = read_to_close(&mut stream, Duration::from_secs(30)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");

    // One address holds its cap of connections; the next is refused...
    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(connect(&server, [127, 0, 0, 1]).await);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut refused = connect(&server, [127, 0, 0, 1]).await;
    let answer = read_to_close(&mut refused, Duration::from_secs(30)).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("maximum of 8 open connections"), "{answer}");

    // ...while another client is served and the other tenant's job runs.
    let client = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .build()
        .unwrap();
    let health = client.get(format!("{}/v1/health", server.base)).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let response = client
        .post(format!("{}/v1/jobs", server.base))
        .bearer_auth(&other)
        .json(&json!({"job": "examples.hello", "args": {"name": "Gus"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let id = response.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string();
    let mut state = Value::Null;
    for _ in 0..600 {
        let job = client
            .get(format!("{}/v1/jobs/{id}", server.base))
            .bearer_auth(&other)
            .send()
            .await
            .unwrap();
        state = job.json::<Value>().await.unwrap()["state"].clone();
        if state == "completed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(state, "completed");
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_admin_administers_its_own_tenant_only() {
    let server = TestServer::start().await;
    let made = json!({"name": "boss", "tenant": "globex", "role": "admin"});
    let (status, boss) = server.call(Method::POST, "/v1/tokens", ADMIN, Some(made)).await;
    assert_eq!(status, StatusCode::CREATED, "{boss}");
    let boss = boss["secret"].as_str().unwrap().to_string();
    let acme = server.token("acme", "ada", Role::Submitter).await;
    let hello =
        enqueue(&server, &acme, json!({"job": "examples.hello", "args": {"name": "A"}})).await;

    // Within its tenant it manages tokens...
    let own = json!({"name": "ci", "role": "submitter"});
    let (status, token) = server.call(Method::POST, "/v1/tokens", &boss, Some(own.clone())).await;
    assert_eq!((status, token["tenant"].as_str()), (StatusCode::CREATED, Some("globex")));
    let (status, body) = server.call(Method::POST, "/v1/tokens", &boss, Some(own)).await;
    assert_eq!(status, StatusCode::CONFLICT, "token names are unique per tenant: {body}");
    let (_, list) = server.call(Method::GET, "/v1/tokens", &boss, None).await;
    let tenants: Vec<&str> =
        list["tokens"].as_array().unwrap().iter().map(|t| t["tenant"].as_str().unwrap()).collect();
    assert!(!tenants.is_empty() && tenants.iter().all(|t| *t == "globex"), "{tenants:?}");

    // ...and nothing of the host or of another tenant.
    let (_, all) = server.call(Method::GET, "/v1/tokens", ADMIN, None).await;
    let acme_token = all["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["tenant"] == "acme")
        .map(|t| t["id"].as_str().unwrap().to_string())
        .unwrap();
    let worker = server.call(Method::GET, "/v1/workers", ADMIN, None).await.1["workers"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let forbidden = [
        (
            Method::POST,
            "/v1/tokens".to_string(),
            Some(json!({"name": "x", "tenant": "acme", "role": "admin"})),
        ),
        (Method::POST, "/v1/tokens".to_string(), Some(json!({"name": "y", "role": "host_admin"}))),
        (Method::PUT, "/v1/tenants/acme".to_string(), Some(json!({"max_queued": 0}))),
        (Method::PUT, "/v1/tenants/globex".to_string(), Some(json!({"max_queued": 1_000_000}))),
        (Method::GET, "/v1/tenants".to_string(), None),
        (Method::POST, format!("/v1/workers/{worker}/pause"), None),
        (Method::GET, "/metrics".to_string(), None),
    ];
    for (method, path, body) in forbidden {
        let (status, answer) = server.call(method.clone(), &path, &boss, body).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {answer}");
    }
    let (status, _) = server.call(Method::GET, "/v1/tenants/acme", &boss, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) =
        server.call(Method::DELETE, &format!("/v1/tokens/{acme_token}"), &boss, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "another tenant's token does not exist for it");
    let (status, _) = server.call(Method::GET, "/v1/jobs", &acme, None).await;
    assert_eq!(status, StatusCode::OK, "acme's token still works");
    wait_state(&server, &acme, &hello, "completed").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_bootstrap_token_stays_revoked_and_weak_ones_are_refused() {
    use jobhost::host::Host;
    use jobhost_tests::server::test_config;
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let host = Host::start(test_config(dir.path())).await.unwrap();
    let base = format!("http://{}", host.addr());
    let tokens =
        |token: &str| client.get(format!("{base}/v1/tokens")).bearer_auth(token.to_string());
    let made = client
        .post(format!("{base}/v1/tokens"))
        .bearer_auth(ADMIN)
        .json(&json!({"name": "second", "role": "host_admin"}))
        .send()
        .await
        .unwrap();
    assert_eq!(made.status(), StatusCode::CREATED);
    let second = made.json::<Value>().await.unwrap()["secret"].as_str().unwrap().to_string();
    let list: Value = tokens(&second).send().await.unwrap().json().await.unwrap();
    let bootstrap = list["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "admin")
        .map(|t| t["id"].as_str().unwrap().to_string())
        .unwrap();
    let revoked = client
        .delete(format!("{base}/v1/tokens/{bootstrap}"))
        .bearer_auth(&second)
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), StatusCode::NO_CONTENT);
    host.stop().await.unwrap();

    // The same environment again: the revoked secret is not brought back.
    let host = Host::start(test_config(dir.path())).await.unwrap();
    let base = format!("http://{}", host.addr());
    let get = |token: &str| client.get(format!("{base}/v1/tokens")).bearer_auth(token.to_string());
    assert_eq!(get(ADMIN).send().await.unwrap().status(), StatusCode::UNAUTHORIZED);
    assert_eq!(get(&second).send().await.unwrap().status(), StatusCode::OK);
    host.stop().await.unwrap();

    let fresh = tempfile::tempdir().unwrap();
    for weak in ["short", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"] {
        let config =
            jobhost::config::Config { admin_token: Some(weak.into()), ..test_config(fresh.path()) };
        let error = Host::start(config).await.unwrap_err().to_string();
        assert!(error.contains("too weak"), "{error}");
    }
}

/// Puts `count` jobs of `tenant` straight into storage, as a flood of
/// enqueues would: sleeping an hour, on `lock` if given.
async fn flood(server: &TestServer, tenant: &str, count: usize, lock: Option<&str>) {
    use jobhost::jobs::{LimitOverrides, NewJob, now_ms};
    let hour =
        LimitOverrides { wall_time: Some(Duration::from_secs(3600)), ..LimitOverrides::default() };
    let new = NewJob {
        tenant: tenant.into(),
        owner: "flood".into(),
        job: "examples.sleep".into(),
        args: r#"{"seconds":3600}"#.into(),
        queue: format!("{tenant}/default"),
        priority: 1000,
        lock: lock.map(|lock| format!("{tenant}/{lock}")),
        limits: hour,
        ..NewJob::default()
    };
    let enqueues = (0..count).map(|_| server.storage.enqueue(new.clone(), now_ms()));
    for enqueued in futures::future::join_all(enqueues).await {
        enqueued.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_backlog_of_another_tenant_stands_in_front_of_a_runnable_job() {
    let server = TestServer::start_with(|config| config.tenant_max_queued = 1_000_000).await;
    let a = server.token("a", "ada", Role::Submitter).await;
    let b = server.token("b", "bob", Role::Submitter).await;
    let hour = json!({"wall_time": 3_600_000});

    // Tenant b: an hour-long job holding lock L3 at the top priority, then
    // 12,000 more waiting for the same lock.
    let holder = json!({"job": "examples.sleep", "args": {"seconds": 3600}, "lock": "L3",
                        "priority": 1000, "limits": hour});
    let holder = enqueue(&server, &b, holder).await;
    wait_state(&server, &b, &holder, "running").await;
    flood(&server, "b", 12_000, Some("L3")).await;

    // Tenant a's job is first in its own line and runs.
    let (status, job) = server
        .call(
            Method::POST,
            "/v1/jobs",
            &a,
            Some(json!({"job": "examples.hello", "args": {"name": "A"}})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    let id = job["id"].as_str().unwrap().to_string();
    let (_, details) = server.call(Method::GET, &format!("/v1/jobs/{id}"), &a, None).await;
    assert!(
        details["queue_position"].is_null() || details["queue_position"] == 0,
        "b's backlog is not ahead of a's job: {}",
        details["queue_position"]
    );
    wait_state(&server, &a, &id, "completed").await;

    // Tenant b at its running quota with thousands waiting: a still runs.
    let (status, _) = server
        .call(
            Method::PUT,
            "/v1/tenants/b",
            ADMIN,
            Some(json!({"max_running": 1, "max_queued": 1_000_000})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    flood(&server, "b", 12_000, None).await;
    let again =
        enqueue(&server, &a, json!({"job": "examples.hello", "args": {"name": "A2"}})).await;
    wait_state(&server, &a, &again, "completed").await;
    let (status, health) = server.call(Method::GET, "/v1/health", "", None).await;
    assert_eq!((status, &health["status"]), (StatusCode::OK, &json!("ok")));

    // Priority is bounded.
    let (status, body) = server
        .call(
            Method::POST,
            "/v1/jobs",
            &b,
            Some(json!({"job": "examples.hello", "priority": 2_147_483_647})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(error_message(&body).contains("priority"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scans_of_one_tenant_do_not_hold_up_anyone_else() {
    let server = TestServer::start_with(|config| {
        config.tenant_max_queued = 1_000_000;
        config.slots = 1;
    })
    .await;
    let viewer = server.token("big", "eve", Role::Viewer).await;
    flood(&server, "big", 40_000, None).await;
    let stats = (0..8).map(|_| {
        let search = "/v1/jobs?search=not-in-any-name";
        let request = server.request(Method::GET, search, &viewer).send();
        tokio::spawn(async move { request.await.unwrap().status() })
    });
    let stats: Vec<_> = stats.collect();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let (status, _) = server.call(Method::GET, "/v1/health", "", None).await;
    assert_eq!(status, StatusCode::OK);
    let finished_first = stats.iter().filter(|task| task.is_finished()).count();
    assert_eq!(finished_first, 0, "health answered while every search was still reading");
    for task in stats {
        assert_eq!(task.await.unwrap(), StatusCode::OK);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_are_bounded_per_tenant_and_replaced_bytes_are_freed() {
    let server = TestServer::start_with(|config| config.tenant_max_plugins = 2).await;
    let ops = server.token("acme", "ops", Role::Operator).await;
    let upload = |name: &str, path: &str| {
        let bytes = std::fs::read(path).unwrap();
        server.request(Method::POST, &format!("/v1/plugins/{name}"), &ops).body(bytes).send()
    };
    let first = upload("acme.one", jobhost_plugin_artifacts::HELLO).await.unwrap();
    assert_eq!(first.status(), StatusCode::CREATED);
    let old_digest = first.json::<Value>().await.unwrap()["digest"].as_str().unwrap().to_string();
    let second = upload("acme.two", jobhost_plugin_artifacts::HELLO).await.unwrap();
    assert_eq!(second.status(), StatusCode::CREATED);
    let third = upload("acme.three", jobhost_plugin_artifacts::HELLO).await.unwrap();
    assert_eq!(third.status(), StatusCode::TOO_MANY_REQUESTS);
    let body: Value = third.json().await.unwrap();
    assert!(error_message(&body).contains("quota"), "{body}");

    // Replacing both versions of the hello bytes frees them.
    for name in ["acme.one", "acme.two"] {
        let replaced = upload(name, jobhost_plugin_artifacts::WORDCOUNT).await.unwrap();
        assert_eq!(replaced.status(), StatusCode::CREATED, "replacing a name is within quota");
    }
    assert!(server.storage.component(&old_digest).await.is_err(), "no plugin uses them now");
}

/// Every job id `token` gets by following `next_cursor` from `first`.
async fn walk_pages(server: &TestServer, token: &str, first: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut path = first.to_string();
    loop {
        let (status, page) = server.call(Method::GET, &path, token, None).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert_eq!(page["total_exact"], true, "{page}");
        ids.extend(
            page["jobs"].as_array().unwrap().iter().map(|j| j["id"].as_str().unwrap().to_string()),
        );
        match page["next_cursor"].as_str() {
            Some(cursor) => {
                assert!(page["jobs"].as_array().unwrap().len() == 3, "only the last page is short");
                path = format!("{}&cursor={cursor}", first);
            }
            None => return ids,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursor_pages_show_each_caller_only_what_it_may_see() {
    let server = TestServer::start().await;
    let ada = server.token("acme", "ada", Role::Submitter).await;
    let bob = server.token("acme", "bob", Role::Submitter).await;
    let viewer = server.token("acme", "vera", Role::Viewer).await;
    let gus = server.token("globex", "gus", Role::Submitter).await;
    let mut mine: Vec<String> = Vec::new();
    for i in 0..7 {
        mine.push(
            enqueue(&server, &ada, json!({"job": "examples.hello", "args": {"name": i}})).await,
        );
    }
    for i in 0..5 {
        enqueue(&server, &bob, json!({"job": "examples.hello", "args": {"name": i}})).await;
    }
    for i in 0..4 {
        enqueue(&server, &gus, json!({"job": "examples.hello", "args": {"name": i}})).await;
    }
    mine.reverse();
    assert_eq!(
        walk_pages(&server, &ada, "/v1/jobs?per_page=3").await,
        mine,
        "ada's own, newest first"
    );
    let everyone = walk_pages(&server, &viewer, "/v1/jobs?per_page=3").await;
    assert_eq!(everyone.len(), 12, "a viewer sees the tenant's jobs, not globex's");
    assert_eq!(walk_pages(&server, &viewer, "/v1/jobs?per_page=3&owner=bob").await.len(), 5);
    assert_eq!(walk_pages(&server, &gus, "/v1/jobs?per_page=3").await.len(), 4);

    let (_, first) = server.call(Method::GET, "/v1/jobs?per_page=3", &ada, None).await;
    let cursor = first["next_cursor"].as_str().unwrap().to_string();
    assert_eq!(first["page"], 1);
    let (status, theirs) =
        server.call(Method::GET, &format!("/v1/jobs?per_page=3&cursor={cursor}"), &gus, None).await;
    assert_eq!(status, StatusCode::OK);
    let seen: Vec<&str> =
        theirs["jobs"].as_array().unwrap().iter().map(|j| j["job"].as_str().unwrap()).collect();
    assert!(
        theirs["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|j| !mine.contains(&j["id"].as_str().unwrap().to_string())),
        "another tenant's cursor shows only globex's jobs: {seen:?}"
    );
    assert!(theirs["page"].is_null());

    let (status, answer) = server.call(Method::GET, "/v1/jobs?cursor=zzz", &ada, None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(error_message(&answer).contains("cursor"), "{answer}");
    let both = format!("/v1/jobs?page=2&cursor={cursor}");
    let (status, answer) = server.call(Method::GET, &both, &ada, None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(error_message(&answer).contains("page or cursor"), "{answer}");
}
