//! Admin routes over real HTTP: tokens, tenants and their quotas (429 over
//! a quota, limits capped per tenant), stats and Prometheus metrics.

use jobhost::jobs::Role;
use jobhost_tests::server::{ADMIN, TestServer, enqueue, error_code, error_message, wait_state};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_create_list_and_revoke_tokens() {
    let server = TestServer::start().await;
    let operator = server.token("acme", "ops", Role::Operator).await;
    let new = json!({"name": "ci", "tenant": "acme", "role": "submitter"});
    let (status, body) =
        server.call(Method::POST, "/v1/tokens", &operator, Some(new.clone())).await;
    assert_eq!((status, error_code(&body)), (StatusCode::FORBIDDEN, "forbidden"));

    let (status, token) = server.call(Method::POST, "/v1/tokens", ADMIN, Some(new)).await;
    assert_eq!(status, StatusCode::CREATED, "{token}");
    let secret = token["secret"].as_str().unwrap();
    let id = token["id"].as_str().unwrap();
    let (status, _) = server.call(Method::GET, "/v1/jobs", secret, None).await;
    assert_eq!(status, StatusCode::OK, "the new token works at once");

    let (_, list) = server.call(Method::GET, "/v1/tokens", ADMIN, None).await;
    let listed: Vec<&Value> =
        list["tokens"].as_array().unwrap().iter().filter(|t| t["id"] == id).collect();
    assert_eq!(listed.len(), 1, "{list}");
    assert_eq!(
        (listed[0]["name"].clone(), listed[0]["role"].clone()),
        (json!("ci"), json!("submitter"))
    );
    assert!(!list.to_string().contains(secret), "secrets are never listed");

    let (status, _) = server.call(Method::DELETE, &format!("/v1/tokens/{id}"), ADMIN, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = server.call(Method::GET, "/v1/jobs", secret, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a revoked token stops working");
    let (status, _) = server.call(Method::DELETE, &format!("/v1/tokens/{id}"), ADMIN, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let bad_role = json!({"name": "x", "role": "god"});
    let (status, body) = server.call(Method::POST, "/v1/tokens", ADMIN, Some(bad_role)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(error_message(&body).contains("god"), "{body}");
    let bad_tenant = json!({"name": "x", "tenant": "a/b", "role": "viewer"});
    let (status, body) = server.call(Method::POST, "/v1/tokens", ADMIN, Some(bad_tenant)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(error_message(&body).contains("tenant"), "{body}");

    let admin_id = list["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["role"] == "host_admin")
        .map(|t| t["id"].as_str().unwrap().to_string())
        .unwrap();
    let (status, body) =
        server.call(Method::DELETE, &format!("/v1/tokens/{admin_id}"), ADMIN, None).await;
    assert_eq!((status, error_code(&body)), (StatusCode::CONFLICT, "conflict"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_over_its_queued_quota_gets_429_and_its_limit_caps_apply() {
    let server = TestServer::start().await;
    let ops = server.token("acme", "ops", Role::Operator).await;
    let quotas = json!({"max_queued": 2, "max_limits": {"fuel": 50_000_000}});
    let (status, _) =
        server.call(Method::PUT, "/v1/tenants/acme", &ops, Some(quotas.clone())).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "only admins set quotas");
    let (status, tenant) = server.call(Method::PUT, "/v1/tenants/acme", ADMIN, Some(quotas)).await;
    assert_eq!(status, StatusCode::OK, "{tenant}");
    assert_eq!((tenant["max_queued"].clone(), tenant["waiting"].clone()), (json!(2), json!(0)));

    // A paused queue keeps jobs waiting: two fit, the third is over quota.
    server.call(Method::POST, "/v1/queues/held/pause", &ops, None).await;
    let held = json!({"job": "examples.hello", "queue": "held", "args": {"name": "q"}});
    let first = enqueue(&server, &ops, held.clone()).await;
    enqueue(&server, &ops, held.clone()).await;
    let (status, body) = server.call(Method::POST, "/v1/jobs", &ops, Some(held.clone())).await;
    assert_eq!((status, error_code(&body)), (StatusCode::TOO_MANY_REQUESTS, "over_quota"));
    assert!(error_message(&body).contains("max_queued"), "{body}");
    let (status, _) =
        server.call(Method::POST, &format!("/v1/jobs/{first}/clone"), &ops, None).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "a clone is a new job too");
    let other = server.token("other", "ops", Role::Operator).await;
    enqueue(&server, &other, held.clone()).await;

    let (_, mine) = server.call(Method::GET, "/v1/tenants/acme", &ops, None).await;
    assert_eq!(mine["waiting"], 2);
    let (status, _) = server.call(Method::GET, "/v1/tenants/other", &ops, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "a tenant sees only itself");

    // Asking above the tenant's cap is refused; asking nothing gets the cap.
    let greedy =
        json!({"job": "examples.hello", "args": {"name": "g"}, "limits": {"fuel": 60_000_000}});
    let (status, body) = server.call(Method::POST, "/v1/jobs", &ops, Some(greedy)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(error_message(&body).contains("limits.fuel"), "{body}");
    server.call(Method::POST, "/v1/queues/held/resume", &ops, None).await;
    wait_state(&server, &ops, &first, "completed").await;
    let id = enqueue(&server, &ops, json!({"job": "examples.hello", "args": {"name": "s"}})).await;
    let job = wait_state(&server, &ops, &id, "completed").await;
    assert_eq!(job["limits"]["fuel"], 50_000_000, "{job}");

    let (_, all) = server.call(Method::GET, "/v1/tenants", ADMIN, None).await;
    assert_eq!(all["tenants"][0]["name"], "acme", "{all}");
    let too_much = json!({"max_limits": {"memory_bytes": 1u64 << 50}});
    let (status, body) = server.call(Method::PUT, "/v1/tenants/acme", ADMIN, Some(too_much)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(error_message(&body).contains("max_limits.memory_bytes"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_sum_the_tenant_and_metrics_show_the_host() {
    let server = TestServer::start().await;
    let ops = server.token("stats", "ops", Role::Operator).await;
    let id = enqueue(&server, &ops, json!({"job": "examples.hello", "args": {"name": "s"}})).await;
    wait_state(&server, &ops, &id, "completed").await;
    let failing = enqueue(&server, &ops, json!({"job": "examples.fail", "queue": "q2"})).await;
    wait_state(&server, &ops, &failing, "failed").await;

    let (status, stats) = server.call(Method::GET, "/v1/stats", &ops, None).await;
    assert_eq!(status, StatusCode::OK, "{stats}");
    assert_eq!(stats["jobs"], json!({"completed": 1, "failed": 1}));
    assert_eq!(stats["queues"], 2);
    assert_eq!(stats["last_hour"]["success_rate"], 0.5);
    assert_eq!(stats["host"]["slots"], 64);
    let minutes = stats["last_hour"]["minutes"].as_array().unwrap();
    assert_eq!(minutes.len(), 60, "an hour of minutes, oldest first");
    let starts: Vec<u64> = minutes.iter().map(|m| m["start"].as_u64().unwrap()).collect();
    assert!(starts.windows(2).all(|w| w[1] == w[0] + 60_000), "{starts:?}");
    let sum = |key: &str| minutes.iter().map(|m| m[key].as_u64().unwrap()).sum::<u64>();
    assert_eq!((sum("completed"), sum("failed")), (1, 1), "each finished job in its minute");
    let now = jobhost::jobs::now_ms();
    assert!(now >= starts[59] && now < starts[59] + 2 * 60_000, "the last minute is now");

    let (status, _) = server.call(Method::GET, "/metrics", &ops, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let response = server.request(Method::GET, "/metrics", ADMIN).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    for line in [
        "jobhost_jobs{tenant=\"stats\",queue=\"default\",state=\"completed\"} 1",
        "jobhost_jobs{tenant=\"stats\",queue=\"q2\",state=\"failed\"} 1",
        "jobhost_worker_slots 64",
        "# TYPE jobhost_commits_total counter",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
    }
}
