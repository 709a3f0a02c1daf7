//! Open SSE streams: counted per tenant and in all so a flood of followers
//! cannot exhaust the host (over a cap is a 429), and stopped together when
//! the server shuts down so its connections can close.

use super::caps::{Caps, Over, Slot};
use super::error::ApiError;
use std::sync::Arc;
use tokio::sync::watch;

/// One open stream; dropping it closes its place.
pub type StreamSlot = Slot<String>;

/// The stream counts and the stop signal.
#[derive(Debug)]
pub struct Streams {
    caps: Arc<Caps<String>>,
    stop: watch::Sender<bool>,
}

impl Streams {
    /// Counts with these caps.
    pub fn new(max_total: usize, max_per_tenant: usize) -> Arc<Streams> {
        Arc::new(Streams {
            caps: Caps::new(max_total, max_per_tenant),
            stop: watch::Sender::new(false),
        })
    }

    /// A place for one more stream of `tenant`, or a 429 naming the cap.
    pub fn open(&self, tenant: &str) -> Result<StreamSlot, ApiError> {
        self.caps.open(&tenant.to_string()).map_err(|over| match over {
            Over::Total(max) => ApiError::over_quota(format!(
                "the host has its maximum of {max} open streams; try again later"
            )),
            Over::Key(max) => ApiError::over_quota(format!(
                "tenant {tenant:?} has its maximum of {max} open streams"
            )),
        })
    }

    /// Streams open now.
    pub fn count(&self) -> usize {
        self.caps.count()
    }

    /// Ends every stream (at shutdown); followers resume elsewhere with
    /// `Last-Event-ID`.
    pub fn stop_all(&self) {
        self.stop.send_replace(true);
    }

    /// Resolves once [`stop_all`](Self::stop_all) was called.
    pub async fn stopped(&self) {
        let mut stop = self.stop.subscribe();
        let _ = stop.wait_for(|stopped| *stopped).await;
    }
}
