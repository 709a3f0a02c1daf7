//! Crash test: the real `jobhost serve` binary in a child process runs 500
//! jobs and is killed with SIGKILL at several points while jobs run; jobs
//! are enqueued over HTTP while it runs and into its file between crashes.
//! After the last restart every job has completed: none lost, none left
//! running, and every acknowledged enqueue is there.

use jobhost::jobs::{JobState, NewJob, now_ms};
use jobhost::storage::{JobFilter, JobStore, RedbStorage};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;
use uuid::Uuid;

/// The admin secret the child runs with.
const TOKEN: &str = "crash-test-admin-0123456789abcdef";

/// A running `jobhost serve`, killed if the test ends early.
struct Server {
    child: Child,
    finished: mpsc::Receiver<()>,
    /// `http://127.0.0.1:<port>` the API listens on.
    base: String,
}

impl Server {
    fn start(data: &Path) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_jobhost"))
            .args(["serve", "--plugins", jobhost_plugin_artifacts::EXAMPLES_DIR, "--data"])
            .arg(data)
            .args(["--listen", "127.0.0.1:0"])
            .env("JOBHOST_ADMIN_TOKEN", TOKEN)
            .env("RUST_LOG", "jobhost=debug")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting jobhost serve");
        let stderr = child.stderr.take().unwrap();
        let (tx, finished) = mpsc::channel();
        let (address_tx, address) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some((_, rest)) = line.split_once("http://") {
                    let _ =
                        address_tx.send(rest.split_whitespace().next().unwrap_or("").to_string());
                }
                if line.contains("job finished") && tx.send(()).is_err() {
                    break;
                }
            }
        });
        let address =
            address.recv_timeout(Duration::from_secs(120)).expect("the server never listened");
        Server { child, finished, base: format!("http://{address}") }
    }

    /// Enqueues `count` jobs over HTTP while the server runs; returns the ids
    /// it acknowledged (202).
    async fn enqueue_over_http(&self, count: usize) -> Vec<Uuid> {
        let client = reqwest::Client::new();
        let mut ids = Vec::new();
        for i in 0..count {
            let response = client
                .post(format!("{}/v1/jobs", self.base))
                .bearer_auth(TOKEN)
                .json(&serde_json::json!({
                    "job": "examples.sleep",
                    "args": {"seconds": 0.05, "steps": 1},
                    "name": format!("http {i}"),
                }))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), reqwest::StatusCode::ACCEPTED);
            let job: serde_json::Value = response.json().await.unwrap();
            ids.push(Uuid::parse_str(job["id"].as_str().unwrap()).unwrap());
        }
        ids
    }

    /// Blocks until `count` more jobs finished (two minutes at most).
    fn wait_finished(&self, count: usize) {
        for seen in 0..count {
            if self.finished.recv_timeout(Duration::from_secs(120)).is_err() {
                panic!("only {seen} of {count} jobs finished");
            }
        }
    }

    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    fn stop(mut self) {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "jobhost serve exited with {status}");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Enqueues `count` sleep jobs; returns the acknowledged ids.
async fn enqueue(data: &Path, count: usize) -> Vec<Uuid> {
    let storage = RedbStorage::open(&data.join("jobhost.redb")).unwrap();
    let mut ids = Vec::new();
    for i in 0..count {
        let job = NewJob {
            tenant: "acme".into(),
            job: "examples.sleep".into(),
            args: r#"{"seconds":0.05,"steps":1}"#.into(),
            name: Some(format!("crash {i}")),
            ..NewJob::default()
        };
        ids.push(storage.enqueue(job, now_ms()).await.unwrap().job.id);
    }
    ids
}

async fn unfinished(data: &Path) -> usize {
    let storage = RedbStorage::open(&data.join("jobhost.redb")).unwrap();
    let page = storage.list(&JobFilter::default(), 0, usize::MAX).await.unwrap();
    page.jobs.iter().filter(|job| !job.state.is_terminal()).count()
}

#[tokio::test]
async fn no_job_is_lost_when_the_host_is_killed_while_jobs_run() {
    let data = tempfile::tempdir().unwrap();
    let mut acknowledged = enqueue(data.path(), 200).await;

    // Kill while jobs run, at several points: each round enqueues over HTTP
    // while jobs run, and more go into the file while the host is down.
    for (finished_before_kill, over_http, offline) in [(40, 50, 50), (80, 50, 50), (1, 50, 50)] {
        let server = Server::start(data.path());
        acknowledged.extend(server.enqueue_over_http(over_http).await);
        server.wait_finished(finished_before_kill);
        server.kill();
        acknowledged.extend(enqueue(data.path(), offline).await);
    }

    // Let the last run finish everything that is left, then stop it cleanly.
    let left = unfinished(data.path()).await;
    let server = Server::start(data.path());
    server.wait_finished(left);
    server.stop();

    let storage = RedbStorage::open(&data.path().join("jobhost.redb")).unwrap();
    assert_eq!(acknowledged.len(), 500);
    let mut rerun = 0;
    for id in &acknowledged {
        let job = storage.get(*id).await.expect("an acknowledged job is missing");
        assert_eq!(job.state, JobState::Completed, "{job:?}");
        assert!(job.lease_until.is_none());
        if job.attempt > 1 {
            rerun += 1;
        }
    }
    let running = JobFilter { state: Some(JobState::Running), ..JobFilter::default() };
    assert_eq!(storage.list(&running, 0, 1).await.unwrap().total, 0, "none left running");
    assert!(rerun > 0, "the kills hit running jobs, which ran again");
    assert!(storage.locks().await.unwrap().is_empty());
}
