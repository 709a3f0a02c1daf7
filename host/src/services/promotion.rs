//! Promotion: scheduled jobs (a delay, a `run_at`, a retry's backoff) whose
//! time came become pending, and the dispatcher is woken to claim them.

use super::Service;
use crate::dispatch::Dispatcher;
use crate::jobs::Clock;
use crate::storage::Storage;
use std::sync::Arc;
use std::time::Duration;

/// Promotes due scheduled jobs.
#[derive(Debug)]
pub struct Promotion {
    /// Where the jobs are.
    pub storage: Arc<dyn Storage>,
    /// What "due" is measured against.
    pub clock: Arc<dyn Clock>,
    /// Woken when jobs became ready.
    pub dispatcher: Arc<Dispatcher>,
    /// How often to look.
    pub period: Duration,
}

#[async_trait::async_trait]
impl Service for Promotion {
    fn name(&self) -> &'static str {
        "promotion"
    }

    fn period(&self) -> Duration {
        self.period
    }

    async fn tick(&self) {
        match self.storage.promote(self.clock.now()).await {
            Ok(0) => {}
            Ok(_) => self.dispatcher.wake(),
            Err(e) => tracing::error!("promoting scheduled jobs: {e}"),
        }
    }
}
