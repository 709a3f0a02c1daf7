//! Recovery: a running job whose worker stopped renewing its lease is taken
//! off that worker by the lost-worker rule (back to pending, or finished),
//! and the dispatcher is woken to claim what came back.

use super::Service;
use crate::dispatch::Dispatcher;
use crate::jobs::Clock;
use crate::storage::Storage;
use std::sync::Arc;
use std::time::Duration;

/// Recovers jobs of dead workers.
#[derive(Debug)]
pub struct Recovery {
    /// Where the jobs are.
    pub storage: Arc<dyn Storage>,
    /// What lease expiry is measured against.
    pub clock: Arc<dyn Clock>,
    /// Woken when jobs came back.
    pub dispatcher: Arc<Dispatcher>,
    /// How often to look.
    pub period: Duration,
}

impl Recovery {
    /// Takes every job still marked running off its worker, whatever its
    /// lease: right for a single host at start, where any such job belongs
    /// to a previous process that died.
    pub async fn recover_all(&self) {
        self.recover(u64::MAX).await;
    }

    async fn recover(&self, now: u64) {
        match self.storage.recover(now).await {
            Ok(ids) if !ids.is_empty() => {
                tracing::warn!("recovered {} jobs whose lease expired", ids.len());
                self.dispatcher.wake();
            }
            Ok(_) => {}
            Err(e) => tracing::error!("recovering expired leases: {e}"),
        }
    }
}

#[async_trait::async_trait]
impl Service for Recovery {
    fn name(&self) -> &'static str {
        "recovery"
    }

    fn period(&self) -> Duration {
        self.period
    }

    async fn tick(&self) {
        self.recover(self.clock.now()).await;
    }
}
