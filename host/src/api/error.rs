//! The one error shape of the API, `{"error":{"code":"…","message":"…"}}`,
//! and the mapping of every internal error to its status, in one place.

use crate::admission::AdmitError;
use crate::jobs::enqueue::Refusal;
use crate::runtime::PluginError;
use crate::storage::StorageError;
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// An error answer: status, stable code, message for a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code.
    pub code: &'static str,
    /// What went wrong, naming the field or object.
    pub message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into() }
    }

    /// 400: the request is malformed; the message names the field.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 401: no or unknown credentials.
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid bearer token (or basic auth with the token as password) is required",
        )
    }

    /// 403: the caller's role does not allow this.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 404: no such object (for this tenant).
    pub fn not_found(what: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", format!("{what} not found"))
    }

    /// 408: the client was too slow sending its request.
    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(StatusCode::REQUEST_TIMEOUT, "timeout", message)
    }

    /// 409: the object's state does not allow this.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }

    /// 413: the body or a part of it is too large.
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", message)
    }

    /// 415: the body is not of a type the route takes.
    pub fn unsupported_media_type(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", message)
    }

    /// 422: well-formed, but refused (a component that does not fit).
    pub fn unprocessable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "unprocessable", message)
    }

    /// 429: the caller is over a quota or a cap.
    pub fn over_quota(message: impl Into<String>) -> Self {
        Self::new(StatusCode::TOO_MANY_REQUESTS, "over_quota", message)
    }

    /// 500: the host failed; never for a client's mistake.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    /// 503: the host cannot take this now.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }
}

/// The body of every error answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code: bad_request, unauthorized, forbidden,
    /// not_found, conflict, timeout, too_large, unsupported_media_type,
    /// unprocessable, over_quota,
    /// unavailable, internal.
    code: &'static str,
    /// What went wrong, naming the field or object.
    message: String,
}

impl ApiError {
    /// The same error, its message after `prefix` (which part of a request
    /// of many parts it is about).
    pub fn prefixed(self, prefix: &str) -> Self {
        ApiError { message: format!("{prefix}{}", self.message), ..self }
    }
}

impl From<ApiError> for ErrorBody {
    fn from(error: ApiError) -> Self {
        ErrorBody { error: ErrorDetail { code: error.code, message: error.message } }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status;
        (status, Json(ErrorBody::from(self))).into_response()
    }
}

impl From<StorageError> for ApiError {
    fn from(error: StorageError) -> Self {
        match error {
            StorageError::NotFound(what) => ApiError::not_found(what),
            StorageError::Conflict(message) => ApiError::conflict(message),
            StorageError::Invalid(message) => ApiError::bad_request(message),
            StorageError::OverQuota(message) => ApiError::over_quota(message),
            StorageError::Closed => ApiError::unavailable("the host is shutting down"),
            StorageError::Unavailable(why) => ApiError::unavailable(format!(
                "the database could not be read or written ({why}); nothing was changed, try again later"
            )),
            other @ (StorageError::Corrupt(_) | StorageError::Backend(_)) => {
                tracing::error!("storage: {other}");
                ApiError::internal(other.to_string())
            }
        }
    }
}

impl From<AdmitError> for ApiError {
    fn from(error: AdmitError) -> Self {
        match error {
            AdmitError::Plugin(error) => error.into(),
            AdmitError::Refused(refusal) => refusal.into(),
            AdmitError::NoVersion(what) => ApiError::not_found(what),
            AdmitError::Storage(error) => error.into(),
        }
    }
}

impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::Invalid(message) => ApiError::bad_request(message),
            Refusal::TooLarge(message) => ApiError::too_large(message),
        }
    }
}

impl From<PluginError> for ApiError {
    fn from(error: PluginError) -> Self {
        match error {
            PluginError::NotFound(name) => ApiError::not_found(format!("plugin {name:?}")),
            PluginError::InvalidName { .. } => ApiError::bad_request(error.to_string()),
            PluginError::NotWasm
            | PluginError::CoreModule
            | PluginError::Invalid(_)
            | PluginError::OverLimit(_)
            | PluginError::CompileTimeout(_)
            | PluginError::WrongWorld(_) => ApiError::unprocessable(error.to_string()),
        }
    }
}
