//! Carries job events between the hosts on one database, so an SSE
//! follower on one host sees a job that runs on another as it happens
//! (its progress included, which only the bus has): each host sends what
//! its bus publishes as `NOTIFY jobhost_events`, batched, on a connection
//! of its own, and publishes on its bus what the others sent. Like the
//! bus, this is "what is happening now": events that find the database
//! slow or away are dropped, and followers read the rest from storage, as
//! after lagging behind the bus.

use super::PgStorage;
use super::tx::backend;
use crate::events::{EventBus, JobEventNotice, JobUpdate};
use crate::storage::StorageError;
use futures::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::Receiver;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, NoTls, Notification};

const EVENTS_CHANNEL: &str = "jobhost_events";

/// Bytes of one payload, at most: PostgreSQL's limit is 8000.
const PAYLOAD: usize = 7_900;

/// Events sent in one round, at most, so a busy bus does not keep the
/// relay from what it hears.
const BATCH: usize = 1_000;

/// Bytes of a log line relayed, at most; the whole line is in storage.
const LOG_MESSAGE: usize = 1_024;

/// The relaying task; it ends when dropped (with the host).
#[derive(Debug)]
pub struct Relay(tokio::task::JoinHandle<()>);

impl Drop for Relay {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl PgStorage {
    /// Relays `bus` to and from the other hosts on this database until the
    /// returned [`Relay`] is dropped; it listens before this returns, so
    /// the host hears its peers from its start. A lost connection is
    /// opened again every second.
    pub async fn relay(&self, bus: EventBus) -> Result<Relay, StorageError> {
        let config = self.config.clone();
        let link = Link::open(&config).await.map_err(backend)?;
        Ok(Relay(tokio::spawn(async move {
            let mut link = Some(link);
            loop {
                if let Some(open) = link.take() {
                    let ended = open.relay(&bus).await;
                    tracing::warn!("relaying job events to other hosts: {ended}");
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                link = Link::open(&config).await.ok();
            }
        })))
    }
}

/// The relay's connection, listening.
struct Link {
    client: tokio_postgres::Client,
    /// The notifications the connection received.
    heard: mpsc::UnboundedReceiver<Notification>,
    /// The connection's server process, which sent this host's own.
    pid: i32,
    /// `pg_notify` on the events channel, prepared once.
    notify: tokio_postgres::Statement,
}

impl Link {
    async fn open(config: &tokio_postgres::Config) -> Result<Link, tokio_postgres::Error> {
        let (client, mut connection) = config.connect(NoTls).await?;
        let (hear, heard) = mpsc::unbounded_channel();
        // Drives the connection; it ends with it, or once `client` goes.
        tokio::spawn(async move {
            let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(Ok(message)) = messages.next().await {
                if let AsyncMessage::Notification(notification) = message
                    && hear.send(notification).is_err()
                {
                    return;
                }
            }
        });
        client.batch_execute(&format!("LISTEN {EVENTS_CHANNEL}")).await?;
        let pid = client.query_one("SELECT pg_backend_pid()", &[]).await?.get(0);
        let notify = client.prepare("SELECT pg_notify($1, $2)").await?;
        Ok(Link { client, heard, pid, notify })
    }

    /// Relays until the connection fails; says why it ended.
    async fn relay(mut self, bus: &EventBus) -> String {
        let mut local = bus.subscribe();
        loop {
            tokio::select! {
                heard = self.heard.recv() => match heard {
                    Some(notification) if notification.process_id() != self.pid => {
                        publish(bus, notification.payload());
                    }
                    Some(_) => {}
                    None => return "the connection ended".to_string(),
                },
                notice = local.recv() => {
                    let first = match notice {
                        Ok(notice) => notice,
                        Err(RecvError::Lagged(_)) => continue,
                        Err(RecvError::Closed) => return "the bus closed".into(),
                    };
                    for payload in payloads(first, &mut local) {
                        let sent = self
                            .client
                            .execute(&self.notify, &[&EVENTS_CHANNEL, &payload])
                            .await;
                        if let Err(e) = sent {
                            return e.to_string();
                        }
                    }
                }
            }
        }
    }
}

/// Publishes on `bus` the events another host sent.
fn publish(bus: &EventBus, payload: &str) {
    match serde_json::from_str::<Vec<JobEventNotice>>(payload) {
        Ok(notices) => notices.into_iter().for_each(|notice| bus.publish_relayed(notice)),
        Err(e) => tracing::warn!("unreadable job events from another host: {e}"),
    }
}

/// `first` and the events the bus holds now (up to [`BATCH`]), this
/// host's own (not those relayed here), packed into JSON arrays that each
/// fit a payload. One too big even alone is left out.
fn payloads(first: Arc<JobEventNotice>, local: &mut Receiver<Arc<JobEventNotice>>) -> Vec<String> {
    let mut payloads = Vec::new();
    let mut payload = String::from("[");
    let mut next = Some(first);
    let mut taken = 0;
    while let Some(notice) = next.take() {
        let encoded = (!notice.relayed).then(|| encode(&notice));
        if let Some(encoded) = encoded.filter(|encoded| encoded.len() + 2 <= PAYLOAD) {
            if payload.len() + encoded.len() + 2 > PAYLOAD {
                payload.push(']');
                payloads.push(std::mem::replace(&mut payload, String::from("[")));
            }
            if payload.len() > 1 {
                payload.push(',');
            }
            payload.push_str(&encoded);
        }
        taken += 1;
        next = match local.try_recv() {
            _ if taken == BATCH => None,
            Ok(notice) => Some(notice),
            Err(TryRecvError::Lagged(_)) => local.try_recv().ok(),
            Err(_) => None,
        };
    }
    if payload.len() > 1 {
        payload.push(']');
        payloads.push(payload);
    }
    payloads
}

/// A notice as JSON, a log line cut to [`LOG_MESSAGE`] bytes (a progress
/// message and a reason are shorter already), so one always fits.
fn encode(notice: &JobEventNotice) -> String {
    match &notice.update {
        JobUpdate::Log { at, level, message } if message.len() > LOG_MESSAGE => {
            let mut end = LOG_MESSAGE;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            let message = message[..end].to_string();
            let update = JobUpdate::Log { at: *at, level: *level, message };
            encode(&JobEventNotice { update, ..notice.clone() })
        }
        _ => serde_json::to_string(notice).expect("notices always serialise"),
    }
}
