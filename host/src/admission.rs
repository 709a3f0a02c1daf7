//! Admitting a job request for a tenant: the plugin as the tenant sees it
//! (its own, else a shared one; a kept older version), the tenant's caps,
//! a callback URL this host may reach, and the rest of its chain. The API,
//! workflows, schedules and the children a plugin spawns all admit through
//! here, so every job meets the same checks.

use crate::egress::EgressPolicy;
use crate::jobs::enqueue::{self, Admission, JobRequest, MAX_CHAIN, Refusal};
use crate::jobs::{Millis, NewJob, TenantRecord};
use crate::runtime::{PluginError, Runtime};
use crate::storage::{Storage, StorageError};

/// Why a request was not admitted.
#[derive(Debug, thiserror::Error)]
pub enum AdmitError {
    /// The plugin is unknown or its name malformed.
    #[error(transparent)]
    Plugin(#[from] PluginError),
    /// The request breaks an enqueue rule.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The version asked for is not kept.
    #[error("{0} not found")]
    NoVersion(String),
    /// Reading the tenant's plugin failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// What admitting needs: the parts of the host it reads.
#[derive(Debug)]
pub struct Admitter<'a> {
    /// Tenant plugins and their versions.
    pub storage: &'a dyn Storage,
    /// Loaded plugins, default limits and caps.
    pub runtime: &'a Runtime,
    /// Where callbacks may go.
    pub egress: &'a EgressPolicy,
    /// The time of the enqueue.
    pub now: Millis,
}

impl Admitter<'_> {
    /// `request` as a [`NewJob`] of `owner` in `tenant`, with its chain.
    pub async fn admit(
        &self,
        tenant: &TenantRecord,
        owner: &str,
        request: JobRequest,
    ) -> Result<NewJob, AdmitError> {
        let mut links = Vec::new();
        let mut request = Some(request);
        while let Some(mut current) = request.take() {
            let chained = !links.is_empty();
            if chained && !current.depends_on.is_empty() {
                return Err(Refusal::Invalid(
                    "a chained job (next) waits for the job before it; it takes no depends_on"
                        .into(),
                )
                .into());
            }
            if links.len() >= MAX_CHAIN {
                let message = format!("a chain may hold at most {MAX_CHAIN} jobs");
                return Err(Refusal::Invalid(message).into());
            }
            request = current.next.take().map(|next| *next);
            links.push(self.admit_one(tenant, owner, current, chained).await?);
        }
        let mut chain = links.pop().expect("one request at least");
        while let Some(mut before) = links.pop() {
            before.next = Some(Box::new(chain));
            chain = before;
        }
        Ok(chain)
    }

    async fn admit_one(
        &self,
        tenant: &TenantRecord,
        owner: &str,
        request: JobRequest,
        chained: bool,
    ) -> Result<NewJob, AdmitError> {
        let plugin = self.runtime.registry().resolve(&tenant.name, &request.job)?;
        if let Some(url) = &request.callback_url {
            self.egress.check_url(url).await.map_err(Refusal::Invalid)?;
        }
        let record = match plugin.tenant {
            Some(_) => self.storage.plugin(&tenant.name, &plugin.name).await?,
            None => None,
        };
        let digest = match &request.version {
            None => plugin.digest.clone(),
            Some(version) if *version == plugin.digest => version.clone(),
            Some(version) => {
                let kept = match plugin.tenant {
                    Some(_) => self.storage.plugin_versions(&tenant.name, &plugin.name).await?,
                    None => Vec::new(),
                };
                if !kept.iter().any(|v| v.record.digest == *version) {
                    let name = &plugin.name;
                    return Err(AdmitError::NoVersion(format!(
                        "version {version} of plugin {name:?}"
                    )));
                }
                version.clone()
            }
        };
        let admission = Admission {
            tenant,
            owner,
            plugin_digest: &digest,
            plugin_retry_on: record.as_ref().and_then(|record| record.retry_on.as_deref()),
            defaults: self.runtime.defaults(),
            caps: self.runtime.caps(),
            now: self.now,
            chained,
        };
        Ok(enqueue::admit(request, &admission)?)
    }
}
