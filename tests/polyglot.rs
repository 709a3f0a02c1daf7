//! Plugins in Python and JavaScript, built from source by their SDKs, run by
//! a real server and checked over HTTP as a client sees them: results, log,
//! progress, metadata, cancel, a clean failure on an exception, and the
//! fuel, wall-time and memory limits stopping an interpreted job.

use jobhost::jobs::Role;
use jobhost_plugin_artifacts::polyglot;
use jobhost_tests::eventually;
use jobhost_tests::server::{TestServer, enqueue, wait_state};
use reqwest::Method;
use serde_json::{Value, json};

const LANGS: [&str; 2] = ["python", "js"];

/// A server with the polyglot plugins, and a submitter's token.
async fn server() -> (TestServer, String) {
    let plugins = polyglot::dir().to_path_buf();
    let server = TestServer::start_with(|config| config.plugins.push(plugins)).await;
    let token = server.token("poly", "ada", Role::Submitter).await;
    (server, token)
}

/// Enqueues `body` and waits until the job is `state`; returns the job.
async fn run(server: &TestServer, token: &str, body: Value, state: &str) -> Value {
    let id = enqueue(server, token, body).await;
    wait_state(server, token, &id, state).await
}

async fn log_messages(server: &TestServer, token: &str, job: &Value) -> Vec<String> {
    let path = format!("/v1/jobs/{}/logs", job["id"].as_str().unwrap());
    let (_, logs) = server.call(Method::GET, &path, token, None).await;
    let lines = logs["logs"].as_array().unwrap().iter();
    lines.map(|line| line["message"].as_str().unwrap().to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wordcount_gives_the_same_answer_in_every_language() {
    let (server, token) = server().await;
    let args = json!({"text": "Der Hund, the DOG; the dog's bowl. Äpfel äpfel", "top": 3});
    let rust = json!({"job": "examples.wordcount", "args": args});
    let rust = run(&server, &token, rust, "completed").await;
    for lang in LANGS {
        let name = format!("examples.{lang}-wordcount");
        let job = run(&server, &token, json!({"job": name, "args": args}), "completed").await;
        assert_eq!(job["result"], rust["result"], "{lang} and Rust disagree");
        assert_eq!(job["plugin_metadata"]["distinct_words"], rust["result"]["distinct_words"]);
        assert_eq!(job["progress"]["percent"], 100.0, "{job}");
        let (total, distinct) = (&rust["result"]["total_words"], &rust["result"]["distinct_words"]);
        let summary = format!("{total} words, {distinct} distinct");
        assert_eq!(log_messages(&server, &token, &job).await, [summary], "{lang}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_countdown_reports_progress_and_stops_when_cancelled() {
    let (server, token) = server().await;
    for lang in LANGS {
        let name = format!("examples.{lang}-countdown");
        let id =
            enqueue(&server, &token, json!({"job": name, "args": {"seconds": 60, "steps": 600}}))
                .await;
        let path = format!("/v1/jobs/{id}");
        eventually("the countdown reports progress", || async {
            let (_, job) = server.call(Method::GET, &path, &token, None).await;
            (job["progress"]["percent"].as_f64()? > 0.0).then_some(())
        })
        .await;
        server.call(Method::POST, &format!("{path}/cancel"), &token, None).await;
        let job = wait_state(&server, &token, &id, "cancelled").await;
        assert_eq!(job["error"]["kind"], "cancelled", "{lang}: {job}");
        assert_eq!(job["error"]["message"], "cancelled", "{lang} stops by itself: {job}");
        let log = log_messages(&server, &token, &job).await;
        assert!(log[0].starts_with("step 1 of 600"), "{lang}: {log:?}");
        assert!(log.last().unwrap().starts_with("cancelled at step"), "{lang}: {log:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_context_reaches_the_host_from_every_language() {
    let (server, token) = server().await;
    for lang in LANGS {
        let name = format!("tests.{lang}-probe");
        let job = json!({"job": name, "args": {"mode": "ok"}});
        let job = run(&server, &token, job, "completed").await;
        assert_eq!(job["result"], json!({"job_id": job["id"], "attempt": 1}), "{lang}");
        assert_eq!(job["progress"]["percent"], 50.0, "{lang}: {job}");
        assert_eq!(job["plugin_metadata"]["probe"]["mode"], "ok", "{lang}: {job}");
        let path = format!("/v1/jobs/{}/logs", job["id"].as_str().unwrap());
        let (_, logs) = server.call(Method::GET, &path, &token, None).await;
        let levels: Vec<&str> =
            logs["logs"].as_array().unwrap().iter().filter_map(|l| l["level"].as_str()).collect();
        for level in ["trace", "debug", "info", "warn", "error"] {
            assert!(levels.contains(&level), "{lang} logged no {level} line: {logs}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exception_fails_the_job_with_its_message_and_its_stack_in_the_log() {
    let (server, token) = server().await;
    for (lang, message, stack) in [
        ("python", "ValueError: probe failure", "Traceback"),
        ("js", "Error: probe failure", "probe"),
    ] {
        let name = format!("tests.{lang}-probe");
        let body = json!({"job": name, "args": {"mode": "raise"}});
        let job = run(&server, &token, body, "failed").await;
        assert_eq!(job["error"]["kind"], "plugin_error", "{lang} must not trap: {job}");
        assert_eq!(job["error"]["message"], message, "{lang}");
        let log = log_messages(&server, &token, &job).await.join("\n");
        assert!(log.contains(stack), "{lang}'s stack is not in the log: {log}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuel_time_and_memory_limits_stop_interpreted_jobs() {
    let (server, token) = server().await;
    // Each case logs before its loop: the limit stopped the loop, not the
    // interpreter's start.
    let cases = [
        (json!({"mode": "spin"}), json!({"fuel": 200_000_000}), "fuel_exhausted", "spinning"),
        (
            json!({"mode": "sleep", "seconds": 600}),
            json!({"wall_time": 1500}),
            "timeout",
            "sleeping",
        ),
        (
            json!({"mode": "alloc", "mib": 512}),
            json!({"memory_bytes": 48 << 20}),
            "memory_limit",
            "allocating 512 MiB",
        ),
    ];
    for lang in LANGS {
        for (args, limits, kind, started) in &cases {
            let name = format!("tests.{lang}-probe");
            let body = json!({"job": name, "args": args, "limits": limits});
            let job = run(&server, &token, body, "failed").await;
            assert_eq!(job["error"]["kind"], *kind, "{lang} {args}: {job}");
            let log = log_messages(&server, &token, &job).await;
            assert!(log.iter().any(|line| line.starts_with(started)), "{lang} {args}: {log:?}");
        }
    }
}

#[test]
fn the_sdks_and_plugins_pass_their_own_native_tests() {
    let repo = polyglot::repo();
    let run = |dir: &str, program: &str, args: &[&str]| {
        let mut command = std::process::Command::new(program);
        command.args(args).current_dir(repo.join(dir)).env("PYTHONDONTWRITEBYTECODE", "1");
        jobhost_tests::python::run(&mut command)
    };
    run("sdk/python", "python3", &["-m", "unittest", "discover", "-s", "tests"]);
    for plugin in ["wordcount", "countdown", "probe"] {
        run(&format!("plugins/python/{plugin}"), "python3", &["-m", "unittest"]);
    }
    run("sdk/js", "npm", &["test", "--silent"]);
    run("plugins/js", "npm", &["test", "--silent"]);
}
