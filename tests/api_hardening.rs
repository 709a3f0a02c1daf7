//! How the server protects itself, over real HTTP: clients that stall are
//! cut off, SSE streams are capped per tenant and in all, a draining or
//! stopping host refuses new jobs with 503, and shutdown lets running jobs
//! finish within a grace time and hands the rest back to the queue.

use jobhost::jobs::Role;
use jobhost_tests::eventually;
use jobhost_tests::server::{
    ADMIN, TestServer, enqueue, error_code, error_message, read_to_close, wait_state, workers,
};
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sends `request` on a raw connection, stalls, and returns what the
/// server answers before it closes the connection. The server's timeouts
/// are 300 ms here: it must close well before hyper's own 30 s default
/// would, so a setting that was ignored fails the test.
async fn stall(server: &TestServer, request: &str) -> String {
    let address = server.base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    read_to_close(&mut stream, Duration::from_secs(10)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stalls_on_its_headers_or_body_is_cut_off() {
    let server = TestServer::start_with(|config| {
        config.header_timeout_ms = 300;
        config.body_timeout_ms = 300;
    })
    .await;
    let answer = stall(&server, "GET /v1/health HTTP/1.1\r\nHost: x\r\n").await;
    assert!(!answer.contains("200 OK"), "half a header block is not served: {answer}");

    let head = format!(
        "POST /v1/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\nConnection: close\r\n\r\n"
    );
    let answer = stall(&server, &format!("{head}{{\"job\": ")).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"code\":\"timeout\""), "{answer}");

    let (status, _) = server.call(Method::GET, "/v1/health", "", None).await;
    assert_eq!(status, StatusCode::OK, "the server still serves others");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_streams_are_capped_per_tenant_and_in_all() {
    let server = TestServer::start_with(|config| {
        config.max_streams = 3;
        config.max_streams_per_tenant = 2;
    })
    .await;
    let a = server.token("a", "ops", Role::Operator).await;
    let b = server.token("b", "ops", Role::Operator).await;
    let sleep = json!({"job": "examples.sleep", "args": {"seconds": 30}});
    let job_a = enqueue(&server, &a, sleep.clone()).await;
    let job_b = enqueue(&server, &b, sleep).await;
    let open = |token: &str, job: &str| {
        server.request(Method::GET, &format!("/v1/jobs/{job}/events"), token).send()
    };

    let first = open(&a, &job_a).await.unwrap();
    let _second = open(&a, &job_a).await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    let third = open(&a, &job_a).await.unwrap();
    assert_eq!(third.status(), StatusCode::TOO_MANY_REQUESTS);
    let body: serde_json::Value = third.json().await.unwrap();
    assert!(error_message(&body).contains("tenant \"a\""), "{body}");

    let _b_first = open(&b, &job_b).await.unwrap();
    let over = open(&b, &job_b).await.unwrap();
    assert_eq!(over.status(), StatusCode::TOO_MANY_REQUESTS, "the host's cap of 3 is reached");
    let body: serde_json::Value = over.json().await.unwrap();
    assert_eq!(error_code(&body), "over_quota");

    drop(first);
    let mut status = StatusCode::TOO_MANY_REQUESTS;
    for _ in 0..200 {
        status = open(&b, &job_b).await.unwrap().status();
        if status == StatusCode::OK {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, StatusCode::OK, "a closed stream frees its place");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_worker_takes_no_new_jobs_until_resumed() {
    let server = TestServer::start().await;
    let ops = server.token("d", "ops", Role::Operator).await;
    let workers = workers(&server, &ops).await;
    let worker = workers[0]["id"].as_str().unwrap();
    server.call(Method::POST, &format!("/v1/workers/{worker}/drain"), ADMIN, None).await;
    let hello = json!({"job": "examples.hello", "args": {"name": "d"}});
    let (status, body) = server.call(Method::POST, "/v1/jobs", &ops, Some(hello.clone())).await;
    assert_eq!((status, error_code(&body)), (StatusCode::SERVICE_UNAVAILABLE, "unavailable"));
    assert!(error_message(&body).contains("draining"), "{body}");
    server.call(Method::POST, &format!("/v1/workers/{worker}/resume"), ADMIN, None).await;
    let id = enqueue(&server, &ops, hello).await;
    wait_state(&server, &ops, &id, "completed").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_short_jobs_finish_and_hands_the_rest_back() {
    let server = TestServer::start_with(|config| config.shutdown_grace_ms = 3_000).await;
    let ops = server.token("s", "ops", Role::Operator).await;
    let short =
        enqueue(&server, &ops, json!({"job": "examples.sleep", "args": {"seconds": 0.5}})).await;
    let long =
        enqueue(&server, &ops, json!({"job": "examples.sleep", "args": {"seconds": 600}})).await;
    wait_state(&server, &ops, &short, "running").await;
    wait_state(&server, &ops, &long, "running").await;

    server.stop_dispatching().await;
    let (_, short) = server.call(Method::GET, &format!("/v1/jobs/{short}"), &ops, None).await;
    assert_eq!(short["state"], "completed", "{short}");
    let (_, long) = server.call(Method::GET, &format!("/v1/jobs/{long}"), &ops, None).await;
    assert_eq!(long["state"], "pending", "handed back: {long}");
    assert_eq!(long["attempt"], 0, "a handed-back run does not use an attempt");
    let last = long["events"].as_array().unwrap().last().unwrap().clone();
    assert!(last["reason"].as_str().unwrap().contains("handed the job back"), "{last}");

    let (status, body) =
        server.call(Method::POST, "/v1/jobs", &ops, Some(json!({"job": "examples.hello"}))).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(error_message(&body).contains("shutting down"), "{body}");
}

/// Sends raw bytes as a JSON body; returns the status and the error message.
async fn post_raw(
    server: &TestServer,
    path: &str,
    token: &str,
    body: Vec<u8>,
) -> (StatusCode, String) {
    let request =
        server.request(Method::POST, path, token).header("content-type", "application/json");
    let response = request.body(body).send().await.unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    let message = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|body| body["error"]["message"].as_str().map(str::to_string))
        .unwrap_or(text);
    (status, message)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_bodies_and_paths_get_a_4xx_naming_the_problem_and_store_nothing() {
    let server = TestServer::start().await;
    let ops = server.token("fuzz", "ops", Role::Operator).await;
    let deep = format!(
        r#"{{"job":"examples.hello","args":{{"a":{}{}}}}}"#,
        "[".repeat(5_000),
        "]".repeat(5_000)
    );
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("cut off", br#"{"job": "#.to_vec(), "EOF"),
        ("not an object", b"[1, 2]".to_vec(), "expected"),
        ("deeply nested", deep.into_bytes(), "recursion"),
        (
            "invalid UTF-8",
            b"{\"job\": \"examples.hello\", \"name\": \"\xff\xfe\"}".to_vec(),
            "unicode",
        ),
        ("huge priority", br#"{"job":"examples.hello","priority":1e400}"#.to_vec(), "priority"),
        (
            "priority past i32",
            br#"{"job":"examples.hello","priority":99999999999}"#.to_vec(),
            "priority",
        ),
        (
            "delay past u64",
            br#"{"job":"examples.hello","delay_ms":18446744073709551616}"#.to_vec(),
            "delay_ms",
        ),
        (
            "negative retries",
            br#"{"job":"examples.hello","max_retries":-1}"#.to_vec(),
            "max_retries",
        ),
        ("unknown field", br#"{"job":"examples.hello","jobb":1}"#.to_vec(), "jobb"),
        ("a name with a NUL", b"{\"job\": \"examples.hello\\u0000\"}".to_vec(), "examples.hello"),
        ("a path for a name", br#"{"job":"../../etc/passwd"}"#.to_vec(), "passwd"),
        (
            "a queue with a slash",
            br#"{"job":"examples.hello","queue":"other/q"}"#.to_vec(),
            "queue",
        ),
        (
            "a long name",
            format!(r#"{{"job":"{}"}}"#, "a.".repeat(5_000) + "b").into_bytes(),
            "name",
        ),
    ];
    for (case, body, named) in cases {
        let (status, message) = post_raw(&server, "/v1/jobs", &ops, body).await;
        assert!(status.is_client_error(), "{case}: {status} {message}");
        assert!(message.contains(named), "{case}: the message names {named:?}: {message}");
    }
    for path in [
        "/v1/jobs/..%2F..%2Fetc%2Fpasswd",
        "/v1/jobs/%00",
        "/v1/jobs/01a232e0-e64d-73d4-bd34-df13055d693a%00",
        "/v1/plugins/%2e%2e",
        "/v1/plugins/..%2Fexamples.hello",
        "/v1/queues/..%2Fother",
        "/v1/tenants/%2e%2e%2fdefault",
    ] {
        let (status, answer) = server.call(Method::GET, path, &ops, None).await;
        assert!(status.is_client_error(), "{path}: {status} {answer}");
        assert!(answer["error"]["message"].is_string(), "{path}: {answer}");
    }
    let (_, jobs) = server.call(Method::GET, "/v1/jobs", &ops, None).await;
    assert_eq!(jobs["total"], 0, "nothing refused was stored: {jobs}");
}

/// The host's open HTTP connections, from the admin's stats.
async fn open_connections(server: &TestServer) -> u64 {
    let (_, stats) = server.call(Method::GET, "/v1/stats", ADMIN, None).await;
    stats["host"]["open_connections"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_that_stops_reading_is_cut_off_while_the_others_get_every_event() {
    // More log than the socket buffers on both ends hold (several MiB on
    // loopback), so the host's writes to a client that reads nothing block.
    let lines = 50_000;
    let server = TestServer::start_with(|config| {
        config.stream_stall_ms = 3_000;
        (config.log_lines, config.max_log_lines) = (lines, lines);
        (config.log_bytes, config.max_log_bytes) = (64 << 20, 64 << 20);
    })
    .await;
    let ada = server.token("acme", "ada", Role::Submitter).await;
    let chatty = json!({"job": "examples.sleep", "args": {"seconds": 0, "steps": lines}});
    let id = enqueue(&server, &ada, chatty).await;
    wait_state(&server, &ada, &id, "completed").await;
    let before = open_connections(&server).await;

    // The slow follower asks for the stream on a socket with the smallest
    // receive buffer, then reads nothing: the host's writes to it block.
    let address: std::net::SocketAddr = server.base.trim_start_matches("http://").parse().unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut slow = socket.connect(address).await.unwrap();
    let request = format!(
        "GET /v1/jobs/{id}/events HTTP/1.1\r\nhost: {address}\r\nauthorization: Bearer {ada}\r\n\r\n"
    );
    slow.write_all(request.as_bytes()).await.unwrap();

    // Meanwhile every other follower gets the whole stream.
    for _ in 0..3 {
        let response = server.request(Method::GET, &format!("/v1/jobs/{id}/events"), &ada);
        let events = TestServer::read_events(response.send().await.unwrap()).await;
        let logs = events.iter().filter(|event| event.event == "log").count();
        assert_eq!((logs, events.last().unwrap().event.as_str()), (lines as usize, "close"));
    }

    // The host closes the slow follower's connection while its client still
    // holds it open, and the client never saw the stream's end.
    eventually("the stalled connection is closed by the host", || async {
        (open_connections(&server).await <= before).then_some(())
    })
    .await;
    let mut seen = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(60), slow.read_to_end(&mut seen)).await;
    let seen = String::from_utf8_lossy(&seen);
    assert!(read.is_ok(), "the host closed the connection");
    assert!(seen.starts_with("HTTP/1.1 200"), "{}", &seen[..seen.len().min(200)]);
    assert!(!seen.contains("event: close"), "a client that read nothing got the whole stream");
    let (_, stats) = server.call(Method::GET, "/v1/stats", ADMIN, None).await;
    assert_eq!(stats["host"]["open_streams"], 0, "{stats}");
}
