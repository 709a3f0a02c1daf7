//! Expiry: a waiting job not started by its `expires_at` ends `expired`,
//! whatever its queue (a paused one included).

use super::Service;
use crate::jobs::Clock;
use crate::storage::Storage;
use std::sync::Arc;
use std::time::Duration;

/// Expires late jobs.
#[derive(Debug)]
pub struct Expiry {
    /// Where the jobs are.
    pub storage: Arc<dyn Storage>,
    /// What "late" is measured against.
    pub clock: Arc<dyn Clock>,
    /// How often to look.
    pub period: Duration,
}

#[async_trait::async_trait]
impl Service for Expiry {
    fn name(&self) -> &'static str {
        "expiry"
    }

    fn period(&self) -> Duration {
        self.period
    }

    async fn tick(&self) {
        match self.storage.expire(self.clock.now()).await {
            Ok(0) => {}
            Ok(count) => tracing::info!("expired {count} jobs not started in time"),
            Err(e) => tracing::error!("expiring late jobs: {e}"),
        }
    }
}
