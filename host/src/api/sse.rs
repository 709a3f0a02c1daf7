//! Live job streams as server-sent events: `state`, `log` and `progress`
//! events, then `close` once the job is finished.
//!
//! Storage is the source and the bus the doorbell: the stream replays the
//! journal and log from storage after its cursor, then waits for the bus to
//! say something happened to the job (or a second to pass) and reads again.
//! Each `state` and `log` event carries the cursor `"<event seq>.<log seq>"`
//! as its id, so `Last-Event-ID` resumes with nothing lost or repeated, and
//! following a finished job replays its history, then closes.
//!
//! Each stream holds a place in [`super::streams::Streams`] while it is open.

use super::ApiState;
use super::auth::Caller;
use super::auth::visible_job;
use super::error::{ApiError, ErrorBody};
use crate::events::JobUpdate;
use crate::jobs::{JobEvent, LogLine};
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};
use uuid::Uuid;

/// Events buffered for one follower; a reader this far behind is dropped.
const BUFFER: usize = 256;
/// Log lines read from storage per round.
const LOG_CHUNK: usize = 1_000;
/// Longest wait between storage reads when the bus is silent.
const POLL: Duration = Duration::from_secs(1);

/// How far a follower has read: the last event and log line it got.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    events: u64,
    logs: u64,
}

impl Cursor {
    fn parse(text: &str) -> Option<Cursor> {
        let (events, logs) = text.trim().split_once('.')?;
        Some(Cursor { events: events.parse().ok()?, logs: logs.parse().ok()? })
    }

    fn id(&self) -> String {
        format!("{}.{}", self.events, self.logs)
    }
}

/// `GET /v1/jobs/{id}/events`, resuming after `Last-Event-ID`.
#[utoipa::path(get, path = "/v1/jobs/{id}/events", operation_id = "follow_job", tag = "jobs", params(("id" = String, Path, description = "job id"), ("Last-Event-ID" = Option<String>, Header, description = "resume after this event id")), responses((status = 200, description = "state, progress, log and close events", content_type = "text/event-stream"), (status = "4XX", description = "error", body = ErrorBody)))]
pub async fn follow(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let job = visible_job(&state, &caller, &id).await?;
    let cursor = match headers.get("last-event-id").and_then(|v| v.to_str().ok()) {
        Some(text) => Cursor::parse(text).ok_or_else(|| {
            ApiError::bad_request(format!("Last-Event-ID must look like \"12.40\", not {text:?}"))
        })?,
        None => Cursor::default(),
    };
    Ok(stream(state, &caller, job.id, cursor)?.into_response())
}

/// The SSE response for job `id` from `cursor` on, if the caller's tenant
/// and the host are under their stream caps.
pub(super) fn stream(
    state: Arc<ApiState>,
    caller: &Caller,
    id: Uuid,
    cursor: Cursor,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>> + use<>>, ApiError> {
    let slot = state.streams.open(&caller.tenant)?;
    let (sender, mut receiver) = mpsc::channel(BUFFER);
    tokio::spawn(async move {
        let _slot = slot;
        tokio::select! {
            () = pump(state.clone(), id, cursor, sender) => {}
            () = state.streams.stopped() => {}
        }
    });
    let events =
        futures::stream::poll_fn(move |cx| receiver.poll_recv(cx).map(|event| event.map(Ok)));
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}

/// Why a stream ends early.
enum Stop {
    /// The follower went away or fell too far behind.
    Follower,
    /// Storage failed (the job was removed, or the host is stopping).
    Storage,
}

async fn pump(state: Arc<ApiState>, id: Uuid, mut cursor: Cursor, sender: mpsc::Sender<Event>) {
    let mut bus = state.bus.subscribe();
    // Whether the job finished shows in the journal events replayed, and a
    // removed job fails the read: the job record itself is never decoded,
    // so a thousand followers of a busy job cost one journal and log read
    // each per update, whatever the record holds.
    loop {
        let Ok(finished) = replay(&state, id, &mut cursor, &sender).await else { return };
        if finished {
            // The terminal event is the job's last write: one more read
            // after seeing it catches everything before it.
            if replay(&state, id, &mut cursor, &sender).await.is_ok() {
                let _ = send(
                    &sender,
                    Event::default().event("close").data(format!("{{\"id\":\"{id}\"}}")),
                );
            }
            return;
        }
        if wait_for_job(&mut bus, id, &sender).await.is_err() {
            return;
        }
    }
}

/// Sends everything storage has after `cursor`, oldest first; says
/// whether that included the job's terminal state.
async fn replay(
    state: &ApiState,
    id: Uuid,
    cursor: &mut Cursor,
    sender: &mpsc::Sender<Event>,
) -> Result<bool, Stop> {
    let mut finished = false;
    loop {
        let events = state.storage.events(id, cursor.events).await.map_err(|_| Stop::Storage)?;
        let logs =
            state.storage.logs(id, cursor.logs, LOG_CHUNK).await.map_err(|_| Stop::Storage)?;
        let more_logs = logs.len() == LOG_CHUNK;
        for item in merge(events, logs) {
            let event = match item {
                Item::State(event) => {
                    cursor.events = event.seq;
                    finished |= event.state.is_terminal();
                    Event::default().event("state").id(cursor.id()).json_data(&event)
                }
                Item::Log(line) => {
                    cursor.logs = line.seq;
                    Event::default().event("log").id(cursor.id()).json_data(&line)
                }
            };
            send(sender, event.expect("records serialise"))?;
        }
        if !more_logs {
            return Ok(finished);
        }
    }
}

enum Item {
    State(JobEvent),
    Log(LogLine),
}

/// Interleaves journal and log by time (journal first on a tie).
fn merge(events: Vec<JobEvent>, logs: Vec<LogLine>) -> Vec<Item> {
    let mut merged = Vec::with_capacity(events.len() + logs.len());
    let mut logs = logs.into_iter().peekable();
    for event in events {
        while let Some(line) = logs.next_if(|line| line.at < event.at) {
            merged.push(Item::Log(line));
        }
        merged.push(Item::State(event));
    }
    merged.extend(logs.map(Item::Log));
    merged
}

/// Waits until the bus says something happened to job `id` (forwarding its
/// progress, which only lives on the bus), or `POLL` passes.
async fn wait_for_job(
    bus: &mut broadcast::Receiver<Arc<crate::events::JobEventNotice>>,
    id: Uuid,
    sender: &mpsc::Sender<Event>,
) -> Result<(), Stop> {
    let deadline = tokio::time::sleep(POLL);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            () = &mut deadline => return Ok(()),
            () = sender.closed() => return Err(Stop::Follower),
            notice = bus.recv() => match notice {
                Ok(notice) if notice.job == id => match &notice.update {
                    JobUpdate::Progress(progress) => {
                        let event = Event::default().event("progress").json_data(progress);
                        send(sender, event.expect("progress serialises"))?;
                    }
                    JobUpdate::State { .. } | JobUpdate::Log { .. } => return Ok(()),
                },
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(_)) => return Ok(()),
                Err(broadcast::error::RecvError::Closed) => return Err(Stop::Storage),
            },
        }
    }
}

fn send(sender: &mpsc::Sender<Event>, event: Event) -> Result<(), Stop> {
    sender.try_send(event).map_err(|_| Stop::Follower)
}

#[cfg(test)]
mod tests {
    use super::Cursor;

    #[test]
    fn cursors_round_trip_and_reject_junk() {
        let cursor = Cursor { events: 12, logs: 40 };
        assert_eq!(Cursor::parse(&cursor.id()), Some(cursor));
        assert_eq!(Cursor::parse("12"), None);
        assert_eq!(Cursor::parse("a.b"), None);
    }
}
