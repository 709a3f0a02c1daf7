//! The OpenAPI document against the real server: it has no dangling
//! references, every JSON answer it documents has a schema, and the real
//! answers of every operation, called as a client would with real data,
//! fit the schemas the document gives them.

use jobhost::jobs::Role;
use jobhost_tests::python;
use jobhost_tests::schema::{dangling_refs, problems};
use jobhost_tests::server::{ADMIN, TestServer, wait_state};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::process::Command;

/// Calls operations and checks each answer against the document.
struct Client<'a> {
    server: &'a TestServer,
    doc: Value,
    covered: BTreeSet<(String, String)>,
}

impl Client<'_> {
    /// The response schema the document gives `method template` for
    /// `status`, if the answer is JSON.
    fn schema(&self, method: &str, template: &str, status: StatusCode) -> Option<Value> {
        let operation = &self.doc["paths"][template][method];
        assert!(operation.is_object(), "{method} {template} is not documented");
        let responses = &operation["responses"];
        let exact = &responses[status.as_str()];
        let range = &responses[format!("{}XX", status.as_u16() / 100)];
        let response = if exact.is_object() { exact } else { range };
        assert!(response.is_object(), "{method} {template} does not document {status}");
        response["content"]["application/json"].get("schema").cloned()
    }

    /// Sends the request and checks the answer's status and body.
    async fn call(
        &mut self,
        method: Method,
        template: &str,
        path: &str,
        token: &str,
        body: Option<Value>,
        expected: StatusCode,
    ) -> Value {
        let (status, answer) = self.server.call(method.clone(), path, token, body).await;
        assert_eq!(status, expected, "{method} {path}: {answer}");
        self.check(method.as_str(), template, status, &answer);
        answer
    }

    fn check(&mut self, method: &str, template: &str, status: StatusCode, answer: &Value) {
        let method = method.to_lowercase();
        if status != StatusCode::NO_CONTENT {
            let schema = self.schema(&method, template, status).unwrap_or_else(|| {
                panic!("{method} {template} answers JSON but documents no schema for it")
            });
            let found = problems(&self.doc, &schema, answer);
            assert!(found.is_empty(), "{method} {template} {status}: {found:#?}\n{answer}");
        }
        self.covered.insert((method, template.to_string()));
    }

    /// Sends a request whose answer is not JSON (a stream, text) and
    /// checks its status and content type against the document.
    async fn call_raw(&mut self, request: reqwest::RequestBuilder, method: &str, template: &str) {
        let response = request.send().await.unwrap();
        let status = response.status();
        assert!(status.is_success(), "{method} {template}: {status}");
        let content_type = response.headers()["content-type"].to_str().unwrap().to_string();
        let responses = &self.doc["paths"][template][method]["responses"];
        let documented = responses
            .as_object()
            .unwrap()
            .values()
            .filter_map(|r| r["content"].as_object())
            .flat_map(|c| c.keys().cloned())
            .any(|ct| content_type.starts_with(&ct));
        assert!(documented, "{method} {template} answers {content_type}, not documented");
        drop(response);
        self.covered.insert((method.to_string(), template.to_string()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_has_no_dangling_references_and_a_schema_for_every_json_answer() {
    let server = TestServer::start().await;
    let (status, doc) = server.call(Method::GET, "/v1/openapi.json", "", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(dangling_refs(&doc), Vec::<String>::new());
    // The checker itself tells a body that does not fit.
    let health = json!({"$ref": "#/components/schemas/Health"});
    assert!(problems(&doc, &health, &json!({"status": "ok"})).is_empty());
    assert!(!problems(&doc, &health, &json!({"status": 5})).is_empty(), "a wrong type");
    assert!(!problems(&doc, &health, &json!({})).is_empty(), "a missing field");
    assert!(!problems(&doc, &health, &json!({"status": "ok", "extra": 1})).is_empty());
    let mut ids = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let id = operation["operationId"].as_str().unwrap_or_default().to_string();
            assert!(!id.is_empty(), "{method} {path} has no operationId");
            assert!(ids.insert(id.clone()), "operationId {id} is used twice");
            for (status, response) in operation["responses"].as_object().unwrap() {
                let Some(content) = response["content"].as_object() else { continue };
                if let Some(json) = content.get("application/json") {
                    assert!(json["schema"].is_object(), "{method} {path} {status}: no schema");
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_answers_what_the_document_says() {
    let server = TestServer::start().await;
    let (_, doc) = server.call(Method::GET, "/v1/openapi.json", "", None).await;
    let mut client = Client { server: &server, doc: doc.clone(), covered: BTreeSet::new() };
    client.covered.insert(("get".into(), "/v1/openapi.json".into()));
    let ops = server.token("acme", "ops", Role::Operator).await;
    use Method as M;
    use StatusCode as S;

    client.call(M::GET, "/v1/health", "/v1/health", "", None, S::OK).await;
    let me = client.call(M::GET, "/v1/me", "/v1/me", &ops, None, S::OK).await;
    assert_eq!(me, json!({"name": "ops", "tenant": "acme", "role": "operator"}));

    // Plugins.
    let hello = std::fs::read(jobhost_plugin_artifacts::HELLO).unwrap();
    for method in [M::POST, M::PUT] {
        let response = server
            .request(method.clone(), "/v1/plugins/acme.greeter", &ops)
            .body(hello.clone())
            .send()
            .await
            .unwrap();
        let status = response.status();
        let answer: Value = response.json().await.unwrap();
        assert_eq!(status, S::CREATED, "{answer}");
        client.check(method.as_str(), "/v1/plugins/{name}", status, &answer);
    }
    client.call(M::GET, "/v1/plugins", "/v1/plugins", &ops, None, S::OK).await;
    let one = "/v1/plugins/acme.greeter";
    client.call(M::GET, "/v1/plugins/{name}", one, &ops, None, S::OK).await;
    let versions = "/v1/plugins/acme.greeter/versions";
    let kept =
        client.call(M::GET, "/v1/plugins/{name}/versions", versions, &ops, None, S::OK).await;
    let current = format!("{versions}/{}", kept["versions"][0]["digest"].as_str().unwrap());
    let template = "/v1/plugins/{name}/versions/{digest}";
    client.call(M::DELETE, template, &current, &ops, None, S::CONFLICT).await;

    // Jobs.
    let body = json!({"job": "acme.greeter", "args": {"name": "Ada"}, "tags": ["t"], "metadata": {"k": 1}});
    let job = client.call(M::POST, "/v1/jobs", "/v1/jobs", &ops, Some(body), S::ACCEPTED).await;
    let id = job["id"].as_str().unwrap().to_string();
    wait_state(&server, &ops, &id, "completed").await;
    client.call(M::GET, "/v1/jobs", "/v1/jobs", &ops, None, S::OK).await;
    let path = format!("/v1/jobs/{id}");
    client.call(M::GET, "/v1/jobs/{id}", &path, &ops, None, S::OK).await;
    let labels = Some(json!({"name": "renamed", "metadata": {"k": null, "new": true}}));
    client.call(M::PATCH, "/v1/jobs/{id}", &path, &ops, labels, S::OK).await;
    let logs = format!("/v1/jobs/{id}/logs");
    client.call(M::GET, "/v1/jobs/{id}/logs", &logs, &ops, None, S::OK).await;
    let events = server.request(M::GET, &format!("/v1/jobs/{id}/events"), &ops);
    client.call_raw(events, "get", "/v1/jobs/{id}/events").await;
    let retry = format!("/v1/jobs/{id}/retry");
    client.call(M::POST, "/v1/jobs/{id}/retry", &retry, &ops, None, S::ACCEPTED).await;
    let clone = format!("/v1/jobs/{id}/clone");
    let args = Some(json!({"args": {"name": "Bob"}}));
    client.call(M::POST, "/v1/jobs/{id}/clone", &clone, &ops, args, S::ACCEPTED).await;
    client.call(M::DELETE, "/v1/jobs/{id}", &path, &ops, None, S::NO_CONTENT).await;

    // Workflows.
    let steps = json!({"name": "pair", "steps": [
        {"step": "a", "job": "acme.greeter", "args": {"name": "A"}},
        {"step": "b", "job": "acme.greeter", "depends_on": ["a"], "args": {"name": {"$result": "a", "pointer": "/greeting"}}},
    ]});
    let flow = client
        .call(M::POST, "/v1/workflows", "/v1/workflows", &ops, Some(steps), S::ACCEPTED)
        .await;
    let flow_id = flow["id"].as_str().unwrap().to_string();
    let b = flow["steps"][1]["job"].as_str().unwrap().to_string();
    wait_state(&server, &ops, &b, "completed").await;
    client.call(M::GET, "/v1/workflows", "/v1/workflows", &ops, None, S::OK).await;
    let one_flow = format!("/v1/workflows/{flow_id}");
    client.call(M::GET, "/v1/workflows/{id}", &one_flow, &ops, None, S::OK).await;
    let follow = server.request(M::GET, &format!("{one_flow}/events"), &ops);
    client.call_raw(follow, "get", "/v1/workflows/{id}/events").await;
    let cancel_flow = format!("{one_flow}/cancel");
    client.call(M::POST, "/v1/workflows/{id}/cancel", &cancel_flow, &ops, None, S::OK).await;
    let retry_flow = format!("{one_flow}/retry");
    client.call(M::POST, "/v1/workflows/{id}/retry", &retry_flow, &ops, None, S::CONFLICT).await;

    // Schedules.
    let nightly = json!({"name": "nightly", "cron": "0 3 * * *", "timezone": "Europe/Paris", "job": {"job": "acme.greeter", "args": {"name": "N"}}});
    let schedule = client
        .call(M::POST, "/v1/schedules", "/v1/schedules", &ops, Some(nightly), S::CREATED)
        .await;
    let one_schedule = format!("/v1/schedules/{}", schedule["id"].as_str().unwrap());
    client.call(M::GET, "/v1/schedules", "/v1/schedules", &ops, None, S::OK).await;
    client.call(M::GET, "/v1/schedules/{id}", &one_schedule, &ops, None, S::OK).await;
    let pause_schedule = format!("{one_schedule}/pause");
    client.call(M::POST, "/v1/schedules/{id}/pause", &pause_schedule, &ops, None, S::OK).await;
    let resume_schedule = format!("{one_schedule}/resume");
    client.call(M::POST, "/v1/schedules/{id}/resume", &resume_schedule, &ops, None, S::OK).await;
    client.call(M::DELETE, "/v1/schedules/{id}", &one_schedule, &ops, None, S::NO_CONTENT).await;

    // A long job holding a lock: locks, cancel.
    let sleep = json!({"job": "examples.sleep", "args": {"seconds": 60}, "lock": "printer"});
    let long = client.call(M::POST, "/v1/jobs", "/v1/jobs", &ops, Some(sleep), S::ACCEPTED).await;
    let long = long["id"].as_str().unwrap().to_string();
    wait_state(&server, &ops, &long, "running").await;
    client.call(M::GET, "/v1/locks", "/v1/locks", &ops, None, S::OK).await;
    let cancel = format!("/v1/jobs/{long}/cancel");
    client.call(M::POST, "/v1/jobs/{id}/cancel", &cancel, &ops, None, S::OK).await;
    wait_state(&server, &ops, &long, "cancelled").await;
    let held = json!({"job": "examples.sleep", "args": {"seconds": 60}, "lock": "scanner"});
    let holder = client.call(M::POST, "/v1/jobs", "/v1/jobs", &ops, Some(held), S::ACCEPTED).await;
    wait_state(&server, &ops, holder["id"].as_str().unwrap(), "running").await;
    let lock = "/v1/locks/scanner";
    client.call(M::DELETE, "/v1/locks/{name}", lock, &ops, None, S::NO_CONTENT).await;

    // Queues.
    client.call(M::GET, "/v1/queues", "/v1/queues", &ops, None, S::OK).await;
    let queue = "/v1/queues/default";
    client.call(M::GET, "/v1/queues/{name}", queue, &ops, None, S::OK).await;
    client.call(M::GET, "/v1/queues/{name}", "/v1/queues/idle", &ops, None, S::OK).await;
    let change = Some(json!({"concurrency": 4}));
    client.call(M::PATCH, "/v1/queues/{name}", queue, &ops, change, S::OK).await;
    let pause = "/v1/queues/default/pause";
    client.call(M::POST, "/v1/queues/{name}/pause", pause, &ops, None, S::OK).await;
    let resume = "/v1/queues/default/resume";
    client.call(M::POST, "/v1/queues/{name}/resume", resume, &ops, None, S::OK).await;

    // Workers.
    let workers = client.call(M::GET, "/v1/workers", "/v1/workers", &ops, None, S::OK).await;
    let worker = workers["workers"][0]["id"].as_str().unwrap().to_string();
    for action in ["pause", "resume"] {
        let path = format!("/v1/workers/{worker}/{action}");
        client.call(M::POST, "/v1/workers/{id}/{action}", &path, ADMIN, None, S::OK).await;
        let all = Some(json!({ "action": action }));
        client.call(M::POST, "/v1/workers", "/v1/workers", ADMIN, all, S::OK).await;
    }
    let ping = format!("/v1/workers/{worker}");
    client.call(M::GET, "/v1/workers/{id}", &ping, &ops, None, S::OK).await;
    let everyone = Some(json!({"job": "examples.hello", "args": {"name": "all"}}));
    let batch = Some(
        json!({"jobs": [{"job": "examples.hello", "args": {"name": "b"}}, {"job": "nope.nope"}]}),
    );
    client.call(M::POST, "/v1/jobs/batch", "/v1/jobs/batch", &ops, batch, S::OK).await;
    let broadcast = "/v1/jobs/broadcast";
    client.call(M::POST, broadcast, broadcast, &ops, everyone, S::ACCEPTED).await;

    // Tokens and tenants.
    let new = Some(json!({"name": "ci", "tenant": "acme", "role": "submitter"}));
    let token = client.call(M::POST, "/v1/tokens", "/v1/tokens", ADMIN, new, S::CREATED).await;
    client.call(M::GET, "/v1/tokens", "/v1/tokens", ADMIN, None, S::OK).await;
    let revoke = format!("/v1/tokens/{}", token["id"].as_str().unwrap());
    client.call(M::DELETE, "/v1/tokens/{id}", &revoke, ADMIN, None, S::NO_CONTENT).await;
    let quotas = Some(json!({"max_running": 5, "max_queued": 50}));
    client.call(M::PUT, "/v1/tenants/{name}", "/v1/tenants/acme", ADMIN, quotas, S::OK).await;
    client.call(M::GET, "/v1/tenants", "/v1/tenants", ADMIN, None, S::OK).await;
    client.call(M::GET, "/v1/tenants/{name}", "/v1/tenants/acme", &ops, None, S::OK).await;

    // Figures.
    client.call(M::GET, "/v1/stats", "/v1/stats", &ops, None, S::OK).await;
    client.call_raw(server.request(M::GET, "/metrics", ADMIN), "get", "/metrics").await;
    client.call(M::DELETE, "/v1/plugins/{name}", one, &ops, None, S::NO_CONTENT).await;

    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            documented.insert((method.clone(), path.clone()));
        }
    }
    let missed: Vec<_> = documented.difference(&client.covered).collect();
    assert!(missed.is_empty(), "operations this test did not call: {missed:?}");
}

/// A Python environment with openapi-python-client.
fn generator() -> std::path::PathBuf {
    python::venv("openapi-client-venv", "openapi-python-client==0.29.1", "openapi-python-client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_generated_from_the_document_calls_every_operation() {
    let server = TestServer::start().await;
    let (_, doc) = server.call(Method::GET, "/v1/openapi.json", "", None).await;
    let dir = tempfile::tempdir().unwrap();
    let doc_path = dir.path().join("openapi.json");
    std::fs::write(&doc_path, doc.to_string()).unwrap();
    let out = dir.path().join("client");
    let base = server.base.clone();
    let output = tokio::task::spawn_blocking(move || {
        let venv = generator();
        let generated = python::run(
            Command::new(venv.join("bin/openapi-python-client"))
                .args(["generate", "--meta", "none", "--path"])
                .arg(&doc_path)
                .arg("--output-path")
                .arg(out.join("jobhost_client")),
        );
        assert!(!generated.contains("will not be generated"), "{generated}");
        let driver = concat!(env!("CARGO_MANIFEST_DIR"), "/clients/generated_client.py");
        python::run(
            Command::new(venv.join("bin/python"))
                .arg(driver)
                .args([base.as_str(), ADMIN, jobhost_plugin_artifacts::HELLO])
                .env("PYTHONPATH", &out),
        )
    })
    .await
    .unwrap();
    assert!(output.contains("operations called"), "{output}");
}
