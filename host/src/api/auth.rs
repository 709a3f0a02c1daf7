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
    /// Refuses unless the caller's role is one of `roles`; admins (of the
    /// tenant or the host) may do anything within their tenant.
    pub fn require(&self, roles: &[Role]) -> Result<(), ApiError> {
        if matches!(self.role, Role::Admin | Role::HostAdmin) || roles.contains(&self.role) {
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

    /// Refuses unless the caller administers the host.
    pub fn host_admin(&self) -> Result<(), ApiError> {
        if self.role == Role::HostAdmin {
            Ok(())
        } else {
            Err(ApiError::forbidden("only a host admin may do this"))
        }
    }

    /// Whether `job` exists for this caller: its tenant's, and its own
    /// unless the caller sees every job of the tenant.
    pub fn may_see(&self, job: &JobRecord) -> bool {
        self.may_see_owned(&job.tenant, &job.owner)
    }

    /// Whether an object of `tenant` made by `owner` (a job, a workflow, a
    /// schedule) exists for this caller.
    pub fn may_see_owned(&self, tenant: &str, owner: &str) -> bool {
        tenant == self.tenant && (self.sees_all_jobs() || owner == self.name)
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

/// Shortest bootstrap secret taken, and the fewest distinct characters.
const MIN_SECRET_LEN: usize = 24;
const MIN_SECRET_CHARS: usize = 8;

/// Makes sure a host admin exists. Only while none does is one made: from
/// `secret` if given (so revoking that token stays revoked across restarts
/// with the same environment), else a random one, returned to be printed
/// once. A weak `secret` is refused.
pub async fn ensure_admin(
    storage: &dyn Storage,
    secret: Option<&str>,
    now: Millis,
) -> anyhow::Result<Option<String>> {
    if let Some(secret) = secret {
        let distinct = secret.chars().collect::<std::collections::HashSet<_>>().len();
        if secret.len() < MIN_SECRET_LEN || distinct < MIN_SECRET_CHARS {
            anyhow::bail!(
                "the admin token is too weak: use at least {MIN_SECRET_LEN} characters, \
                 {MIN_SECRET_CHARS} of them different (for example `openssl rand -hex 16`)"
            );
        }
    }
    let tokens = storage.tokens().await?;
    if tokens.iter().any(|(_, token)| token.role == Role::HostAdmin) {
        if secret.is_some_and(|s| !tokens.iter().any(|(hash, _)| *hash == token_hash(s))) {
            tracing::warn!("the admin token setting is ignored: a host admin token exists");
        }
        return Ok(None);
    }
    let (secret, made_here) = match secret {
        Some(secret) => (secret.to_string(), false),
        None => (new_secret(), true),
    };
    let record = TokenRecord {
        name: "admin".into(),
        tenant: "default".into(),
        role: Role::HostAdmin,
        created_at: now,
    };
    storage.put_token(&token_hash(&secret), record).await?;
    Ok(made_here.then_some(secret))
}

/// The job `id` if the caller may see it; otherwise 404, as if missing.
pub(super) async fn visible_job(
    state: &ApiState,
    caller: &Caller,
    id: &str,
) -> Result<JobRecord, ApiError> {
    let owner = |job: &JobRecord| (job.tenant.clone(), job.owner.clone());
    visible(caller, "job", id, |id| state.storage.get(id), owner).await
}

/// The object `id` names (`fetch`ed, its tenant and owner from `owner`) if
/// the caller may see it: a malformed id, a missing object and another's
/// all answer the same 404, so ids of other tenants leak nothing.
pub(super) async fn visible<T, F>(
    caller: &Caller,
    what: &str,
    id: &str,
    fetch: impl FnOnce(Uuid) -> F,
    owner: impl Fn(&T) -> (String, String),
) -> Result<T, ApiError>
where
    F: Future<Output = Result<T, crate::storage::StorageError>>,
{
    let missing = || ApiError::not_found(format!("{what} {id}"));
    let id = Uuid::parse_str(id).map_err(|_| missing())?;
    let found = fetch(id).await.map_err(|_| missing())?;
    let (tenant, by) = owner(&found);
    if caller.may_see_owned(&tenant, &by) { Ok(found) } else { Err(missing()) }
}

/// Callers whose role was checked before anything else of the request is
/// read, the body included: a caller without the role gets its 403 before
/// it can hold the connection open with a slow body.
macro_rules! permission {
    ($(#[$doc:meta] $name:ident: $allowed:expr;)*) => {$(
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
                let allowed: fn(&Caller) -> Result<(), ApiError> = $allowed;
                allowed(&caller)?;
                Ok($name(caller))
            }
        }
    )*};
}

permission! {
    /// May enqueue and change jobs: operators and submitters (and admins).
    CanSubmit: |caller| caller.require(&[Role::Operator, Role::Submitter]);
    /// May manage the tenant's plugins, queues and locks.
    CanOperate: |caller| caller.require(&[Role::Operator]);
    /// May read the tenant's workers and health: operators and viewers.
    CanView: |caller| caller.require(&[Role::Operator, Role::Viewer]);
    /// May manage tokens: of its own tenant (admins) or of any (host admins).
    CanManageTokens: |caller| caller.require(&[]);
    /// May administer the host: every tenant's quotas, workers, metrics.
    CanAdministerHost: |caller| caller.host_admin();
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
