//! Completion webhooks: a job may name a `callback_url` that receives its
//! final record (as `GET /v1/jobs/{id}` shows it) once it finishes. The
//! outbox row is written in the transaction that finishes the job, so no
//! webhook is lost; this loop sends what is due, retrying with exponential
//! backoff until the receiver answers 2xx or the attempts run out. Delivery
//! is at least once: a receiver must accept the same job twice.

use super::error::ApiError;
use super::jobs::view;
use crate::storage::{Callback, Storage, StorageError, now_ms};
use std::sync::Arc;
use std::time::Duration;

/// Deliveries tried before a webhook is given up.
pub const MAX_ATTEMPTS: u32 = 10;
/// First retry delay; doubled each attempt up to [`MAX_BACKOFF`].
const BASE_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// How long a receiver gets to answer.
const TIMEOUT: Duration = Duration::from_secs(10);
/// How often the outbox is read, and how much of it at once.
const POLL: Duration = Duration::from_millis(250);
const BATCH: usize = 64;

/// Checks a job's `callback_url`: an absolute `http://` URL.
pub(super) fn check_url(url: &str) -> Result<(), ApiError> {
    let refuse = |why: &str| Err(ApiError::bad_request(format!("callback_url {url:?}: {why}")));
    if url.len() > 2048 {
        return refuse("longer than 2048 bytes");
    }
    match reqwest::Url::parse(url) {
        Ok(parsed) if parsed.scheme() == "http" && parsed.host().is_some() => Ok(()),
        Ok(parsed) if parsed.scheme() == "https" => {
            refuse("https is not supported yet; use http (a relay inside your network)")
        }
        Ok(_) => refuse("must be an http:// URL with a host"),
        Err(e) => refuse(&e.to_string()),
    }
}

/// Sends due webhooks until `shutdown` resolves.
pub async fn deliver(storage: Arc<dyn Storage>, shutdown: impl Future<Output = ()>) {
    let client = reqwest::Client::builder()
        .timeout(TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a client without TLS always builds");
    tokio::pin!(shutdown);
    loop {
        match storage.due_callbacks(now_ms(), BATCH).await {
            Ok(due) => {
                let sends = due.into_iter().map(|callback| send(&client, &storage, callback));
                futures::future::join_all(sends).await;
            }
            Err(e) => tracing::error!("reading the webhook outbox: {e}"),
        }
        tokio::select! {
            () = &mut shutdown => return,
            () = tokio::time::sleep(POLL) => {}
        }
    }
}

/// Sends one webhook and takes it off the outbox or puts it back for later.
async fn send(client: &reqwest::Client, storage: &Arc<dyn Storage>, callback: Callback) {
    let job = match storage.get(callback.job).await {
        Ok(job) => job,
        Err(StorageError::NotFound(_)) => {
            let _ = storage.callback_done(callback, None).await;
            return;
        }
        Err(e) => {
            tracing::error!(job = %callback.job, "reading a job for its webhook: {e}");
            return;
        }
    };
    let Some(url) = job.callback_url.as_deref() else {
        let _ = storage.callback_done(callback, None).await;
        return;
    };
    let failure = match client.post(url).json(&view(&job)).send().await {
        Ok(response) if response.status().is_success() => None,
        Ok(response) => Some(format!("answered {}", response.status())),
        Err(e) => Some(e.to_string()),
    };
    let retry_at = failure.and_then(|why| {
        let attempts = callback.attempts + 1;
        if attempts >= MAX_ATTEMPTS {
            tracing::warn!(job = %job.id, url, "webhook given up after {attempts} attempts: {why}");
            return None;
        }
        let delay = BASE_BACKOFF.saturating_mul(1 << (attempts - 1).min(16)).min(MAX_BACKOFF);
        tracing::info!(job = %job.id, url, "webhook attempt {attempts} failed ({why}); retry in {delay:?}");
        Some(now_ms() + delay.as_millis() as u64)
    });
    if let Err(e) = storage.callback_done(callback, retry_at).await {
        tracing::error!(job = %job.id, "updating the webhook outbox: {e}");
    }
}
