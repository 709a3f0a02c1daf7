//! Several `jobhost serve` processes on one PostgreSQL database (a
//! throwaway cluster this test starts): an SSE follower on one host sees a
//! job that runs on another, its progress included, and three hosts run 10,000 jobs, one of them
//! killed with SIGKILL midway and the database restarted later: every job
//! completes, exactly once by its journal, the killed host's jobs
//! recovered by the others, and no job a client saw acknowledged is lost.

mod child;
#[path = "../../tests/support/postgres.rs"]
mod postgres;

use child::{Server, TOKEN};
use jobhost::jobs::JobState;
use jobhost::storage::{JobFilter, JobStore, PgStorage, Start};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Jobs the three hosts run.
const JOBS: usize = 10_000;

/// A host named `name` on the database: short leases, so a killed host's
/// jobs come back soon.
fn host(url: &str, name: &str, data: &tempfile::TempDir) -> Server {
    let args = ["--database-url", url, "--worker", name, "--lease-ms", "2000", "--slots", "16"];
    Server::start(data.path(), &args)
}

async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    body: Option<Value>,
) -> Value {
    let mut request = http.request(method, &url).bearer_auth(TOKEN);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert!(status.is_success(), "{url}: {status} {body}");
    body
}

fn sleep_job(name: String) -> Value {
    json!({"job": "examples.sleep", "args": {"seconds": 0.01, "steps": 1}, "name": name})
}

async fn count(storage: &PgStorage, state: JobState) -> usize {
    let filter = JobFilter { state: Some(state), ..JobFilter::default() };
    storage.list(&filter, Start::Offset(0), 1).await.unwrap().total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hosts_share_one_database_and_survive_one_killed() {
    let url = postgres::database_url("three hosts");
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let names = ["host-a", "host-b", "host-c"];
    let mut hosts: Vec<Server> =
        names.iter().zip(&dirs).map(|(name, dir)| host(&url, name, dir)).collect();
    let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap();
    let storage = PgStorage::connect(&url).await.unwrap();
    use reqwest::Method;

    // Every host has reported as a worker: pause host A, so the job
    // followed there runs on another host.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let workers = call(&http, Method::GET, format!("{}/v1/workers", hosts[0].base), None).await;
        let known = workers["workers"].as_array().map_or(0, |w| w.len());
        if known >= 3 {
            break;
        }
        assert!(Instant::now() < deadline, "the hosts never all reported: {workers}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let a = hosts[0].base.clone();
    call(&http, Method::POST, format!("{a}/v1/workers/host-a/pause"), None).await;
    let slow = json!({"job": "examples.sleep", "args": {"seconds": 1.0, "steps": 4}});
    let job = call(&http, Method::POST, format!("{a}/v1/jobs"), Some(slow)).await;
    let id = job["id"].as_str().unwrap().to_string();
    let stream = http
        .get(format!("{a}/v1/jobs/{id}/events"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let states: Vec<String> = stream
        .lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .filter_map(|data| serde_json::from_str::<Value>(data).ok())
        .filter_map(|data| data["state"].as_str().map(String::from))
        .collect();
    assert!(states.iter().any(|s| s == "running"), "the follower on host A saw it run: {stream}");
    assert_eq!(states.last().map(String::as_str), Some("completed"), "and end: {stream}");
    // Progress lives only on the running host's bus, relayed to host A.
    assert!(stream.lines().any(|line| line == "event: progress"), "with progress: {stream}");
    let ran = storage.get(Uuid::parse_str(&id).unwrap()).await.unwrap();
    assert!(ran.worker.as_deref().is_some_and(|w| w != "host-a"), "it ran on {:?}", ran.worker);
    call(&http, Method::POST, format!("{a}/v1/workers/host-a/resume"), None).await;

    // 10,000 jobs enqueued in batches, round the hosts.
    let mut ids = Vec::with_capacity(JOBS);
    for batch in 0..JOBS / 500 {
        let jobs: Vec<Value> = (0..500).map(|i| sleep_job(format!("b{batch} j{i}"))).collect();
        let base = &hosts[batch % 3].base;
        let answer =
            call(&http, Method::POST, format!("{base}/v1/jobs/batch"), Some(json!({"jobs": jobs})))
                .await;
        for result in answer["results"].as_array().unwrap() {
            assert_eq!(result["status"], 202, "{result}");
            ids.push(Uuid::parse_str(result["job"]["id"].as_str().unwrap()).unwrap());
        }
    }

    // Midway, host C is killed while it runs jobs.
    let deadline = Instant::now() + Duration::from_secs(600);
    while count(&storage, JobState::Completed).await < JOBS / 3 {
        assert!(Instant::now() < deadline, "a third of the jobs never completed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let killed = hosts.pop().unwrap();
    drop(killed);

    // The two left take single jobs from a client while they run the
    // rest; halfway the database restarts as after a crash, down 2 s.
    let enqueuing = Arc::new(AtomicBool::new(true));
    let client = tokio::spawn(enqueue_one_by_one(
        http.clone(),
        vec![hosts[0].base.clone(), hosts[1].base.clone()],
        enqueuing.clone(),
    ));
    while count(&storage, JobState::Completed).await < JOBS / 2 {
        assert!(Instant::now() < deadline, "half the jobs never completed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::task::spawn_blocking(|| postgres::restart(Duration::from_secs(2))).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    enqueuing.store(false, Ordering::Relaxed);
    let (acked, refused) = client.await.unwrap();
    assert!(!refused.is_empty(), "no enqueue met the database down");
    for answer in &refused {
        assert!(answer.starts_with("503"), "refused while the database was down: {answer}");
    }
    ids.extend(&acked);

    let all = ids.len() + 1;
    while count(&storage, JobState::Completed).await < all {
        let left = all - count(&storage, JobState::Completed).await;
        assert!(Instant::now() < deadline, "{left} jobs never completed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let mut recovered = 0;
    for chunk in ids.chunks(500) {
        for (id, job) in chunk.iter().zip(storage.get_many(chunk).await.unwrap()) {
            let job = job.unwrap_or_else(|| panic!("job {id} is gone"));
            assert_eq!(job.state, JobState::Completed, "{id}");
            recovered += usize::from(job.leases_lost > 0);
            let events = storage.events(*id, 0).await.unwrap();
            let completions = events.iter().filter(|e| e.state == JobState::Completed).count();
            assert_eq!(completions, 1, "job {id} completed once: {events:?}");
        }
    }
    assert!(recovered > 0, "host C's running jobs were recovered by the others");
    assert!(storage.locks().await.unwrap().is_empty());
    for host in hosts {
        host.stop();
    }
}

/// Enqueues jobs one request at a time, round `bases`, until `enqueuing`
/// turns false: the ids acknowledged (202), and every other answer.
async fn enqueue_one_by_one(
    http: reqwest::Client,
    bases: Vec<String>,
    enqueuing: Arc<AtomicBool>,
) -> (Vec<Uuid>, Vec<String>) {
    let (mut acked, mut refused) = (Vec::new(), Vec::new());
    let mut sent = 0;
    while enqueuing.load(Ordering::Relaxed) {
        let base = &bases[sent % bases.len()];
        let response = http
            .post(format!("{base}/v1/jobs"))
            .bearer_auth(TOKEN)
            .json(&sleep_job(format!("single {sent}")))
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        if status == reqwest::StatusCode::ACCEPTED {
            acked.push(Uuid::parse_str(body["id"].as_str().unwrap()).unwrap());
        } else {
            refused.push(format!("{} {body}", status.as_u16()));
        }
        sent += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    (acked, refused)
}
