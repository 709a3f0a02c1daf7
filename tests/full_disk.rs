//! A full disk under the data directory, tried as a client would: a small
//! tmpfs mounted for the test (so the test needs root, as CI has), filled
//! until the host's writes fail. Every 2xx must name a job that is stored,
//! every refusal must be a 503 that says why, the host must keep answering,
//! and it must take jobs again, without a restart, once space returns.

use jobhost::jobs::Role;
use jobhost_tests::eventually;
use jobhost_tests::server::{TestServer, error_code, error_message, wait_state};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A tmpfs of `size` mounted on a new temp dir, unmounted on drop.
struct SmallDisk {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> SmallDisk {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data");
        std::fs::create_dir(&path).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .status()
            .expect("running mount");
        assert!(status.success(), "mounting a tmpfs for the full-disk test needs root: {status}");
        SmallDisk { path, _dir: dir }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// Writes `path` until the disk says it is full; returns the bytes written.
fn fill(path: &Path) -> u64 {
    let mut file = std::fs::File::create(path).unwrap();
    let mut written = 0;
    for chunk in [1 << 20, 64 << 10, 4 << 10, 512] {
        let bytes = vec![7u8; chunk];
        while file.write_all(&bytes).is_ok() {
            written += chunk as u64;
        }
    }
    written
}

fn job(i: usize) -> Value {
    let padding = "x".repeat(16 * 1024);
    json!({"job": "examples.hello", "queue": "full", "args": {"name": format!("{i}"), "padding": padding}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_writes_with_503_loses_nothing_acknowledged_and_recovers() {
    // Room for the 8 MiB journal the host writes at start, and for the
    // pages a checkpoint frees only when it comes.
    let disk = SmallDisk::mount("40m");
    let data = disk.path.clone();
    let server = TestServer::start_with(|config| config.data = data).await;
    let ops = server.token("acme", "ops", Role::Operator).await;
    let (status, _) = server.call(Method::POST, "/v1/queues/full/pause", &ops, None).await;
    assert_eq!(status, StatusCode::OK);

    let mut acknowledged = Vec::new();
    for i in 0..20 {
        let (status, body) = server.call(Method::POST, "/v1/jobs", &ops, Some(job(i))).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        acknowledged.push(body["id"].as_str().unwrap().to_string());
    }

    // A job runs while the disk fills; it ends while nothing can be written.
    let sleep = json!({"job": "examples.sleep", "args": {"seconds": 2, "steps": 4}});
    let (_, body) = server.call(Method::POST, "/v1/jobs", &ops, Some(sleep)).await;
    let running = body["id"].as_str().unwrap().to_string();
    wait_state(&server, &ops, &running, "running").await;

    let filler = disk.path.join("filler");
    let filled = fill(&filler);
    let mut refusal = None;
    for i in 20..3000 {
        let (status, body) = server.call(Method::POST, "/v1/jobs", &ops, Some(job(i))).await;
        match status {
            StatusCode::ACCEPTED => acknowledged.push(body["id"].as_str().unwrap().to_string()),
            _ => {
                refusal = Some((status, body));
                break;
            }
        }
    }
    let (status, body) = refusal.expect("the disk never filled up");
    let before_full = acknowledged.len();
    let full_at = jobhost::jobs::now_ms();
    assert_eq!((status, error_code(&body)), (StatusCode::SERVICE_UNAVAILABLE, "unavailable"));
    let message = error_message(&body);
    assert!(message.contains("No space left on device"), "{message}");
    assert!(message.contains("nothing was changed"), "{message}");

    // While the disk stays full the host answers every request at once:
    // reads and writes either work or get that 503, and a write that works
    // is stored.
    for i in 0..20 {
        let (status, body) = server.call(Method::POST, "/v1/jobs", &ops, Some(job(i))).await;
        match status {
            StatusCode::ACCEPTED => acknowledged.push(body["id"].as_str().unwrap().to_string()),
            StatusCode::SERVICE_UNAVAILABLE => assert_eq!(error_code(&body), "unavailable"),
            other => panic!("enqueue on a full disk: {other} {body}"),
        }
        let path = format!("/v1/jobs/{}", acknowledged[i]);
        let (status, body) = server.call(Method::GET, &path, &ops, None).await;
        assert!(
            status == StatusCode::OK || status == StatusCode::SERVICE_UNAVAILABLE,
            "reading a job on a full disk: {status} {body}"
        );
        let (status, _) = server.call(Method::GET, "/v1/health", "", None).await;
        assert!(status.is_success() || status == StatusCode::SERVICE_UNAVAILABLE, "{status}");
    }

    // The disk stays full while the running job ends: its outcome and log
    // wait to be written.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let freed_at = jobhost::jobs::now_ms();
    std::fs::remove_file(&filler).unwrap();
    let id = eventually("an enqueue works again once space returns", || async {
        let (status, body) = server.call(Method::POST, "/v1/jobs", &ops, Some(job(0))).await;
        (status == StatusCode::ACCEPTED).then(|| body["id"].as_str().unwrap().to_string())
    })
    .await;
    acknowledged.push(id);

    // The job that ended meanwhile has its outcome and its whole log, from
    // its one run: it was not run again.
    let job = wait_state(&server, &ops, &running, "completed").await;
    assert_eq!(job["attempt"], 1, "{job}");
    let ended = job["started_at"].as_u64().unwrap() + job["result"]["slept_ms"].as_u64().unwrap();
    assert!((full_at..freed_at).contains(&ended), "its run ended while the disk was full: {job}");
    let (_, logs) = server.call(Method::GET, &format!("/v1/jobs/{running}/logs"), &ops, None).await;
    assert_eq!(logs["logs"].as_array().map(Vec::len), Some(4), "{logs}");

    // Exactly the acknowledged jobs are stored, and all of them run.
    let (status, _) = server.call(Method::POST, "/v1/queues/full/resume", &ops, None).await;
    assert_eq!(status, StatusCode::OK);
    let (_, list) = server.call(Method::GET, "/v1/jobs?queue=full&per_page=1", &ops, None).await;
    assert_eq!(list["total"], acknowledged.len(), "{list}");
    for id in &acknowledged {
        wait_state(&server, &ops, id, "completed").await;
    }
    eprintln!(
        "full disk: filler {} KiB, first 503 after {before_full} jobs, {} acknowledged in all, all stored and completed",
        filled >> 10,
        acknowledged.len()
    );
    drop(server);
}
