//! Following one job live: a progress bar with the job's progress message
//! (on a terminal), its log lines printed above the bar as they come, and
//! at the end its result on stdout, or its failure kind and message on
//! stderr. The stream is resumed with `Last-Event-ID` if the server drops
//! it or restarts, so nothing is printed twice or missed.
//!
//! Ctrl-C detaches (the job goes on) and prints the job's id; with
//! `cancel_on_interrupt` it asks the server to cancel the job instead and
//! follows it to its end.

use super::Output;
use super::http::Client;
use super::sse::{Event, EventStream};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use reqwest::Method;
use serde_json::Value;
use std::time::Duration;

/// Exit status of a job that completed.
pub const COMPLETED: i32 = 0;
/// Exit status of a job that ended any other way.
pub const NOT_COMPLETED: i32 = 1;
/// Exit status after Ctrl-C detached from a job still going on.
pub const DETACHED: i32 = 130;

/// Times a lost stream is opened again before giving up.
const RECONNECTS: u32 = 20;

/// Follows job `id` to its end; returns the exit status: [`COMPLETED`] only
/// if it completed.
pub async fn follow(
    client: &Client,
    id: &str,
    output: Output,
    cancel_on_interrupt: bool,
) -> anyhow::Result<i32> {
    let view = View::new();
    let path = format!("/v1/jobs/{id}/events");
    let mut last_id: Option<String> = None;
    let mut cancelled = false;
    let mut lost = 0;
    'stream: loop {
        let mut events = match client.events(&path, last_id.as_deref()).await {
            Ok(response) => EventStream::new(response),
            Err(e) if lost < RECONNECTS && e.downcast_ref::<reqwest::Error>().is_some() => {
                lost += 1;
                tokio::time::sleep(Duration::from_millis(250 * u64::from(lost))).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        loop {
            let next = tokio::select! {
                next = events.next() => next,
                _ = tokio::signal::ctrl_c(), if !cancelled => {
                    if !cancel_on_interrupt {
                        view.finish();
                        eprintln!("detached; job {id} goes on (`jobhost job show {id}`)");
                        return Ok(DETACHED);
                    }
                    cancelled = true;
                    client.call(Method::POST, &format!("/v1/jobs/{id}/cancel"), None).await?;
                    view.line(&format!("cancelling job {id}"));
                    continue;
                }
            };
            let event = match next {
                Ok(Some(event)) => event,
                Ok(None) | Err(_) if lost < RECONNECTS => {
                    lost += 1;
                    continue 'stream;
                }
                Ok(None) => anyhow::bail!("the server closed the stream of job {id}"),
                Err(e) => return Err(e),
            };
            lost = 0;
            if event.id.is_some() {
                last_id.clone_from(&event.id);
            }
            match view.show(&event) {
                Next::Continue => {}
                Next::Resume(id) => {
                    last_id = Some(id);
                    continue 'stream;
                }
                Next::Close => break 'stream,
            }
        }
    }
    view.finish();
    let job = client.get(&format!("/v1/jobs/{id}")).await?;
    Ok(report(&job, output))
}

/// What the stream does after an event.
enum Next {
    Continue,
    Resume(String),
    Close,
}

/// The bar and the lines above it.
struct View {
    bar: ProgressBar,
}

impl View {
    fn new() -> View {
        let bar = ProgressBar::with_draw_target(Some(100), ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template("{spinner} [{bar:30}] {pos:>3}% {msg}")
            .expect("the template is valid")
            .progress_chars("=> ");
        bar.set_style(style);
        bar.enable_steady_tick(Duration::from_millis(120));
        View { bar }
    }

    /// A line above the bar, or on stderr where there is no bar.
    fn line(&self, text: &str) {
        if self.bar.is_hidden() {
            eprintln!("{text}");
        } else {
            self.bar.println(text);
        }
    }

    fn show(&self, event: &Event) -> Next {
        let data = &event.data;
        match event.event.as_str() {
            "state" => {
                let state = data["state"].as_str().unwrap_or("?");
                let reason = data["reason"].as_str().unwrap_or("");
                self.line(&format!("[{state}] {reason}"));
                self.bar.set_message(state.to_string());
            }
            "progress" => {
                let percent = data["percent"].as_f64().unwrap_or(0.0).clamp(0.0, 100.0);
                self.bar.set_position(percent as u64);
                if let Some(message) = data["message"].as_str() {
                    self.bar.set_message(message.to_string());
                }
            }
            "log" => {
                let level = data["level"].as_str().unwrap_or("info");
                self.line(&format!("{level:>5} {}", data["message"].as_str().unwrap_or("")));
            }
            "dropped" => {
                if let Some(id) = data["resume_with_last_event_id"].as_str() {
                    return Next::Resume(id.to_string());
                }
            }
            "close" => return Next::Close,
            _ => {}
        }
        Next::Continue
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// Prints how the job ended; returns the exit status.
fn report(job: &Value, output: Output) -> i32 {
    let completed = job["state"] == "completed";
    match output {
        Output::Json => println!("{}", pretty(job)),
        Output::Table if completed => println!("{}", pretty(&job["result"])),
        Output::Table => {
            let state = job["state"].as_str().unwrap_or("?");
            match job["error"].as_object() {
                Some(error) => eprintln!(
                    "job {} {state}: {}: {}",
                    job["id"].as_str().unwrap_or("?"),
                    error.get("kind").and_then(Value::as_str).unwrap_or("?"),
                    error.get("message").and_then(Value::as_str).unwrap_or("")
                ),
                None => eprintln!("job {} {state}", job["id"].as_str().unwrap_or("?")),
            }
        }
    }
    if completed { COMPLETED } else { NOT_COMPLETED }
}

/// JSON for people.
pub fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}
