//! Child jobs: a plugin built against `jobhost:plugin@0.2.0` enqueues jobs
//! from inside its run, within its tenant's quotas (count and depth), and
//! parent and children link to each other; a plugin built against 0.1.0
//! still runs on the same host.

use jobhost::jobs::Role;
use jobhost_tests::server::{ADMIN, TestServer, enqueue, wait_state};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

async fn quotas(server: &TestServer, tenant: &str, quotas: Value) {
    let path = format!("/v1/tenants/{tenant}");
    let (status, body) = server.call(Method::PUT, &path, ADMIN, Some(quotas)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn a_plugin_spawns_ten_children_under_a_quota_of_five_and_five_are_refused() {
    let server = TestServer::start().await;
    quotas(&server, "acme", json!({"max_children": 5})).await;
    let ada = server.token("acme", "ada", Role::Submitter).await;
    let body = json!({"job": "tests.spawner", "args": {"job": "tests.echo", "count": 10, "args": {"from": "parent"}}});
    let parent_id = enqueue(&server, &ada, body).await;
    let parent = wait_state(&server, &ada, &parent_id, "completed").await;
    let children: Vec<String> = parent["result"]["children"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| id.as_str().unwrap().to_string())
        .collect();
    let refused = parent["result"]["refused"].as_array().unwrap();
    assert_eq!((children.len(), refused.len()), (5, 5), "{parent}");
    for why in refused {
        let why = why.as_str().unwrap();
        assert!(why.contains("max_children quota") && why.contains("is 5"), "{why}");
    }
    assert_eq!(parent["children"], json!(children), "the parent lists its children");
    for (n, id) in children.iter().enumerate() {
        let child = wait_state(&server, &ada, id, "completed").await;
        assert_eq!(child["parent"], json!(parent_id));
        assert_eq!(child["result"], json!({"from": "parent", "n": n}));
        assert_eq!(
            (child["tenant"].as_str(), child["owner"].as_str()),
            (Some("acme"), Some("ada"))
        );
    }
    // Another tenant sees none of them.
    let eve = server.token("globex", "eve", Role::Admin).await;
    let (status, _) =
        server.call(Method::GET, &format!("/v1/jobs/{}", children[0]), &eve, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_child_may_not_spawn_deeper_than_the_tenants_max_spawn_depth() {
    let server = TestServer::start().await;
    quotas(&server, "acme", json!({"max_spawn_depth": 1})).await;
    let admin = server.token("acme", "root", Role::Admin).await;
    let grandchild = json!({"job": "tests.echo", "count": 1});
    let body = json!({"job": "tests.spawner", "args": {"job": "tests.spawner", "count": 1, "args": grandchild}});
    let parent_id = enqueue(&server, &admin, body).await;
    let parent = wait_state(&server, &admin, &parent_id, "completed").await;
    let child_id = parent["result"]["children"][0].as_str().unwrap().to_string();
    let child = wait_state(&server, &admin, &child_id, "completed").await;
    assert_eq!(child["result"]["children"], json!([]));
    let why = child["result"]["refused"][0].as_str().unwrap();
    assert!(why.contains("max_spawn_depth quota") && why.contains("is 1"), "{why}");
}

#[tokio::test]
async fn a_bad_spawn_is_refused_with_the_reason_and_the_parent_goes_on() {
    let server = TestServer::start().await;
    let cases = [
        (json!({"job": "no.such", "count": 1}), "no.such"),
        (json!({"job": "tests.echo", "count": 1, "options": {"bogus": 1}}), "bogus"),
        (json!({"job": "tests.echo", "count": 1, "options": {"priority": 5000}}), "priority"),
    ];
    for (args, says) in cases {
        let id = enqueue(&server, ADMIN, json!({"job": "tests.spawner", "args": args})).await;
        let parent = wait_state(&server, ADMIN, &id, "completed").await;
        let why = parent["result"]["refused"][0].as_str().unwrap_or_default();
        assert!(why.contains(says), "{says}: {parent}");
        assert_eq!(parent["children"], json!([]));
    }
}

#[tokio::test]
async fn a_plugin_built_against_0_1_0_still_runs() {
    let server = TestServer::start().await;
    let id = enqueue(&server, ADMIN, json!({"job": "tests.legacy", "args": {"k": 1}})).await;
    let job = wait_state(&server, ADMIN, &id, "completed").await;
    assert_eq!(job["result"], json!({"args": {"k": 1}, "job_id": id, "interface": "0.1.0"}));
    assert_eq!(job["progress"]["percent"], 100.0);
    let (_, logs) = server.call(Method::GET, &format!("/v1/jobs/{id}/logs"), ADMIN, None).await;
    assert_eq!(logs["logs"][0]["message"], "built against 0.1.0");
}
