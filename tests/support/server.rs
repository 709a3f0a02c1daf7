//! A real host for tests, started by `Host::start` like the binary's: its
//! data in a temp dir, the example and test plugins, the HTTP API on
//! 127.0.0.1:0, and a small client.

use jobhost::api;
use jobhost::config::Config;
use jobhost::host::Host;
use jobhost::jobs::{Role, TokenRecord};
use jobhost::storage::Storage;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::path::Path;
use std::sync::Arc;
use tokio::sync::Mutex;

/// The secret of the admin token every test server has.
pub const ADMIN: &str = "test-admin-secret-0123456789abcdef";

/// The settings of a test host on `data`: every example and test plugin,
/// compiled components shared by all tests (one cache for the process),
/// loopback on any port, a known admin token, and caps high enough for the
/// limit tests.
pub fn test_config(data: &Path) -> Config {
    Config {
        listen: "127.0.0.1:0".into(),
        data: data.to_path_buf(),
        plugins: vec![
            jobhost_plugin_artifacts::EXAMPLES_DIR.into(),
            jobhost_plugin_artifacts::TESTS_DIR.into(),
        ],
        cache: Some(std::env::temp_dir().join("jobhost-test-cache")),
        admin_token: Some(ADMIN.into()),
        pool_slots: 16,
        max_fuel: u64::MAX,
        max_wall_time_ms: 3_600_000,
        webhook_allow: vec!["127.0.0.0/8".parse().unwrap()],
        ..Config::default()
    }
}

/// A running server; it stops with the test's tokio runtime.
#[derive(Debug)]
pub struct TestServer {
    pub base: String,
    pub storage: Arc<dyn Storage>,
    host: Mutex<Host>,
    client: reqwest::Client,
    config: Config,
    _dir: tempfile::TempDir,
}

/// One SSE event as a client reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct SseEvent {
    pub event: String,
    pub id: Option<String>,
    pub data: Value,
}

impl TestServer {
    pub async fn start() -> TestServer {
        TestServer::start_with(|_| {}).await
    }

    /// A server whose settings `change` adjusts from [`test_config`].
    pub async fn start_with(change: impl FnOnce(&mut Config)) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let mut config = test_config(dir.path());
        change(&mut config);
        TestServer::on(dir, config).await
    }

    async fn on(dir: tempfile::TempDir, config: Config) -> TestServer {
        let host = Host::start(config.clone()).await.unwrap();
        TestServer {
            base: format!("http://{}", host.addr()),
            storage: host.storage().clone(),
            host: Mutex::new(host),
            client: reqwest::Client::new(),
            config,
            _dir: dir,
        }
    }

    /// Stops this host as SIGTERM does (running jobs get the shutdown
    /// grace, the rest are handed back) and starts a new one on the same
    /// data and settings, on a new port.
    pub async fn restart(self) -> TestServer {
        self.restart_after(std::time::Duration::ZERO).await
    }

    /// [`TestServer::restart`], with no host running for `down` between
    /// the stop and the start (an outage).
    pub async fn restart_after(self, down: std::time::Duration) -> TestServer {
        let TestServer { host, storage, config, _dir: dir, .. } = self;
        drop(storage);
        host.into_inner().stop().await.unwrap();
        tokio::time::sleep(down).await;
        TestServer::on(dir, config).await
    }

    /// Shuts the dispatcher down (the API keeps serving) and waits until it
    /// has let its jobs finish or handed them back.
    pub async fn stop_dispatching(&self) {
        self.host.lock().await.stop_dispatching().await;
    }

    /// A new token of `role` for `tenant`, named `name`; returns its secret.
    pub async fn token(&self, tenant: &str, name: &str, role: Role) -> String {
        let secret = api::new_secret();
        let record = TokenRecord { name: name.into(), tenant: tenant.into(), role, created_at: 0 };
        self.storage.put_token(&api::token_hash(&secret), record).await.unwrap();
        secret
    }

    /// A request, with `token` as bearer unless it is empty.
    pub fn request(&self, method: Method, path: &str, token: &str) -> reqwest::RequestBuilder {
        let request = self.client.request(method, format!("{}{path}", self.base));
        if token.is_empty() { request } else { request.bearer_auth(token) }
    }

    /// Sends a JSON request; returns the status and the JSON answer.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.request(method, path, token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// Reads an SSE response until its `close` event (or its end).
    pub async fn read_events(response: reqwest::Response) -> Vec<SseEvent> {
        assert_eq!(response.status(), StatusCode::OK);
        let content_type = response.headers()["content-type"].to_str().unwrap().to_string();
        assert!(content_type.starts_with("text/event-stream"), "{content_type}");
        let mut response = response;
        let mut buffer = String::new();
        let mut events = Vec::new();
        let reading = async {
            while let Some(chunk) = response.chunk().await.unwrap() {
                buffer.push_str(&String::from_utf8_lossy(&chunk));
                let mut start = 0;
                while let Some(end) = buffer[start..].find("\n\n") {
                    let block = &buffer[start..start + end + 2];
                    start += end + 2;
                    if let Some(event) = parse_event(block) {
                        let closed = event.event == "close";
                        events.push(event);
                        if closed {
                            return;
                        }
                    }
                }
                buffer.drain(..start);
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(60), reading)
            .await
            .expect("the stream closed");
        events
    }
}

pub fn error_code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or_else(|| panic!("not an error body: {body}"))
}

pub fn error_message(body: &Value) -> String {
    body["error"]["message"].as_str().unwrap().to_string()
}

pub async fn enqueue(server: &TestServer, token: &str, body: Value) -> String {
    let (status, job) = server.call(Method::POST, "/v1/jobs", token, Some(body)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    job["id"].as_str().unwrap().to_string()
}

/// The workers as `token` lists them, once the host's first heartbeat
/// registered its own.
pub async fn workers(server: &TestServer, token: &str) -> Value {
    crate::eventually("the host registers its worker", || async {
        let (_, body) = server.call(Method::GET, "/v1/workers", token, None).await;
        let listed = body["workers"].as_array().is_some_and(|w| !w.is_empty());
        listed.then(|| body["workers"].clone())
    })
    .await
}

pub async fn wait_state(server: &TestServer, token: &str, id: &str, state: &str) -> Value {
    let mut job = Value::Null;
    for _ in 0..1200 {
        let (status, answer) =
            server.call(Method::GET, &format!("/v1/jobs/{id}"), token, None).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        job = answer;
        if job["state"] == state {
            return job;
        }
        let finished = ["completed", "failed", "cancelled", "expired"];
        if finished.contains(&job["state"].as_str().unwrap()) {
            panic!("job {id} finished {} instead of reaching {state}: {job}", job["state"]);
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("job {id} never reached {state}: {job}");
}

fn parse_event(block: &str) -> Option<SseEvent> {
    let (mut event, mut id, mut data) = (None, None, String::new());
    for line in block.lines() {
        if let Some(v) = line.strip_prefix("event:") {
            event = Some(v.trim().to_string());
        } else if let Some(v) = line.strip_prefix("id:") {
            id = Some(v.trim().to_string());
        } else if let Some(v) = line.strip_prefix("data:") {
            data.push_str(v.trim_start());
        }
    }
    let data = serde_json::from_str(&data).unwrap_or(Value::String(data));
    event.map(|event| SseEvent { event, id, data })
}

/// Whatever the server sends on a raw connection until it closes it, within
/// `within`: for tests of what a misbehaving client gets.
pub async fn read_to_close(
    stream: &mut tokio::net::TcpStream,
    within: std::time::Duration,
) -> String {
    use tokio::io::AsyncReadExt;
    let mut answer = Vec::new();
    tokio::time::timeout(within, stream.read_to_end(&mut answer))
        .await
        .unwrap_or_else(|_| panic!("the server did not close the connection within {within:?}"))
        .unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}
