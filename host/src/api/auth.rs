//! Who is calling: a bearer token (or HTTP basic with the token as the
//! password, for scripts), looked up by the SHA-256 of its secret, so the
//! database never holds a usable secret. The lookup is by hash, which also
//! makes the comparison independent of how much of a guess was right.

use super::ApiState;
use super::error::ApiError;
use crate::jobs::{JobRecord, Millis, Role, TokenRecord};
use crate::storage::Storage;
use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use base64::Engine as _;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use uuid::Uuid;

/// The authenticated caller of a request.
#[derive(Debug, Clone, PartialEq)]
pub struct Caller {
    /// Token name.
    pub name: String,
    /// The tenant every object of the request belongs to.
    pub tenant: String,
    /// What it may do.
    pub role: Role,
}

impl Caller {
    /// Refuses unless the caller's role is one of `roles` (admin always is).
    pub fn require(&self, roles: &[Role]) -> Result<(), ApiError> {
        if self.role == Role::Admin || roles.contains(&self.role) {
            Ok(())
        } else {
            Err(ApiError::forbidden(
                format!("the {:?} role may not do this", self.role).to_lowercase(),
            ))
        }
    }

    /// May change jobs it did not submit (everyone but submitters).
    pub fn sees_all_jobs(&self) -> bool {
        self.role != Role::Submitter
    }

    /// Whether `job` exists for this caller: its tenant's, and its own
    /// unless the caller sees every job of the tenant.
    pub fn may_see(&self, job: &JobRecord) -> bool {
        job.tenant == self.tenant && (self.sees_all_jobs() || job.owner == self.name)
    }
}

/// The stored form of a secret.
pub fn token_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// A new random secret: 244 bits from the OS generator (two UUID v4s).
pub fn new_secret() -> String {
    format!("jh_{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple())
}

/// Makes sure an admin token exists: `secret` if given (it is stored, hashed,
/// if not there yet), else a random one on first start. Returns the secret
/// when one was created here, for the caller to print once.
pub async fn ensure_admin(
    storage: &dyn Storage,
    secret: Option<&str>,
    now: Millis,
) -> anyhow::Result<Option<String>> {
    let admin = |secret: &str| {
        (
            token_hash(secret),
            TokenRecord {
                name: "admin".into(),
                tenant: "default".into(),
                role: Role::Admin,
                created_at: now,
            },
        )
    };
    match secret {
        Some(secret) => {
            if storage.token(&token_hash(secret)).await?.is_none() {
                let (hash, record) = admin(secret);
                storage.put_token(&hash, record).await?;
            }
            Ok(None)
        }
        None if storage.tokens().await?.is_empty() => {
            let secret = new_secret();
            let (hash, record) = admin(&secret);
            storage.put_token(&hash, record).await?;
            Ok(Some(secret))
        }
        None => Ok(None),
    }
}

/// The job `id` if the caller may see it; otherwise 404, as if missing.
pub(super) async fn visible_job(
    state: &ApiState,
    caller: &Caller,
    id: &str,
) -> Result<JobRecord, ApiError> {
    let missing = || ApiError::not_found(format!("job {id}"));
    let id = Uuid::parse_str(id).map_err(|_| missing())?;
    let job = state.storage.get(id).await.map_err(|_| missing())?;
    if caller.may_see(&job) { Ok(job) } else { Err(missing()) }
}

/// Callers whose role was checked before anything else of the request is
/// read, the body included: a caller without the role gets its 403 before
/// it can hold the connection open with a slow body.
macro_rules! permission {
    ($(#[$doc:meta] $name:ident: $($role:ident),*;)*) => {$(
        #[$doc]
        #[derive(Debug, Clone, PartialEq)]
        pub struct $name(pub Caller);

        impl FromRequestParts<Arc<ApiState>> for $name {
            type Rejection = ApiError;

            async fn from_request_parts(
                parts: &mut Parts,
                state: &Arc<ApiState>,
            ) -> Result<Self, ApiError> {
                let caller = Caller::from_request_parts(parts, state).await?;
                caller.require(&[$(Role::$role),*])?;
                Ok($name(caller))
            }
        }
    )*};
}

permission! {
    /// May enqueue and change jobs: operators and submitters (and admins).
    CanSubmit: Operator, Submitter;
    /// May manage the tenant's plugins, queues and locks.
    CanOperate: Operator;
    /// May read the tenant's workers and health: operators and viewers.
    CanView: Operator, Viewer;
    /// May administer the host: tokens, tenants, workers, metrics.
    CanAdminister: ;
}

impl FromRequestParts<Arc<ApiState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<ApiState>,
    ) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(ApiError::unauthorized)?;
        let secret = if let Some(token) = header.strip_prefix("Bearer ") {
            token.trim().to_string()
        } else if let Some(encoded) = header.strip_prefix("Basic ") {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .ok_or_else(ApiError::unauthorized)?;
            let (_, password) = decoded.split_once(':').ok_or_else(ApiError::unauthorized)?;
            password.to_string()
        } else {
            return Err(ApiError::unauthorized());
        };
        let record =
            state.storage.token(&token_hash(&secret)).await?.ok_or_else(ApiError::unauthorized)?;
        Ok(Caller { name: record.name, tenant: record.tenant, role: record.role })
    }
}
