//! The HTTP API (`/v1`, JSON) over hyper, routed by axum.
//!
//! - `error`: the error shape and the status of every internal error.
//! - `auth`: bearer and basic tokens, roles, the first admin token.
//! - `body`: JSON bodies with size limits and errors that name the field.
//! - `plugins`, `jobs`, `queues` (and locks), `workers`, `system`: the
//!   routes; `sse`: live job streams.
//!
//! [`serve`] takes a bound listener and a shutdown future, so tests bind
//! 127.0.0.1:0 and the binary binds its configured address.

mod auth;
mod body;
mod error;
mod jobs;
mod plugins;
mod queues;
mod sse;
mod system;
mod workers;

pub use auth::{Caller, ensure_admin, new_secret, token_hash};
pub use error::ApiError;

use crate::dispatch::Dispatcher;
use crate::events::EventBus;
use crate::runtime::Runtime;
use crate::storage::Storage;
use axum::Router;
use axum::routing::{get, post};
use std::sync::Arc;
use tokio::net::TcpListener;

/// Largest JSON body of any route but plugin upload.
pub const MAX_JSON_BODY: usize = 2 << 20;
/// Largest component a plugin upload may carry.
pub const MAX_COMPONENT: usize = 64 << 20;

/// What every handler can reach.
pub struct ApiState {
    /// Durable jobs.
    pub storage: Arc<dyn Storage>,
    /// Plugins and limits.
    pub runtime: Arc<Runtime>,
    /// Running jobs (wake, cancel).
    pub dispatcher: Arc<Dispatcher>,
    /// Live updates for followers.
    pub bus: EventBus,
}

impl std::fmt::Debug for ApiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiState").finish_non_exhaustive()
    }
}

/// Every route.
pub fn router(state: Arc<ApiState>) -> Router {
    Router::new()
        .route("/v1/health", get(system::health))
        .route("/v1/plugins", get(plugins::list))
        .route(
            "/v1/plugins/{name}",
            get(plugins::details)
                .post(plugins::upload)
                .put(plugins::upload)
                .delete(plugins::remove)
                .layer(axum::extract::DefaultBodyLimit::max(MAX_COMPONENT)),
        )
        .route("/v1/jobs", get(jobs::list).post(jobs::enqueue))
        .route("/v1/jobs/{id}", get(jobs::details).delete(jobs::remove))
        .route("/v1/jobs/{id}/events", get(sse::follow))
        .route("/v1/jobs/{id}/logs", get(jobs::logs))
        .route("/v1/jobs/{id}/cancel", post(jobs::cancel))
        .route("/v1/jobs/{id}/retry", post(jobs::retry))
        .route("/v1/jobs/{id}/clone", post(jobs::clone))
        .route("/v1/queues", get(queues::list))
        .route("/v1/queues/{name}", axum::routing::patch(queues::change))
        .route("/v1/queues/{name}/pause", post(queues::pause))
        .route("/v1/queues/{name}/resume", post(queues::resume))
        .route("/v1/locks", get(queues::locks))
        .route("/v1/locks/{name}", axum::routing::delete(queues::clear_lock))
        .route("/v1/workers", get(workers::list))
        .route("/v1/workers/{id}/{action}", post(workers::set_mode))
        .fallback(system::no_route)
        .method_not_allowed_fallback(system::no_method)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_JSON_BODY))
        .with_state(state)
}

/// Serves the API on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    state: Arc<ApiState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state)).with_graceful_shutdown(shutdown).await
}
