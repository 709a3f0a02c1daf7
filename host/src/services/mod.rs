//! Background work of a host, each a small named [`Service`] started and
//! stopped the same way: [`spawn`] runs its `tick` every `period` until the
//! host stops.
//!
//! - `promotion`: scheduled jobs whose time came become pending.
//! - `expiry`: waiting jobs past their `expires_at` end expired.
//! - `recovery`: jobs of workers whose lease expired are taken off them.
//! - `retention`: finished jobs past the retention age are deleted.
//! - `heartbeat`: this worker reports itself alive and renews its leases.
//! - `webhooks`: completion webhooks are delivered from the outbox.
//! - `schedules`: due cron schedules enqueue their runs.

mod expiry;
mod heartbeat;
mod promotion;
mod recovery;
mod retention;
mod schedules;
pub mod webhooks;

pub use expiry::Expiry;
pub use heartbeat::Heartbeat;
pub use promotion::Promotion;
pub use recovery::Recovery;
pub use retention::Retention;
pub use schedules::Schedules;
pub use webhooks::{WebhookPolicy, Webhooks};

use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// One kind of background work.
#[async_trait::async_trait]
pub trait Service: Send + Sync + 'static {
    /// A name for the logs.
    fn name(&self) -> &'static str;
    /// Time between ticks.
    fn period(&self) -> Duration;
    /// One round of the work; errors are logged by the service itself.
    async fn tick(&self);
}

/// Runs `service` every period until `shutdown` resolves.
pub fn spawn(
    service: Arc<dyn Service>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        tracing::debug!(service = service.name(), "started");
        tokio::pin!(shutdown);
        loop {
            service.tick().await;
            tokio::select! {
                () = &mut shutdown => break,
                () = tokio::time::sleep(service.period()) => {}
            }
        }
        tracing::debug!(service = service.name(), "stopped");
    })
}
