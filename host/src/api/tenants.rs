//! Tenants and their quotas: most running jobs, most waiting jobs, caps on
//! the limits a job may ask for. Admins set them; every caller may read its
//! own tenant, with how many of its jobs wait.

use super::ApiState;
use super::auth::{Caller, CanAdministerHost};
use super::body::JsonBody;
use super::error::{ApiError, ErrorBody};
use super::views::{TenantList, TenantView};
use crate::jobs::LimitOverrides;
use crate::jobs::TenantRecord;
use crate::jobs::enqueue::{MAX_PRIORITY, check_label};
use axum::Json;
use axum::extract::{Path, State};
use serde::Deserialize;
use std::sync::Arc;
use utoipa::ToSchema;

/// The body of `PUT /v1/tenants/{name}`; a missing quota is no limit.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Quotas {
    max_running: Option<u32>,
    /// `null` or missing: the host's default (100,000).
    max_queued: Option<u32>,
    #[serde(default)]
    max_limits: LimitOverrides,
    /// Highest priority its jobs may ask for; `null`: the bound of 1000.
    max_priority: Option<i32>,
    /// Most children one of its jobs may spawn; `null`: the host's default.
    max_children: Option<u32>,
    /// Deepest spawn of its jobs; `null`: the host's default.
    max_spawn_depth: Option<u32>,
}

async fn view(state: &ApiState, record: TenantRecord) -> Result<TenantView, ApiError> {
    let waiting = state.storage.waiting(&record.name).await?;
    let quota = record.queued_quota(&state.config.tenant_defaults);
    Ok(TenantView::new(&record, waiting, quota))
}

/// `GET /v1/tenants`: tenants with quotas set (admins).
#[utoipa::path(get, path = "/v1/tenants", operation_id = "list_tenants", tag = "admin", responses((status = 200, description = "tenants with quotas", body = TenantList), (status = "4XX", description = "error", body = ErrorBody)))]
pub async fn list(
    State(state): State<Arc<ApiState>>,
    _: CanAdministerHost,
) -> Result<Json<TenantList>, ApiError> {
    let mut tenants = Vec::new();
    for record in state.storage.tenants().await? {
        tenants.push(view(&state, record).await?);
    }
    Ok(Json(TenantList { tenants }))
}

/// `GET /v1/tenants/{name}`: admins any, others only their own (404 else).
#[utoipa::path(get, path = "/v1/tenants/{name}", operation_id = "get_tenant", tag = "admin", params(("name" = String, Path, description = "tenant")), responses((status = 200, description = "quotas and waiting jobs", body = TenantView), (status = "4XX", description = "error", body = ErrorBody)))]
pub async fn details(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<TenantView>, ApiError> {
    if name != caller.tenant && caller.host_admin().is_err() {
        return Err(ApiError::not_found(format!("tenant {name:?}")));
    }
    let record = state.storage.tenant(&name).await?;
    Ok(Json(view(&state, record).await?))
}

/// `PUT /v1/tenants/{name}`: sets every quota of the tenant.
#[utoipa::path(put, path = "/v1/tenants/{name}", operation_id = "set_tenant", tag = "admin", params(("name" = String, Path, description = "tenant")), request_body = Quotas, responses((status = 200, description = "the tenant", body = TenantView), (status = "4XX", description = "error", body = ErrorBody)))]
pub async fn set(
    State(state): State<Arc<ApiState>>,
    _: CanAdministerHost,
    Path(name): Path<String>,
    JsonBody(quotas): JsonBody<Quotas>,
) -> Result<Json<TenantView>, ApiError> {
    check_label("tenant", &name, 64)?;
    if quotas.max_priority.is_some_and(|p| p.abs() > MAX_PRIORITY) {
        return Err(ApiError::bad_request(format!(
            "max_priority must be between -{MAX_PRIORITY} and {MAX_PRIORITY}"
        )));
    }
    if let Some(refusal) = state.runtime.caps().refusal(&quotas.max_limits) {
        return Err(ApiError::bad_request(format!("max_{refusal}")));
    }
    let record = TenantRecord {
        name,
        max_running: quotas.max_running,
        max_queued: quotas.max_queued,
        max_limits: quotas.max_limits,
        max_priority: quotas.max_priority,
        max_children: quotas.max_children,
        max_spawn_depth: quotas.max_spawn_depth,
    };
    state.storage.put_tenant(record.clone()).await?;
    Ok(Json(view(&state, record).await?))
}
