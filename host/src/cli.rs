//! The `jobhost` command line: `serve` starts a host ([`Host::start`]) with
//! the settings of [`Config`]; `run` runs one job of one plugin and prints
//! its report. Both take every setting of the config, so `run --fuel 5`
//! runs the job with that default fuel. The other commands are clients of
//! a server ([`crate::client`]); `completions` prints a shell's completion
//! script.

use crate::client;
use crate::config::{Config, LogFormat};
use crate::host::Host;
use crate::jobs::{LogLevel, Outcome, RunReport, stored_json};
use crate::runtime::{CancelToken, JobContext, JobObserver, Loaded, Runtime};
use anyhow::Context;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand};
use std::sync::Arc;

/// A job server for WebAssembly jobs.
#[derive(Debug, Parser)]
#[command(name = "jobhost", version)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// What to do.
#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the HTTP API and run the jobs stored in DATA/jobhost.redb,
    /// until Ctrl-C or SIGTERM.
    Serve {
        #[command(flatten)]
        config: Config,
    },
    /// Run one job of plugin NAME at once, without a server: its log goes
    /// to stderr, its report to stdout as JSON; exit status 0 only if it
    /// completed.
    Run {
        /// The plugin's qualified name (a component of the plugin folders).
        name: String,
        /// The job's args, as JSON.
        #[arg(default_value = "{}")]
        args: String,
        #[command(flatten)]
        config: Config,
    },
    #[command(flatten)]
    Client(client::Command),
    /// Print the completion script of a shell (`jobhost completions bash >
    /// /etc/bash_completion.d/jobhost`).
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

/// What an invocation does.
#[derive(Debug)]
enum Action {
    Serve,
    Run { name: String, args: String },
    Client(Box<client::Command>),
    Completions(clap_complete::Shell),
}

/// A parsed command line with its settings resolved (flags, environment,
/// config file, defaults).
#[derive(Debug)]
pub struct Invocation {
    config: Config,
    action: Action,
}

impl Invocation {
    /// Parses the process's arguments; `--help` and errors exit here, as
    /// clap prints them.
    pub fn from_args() -> anyhow::Result<Invocation> {
        Self::from_matches(&Cli::command().get_matches())
    }

    /// Parses `args` (the program name first).
    pub fn parse(args: &[&str]) -> anyhow::Result<Invocation> {
        Self::from_matches(&Cli::command().try_get_matches_from(args)?)
    }

    fn from_matches(matches: &ArgMatches) -> anyhow::Result<Invocation> {
        let cli = Cli::from_arg_matches(matches)?;
        let (_, sub) = matches.subcommand().context("a command is required")?;
        let (config, action) = match cli.command {
            Command::Serve { .. } => (Config::from_matches(sub)?, Action::Serve),
            Command::Run { name, args, .. } => {
                (Config::from_matches(sub)?, Action::Run { name, args })
            }
            Command::Client(command) => (Config::default(), Action::Client(Box::new(command))),
            Command::Completions { shell } => (Config::default(), Action::Completions(shell)),
        };
        Ok(Invocation { config, action })
    }

    /// How the log is to be written.
    pub fn log_format(&self) -> LogFormat {
        self.config.log_format
    }

    /// Runs the command; returns the process exit status.
    pub async fn execute(self) -> anyhow::Result<i32> {
        match self.action {
            Action::Serve => serve(self.config).await,
            Action::Run { name, args } => run(self.config, &name, &args).await,
            Action::Client(command) => client::run(*command).await,
            Action::Completions(shell) => {
                clap_complete::generate(
                    shell,
                    &mut Cli::command(),
                    "jobhost",
                    &mut std::io::stdout(),
                );
                Ok(0)
            }
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<i32> {
    let host = Host::start(config).await?;
    if let Some(secret) = host.admin_secret() {
        eprintln!("first start: admin token (tenant \"default\"), shown once: {secret}");
    }
    tokio::select! {
        () = shutdown_signal() => {}
        () = host.stopped() => {}
    }
    tracing::info!("shutting down: no new connections; running jobs get their grace");
    host.stop().await?;
    tracing::info!("shut down");
    Ok(0)
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

async fn run(config: Config, name: &str, args: &str) -> anyhow::Result<i32> {
    let runtime = Arc::new(Runtime::new(config.runtime())?);
    for dir in config.plugins.clone() {
        let loader = runtime.clone();
        let loaded =
            tokio::task::spawn_blocking(move || loader.registry().load_dir(&dir)).await??;
        for Loaded { plugin, .. } in loaded {
            if let Err(error) = plugin {
                eprintln!("skipped: {error:#}");
            }
        }
    }
    let plugin = runtime.registry().get(name)?;
    let cancel = CancelToken::new();
    let job = JobContext {
        id: uuid::Uuid::now_v7().to_string(),
        attempt: 1,
        cancel: cancel.clone(),
        observer: Arc::new(PrintOutput),
        spawner: None,
    };
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("cancelling (Ctrl-C)");
            cancel.cancel();
        }
    });
    let limits = runtime.limits(&Default::default());
    let report = runtime.run(&plugin, job, args, &limits).await;
    println!("{}", serde_json::to_string_pretty(&report_json(&report)?)?);
    Ok(if matches!(report.outcome, Outcome::Completed { .. }) { 0 } else { 1 })
}

/// The report as JSON with its result decoded: the guest returns JSON text,
/// which should print as the value it is, not as an escaped string.
fn report_json(report: &RunReport) -> serde_json::Result<serde_json::Value> {
    let mut value = serde_json::to_value(report)?;
    if let Some(result) = value.pointer_mut("/outcome/result")
        && let Some(decoded) = result.as_str().map(stored_json)
    {
        *result = decoded;
    }
    Ok(value)
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

    #[test]
    fn run_takes_a_name_args_and_any_setting() {
        let line = ["jobhost", "run", "examples.hello", "{}", "--fuel", "5", "--plugins", "p"];
        let invocation = Invocation::parse(&line).unwrap();
        let Action::Run { name, args } = &invocation.action else { panic!("{invocation:?}") };
        assert_eq!((name.as_str(), args.as_str()), ("examples.hello", "{}"));
        assert_eq!(invocation.config.fuel, 5);
        assert_eq!(invocation.config.plugins, [std::path::PathBuf::from("p")]);
    }

    #[test]
    fn a_run_prints_its_result_as_json() {
        let report = RunReport {
            outcome: Outcome::Completed { result: r#"{"words":3}"#.into() },
            fuel_used: 1,
            duration: std::time::Duration::from_millis(2),
            memory_peak: 3,
        };
        let printed = report_json(&report).unwrap();
        assert_eq!(printed["outcome"]["result"], serde_json::json!({ "words": 3 }));
        assert_eq!(printed["outcome"]["status"], "completed");
    }

    #[test]
    fn bad_input_is_refused_by_name() {
        let error = |line: &[&str]| Invocation::parse(line).unwrap_err().to_string();
        assert!(error(&["jobhost", "run", "x", "--fuel", "lots"]).contains("--fuel"));
        assert!(error(&["jobhost", "serve", "--bogus"]).contains("--bogus"));
        assert!(Invocation::parse(&["jobhost", "run"]).is_err());
    }
}
