//! `jobhost queues|workers|locks|tokens|tenants|stats`: each lists with no
//! subcommand, and changes one thing with one.

use super::format::{self, segment, text};
use super::http::Client;
use super::table::{Table, fields};
use super::{Output, print, render};
use clap::Subcommand;
use reqwest::Method;
use serde_json::{Value, json};

/// A queue to look at or change.
#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// One queue's health.
    Show { name: String },
    /// Hold its jobs (it still accepts new ones).
    Pause { name: String },
    /// Let its jobs run again.
    Resume { name: String },
    /// At most N of its jobs run at once; no N removes the limit.
    Concurrency { name: String, limit: Option<u32> },
}

/// `jobhost queues`.
pub async fn queues(
    client: &Client,
    output: Output,
    command: Option<QueueCommand>,
) -> anyhow::Result<i32> {
    let path = |name: &str, rest: &str| format!("/v1/queues/{}{rest}", segment(name));
    let answer = match &command {
        None => client.get("/v1/queues").await?,
        Some(QueueCommand::Show { name }) => client.get(&path(name, "")).await?,
        Some(QueueCommand::Pause { name }) => {
            client.call(Method::POST, &path(name, "/pause"), None).await?
        }
        Some(QueueCommand::Resume { name }) => {
            client.call(Method::POST, &path(name, "/resume"), None).await?
        }
        Some(QueueCommand::Concurrency { name, limit }) => {
            let body = json!({ "concurrency": limit });
            client.call(Method::PATCH, &path(name, ""), Some(&body)).await?
        }
    };
    Ok(print(output, &answer, |answer| match command {
        None => queue_table(answer["queues"].as_array().map(Vec::as_slice).unwrap_or_default()),
        Some(QueueCommand::Show { .. }) => queue_table(std::slice::from_ref(answer)),
        Some(_) => fields(&[
            ("queue", text(&answer["queue"])),
            ("paused", text(&answer["paused"])),
            ("concurrency", text(&answer["concurrency"])),
        ]),
    }))
}

fn queue_table(queues: &[Value]) -> String {
    let mut table = Table::new(&[
        "QUEUE",
        "PENDING",
        "SCHEDULED",
        "RUNNING",
        "DONE/H",
        "SUCCESS",
        "PAUSED",
        "CONCURRENCY",
        "ALERTS",
    ]);
    for queue in queues {
        let count = |state: &str| queue["counts"][state].as_u64().unwrap_or(0).to_string();
        let success = match queue["success_rate"].as_f64() {
            Some(rate) => format!("{:.0}%", rate * 100.0),
            None => "-".into(),
        };
        let alerts: Vec<String> =
            queue["alerts"].as_array().into_iter().flatten().map(text).collect();
        table.row(vec![
            text(&queue["queue"]).into(),
            count("pending").into(),
            count("scheduled").into(),
            count("running").into(),
            text(&queue["finished"]).into(),
            success.into(),
            text(&queue["settings"]["paused"]).into(),
            text(&queue["settings"]["concurrency"]).into(),
            alerts.join("; ").into(),
        ]);
    }
    render(&table)
}

/// A worker to change.
#[derive(Debug, Subcommand)]
pub enum WorkerCommand {
    /// Claim nothing new (jobs are still taken and wait).
    Pause { id: String },
    /// Claim again.
    Resume { id: String },
    /// Finish what it runs and refuse new jobs.
    Drain { id: String },
    /// Finish what it runs, then shut its host down.
    Stop { id: String },
}

/// `jobhost workers`.
pub async fn workers(
    client: &Client,
    output: Output,
    command: Option<WorkerCommand>,
) -> anyhow::Result<i32> {
    let (id, action) = match &command {
        None => {
            let list = client.get("/v1/workers").await?;
            return Ok(print(output, &list, |list| {
                worker_table(list["workers"].as_array().map(Vec::as_slice).unwrap_or_default())
            }));
        }
        Some(WorkerCommand::Pause { id }) => (id, "pause"),
        Some(WorkerCommand::Resume { id }) => (id, "resume"),
        Some(WorkerCommand::Drain { id }) => (id, "drain"),
        Some(WorkerCommand::Stop { id }) => (id, "stop"),
    };
    let path = format!("/v1/workers/{}/{action}", segment(id));
    let worker = client.call(Method::POST, &path, None).await?;
    Ok(print(output, &worker, |w| worker_table(std::slice::from_ref(w))))
}

fn worker_table(workers: &[Value]) -> String {
    let mut table = Table::new(&["ID", "MODE", "SLOTS", "RUNNING", "HEARTBEAT", "STARTED"]);
    for worker in workers {
        let heartbeat = match worker["heartbeat_age_ms"].as_u64() {
            Some(ms) => format!("{} ago", format::short(std::time::Duration::from_millis(ms))),
            None => "-".into(),
        };
        table.row(vec![
            text(&worker["id"]).into(),
            text(&worker["mode"]).into(),
            text(&worker["slots"]).into(),
            text(&worker["running"]).into(),
            heartbeat.into(),
            format::ago(&worker["started_at"]).into(),
        ]);
    }
    render(&table)
}

/// A lock to clear.
#[derive(Debug, Subcommand)]
pub enum LockCommand {
    /// Release a held lock (its holder keeps running).
    Clear { name: String },
}

/// `jobhost locks`.
pub async fn locks(
    client: &Client,
    output: Output,
    command: Option<LockCommand>,
) -> anyhow::Result<i32> {
    if let Some(LockCommand::Clear { name }) = command {
        let path = format!("/v1/locks/{}", segment(&name));
        let answer = client.call(Method::DELETE, &path, None).await?;
        return Ok(print(output, &answer, |_| format!("released {name}\n")));
    }
    let list = client.get("/v1/locks").await?;
    Ok(print(output, &list, |list| {
        let mut table = Table::new(&["LOCK", "HELD BY"]);
        for lock in list["locks"].as_array().into_iter().flatten() {
            table.row(vec![text(&lock["name"]).into(), text(&lock["job"]).into()]);
        }
        render(&table)
    }))
}

/// A token to make or revoke.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// A new token; its secret is shown once.
    Create {
        /// Its name, unique in its tenant (jobs it submits are owned by it).
        name: String,
        /// host_admin, admin, operator, viewer or submitter.
        #[arg(long)]
        role: String,
        /// Its tenant (default: the caller's).
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Revoke a token by its id.
    Revoke { id: String },
}

/// `jobhost tokens`.
pub async fn tokens(
    client: &Client,
    output: Output,
    command: Option<TokenCommand>,
) -> anyhow::Result<i32> {
    match command {
        None => {
            let list = client.get("/v1/tokens").await?;
            Ok(print(output, &list, |list| {
                token_table(list["tokens"].as_array().map(Vec::as_slice).unwrap_or_default())
            }))
        }
        Some(TokenCommand::Create { name, role, tenant }) => {
            let mut body = json!({ "name": name, "role": role });
            if let Some(tenant) = tenant {
                body["tenant"] = json!(tenant);
            }
            let token = client.call(Method::POST, "/v1/tokens", Some(&body)).await?;
            Ok(print(output, &token, |token| {
                format!(
                    "{}secret (shown once): {}\n",
                    token_table(std::slice::from_ref(token)),
                    text(&token["secret"])
                )
            }))
        }
        Some(TokenCommand::Revoke { id }) => {
            let path = format!("/v1/tokens/{}", segment(&id));
            let answer = client.call(Method::DELETE, &path, None).await?;
            Ok(print(output, &answer, |_| format!("revoked {id}\n")))
        }
    }
}

fn token_table(tokens: &[Value]) -> String {
    let mut table = Table::new(&["ID", "NAME", "TENANT", "ROLE", "CREATED"]);
    for token in tokens {
        table.row(vec![
            text(&token["id"]).into(),
            text(&token["name"]).into(),
            text(&token["tenant"]).into(),
            text(&token["role"]).into(),
            format::ago(&token["created_at"]).into(),
        ]);
    }
    render(&table)
}

/// A tenant to look at.
#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// One tenant's quotas and waiting jobs.
    Show { name: String },
}

/// `jobhost tenants`.
pub async fn tenants(
    client: &Client,
    output: Output,
    command: Option<TenantCommand>,
) -> anyhow::Result<i32> {
    let answer = match &command {
        None => client.get("/v1/tenants").await?,
        Some(TenantCommand::Show { name }) => {
            client.get(&format!("/v1/tenants/{}", segment(name))).await?
        }
    };
    Ok(print(output, &answer, |answer| {
        let one = std::slice::from_ref(answer);
        let tenants = match command {
            None => answer["tenants"].as_array().map(Vec::as_slice).unwrap_or_default(),
            Some(_) => one,
        };
        let mut table =
            Table::new(&["TENANT", "WAITING", "QUEUED QUOTA", "MAX RUNNING", "MAX PRIORITY"]);
        for tenant in tenants {
            table.row(vec![
                text(&tenant["name"]).into(),
                text(&tenant["waiting"]).into(),
                text(&tenant["queued_quota"]).into(),
                text(&tenant["max_running"]).into(),
                text(&tenant["max_priority"]).into(),
            ]);
        }
        render(&table)
    }))
}

/// `jobhost stats`.
pub async fn stats(client: &Client, output: Output) -> anyhow::Result<i32> {
    let stats = client.get("/v1/stats").await?;
    Ok(print(output, &stats, |s| {
        let jobs: Vec<String> = s["jobs"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(state, count)| format!("{state} {count}"))
            .collect();
        let success = match s["last_hour"]["success_rate"].as_f64() {
            Some(rate) => format!("{:.1}%", rate * 100.0),
            None => "-".into(),
        };
        fields(&[
            ("tenant", text(&s["tenant"])),
            ("queues", text(&s["queues"])),
            ("jobs", if jobs.is_empty() { "none".into() } else { jobs.join(", ") }),
            ("waiting", text(&s["waiting"])),
            ("stuck", text(&s["stuck"])),
            ("finished (1 h)", text(&s["last_hour"]["finished"])),
            ("success (1 h)", success),
            ("worker", text(&s["host"]["worker"])),
            (
                "busy slots",
                format!("{} of {}", text(&s["host"]["running"]), text(&s["host"]["slots"])),
            ),
            ("open streams", text(&s["host"]["open_streams"])),
            (
                "uptime",
                format::short(std::time::Duration::from_secs(
                    s["host"]["uptime_s"].as_u64().unwrap_or(0),
                )),
            ),
        ])
    }))
}
