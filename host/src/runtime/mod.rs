//! The sandboxed WebAssembly runtime: one engine, a registry of compiled
//! plugins, and [`Runtime::run`] that runs one job under its limits.
//!
//! - `engine`: wasmtime configuration and the epoch ticker.
//! - `registry`, `footprint` and `compile`: plugins by name, checked (their
//!   memories, tables and data against the caps, before compiling), compiled
//!   once, cached.
//! - `sandbox`: the per-job store (WASI without ambient capabilities, memory
//!   limiter) and the `context` host imports.
//! - `joblog` and `output`: the bounded job log fed by `log` and stdout/stderr.
//! - `run`: one run from instantiation to [`crate::jobs::Outcome`].
//!
//! The plain data it speaks (limits, outcomes, log levels) lives in
//! [`crate::jobs`], so storage and the API never depend on wasmtime.

mod bindings;
mod cancel;
mod compile;
mod engine;
mod error;
mod footprint;
mod hints;
mod joblog;
mod observer;
mod output;
mod registry;
mod run;
mod sandbox;

pub use cancel::CancelToken;
use compile::CompileCache;
pub use compile::{CompiledFrom, digest};
pub use error::PluginError;
pub use observer::{IgnoreOutput, JobObserver};
pub use registry::{Inspection, Loaded, Plugin, PluginInfo, Registry, check_name};
pub use sandbox::{JobContext, Spawner};

use crate::jobs::{LimitOverrides, Limits, RunReport};

use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::Semaphore;
use wasmtime::Engine;
use wasmtime::component::{HasSelf, Linker};

/// Jobs the default pool has room for at once.
pub const DEFAULT_POOL_SLOTS: u32 = 128;
/// Bytes of a pooled memory kept resident between jobs by default.
pub const DEFAULT_KEEP_RESIDENT: usize = 1 << 20;
/// Core instances per component: a component built by rustc for
/// wasm32-wasip2 needs a few; componentize-py and jco builds a dozen or so.
pub const DEFAULT_MAX_CORE_INSTANCES: u32 = 32;

/// How to build a [`Runtime`].
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Where compiled components are cached; `None` compiles every time.
    pub cache_dir: Option<PathBuf>,
    /// Limits of a job that asks for nothing else.
    pub defaults: Limits,
    /// The most any plugin or job may ask for.
    pub caps: Limits,
    /// Use the pooling allocator with room for this many jobs at once;
    /// `None` maps each job's memory on demand. Runs beyond the pool's room
    /// wait for a slot before their wall time starts.
    pub pool_slots: Option<u32>,
    /// With the pool: bytes of each linear memory and table that a finished
    /// job's slot resets with memset (only the pages it touched) and keeps
    /// resident, instead of handing them back with madvise, so the next job
    /// in the slot takes no page faults there.
    pub pool_keep_resident: usize,
    /// Core wasm instances one component may create; a component that
    /// needs more is refused at upload, and each pool slot has room for
    /// this many.
    pub max_core_instances: u32,
    /// Versions of uploaded plugins kept ready at once; past that the
    /// least recently used one goes, to be loaded again from the compile
    /// cache on its next job.
    pub ready_plugins: usize,
}

/// Uploaded plugin versions kept ready by default.
pub const DEFAULT_READY_PLUGINS: usize = 256;

impl Default for RuntimeConfig {
    /// No cache, default limits as caps, and the pooling allocator, which
    /// halves job start latency (docs/BENCHMARKS.md).
    fn default() -> Self {
        Self {
            cache_dir: None,
            defaults: Limits::default(),
            caps: Limits::default(),
            pool_slots: Some(DEFAULT_POOL_SLOTS),
            pool_keep_resident: DEFAULT_KEEP_RESIDENT,
            max_core_instances: DEFAULT_MAX_CORE_INSTANCES,
            ready_plugins: DEFAULT_READY_PLUGINS,
        }
    }
}

/// Runs jobs of registered plugins, each in its own sandbox. Cheap to share
/// behind an `Arc`; every method takes `&self`.
#[derive(Debug)]
pub struct Runtime {
    engine: Engine,
    registry: Registry,
    /// One permit per pool slot, when pooling.
    slots: Option<Arc<Semaphore>>,
    defaults: Limits,
    caps: Limits,
    /// Core instances a job's component may create.
    max_core_instances: usize,
}

impl Runtime {
    /// Builds the engine, links WASI and the `context` imports, opens the cache.
    pub fn new(config: RuntimeConfig) -> anyhow::Result<Self> {
        let engine = engine::new_engine(&config)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        bindings::v0_1::Job::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state)?;
        bindings::v0_2::Job::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state)?;
        let cache = match config.cache_dir {
            Some(dir) => Some(CompileCache::new(dir, &engine)?),
            None => None,
        };
        Ok(Self {
            registry: Registry::new(
                engine.clone(),
                linker,
                cache,
                config.caps,
                config.max_core_instances,
                config.ready_plugins,
            ),
            slots: config.pool_slots.map(|n| Arc::new(Semaphore::new(n as usize))),
            engine,
            defaults: config.defaults,
            caps: config.caps,
            max_core_instances: usize::try_from(config.max_core_instances)?,
        })
    }

    /// The plugins this runtime can run.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The most any job may ask for.
    pub fn caps(&self) -> &Limits {
        &self.caps
    }

    /// The limits of a job that asks for nothing.
    pub fn defaults(&self) -> &Limits {
        &self.defaults
    }

    /// The limits of a job asking for `overrides`: defaults, overridden,
    /// capped by the server's caps.
    pub fn limits(&self, overrides: &LimitOverrides) -> Limits {
        self.defaults.with(overrides, &self.caps)
    }

    /// Runs `plugin` once with JSON `args`, after waiting for a pool slot.
    /// Never fails: every way the run can end, including host trouble, is an
    /// [`crate::jobs::Outcome`] in the report.
    pub async fn run(
        &self,
        plugin: &Plugin,
        job: JobContext,
        args: &str,
        limits: &Limits,
    ) -> RunReport {
        let _slot = match &self.slots {
            Some(slots) => Some(slots.acquire().await.expect("the slot semaphore is never closed")),
            None => None,
        };
        run::run(&self.engine, plugin, job, args, limits, self.max_core_instances).await
    }
}
