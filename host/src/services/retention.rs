//! Retention: finished jobs older than the retention age are deleted with
//! their logs and journal, a chunk at a time so no commit grows large.

use super::Service;
use crate::jobs::Clock;
use crate::storage::Storage;
use std::sync::Arc;
use std::time::Duration;

/// Jobs deleted per commit.
const CHUNK: usize = 1_000;

/// Prunes old finished jobs.
#[derive(Debug)]
pub struct Retention {
    /// Where the jobs are.
    pub storage: Arc<dyn Storage>,
    /// What age is measured against.
    pub clock: Arc<dyn Clock>,
    /// How long finished jobs are kept.
    pub keep: Duration,
    /// How often to prune.
    pub period: Duration,
}

#[async_trait::async_trait]
impl Service for Retention {
    fn name(&self) -> &'static str {
        "retention"
    }

    fn period(&self) -> Duration {
        self.period
    }

    async fn tick(&self) {
        let cutoff = self.clock.now().saturating_sub(self.keep.as_millis() as u64);
        loop {
            match self.storage.prune(cutoff, CHUNK).await {
                Ok(count) if count == CHUNK => continue,
                Ok(count) => {
                    if count > 0 {
                        tracing::info!("pruned {count} finished jobs past retention");
                    }
                    return;
                }
                Err(e) => {
                    tracing::error!("pruning finished jobs: {e}");
                    return;
                }
            }
        }
    }
}
