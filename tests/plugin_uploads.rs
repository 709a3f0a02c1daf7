//! Plugin uploads as an attack, over real HTTP: components whose memories,
//! tables or data are too large for any job, a body over the size cap, and
//! compiles that take too long or come many at once. Each is refused with a
//! message naming why, nothing is stored, and the host keeps answering.

use jobhost::jobs::Role;
use jobhost_tests::server::{TestServer, error_code, error_message};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Uploads `bytes` as `name`; returns the status and the JSON answer.
async fn upload(
    server: &TestServer,
    token: &str,
    name: &str,
    bytes: Vec<u8>,
) -> (StatusCode, Value) {
    let response = server
        .request(Method::POST, &format!("/v1/plugins/{name}"), token)
        .body(bytes)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The names of the plugins `token`'s tenant has uploaded.
async fn own_plugins(server: &TestServer, token: &str) -> Vec<String> {
    let (_, page) = server.call(Method::GET, "/v1/plugins", token, None).await;
    let plugins = page["plugins"].as_array().unwrap();
    let own = plugins.iter().filter(|p| p["shared"] == false);
    own.map(|p| p["name"].as_str().unwrap().to_string()).collect()
}

/// The example `hello` component with a custom section that makes its
/// bytes (and so its digest) new: compiled afresh, never from the cache.
fn fresh_hello() -> Vec<u8> {
    let path = format!("{}/examples.hello.wasm", jobhost_plugin_artifacts::EXAMPLES_DIR);
    let mut bytes = std::fs::read(path).unwrap();
    let name = b"jobhost-test";
    let payload = uuid::Uuid::new_v4();
    let size = 1 + name.len() + 16;
    bytes.extend([0, size as u8, name.len() as u8]);
    bytes.extend(name);
    bytes.extend(payload.as_bytes());
    bytes
}

/// Asserts a 422 whose message holds every one of `words`.
fn assert_unprocessable(status: StatusCode, body: &Value, words: &[&str]) {
    assert_eq!(
        (status, error_code(body)),
        (StatusCode::UNPROCESSABLE_ENTITY, "unprocessable"),
        "{body}"
    );
    let message = error_message(body);
    assert!(words.iter().all(|word| message.contains(word)), "{words:?}: {message}");
}

async fn assert_answers(server: &TestServer) {
    let (status, health) = server.call(Method::GET, "/v1/health", "", None).await;
    assert_eq!(status, StatusCode::OK, "{health}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn components_asking_for_too_much_memory_tables_or_data_are_refused_before_compiling() {
    let server = TestServer::start_with(|config| config.max_memory_mib = 8).await;
    let ops = server.token("acme", "ops", Role::Operator).await;
    let data = "a".repeat(9 << 20);
    let hostile = [
        (
            "memory",
            "(component (core module (memory 200)))".to_string(),
            "memories start at 13 MiB, over the 8 MiB",
        ),
        (
            "memories",
            "(component (core module (memory 100)) (core module (memory 100)))".to_string(),
            "memories start at 13 MiB",
        ),
        (
            "table",
            "(component (core module (table 100000 funcref)))".to_string(),
            "a table starts with 100000 elements, over the 10000",
        ),
        (
            "data",
            format!("(component (core module (memory 1) (data (i32.const 0) \"{data}\")))"),
            "data segments hold 9 MiB, over the 8 MiB",
        ),
    ];
    for (name, text, why) in hostile {
        let bytes = wat::parse_str(&text).unwrap();
        let (status, body) = upload(&server, &ops, &format!("acme.hostile.{name}"), bytes).await;
        assert_unprocessable(status, &body, &["asks for more than this host allows", why]);
        assert_answers(&server).await;
    }
    assert_eq!(own_plugins(&server, &ops).await, Vec::<String>::new());

    // Within the caps, the same shapes get past this check to the next:
    // they do not implement the job world.
    let fits = wat::parse_str("(component (core module (memory 100) (table 10 funcref)))").unwrap();
    let (status, body) = upload(&server, &ops, "acme.hostile.fits", fits).await;
    assert_unprocessable(status, &body, &["does not implement the jobhost:plugin/job"]);

    // A body over the cap is refused from its length, before it is read.
    let address = server.base.trim_start_matches("http://");
    let mut connection = tokio::net::TcpStream::connect(address).await.unwrap();
    let head = format!(
        "POST /v1/plugins/acme.hostile.huge HTTP/1.1\r\nhost: {address}\r\nauthorization: Bearer {ops}\r\ncontent-length: {}\r\n\r\n",
        jobhost::api::MAX_COMPONENT + 1
    );
    connection.write_all(head.as_bytes()).await.unwrap();
    let mut answer = String::new();
    let mut buffer = vec![0; 4096];
    while !answer.contains("}}") {
        let read =
            tokio::time::timeout(std::time::Duration::from_secs(60), connection.read(&mut buffer));
        let read = read.await.expect("an answer within a minute").unwrap();
        if read == 0 {
            break;
        }
        answer.push_str(&String::from_utf8_lossy(&buffer[..read]));
    }
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("too_large"), "{answer}");
    assert_answers(&server).await;
    assert_eq!(own_plugins(&server, &ops).await, Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn known_mistakes_and_too_many_instances_are_refused_with_the_fix() {
    let server = TestServer::start().await;
    let ops = server.token("acme", "ops", Role::Operator).await;
    let mistakes = [
        (
            "http",
            r#"(component (import "wasi:http/types@0.2.3" (instance)))"#,
            "-d http -d fetch-event",
        ),
        (
            "newer",
            r#"(component (import "jobhost:plugin/context@0.9.0" (instance)))"#,
            "another version",
        ),
        ("norun", "(component)", "exports no `run`"),
    ];
    for (name, text, fix) in mistakes {
        let bytes = wat::parse_str(text).unwrap();
        let (status, body) = upload(&server, &ops, &format!("acme.mistake.{name}"), bytes).await;
        assert_unprocessable(status, &body, &["does not implement the jobhost:plugin/job", fix]);
    }
    let command = std::fs::read(jobhost_plugin_artifacts::COMMAND).unwrap();
    let (status, body) = upload(&server, &ops, "acme.mistake.command", command).await;
    assert_unprocessable(status, &body, &["this is a WASI command", "cdylib"]);

    let instances = "(core instance (instantiate $m))".repeat(33);
    let many = wat::parse_str(format!("(component (core module $m) {instances})")).unwrap();
    let (status, body) = upload(&server, &ops, "acme.mistake.many", many).await;
    let why = ["creates 33 core instances, over the 32", "--max-core-instances"];
    assert_unprocessable(status, &body, &why);

    let (status, body) = upload(&server, &ops, "acme.mistake.fixed", fresh_hello()).await;
    assert_eq!(status, StatusCode::CREATED, "a valid upload still works: {body}");
    let (status, body) = upload(&server, &ops, "acme.hello.wasm", fresh_hello()).await;
    assert_eq!((status, error_code(&body)), (StatusCode::BAD_REQUEST, "bad_request"), "{body}");
    assert!(error_message(&body).contains("ends in `.wasm`"), "{body}");
    assert_eq!(own_plugins(&server, &ops).await, ["acme.mistake.fixed"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compile_over_the_time_limit_is_refused_and_nothing_is_stored() {
    let server = TestServer::start_with(|config| config.compile_timeout_ms = 1).await;
    let ops = server.token("acme", "ops", Role::Operator).await;
    let (status, body) = upload(&server, &ops, "acme.slow.hello", fresh_hello()).await;
    assert_unprocessable(status, &body, &["took longer than the 1 ms", "not stored"]);
    assert_answers(&server).await;
    assert_eq!(own_plugins(&server, &ops).await, Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_uploads_at_once_take_turns_compiling_while_the_host_answers() {
    let server =
        Arc::new(TestServer::start_with(|config| config.max_concurrent_compiles = 1).await);
    let ops = server.token("acme", "ops", Role::Operator).await;
    let uploads: Vec<_> = (0..4)
        .map(|i| {
            let (server, ops) = (server.clone(), ops.clone());
            tokio::spawn(async move {
                upload(&server, &ops, &format!("acme.many.p{i}"), fresh_hello()).await
            })
        })
        .collect();
    while !uploads.iter().all(|upload| upload.is_finished()) {
        assert_answers(&server).await;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    for upload in uploads {
        let (status, body) = upload.await.unwrap();
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let mut names = own_plugins(&server, &ops).await;
    names.sort();
    assert_eq!(names, ["acme.many.p0", "acme.many.p1", "acme.many.p2", "acme.many.p3"]);
}
