//! The HTTP API (`/v1`, JSON) over hyper, routed by axum.
//!
//! - `error`: the error shape and the status of every internal error.
//! - `auth`: bearer and basic tokens, roles, the first admin token.
//! - `body`: JSON bodies with size limits and errors that name the field.
//! - `caps`: counted places per key and in all; `streams`: SSE streams
//!   capped with it; `stats`: stats and /metrics; `openapi`: the OpenAPI
//!   document, generated from the handlers; `send_timeout`: connections
//!   whose client stopped reading are closed.
//! - `views`: the response bodies, apart from stored records.
//! - `batch`: many jobs in one request and one commit.
//! - `plugins`, `jobs`, `queues` (and locks), `workers`, `system`: the
//!   routes; `tokens` and `tenants` for admins; `sse`: live job streams.
//! - `workflows`: graphs of steps, their state, SSE, cancel and retry.
//! - `schedules`: recurring cron schedules.
//! - `ui`: the web dashboard at `/ui`, embedded assets over the same API.
//!
//! [`serve`] takes a bound listener and a shutdown future, so tests bind
//! 127.0.0.1:0 and the binary binds its configured address.

mod auth;
mod batch;
mod body;
mod caps;
mod error;
mod jobs;
mod openapi;
mod plugins;
mod queues;
mod schedules;
mod send_timeout;
mod sse;
mod stats;
mod streams;
mod system;
mod tenants;
mod tokens;
mod ui;
mod views;
mod workers;
mod workflows;

pub use auth::{Caller, ensure_admin, new_secret, token_hash};
use caps::{Caps, Over};
pub use error::ApiError;
use send_timeout::SendTimeout;
pub use views::job_view;

use crate::dispatch::Dispatcher;
use crate::egress::EgressPolicy;
use crate::events::EventBus;
use crate::jobs::{Clock, TenantDefaults};
use crate::runtime::Runtime;
use crate::storage::Storage;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::sync::Arc;
use std::time::Duration;
use streams::Streams;
use tokio::net::TcpListener;
use utoipa::OpenApi;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

/// Largest JSON body of any route but plugin upload.
pub const MAX_JSON_BODY: usize = 2 << 20;
/// Largest component a plugin upload may carry.
pub const MAX_COMPONENT: usize = 64 << 20;

/// How the server protects itself.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// A client must send its request headers within this time.
    pub header_timeout: Duration,
    /// A request body must arrive whole within this time, however it
    /// trickles (408 otherwise).
    pub body_timeout: Duration,
    /// Open connections on the host, at most; one over is answered 503 and
    /// closed.
    pub max_connections: usize,
    /// Open connections from one client address, at most.
    pub max_connections_per_address: usize,
    /// Open SSE streams on the host, at most.
    pub max_streams: usize,
    /// Open SSE streams of one tenant, at most.
    pub max_streams_per_tenant: usize,
    /// A follower that reads nothing for this long is dropped; a connection
    /// whose writes make no progress for twice this long is closed.
    pub stream_stall: Duration,
    /// At shutdown, how long requests in flight get to finish.
    pub shutdown_grace: Duration,
    /// Quotas of tenants that set none, as the tenant routes show them.
    pub tenant_defaults: TenantDefaults,
    /// Plugin uploads compiled at once.
    pub max_concurrent_compiles: usize,
    /// An upload whose compile takes longer is refused (the compile ends in
    /// the background, still holding its permit).
    pub compile_timeout: Duration,
    /// Where a job's `callback_url` may point.
    pub egress: EgressPolicy,
}

impl ApiConfig {
    /// A write pending this long closes its connection: twice the stream
    /// stall, so a stalled follower's stream is dropped (and its `dropped`
    /// event queued) first, and never under a second.
    pub fn send_timeout(&self) -> Duration {
        (self.stream_stall * 2).max(Duration::from_secs(1))
    }
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            max_connections: 10_000,
            max_connections_per_address: 2_000,
            max_streams: 10_000,
            max_streams_per_tenant: 2_000,
            stream_stall: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(10),
            tenant_defaults: TenantDefaults::default(),
            max_concurrent_compiles: 2,
            compile_timeout: Duration::from_secs(120),
            egress: EgressPolicy::default(),
        }
    }
}

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
    /// Timeouts and caps.
    pub config: ApiConfig,
    /// Open SSE streams.
    pub streams: Arc<Streams>,
    /// Open connections, per client address and in all.
    pub connections: Arc<Caps<std::net::IpAddr>>,
    /// When the server started, for uptime.
    pub started: std::time::Instant,
    /// What "now" is for every request.
    pub clock: Arc<dyn Clock>,
    /// Permits to compile an uploaded plugin.
    pub compiles: Arc<tokio::sync::Semaphore>,
}

impl ApiState {
    /// The state of a server over these parts.
    pub fn new(
        storage: Arc<dyn Storage>,
        runtime: Arc<Runtime>,
        dispatcher: Arc<Dispatcher>,
        bus: EventBus,
        clock: Arc<dyn Clock>,
        config: ApiConfig,
    ) -> Arc<ApiState> {
        let streams = Streams::new(config.max_streams, config.max_streams_per_tenant);
        let started = std::time::Instant::now();
        let compiles = Arc::new(tokio::sync::Semaphore::new(config.max_concurrent_compiles));
        let connections = Caps::new(config.max_connections, config.max_connections_per_address);
        Arc::new(ApiState {
            connections,
            storage,
            runtime,
            dispatcher,
            bus,
            config,
            streams,
            started,
            clock,
            compiles,
        })
    }
}

impl std::fmt::Debug for ApiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiState").field("config", &self.config).finish_non_exhaustive()
    }
}

/// Every route, and the OpenAPI document generated from the same handlers.
pub fn router(state: Arc<ApiState>) -> Router {
    let (router, document) = OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(system::health))
        .routes(routes!(system::me))
        .routes(routes!(openapi::document))
        .routes(routes!(plugins::list))
        .routes(
            routes!(plugins::details, plugins::upload, plugins::replace, plugins::remove)
                .layer(DefaultBodyLimit::max(MAX_COMPONENT)),
        )
        .routes(routes!(plugins::versions))
        .routes(routes!(plugins::remove_version))
        .routes(routes!(jobs::list, jobs::enqueue))
        .routes(routes!(jobs::broadcast))
        .routes(routes!(batch::enqueue_batch))
        .routes(routes!(jobs::details, jobs::relabel, jobs::remove))
        .routes(routes!(sse::follow))
        .routes(routes!(jobs::logs))
        .routes(routes!(jobs::cancel))
        .routes(routes!(jobs::retry))
        .routes(routes!(jobs::clone))
        .routes(routes!(workflows::list, workflows::submit))
        .routes(routes!(workflows::details))
        .routes(routes!(workflows::follow))
        .routes(routes!(workflows::cancel))
        .routes(routes!(workflows::retry))
        .routes(routes!(schedules::list, schedules::create))
        .routes(routes!(schedules::details, schedules::remove))
        .routes(routes!(schedules::pause))
        .routes(routes!(schedules::resume))
        .routes(routes!(queues::list))
        .routes(routes!(queues::details, queues::change))
        .routes(routes!(queues::pause))
        .routes(routes!(queues::resume))
        .routes(routes!(queues::locks))
        .routes(routes!(queues::clear_lock))
        .routes(routes!(tokens::list, tokens::create))
        .routes(routes!(tokens::revoke))
        .routes(routes!(tenants::list))
        .routes(routes!(tenants::details, tenants::set))
        .routes(routes!(stats::stats))
        .routes(routes!(stats::metrics))
        .routes(routes!(workers::list, workers::command))
        .routes(routes!(workers::ping))
        .routes(routes!(workers::set_mode))
        .split_for_parts();
    openapi::DOCUMENT.get_or_init(|| document.to_pretty_json().expect("the document serialises"));
    router
        .merge(ui::routes())
        .route_layer(axum::middleware::from_fn(system::log_request))
        .fallback(system::no_route)
        .method_not_allowed_fallback(system::no_method)
        .layer(DefaultBodyLimit::max(MAX_JSON_BODY))
        .with_state(state)
}

/// Serves the API on `listener` until `shutdown` resolves, then stops
/// accepting, ends SSE streams and gives requests in flight the shutdown
/// grace to finish.
///
/// The accept loop is hyper's own rather than `axum::serve`, for the header
/// read timeout and the connection caps.
pub async fn serve(
    listener: TcpListener,
    state: Arc<ApiState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let service = router(state.clone());
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(state.config.header_timeout);
    let connections = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, most likely: wait for some
                    // connections to close rather than spin.
                    tracing::warn!("accepting a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let slot = match state.connections.open(&peer.ip()) {
            Ok(slot) => slot,
            Err(over) => {
                tokio::spawn(refuse_connection(stream, over));
                continue;
            }
        };
        // Responses and SSE events are small writes a client waits on:
        // send each at once rather than after the peer's delayed ACK.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!("setting TCP_NODELAY: {e}");
        }
        let stream = SendTimeout::new(stream, state.config.send_timeout());
        let connection =
            http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service.clone()));
        let connection = connections.watch(connection);
        tokio::spawn(async move {
            let _slot = slot;
            if let Err(e) = connection.await {
                tracing::debug!("connection: {e}");
            }
        });
    }
    drop(listener);
    state.streams.stop_all();
    if tokio::time::timeout(state.config.shutdown_grace, connections.shutdown()).await.is_err() {
        tracing::warn!("requests still in flight at the end of the shutdown grace were dropped");
    }
    Ok(())
}

/// Answers a connection over a cap with a 503 naming the cap, without
/// reading its request, and closes it.
async fn refuse_connection(mut stream: tokio::net::TcpStream, over: Over) {
    use tokio::io::AsyncWriteExt;
    let message = match over {
        Over::Total(max) => format!("the host has its maximum of {max} open connections"),
        Over::Key(max) => format!("this address has its maximum of {max} open connections"),
    };
    let body = serde_json::json!({ "error": { "code": "unavailable", "message": message } });
    let body = body.to_string();
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let write = stream.write_all(response.as_bytes());
    let _ = tokio::time::timeout(Duration::from_secs(1), write).await;
}
