//! Uploaded plugins are known at start and made ready on their first job,
//! and only a bounded set of them stays ready: a host storing many plugins
//! starts and runs them without holding them all. Checked over real HTTP
//! with real uploads, jobs and a restart.

use jobhost::jobs::Role;
use jobhost_tests::server::{TestServer, enqueue, wait_state};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// A gauge of `/metrics`.
async fn gauge(server: &TestServer, name: &str) -> u64 {
    let response = server.request(Method::GET, "/metrics", jobhost_tests::server::ADMIN).send();
    let text = response.await.unwrap().text().await.unwrap();
    let line = text.lines().find(|line| line.starts_with(&format!("{name} "))).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

async fn upload(server: &TestServer, token: &str, name: &str, path: &str) {
    let bytes = std::fs::read(path).unwrap();
    let response = server.request(Method::POST, &format!("/v1/plugins/{name}"), token);
    let response = response.body(bytes).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::CREATED, "{}", response.text().await.unwrap());
}

/// Runs one job of `plugin` to its end; returns the job.
async fn run(server: &TestServer, token: &str, plugin: &str, args: Value) -> Value {
    let id = enqueue(server, token, json!({"job": plugin, "args": args})).await;
    wait_state(server, token, &id, "completed").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_are_made_ready_on_their_first_job_and_only_a_few_stay_ready() {
    let server = TestServer::start_with(|config| config.ready_plugins = 2).await;
    let ops = server.token("acme", "ops", Role::Operator).await;
    let other = server.token("globex", "gus", Role::Operator).await;
    upload(&server, &ops, "acme.hello", jobhost_plugin_artifacts::HELLO).await;
    upload(&server, &ops, "acme.count", jobhost_plugin_artifacts::WORDCOUNT).await;
    upload(&server, &other, "globex.hello", jobhost_plugin_artifacts::HELLO).await;
    assert_eq!(gauge(&server, "jobhost_plugins_ready").await, 2, "uploads are hot, two at most");

    let server = server.restart().await;
    assert_eq!(gauge(&server, "jobhost_plugins_ready").await, 0, "a restart loads no upload");
    let known = gauge(&server, "jobhost_plugins_known").await;
    assert!(known >= 3, "every upload is still known: {known}");
    let (status, listed) = server.call(Method::GET, "/v1/plugins/acme.count", &ops, None).await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    assert!(listed["exports"].to_string().contains("run"), "shown without loading it: {listed}");

    let counted = run(&server, &ops, "acme.count", json!({"text": "a b a", "top": 1})).await;
    assert_eq!(counted["result"]["total_words"], 3, "{counted}");
    assert_eq!(gauge(&server, "jobhost_plugins_ready").await, 1, "made ready by its job");
    let hello = run(&server, &ops, "acme.hello", json!({"name": "lazy"})).await;
    assert!(hello["result"].to_string().contains("lazy"), "{hello}");
    run(&server, &other, "globex.hello", json!({"name": "third"})).await;
    assert_eq!(gauge(&server, "jobhost_plugins_ready").await, 2, "the least recently used went");
    let again = run(&server, &ops, "acme.count", json!({"text": "x", "top": 1})).await;
    assert_eq!(again["result"]["total_words"], 1, "an evicted plugin loads again: {again}");

    let (status, _) = server.call(Method::GET, "/v1/plugins/acme.count", &other, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "known is not visible to another tenant");
}
