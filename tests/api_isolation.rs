//! What one user or tenant can do to another, tried as a client would over
//! real HTTP: idempotency keys that must not hand over someone else's job,
//! job errors that must not show the host's internals, metadata and labels
//! that must not grow without bound, bodies that must not hold connections,
//! and connection floods that must not shut other clients out.

use jobhost::jobs::{MAX_METADATA_BYTES, MAX_METADATA_KEYS, Role};
use jobhost_tests::server::{ADMIN, TestServer, enqueue, error_code, error_message, wait_state};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

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

/// Whatever the server sends until it closes, within 30 s.
async fn read_all(stream: &mut tokio::net::TcpStream) -> String {
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut answer))
        .await
        .expect("the server answered and closed")
        .unwrap();
    String::from_utf8_lossy(&answer).into_owned()
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
    let answer = read_all(&mut stream).await;
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
    let answer = read_all(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");

    // One address holds its cap of connections; the next is refused...
    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(connect(&server, [127, 0, 0, 1]).await);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut refused = connect(&server, [127, 0, 0, 1]).await;
    let answer = read_all(&mut refused).await;
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
