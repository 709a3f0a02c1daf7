//! The dashboard at `/ui` in a real headless Chromium, used as an operator
//! and a viewer use it: log in with a token, enqueue a job and watch it go
//! pending → running → completed without a reload, read its live log,
//! cancel a running job, and check that a viewer is offered no cancel.
//! Screenshots land in `$CARGO_TARGET_TMPDIR/screenshots`.

use jobhost::jobs::Role;
use jobhost_tests::server::{ADMIN, TestServer, wait_state};
use jobhost_tests::webdriver::{Browser, WAIT};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn screenshots() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots")
}

async fn log_in(browser: &Browser, base: &str, token: &str, name: &str) {
    browser.goto(&format!("{base}/ui")).await;
    browser.type_into("[data-test=token]", token).await;
    browser.click("[data-test=login]").await;
    browser.wait_for_text("[data-test=whoami]", |t| t.contains(name)).await;
}

/// The state cell of job `id`'s row on the jobs page.
fn row_state(id: &str) -> String {
    format!("[data-test=job-row][data-id=\"{id}\"] [data-test=job-state]")
}

async fn enqueue(server: &TestServer, body: Value) -> String {
    let (status, job) = server.call(Method::POST, "/v1/jobs", ADMIN, Some(body)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    job["id"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_watches_jobs_live_and_a_viewer_cannot_cancel() {
    let server = TestServer::start().await;
    let viewer = server.token("default", "watcher", Role::Viewer).await;
    let (status, _) = server.call(Method::POST, "/v1/queues/ui/pause", ADMIN, None).await;
    assert_eq!(status, StatusCode::OK);
    let browser = Browser::start().await;
    log_in(&browser, &server.base, ADMIN, "admin").await;
    browser.script("window.__loaded_once = true;").await;

    // Enqueue from the form into the paused queue: the row says pending.
    browser.click("[data-test=nav-jobs]").await;
    browser.click("[data-test=enqueue-job] option[value=\"examples.sleep\"]").await;
    browser.type_into("[data-test=enqueue-args]", r#"{"seconds": 6, "steps": 30}"#).await;
    browser.type_into("[data-test=enqueue-queue]", "ui").await;
    browser.click("[data-test=enqueue-submit]").await;
    let (_, page) = server.call(Method::GET, "/v1/jobs?queue=ui", ADMIN, None).await;
    let deadline = Instant::now() + WAIT;
    let mut page = page;
    while page["total"] != 1 {
        assert!(Instant::now() < deadline, "the form enqueued nothing: {page}");
        tokio::time::sleep(Duration::from_millis(100)).await;
        page = server.call(Method::GET, "/v1/jobs?queue=ui", ADMIN, None).await.1;
    }
    let id = page["jobs"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(page["jobs"][0]["args"], json!({"seconds": 6, "steps": 30}));
    browser.wait_for_text(&row_state(&id), |t| t == "pending").await;

    // Resume it: the same row goes running, then we open the job's page.
    server.call(Method::POST, "/v1/queues/ui/resume", ADMIN, None).await;
    browser.wait_for_text(&row_state(&id), |t| t == "running").await;
    let link = format!("[data-test=job-row][data-id=\"{id}\"] a[href=\"#/jobs/{id}\"]");
    browser.click(&link).await;
    browser.wait_for_text("[data-test=job-state]", |t| t == "running").await;
    let first = browser.wait_for_text("[data-test=job-log]", |t| t.contains("step")).await;
    let later = browser
        .wait_for_text("[data-test=job-log]", |t| t.len() > first.len() && t.contains("step"))
        .await;
    assert!(later.starts_with(first.lines().next().unwrap()), "log lines append: {later}");
    browser.wait_for_text("[data-test=job-state]", |t| t == "completed").await;
    let log = browser.wait_for_text("[data-test=job-log]", |t| t.contains("step 30 of 30")).await;
    assert_eq!(log.matches("step 1 of 30").count(), 1, "each line once: {log}");
    browser.wait_for("[data-test=job-progress][data-percent=\"100\"]").await;
    let events = browser.wait_for_text("[data-test=job-events]", |t| t.contains("completed")).await;
    assert!(events.contains("pending") && events.contains("running"), "{events}");
    let result = browser.wait_for_text("[data-test=job-result]", |t| t.contains("slept_ms")).await;
    assert!(result.contains(&id), "the result shown is the job's own: {result}");
    let loaded = browser.script("return window.__loaded_once === true;").await;
    assert_eq!(loaded, json!(true), "all of it happened without a page load");
    browser.screenshot(&screenshots().join("job.png")).await;

    // Cancel a running job from its page.
    let long = enqueue(&server, json!({"job": "examples.sleep", "args": {"seconds": 120}})).await;
    browser.goto(&format!("{}/ui#/jobs/{long}", server.base)).await;
    browser.wait_for_text("[data-test=job-state]", |t| t == "running").await;
    browser.click("[data-test=job-cancel]").await;
    browser.wait_for_text("[data-test=job-state]", |t| t == "cancelled").await;
    let (_, cancelled) = server.call(Method::GET, &format!("/v1/jobs/{long}"), ADMIN, None).await;
    assert_eq!(cancelled["state"], "cancelled");

    browser.click("[data-test=nav-overview]").await;
    browser.wait_for("[data-test=chart-throughput]").await;
    browser.wait_for_text("[data-test=count-completed]", |t| t.contains('1')).await;
    browser.screenshot(&screenshots().join("overview.png")).await;

    // A viewer sees a running job but is offered no cancel, and no enqueue.
    browser.click("[data-test=logout]").await;
    log_in(&browser, &server.base, &viewer, "watcher").await;
    let running =
        enqueue(&server, json!({"job": "examples.sleep", "args": {"seconds": 120}})).await;
    browser.goto(&format!("{}/ui#/jobs/{running}", server.base)).await;
    browser.wait_for_text("[data-test=job-state]", |t| t == "running").await;
    browser.wait_for("[data-test=job-log]").await;
    assert!(browser.find_all("[data-test=job-cancel]").await.is_empty(), "a viewer has no cancel");
    assert!(browser.find_all("[data-test=job-remove]").await.is_empty());
    browser.click("[data-test=nav-jobs]").await;
    browser.wait_for(&row_state(&running)).await;
    assert!(browser.find_all("[data-test=enqueue-submit]").await.is_empty(), "nor an enqueue form");
    assert!(browser.find_all("[data-test=nav-tokens]").await.is_empty(), "nor tokens");
    server.call(Method::POST, &format!("/v1/jobs/{running}/cancel"), ADMIN, None).await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_loads_for_every_role_and_shows_only_what_it_may() {
    let server = TestServer::start().await;
    let submitter = server.token("default", "submitter", Role::Submitter).await;
    let hello = json!({"job": "examples.hello", "args": {"name": "roles"}});
    let (status, job) = server.call(Method::POST, "/v1/jobs", &submitter, Some(hello)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    let done = job["id"].as_str().unwrap().to_string();
    wait_state(&server, &submitter, &done, "completed").await;
    let browser = Browser::start().await;
    for role in [Role::Submitter, Role::Viewer, Role::Operator, Role::Admin, Role::HostAdmin] {
        let name = format!("{role:?}").to_lowercase();
        let token = match role {
            Role::Submitter => submitter.clone(),
            _ => server.token("default", &name, role).await,
        };
        log_in(&browser, &server.base, &token, &name).await;
        let links = browser
            .script("return [...document.querySelectorAll('[data-test^=nav-]')].map(a => a.getAttribute('href'));")
            .await;
        let links: Vec<String> = serde_json::from_value(links).unwrap();
        let admin = matches!(role, Role::Admin | Role::HostAdmin);
        assert_eq!(links.contains(&"#/tokens".to_string()), admin, "{name}: {links:?}");
        assert!(links.contains(&"#/jobs".to_string()), "{name}: {links:?}");
        for href in links.iter().map(String::as_str).chain([format!("#/jobs/{done}").as_str()]) {
            let link = format!("[data-test^=nav-][href=\"{href}\"]");
            if browser.find_all(&link).await.is_empty() {
                browser.script(&format!("location.hash = '{href}';")).await;
            } else {
                browser.click(&link).await;
            }
            browser.wait_for(&format!("#main[data-ready=\"{href}\"]")).await;
            let error = browser.script("const b = document.querySelector('[data-test=error]'); return b.hidden ? null : b.textContent;").await;
            assert_eq!(error, Value::Null, "{name} on {href}");
        }
        let submits = !matches!(role, Role::Viewer);
        let retry = browser.find_all("[data-test=job-retry]").await;
        assert_eq!(!retry.is_empty(), submits, "{name}: retry on a finished job");
        browser.click("[data-test=logout]").await;
    }
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_sees_a_workflow_step_by_step_and_pauses_a_schedule() {
    let server = TestServer::start().await;
    let flow = json!({"name": "ui-diamond", "steps": [
        {"step": "fetch", "job": "examples.hello", "args": {"name": "ui"}},
        {"step": "broken", "job": "examples.fail", "depends_on": ["fetch"]},
        {"step": "report", "job": "examples.hello", "depends_on": ["broken"], "args": {"name": "never"}},
    ]});
    let (status, workflow) = server.call(Method::POST, "/v1/workflows", ADMIN, Some(flow)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{workflow}");
    let id = workflow["id"].as_str().unwrap().to_string();
    let nightly = json!({"name": "ui-nightly", "cron": "0 2 * * *", "job": {"job": "examples.hello", "args": {"name": "n"}}});
    let (status, schedule) = server.call(Method::POST, "/v1/schedules", ADMIN, Some(nightly)).await;
    assert_eq!(status, StatusCode::CREATED, "{schedule}");
    let browser = Browser::start().await;
    log_in(&browser, &server.base, ADMIN, "admin").await;

    browser.click("[data-test=nav-workflows]").await;
    let row = browser.wait_for_text("[data-test=workflow-row]", |t| t.contains("ui-diamond")).await;
    assert!(row.contains("admin"), "{row}");
    browser.script(&format!("location.hash = '#/workflows/{id}';")).await;
    let state = "[data-test=workflow-step] [data-test=step-state]";
    browser.wait_for_text("[data-test=workflow-state]", |t| t.contains("failed")).await;
    let states = browser
        .script(&format!(
            "return [...document.querySelectorAll('{state}')].map(b => b.textContent);"
        ))
        .await;
    assert_eq!(states, json!(["completed", "failed", "cancelled"]), "each step's state, in order");
    browser.screenshot(&screenshots().join("workflow.png")).await;

    browser.click("[data-test=nav-schedules]").await;
    browser.wait_for_text("[data-test=schedule-row]", |t| t.contains("ui-nightly")).await;
    browser
        .script(&format!("location.hash = '#/schedules/{}';", schedule["id"].as_str().unwrap()))
        .await;
    browser.click("[data-test=schedule-pause]").await;
    browser.wait_for("[data-test=schedule-resume]").await;
    let (_, paused) = server
        .call(
            Method::GET,
            &format!("/v1/schedules/{}", schedule["id"].as_str().unwrap()),
            ADMIN,
            None,
        )
        .await;
    assert_eq!(paused["paused"], true, "the button paused it on the server");
    browser.close().await;
}
