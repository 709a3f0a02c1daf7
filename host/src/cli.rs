//! The `jobhost` command line: `serve` starts the host with a folder of
//! plugins; `run` runs one job of one plugin and prints its report.

use crate::api;
use crate::dispatch::{DispatchConfig, Dispatcher};
use crate::events::EventBus;
use crate::runtime::{
    CancelToken, JobContext, JobObserver, LimitOverrides, LogLevel, Outcome, Runtime, RuntimeConfig,
};
use crate::storage::{RedbStorage, Storage};
use anyhow::{Context, bail};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

const USAGE: &str = "\
usage:
  jobhost serve [--plugins DIR] [--data DIR] [--listen ADDR]
  jobhost run NAME [ARGS_JSON] [--plugins DIR] [--data DIR]
              [--fuel UNITS] [--wall-time-ms MS] [--memory-mib MIB]

  serve   load every <qualified.name>.wasm of --plugins (shared by all tenants),
          serve the HTTP API on --listen (default 127.0.0.1:8080) and run the jobs
          stored in DIR/jobhost.redb until Ctrl-C or SIGTERM. The first start
          prints an admin token; JOBHOST_ADMIN_TOKEN sets one instead
  run     run one job of plugin NAME with ARGS_JSON (default {}), stream its log
          to stderr, print its report as JSON; exit status 0 only if it completed

  --plugins DIR   folder of components (default: plugins)
  --data DIR      data folder; compiled components are cached in DIR/cache (default: data)";

/// A parsed command line.
#[derive(Debug, PartialEq)]
pub enum Command {
    /// Start the host.
    Serve(Options),
    /// Run one job and exit.
    Run {
        /// Common options.
        options: Options,
        /// The plugin's qualified name.
        name: String,
        /// JSON args.
        args: String,
        /// Limits asked for on the command line.
        limits: LimitOverrides,
    },
    /// Print usage.
    Help,
}

/// Options shared by every command.
#[derive(Debug, PartialEq)]
pub struct Options {
    /// Folder of `<qualified name>.wasm` components.
    pub plugins: PathBuf,
    /// Data folder.
    pub data: PathBuf,
    /// Address the API listens on.
    pub listen: String,
}

impl Command {
    /// Parses arguments (without the program name).
    pub fn parse(args: impl IntoIterator<Item = String>) -> anyhow::Result<Command> {
        let mut args = args.into_iter();
        let Some(verb) = args.next() else { return Ok(Command::Help) };
        let mut options = Options {
            plugins: "plugins".into(),
            data: "data".into(),
            listen: "127.0.0.1:8080".into(),
        };
        let mut limits = LimitOverrides::default();
        let mut positional = Vec::new();
        while let Some(arg) = args.next() {
            let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
            match arg.as_str() {
                "--plugins" => options.plugins = value()?.into(),
                "--data" => options.data = value()?.into(),
                "--listen" => options.listen = value()?,
                "--fuel" => limits.fuel = Some(number(&arg, &value()?)?),
                "--wall-time-ms" => {
                    limits.wall_time = Some(Duration::from_millis(number(&arg, &value()?)?))
                }
                "--memory-mib" => limits.memory_bytes = Some(number::<u64>(&arg, &value()?)? << 20),
                "-h" | "--help" => return Ok(Command::Help),
                flag if flag.starts_with("--") => bail!("unknown option {flag}\n\n{USAGE}"),
                _ => positional.push(arg),
            }
        }
        match (verb.as_str(), positional.as_slice()) {
            ("serve", []) => Ok(Command::Serve(options)),
            ("run", [name]) => {
                Ok(Command::Run { options, name: name.clone(), args: "{}".into(), limits })
            }
            ("run", [name, args]) => {
                Ok(Command::Run { options, name: name.clone(), args: args.clone(), limits })
            }
            ("help" | "-h" | "--help", _) => Ok(Command::Help),
            _ => bail!("unexpected arguments\n\n{USAGE}"),
        }
    }

    /// Runs the command; returns the process exit status.
    pub async fn execute(self) -> anyhow::Result<i32> {
        match self {
            Command::Help => {
                println!("{USAGE}");
                Ok(0)
            }
            Command::Serve(options) => serve(options).await,
            Command::Run { options, name, args, limits } => {
                run(options, &name, &args, &limits).await
            }
        }
    }
}

fn number<T: std::str::FromStr>(flag: &str, value: &str) -> anyhow::Result<T> {
    value.parse().ok().with_context(|| format!("{flag} takes a whole number, not {value:?}"))
}

/// Builds the runtime and registers every plugin of the folder.
async fn load(options: &Options) -> anyhow::Result<Arc<Runtime>> {
    let config =
        RuntimeConfig { cache_dir: Some(options.data.join("cache")), ..RuntimeConfig::default() };
    let runtime = Arc::new(Runtime::new(config)?);
    let loader = runtime.clone();
    let dir = options.plugins.clone();
    let plugins = tokio::task::spawn_blocking(move || loader.registry().load_dir(&dir)).await??;
    for plugin in &plugins {
        tracing::info!(name = %plugin.name, digest = %plugin.digest, size = plugin.size, from = ?plugin.compiled_from, "plugin loaded");
    }
    Ok(runtime)
}

async fn serve(options: Options) -> anyhow::Result<i32> {
    let runtime = load(&options).await?;
    let database = options.data.join("jobhost.redb");
    let storage: Arc<dyn Storage> = Arc::new(
        RedbStorage::open(&database).with_context(|| format!("opening {}", database.display()))?,
    );
    load_uploaded_plugins(&storage, &runtime).await?;
    let admin = std::env::var("JOBHOST_ADMIN_TOKEN").ok().filter(|s| !s.is_empty());
    if let Some(secret) = api::ensure_admin(storage.as_ref(), admin.as_deref()).await? {
        eprintln!("first start: admin token (tenant \"default\"), shown once: {secret}");
    }
    let bus = EventBus::default();
    let dispatcher =
        Dispatcher::new(storage.clone(), runtime.clone(), bus.clone(), DispatchConfig::default());
    let listener = tokio::net::TcpListener::bind(&options.listen)
        .await
        .with_context(|| format!("listening on {}", options.listen))?;
    tracing::info!(
        "serving {} plugins on http://{} from {}; Ctrl-C stops",
        runtime.registry().list().len(),
        listener.local_addr()?,
        database.display()
    );
    let state =
        api::ApiState::new(storage, runtime, dispatcher.clone(), bus, api::ApiConfig::default());
    let stop = tokio::sync::watch::Sender::new(false);
    let until_stopped = |stop: &tokio::sync::watch::Sender<bool>| {
        let mut stopped = stop.subscribe();
        async move {
            let _ = stopped.wait_for(|stopped| *stopped).await;
        }
    };
    tokio::spawn(api::webhooks::deliver(state.storage.clone(), until_stopped(&stop)));
    let api = tokio::spawn(api::serve(listener, state, until_stopped(&stop)));
    let signalled = stop.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down: no new connections; running jobs get their grace");
        signalled.send_replace(true);
    });
    dispatcher.run(true, until_stopped(&stop)).await;
    api.await??;
    tracing::info!("shut down");
    Ok(0)
}

/// Registers the plugins tenants uploaded in earlier runs.
async fn load_uploaded_plugins(
    storage: &Arc<dyn Storage>,
    runtime: &Arc<Runtime>,
) -> anyhow::Result<()> {
    for record in storage.plugins(None).await? {
        let bytes = storage.component(&record.digest).await?;
        let runtime = runtime.clone();
        tokio::task::spawn_blocking(move || {
            runtime.registry().register_for(&record.tenant, &record.name, &bytes)
        })
        .await??;
    }
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing the SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}

async fn run(
    options: Options,
    name: &str,
    args: &str,
    limits: &LimitOverrides,
) -> anyhow::Result<i32> {
    let runtime = load(&options).await?;
    let plugin = runtime.registry().get(name)?;
    let cancel = CancelToken::new();
    let job = JobContext {
        id: uuid::Uuid::now_v7().to_string(),
        attempt: 1,
        cancel: cancel.clone(),
        observer: Arc::new(PrintOutput),
    };
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("cancelling (Ctrl-C)");
            cancel.cancel();
        }
    });
    let limits = runtime.limits(limits);
    let report = runtime.run(&plugin, job, args, &limits).await;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(if matches!(report.outcome, Outcome::Completed { .. }) { 0 } else { 1 })
}

/// Streams a job's output to stderr as it happens.
struct PrintOutput;

impl JobObserver for PrintOutput {
    fn log(&self, level: LogLevel, message: &str) {
        eprintln!("[{level:?}] {message}");
    }
    fn progress(&self, percent: f32, message: Option<&str>) {
        eprintln!("[progress {percent:.0}%] {}", message.unwrap_or(""));
    }
    fn metadata(&self, key: &str, value: serde_json::Value) {
        eprintln!("[metadata] {key} = {value}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> anyhow::Result<Command> {
        Command::parse(line.split_whitespace().map(String::from))
    }

    #[test]
    fn parses_run_with_limits() {
        let Command::Run { name, args, limits, options } =
            parse("run examples.hello {} --fuel 5 --wall-time-ms 100 --plugins p").unwrap()
        else {
            panic!("not a run");
        };
        assert_eq!((name.as_str(), args.as_str()), ("examples.hello", "{}"));
        assert_eq!(limits.fuel, Some(5));
        assert_eq!(limits.wall_time, Some(Duration::from_millis(100)));
        assert_eq!(options.plugins, PathBuf::from("p"));
    }

    #[test]
    fn rejects_bad_input_by_name() {
        assert!(parse("run x --fuel lots").unwrap_err().to_string().contains("--fuel"));
        assert!(parse("serve --bogus").unwrap_err().to_string().contains("--bogus"));
        assert!(parse("run").is_err());
    }
}
