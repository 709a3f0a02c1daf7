//! Completion webhooks: a job may name a `callback_url` that receives its
//! final record (as `GET /v1/jobs/{id}` shows it) once it finishes. The
//! outbox row is written in the transaction that finishes the job, so no
//! webhook is lost; this service sends what is due, retrying with
//! exponential backoff until the receiver answers 2xx or the attempts run
//! out. Delivery is at least once: a receiver must accept the same job
//! twice.
//!
//! Every delivery checks the URL against the [`EgressPolicy`] again (an
//! address in it here, a name as the client resolves it, through the
//! policy: one lookup, and the addresses checked are those connected to,
//! so no DNS rebinding past the enqueue check).
//! Only the receiver's status is read, never its body; it has the
//! policy's timeout to answer. Each try is recorded on the job
//! ([`WebhookStatus`]), so a client sees a webhook delivered, retrying or
//! given up.

use super::Service;
use crate::egress::EgressPolicy;
use crate::jobs::{Clock, JobRecord, WebhookState, WebhookStatus};
use crate::storage::{Callback, Storage, StorageError};
use std::sync::Arc;
use std::time::Duration;

/// How often the outbox is read, and how much of it at once.
const POLL: Duration = Duration::from_millis(250);
const BATCH: usize = 64;

/// How deliveries are made and retried: the operator's settings.
#[derive(Debug, Clone)]
pub struct WebhookPolicy {
    /// Where deliveries may go.
    pub egress: EgressPolicy,
    /// Deliveries tried before a webhook is given up.
    pub attempts: u32,
    /// First retry delay; doubled each attempt up to `max_backoff`.
    pub backoff: Duration,
    /// Longest delay between two attempts.
    pub max_backoff: Duration,
    /// How long a receiver gets to answer.
    pub timeout: Duration,
}

impl WebhookPolicy {
    /// When attempt `attempts + 1` comes, `None` when `attempts` were the last.
    fn next_delay(&self, attempts: u32) -> Option<Duration> {
        (attempts < self.attempts)
            .then(|| self.backoff.saturating_mul(1 << (attempts - 1).min(16)).min(self.max_backoff))
    }
}

/// A callback URL as the host log may show it: without credentials or a
/// query, which often carry a receiver's secret.
fn redacted(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) => {
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            parsed.set_query(None);
            parsed.set_fragment(None);
            parsed.to_string()
        }
        Err(_) => "<not a URL>".to_string(),
    }
}

/// Renders a job as the receiver gets it: the API's view of the job.
pub type Render = fn(&JobRecord) -> serde_json::Value;

/// Delivers due webhooks.
pub struct Webhooks {
    storage: Arc<dyn Storage>,
    clock: Arc<dyn Clock>,
    render: Render,
    client: reqwest::Client,
    policy: WebhookPolicy,
}

impl std::fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhooks").finish_non_exhaustive()
    }
}

impl Webhooks {
    /// Delivers from `storage`'s outbox, each job rendered by `render`, as
    /// `policy` says.
    pub fn new(
        storage: Arc<dyn Storage>,
        clock: Arc<dyn Clock>,
        render: Render,
        policy: WebhookPolicy,
    ) -> Self {
        let client = reqwest::Client::builder()
            .timeout(policy.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(policy.egress.resolver())
            .build()
            .expect("a client without TLS always builds");
        Self { storage, clock, render, client, policy }
    }
}

#[async_trait::async_trait]
impl Service for Webhooks {
    fn name(&self) -> &'static str {
        "webhooks"
    }

    fn period(&self) -> Duration {
        POLL
    }

    async fn tick(&self) {
        match self.storage.due_callbacks(self.clock.now(), BATCH).await {
            Ok(due) => {
                futures::future::join_all(due.into_iter().map(|callback| self.send(callback)))
                    .await;
            }
            Err(e) => tracing::error!("reading the webhook outbox: {e}"),
        }
    }
}

impl Webhooks {
    /// Sends one webhook and takes it off the outbox or puts it back for later.
    async fn send(&self, callback: Callback) {
        let storage = &self.storage;
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
        let failure = match self.policy.egress.check_before_connect(url) {
            Err(refused) => Some(refused),
            Ok(()) => match self.client.post(url).json(&(self.render)(&job)).send().await {
                Ok(response) if response.status().is_success() => None,
                Ok(response) => Some(format!("answered {}", response.status())),
                Err(e) => Some(e.to_string()),
            },
        };
        let now = self.clock.now();
        let attempts = callback.attempts + 1;
        let id = job.id;
        let delay = failure.as_ref().and_then(|_| self.policy.next_delay(attempts));
        let state = match (&failure, delay) {
            (None, _) => WebhookState::Delivered,
            (Some(why), Some(delay)) => {
                let url = redacted(url);
                tracing::info!(job = %id, url, "webhook attempt {attempts} failed ({why}); retry in {delay:?}");
                WebhookState::Retrying
            }
            (Some(why), None) => {
                let url = redacted(url);
                tracing::warn!(job = %id, url, "webhook given up after {attempts} attempts: {why}");
                WebhookState::GivenUp
            }
        };
        let status = WebhookStatus {
            state,
            attempts,
            last_attempt_at: Some(now),
            next_attempt_at: delay.map(|delay| now + delay.as_millis() as u64),
            error: failure,
        };
        if let Err(e) = storage.callback_done(callback, Some(status)).await {
            tracing::error!(job = %id, "updating the webhook outbox: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{WebhookPolicy, redacted};
    use std::time::Duration;

    #[test]
    fn retries_double_up_to_the_longest_delay_and_stop_after_the_last_attempt() {
        let policy = WebhookPolicy {
            egress: Default::default(),
            attempts: 5,
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(3),
            timeout: Duration::from_secs(1),
        };
        let delays: Vec<_> = (1..=5).map(|attempt| policy.next_delay(attempt)).collect();
        let seconds = |s| Some(Duration::from_secs(s));
        assert_eq!(delays, [seconds(1), seconds(2), seconds(3), seconds(3), None]);
    }

    #[test]
    fn the_log_shows_no_credentials_or_query() {
        let url = "http://user:hunter2@hooks.example:8080/done?api_key=s3cret#x";
        assert_eq!(redacted(url), "http://hooks.example:8080/done");
    }
}
