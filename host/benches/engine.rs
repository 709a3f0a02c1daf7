//! Engine benchmark: durable enqueue throughput (one in flight vs. many, so
//! the group commit shows), end-to-end throughput of hello jobs through
//! storage, dispatch and the runtime, enqueue-to-start latency, and the
//! cost of dependencies: a fan-out of jobs waiting for one, released by
//! its finishing commit, and the gap between a job's end and the start of
//! the job chained after it.
//!
//! `cargo bench --workspace --bench engine` (figures in docs/BENCHMARKS.md).

use jobhost::config::Config;
use jobhost::events::JobUpdate;
use jobhost::host::Host;
use jobhost::jobs::{Flow, JobState, NewJob, now_ms};
use jobhost::storage::{JobStore, RedbStorage};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The allocator `jobhost serve` runs with (host/src/main.rs).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ENQUEUES: usize = 20_000;
const IN_FLIGHT: usize = 256;
const SEQUENTIAL_ENQUEUES: usize = 500;
const END_TO_END_JOBS: usize = 10_000;
const LATENCY_SAMPLES: usize = 500;
const FAN_OUT: usize = 5_000;
const CHAIN_SAMPLES: usize = 300;

fn hello() -> NewJob {
    NewJob {
        tenant: "bench".into(),
        job: "examples.hello".into(),
        args: r#"{"name":"bench"}"#.into(),
        ..NewJob::default()
    }
}

fn main() -> anyhow::Result<()> {
    let tokio = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    println!("jobhost engine benchmark ({} cores)", std::thread::available_parallelism()?);
    tokio.block_on(async {
        enqueue_throughput(1, SEQUENTIAL_ENQUEUES).await?;
        enqueue_throughput(IN_FLIGHT, ENQUEUES).await?;
        end_to_end().await?;
        start_latency().await?;
        fan_out().await?;
        chain_latency().await
    })
}

fn open() -> anyhow::Result<(tempfile::TempDir, Arc<RedbStorage>)> {
    let dir = tempfile::tempdir()?;
    let storage = Arc::new(RedbStorage::open(&dir.path().join("bench.redb"))?);
    Ok((dir, storage))
}

/// A storage counter by name.
fn counter(storage: &dyn JobStore, name: &str) -> u64 {
    storage.counters().into_iter().find(|(n, _)| *n == name).map_or(0, |(_, value)| value)
}

/// The group-commit figures so far: writes, commits, mean and max batch.
fn batches(storage: &dyn JobStore) -> String {
    let (commits, writes) = (counter(storage, "commits_total"), counter(storage, "writes_total"));
    format!(
        "{writes} writes in {commits} commits: mean batch {:.1}, max {}",
        writes as f64 / commits.max(1) as f64,
        counter(storage, "largest_commit_writes")
    )
}

async fn enqueue_throughput(in_flight: usize, total: usize) -> anyhow::Result<()> {
    let (_dir, storage) = open()?;
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..in_flight {
        let storage = storage.clone();
        tasks.spawn(async move {
            for _ in 0..total / in_flight {
                storage.enqueue(hello(), now_ms()).await?;
            }
            anyhow::Ok(())
        });
    }
    for result in tasks.join_all().await {
        result?;
    }
    let elapsed = started.elapsed();
    let writes = counter(storage.as_ref(), "writes_total");
    println!(
        "durable enqueue, {in_flight:>3} in flight: {:>7.0} jobs/s  ({})",
        writes as f64 / elapsed.as_secs_f64(),
        batches(storage.as_ref())
    );
    Ok(())
}

/// A host built the way `jobhost serve` builds one, with the examples.
async fn host(dir: &tempfile::TempDir) -> anyhow::Result<Host> {
    let config = Config {
        listen: "127.0.0.1:0".into(),
        data: dir.path().to_path_buf(),
        plugins: vec![jobhost_plugin_artifacts::EXAMPLES_DIR.into()],
        ..Config::default()
    };
    Host::start(config).await
}

async fn end_to_end() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = host(&dir).await?;
    let (storage, dispatcher) = (host.storage().clone(), host.dispatcher().clone());
    let mut updates = host.bus().subscribe();
    let started = Instant::now();
    let feeder = {
        let storage = storage.clone();
        tokio::spawn(async move {
            let mut tasks = tokio::task::JoinSet::new();
            for _ in 0..64 {
                let (storage, dispatcher) = (storage.clone(), dispatcher.clone());
                tasks.spawn(async move {
                    for _ in 0..END_TO_END_JOBS / 64 {
                        storage.enqueue(hello(), now_ms()).await.unwrap();
                        dispatcher.wake();
                    }
                });
            }
            tasks.join_all().await;
        })
    };
    let expected = END_TO_END_JOBS / 64 * 64;
    let mut completed = 0;
    while completed < expected {
        match updates.recv().await {
            Ok(event)
                if matches!(event.update, JobUpdate::State { state: JobState::Completed, .. }) =>
            {
                completed += 1;
            }
            Ok(_) => {}
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                anyhow::bail!("the benchmark lagged {n} events behind the bus")
            }
            Err(e) => anyhow::bail!("bus closed: {e}"),
        }
    }
    feeder.await?;
    let elapsed = started.elapsed();
    println!(
        "end to end, {expected} hello jobs (enqueue, claim, run, finish): {:>6.0} jobs/s  ({})",
        expected as f64 / elapsed.as_secs_f64(),
        batches(storage.as_ref())
    );
    Ok(())
}

async fn start_latency() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = host(&dir).await?;
    let (storage, dispatcher) = (host.storage().clone(), host.dispatcher().clone());
    let mut updates = host.bus().subscribe();
    let mut samples = Vec::with_capacity(LATENCY_SAMPLES);
    let mut seen = HashSet::new();
    for _ in 0..LATENCY_SAMPLES {
        let id = storage.enqueue(hello(), now_ms()).await?.job.id;
        dispatcher.wake();
        let acknowledged = Instant::now();
        loop {
            let event = updates.recv().await?;
            if event.job == id
                && matches!(event.update, JobUpdate::State { state: JobState::Running, .. })
            {
                samples.push(acknowledged.elapsed());
                seen.insert(id);
                break;
            }
        }
        // Let the job finish so each sample starts from an idle host.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    samples.sort();
    let pick = |p: f64| samples[((samples.len() - 1) as f64 * p).round() as usize];
    println!(
        "enqueue-to-start latency, {} idle-host samples: p50 {:.2} ms  p99 {:.2} ms",
        seen.len(),
        pick(0.5).as_secs_f64() * 1e3,
        pick(0.99).as_secs_f64() * 1e3
    );
    Ok(())
}

/// Waits on the bus for `count` jobs to reach `state`.
async fn wait_for(
    updates: &mut tokio::sync::broadcast::Receiver<Arc<jobhost::events::JobEventNotice>>,
    state: JobState,
    count: usize,
) -> anyhow::Result<()> {
    let mut seen = 0;
    while seen < count {
        let event = updates.recv().await?;
        if matches!(&event.update, JobUpdate::State { state: s, .. } if *s == state) {
            seen += 1;
        }
    }
    Ok(())
}

/// One job and `FAN_OUT` jobs depending on it, enqueued while it waits in a
/// paused queue; then it runs, and its finishing commit releases them all.
async fn fan_out() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = host(&dir).await?;
    let (storage, dispatcher) = (host.storage().clone(), host.dispatcher().clone());
    let mut paused = storage.queue("bench/root").await?;
    paused.paused = true;
    storage.set_queue("bench/root", paused.clone()).await?;
    let root = NewJob { queue: "bench/root".into(), ..hello() };
    let root = storage.enqueue(root, now_ms()).await?.job.id;
    let waiting =
        |_| NewJob { flow: Flow { depends_on: vec![root], ..Flow::default() }, ..hello() };
    let jobs: Vec<NewJob> = (0..FAN_OUT).map(waiting).collect();
    for chunk in jobs.chunks(1_000) {
        storage.enqueue_many(chunk.to_vec(), now_ms()).await?;
    }
    let mut updates = host.bus().subscribe();
    let started = Instant::now();
    paused.paused = false;
    storage.set_queue("bench/root", paused).await?;
    dispatcher.wake();
    wait_for(&mut updates, JobState::Completed, FAN_OUT + 1).await?;
    let elapsed = started.elapsed();
    println!(
        "fan-out, 1 job then the {FAN_OUT} waiting for it: {:>6.0} jobs/s from its start to the last end",
        (FAN_OUT + 1) as f64 / elapsed.as_secs_f64()
    );
    Ok(())
}

/// On an idle host, from the enqueue of a job with a chained `next` to the
/// `running` of that next job: the first job's start, run and finish, and
/// the next one released in the finishing commit and claimed.
async fn chain_latency() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = host(&dir).await?;
    let (storage, dispatcher) = (host.storage().clone(), host.dispatcher().clone());
    let mut updates = host.bus().subscribe();
    let mut samples = Vec::with_capacity(CHAIN_SAMPLES);
    for _ in 0..CHAIN_SAMPLES {
        let chained = NewJob { next: Some(Box::new(hello())), ..hello() };
        let first = storage.enqueue(chained, now_ms()).await?.job;
        let next = first.flow.next_job_id.expect("a chained job names its next");
        dispatcher.wake();
        let acknowledged = Instant::now();
        loop {
            let event = updates.recv().await?;
            if event.job == next
                && matches!(event.update, JobUpdate::State { state: JobState::Running, .. })
            {
                samples.push(acknowledged.elapsed());
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    samples.sort();
    let pick = |p: f64| samples[((samples.len() - 1) as f64 * p).round() as usize];
    println!(
        "enqueue to the start of the chained job, {CHAIN_SAMPLES} samples: p50 {:.2} ms  p99 {:.2} ms",
        pick(0.5).as_secs_f64() * 1e3,
        pick(0.99).as_secs_f64() * 1e3
    );
    Ok(())
}
