//! What clients of the four systems jobhost replaces (core4, Tethys,
//! Django-MOJO, CNaaS-NMS) do, over real HTTP, with two users of one tenant
//! and a second tenant where isolation is involved.

use jobhost::jobs::Role;
use jobhost_tests::server::{ADMIN, TestServer, enqueue, error_message, wait_state, workers};
use reqwest::{Method, StatusCode};
use serde_json::json;

/// Two submitters and a viewer of `acme`, a submitter of `globex`.
struct People {
    ada: String,
    bob: String,
    viewer: String,
    gus: String,
}

async fn people(server: &TestServer) -> People {
    People {
        ada: server.token("acme", "ada", Role::Submitter).await,
        bob: server.token("acme", "bob", Role::Submitter).await,
        viewer: server.token("acme", "vera", Role::Viewer).await,
        gus: server.token("globex", "gus", Role::Submitter).await,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_learns_the_job_at_once_and_gets_every_event_to_close() {
    let server = TestServer::start().await;
    let p = people(&server).await;
    for (args, lines) in [
        (json!({"seconds": 0.5, "steps": 10_000}), 10_000),
        (json!({"seconds": 0, "steps": 100_000}), 10_001),
    ] {
        let response = server
            .request(Method::POST, "/v1/jobs?follow=true", &p.ada)
            .json(&json!({"job": "examples.sleep", "args": args}))
            .send()
            .await
            .unwrap();
        let id = response.headers()["job-id"].to_str().unwrap().to_string();
        assert_eq!(response.headers()["location"], format!("/v1/jobs/{id}").as_str());
        let events = TestServer::read_events(response).await;
        assert_eq!(events.last().unwrap().event, "close", "the stream ends with close");
        assert!(events.iter().all(|e| e.data["job"] == id.as_str()), "every event names the job");
        let logs: Vec<u64> = events
            .iter()
            .filter(|e| e.event == "log")
            .map(|e| e.data["seq"].as_u64().unwrap())
            .collect();
        assert_eq!(logs, (1..=lines).collect::<Vec<u64>>(), "every line, in order");
        let states: Vec<&str> = events
            .iter()
            .filter(|e| e.event == "state")
            .filter_map(|e| e.data["state"].as_str())
            .collect();
        assert_eq!(states.last(), Some(&"completed"));
        let progress = events.iter().rev().find(|e| e.event == "progress");
        let percent = progress.map(|e| e.data["percent"].clone());
        assert_eq!(percent, Some(json!(100.0)), "the last progress is the job's final one");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submitter_sees_its_own_jobs_and_not_the_tenants_figures() {
    let server = TestServer::start().await;
    let p = people(&server).await;
    for path in ["/v1/queues", "/v1/queues/default", "/v1/stats", "/v1/locks"] {
        let (status, body) = server.call(Method::GET, path, &p.ada, None).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {body}");
        let (status, body) = server.call(Method::GET, path, &p.viewer, None).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labels_change_after_enqueue_and_viewers_list_by_owner() {
    let server = TestServer::start().await;
    let p = people(&server).await;
    let hello = |name: &str| json!({"job": "examples.hello", "args": {"name": name}, "metadata": {"keep": 1, "drop": 2}});
    let mine = enqueue(&server, &p.ada, hello("ada")).await;
    let theirs = enqueue(&server, &p.bob, hello("bob")).await;
    let change = json!({"name": "monthly", "description": "the report", "tags": ["q4"], "metadata": {"drop": null, "new": "x"}});
    let path = format!("/v1/jobs/{mine}");
    let (status, job) = server.call(Method::PATCH, &path, &p.ada, Some(change.clone())).await;
    assert_eq!(status, StatusCode::OK, "{job}");
    assert_eq!(
        (job["name"].as_str(), job["description"].as_str()),
        (Some("monthly"), Some("the report"))
    );
    assert_eq!(job["tags"], json!(["q4"]));
    assert_eq!(job["metadata"], json!({"keep": 1, "new": "x"}));
    let (status, _) =
        server.call(Method::PATCH, &format!("/v1/jobs/{theirs}"), &p.ada, Some(change)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "another submitter's job");
    let (status, body) =
        server.call(Method::PATCH, &path, &p.ada, Some(json!({"name": "n".repeat(10_000)}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    let (status, page) = server.call(Method::GET, "/v1/jobs?owner=bob", &p.viewer, None).await;
    assert_eq!(status, StatusCode::OK);
    let owners: Vec<&str> =
        page["jobs"].as_array().unwrap().iter().map(|j| j["owner"].as_str().unwrap()).collect();
    assert_eq!(owners, ["bob"]);
    let (status, _) = server.call(Method::GET, "/v1/jobs?owner=bob", &p.ada, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a submitter lists its own jobs only");
    let (_, page) = server.call(Method::GET, "/v1/jobs?owner=bob", &p.gus, None).await;
    assert!(page.get("jobs").is_none(), "{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn times_may_be_rfc3339_wherever_milliseconds_are() {
    let server = TestServer::start().await;
    let p = people(&server).await;
    let body = json!({"job": "examples.hello", "args": {"name": "later"},
                      "run_at": "2099-01-01T00:00:00Z", "expires_at": "2099-01-02T00:00:00+00:00"});
    let id = enqueue(&server, &p.ada, body).await;
    let (_, job) = server.call(Method::GET, &format!("/v1/jobs/{id}"), &p.ada, None).await;
    assert_eq!(job["state"], "scheduled");
    assert_eq!(job["run_at"], 4_070_908_800_000u64);
    assert_eq!(job["expires_at"], 4_070_995_200_000u64);
    let (status, page) =
        server.call(Method::GET, "/v1/jobs?since=2020-01-01T00:00:00Z", &p.ada, None).await;
    assert_eq!((status, page["total"].as_u64()), (StatusCode::OK, Some(1)));
    let (status, page) =
        server.call(Method::GET, "/v1/jobs?since=2098-01-01T00:00:00Z", &p.ada, None).await;
    assert_eq!((status, page["total"].as_u64()), (StatusCode::OK, Some(0)));
    let bad = json!({"job": "examples.hello", "run_at": "next tuesday"});
    let (status, body) = server.call(Method::POST, "/v1/jobs", &p.ada, Some(bad)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(error_message(&body).contains("RFC 3339"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_queue_answers_its_health() {
    let server = TestServer::start().await;
    let p = people(&server).await;
    let id = enqueue(
        &server,
        &p.ada,
        json!({"job": "examples.hello", "args": {"name": "q"}, "queue": "reports"}),
    )
    .await;
    wait_state(&server, &p.ada, &id, "completed").await;
    let (status, queue) = server.call(Method::GET, "/v1/queues/reports", &p.viewer, None).await;
    assert_eq!(status, StatusCode::OK, "{queue}");
    assert_eq!(
        (queue["queue"].as_str(), &queue["counts"]["completed"]),
        (Some("reports"), &json!(1))
    );
    let (status, empty) = server.call(Method::GET, "/v1/queues/idle", &p.viewer, None).await;
    assert_eq!((status, &empty["counts"]), (StatusCode::OK, &json!({})));
    let (_, other) = server.call(Method::GET, "/v1/queues/reports", ADMIN, None).await;
    assert_eq!(other["counts"], json!({}), "another tenant's queue of the same name is its own");
}

/// The reasons of a job's journal, oldest first.
async fn reasons(server: &TestServer, token: &str, id: &str) -> Vec<String> {
    let (_, job) = server.call(Method::GET, &format!("/v1/jobs/{id}"), token, None).await;
    job["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["reason"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jobs_own_error_is_retried_when_retries_were_asked_unless_it_says_otherwise() {
    let server = TestServer::start().await;
    let p = people(&server).await;
    let failing = |extra: serde_json::Value| {
        let mut body = json!({"job": "examples.fail", "args": {"message": "mail server down"},
                              "max_retries": 2, "backoff": {"base_ms": 50, "max_ms": 100}});
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        body
    };
    let id = enqueue(&server, &p.ada, failing(json!({}))).await;
    let job = wait_state(&server, &p.ada, &id, "failed").await;
    assert_eq!((job["attempt"].as_u64(), &job["error"]["kind"]), (Some(3), &json!("plugin_error")));
    let why = reasons(&server, &p.ada, &id).await;
    assert!(
        why.iter().any(|r| r.starts_with("plugin_error: mail server down; retry 1 of 2")),
        "{why:?}"
    );

    let id = enqueue(&server, &p.ada, failing(json!({"retry_on": ["timeout"]}))).await;
    let job = wait_state(&server, &p.ada, &id, "failed").await;
    assert_eq!((job["attempt"].as_u64(), &job["retry_on"]), (Some(1), &json!(["timeout"])));

    let ops = server.token("acme", "ops", Role::Operator).await;
    let component = std::fs::read(jobhost_plugin_artifacts::FAIL).unwrap();
    let upload = |query: &str| {
        server
            .request(Method::POST, &format!("/v1/plugins/acme.flaky{query}"), &ops)
            .body(component.clone())
            .send()
    };
    assert_eq!(upload("?retry_on=sometimes").await.unwrap().status(), StatusCode::BAD_REQUEST);
    assert_eq!(upload("?retry_on=timeout").await.unwrap().status(), StatusCode::CREATED);
    let plugin_default = json!({"job": "acme.flaky", "args": {}, "max_retries": 2});
    let id = enqueue(&server, &p.ada, plugin_default).await;
    let job = wait_state(&server, &p.ada, &id, "failed").await;
    assert_eq!(job["attempt"], 1, "the plugin retries timeouts only: {job}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_and_clone_take_new_args_time_queue_and_priority() {
    let server = TestServer::start().await;
    let p = people(&server).await;
    let id =
        enqueue(&server, &p.ada, json!({"job": "examples.hello", "args": {"name": "first"}})).await;
    wait_state(&server, &p.ada, &id, "completed").await;

    let change =
        json!({"args": {"name": "again"}, "delay_ms": 60_000, "queue": "later", "priority": 5});
    let (status, retried) =
        server.call(Method::POST, &format!("/v1/jobs/{id}/retry"), &p.ada, Some(change)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{retried}");
    assert_eq!(
        (retried["state"].as_str(), retried["queue"].as_str()),
        (Some("scheduled"), Some("later"))
    );
    assert_eq!(
        (retried["priority"].as_i64(), &retried["args"]),
        (Some(5), &json!({"name": "again"}))
    );
    assert_eq!(retried["retry_of"].as_str(), Some(id.as_str()));

    let change = json!({"run_at": "2099-01-01T00:00:00Z", "queue": "archive"});
    let (status, cloned) =
        server.call(Method::POST, &format!("/v1/jobs/{id}/clone"), &p.ada, Some(change)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{cloned}");
    assert_eq!(
        (cloned["run_at"].as_u64(), cloned["queue"].as_str()),
        (Some(4_070_908_800_000), Some("archive"))
    );
    assert_eq!(cloned["args"], json!({"name": "first"}), "args kept when not given");

    for (action, body, named) in [
        ("clone", json!({"nope": 1}), "nope"),
        ("clone", json!({"priority": 5000}), "priority"),
        ("clone", json!({"queue": "no spaces"}), "queue"),
        ("clone", json!({"delay_ms": 1, "run_at": 1}), "delay_ms"),
    ] {
        let (status, answer) =
            server.call(Method::POST, &format!("/v1/jobs/{id}/{action}"), &p.ada, Some(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        assert!(error_message(&answer).contains(named), "{named}: {answer}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_sets_how_many_lost_workers_fail_a_job_and_the_journal_says_so() {
    use jobhost::jobs::now_ms;
    use jobhost::storage::ClaimRules;
    let server = TestServer::start().await;
    let ops = server.token("acme", "ops", Role::Operator).await;
    let path = "/v1/queues/fragile";
    let held = json!({"paused": true, "max_lost_leases": 1});
    let (status, settings) = server.call(Method::PATCH, path, &ops, Some(held)).await;
    assert_eq!((status, settings["max_lost_leases"].as_u64()), (StatusCode::OK, Some(1)));
    let (status, body) =
        server.call(Method::PATCH, path, &ops, Some(json!({"max_lost_leases": 0}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let id = enqueue(
        &server,
        &ops,
        json!({"job": "examples.hello", "args": {"name": "x"}, "queue": "fragile"}),
    )
    .await;

    // This host stops taking jobs; a worker that dies claims this one.
    server.stop_dispatching().await;
    server.call(Method::PATCH, path, &ops, Some(json!({"paused": false}))).await;
    let dead = ClaimRules { worker: "doomed".into(), max: 1, now: now_ms(), lease_ms: 0 };
    assert_eq!(server.storage.claim(dead).await.unwrap().len(), 1);
    let job = wait_state(&server, &ops, &id, "failed").await;
    assert!(job["error"]["message"].as_str().unwrap().contains("lost-worker rule"), "{job}");
    let why = reasons(&server, &ops, &id).await;
    assert!(why.last().unwrap().contains("failed by the lost-worker rule"), "{why:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runners_pause_without_refusing_jobs_answer_pings_broadcast_and_stop() {
    let server = TestServer::start().await;
    let p = people(&server).await;
    let workers = workers(&server, &p.viewer).await;
    let worker = workers[0]["id"].as_str().unwrap().to_string();

    // Pausing every worker at once: jobs are still taken, and wait.
    let (status, all) =
        server.call(Method::POST, "/v1/workers", ADMIN, Some(json!({"action": "pause"}))).await;
    assert_eq!(status, StatusCode::OK, "{all}");
    assert!(all["workers"].as_array().unwrap().iter().all(|w| w["mode"] == "paused"), "{all}");
    let held =
        enqueue(&server, &p.ada, json!({"job": "examples.hello", "args": {"name": "held"}})).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let (_, job) = server.call(Method::GET, &format!("/v1/jobs/{held}"), &p.ada, None).await;
    assert_eq!(job["state"], "pending", "a paused worker runs nothing");
    let (status, _) =
        server.call(Method::POST, "/v1/workers", &p.ada, Some(json!({"action": "resume"}))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "only a host admin commands workers");
    server.call(Method::POST, "/v1/workers", ADMIN, Some(json!({"action": "resume"}))).await;
    wait_state(&server, &p.ada, &held, "completed").await;

    // Ping.
    let (status, ping) =
        server.call(Method::GET, &format!("/v1/workers/{worker}"), &p.viewer, None).await;
    assert_eq!(
        (status, ping["slots"].as_u64(), ping["mode"].as_str()),
        (StatusCode::OK, Some(64), Some("active"))
    );
    assert!(ping["heartbeat_age_ms"].as_u64().unwrap() < 60_000, "{ping}");
    let (status, _) = server.call(Method::GET, "/v1/workers/nobody", &p.viewer, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // A broadcast: one copy per live worker, linked by its id.
    let body = json!({"job": "examples.hello", "args": {"name": "everyone"}});
    let (status, sent) = server.call(Method::POST, "/v1/jobs/broadcast", &p.ada, Some(body)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{sent}");
    let copies = sent["jobs"].as_array().unwrap();
    assert_eq!(copies.len(), 1, "one live worker");
    assert_eq!(copies[0]["broadcast"], sent["broadcast"]);
    assert_eq!(copies[0]["pinned_to"].as_str(), Some(worker.as_str()));
    let copy = copies[0]["id"].as_str().unwrap().to_string();
    wait_state(&server, &p.ada, &copy, "completed").await;
    let (status, _) = server.call(Method::GET, &format!("/v1/jobs/{copy}"), &p.bob, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "a copy is its submitter's");

    // Stopping the worker: its running job finishes, then its host stops.
    let slow =
        enqueue(&server, &p.ada, json!({"job": "examples.sleep", "args": {"seconds": 0.5}})).await;
    wait_state(&server, &p.ada, &slow, "running").await;
    let (status, stopping) =
        server.call(Method::POST, &format!("/v1/workers/{worker}/stop"), ADMIN, None).await;
    assert_eq!((status, stopping["mode"].as_str()), (StatusCode::OK, Some("stopping")));
    let mut stopped = false;
    for _ in 0..600 {
        if server.request(Method::GET, "/v1/health", "").send().await.is_err() {
            stopped = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(stopped, "the host stopped serving");
    let mut state = jobhost::jobs::JobState::Running;
    for _ in 0..600 {
        state = server.storage.get(slow.parse().unwrap()).await.unwrap().state;
        if state.is_terminal() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(state, jobhost::jobs::JobState::Completed, "the running job finished, not dropped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_runs_the_plugin_version_it_was_enqueued_with() {
    let server = TestServer::start().await;
    let ops = server.token("acme", "ops", Role::Operator).await;
    let upload = |path: &str| {
        let bytes = std::fs::read(path).unwrap();
        server.request(Method::PUT, "/v1/plugins/acme.greet", &ops).body(bytes).send()
    };
    let v1 = upload(jobhost_plugin_artifacts::HELLO)
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    let v1 = v1["digest"].as_str().unwrap().to_string();
    server.call(Method::PATCH, "/v1/queues/held", &ops, Some(json!({"paused": true}))).await;
    let job = |version: Option<&str>| {
        let mut body =
            json!({"job": "acme.greet", "args": {"name": "Ada", "text": "a b a"}, "queue": "held"});
        if let Some(version) = version {
            body["version"] = json!(version);
        }
        body
    };
    let first = enqueue(&server, &ops, job(None)).await;
    let v2 = upload(jobhost_plugin_artifacts::WORDCOUNT)
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    let v2 = v2["digest"].as_str().unwrap().to_string();
    assert_ne!(v1, v2);
    let pinned = enqueue(&server, &ops, job(Some(&v1))).await;
    let latest = enqueue(&server, &ops, job(None)).await;

    let (status, versions) =
        server.call(Method::GET, "/v1/plugins/acme.greet/versions", &ops, None).await;
    assert_eq!(status, StatusCode::OK, "{versions}");
    let kept: Vec<(String, bool, u64)> = versions["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["digest"].as_str().unwrap().to_string(),
                v["current"].as_bool().unwrap(),
                v["jobs"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(kept, [(v1.clone(), false, 2), (v2.clone(), true, 1)]);

    let (status, body) = server.call(Method::DELETE, "/v1/plugins/acme.greet", &ops, None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(error_message(&body).contains("3 waiting or running jobs"), "{body}");
    let old = format!("/v1/plugins/acme.greet/versions/{v1}");
    let (status, body) = server.call(Method::DELETE, &old, &ops, None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(error_message(&body).contains("2 waiting or running jobs"), "{body}");
    let unknown = job(Some("sha256:0000"));
    let (status, _) = server.call(Method::POST, "/v1/jobs", &ops, Some(unknown)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    server.call(Method::PATCH, "/v1/queues/held", &ops, Some(json!({"paused": false}))).await;
    for (id, digest) in [(&first, &v1), (&pinned, &v1), (&latest, &v2)] {
        let done = wait_state(&server, &ops, id, "completed").await;
        assert_eq!(done["plugin_digest"].as_str(), Some(digest.as_str()));
        let ran_hello = done["result"].to_string().contains("Ada");
        assert_eq!(ran_hello, digest == &v1, "{id} ran the version it was enqueued with: {done}");
    }
    let (status, _) = server.call(Method::DELETE, &old, &ops, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "no job needs it any more");
    let (status, _) = server.call(Method::DELETE, "/v1/plugins/acme.greet", &ops, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_position_counts_only_the_callers_own_queue() {
    let server = TestServer::start().await;
    let p = people(&server).await;
    for tenant in ["acme", "globex"] {
        let ops = server.token(tenant, &format!("{tenant}-ops"), Role::Operator).await;
        let (status, _) =
            server.call(Method::PATCH, "/v1/queues/q", &ops, Some(json!({"paused": true}))).await;
        assert_eq!(status, StatusCode::OK);
    }
    let hello = json!({"job": "examples.hello", "args": {"name": "x"}, "queue": "q"});
    for _ in 0..5 {
        enqueue(&server, &p.gus, hello.clone()).await;
    }
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(enqueue(&server, &p.ada, hello.clone()).await);
    }
    let (_, job) = server.call(Method::GET, &format!("/v1/jobs/{}", ids[2]), &p.ada, None).await;
    assert_eq!(job["queue_position"], 2, "two of its own queue ahead, none of globex's: {job}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_enqueues_many_jobs_with_a_result_for_each() {
    let server = TestServer::start_with(|config| config.tenant_max_queued = 501).await;
    let p = people(&server).await;
    // A paused queue keeps every job waiting, so the quota is reached exactly.
    let ops = server.token("acme", "ops", Role::Operator).await;
    server.call(Method::POST, "/v1/queues/held/pause", &ops, None).await;
    let hello =
        |name: String| json!({"job": "examples.hello", "queue": "held", "args": {"name": name}});
    let mut known = hello("k".into());
    known["idempotency_key"] = json!("known");
    let first = enqueue(&server, &p.ada, known.clone()).await;
    let mut jobs: Vec<serde_json::Value> = (0..500).map(|i| hello(format!("n{i}"))).collect();
    jobs.push(known);
    jobs.push(json!({"job": "examples.nothing"}));
    jobs.push(hello("over".into()));
    let (status, batch) =
        server.call(Method::POST, "/v1/jobs/batch", &p.ada, Some(json!({"jobs": jobs}))).await;
    assert_eq!(status, StatusCode::OK, "{batch}");
    let results = batch["results"].as_array().unwrap();
    assert_eq!((results.len(), batch["created"].as_u64()), (503, Some(500)));
    assert!(results[..500].iter().all(|r| r["status"] == 202 && r["job"]["state"] == "pending"));
    assert_eq!(
        (results[500]["status"].as_u64(), results[500]["job"]["id"].as_str()),
        (Some(200), Some(first.as_str()))
    );
    assert_eq!(results[501]["status"], 404);
    assert_eq!(
        (results[502]["status"].as_u64(), results[502]["error"]["error"]["code"].as_str()),
        (Some(429), Some("over_quota"))
    );
    server.call(Method::POST, "/v1/queues/held/resume", &ops, None).await;
    let last = results[499]["job"]["id"].as_str().unwrap();
    wait_state(&server, &p.ada, last, "completed").await;

    let (status, _) =
        server.call(Method::POST, "/v1/jobs/batch", &p.ada, Some(json!({"jobs": []}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) =
        server.call(Method::POST, "/v1/jobs/batch", &p.viewer, Some(json!({"jobs": []}))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}
