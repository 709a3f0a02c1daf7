//! Open SSE streams: counted per tenant and in all so a flood of followers
//! cannot exhaust the host (over a cap is a 429), and stopped together when
//! the server shuts down so its connections can close.

use super::error::ApiError;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// The stream counts and the stop signal.
#[derive(Debug)]
pub struct Streams {
    max_total: usize,
    max_per_tenant: usize,
    open: Mutex<Open>,
    stop: watch::Sender<bool>,
}

#[derive(Debug, Default)]
struct Open {
    total: usize,
    by_tenant: HashMap<String, usize>,
}

/// One open stream; dropping it closes its place.
#[derive(Debug)]
pub struct StreamSlot {
    streams: Arc<Streams>,
    tenant: String,
}

impl Streams {
    /// Counts with these caps.
    pub fn new(max_total: usize, max_per_tenant: usize) -> Arc<Streams> {
        Arc::new(Streams {
            max_total,
            max_per_tenant,
            open: Mutex::default(),
            stop: watch::Sender::new(false),
        })
    }

    /// A place for one more stream of `tenant`, or a 429 naming the cap.
    pub fn open(self: &Arc<Self>, tenant: &str) -> Result<StreamSlot, ApiError> {
        let mut open = self.open.lock().unwrap();
        if open.total >= self.max_total {
            return Err(ApiError::over_quota(format!(
                "the host has its maximum of {} open streams; try again later",
                self.max_total
            )));
        }
        let mine = open.by_tenant.entry(tenant.to_string()).or_default();
        if *mine >= self.max_per_tenant {
            return Err(ApiError::over_quota(format!(
                "tenant {tenant:?} has its maximum of {} open streams",
                self.max_per_tenant
            )));
        }
        *mine += 1;
        open.total += 1;
        Ok(StreamSlot { streams: self.clone(), tenant: tenant.to_string() })
    }

    /// Streams open now.
    pub fn count(&self) -> usize {
        self.open.lock().unwrap().total
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

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self.streams.open.lock().unwrap();
        open.total -= 1;
        if let Some(mine) = open.by_tenant.get_mut(&self.tenant) {
            *mine -= 1;
            if *mine == 0 {
                open.by_tenant.remove(&self.tenant);
            }
        }
    }
}
