//! Recurring schedules on a real server: create, show the next times in
//! the schedule's zone, pause, resume, delete; a schedule every second
//! fires once per second, never twice, and a run missed while the host
//! was down fires once at start or is skipped, as the schedule says.

use jobhost::jobs::schedule::{Missed, ScheduleRecord, ScheduleRequest, admit, run_key};
use jobhost::jobs::{Flow, NewJob, Role, now_ms};
use jobhost::storage::Round;
use jobhost_tests::server::{ADMIN, TestServer, error_message};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::time::Duration;

async fn create(server: &TestServer, token: &str, body: Value) -> Value {
    let (status, schedule) = server.call(Method::POST, "/v1/schedules", token, Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{schedule}");
    schedule
}

/// The jobs a schedule enqueued, each as (run time from its idempotency
/// key, creation time).
async fn runs(server: &TestServer, id: &str) -> Vec<(u64, u64)> {
    let (_, page) = server
        .call(Method::GET, &format!("/v1/jobs?schedule={id}&per_page=1000"), ADMIN, None)
        .await;
    let mut runs: Vec<(u64, u64)> = page["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|job| {
            let key = job["idempotency_key"].as_str().unwrap();
            let at = key.rsplit(':').next().unwrap().parse().unwrap();
            (at, job["created_at"].as_u64().unwrap())
        })
        .collect();
    runs.sort();
    runs
}

async fn wait_runs(server: &TestServer, id: &str, at_least: usize) {
    for _ in 0..400 {
        if runs(server, id).await.len() >= at_least {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("schedule {id} never fired {at_least} runs");
}

fn every_second(missed: &str) -> Value {
    json!({"cron": "* * * * * *", "missed": missed, "job": {"job": "examples.hello", "args": {"name": "tick"}}})
}

#[tokio::test]
async fn a_schedule_every_second_fires_each_second_once_across_a_restart() {
    let server = TestServer::start().await;
    let once = create(&server, ADMIN, every_second("run_once")).await;
    let skip = create(&server, ADMIN, every_second("skip")).await;
    let (once, skip) =
        (once["id"].as_str().unwrap().to_string(), skip["id"].as_str().unwrap().to_string());
    wait_runs(&server, &once, 3).await;
    let stopping = now_ms();
    let server = server.restart_after(Duration::from_secs(6)).await;
    let restarted = now_ms();
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    for id in [&once, &skip] {
        let (status, _) =
            server.call(Method::POST, &format!("/v1/schedules/{id}/pause"), ADMIN, None).await;
        assert_eq!(status, StatusCode::OK);
    }
    for (id, missed) in [(&once, Missed::RunOnce), (&skip, Missed::Skip)] {
        let runs = runs(&server, id).await;
        let times: BTreeSet<u64> = runs.iter().map(|r| r.0).collect();
        assert_eq!(times.len(), runs.len(), "no run fired twice: {runs:?}");
        assert!(times.iter().all(|t| t % 1000 == 0), "runs on whole seconds: {times:?}");
        // Every second from the first run to the last fired, but for those
        // that fell while no host was up.
        let (first, last) = (*times.first().unwrap(), *times.last().unwrap());
        for second in (first..=last).step_by(1000) {
            let down = second > stopping.saturating_sub(1_000) && second < restarted;
            assert!(
                down || times.contains(&second),
                "{missed:?}: the run at {second} is missing: {times:?}"
            );
        }
        // The runs missed while down: one job, made after the restart for a
        // time well before it (runs due in the two seconds before a host
        // starts still fire as on time), or none.
        let caught_up = runs
            .iter()
            .filter(|(at, created)| *created >= restarted && *at + 3_500 < restarted)
            .count();
        let expected = if missed == Missed::RunOnce { 1 } else { 0 };
        assert_eq!(
            caught_up, expected,
            "{missed:?}: {runs:?}, stopped {stopping}, restarted {restarted}"
        );
        assert!(times.iter().any(|&t| t >= restarted), "{missed:?} fires again after the restart");
    }
    let (_, skipped) =
        server.call(Method::GET, &format!("/v1/schedules/{skip}"), ADMIN, None).await;
    assert!(skipped["skipped"].as_u64().unwrap() >= 2, "{skipped}");
}

#[tokio::test]
async fn a_schedule_shows_its_next_times_in_its_zone_and_can_be_paused_resumed_and_deleted() {
    let server = TestServer::start().await;
    let body = json!({"name": "nightly", "cron": "0 9 * * *", "timezone": "Europe/Berlin", "job": {"job": "examples.hello", "args": {"name": "n"}}});
    let schedule = create(&server, ADMIN, body).await;
    let next: Vec<&str> =
        schedule["next_runs"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
    assert_eq!(next.len(), 5);
    assert!(next.iter().all(|t| t.contains("T09:00:00+0")), "09:00 Berlin time: {next:?}");
    assert!(schedule["next_run_at"].as_u64().unwrap() > now_ms());
    let id = schedule["id"].as_str().unwrap();
    let path = format!("/v1/schedules/{id}");
    let (_, paused) = server.call(Method::POST, &format!("{path}/pause"), ADMIN, None).await;
    assert_eq!((paused["paused"].clone(), paused["next_runs"].clone()), (json!(true), json!([])));
    let (_, resumed) = server.call(Method::POST, &format!("{path}/resume"), ADMIN, None).await;
    assert_eq!(resumed["paused"], false);
    assert_eq!(resumed["next_runs"].as_array().unwrap().len(), 5);
    let (_, listed) = server.call(Method::GET, "/v1/schedules", ADMIN, None).await;
    assert_eq!(listed["schedules"][0]["name"], "nightly");
    let (status, _) = server.call(Method::DELETE, &path, ADMIN, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = server.call(Method::GET, &path, ADMIN, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn bad_schedules_are_refused_with_the_reason() {
    let server = TestServer::start().await;
    let job = json!({"job": "examples.hello", "args": {"name": "x"}});
    let cases = [
        (json!({"cron": "61 * * * *", "job": job}), StatusCode::BAD_REQUEST, "cron"),
        (
            json!({"cron": "* * * * *", "timezone": "Mars/Olympus", "job": job}),
            StatusCode::BAD_REQUEST,
            "IANA",
        ),
        (json!({"cron": "* * * * *", "job": {"job": "no.such"}}), StatusCode::NOT_FOUND, "no.such"),
        (
            json!({"cron": "* * * * *", "job": {"job": "examples.hello", "idempotency_key": "k"}}),
            StatusCode::BAD_REQUEST,
            "idempotency_key",
        ),
        (
            json!({"cron": "* * * * *", "job": job, "missed": "sometimes"}),
            StatusCode::BAD_REQUEST,
            "missed",
        ),
    ];
    for (body, status, says) in cases {
        let (got, answer) = server.call(Method::POST, "/v1/schedules", ADMIN, Some(body)).await;
        assert_eq!(got, status, "{answer}");
        assert!(error_message(&answer).contains(says), "{answer}");
    }
    let (_, listed) = server.call(Method::GET, "/v1/schedules", ADMIN, None).await;
    assert_eq!(listed["schedules"], json!([]));
}

#[tokio::test]
async fn another_tenant_sees_no_schedule_and_a_submitter_only_its_own() {
    let server = TestServer::start().await;
    let ada = server.token("acme", "ada", Role::Submitter).await;
    let bob = server.token("acme", "bob", Role::Submitter).await;
    let eve = server.token("globex", "eve", Role::Admin).await;
    let schedule = create(
        &server,
        &ada,
        json!({"cron": "0 0 1 1 *", "job": {"job": "examples.hello", "args": {"name": "a"}}}),
    )
    .await;
    let path = format!("/v1/schedules/{}", schedule["id"].as_str().unwrap());
    for token in [&bob, &eve] {
        let (status, _) = server.call(Method::GET, &path, token, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _) = server.call(Method::DELETE, &path, token, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (_, listed) = server.call(Method::GET, "/v1/schedules", token, None).await;
        assert_eq!(listed["schedules"], json!([]));
    }
    let (status, _) = server.call(Method::GET, &path, &ada, None).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn two_hosts_firing_the_same_round_enqueue_it_once() {
    let server = TestServer::start().await;
    let request: ScheduleRequest = serde_json::from_value(
        json!({"cron": "0 0 1 1 *", "paused": true, "job": {"job": "examples.hello"}}),
    )
    .unwrap();
    let record: ScheduleRecord =
        admit(request, uuid::Uuid::now_v7(), "default", "admin", now_ms()).unwrap();
    server.storage.create_schedule(record.clone()).await.unwrap();
    let resumed = server.storage.set_schedule_paused(record.id, false, Some(5_000)).await.unwrap();
    let job = |at| NewJob {
        tenant: "default".into(),
        job: "examples.hello".into(),
        args: "{}".into(),
        idempotency_key: Some(run_key(record.id, at)),
        flow: Flow { schedule: Some(record.id), ..Flow::default() },
        ..NewJob::default()
    };
    let round = || Round {
        jobs: vec![job(5_000)],
        skipped: 0,
        next_run_at: Some(6_000),
        last_run_at: Some(5_000),
        error: None,
        now: now_ms(),
    };
    let (a, b) = tokio::join!(
        server.storage.fire_schedule(resumed.id, 5_000, round()),
        server.storage.fire_schedule(resumed.id, 5_000, round()),
    );
    let fired: Vec<_> = [a.unwrap(), b.unwrap()].into_iter().flatten().collect();
    assert_eq!(fired.len(), 1, "one of the two rounds is written");
    assert_eq!(fired[0].runs, 1);
    // The same run's key from a third, late round enqueues nothing more.
    server.storage.set_schedule_paused(record.id, false, Some(5_000)).await.unwrap();
    let again = server.storage.fire_schedule(record.id, 5_000, round()).await.unwrap().unwrap();
    assert_eq!(again.runs, 1);
    assert_eq!(runs(&server, &record.id.to_string()).await.len(), 1, "one job for the run");
}
