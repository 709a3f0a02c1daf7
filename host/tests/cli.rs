//! The `jobhost` client commands, run as a person or a script runs them:
//! the real binary in a child process against a real server on loopback,
//! its config file in a temp home, its output read as text and as JSON.

use jobhost::config::Config;
use jobhost::host::Host;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const ADMIN: &str = "cli-test-admin-secret-0123456789abcdef";

/// A server for the commands, and a home folder for their config file.
struct Fixture {
    host: Host,
    base: String,
    home: tempfile::TempDir,
    _data: tempfile::TempDir,
}

impl Fixture {
    async fn start() -> Fixture {
        let data = tempfile::tempdir().unwrap();
        let config = Config {
            listen: "127.0.0.1:0".into(),
            data: data.path().to_path_buf(),
            plugins: vec![jobhost_plugin_artifacts::EXAMPLES_DIR.into()],
            cache: Some(std::env::temp_dir().join("jobhost-test-cache")),
            admin_token: Some(ADMIN.into()),
            pool_slots: 8,
            ..Config::default()
        };
        let host = Host::start(config).await.unwrap();
        let base = format!("http://{}", host.addr());
        Fixture { host, base, home: tempfile::tempdir().unwrap(), _data: data }
    }

    /// `jobhost ARGS` with this server and token in the environment.
    fn command(&self, args: &[&str]) -> Command {
        self.command_as(ADMIN, args)
    }

    fn command_as(&self, token: &str, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_jobhost"));
        command
            .args(args)
            .env("HOME", self.home.path())
            .env("XDG_CONFIG_HOME", self.home.path().join("config"))
            .env("JOBHOST_URL", &self.base)
            .env("JOBHOST_TOKEN", token)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null());
        command
    }

    /// Runs `jobhost ARGS` to its end, off the runtime's threads.
    async fn run(&self, args: &[&str]) -> Output {
        let mut command = self.command(args);
        tokio::task::spawn_blocking(move || command.output().unwrap()).await.unwrap()
    }

    /// Runs it with `--output json` and parses stdout; it must exit 0.
    async fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["--output", "json"]);
        let output = self.run(&all).await;
        assert_eq!(output.status.code(), Some(0), "{args:?}: {}", text(&output.stderr));
        serde_json::from_slice(&output.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: {e}: {}", text(&output.stdout)))
    }

    async fn stop(self) {
        self.host.stop().await.unwrap();
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_follow_prints_logs_and_the_result_and_exits_by_the_outcome() {
    let fixture = Fixture::start().await;
    let args = ["enqueue", "examples.sleep", "--arg", "seconds:=0.3", "--arg", "steps:=3"];
    let done = fixture.run(&[&args[..], &["--follow"]].concat()).await;
    let (stdout, stderr) = (text(&done.stdout), text(&done.stderr));
    assert_eq!(done.status.code(), Some(0), "a completed job exits 0: {stderr}");
    for line in ["step 1 of 3", "step 3 of 3", "[running]", "[completed]"] {
        assert!(stderr.contains(line), "{line:?} printed as it came: {stderr}");
    }
    let result: Value = serde_json::from_str(&stdout).expect("the result alone on stdout");
    assert_eq!(result["steps"], 3, "{stdout}");

    let failed = fixture
        .run(&["enqueue", "examples.fail", "--arg", "message=disk on fire", "--follow"])
        .await;
    assert_eq!(failed.status.code(), Some(1), "a failed job exits 1");
    let stderr = text(&failed.stderr);
    assert!(stderr.contains("failed: plugin_error: disk on fire"), "{stderr}");
    assert!(failed.stdout.is_empty(), "no result for a failed job");

    let json = fixture.json(&["enqueue", "examples.hello", "--arg", "name=cli", "--follow"]).await;
    assert_eq!(json["state"], "completed", "--output json prints the finished job: {json}");
    assert!(json["result"].to_string().contains("cli"), "{json}");
    fixture.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_are_listed_shown_logged_cancelled_and_removed() {
    let fixture = Fixture::start().await;
    let job = fixture
        .json(&["enqueue", "examples.hello", "--args", r#"{"name":"ls"}"#, "--job-name", "first"])
        .await;
    let id = job["id"].as_str().unwrap().to_string();
    let completed = wait_for_state(&fixture, &id, "completed").await;
    assert_eq!(completed["name"], "first");

    let page = fixture.json(&["jobs", "ls", "--state", "completed"]).await;
    let ids: Vec<&str> =
        page["jobs"].as_array().unwrap().iter().map(|j| j["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [id.as_str()], "{page}");
    let table = text(&fixture.run(&["jobs", "ls"]).await.stdout);
    let header = table.lines().next().unwrap();
    assert!(header.starts_with("ID") && header.contains("STATE"), "{table}");
    assert!(
        table.contains(&id) && table.contains("completed") && table.contains("1 of 1 jobs"),
        "{table}"
    );

    let shown = text(&fixture.run(&["job", "show", &id]).await.stdout);
    assert!(shown.contains("state:") && shown.contains("completed"), "{shown}");
    assert!(shown.contains("REASON") && shown.contains("claimed"), "the journal follows: {shown}");
    let events = fixture.json(&["job", "events", &id]).await;
    assert_eq!(events.as_array().unwrap().last().unwrap()["state"], "completed");

    let running = fixture
        .json(&["enqueue", "examples.sleep", "--arg", "seconds:=60", "--arg", "steps:=600"])
        .await;
    let running = running["id"].as_str().unwrap().to_string();
    wait_for_state(&fixture, &running, "running").await;
    let mut follower = fixture.command(&["job", "logs", "-f", &running]);
    let follower = follower.stdout(Stdio::piped()).spawn().unwrap();
    let cancelled = fixture.json(&["job", "cancel", &running]).await;
    assert_eq!(cancelled["id"], running.as_str());
    let followed =
        tokio::task::spawn_blocking(move || follower.wait_with_output().unwrap()).await.unwrap();
    assert_eq!(followed.status.code(), Some(0), "logs -f ends with the job");
    assert!(text(&followed.stdout).contains("step 1 of 600"), "{}", text(&followed.stdout));
    let ended = wait_for_state(&fixture, &running, "cancelled").await;
    assert_eq!(ended["state"], "cancelled");
    let logs = text(&fixture.run(&["job", "logs", &running]).await.stdout);
    assert!(logs.contains("cancelled at step"), "{logs}");

    let removed = fixture.run(&["job", "rm", &id]).await;
    assert_eq!(removed.status.code(), Some(0), "{}", text(&removed.stderr));
    let gone = fixture.run(&["job", "show", &id]).await;
    assert_eq!(gone.status.code(), Some(2));
    let error = text(&gone.stderr);
    assert_eq!(error.lines().count(), 1, "one line: {error}");
    assert!(error.starts_with("jobhost: 404 Not Found: "), "{error}");
    fixture.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_are_pushed_listed_and_removed_and_roles_hold() {
    let fixture = Fixture::start().await;
    let wasm = jobhost_plugin_artifacts::HELLO;
    let pushed = fixture.json(&["plugin", "push", "acme.greeter", wasm]).await;
    assert_eq!(pushed["name"], "acme.greeter");
    let digest = pushed["digest"].as_str().unwrap().to_string();
    let list = fixture.json(&["plugin", "ls"]).await;
    let names: Vec<&str> =
        list["plugins"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"acme.greeter") && names.contains(&"examples.hello"), "{names:?}");
    let shown = text(&fixture.run(&["plugin", "show", "acme.greeter"]).await.stdout);
    assert!(shown.contains(&digest) && shown.contains("exports:"), "{shown}");
    let versions = fixture.json(&["plugin", "versions", "acme.greeter"]).await;
    assert_eq!(versions["versions"][0]["digest"], digest.as_str());
    let run = fixture.json(&["enqueue", "acme.greeter", "--arg", "name=pushed", "--follow"]).await;
    assert_eq!(run["state"], "completed", "{run}");

    let token = fixture.json(&["tokens", "create", "watcher", "--role", "viewer"]).await;
    let viewer = token["secret"].as_str().unwrap().to_string();
    let mut refused = fixture.command_as(&viewer, &["enqueue", "examples.hello"]);
    let refused = refused.output().unwrap();
    assert_eq!(refused.status.code(), Some(2));
    let error = text(&refused.stderr);
    assert!(error.starts_with("jobhost: 403 Forbidden: ") && error.contains("viewer"), "{error}");
    let mut stats = fixture.command_as(&viewer, &["stats", "--output", "json"]);
    let stats: Value = serde_json::from_slice(&stats.output().unwrap().stdout).unwrap();
    assert_eq!(stats["jobs"]["completed"], 1, "a viewer reads its tenant's stats: {stats}");

    let removed = fixture.run(&["plugin", "rm", "acme.greeter"]).await;
    assert_eq!(removed.status.code(), Some(0), "{}", text(&removed.stderr));
    let missing = fixture.run(&["plugin", "show", "acme.greeter"]).await;
    assert!(text(&missing.stderr).starts_with("jobhost: 404 Not Found"), "{missing:?}");
    fixture.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_saves_the_server_for_later_commands_and_ctrl_c_detaches_or_cancels() {
    let fixture = Fixture::start().await;
    let mut login = fixture.command(&["login", "--url", &fixture.base, "--token", ADMIN]);
    login.env_remove("JOBHOST_URL").env_remove("JOBHOST_TOKEN");
    let login = login.output().unwrap();
    assert_eq!(login.status.code(), Some(0), "{}", text(&login.stderr));
    assert!(text(&login.stdout).contains("as admin (host_admin"), "{}", text(&login.stdout));
    let saved = fixture.home.path().join("config/jobhost/client.toml");
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&saved).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "the saved token is readable by its owner only");
    let mut queues = fixture.command(&["queues", "-o", "json"]);
    queues.env_remove("JOBHOST_URL").env_remove("JOBHOST_TOKEN");
    let queues = queues.output().unwrap();
    assert_eq!(queues.status.code(), Some(0), "the saved login is used: {}", text(&queues.stderr));
    let bad = fixture.run(&["login", "--token", "not-a-token-of-this-host"]).await;
    assert!(text(&bad.stderr).starts_with("jobhost: 401 Unauthorized"), "{}", text(&bad.stderr));

    let sleep = ["enqueue", "examples.sleep", "--arg", "seconds:=60", "--arg", "steps:=600"];
    let (status, stderr) = interrupt(&fixture, &[&sleep[..], &["--follow"]].concat()).await;
    assert_eq!(status, Some(130), "Ctrl-C detaches: {stderr}");
    let id = stderr.split("detached; job ").nth(1).unwrap().split_whitespace().next().unwrap();
    let details = fixture.json(&["job", "show", id]).await;
    assert_eq!(details["state"], "running", "a detached job goes on");
    fixture.run(&["job", "cancel", id]).await;

    let cancel = [&sleep[..], &["--follow", "--cancel-on-interrupt"]].concat();
    let (status, stderr) = interrupt(&fixture, &cancel).await;
    assert_eq!(status, Some(1), "a job cancelled on Ctrl-C did not complete: {stderr}");
    assert!(stderr.contains("cancelling job") && stderr.contains("cancelled"), "{stderr}");
    let completions = text(&fixture.run(&["completions", "bash"]).await.stdout);
    assert!(completions.contains("jobhost") && completions.contains("enqueue"), "bash completions");
    fixture.stop().await;
}

/// Starts `jobhost ARGS`, sends it SIGINT once it follows a running job,
/// and returns its exit status and stderr.
async fn interrupt(fixture: &Fixture, args: &[&str]) -> (Option<i32>, String) {
    let mut child =
        fixture.command(args).stderr(Stdio::piped()).stdout(Stdio::null()).spawn().unwrap();
    let pid = child.id().to_string();
    let stderr = child.stderr.take().unwrap();
    tokio::task::spawn_blocking(move || {
        let mut seen = String::new();
        let mut lines = BufReader::new(stderr).lines();
        for line in lines.by_ref().map_while(Result::ok) {
            seen.push_str(&line);
            seen.push('\n');
            if line.contains("step 1 of") {
                let kill = Command::new("kill").args(["-INT", &pid]).status().unwrap();
                assert!(kill.success());
                break;
            }
        }
        for line in lines.map_while(Result::ok) {
            seen.push_str(&line);
            seen.push('\n');
        }
        (child.wait().unwrap().code(), seen)
    })
    .await
    .unwrap()
}

/// Polls `job show` until the job is in `state` (two minutes at most).
async fn wait_for_state(fixture: &Fixture, id: &str, state: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let details = fixture.json(&["job", "show", id]).await;
        if details["state"] == state {
            return details;
        }
        assert!(Instant::now() < deadline, "job {id} never became {state}: {details}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn a_server_that_is_not_there_is_one_line() {
    let home = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_jobhost"))
        .args(["stats", "--url", "http://127.0.0.1:9"])
        .env("HOME", home.path())
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("JOBHOST_URL")
        .env_remove("JOBHOST_TOKEN")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let error = text(&output.stderr);
    assert!(error.starts_with("jobhost: cannot reach http://127.0.0.1:9"), "{error}");
    assert!(!Path::new(&home.path().join(".config/jobhost/client.toml")).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workflows_are_submitted_shown_and_retried_and_schedules_created_paused_and_deleted() {
    let fixture = Fixture::start().await;
    let file = fixture.home.path().join("flow.json");
    let flow = serde_json::json!({"name": "cli-pair", "steps": [
        {"step": "first", "job": "examples.hello", "args": {"name": "one"}},
        {"step": "second", "job": "examples.fail", "depends_on": ["first"]},
    ]});
    std::fs::write(&file, flow.to_string()).unwrap();
    let submitted = fixture.json(&["workflows", "submit", file.to_str().unwrap()]).await;
    let id = submitted["id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    while fixture.json(&["workflows", "show", &id]).await["state"] != "failed" {
        assert!(Instant::now() < deadline, "the workflow fails at its second step");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let shown = fixture.run(&["workflows", "show", &id]).await;
    let table = text(&shown.stdout);
    for expected in ["cli-pair", "first", "second", "completed", "failed", "failed on purpose"] {
        assert!(table.contains(expected), "{expected:?} in:\n{table}");
    }
    let listed = text(&fixture.run(&["workflows"]).await.stdout);
    assert!(listed.contains(&id) && listed.contains("2/2"), "{listed}");
    let retried = fixture.json(&["workflows", "retry", &id]).await;
    assert_eq!(retried["retries"], 1);

    let created = fixture
        .json(&[
            "schedules",
            "create",
            "examples.hello",
            r#"{"name":"cron"}"#,
            "--cron",
            "0 6 * * 1",
            "--timezone",
            "America/New_York",
            "--name",
            "weekly",
        ])
        .await;
    let schedule = created["id"].as_str().unwrap().to_string();
    assert!(created["next_runs"][0].as_str().unwrap().contains("T06:00:00-0"), "{created}");
    let shown = text(&fixture.run(&["schedules", "show", &schedule]).await.stdout);
    assert!(shown.contains("0 6 * * 1 (America/New_York)") && shown.contains("weekly"), "{shown}");
    assert_eq!(fixture.json(&["schedules", "pause", &schedule]).await["paused"], true);
    assert_eq!(fixture.json(&["schedules", "resume", &schedule]).await["paused"], false);
    let listed = text(&fixture.run(&["schedules"]).await.stdout);
    assert!(listed.contains("weekly") && listed.contains("examples.hello"), "{listed}");
    let deleted = fixture.run(&["schedules", "delete", &schedule]).await;
    assert!(text(&deleted.stdout).contains("deleted schedule"), "{}", text(&deleted.stderr));
    let missing = fixture.run(&["schedules", "show", &schedule]).await;
    assert_ne!(missing.status.code(), Some(0));
    assert!(text(&missing.stderr).contains("404"), "{}", text(&missing.stderr));
    fixture.stop().await;
}
