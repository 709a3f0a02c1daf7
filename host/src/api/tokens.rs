//! API tokens, for admins: create (the secret is shown once, only its hash
//! is kept), list, revoke. A token's id is the hash of its secret.

use super::ApiState;
use super::auth::{Caller, CanManageTokens, new_secret, token_hash};
use super::body::JsonBody;
use super::error::{ApiError, ErrorBody};
use super::views::{TokenList, TokenView};
use crate::jobs::enqueue::check_label;
use crate::jobs::{Role, TokenRecord};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use std::sync::Arc;
use utoipa::ToSchema;

/// The body of `POST /v1/tokens`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    name: String,
    /// Defaults to the admin's own tenant.
    tenant: Option<String>,
    role: Role,
}

/// Whether `caller` manages tokens of `tenant`: a host admin any tenant's,
/// a tenant admin its own tenant's only.
fn manages(caller: &Caller, tenant: &str) -> bool {
    caller.role == Role::HostAdmin || caller.tenant == tenant
}

/// `POST /v1/tokens`: 201 with the new token and its secret, shown once.
/// Token names are unique within a tenant, since jobs belong to their
/// submitter by name.
#[utoipa::path(post, path = "/v1/tokens", operation_id = "create_token", tag = "admin", request_body = NewToken, responses((status = 201, description = "the token with its secret, shown once", body = TokenView), (status = "4XX", description = "error", body = ErrorBody)))]
pub async fn create(
    State(state): State<Arc<ApiState>>,
    CanManageTokens(caller): CanManageTokens,
    JsonBody(request): JsonBody<NewToken>,
) -> Result<(StatusCode, Json<TokenView>), ApiError> {
    check_label("name", &request.name, 64)?;
    let tenant = request.tenant.unwrap_or_else(|| caller.tenant.clone());
    check_label("tenant", &tenant, 64)?;
    if !manages(&caller, &tenant) {
        return Err(ApiError::forbidden("a tenant admin makes tokens of its own tenant only"));
    }
    if request.role == Role::HostAdmin && caller.role != Role::HostAdmin {
        return Err(ApiError::forbidden("only a host admin makes host_admin tokens"));
    }
    let tokens = state.storage.tokens().await?;
    if tokens.iter().any(|(_, t)| t.tenant == tenant && t.name == request.name) {
        return Err(ApiError::conflict(format!(
            "tenant {tenant:?} already has a token named {:?}",
            request.name
        )));
    }
    let record = TokenRecord {
        name: request.name,
        tenant,
        role: request.role,
        created_at: state.clock.now(),
    };
    let secret = new_secret();
    let id = token_hash(&secret);
    state.storage.put_token(&id, record.clone()).await?;
    let answer = TokenView { secret: Some(secret), ..TokenView::new(&id, &record) };
    Ok((StatusCode::CREATED, Json(answer)))
}

/// `GET /v1/tokens`: the tokens the caller manages, without secrets.
#[utoipa::path(get, path = "/v1/tokens", operation_id = "list_tokens", tag = "admin", responses((status = 200, description = "the tokens the caller manages, without secrets", body = TokenList), (status = "4XX", description = "error", body = ErrorBody)))]
pub async fn list(
    State(state): State<Arc<ApiState>>,
    CanManageTokens(caller): CanManageTokens,
) -> Result<Json<TokenList>, ApiError> {
    let tokens = state.storage.tokens().await?;
    let mine = tokens.iter().filter(|(_, r)| manages(&caller, &r.tenant));
    Ok(Json(TokenList { tokens: mine.map(|(id, r)| TokenView::new(id, r)).collect() }))
}

/// `DELETE /v1/tokens/{id}`: revokes a token at once. Another tenant's token
/// answers 404 to a tenant admin. The last host admin token cannot be
/// revoked, so the host never locks its admins out.
#[utoipa::path(delete, path = "/v1/tokens/{id}", operation_id = "revoke_token", tag = "admin", params(("id" = String, Path, description = "token id")), responses((status = 204, description = "revoked"), (status = "4XX", description = "error", body = ErrorBody)))]
pub async fn revoke(
    State(state): State<Arc<ApiState>>,
    CanManageTokens(caller): CanManageTokens,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let tokens = state.storage.tokens().await?;
    let found = tokens.iter().find(|(hash, r)| *hash == id && manages(&caller, &r.tenant));
    let Some((_, record)) = found else {
        return Err(ApiError::not_found(format!("token {id}")));
    };
    let host_admins = tokens.iter().filter(|(_, r)| r.role == Role::HostAdmin).count();
    if record.role == Role::HostAdmin && host_admins == 1 {
        return Err(ApiError::conflict("this is the last host admin token; create another first"));
    }
    state.storage.remove_token(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}
