//! One connection per host that `LISTEN`s on the wake channel and wakes
//! this host's waiting claims when any host commits a change that may make
//! a job claimable (an enqueue, a freed slot or lock). It reconnects when
//! the database comes back, and wakes the claims then, since what it
//! missed while away is unknown.

use super::tx::WAKE_CHANNEL;
use futures::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_postgres::{AsyncMessage, NoTls};

/// The listening task; it ends when the storage is dropped.
pub(super) struct Listener(tokio::task::JoinHandle<()>);

impl Listener {
    pub(super) fn start(config: tokio_postgres::Config, wake: Arc<Notify>) -> Listener {
        Listener(tokio::spawn(async move {
            loop {
                if let Err(e) = listen(&config, &wake).await {
                    tracing::warn!("listening for wake-ups: {e}");
                }
                wake.notify_waiters();
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }))
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Listens until the connection ends.
async fn listen(
    config: &tokio_postgres::Config,
    wake: &Notify,
) -> Result<(), tokio_postgres::Error> {
    let (client, mut connection) = config.connect(NoTls).await?;
    let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx)).boxed();
    let listen = format!("LISTEN {WAKE_CHANNEL}");
    let listening = client.batch_execute(&listen);
    tokio::pin!(listening);
    // The connection makes progress only while its messages are polled, so
    // the LISTEN is driven together with them.
    let mut listened = false;
    loop {
        tokio::select! {
            done = &mut listening, if !listened => {
                done?;
                listened = true;
                wake.notify_waiters();
            }
            message = messages.next() => match message {
                Some(Ok(AsyncMessage::Notification(_))) => wake.notify_waiters(),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e),
                None => return Ok(()),
            },
        }
    }
}
