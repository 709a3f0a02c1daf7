//! [`Host::start`]: the one place that builds a whole host from a
//! [`Config`]: storage, runtime and plugins, the admin token, the
//! dispatcher, the background services and the HTTP API. The binary, the
//! tests and the benchmarks all start hosts through it.

use crate::api::{self, ApiState};
use crate::config::Config;
use crate::dispatch::Dispatcher;
use crate::events::EventBus;
use crate::jobs::{Clock, SystemClock};
use crate::runtime::{Loaded, PluginInfo, Runtime};
use crate::services::{
    self, Expiry, Heartbeat, Promotion, Recovery, Retention, Schedules, Service, Webhooks,
};
use crate::storage::{PgStorage, RedbStorage, Relay, Storage};
use anyhow::Context;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A running host. Dropping it leaves it running until the process ends;
/// [`Host::stop`] shuts it down gracefully.
#[derive(Debug)]
pub struct Host {
    addr: SocketAddr,
    storage: Arc<dyn Storage>,
    dispatcher: Arc<Dispatcher>,
    bus: EventBus,
    admin_secret: Option<String>,
    stop: watch::Sender<bool>,
    stop_dispatching: watch::Sender<bool>,
    dispatching: JoinHandle<()>,
    serving: JoinHandle<std::io::Result<()>>,
    services: Vec<JoinHandle<()>>,
    stopper: JoinHandle<()>,
    /// Relays job events to and from other hosts on a shared database.
    _relay: Option<Relay>,
}

/// Turns transparent huge pages off for this process. Where the kernel
/// gives them to every anonymous mapping (`enabled` = `always`), the
/// allocator's first touch of each fresh 2 MiB region had the kernel zero
/// a whole huge page: 19% of the storage writer's time and 6% of the
/// workers' under load (docs/BENCHMARKS.md). With small pages a fault
/// zeroes the 4 KiB it touches. A host that cannot change it runs as before.
fn small_pages_only() {
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::thread::disable_transparent_huge_pages(true) {
        tracing::warn!("transparent huge pages stay as the kernel set them: {e}");
    }
}

/// Resolves once `stop` says true.
fn until(stop: &watch::Sender<bool>) -> impl Future<Output = ()> + Send + 'static {
    let mut stopped = stop.subscribe();
    async move {
        let _ = stopped.wait_for(|stopped| *stopped).await;
    }
}

impl Host {
    /// Builds and starts everything `config` describes; returns once the
    /// API listens. Jobs left running by a previous process on the same
    /// data are returned to the queue first.
    pub async fn start(config: Config) -> anyhow::Result<Host> {
        tracing::info!("config: {}", config.summary());
        small_pages_only();
        std::fs::create_dir_all(&config.data)
            .with_context(|| format!("creating {}", config.data.display()))?;
        let bus = EventBus::default();
        let (storage, relay) = open_storage(&config, &bus).await?;
        let runtime = Arc::new(Runtime::new(config.runtime())?);
        load_plugins(&config, &runtime, &storage).await?;
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let admin_secret =
            api::ensure_admin(storage.as_ref(), config.admin_token.as_deref(), clock.now()).await?;

        let dispatcher = Dispatcher::new(
            storage.clone(),
            runtime.clone(),
            bus.clone(),
            clock.clone(),
            config.dispatch(),
        );
        let poll = Duration::from_millis(config.poll_ms);
        let recovery = Arc::new(Recovery {
            storage: storage.clone(),
            clock: clock.clone(),
            dispatcher: dispatcher.clone(),
            period: poll.max(Duration::from_secs(1)),
        });
        recovery.recover_all().await;

        let listener = tokio::net::TcpListener::bind(&config.listen)
            .await
            .with_context(|| format!("listening on {}", config.listen))?;
        let addr = listener.local_addr()?;
        let stop = watch::Sender::new(false);
        let stop_dispatching = watch::Sender::new(false);

        let mut background: Vec<Arc<dyn Service>> = vec![
            Arc::new(Promotion {
                storage: storage.clone(),
                clock: clock.clone(),
                dispatcher: dispatcher.clone(),
                period: poll,
            }),
            Arc::new(Expiry { storage: storage.clone(), clock: clock.clone(), period: poll }),
            Arc::new(Schedules {
                storage: storage.clone(),
                runtime: runtime.clone(),
                egress: config.egress(),
                clock: clock.clone(),
                dispatcher: dispatcher.clone(),
                up_since: clock.now(),
                period: poll.min(Duration::from_millis(200)),
            }),
            recovery,
            Arc::new(Heartbeat { dispatcher: dispatcher.clone() }),
            Arc::new(Webhooks::new(
                storage.clone(),
                clock.clone(),
                api::job_view,
                config.webhooks(),
            )),
        ];
        if let Some(keep) = config.retention() {
            background.push(Arc::new(Retention {
                storage: storage.clone(),
                clock: clock.clone(),
                keep,
                period: Duration::from_secs(config.prune_every_s.max(1)),
            }));
        }
        let services: Vec<_> =
            background.into_iter().map(|s| services::spawn(s, until(&stop))).collect();

        let dispatch_stop = until(&stop_dispatching);
        let host_stop = until(&stop);
        let dispatching = tokio::spawn(dispatcher.clone().run(async move {
            tokio::select! {
                () = dispatch_stop => {}
                () = host_stop => {}
            }
        }));
        let state = ApiState::new(
            storage.clone(),
            runtime.clone(),
            dispatcher.clone(),
            bus.clone(),
            clock,
            config.api(),
        );
        let serving = tokio::spawn(api::serve(listener, state, until(&stop)));
        // An operator's `stop` of this worker shuts the whole host down.
        let (asked, signal) = (dispatcher.clone(), stop.clone());
        let stopper = tokio::spawn(async move {
            asked.stop_requested().await;
            tracing::info!("worker stopping by request: the host shuts down");
            signal.send_replace(true);
        });
        tracing::info!("serving {} plugins on http://{addr}", runtime.registry().list().len());
        Ok(Host {
            addr,
            storage,
            dispatcher,
            bus,
            admin_secret,
            stop,
            stop_dispatching,
            dispatching,
            serving,
            services,
            stopper,
            _relay: relay,
        })
    }

    /// The address the API listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The host's storage.
    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.storage
    }

    /// The host's dispatcher (its worker): wake it, cancel a job.
    pub fn dispatcher(&self) -> &Arc<Dispatcher> {
        &self.dispatcher
    }

    /// The live events of the host's jobs.
    pub fn bus(&self) -> &EventBus {
        &self.bus
    }

    /// The secret of the admin token made at this start, if one was (a
    /// first start without `--admin-token`): to be shown once.
    pub fn admin_secret(&self) -> Option<&str> {
        self.admin_secret.as_deref()
    }

    /// Stops taking work while the API goes on serving: running jobs get the
    /// shutdown grace, the rest are handed back. Returns once done.
    pub async fn stop_dispatching(&mut self) {
        self.stop_dispatching.send_replace(true);
        if let Err(e) = (&mut self.dispatching).await {
            tracing::error!("the dispatcher ended badly: {e}");
        }
    }

    /// Resolves once the host was asked to stop (by [`Host::stop`] or by an
    /// operator stopping its worker).
    pub fn stopped(&self) -> impl Future<Output = ()> + Send + 'static {
        until(&self.stop)
    }

    /// Shuts down gracefully: no new connections, SSE streams end, running
    /// jobs get their grace and the rest go back to the queue, services stop.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.stop.send_replace(true);
        self.stopper.abort();
        let _ = self.stopper.await;
        if !self.dispatching.is_finished() {
            self.dispatching.await?;
        }
        self.serving.await??;
        for service in self.services {
            service.await?;
        }
        // Tasks that hold the storage (connections, streams) end on their
        // own once told to stop; the data file closes with the last of them,
        // and a caller may open it again once this returns.
        drop(self.dispatcher);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while Arc::strong_count(&self.storage) > 1 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    }
}

/// The backend the config names: the PostgreSQL database of
/// `--database-url`, with `bus` relayed to the other hosts on it, or the
/// redb file in the data folder. The log says which.
async fn open_storage(
    config: &Config,
    bus: &EventBus,
) -> anyhow::Result<(Arc<dyn Storage>, Option<Relay>)> {
    let defaults = config.tenant_defaults();
    if let Some(url) = &config.database_url {
        let storage = PgStorage::connect(url).await.context("connecting to the database")?;
        tracing::info!("storage: PostgreSQL database {}", storage.location());
        let relay = storage.relay(bus.clone()).await.context("relaying job events")?;
        return Ok((Arc::new(storage.with_tenant_defaults(defaults)), Some(relay)));
    }
    let database = config.data.join("jobhost.redb");
    let storage =
        RedbStorage::open(&database).with_context(|| format!("opening {}", database.display()))?;
    tracing::info!("storage: redb file {}", database.display());
    Ok((Arc::new(storage.with_tenant_defaults(defaults)), None))
}

/// Registers every component of the plugin folders (shared by all tenants)
/// and the plugins tenants uploaded in earlier runs.
async fn load_plugins(
    config: &Config,
    runtime: &Arc<Runtime>,
    storage: &Arc<dyn Storage>,
) -> anyhow::Result<()> {
    for dir in &config.plugins {
        if !dir.exists() && config.plugins == Config::default().plugins {
            tracing::warn!("no plugin folder {}: no shared plugins", dir.display());
            continue;
        }
        let (loader, dir) = (runtime.clone(), dir.clone());
        let loaded =
            tokio::task::spawn_blocking(move || loader.registry().load_dir(&dir)).await??;
        for Loaded { plugin, .. } in loaded {
            match plugin {
                Ok(plugin) => {
                    tracing::info!(name = %plugin.name, digest = %plugin.digest, size = plugin.size, from = ?plugin.compiled_from, "plugin loaded")
                }
                Err(error) => {
                    tracing::error!("{error:#}; the host goes on without it")
                }
            }
        }
    }
    // Uploads are only known here: each is made ready on its first job
    // (from the compile cache), so a host storing thousands starts at once.
    let stored = storage.plugins(None).await?;
    let known = stored.len();
    for record in &stored {
        runtime.registry().know(PluginInfo::stored(record));
    }
    tracing::info!(known, "uploaded plugins known, made ready on their first job");
    Ok(())
}
