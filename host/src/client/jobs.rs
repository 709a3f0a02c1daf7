//! `jobhost enqueue`, `jobhost jobs ls` and `jobhost job ...`.

use super::format::{self, ago, query, segment, text};
use super::http::Client;
use super::table::{self, Table, fields};
use super::{Output, follow, print, render};
use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Map, Value, json};
use std::time::Duration;

/// What `jobhost enqueue` sends: the plugin, its args and the options of
/// `POST /v1/jobs`.
#[derive(Debug, Args)]
pub struct Enqueue {
    /// The plugin's qualified name (`examples.hello`).
    name: String,
    /// One arg: `key=text` sets a string, `key:=json` any JSON value
    /// (`count:=3`, `tags:='["a"]'`). Repeatable; set over `--args`.
    #[arg(long = "arg", value_name = "KEY=VALUE")]
    arg: Vec<String>,
    /// All args as a JSON object, or `@file` to read it from a file.
    #[arg(long, value_name = "JSON|@FILE")]
    args: Option<String>,
    /// Queue (default `default`).
    #[arg(long)]
    queue: Option<String>,
    /// Higher runs first among the tenant's jobs (-1000 to 1000).
    #[arg(long, allow_hyphen_values = true)]
    priority: Option<i32>,
    /// Run no sooner than this from now (`30s`, `5m`).
    #[arg(long, value_parser = humantime::parse_duration)]
    delay: Option<Duration>,
    /// Run no sooner than this time (RFC 3339).
    #[arg(long)]
    run_at: Option<String>,
    /// Retries after a retriable failure.
    #[arg(long)]
    retries: Option<u32>,
    /// Failure kinds to retry, separated by commas (`plugin_error,timeout`).
    #[arg(long, value_delimiter = ',')]
    retry_on: Vec<String>,
    /// Expire if not started within this time (`10m`).
    #[arg(long, value_parser = humantime::parse_duration)]
    expires_in: Option<Duration>,
    /// Fuel limit.
    #[arg(long)]
    fuel: Option<u64>,
    /// Wall-time limit (`30s`).
    #[arg(long, value_parser = humantime::parse_duration)]
    wall_time: Option<Duration>,
    /// Memory limit in MiB.
    #[arg(long)]
    memory_mib: Option<u64>,
    /// The same key in the same tenant returns the first job.
    #[arg(long)]
    idempotency_key: Option<String>,
    /// A named lock held while the job runs.
    #[arg(long)]
    lock: Option<String>,
    /// A label for people.
    #[arg(long = "job-name")]
    job_name: Option<String>,
    /// Tags (repeatable).
    #[arg(long = "tag")]
    tags: Vec<String>,
    /// A version of the plugin to run (its digest).
    #[arg(long)]
    version: Option<String>,
    /// Follow the job: progress bar, log lines, then the result; exit
    /// status 0 only if it completed.
    #[arg(long, short = 'f')]
    follow: bool,
    /// With --follow: Ctrl-C cancels the job instead of detaching.
    #[arg(long, requires = "follow")]
    cancel_on_interrupt: bool,
}

impl Enqueue {
    /// The request body.
    fn body(&self) -> anyhow::Result<Value> {
        let mut body = Map::new();
        body.insert("job".into(), json!(self.name));
        body.insert("args".into(), Value::Object(args(self.args.as_deref(), &self.arg)?));
        let mut put = |key: &str, value: Option<Value>| {
            if let Some(value) = value {
                body.insert(key.into(), value);
            }
        };
        put("queue", self.queue.as_ref().map(|v| json!(v)));
        put("priority", self.priority.map(|v| json!(v)));
        put("delay_ms", self.delay.map(|d| json!(d.as_millis() as u64)));
        put("run_at", self.run_at.as_ref().map(|v| json!(v)));
        put("max_retries", self.retries.map(|v| json!(v)));
        put("retry_on", (!self.retry_on.is_empty()).then(|| json!(self.retry_on)));
        put("expires_in_ms", self.expires_in.map(|d| json!(d.as_millis() as u64)));
        put("idempotency_key", self.idempotency_key.as_ref().map(|v| json!(v)));
        put("lock", self.lock.as_ref().map(|v| json!(v)));
        put("name", self.job_name.as_ref().map(|v| json!(v)));
        put("tags", (!self.tags.is_empty()).then(|| json!(self.tags)));
        put("version", self.version.as_ref().map(|v| json!(v)));
        let mut limits = Map::new();
        if let Some(fuel) = self.fuel {
            limits.insert("fuel".into(), json!(fuel));
        }
        if let Some(wall_time) = self.wall_time {
            limits.insert("wall_time".into(), json!(wall_time.as_millis() as u64));
        }
        if let Some(mib) = self.memory_mib {
            limits.insert("memory_bytes".into(), json!(mib.saturating_mul(1 << 20)));
        }
        put("limits", (!limits.is_empty()).then_some(Value::Object(limits)));
        Ok(Value::Object(body))
    }
}

/// The args object: `--args` (JSON or `@file`), then each `--arg` over it.
fn args(all: Option<&str>, each: &[String]) -> anyhow::Result<Map<String, Value>> {
    let mut args = match all {
        None => Map::new(),
        Some(text) => {
            let text = match text.strip_prefix('@') {
                Some(path) => std::fs::read_to_string(path)
                    .with_context(|| format!("reading the args file {path}"))?,
                None => text.to_string(),
            };
            match serde_json::from_str(&text).context("--args is not JSON")? {
                Value::Object(map) => map,
                _ => bail!("--args must be a JSON object"),
            }
        }
    };
    for pair in each {
        if let Some((key, raw)) = pair.split_once(":=") {
            let value = serde_json::from_str(raw)
                .with_context(|| format!("--arg {pair}: the value after := is not JSON"))?;
            args.insert(key.to_string(), value);
        } else if let Some((key, value)) = pair.split_once('=') {
            args.insert(key.to_string(), json!(value));
        } else {
            bail!("--arg {pair}: write key=text or key:=json");
        }
    }
    Ok(args)
}

/// `jobhost enqueue`.
pub async fn enqueue(client: &Client, output: Output, request: Enqueue) -> anyhow::Result<i32> {
    let job = client.call(Method::POST, "/v1/jobs", Some(&request.body()?)).await?;
    let id = text(&job["id"]);
    if request.follow {
        if output == Output::Table {
            eprintln!("job {id} enqueued");
        }
        return follow::follow(client, &id, output, request.cancel_on_interrupt).await;
    }
    Ok(print(output, &job, |job| {
        format!("{id} {} in queue {}\n", text(&job["state"]), text(&job["queue"]))
    }))
}

/// `jobhost jobs ...`.
#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// List jobs, newest first, with filters.
    Ls {
        /// Only this state.
        #[arg(long)]
        state: Option<String>,
        /// Only this queue.
        #[arg(long)]
        queue: Option<String>,
        /// Only this plugin.
        #[arg(long)]
        plugin: Option<String>,
        /// Only jobs of this submitter (viewers and up).
        #[arg(long)]
        owner: Option<String>,
        /// Only jobs created at or after this time (RFC 3339 or epoch ms).
        #[arg(long)]
        since: Option<String>,
        /// Text in the name, description, plugin or tags.
        #[arg(long)]
        search: Option<String>,
        /// Page, from 1.
        #[arg(long, conflicts_with = "cursor")]
        page: Option<usize>,
        /// Jobs per page.
        #[arg(long, default_value_t = 20)]
        per_page: usize,
        /// Continue where a page ended: the cursor it printed.
        #[arg(long)]
        cursor: Option<String>,
    },
}

/// `jobhost jobs ls`.
pub async fn list(client: &Client, output: Output, command: JobsCommand) -> anyhow::Result<i32> {
    let JobsCommand::Ls { state, queue, plugin, owner, since, search, page, per_page, cursor } =
        command;
    let path = format!(
        "/v1/jobs{}",
        query(&[
            ("state", state),
            ("queue", queue),
            ("job", plugin),
            ("owner", owner),
            ("since", since),
            ("search", search),
            ("page", page.map(|page| page.to_string())),
            ("per_page", Some(per_page.to_string())),
            ("cursor", cursor),
        ])
    );
    let page = client.get(&path).await?;
    Ok(print(output, &page, |page| {
        let mut table = Table::new(&[
            "ID", "PLUGIN", "STATE", "QUEUE", "ATTEMPT", "PROGRESS", "CREATED", "NAME",
        ]);
        for job in page["jobs"].as_array().into_iter().flatten() {
            table.row(vec![
                text(&job["id"]).into(),
                text(&job["job"]).into(),
                table::state(&text(&job["state"])),
                text(&job["queue"]).into(),
                text(&job["attempt"]).into(),
                format::progress(&job["progress"]).into(),
                ago(&job["created_at"]).into(),
                text(&job["name"]).into(),
            ]);
        }
        let shown = page["jobs"].as_array().map_or(0, Vec::len);
        let at_least = if page["total_exact"] == false { "at least " } else { "" };
        let mut summary = format!("{shown} of {at_least}{} jobs", text(&page["total"]));
        if !page["page"].is_null() {
            summary += &format!(" (page {})", text(&page["page"]));
        }
        if let Some(next) = page["next_cursor"].as_str() {
            summary += &format!("; next page: --cursor {next}");
        }
        format!("{}{summary}\n", render(&table))
    }))
}

/// `jobhost job ...`.
#[derive(Debug, Subcommand)]
pub enum JobCommand {
    /// The job with its journal.
    Show { id: String },
    /// Its log; `-f` follows it to the job's end.
    Logs {
        id: String,
        /// Follow new lines until the job ends.
        #[arg(long, short = 'f')]
        follow: bool,
    },
    /// Its journal: every state it went through, and why.
    Events { id: String },
    /// Follow the job to its end (progress, log, result).
    Follow {
        id: String,
        /// Ctrl-C cancels the job instead of detaching.
        #[arg(long)]
        cancel_on_interrupt: bool,
    },
    /// Cancel it (a running job is asked to stop).
    Cancel { id: String },
    /// Run a finished job again as a new job.
    Retry {
        id: String,
        /// New args as JSON.
        #[arg(long)]
        args: Option<String>,
    },
    /// Enqueue a copy, optionally with new args.
    Clone {
        id: String,
        /// New args as JSON.
        #[arg(long)]
        args: Option<String>,
    },
    /// Remove a finished job with its journal and log.
    Rm { id: String },
}

/// `jobhost job ...`.
pub async fn run(client: &Client, output: Output, command: JobCommand) -> anyhow::Result<i32> {
    let path = |id: &str, rest: &str| format!("/v1/jobs/{}{rest}", segment(id));
    match command {
        JobCommand::Show { id } => {
            let details = client.get(&path(&id, "")).await?;
            Ok(print(output, &details, show))
        }
        JobCommand::Events { id } => {
            let details = client.get(&path(&id, "")).await?;
            Ok(print(output, &details["events"], |events| render(&journal(events))))
        }
        JobCommand::Logs { id, follow: true } => {
            follow_logs(client, output, &path(&id, "/events")).await
        }
        JobCommand::Logs { id, follow: false } => {
            let mut lines = Vec::new();
            let mut after = 0;
            loop {
                let page =
                    client.get(&path(&id, &format!("/logs?after={after}&limit=1000"))).await?;
                let batch = page["logs"].as_array().cloned().unwrap_or_default();
                if batch.is_empty() {
                    break;
                }
                after = page["next_after"].as_u64().unwrap_or(after);
                lines.extend(batch);
            }
            Ok(print(output, &Value::Array(lines), |lines| {
                lines.as_array().into_iter().flatten().map(log_line).collect()
            }))
        }
        JobCommand::Follow { id, cancel_on_interrupt } => {
            follow::follow(client, &id, output, cancel_on_interrupt).await
        }
        JobCommand::Cancel { id } => {
            let job = client.call(Method::POST, &path(&id, "/cancel"), None).await?;
            Ok(print(output, &job, |job| match text(&job["state"]).as_str() {
                "running" => format!("{id} asked to stop (running until it does)\n"),
                state => format!("{id} {state}\n"),
            }))
        }
        JobCommand::Retry { id, args } => copy(client, output, &path(&id, "/retry"), args).await,
        JobCommand::Clone { id, args } => copy(client, output, &path(&id, "/clone"), args).await,
        JobCommand::Rm { id } => {
            let answer = client.call(Method::DELETE, &path(&id, ""), None).await?;
            Ok(print(output, &answer, |_| format!("removed {id}\n")))
        }
    }
}

/// Retry or clone: the new job.
async fn copy(
    client: &Client,
    output: Output,
    path: &str,
    args: Option<String>,
) -> anyhow::Result<i32> {
    let mut body = Map::new();
    if let Some(args) = args {
        body.insert("args".into(), serde_json::from_str(&args).context("--args is not JSON")?);
    }
    let job = client.call(Method::POST, path, Some(&Value::Object(body))).await?;
    Ok(print(output, &job, |job| {
        format!("{} {} (new job)\n", text(&job["id"]), text(&job["state"]))
    }))
}

/// `job logs -f`: log lines from the event stream until the job ends.
async fn follow_logs(client: &Client, output: Output, path: &str) -> anyhow::Result<i32> {
    let mut events = super::sse::EventStream::new(client.events(path, None).await?);
    while let Some(event) = events.next().await? {
        match event.event.as_str() {
            "log" if output == Output::Json => println!("{}", event.data),
            "log" => print!("{}", log_line(&event.data)),
            "close" => break,
            _ => {}
        }
    }
    Ok(0)
}

fn log_line(line: &Value) -> String {
    format!(
        "{} {:>5} {}\n",
        format::time(&line["at"]),
        text(&line["level"]),
        text(&line["message"])
    )
}

/// `job show` for people (the job's fields, with `events` and
/// `queue_position`).
fn show(job: &Value) -> String {
    let duration = match (job["started_at"].as_u64(), job["finished_at"].as_u64()) {
        (Some(start), Some(end)) => format::short(Duration::from_millis(end.saturating_sub(start))),
        _ => "-".into(),
    };
    let outcome = match (&job["result"], job["error"].as_object()) {
        (_, Some(error)) => {
            ("error", format!("{}: {}", text(&error["kind"]), text(&error["message"])))
        }
        (Value::Null, None) => ("result", "-".into()),
        (result, None) => ("result", result.to_string()),
    };
    let mut rows = vec![
        ("id", text(&job["id"])),
        ("plugin", format!("{} ({})", text(&job["job"]), format::digest(&job["plugin_digest"]))),
        ("state", text(&job["state"])),
        (
            "attempt",
            format!(
                "{} of {}",
                text(&job["attempt"]),
                1 + job["max_retries"].as_u64().unwrap_or(0)
            ),
        ),
        ("queue", format!("{} (priority {})", text(&job["queue"]), text(&job["priority"]))),
        ("owner", text(&job["owner"])),
        ("name", text(&job["name"])),
        ("args", job["args"].to_string()),
        ("progress", format::progress(&job["progress"])),
        outcome,
        ("created", format::time(&job["created_at"])),
        ("started", format::time(&job["started_at"])),
        ("finished", format::time(&job["finished_at"])),
        ("duration", duration),
        ("fuel used", text(&job["fuel_used"])),
        ("memory peak", format::bytes(&job["memory_peak"])),
        ("worker", text(&job["worker"])),
    ];
    for (label, key) in
        [("retry of", "retry_of"), ("retried by", "retried_by"), ("clone of", "cloned_from")]
    {
        if !job[key].is_null() {
            rows.push((label, text(&job[key])));
        }
    }
    if let Some(position) = job["queue_position"].as_u64() {
        rows.push(("queue position", position.to_string()));
    }
    if let Some(webhook) = job["webhook"].as_object() {
        let mut line =
            format!("{} after {} attempts", text(&webhook["state"]), text(&webhook["attempts"]));
        if let Some(error) = webhook["error"].as_str() {
            line.push_str(&format!(" (last: {error})"));
        }
        rows.push(("webhook", line));
    }
    format!("{}\n{}", fields(&rows), render(&journal(&job["events"])))
}

/// The journal as a table.
fn journal(events: &Value) -> Table {
    let mut table = Table::new(&["SEQ", "AT", "FROM", "STATE", "WORKER", "REASON"]);
    for event in events.as_array().into_iter().flatten() {
        table.row(vec![
            text(&event["seq"]).into(),
            format::time(&event["at"]).into(),
            text(&event["from"]).into(),
            table::state(&text(&event["state"])),
            text(&event["worker"]).into(),
            text(&event["reason"]).into(),
        ]);
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn show_says_how_the_webhook_went() {
        let webhook = json!({"state": "given_up", "attempts": 3, "error": "answered 500"});
        let shown = show(&json!({"id": "j", "state": "completed", "webhook": webhook}));
        let line = shown.lines().find(|line| line.starts_with("webhook")).unwrap();
        assert!(line.ends_with("given_up after 3 attempts (last: answered 500)"), "{shown}");
        assert!(!show(&json!({"id": "j"})).contains("webhook"));
    }

    #[test]
    fn args_come_from_json_a_file_and_pairs() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("args.json");
        std::fs::write(&file, r#"{"a": 1, "b": "x"}"#).unwrap();
        let from_file = format!("@{}", file.display());
        let pairs = ["b=text".to_string(), "n:=3".to_string(), "l:=[1]".to_string()];
        let parsed = args(Some(&from_file), &pairs).unwrap();
        assert_eq!(Value::Object(parsed), json!({"a": 1, "b": "text", "n": 3, "l": [1]}));
        assert!(args(Some("[1]"), &[]).unwrap_err().to_string().contains("object"));
        assert!(args(None, &["novalue".into()]).unwrap_err().to_string().contains("key=text"));
        assert!(args(None, &["n:=nope".into()]).unwrap_err().to_string().contains("not JSON"));
    }
}
