//! The per-job sandbox: the data of a fresh [`Store`] (WASI with no ambient
//! capabilities, the job's context, its memory budget) and its limits.

use super::bindings::{v0_1, v0_2};
use super::cancel::CancelToken;
use super::joblog::{GuestStream, JobLog};
use super::observer::JobObserver;
use super::output::GuestOutput;
use crate::jobs::{Limits, LogLevel, MAX_METADATA_BYTES, MAX_METADATA_KEYS};
use std::sync::Arc;
use wasmtime::component::ResourceTable;
use wasmtime::{Engine, ResourceLimiter, Store, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

/// Bounds on what one metadata value may cost the host.
const MAX_METADATA_KEY: usize = 128;
const MAX_METADATA_VALUE: usize = 64 << 10;

/// Longest progress message kept; longer ones are cut.
const MAX_PROGRESS_MESSAGE: usize = 1 << 10;
/// Memories and tables one job may create. A component built by rustc
/// needs one or two; this only stops abuse. Instances are bounded by
/// `--max-core-instances`.
const MAX_OBJECTS: usize = 100;

/// Who the job is and where its output goes, for the `context` imports.
#[derive(Clone)]
pub struct JobContext {
    /// The job's id, returned by `job-id`.
    pub id: String,
    /// The attempt number, returned by `attempt`.
    pub attempt: u32,
    /// Read by `is-cancelled`.
    pub cancel: CancelToken,
    /// Receives log lines, progress and metadata.
    pub observer: Arc<dyn JobObserver>,
    /// Enqueues the children it spawns; `None` where there is no queue
    /// (`jobhost run`), and `spawn` fails with a message.
    pub spawner: Option<Arc<dyn Spawner>>,
}

/// Where a running job's children go: the host enqueues them in the job's
/// tenant, within its quotas, linked to the job.
#[async_trait::async_trait]
pub trait Spawner: Send + Sync {
    /// Enqueues `job` with JSON `args` and `options` (the other fields of an
    /// enqueue); returns the child's id, or why not.
    async fn spawn(&self, job: String, args: String, options: String) -> Result<String, String>;
}

impl std::fmt::Debug for JobContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobContext").field("id", &self.id).field("attempt", &self.attempt).finish()
    }
}

/// The data of one job's store.
pub(crate) struct JobState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) memory: MemoryBudget,
    pub(crate) log: JobLog,
    job: JobContext,
    /// Size of each metadata entry this run set, against the caps.
    metadata: std::collections::HashMap<String, usize>,
}

/// Enforces the memory and table limits and remembers why one tripped.
pub(crate) struct MemoryBudget {
    limit: u64,
    table_elements: u64,
    /// Core instances the component may create (`--max-core-instances`).
    instances: usize,
    used: u64,
    pub(crate) peak: u64,
    /// Set when a growth was refused; a trap after that is a `memory_limit`.
    pub(crate) exceeded: Option<String>,
}

/// A fresh store for one run: fuel set, epoch deadline one tick away with a
/// callback that yields to tokio on every tick (so a spinning guest shares
/// the thread), and the memory limiter installed, allowing `instances` core
/// instances.
pub(crate) fn new_store(
    engine: &Engine,
    job: JobContext,
    limits: &Limits,
    instances: usize,
) -> Store<JobState> {
    let log = JobLog::new(job.observer.clone(), limits.log_lines, limits.log_bytes);
    let wasi = WasiCtxBuilder::new()
        .stdout(GuestOutput::new(log.clone(), GuestStream::Stdout))
        .stderr(GuestOutput::new(log.clone(), GuestStream::Stderr))
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .build();
    let memory = MemoryBudget {
        limit: limits.memory_bytes,
        table_elements: limits.table_elements,
        instances,
        used: 0,
        peak: 0,
        exceeded: None,
    };
    let state = JobState {
        wasi,
        table: ResourceTable::new(),
        memory,
        log,
        job,
        metadata: Default::default(),
    };
    let mut store = Store::new(engine, state);
    store.limiter(|state| &mut state.memory);
    store.set_fuel(limits.fuel).expect("fuel is enabled on the engine");
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(|_| Ok(UpdateDeadline::Yield(1)));
    store
}

impl WasiView for JobState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl ResourceLimiter for MemoryBudget {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let wanted = self.used + (desired - current) as u64;
        if wanted > self.limit {
            self.exceeded = Some(format!(
                "memory limit of {} bytes reached: the guest asked for {wanted} bytes",
                self.limit
            ));
            return Ok(false);
        }
        self.used = wanted;
        self.peak = self.peak.max(wanted);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired as u64 > self.table_elements {
            self.exceeded = Some(format!(
                "table limit of {} elements reached: the guest asked for {desired}",
                self.table_elements
            ));
            return Ok(false);
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        self.instances
    }

    fn tables(&self) -> usize {
        MAX_OBJECTS
    }

    fn memories(&self) -> usize {
        MAX_OBJECTS
    }
}

impl JobState {
    fn report_progress(&mut self, percent: f32, message: Option<String>) {
        let percent = if percent.is_nan() { 0.0 } else { percent.clamp(0.0, 100.0) };
        let message = message.map(|m| truncate(m, MAX_PROGRESS_MESSAGE));
        self.job.observer.progress(percent, message.as_deref());
    }

    fn put_metadata(&mut self, key: String, json: String) -> Result<(), String> {
        if key.is_empty() || key.len() > MAX_METADATA_KEY {
            return Err(format!("metadata key must be 1 to {MAX_METADATA_KEY} bytes"));
        }
        if json.len() > MAX_METADATA_VALUE {
            return Err(format!(
                "metadata value of {} bytes is over the {MAX_METADATA_VALUE}-byte limit",
                json.len()
            ));
        }
        let value =
            serde_json::from_str(&json).map_err(|e| format!("metadata is not JSON: {e}"))?;
        let size = key.len() + json.len();
        let replaced = self.metadata.get(&key).copied();
        if replaced.is_none() && self.metadata.len() >= MAX_METADATA_KEYS {
            return Err(format!("a job may set at most {MAX_METADATA_KEYS} metadata keys"));
        }
        let total: usize = self.metadata.values().sum::<usize>() - replaced.unwrap_or(0) + size;
        if total > MAX_METADATA_BYTES {
            return Err(format!(
                "metadata of a job may hold at most {MAX_METADATA_BYTES} bytes; this would make {total}"
            ));
        }
        self.metadata.insert(key.clone(), size);
        self.job.observer.metadata(&key, value);
        Ok(())
    }
}

/// The calls every version of the `context` interface has, for the `Host`
/// trait of the version module `$context`: one implementation behind each.
macro_rules! shared_context_calls {
    ($context:ident) => {
        fn log(&mut self, level: $context::Level, message: String) {
            let level = match level {
                $context::Level::Trace => LogLevel::Trace,
                $context::Level::Debug => LogLevel::Debug,
                $context::Level::Info => LogLevel::Info,
                $context::Level::Warn => LogLevel::Warn,
                $context::Level::Error => LogLevel::Error,
            };
            self.log.line(level, &message);
        }

        fn progress(&mut self, percent: f32, message: Option<String>) {
            self.report_progress(percent, message);
        }

        fn set_metadata(&mut self, key: String, json: String) -> Result<(), String> {
            self.put_metadata(key, json)
        }

        fn is_cancelled(&mut self) -> bool {
            self.job.cancel.is_cancelled()
        }

        fn job_id(&mut self) -> String {
            self.job.id.clone()
        }

        fn attempt(&mut self) -> u32 {
            self.job.attempt
        }
    };
}

use v0_1::context as context_v0_1;
use v0_2::context as context_v0_2;

impl context_v0_1::Host for JobState {
    shared_context_calls!(context_v0_1);
}

impl context_v0_2::Host for JobState {
    shared_context_calls!(context_v0_2);

    async fn spawn(
        &mut self,
        job: String,
        args: String,
        options: String,
    ) -> Result<String, String> {
        match self.job.spawner.clone() {
            Some(spawner) => spawner.spawn(job, args, options).await,
            None => Err("this host runs no queue (jobhost run): spawn needs jobhost serve".into()),
        }
    }
}

/// Cuts `text` to at most `max` bytes on a character boundary.
fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}
