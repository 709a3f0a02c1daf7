//! `jobhost workflows|schedules`: each lists with no subcommand, and shows,
//! submits or changes one thing with one.

use super::format::{ago, segment, text, time};
use super::http::Client;
use super::table::{Table, fields, state};
use super::{Output, print, render};
use anyhow::Context;
use clap::Subcommand;
use reqwest::Method;
use serde_json::{Value, json};
use std::path::PathBuf;

/// A workflow to submit, look at or change.
#[derive(Debug, Subcommand)]
pub enum WorkflowCommand {
    /// Submit the workflow in FILE (JSON as `POST /v1/workflows` takes it;
    /// `-` reads stdin).
    Submit { file: PathBuf },
    /// One workflow and its steps.
    Show { id: String },
    /// Cancel its unfinished steps.
    Cancel { id: String },
    /// Run its failed steps again, with what depends on them.
    Retry { id: String },
}

/// `jobhost workflows`.
pub async fn workflows(
    client: &Client,
    output: Output,
    command: Option<WorkflowCommand>,
) -> anyhow::Result<i32> {
    let path = |id: &str, rest: &str| format!("/v1/workflows/{}{rest}", segment(id));
    let answer = match &command {
        None => {
            let list = client.get("/v1/workflows?per_page=100").await?;
            return Ok(print(output, &list, |list| {
                workflow_table(list["workflows"].as_array().map(Vec::as_slice).unwrap_or_default())
            }));
        }
        Some(WorkflowCommand::Submit { file }) => {
            let body = read_json(file)?;
            client.call(Method::POST, "/v1/workflows", Some(&body)).await?
        }
        Some(WorkflowCommand::Show { id }) => client.get(&path(id, "")).await?,
        Some(WorkflowCommand::Cancel { id }) => {
            client.call(Method::POST, &path(id, "/cancel"), None).await?
        }
        Some(WorkflowCommand::Retry { id }) => {
            client.call(Method::POST, &path(id, "/retry"), None).await?
        }
    };
    Ok(print(output, &answer, workflow_details))
}

fn workflow_table(workflows: &[Value]) -> String {
    let mut table = Table::new(&["ID", "NAME", "STATE", "DONE", "CREATED", "OWNER"]);
    for workflow in workflows {
        table.row(vec![
            text(&workflow["id"]).into(),
            text(&workflow["name"]).into(),
            state(&text(&workflow["state"])),
            format!("{}/{}", text(&workflow["done"]), text(&workflow["total"])).into(),
            ago(&workflow["created_at"]).into(),
            text(&workflow["owner"]).into(),
        ]);
    }
    render(&table)
}

fn workflow_details(workflow: &Value) -> String {
    let head = fields(&[
        ("workflow", text(&workflow["id"])),
        ("name", text(&workflow["name"])),
        ("state", text(&workflow["state"])),
        ("done", format!("{} of {}", text(&workflow["done"]), text(&workflow["total"]))),
        ("retries", text(&workflow["retries"])),
    ]);
    let mut steps = Table::new(&["STEP", "STATE", "DEPENDS ON", "JOB", "ERROR"]);
    for step in workflow["steps"].as_array().into_iter().flatten() {
        let depends: Vec<String> =
            step["depends_on"].as_array().into_iter().flatten().map(text).collect();
        steps.row(vec![
            text(&step["step"]).into(),
            state(&text(&step["state"])),
            depends.join(", ").into(),
            text(&step["job"]).into(),
            text(&step["error"]["message"]).into(),
        ]);
    }
    format!("{head}\n{}", render(&steps))
}

/// A schedule to create, look at or change.
#[derive(Debug, Subcommand)]
pub enum ScheduleCommand {
    /// Create a schedule that enqueues PLUGIN with ARGS (JSON) at each time
    /// of CRON.
    Create {
        /// Qualified plugin name.
        plugin: String,
        /// JSON args of each run's job.
        #[arg(default_value = "{}")]
        args: String,
        /// `minute hour day month weekday`, optionally with seconds first.
        #[arg(long)]
        cron: String,
        /// IANA time zone the cron is read in.
        #[arg(long, default_value = "UTC")]
        timezone: String,
        /// What runs missed while no host was up become: run_once or skip.
        #[arg(long, default_value = "run_once")]
        missed: String,
        /// A label for people.
        #[arg(long)]
        name: Option<String>,
    },
    /// One schedule and its next run times.
    Show { id: String },
    /// Fire nothing until resumed.
    Pause { id: String },
    /// Fire again from the next time.
    Resume { id: String },
    /// Delete it (its jobs stay).
    Delete { id: String },
}

/// `jobhost schedules`.
pub async fn schedules(
    client: &Client,
    output: Output,
    command: Option<ScheduleCommand>,
) -> anyhow::Result<i32> {
    let path = |id: &str, rest: &str| format!("/v1/schedules/{}{rest}", segment(id));
    let answer = match &command {
        None => {
            let list = client.get("/v1/schedules").await?;
            return Ok(print(output, &list, |list| {
                schedule_table(list["schedules"].as_array().map(Vec::as_slice).unwrap_or_default())
            }));
        }
        Some(ScheduleCommand::Create { plugin, args, cron, timezone, missed, name }) => {
            let args: Value = serde_json::from_str(args).context("ARGS must be JSON")?;
            let body = json!({
                "name": name, "cron": cron, "timezone": timezone, "missed": missed,
                "job": {"job": plugin, "args": args},
            });
            client.call(Method::POST, "/v1/schedules", Some(&body)).await?
        }
        Some(ScheduleCommand::Show { id }) => client.get(&path(id, "")).await?,
        Some(ScheduleCommand::Pause { id }) => {
            client.call(Method::POST, &path(id, "/pause"), None).await?
        }
        Some(ScheduleCommand::Resume { id }) => {
            client.call(Method::POST, &path(id, "/resume"), None).await?
        }
        Some(ScheduleCommand::Delete { id }) => {
            let answer = client.call(Method::DELETE, &path(id, ""), None).await?;
            return Ok(print(output, &answer, |_| format!("deleted schedule {id}\n")));
        }
    };
    Ok(print(output, &answer, schedule_details))
}

fn schedule_table(schedules: &[Value]) -> String {
    let mut table = Table::new(&["ID", "NAME", "CRON", "ZONE", "PLUGIN", "NEXT", "RUNS", "PAUSED"]);
    for schedule in schedules {
        table.row(vec![
            text(&schedule["id"]).into(),
            text(&schedule["name"]).into(),
            text(&schedule["cron"]).into(),
            text(&schedule["timezone"]).into(),
            text(&schedule["job"]["job"]).into(),
            text(&schedule["next_runs"][0]).into(),
            text(&schedule["runs"]).into(),
            text(&schedule["paused"]).into(),
        ]);
    }
    render(&table)
}

fn schedule_details(schedule: &Value) -> String {
    let next: Vec<String> =
        schedule["next_runs"].as_array().into_iter().flatten().map(text).collect();
    fields(&[
        ("schedule", text(&schedule["id"])),
        ("name", text(&schedule["name"])),
        ("cron", format!("{} ({})", text(&schedule["cron"]), text(&schedule["timezone"]))),
        ("plugin", text(&schedule["job"]["job"])),
        ("args", text(&schedule["job"]["args"])),
        ("missed runs", text(&schedule["missed"])),
        ("paused", text(&schedule["paused"])),
        ("next runs", next.join(", ")),
        ("runs", text(&schedule["runs"])),
        ("skipped", text(&schedule["skipped"])),
        ("last run", time(&schedule["last_run_at"])),
        ("last job", text(&schedule["last_job"])),
        ("last error", text(&schedule["last_error"])),
    ])
}

/// The JSON in `file`, or on stdin for `-`.
fn read_json(file: &PathBuf) -> anyhow::Result<Value> {
    let text = if file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())?
    } else {
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?
    };
    serde_json::from_str(&text).with_context(|| format!("{} is not JSON", file.display()))
}
