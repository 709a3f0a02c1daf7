//! Heartbeat: three times per lease, this host's worker reports itself
//! alive (learning the mode an operator set for it) and renews the leases
//! of the jobs it runs, so recovery leaves them alone.

use super::Service;
use crate::dispatch::Dispatcher;
use std::sync::Arc;
use std::time::Duration;

/// Keeps this worker's record and leases fresh.
#[derive(Debug)]
pub struct Heartbeat {
    /// The worker.
    pub dispatcher: Arc<Dispatcher>,
}

#[async_trait::async_trait]
impl Service for Heartbeat {
    fn name(&self) -> &'static str {
        "heartbeat"
    }

    fn period(&self) -> Duration {
        self.dispatcher.lease() / 3
    }

    async fn tick(&self) {
        self.dispatcher.heartbeat().await;
    }
}
