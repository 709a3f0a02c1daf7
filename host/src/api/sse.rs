//! Live job streams as server-sent events: `state`, `log` and `progress`
//! events, then `close` once the job is finished.
//!
//! Storage is the source and the bus the doorbell: the stream replays the
//! journal and log from storage after its cursor, then waits for the bus to
//! say something happened to the job (or a second to pass) and reads again.
//! Each `state` and `log` event carries the cursor `"<event seq>.<log seq>"`
//! as its id, so `Last-Event-ID` resumes with nothing lost or repeated, and
//! following a finished job replays its history, then closes. The last
//! `progress` before `close` is the job's final one, as stored.
//!
//! Every event's data names its job (`"job": id`). A follower that reads
//! gets every event, in order: the stream waits for it rather than drop
//! anything; one that reads nothing for the stall time is dropped with a
//! last `dropped` event that says where to resume.
//!
//! Each stream holds a place in [`super::streams::Streams`] while it is open.

use super::ApiState;
use super::auth::Caller;
use super::auth::visible_job;
use super::body::QueryParams;
use super::error::{ApiError, ErrorBody};
use crate::events::JobUpdate;
use crate::jobs::{JobEvent, LogLine};
use crate::storage::StorageError;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt};
use serde::Deserialize;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, oneshot};
use utoipa::IntoParams;
use uuid::Uuid;

/// Events buffered for one follower; past that the stream waits for it.
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

/// Query of a job stream.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct FollowQuery {
    /// `false`: state, progress and close only, no log lines (a list that
    /// follows many jobs at once).
    #[serde(default = "with_logs")]
    logs: bool,
}

fn with_logs() -> bool {
    true
}

/// `GET /v1/jobs/{id}/events?logs=`, resuming after `Last-Event-ID`.
#[utoipa::path(get, path = "/v1/jobs/{id}/events", operation_id = "follow_job", tag = "jobs", params(("id" = String, Path, description = "job id"), FollowQuery, ("Last-Event-ID" = Option<String>, Header, description = "resume after this event id")), responses((status = 200, description = "state, progress, log and close events", content_type = "text/event-stream"), (status = "4XX", description = "error", body = ErrorBody)))]
pub async fn follow(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    Path(id): Path<String>,
    QueryParams(query): QueryParams<FollowQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let job = visible_job(&state, &caller, &id).await?;
    let cursor = match headers.get("last-event-id").and_then(|v| v.to_str().ok()) {
        Some(text) => Cursor::parse(text).ok_or_else(|| {
            ApiError::bad_request(format!("Last-Event-ID must look like \"12.40\", not {text:?}"))
        })?,
        None => Cursor::default(),
    };
    Ok(stream(state, &caller, job.id, cursor, query.logs)?.into_response())
}

/// The SSE response for job `id` from `cursor` on (with its log lines if
/// `logs`), if the caller's tenant and the host are under their stream caps. A follower that stops reading
/// for the stall time is dropped, and the last event it gets, after those
/// already buffered, says so and where to resume.
pub(super) fn stream(
    state: Arc<ApiState>,
    caller: &Caller,
    id: Uuid,
    cursor: Cursor,
    logs: bool,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>> + use<>>, ApiError> {
    let slot = state.streams.open(&caller.tenant)?;
    let (sender, mut receiver) = mpsc::channel(BUFFER);
    let (last, last_event) = oneshot::channel();
    let follower = Follower { id, sender, stall: state.config.stream_stall, logs };
    tokio::spawn(async move {
        let _slot = slot;
        tokio::select! {
            stop = pump(state.clone(), cursor, &follower) => {
                if let Err(Stop::Stalled(cursor)) = stop {
                    let _ = last.send(follower.dropped(&cursor));
                }
            }
            () = state.streams.stopped() => {}
        }
    });
    let buffered = futures::stream::poll_fn(move |cx| receiver.poll_recv(cx));
    let last = futures::stream::once(last_event).filter_map(|last| async move { last.ok() });
    Ok(Sse::new(buffered.chain(last).map(Ok)).keep_alive(KeepAlive::default()))
}

/// Why a stream ends early.
enum Stop {
    /// The follower went away.
    Gone,
    /// The follower read nothing for the stall time; it had read up to here.
    Stalled(Cursor),
    /// Storage failed (the job was removed, or the host is stopping).
    Storage,
}

/// One follower's end of a stream: every event names the job.
struct Follower {
    id: Uuid,
    sender: mpsc::Sender<Event>,
    stall: Duration,
    /// Whether it gets log lines.
    logs: bool,
}

impl Follower {
    /// `value` as an event's data, with the job's id added.
    fn event(&self, name: &str, value: &impl serde::Serialize) -> Event {
        let mut data = serde_json::to_value(value).expect("events serialise");
        if let Some(fields) = data.as_object_mut() {
            fields.insert("job".into(), serde_json::json!(self.id));
        }
        Event::default().event(name).data(data.to_string())
    }

    /// Sends `event` once the follower has room for it: a follower that
    /// reads gets everything, in order.
    async fn send(&self, event: Event, cursor: &Cursor) -> Result<(), Stop> {
        match tokio::time::timeout(self.stall, self.sender.send(event)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(Stop::Gone),
            Err(_) => Err(Stop::Stalled(*cursor)),
        }
    }

    /// The last event of a dropped follower.
    fn dropped(&self, cursor: &Cursor) -> Event {
        let why = serde_json::json!({
            "reason": "the follower read nothing for too long and was dropped",
            "resume_with_last_event_id": cursor.id(),
        });
        self.event("dropped", &why)
    }
}

async fn pump(state: Arc<ApiState>, mut cursor: Cursor, follower: &Follower) -> Result<(), Stop> {
    let mut bus = state.bus.subscribe();
    // Whether the job finished shows in the journal events replayed, and a
    // removed job fails the read: the job record itself is decoded only
    // once, at the end, so a thousand followers of a busy job cost one
    // journal and log read each per update, whatever the record holds.
    loop {
        if replay(&state, &mut cursor, follower).await? {
            // The terminal event is the job's last write: one more read
            // after seeing it catches everything before it.
            replay(&state, &mut cursor, follower).await?;
            final_progress(&state, &cursor, follower).await?;
            let close = serde_json::json!({ "id": follower.id });
            return follower.send(follower.event("close", &close), &cursor).await;
        }
        wait_for_job(&mut bus, follower, &cursor).await?;
    }
}

/// Sends everything storage has after `cursor`, oldest first; says
/// whether that included the job's terminal state.
async fn replay(state: &ApiState, cursor: &mut Cursor, follower: &Follower) -> Result<bool, Stop> {
    let id = follower.id;
    let mut finished = false;
    loop {
        let events = state.storage.events(id, cursor.events).await.map_err(|_| Stop::Storage)?;
        let logs = match follower.logs {
            true => state.storage.logs(id, cursor.logs, LOG_CHUNK).await,
            false => Ok(Vec::new()),
        };
        let logs = logs.map_err(|_| Stop::Storage)?;
        let more_logs = logs.len() == LOG_CHUNK;
        for item in merge(events, logs) {
            let before = *cursor;
            let event = match item {
                Item::State(event) => {
                    cursor.events = event.seq;
                    finished |= event.state.is_terminal();
                    follower.event("state", &event).id(cursor.id())
                }
                Item::Log(line) => {
                    cursor.logs = line.seq;
                    follower.event("log", &line).id(cursor.id())
                }
            };
            follower.send(event, &before).await?;
        }
        if !more_logs {
            return Ok(finished);
        }
    }
}

/// Sends the job's last progress as stored. Live progress rides the bus,
/// which a follower busy replaying may lag behind or close before reading
/// its last notices; the record's is the final word, read once per stream.
async fn final_progress(
    state: &ApiState,
    cursor: &Cursor,
    follower: &Follower,
) -> Result<(), Stop> {
    let progress = match state.storage.get(follower.id).await {
        Ok(job) => job.progress,
        Err(StorageError::NotFound(_)) => None,
        Err(_) => return Err(Stop::Storage),
    };
    match progress {
        Some(progress) => follower.send(follower.event("progress", &progress), cursor).await,
        None => Ok(()),
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

/// Waits until the bus says something happened to the job (forwarding its
/// progress, which only lives on the bus), or `POLL` passes.
async fn wait_for_job(
    bus: &mut broadcast::Receiver<Arc<crate::events::JobEventNotice>>,
    follower: &Follower,
    cursor: &Cursor,
) -> Result<(), Stop> {
    let deadline = tokio::time::sleep(POLL);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            () = &mut deadline => return Ok(()),
            () = follower.sender.closed() => return Err(Stop::Gone),
            notice = bus.recv() => match notice {
                Ok(notice) if notice.job == follower.id => match &notice.update {
                    JobUpdate::Progress(progress) => {
                        follower.send(follower.event("progress", progress), cursor).await?;
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
