//! Dispatch: claims ready jobs from storage into free worker slots, runs
//! them on the runtime, writes their output and outcome back, and keeps
//! their leases alive. What each outcome means for the job is the model's
//! rule ([`crate::jobs::rules::finished`]); the dispatcher reports it.
//!
//! One loop per host ([`Dispatcher::run`]): a claim that waits in storage
//! for a free slot and a ready job ([`JobStore::claim_waiting`]), so the
//! job starts in the commit that made it claimable (its enqueue, or the
//! finish of the job before it), then the claimed jobs start. Promotion,
//! recovery, retention and heartbeats are services of their own
//! (`crate::services`); `children` enqueues what a running job spawns.
//!
//! [`JobStore::claim_waiting`]: crate::storage::JobStore::claim_waiting

mod children;
mod output;
mod runs;

/// How soon a run's output or outcome is written again while storage is
/// unavailable.
const UNAVAILABLE_RETRY: Duration = Duration::from_millis(250);

use crate::egress::EgressPolicy;
use crate::events::{EventBus, JobUpdate};
use crate::jobs::{Clock, FailureKind, JobRecord, Outcome, RetryPolicy, RunReport, WorkerMode};
use crate::runtime::{CancelToken, JobContext, Plugin, Runtime};
use crate::storage::{ClaimRules, ClaimWaiting, Finishing, OutputBatch, Storage, StorageError};
use children::Children;
use futures::FutureExt;
use output::JobOutput;
use runs::{Run, Runs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tracing::Instrument;
use uuid::Uuid;

/// How a dispatcher works.
#[derive(Debug, Clone)]
pub struct DispatchConfig {
    /// This worker's id, recorded on the jobs it runs.
    pub worker: String,
    /// Jobs run at once.
    pub slots: usize,
    /// Lease length; renewed every third of it while a job runs.
    pub lease: Duration,
    /// Longest wait of one claim for work (then the loop looks at its mode
    /// and shutdown, and claims again), and between looks at storage while
    /// the worker is not active.
    pub poll: Duration,
    /// How often buffered output is written while a job runs.
    pub flush: Duration,
    /// Which failures are retried.
    pub retry: RetryPolicy,
    /// At shutdown, how long running jobs get to finish before the rest
    /// are handed back to the queue.
    pub shutdown_grace: Duration,
    /// Where the callback of a job a plugin spawns may go.
    pub egress: EgressPolicy,
}

impl Default for DispatchConfig {
    fn default() -> Self {
        Self {
            worker: format!("worker-{}", Uuid::now_v7()),
            slots: 64,
            lease: Duration::from_secs(30),
            poll: Duration::from_millis(100),
            flush: Duration::from_millis(200),
            retry: RetryPolicy::default(),
            shutdown_grace: Duration::from_secs(30),
            egress: EgressPolicy::default(),
        }
    }
}

/// Runs jobs from storage on the runtime.
pub struct Dispatcher {
    storage: Arc<dyn Storage>,
    runtime: Arc<Runtime>,
    bus: EventBus,
    clock: Arc<dyn Clock>,
    config: DispatchConfig,
    /// The runs going on here, by job.
    running: Mutex<Runs>,
    /// The mode an operator set, as of the last heartbeat.
    mode: Mutex<WorkerMode>,
    /// Set once shutdown began: nothing more is claimed.
    stopping: AtomicBool,
    wake: Notify,
    /// Rung when the mode an operator set changes.
    stop_asked: Notify,
    /// Rounds of the loop so far (claims tried), for metrics: a number
    /// that stops growing is a stuck dispatcher.
    rounds: AtomicU64,
    /// Held while a plugin version is made ready (see `plugin_for`).
    loading: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher").field("config", &self.config).finish_non_exhaustive()
    }
}

impl Dispatcher {
    /// A dispatcher; nothing runs until [`run`](Self::run).
    pub fn new(
        storage: Arc<dyn Storage>,
        runtime: Arc<Runtime>,
        bus: EventBus,
        clock: Arc<dyn Clock>,
        config: DispatchConfig,
    ) -> Arc<Self> {
        Arc::new(Self {
            storage,
            runtime,
            bus,
            clock,
            running: Mutex::new(Runs::new(config.worker.clone(), config.slots)),
            config,
            mode: Mutex::default(),
            stopping: AtomicBool::new(false),
            wake: Notify::new(),
            stop_asked: Notify::new(),
            rounds: AtomicU64::new(0),
            loading: tokio::sync::Mutex::new(()),
        })
    }

    /// Why this host takes no new work, if it does not: it is shutting
    /// down, or an operator drained or stopped its worker. A paused worker
    /// still takes jobs: they wait until it is resumed.
    pub fn refusal(&self) -> Option<String> {
        if self.stopping.load(Ordering::Relaxed) {
            return Some("the host is shutting down".into());
        }
        match *self.mode.lock().unwrap() {
            WorkerMode::Active | WorkerMode::Paused => None,
            WorkerMode::Draining => Some(format!("worker {} is draining", self.config.worker)),
            WorkerMode::Stopping => Some(format!("worker {} is stopping", self.config.worker)),
        }
    }

    /// Resolves once an operator asked this worker to stop (mode
    /// `stopping`), so its host can shut down.
    pub async fn stop_requested(&self) {
        loop {
            let notified = self.stop_asked.notified();
            if *self.mode.lock().unwrap() == WorkerMode::Stopping {
                return;
            }
            notified.await;
        }
    }

    /// Jobs this host runs at once.
    pub fn slots(&self) -> usize {
        self.config.slots
    }

    /// Jobs running here now.
    pub fn running_count(&self) -> usize {
        self.running.lock().unwrap().len()
    }

    /// This host's worker id.
    pub fn worker(&self) -> &str {
        &self.config.worker
    }

    /// How long a lease lasts; the heartbeat renews it every third of that.
    pub fn lease(&self) -> Duration {
        self.config.lease
    }

    /// Rounds the loop has finished: each looked at storage for work it
    /// may claim (unless the worker was paused or full).
    pub fn rounds(&self) -> u64 {
        self.rounds.load(Ordering::Relaxed)
    }

    /// Tells the loop to look for work now (after an enqueue).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Cancels a job: a waiting one at once; a running one cooperatively,
    /// then hard after its grace period.
    pub async fn cancel(&self, id: Uuid) -> Result<JobRecord, StorageError> {
        let job = self.storage.cancel(id, self.clock.now()).await?;
        self.running.lock().unwrap().cancel(&job);
        self.publish_state(&job, "cancel");
        Ok(job)
    }

    /// Cancels a workflow's unfinished steps: waiting ones at once, running
    /// ones told to stop, as [`Dispatcher::cancel`] does for one job.
    pub async fn cancel_workflow(&self, id: Uuid) -> Result<Vec<JobRecord>, StorageError> {
        let jobs = self.storage.cancel_workflow(id, self.clock.now()).await?;
        for job in &jobs {
            self.running.lock().unwrap().cancel(job);
            self.publish_state(job, "cancel");
        }
        Ok(jobs)
    }

    /// The dispatch loop, until `shutdown` resolves. Then nothing more is
    /// claimed, running jobs get the shutdown grace to finish, and the rest
    /// are handed back to the queue (if the process dies first, their leases
    /// expire and recovery does the same).
    pub async fn run(self: Arc<Self>, shutdown: impl Future<Output = ()>) {
        self.heartbeat().await;
        tokio::pin!(shutdown);
        loop {
            let waited = self.claim_and_start().await;
            self.rounds.fetch_add(1, Ordering::Relaxed);
            if waited {
                // The claim waited for work itself: claim again at once.
                if (&mut shutdown).now_or_never().is_some() {
                    break;
                }
                continue;
            }
            tokio::select! {
                () = &mut shutdown => break,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(self.config.poll) => {}
            }
        }
        self.stopping.store(true, Ordering::Relaxed);
        self.finish_running().await;
    }

    /// Waits up to the shutdown grace for running jobs, then hands the
    /// rest back and stops them.
    async fn finish_running(&self) {
        let deadline = tokio::time::Instant::now() + self.config.shutdown_grace;
        let running = || self.running.lock().unwrap().keys().copied().collect::<Vec<Uuid>>();
        while !running().is_empty() && tokio::time::Instant::now() < deadline {
            tokio::select! {
                () = self.wake.notified() => {}
                () = tokio::time::sleep_until(deadline) => {}
            }
        }
        let left = running();
        if left.is_empty() {
            return;
        }
        match self.storage.hand_back(&self.config.worker, left, self.clock.now()).await {
            Ok(jobs) => {
                tracing::info!("handed {} running jobs back to the queue", jobs.len());
                for job in &jobs {
                    self.publish_state(job, "handed back");
                }
            }
            Err(e) => tracing::error!("handing jobs back (their leases will expire): {e}"),
        }
        for run in self.running.lock().unwrap().values() {
            run.cancel.cancel();
        }
    }

    /// Claims jobs for the free slots, waiting up to the poll interval for
    /// a slot and a job (an enqueue then starts its job in its own commit,
    /// a finish hands its slot on in its own), and starts them. False when
    /// it did not claim at all (the worker is not active, or storage
    /// failed): the loop then waits to be woken.
    async fn claim_and_start(self: &Arc<Self>) -> bool {
        if *self.mode.lock().unwrap() != WorkerMode::Active {
            return false;
        }
        let rules = ClaimRules {
            worker: self.config.worker.clone(),
            max: self.config.slots,
            now: self.clock.now(),
            lease_ms: self.config.lease.as_millis() as u64,
        };
        let waiting = ClaimWaiting { clock: self.clock.clone(), wait: self.config.poll };
        let claimed = match self.storage.claim_waiting(rules, waiting).await {
            Ok(claimed) => claimed,
            Err(e) => {
                tracing::error!("claiming jobs: {e}");
                return false;
            }
        };
        for job in claimed {
            let run = Run { attempt: job.attempt, cancel: CancelToken::new() };
            // A run of an earlier attempt still going here lost its lease
            // (this claim proves it): stop it, its output no longer lands.
            if let Some(stale) = self.running.lock().unwrap().enter(job.id, run.clone()) {
                tracing::warn!(job = %job.id, attempt = stale.attempt, "a run that lost its lease is stopped");
                stale.cancel.cancel();
            }
            self.publish_state(&job, "claimed");
            // Every host log line about this run names the job.
            let span = tracing::info_span!(
                "job",
                id = %job.id,
                plugin = %job.job,
                tenant = %job.tenant,
                attempt = job.attempt
            );
            tokio::spawn(self.clone().run_job(job, run).instrument(span));
        }
        true
    }

    async fn run_job(self: Arc<Self>, job: JobRecord, run: Run) {
        let (report, output) = match self.plugin_for(&job).await {
            Ok(plugin) => {
                let (bus, clock) = (self.bus.clone(), self.clock.clone());
                let output = Arc::new(JobOutput::new(job.id, job.tenant.clone(), bus, clock));
                let (ended, end) = tokio::sync::oneshot::channel();
                let flusher = self.clone().flush_output(job.id, run.clone(), output.clone(), end);
                let flusher = tokio::spawn(flusher);
                let context = JobContext {
                    id: job.id.to_string(),
                    attempt: job.attempt,
                    cancel: run.cancel.clone(),
                    observer: output.clone(),
                    spawner: Some(Arc::new(Children::new(self.clone(), &job))),
                };
                let limits = self.runtime.limits(&job.limits);
                let report = self.runtime.run(&plugin, context, &job.args, &limits).await;
                let _ = ended.send(());
                let _ = flusher.await;
                (report, output.take().unwrap_or_default())
            }
            Err(message) => {
                let report = RunReport {
                    outcome: Outcome::Failed { kind: FailureKind::HostError, message },
                    fuel_used: 0,
                    duration: Duration::ZERO,
                    memory_peak: 0,
                };
                (report, OutputBatch::default())
            }
        };
        let finishing = Finishing {
            worker: self.config.worker.clone(),
            attempt: job.attempt,
            report,
            policy: self.config.retry.clone(),
            now: self.clock.now(),
            random: fastrand::u64(..),
            output,
        };
        match self.patiently(|| self.storage.finish(job.id, finishing.clone())).await {
            Ok(done) => {
                tracing::debug!(job = %done.id, state = done.state.as_str(), "job finished");
                self.publish_state(&done, "finished");
            }
            Err(e) => tracing::warn!(job = %job.id, "recording the outcome: {e}"),
        }
        self.running.lock().unwrap().leave(job.id, job.attempt);
        self.wake.notify_one();
    }

    /// The plugin version `job` was enqueued with, ready to run: from the
    /// registry's ready set, else made ready from its stored bytes (from
    /// the compile cache after the first time). One version is made ready
    /// at a time, so fifty jobs of a cold plugin load it once.
    async fn plugin_for(&self, job: &JobRecord) -> Result<Arc<Plugin>, String> {
        let registry = self.runtime.registry();
        if let Some(plugin) = registry.version(&job.tenant, &job.job, &job.plugin_digest) {
            return Ok(plugin);
        }
        let _loading = self.loading.lock().await;
        if let Some(plugin) = registry.version(&job.tenant, &job.job, &job.plugin_digest) {
            return Ok(plugin);
        }
        let known = registry.resolve(&job.tenant, &job.job).map_err(|e| e.to_string())?;
        let digest = match job.plugin_digest.as_str() {
            "" => known.digest.clone(),
            digest => digest.to_string(),
        };
        let bytes =
            self.storage.component(&digest).await.map_err(|_| {
                format!("version {digest} of plugin {:?} is no longer stored", job.job)
            })?;
        let (runtime, tenant, name) = (self.runtime.clone(), job.tenant.clone(), job.job.clone());
        tokio::task::spawn_blocking(move || {
            let plugin = runtime.registry().prepare(Some(&tenant), &name, &bytes)?;
            Ok(runtime.registry().keep_ready(&tenant, plugin))
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e: crate::runtime::PluginError| e.to_string())
    }

    /// Tries `write` again while storage is unavailable (a full disk), for
    /// at most a lease: a run's output and outcome are worth the wait, and
    /// past its lease recovery takes the job anyway.
    async fn patiently<T, F: Future<Output = Result<T, StorageError>>>(
        &self,
        mut write: impl FnMut() -> F,
    ) -> Result<T, StorageError> {
        let give_up = tokio::time::Instant::now() + self.config.lease;
        loop {
            match write().await {
                Err(StorageError::Unavailable(why)) if tokio::time::Instant::now() < give_up => {
                    tracing::warn!("storage unavailable ({why}); trying again");
                    tokio::time::sleep(UNAVAILABLE_RETRY).await;
                }
                other => return other,
            }
        }
    }

    /// Writes a running job's buffered output every flush interval until
    /// `end` says the run ended (a write in progress is never cut off: what
    /// is left then goes with the outcome); stops the run if storage says
    /// it lost its lease.
    async fn flush_output(
        self: Arc<Self>,
        id: Uuid,
        run: Run,
        output: Arc<JobOutput>,
        mut end: tokio::sync::oneshot::Receiver<()>,
    ) {
        loop {
            tokio::select! {
                () = tokio::time::sleep(self.config.flush) => {}
                _ = &mut end => return,
            }
            if let Some(batch) = output.take() {
                let append = || self.storage.append_output(id, run.attempt, batch.clone());
                match self.patiently(append).await {
                    Err(StorageError::Conflict(why)) => {
                        tracing::warn!(job = %id, "stopping the run: {why}");
                        run.cancel.cancel();
                        return;
                    }
                    Err(e) => tracing::error!(job = %id, "writing output: {e}"),
                    Ok(()) => {}
                }
            }
        }
    }

    /// Reports this worker alive (learning the mode an operator set) and
    /// renews the leases of every job running here.
    pub async fn heartbeat(&self) {
        let running: Vec<(Uuid, u32)> =
            self.running.lock().unwrap().iter().map(|(id, run)| (*id, run.attempt)).collect();
        let slots = self.config.slots as u32;
        let now = self.clock.now();
        match self.storage.heartbeat(&self.config.worker, slots, running.len() as u32, now).await {
            Ok(mode) => {
                let changed = std::mem::replace(&mut *self.mode.lock().unwrap(), mode) != mode;
                if changed {
                    tracing::info!(worker = %self.config.worker, ?mode, "worker mode changed");
                    self.wake();
                    self.stop_asked.notify_waiters();
                }
            }
            Err(e) => tracing::error!("worker heartbeat: {e}"),
        }
        if running.is_empty() {
            return;
        }
        let until = now + self.config.lease.as_millis() as u64;
        match self.storage.renew(&self.config.worker, running, until).await {
            Ok(lost) => {
                let runs = self.running.lock().unwrap();
                for (id, attempt) in lost {
                    if let Some(run) = runs.get(&id).filter(|run| run.attempt == attempt) {
                        tracing::warn!(job = %id, attempt, "the run lost its lease and is stopped");
                        run.cancel.cancel();
                    }
                }
            }
            Err(e) => tracing::error!("renewing leases: {e}"),
        }
    }

    fn publish_state(&self, job: &JobRecord, reason: &str) {
        let update = JobUpdate::State { state: job.state, reason: reason.to_string() };
        self.bus.publish(job.id, &job.tenant, update);
    }
}
