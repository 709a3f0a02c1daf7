//! Dependencies, chains and workflows on a real server: jobs that wait for
//! others and take their results, a failure that stops what depends on it,
//! a workflow's aggregate state, its SSE stream, cancel and retry, as a
//! client sees them over HTTP.

use jobhost::jobs::Role;
use jobhost_tests::server::{ADMIN, TestServer, enqueue, error_message, wait_state};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;

async fn get(server: &TestServer, token: &str, path: &str) -> Value {
    let (status, body) = server.call(Method::GET, path, token, None).await;
    assert_eq!(status, StatusCode::OK, "{path}: {body}");
    body
}

async fn submit(server: &TestServer, token: &str, body: Value) -> Value {
    let (status, workflow) = server.call(Method::POST, "/v1/workflows", token, Some(body)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{workflow}");
    workflow
}

/// Polls the workflow until its state is `state`.
async fn wait_workflow(server: &TestServer, token: &str, id: &str, state: &str) -> Value {
    let mut workflow = Value::Null;
    for _ in 0..1200 {
        workflow = get(server, token, &format!("/v1/workflows/{id}")).await;
        if workflow["state"] == state {
            return workflow;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("workflow {id} never reached {state}: {workflow}");
}

fn step<'a>(workflow: &'a Value, name: &str) -> &'a Value {
    workflow["steps"].as_array().unwrap().iter().find(|s| s["step"] == name).unwrap()
}

fn diamond(fail_b: bool) -> Value {
    let b = if fail_b {
        json!({"step": "B", "job": "examples.fail", "depends_on": ["A"], "args": {"message": "B broke"}})
    } else {
        json!({"step": "B", "job": "tests.echo", "depends_on": ["A"], "args": {"from_a": {"$result": "A", "pointer": "/greeting"}, "side": "b"}})
    };
    json!({
        "name": "diamond",
        "steps": [
            {"step": "D", "job": "tests.echo", "depends_on": ["B", "C"], "args": {"b": {"$result": "B"}, "c": {"$result": "C"}}},
            b,
            {"step": "C", "job": "tests.echo", "depends_on": ["A"], "args": {"from_a": {"$result": "A", "pointer": "/greeting"}, "side": "c"}},
            {"step": "A", "job": "examples.hello", "args": {"name": "A"}},
        ]
    })
}

#[tokio::test]
async fn a_diamond_runs_in_order_and_d_receives_the_results_of_b_and_c() {
    let server = TestServer::start().await;
    let workflow = submit(&server, ADMIN, diamond(false)).await;
    assert_eq!(workflow["total"], 4);
    assert_eq!(step(&workflow, "D")["depends_on"], json!(["B", "C"]));
    let id = workflow["id"].as_str().unwrap();
    let done = wait_workflow(&server, ADMIN, id, "completed").await;
    assert_eq!((done["done"].clone(), done["percent"].clone()), (json!(4), json!(100.0)));
    let greeting = "Hello, A!";
    let d = step(&done, "D");
    assert_eq!(
        d["result"],
        json!({"b": {"from_a": greeting, "side": "b"}, "c": {"from_a": greeting, "side": "c"}})
    );
    // Each step ran only after what it depends on finished.
    let finished = |name: &str| step(&done, name)["finished_at"].as_u64().unwrap();
    let started = |name: &str| step(&done, name)["started_at"].as_u64().unwrap();
    assert!(started("B") >= finished("A") && started("C") >= finished("A"));
    assert!(started("D") >= finished("B").max(finished("C")));
    // The step's job knows its workflow, step and dependencies.
    let job = get(&server, ADMIN, &format!("/v1/jobs/{}", d["job"].as_str().unwrap())).await;
    assert_eq!((job["workflow"].as_str(), job["step"].as_str()), (Some(id), Some("D")));
    assert_eq!(job["depends_on"].as_array().unwrap().len(), 2);
    let listed = get(&server, ADMIN, "/v1/workflows").await;
    assert_eq!(listed["total"], 1);
    assert_eq!(listed["workflows"][0]["state"], "completed");
}

#[tokio::test]
async fn a_failing_step_stops_its_dependents_and_a_retry_runs_them_again() {
    let server = TestServer::start().await;
    let workflow = submit(&server, ADMIN, diamond(true)).await;
    let id = workflow["id"].as_str().unwrap();
    let failed = wait_workflow(&server, ADMIN, id, "failed").await;
    assert_eq!(step(&failed, "A")["state"], "completed");
    assert_eq!(step(&failed, "C")["state"], "completed");
    assert_eq!(step(&failed, "B")["state"], "failed");
    let d = step(&failed, "D");
    assert_eq!(d["state"], "cancelled");
    let why = d["error"]["message"].as_str().unwrap();
    assert!(why.contains("step B") && why.contains("failed"), "{why}");
    assert_eq!(failed["counts"], json!({"cancelled": 1, "completed": 2, "failed": 1}));

    let (status, retried) =
        server.call(Method::POST, &format!("/v1/workflows/{id}/retry"), ADMIN, None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{retried}");
    assert_eq!(retried["retries"], 1);
    // B and D run again as new jobs; A and C keep theirs.
    for name in ["B", "D"] {
        assert_ne!(step(&retried, name)["job"], step(&failed, name)["job"], "{name} is new");
    }
    for name in ["A", "C"] {
        assert_eq!(step(&retried, name)["job"], step(&failed, name)["job"], "{name} is kept");
    }
    let old_b =
        get(&server, ADMIN, &format!("/v1/jobs/{}", step(&failed, "B")["job"].as_str().unwrap()))
            .await;
    assert_eq!(old_b["retried_by"], step(&retried, "B")["job"]);
    // B fails the same way again, so D is cancelled again.
    let again = wait_workflow(&server, ADMIN, id, "failed").await;
    assert_eq!(step(&again, "D")["state"], "cancelled");
    let (status, body) =
        server.call(Method::POST, &format!("/v1/workflows/{id}/retry"), ADMIN, None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "a failed workflow can be retried again: {body}");
}

#[tokio::test]
async fn cancelling_a_workflow_cancels_its_unfinished_steps() {
    let server = TestServer::start().await;
    let body = json!({"steps": [
        {"step": "slow", "job": "examples.sleep", "args": {"seconds": 60}},
        {"step": "after", "job": "tests.echo", "depends_on": ["slow"]},
        {"step": "alone", "job": "tests.echo", "args": {"x": 1}},
    ]});
    let workflow = submit(&server, ADMIN, body).await;
    let id = workflow["id"].as_str().unwrap();
    wait_state(&server, ADMIN, step(&workflow, "slow")["job"].as_str().unwrap(), "running").await;
    wait_state(&server, ADMIN, step(&workflow, "alone")["job"].as_str().unwrap(), "completed")
        .await;
    let (status, _) =
        server.call(Method::POST, &format!("/v1/workflows/{id}/cancel"), ADMIN, None).await;
    assert_eq!(status, StatusCode::OK);
    let done = wait_workflow(&server, ADMIN, id, "various_complete").await;
    assert_eq!(step(&done, "slow")["state"], "cancelled");
    assert_eq!(step(&done, "after")["state"], "cancelled");
    assert_eq!(step(&done, "alone")["state"], "completed");
    // Nothing is left to retry but the cancelled steps.
    let (status, retried) =
        server.call(Method::POST, &format!("/v1/workflows/{id}/retry"), ADMIN, None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{retried}");
    assert_eq!(step(&retried, "alone")["job"], step(&done, "alone")["job"]);
}

#[tokio::test]
async fn a_followed_workflow_streams_each_step_and_its_state_until_it_closes() {
    let server = TestServer::start().await;
    let workflow = submit(&server, ADMIN, diamond(false)).await;
    let id = workflow["id"].as_str().unwrap();
    let response = server
        .request(Method::GET, &format!("/v1/workflows/{id}/events"), ADMIN)
        .send()
        .await
        .unwrap();
    let events = TestServer::read_events(response).await;
    let last = events.last().unwrap();
    assert_eq!((last.event.as_str(), &last.data["state"]), ("close", &json!("completed")));
    for name in ["A", "B", "C", "D"] {
        let completed = events
            .iter()
            .any(|e| e.event == "step" && e.data["step"] == name && e.data["state"] == "completed");
        assert!(completed, "step {name} completed in the stream: {events:?}");
    }
    let states: Vec<&Value> =
        events.iter().filter(|e| e.event == "state").map(|e| &e.data["done"]).collect();
    assert_eq!(states.last(), Some(&&json!(4)), "{states:?}");
}

#[tokio::test]
async fn bad_graphs_are_refused_with_the_reason_and_store_nothing() {
    let server = TestServer::start().await;
    let refused = |body: Value| {
        let server = &server;
        async move {
            let (status, answer) =
                server.call(Method::POST, "/v1/workflows", ADMIN, Some(body)).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
            error_message(&answer)
        }
    };
    let cycle = refused(json!({"steps": [
        {"step": "a", "job": "tests.echo", "depends_on": ["b"]},
        {"step": "b", "job": "tests.echo", "depends_on": ["a"]},
    ]}))
    .await;
    assert!(cycle.contains("cycle"), "{cycle}");
    let unknown =
        refused(json!({"steps": [{"step": "a", "job": "tests.echo", "depends_on": ["zz"]}]})).await;
    assert!(unknown.contains("\"zz\""), "{unknown}");
    let many: Vec<Value> =
        (0..101).map(|i| json!({"step": format!("s{i}"), "job": "tests.echo"})).collect();
    assert!(refused(json!({"steps": many})).await.contains("at most 100 steps"));
    let typo = refused(json!({"steps": [{"step": "a", "job": "tests.echo", "argz": {}}]})).await;
    assert!(typo.contains("argz"), "{typo}");
    let (status, answer) = server
        .call(
            Method::POST,
            "/v1/workflows",
            ADMIN,
            Some(json!({"steps": [{"step": "a", "job": "no.such"}]})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
    assert!(error_message(&answer).contains("step \"a\""), "{answer}");
    assert_eq!(get(&server, ADMIN, "/v1/workflows").await["total"], 0);
    assert_eq!(get(&server, ADMIN, "/v1/jobs").await["total"], 0, "no step was stored");
}

#[tokio::test]
async fn another_tenant_sees_no_workflow_and_a_submitter_only_its_own() {
    let server = TestServer::start().await;
    let ada = server.token("acme", "ada", Role::Submitter).await;
    let bob = server.token("acme", "bob", Role::Submitter).await;
    let eve = server.token("globex", "eve", Role::Admin).await;
    let viewer = server.token("acme", "vic", Role::Viewer).await;
    let workflow =
        submit(&server, &ada, json!({"steps": [{"step": "a", "job": "tests.echo"}]})).await;
    let path = format!("/v1/workflows/{}", workflow["id"].as_str().unwrap());
    for (token, who) in [(&bob, "another submitter"), (&eve, "another tenant")] {
        let (status, _) = server.call(Method::GET, &path, token, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{who}");
        let (status, _) = server.call(Method::POST, &format!("{path}/cancel"), token, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{who}");
        assert_eq!(get(&server, token, "/v1/workflows").await["total"], 0, "{who}");
    }
    assert_eq!(get(&server, &viewer, &path).await["owner"], "ada");
    let (status, _) = server.call(Method::POST, &format!("{path}/cancel"), &viewer, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a viewer cannot cancel");
}

#[tokio::test]
async fn a_job_waits_for_the_jobs_it_depends_on_and_takes_their_results() {
    let server = TestServer::start().await;
    let slow =
        enqueue(&server, ADMIN, json!({"job": "examples.sleep", "args": {"seconds": 0.3}})).await;
    let hello =
        enqueue(&server, ADMIN, json!({"job": "examples.hello", "args": {"name": "dep"}})).await;
    let (status, waiting) = server
        .call(
            Method::POST,
            "/v1/jobs",
            ADMIN,
            Some(json!({
                "job": "tests.echo",
                "depends_on": [slow, hello],
                "args": {"greeting": {"$result": hello, "pointer": "/greeting"}},
            })),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{waiting}");
    assert_eq!(waiting["state"], "blocked");
    let id = waiting["id"].as_str().unwrap();
    let done = wait_state(&server, ADMIN, id, "completed").await;
    assert_eq!(done["result"], json!({"greeting": "Hello, dep!"}));
    let slow_done = get(&server, ADMIN, &format!("/v1/jobs/{slow}")).await;
    assert!(done["started_at"].as_u64() >= slow_done["finished_at"].as_u64());
    let events = get(&server, ADMIN, &format!("/v1/jobs/{id}")).await["events"].clone();
    assert_eq!(events[0]["state"], "blocked");

    // A dependency that failed cancels, unless the job runs anyway.
    let failing = enqueue(&server, ADMIN, json!({"job": "examples.fail"})).await;
    let cancelled =
        enqueue(&server, ADMIN, json!({"job": "tests.echo", "depends_on": [failing]})).await;
    let anyway = enqueue(&server, ADMIN, json!({"job": "tests.echo", "depends_on": [failing], "if_dependency_fails": "run", "args": {"r": {"$result": failing}}})).await;
    let job = wait_state(&server, ADMIN, &cancelled, "cancelled").await;
    assert!(job["error"]["message"].as_str().unwrap().contains(&failing), "{job}");
    assert_eq!(
        wait_state(&server, ADMIN, &anyway, "completed").await["result"],
        json!({"r": null})
    );
    // Once the dependency has failed, a new dependent is cancelled at once.
    let (_, late) = server
        .call(
            Method::POST,
            "/v1/jobs",
            ADMIN,
            Some(json!({"job": "tests.echo", "depends_on": [failing]})),
        )
        .await;
    assert_eq!(late["state"], "cancelled");
}

#[tokio::test]
async fn dependencies_must_exist_in_the_tenant_and_results_come_only_from_them() {
    let server = TestServer::start().await;
    let eve = server.token("globex", "eve", Role::Admin).await;
    let theirs =
        enqueue(&server, &eve, json!({"job": "examples.hello", "args": {"name": "x"}})).await;
    let cases = [
        (json!({"job": "tests.echo", "depends_on": [theirs]}), "there is no job"),
        (json!({"job": "tests.echo", "depends_on": ["not-a-uuid"]}), "is not a job id"),
        (json!({"job": "tests.echo", "args": {"x": {"$result": theirs}}}), "not in depends_on"),
    ];
    for (body, expected) in cases {
        let (status, answer) = server.call(Method::POST, "/v1/jobs", ADMIN, Some(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        assert!(error_message(&answer).contains(expected), "{answer}");
    }
}

#[tokio::test]
async fn a_chain_of_three_passes_each_result_to_the_next() {
    let server = TestServer::start().await;
    // The first link waits in a paused queue, so the rest is seen blocked.
    let (status, _) = server.call(Method::POST, "/v1/queues/held/pause", ADMIN, None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, first) = server
        .call(Method::POST, "/v1/jobs", ADMIN, Some(json!({
            "job": "examples.hello",
            "queue": "held",
            "args": {"name": "chain"},
            "next": {
                "job": "tests.echo",
                "next": {"job": "tests.echo", "args": {"wrapped": {"$result": "previous"}, "n": 3}},
            },
        })))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    let second_id = first["next_job_id"].as_str().unwrap().to_string();
    let second = get(&server, ADMIN, &format!("/v1/jobs/{second_id}")).await;
    assert_eq!(second["state"], "blocked");
    let third_id = second["next_job_id"].as_str().unwrap().to_string();
    let third = get(&server, ADMIN, &format!("/v1/jobs/{third_id}")).await;
    assert_eq!(third["state"], "blocked");
    let (status, _) = server.call(Method::POST, "/v1/queues/held/resume", ADMIN, None).await;
    assert_eq!(status, StatusCode::OK);
    let third = wait_state(&server, ADMIN, &third_id, "completed").await;
    assert_eq!(third["result"], json!({"wrapped": {"greeting": "Hello, chain!"}, "n": 3}));
    let second = wait_state(&server, ADMIN, &second_id, "completed").await;
    assert_eq!(second["result"], json!({"greeting": "Hello, chain!"}), "no args: the whole result");
    assert_eq!(second["depends_on"], json!([first["id"]]));

    // A broken link stops the rest of the chain.
    let (_, broken) = server
        .call(Method::POST, "/v1/jobs", ADMIN, Some(json!({"job": "examples.fail", "next": {"job": "tests.echo", "next": {"job": "tests.echo"}}})))
        .await;
    let second = broken["next_job_id"].as_str().unwrap().to_string();
    let job = wait_state(&server, ADMIN, &second, "cancelled").await;
    let third = job["next_job_id"].as_str().unwrap().to_string();
    wait_state(&server, ADMIN, &third, "cancelled").await;
}
