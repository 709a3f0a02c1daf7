//! Request bodies and query strings: JSON bodies size-limited, sent as
//! `application/json`, unknown fields refused, and every decoding error
//! turned into a 400 (or 413, 415) that names what is wrong, in the API's
//! error shape. A body not received whole within the body deadline is a 408,
//! however it trickles.

use super::ApiState;
use super::error::ApiError;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;
use std::sync::Arc;

/// A JSON body of type `T`. An empty body decodes as `{}`.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<Arc<ApiState>> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &Arc<ApiState>) -> Result<Self, ApiError> {
        // A browser form can post text/plain or form data with a user's
        // cached credentials; only a JSON body is taken for JSON.
        let declared = request.headers().get(header::CONTENT_TYPE).cloned();
        let is_json = declared.as_ref().and_then(|v| v.to_str().ok()).is_some_and(|v| {
            let essence = v.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
            essence == "application/json" || essence.ends_with("+json")
        });
        let refuse = || {
            ApiError::unsupported_media_type(
                "a request body must be JSON sent with Content-Type: application/json",
            )
        };
        if declared.is_some() && !is_json {
            return Err(refuse());
        }
        let bytes = read(request, state, super::MAX_JSON_BODY).await?;
        if bytes.is_empty() {
            return serde_json::from_slice(b"{}")
                .map(JsonBody)
                .map_err(|e| ApiError::bad_request(format!("a body is required: {e}")));
        }
        if !is_json {
            return Err(refuse());
        }
        // The path names the field that did not parse, even for an error
        // the JSON reader raised (a number out of range, a bad escape).
        let mut reader = serde_json::Deserializer::from_slice(&bytes);
        let value = serde_path_to_error::deserialize(&mut reader).map_err(|e| {
            match e.path().to_string().as_str() {
                "." => ApiError::bad_request(format!("invalid JSON body: {}", e.inner())),
                path => ApiError::bad_request(format!("invalid JSON body: {path}: {}", e.inner())),
            }
        })?;
        reader.end().map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?;
        Ok(JsonBody(value))
    }
}

/// The raw bytes of a body (a component), up to [`super::MAX_COMPONENT`].
#[derive(Debug)]
pub struct RawBody(pub Bytes);

impl FromRequest<Arc<ApiState>> for RawBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &Arc<ApiState>) -> Result<Self, ApiError> {
        read(request, state, super::MAX_COMPONENT).await.map(RawBody)
    }
}

/// Reads a whole body within the body deadline: one absolute deadline, so a
/// client trickling a byte now and then cannot hold the connection.
async fn read(request: Request, state: &Arc<ApiState>, limit: usize) -> Result<Bytes, ApiError> {
    let declared = request.headers().get(header::CONTENT_LENGTH);
    let declared = declared.and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(ApiError::too_large(format!("the body is over the {limit}-byte limit")));
    }
    let deadline = state.config.body_timeout;
    match tokio::time::timeout(deadline, Bytes::from_request(request, state)).await {
        Ok(read) => read.map_err(|rejection| body_error(rejection, limit)),
        Err(_) => Err(ApiError::timeout(format!(
            "the request body did not arrive whole within {} ms",
            deadline.as_millis()
        ))),
    }
}

/// Why a body could not be read: too large (413) or cut off (400).
fn body_error(rejection: BytesRejection, limit: usize) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::too_large(format!("the body is over the {limit}-byte limit"));
    }
    ApiError::bad_request(rejection.body_text())
}

/// Query parameters of type `T`; a bad one is a 400 naming it.
#[derive(Debug)]
pub struct QueryParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Query(query) = Query::<T>::from_request_parts(parts, state)
            .await
            .map_err(|rejection| ApiError::bad_request(rejection.body_text()))?;
        Ok(QueryParams(query))
    }
}
