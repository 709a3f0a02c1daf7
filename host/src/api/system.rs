//! Health, who the caller is, the request log, and the answers for routes
//! and methods that do not exist.

use super::auth::Caller;
use super::error::{ApiError, ErrorBody};
use crate::jobs::Role;
use axum::Json;
use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;

/// The answer of the health check.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok` while the server answers.
    pub status: &'static str,
}

/// `GET /v1/health`: no auth, for load balancers.
#[utoipa::path(get, path = "/v1/health", operation_id = "health", tag = "system", security(), responses((status = 200, description = "the server is up", body = Health)))]
pub async fn health() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// The token a request was made with, as its holder may see it.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Me {
    /// The token's name (jobs it submits are owned by this name).
    pub name: String,
    /// Its tenant.
    pub tenant: String,
    /// What it may do.
    pub role: Role,
}

/// `GET /v1/me`: the caller's token name, tenant and role, so a client can
/// check a token and show only what the role may do.
#[utoipa::path(get, path = "/v1/me", operation_id = "me", tag = "system", responses((status = 200, description = "the caller's name, tenant and role", body = Me), (status = "4XX", description = "error", body = ErrorBody)))]
pub async fn me(caller: Caller) -> Json<Me> {
    Json(Me { name: caller.name, tenant: caller.tenant, role: caller.role })
}

/// Logs one line per request: method, route (the template, never ids or
/// names from the path), status and latency. A request that succeeded is
/// logged at debug level, one refused at info and one that failed in the
/// host at warn: at ten thousand enqueues a second, a line for each costs
/// the host more than the enqueue's own JSON.
pub async fn log_request(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let route = request.extensions().get::<MatchedPath>().cloned();
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    let status = response.status();
    macro_rules! line {
        ($level:ident) => {
            tracing::event!(
                tracing::Level::$level,
                %method,
                route = route.as_ref().map_or("?", MatchedPath::as_str),
                status = status.as_u16(),
                latency_ms = started.elapsed().as_secs_f64() * 1e3,
                "request"
            )
        };
    }
    if status.is_server_error() {
        line!(WARN);
    } else if status.is_client_error() {
        line!(INFO);
    } else {
        line!(DEBUG);
    }
    response
}

/// Any unknown path.
pub async fn no_route() -> ApiError {
    ApiError::not_found("route")
}

/// A known path with the wrong method.
pub async fn no_method() -> ApiError {
    ApiError::new_method_not_allowed()
}

impl ApiError {
    fn new_method_not_allowed() -> Self {
        ApiError {
            status: axum::http::StatusCode::METHOD_NOT_ALLOWED,
            code: "method_not_allowed",
            message: "this route does not take that method".into(),
        }
    }
}
