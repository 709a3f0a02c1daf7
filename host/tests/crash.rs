//! The SIGKILL loop: the real `jobhost serve` binary in a child process is
//! killed with SIGKILL round after round while clients enqueue over HTTP
//! and jobs run (some holding a lock), so kills land in the middle of
//! enqueues, runs, commits and lock holds. Then one last host runs what is
//! left and every acknowledged job (a 202 the client read) is there and
//! ended completed, or failed by the lost-worker rule (the only documented
//! way a job fails here); nothing is left running or locked. The last host
//! gets SIGTERM while a job runs: it exits 0 and hands the job back.
//! Most kills land between two checkpoints, so most hosts start by
//! replaying the journal of the one killed before them.
//!
//! `JOBHOST_CRASH_ROUNDS` sets the rounds (default 20, the CI run); a
//! longer run is documented in docs/RELIABILITY.md.

mod child;

use child::{Server, TOKEN};
use jobhost::jobs::JobState;
use jobhost::storage::{JobFilter, JobStore, RedbStorage, Start};
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Clients enqueuing at once.
const CLIENTS: usize = 4;

/// The host of a round: short leases, so a killed host's jobs come back soon.
fn start(data: &Path) -> Server {
    let args = ["--lease-ms", "2000", "--slots", "16", "--shutdown-grace-ms", "500"];
    Server::start(data, &args)
}

/// What the clients share: the server's address of this round (none while
/// it is down), the ids acknowledged with a 202, and when to stop.
#[derive(Default)]
struct Clients {
    base: Mutex<Option<String>>,
    acknowledged: Mutex<Vec<Uuid>>,
    done: AtomicBool,
}

/// One client: enqueues a job every few milliseconds over keep-alive
/// HTTP; a job counts only once its 202 was read. Every tenth job holds a
/// lock, so a lock is held at most kills.
async fn client(shared: Arc<Clients>, number: usize) {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let mut sent = 0;
    while !shared.done.load(Ordering::Relaxed) {
        let Some(base) = shared.base.lock().unwrap().clone() else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        sent += 1;
        let mut body = serde_json::json!({
            "job": "examples.sleep",
            "args": {"seconds": 0.02, "steps": 1},
            "name": format!("client {number} job {sent}"),
        });
        if sent % 10 == 0 {
            body["lock"] = serde_json::json!("crash-lock");
        }
        let sent = http.post(format!("{base}/v1/jobs")).bearer_auth(TOKEN).json(&body).send();
        let Ok(response) = sent.await else { continue };
        if response.status() != reqwest::StatusCode::ACCEPTED {
            continue;
        }
        let Ok(job) = response.json::<serde_json::Value>().await else { continue };
        let id = Uuid::parse_str(job["id"].as_str().unwrap()).unwrap();
        shared.acknowledged.lock().unwrap().push(id);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn rounds() -> usize {
    std::env::var("JOBHOST_CRASH_ROUNDS").ok().and_then(|n| n.parse().ok()).unwrap_or(20)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_acknowledged_job_is_lost_when_the_host_is_killed_over_and_over() {
    let data = tempfile::tempdir().unwrap();
    let shared = Arc::new(Clients::default());
    let clients: Vec<_> = (0..CLIENTS).map(|n| tokio::spawn(client(shared.clone(), n))).collect();
    let rounds = rounds();
    let mut replayed = 0;
    for round in 0..rounds {
        let dir = data.path().to_path_buf();
        let server = tokio::task::spawn_blocking(move || start(&dir)).await.unwrap();
        let log = server.log.lock().unwrap().iter().any(|line| line.contains("replaying"));
        replayed += usize::from(log);
        *shared.base.lock().unwrap() = Some(server.base.clone());
        // Vary how long each host lives, so kills land everywhere.
        tokio::time::sleep(Duration::from_millis(150 + 37 * (round as u64 % 9))).await;
        drop(server);
        *shared.base.lock().unwrap() = None;
    }
    shared.done.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.unwrap();
    }
    let acknowledged: Vec<Uuid> = shared.acknowledged.lock().unwrap().clone();
    assert!(acknowledged.len() > rounds, "the clients got through: {}", acknowledged.len());
    assert!(replayed > 0, "no host found commits in the journal that its file lacked");

    // A last host runs whatever is left, then stops cleanly.
    let dir = data.path().to_path_buf();
    let server = tokio::task::spawn_blocking(move || start(&dir)).await.unwrap();
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let mut unfinished = Vec::new();
        for state in ["pending", "scheduled", "running"] {
            let url = format!("{}/v1/jobs?state={state}&per_page=1", server.base);
            let page: serde_json::Value =
                http.get(url).bearer_auth(TOKEN).send().await.unwrap().json().await.unwrap();
            if page["total"] != 0 {
                unfinished.push(format!("{} {state}", page["total"]));
            }
        }
        if unfinished.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            let queues = http.get(format!("{}/v1/queues", server.base)).bearer_auth(TOKEN);
            let queues = queues.send().await.unwrap().text().await.unwrap();
            let locks = http.get(format!("{}/v1/locks", server.base)).bearer_auth(TOKEN);
            let locks = locks.send().await.unwrap().text().await.unwrap();
            panic!("jobs never finished: {unfinished:?}; queues {queues}; locks {locks}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let locks: serde_json::Value = http
        .get(format!("{}/v1/locks", server.base))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(locks["locks"], serde_json::json!([]), "no lock outlives its holder");
    // SIGTERM while a job runs: the host exits cleanly and hands it back.
    let long = serde_json::json!({"job": "examples.sleep", "args": {"seconds": 600}});
    let long = http.post(format!("{}/v1/jobs", server.base)).bearer_auth(TOKEN).json(&long);
    let long: serde_json::Value = long.send().await.unwrap().json().await.unwrap();
    let long = Uuid::parse_str(long["id"].as_str().unwrap()).unwrap();
    loop {
        let url = format!("{}/v1/jobs/{long}", server.base);
        let job: serde_json::Value =
            http.get(url).bearer_auth(TOKEN).send().await.unwrap().json().await.unwrap();
        if job["state"] == "running" {
            break;
        }
        assert!(Instant::now() < deadline, "the long job never started: {job}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::task::spawn_blocking(move || server.stop()).await.unwrap();

    let storage = RedbStorage::open(&data.path().join("jobhost.redb")).unwrap();
    let (mut rerun, mut lost_worker) = (0, 0);
    let unique: BTreeSet<&Uuid> = acknowledged.iter().collect();
    assert_eq!(unique.len(), acknowledged.len(), "each 202 named a job of its own");
    for id in &acknowledged {
        let job = storage.get(*id).await.expect("an acknowledged job is missing");
        assert!(job.lease_until.is_none(), "{job:?}");
        match job.state {
            JobState::Completed => {}
            JobState::Failed => {
                let events = storage.events(job.id, 0).await.unwrap();
                let reason = &events.last().unwrap().reason;
                assert!(reason.contains("lost-worker rule"), "failed otherwise: {reason}");
                lost_worker += 1;
            }
            other => panic!("job {} ended {other:?}", job.id),
        }
        if job.attempt > 1 {
            rerun += 1;
        }
    }
    let running = JobFilter { state: Some(JobState::Running), ..JobFilter::default() };
    assert_eq!(
        storage.list(&running, Start::Offset(0), 1).await.unwrap().total,
        0,
        "none left running"
    );
    let handed = storage.get(long).await.unwrap();
    assert_eq!(handed.state, JobState::Pending, "SIGTERM hands a running job back");
    let reason = storage.events(long, 0).await.unwrap().last().unwrap().reason.clone();
    assert!(reason.contains("handed the job back"), "{reason}");
    eprintln!(
        "{rounds} kills, {replayed} hosts replayed the journal, {} jobs acknowledged, {rerun} run \
         again after a kill, {lost_worker} failed by the lost-worker rule, 0 lost",
        acknowledged.len()
    );
}
