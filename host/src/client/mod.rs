//! The client half of the `jobhost` binary: commands that talk to a server
//! over HTTP, as a person at a terminal or a script would.
//!
//! - `settings`: which server and token (flags, `JOBHOST_URL` /
//!   `JOBHOST_TOKEN`, the file `jobhost login` writes).
//! - `http`: requests, and the server's refusals as one line with the status.
//! - `sse`: server-sent events from a response; `follow`: one job followed
//!   live with a progress bar, its log above it and its result at the end.
//! - `table` and `format`: output for people (tables that fit the terminal,
//!   colour only on a terminal); `--output json` prints the server's JSON.
//! - `jobs`, `plugins`, `flows` (workflows, schedules), `admin`: the
//!   commands, by what they act on.
//!
//! Nothing here depends on the rest of the host: a client speaks only the
//! HTTP API, so it works against any jobhost server it can reach. The one
//! exception is `plugin new|check`, the author's local tools in
//! [`crate::author`].

mod admin;
mod flows;
mod follow;
mod format;
mod http;
mod jobs;
mod plugins;
mod settings;
mod sse;
mod table;

pub use follow::{COMPLETED, DETACHED, NOT_COMPLETED};
pub use http::{Client, ServerError};
pub use settings::Settings;

use clap::{Args, Subcommand};
use serde_json::Value;

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Output {
    /// Tables and lines for people.
    #[default]
    Table,
    /// The server's JSON answer, for scripts.
    Json,
}

/// Which server, as whom, and how to print; every client command takes
/// these.
#[derive(Debug, Clone, Args)]
pub struct Connection {
    /// The server's URL (default: the saved one, else http://127.0.0.1:8080).
    #[arg(long, env = "JOBHOST_URL", global = true)]
    pub url: Option<String>,
    /// The token's secret (default: the saved one).
    #[arg(long, env = "JOBHOST_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// How to print results.
    #[arg(long, short = 'o', value_enum, default_value = "table", global = true)]
    pub output: Output,
}

impl Connection {
    /// The settings these flags and the saved file give.
    fn settings(&self) -> anyhow::Result<Settings> {
        Ok(Settings { url: self.url.clone(), token: self.token.clone() }.or(Settings::load()?))
    }

    fn client(&self) -> anyhow::Result<Client> {
        Client::new(&self.settings()?)
    }
}

/// The commands that talk to a server.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a token against a server and save both for later commands.
    Login {
        #[command(flatten)]
        connection: Connection,
    },
    /// Write and check plugins; upload, list, show and remove them.
    Plugin {
        #[command(flatten)]
        connection: Connection,
        #[command(subcommand)]
        command: plugins::PluginCommand,
    },
    /// Enqueue a job of plugin NAME, and optionally follow it to its end.
    Enqueue {
        #[command(flatten)]
        connection: Connection,
        #[command(flatten)]
        request: Box<jobs::Enqueue>,
    },
    /// List jobs, newest first.
    Jobs {
        #[command(flatten)]
        connection: Connection,
        #[command(subcommand)]
        command: jobs::JobsCommand,
    },
    /// Show, follow and change one job.
    Job {
        #[command(flatten)]
        connection: Connection,
        #[command(subcommand)]
        command: jobs::JobCommand,
    },
    /// Workflows: list; submit, show, cancel, retry one.
    Workflows {
        #[command(flatten)]
        connection: Connection,
        #[command(subcommand)]
        command: Option<flows::WorkflowCommand>,
    },
    /// Recurring schedules: list; create, show, pause, resume, delete one.
    Schedules {
        #[command(flatten)]
        connection: Connection,
        #[command(subcommand)]
        command: Option<flows::ScheduleCommand>,
    },
    /// Queue health; pause, resume, concurrency.
    Queues {
        #[command(flatten)]
        connection: Connection,
        #[command(subcommand)]
        command: Option<admin::QueueCommand>,
    },
    /// Workers (host admins); pause, resume, drain, stop.
    Workers {
        #[command(flatten)]
        connection: Connection,
        #[command(subcommand)]
        command: Option<admin::WorkerCommand>,
    },
    /// Held locks; clear one.
    Locks {
        #[command(flatten)]
        connection: Connection,
        #[command(subcommand)]
        command: Option<admin::LockCommand>,
    },
    /// API tokens (admins); create, revoke.
    Tokens {
        #[command(flatten)]
        connection: Connection,
        #[command(subcommand)]
        command: Option<admin::TokenCommand>,
    },
    /// Tenants and their quotas (admins).
    Tenants {
        #[command(flatten)]
        connection: Connection,
        #[command(subcommand)]
        command: Option<admin::TenantCommand>,
    },
    /// The tenant's jobs by state, its last hour, this host's capacity.
    Stats {
        #[command(flatten)]
        connection: Connection,
    },
}

/// Runs a client command; returns the exit status.
pub async fn run(command: Command) -> anyhow::Result<i32> {
    match command {
        Command::Login { connection } => login(&connection).await,
        Command::Plugin { command: plugins::PluginCommand::New { lang, name, dir }, .. } => {
            plugins::new(lang, &name, dir.as_deref())
        }
        Command::Plugin { command: plugins::PluginCommand::Check { file }, .. } => {
            plugins::check(&file)
        }
        Command::Plugin { connection, command: plugins::PluginCommand::Server(command) } => {
            plugins::run(&connection.client()?, connection.output, command).await
        }
        Command::Enqueue { connection, request } => {
            jobs::enqueue(&connection.client()?, connection.output, *request).await
        }
        Command::Jobs { connection, command } => {
            jobs::list(&connection.client()?, connection.output, command).await
        }
        Command::Job { connection, command } => {
            jobs::run(&connection.client()?, connection.output, command).await
        }
        Command::Workflows { connection, command } => {
            flows::workflows(&connection.client()?, connection.output, command).await
        }
        Command::Schedules { connection, command } => {
            flows::schedules(&connection.client()?, connection.output, command).await
        }
        Command::Queues { connection, command } => {
            admin::queues(&connection.client()?, connection.output, command).await
        }
        Command::Workers { connection, command } => {
            admin::workers(&connection.client()?, connection.output, command).await
        }
        Command::Locks { connection, command } => {
            admin::locks(&connection.client()?, connection.output, command).await
        }
        Command::Tokens { connection, command } => {
            admin::tokens(&connection.client()?, connection.output, command).await
        }
        Command::Tenants { connection, command } => {
            admin::tenants(&connection.client()?, connection.output, command).await
        }
        Command::Stats { connection } => {
            admin::stats(&connection.client()?, connection.output).await
        }
    }
}

/// `jobhost login`: asks for the token on a terminal if no flag or
/// variable gave one, checks it (`GET /v1/me`), and saves URL and token.
async fn login(connection: &Connection) -> anyhow::Result<i32> {
    // A saved URL is kept, a saved token is not: login is for a new one.
    let saved = Settings { token: None, ..Settings::load()? };
    let given = Settings { url: connection.url.clone(), token: connection.token.clone() };
    let mut settings = given.or(saved);
    if settings.token.is_none() {
        let term = console::Term::stderr();
        anyhow::ensure!(
            term.is_term(),
            "no token: pass --token or set JOBHOST_TOKEN (no terminal to ask on)"
        );
        term.write_str("token: ")?;
        settings.token = Some(term.read_secure_line()?.trim().to_string());
    }
    let me = Client::new(&settings)?.get("/v1/me").await?;
    settings.url = Some(settings.base_url()?);
    let path = settings.save()?;
    match connection.output {
        Output::Json => println!("{}", follow::pretty(&me)),
        Output::Table => println!(
            "logged in to {} as {} ({}, tenant {}); saved in {}",
            settings.base_url()?,
            format::text(&me["name"]),
            format::text(&me["role"]),
            format::text(&me["tenant"]),
            path.display()
        ),
    }
    Ok(0)
}

/// Prints `value` as JSON, or `table` for people; exit status 0.
fn print(output: Output, value: &Value, table: impl FnOnce(&Value) -> String) -> i32 {
    match output {
        Output::Json => println!("{}", follow::pretty(value)),
        Output::Table => print!("{}", table(value)),
    }
    0
}

/// The width tables fit, when stdout is a terminal.
fn width() -> Option<usize> {
    console::Term::stdout().size_checked().map(|(_, columns)| columns as usize)
}

/// Whether to colour stdout.
fn colour() -> bool {
    console::colors_enabled()
}

/// A table of `rows`, fitted and coloured for stdout.
fn render(table: &table::Table) -> String {
    table.render(width(), colour())
}
