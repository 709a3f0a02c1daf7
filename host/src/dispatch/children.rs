//! Children: the jobs a running job enqueues through `spawn`
//! (`jobhost:plugin@0.2.0`). Each is admitted like a client's job, as the
//! parent's tenant and owner, and written linked to its parent within the
//! tenant's quotas (`max_children`, `max_spawn_depth`, `max_queued`); any
//! refusal goes back to the guest as an error it can handle.

use super::Dispatcher;
use crate::admission::Admitter;
use crate::jobs::JobRecord;
use crate::jobs::enqueue::JobRequest;
use crate::runtime::Spawner;
use serde_json::{Map, Value};
use std::sync::Arc;
use uuid::Uuid;

/// The spawner of one run of one job.
pub(super) struct Children {
    dispatcher: Arc<Dispatcher>,
    parent: Uuid,
    attempt: u32,
    tenant: String,
    owner: String,
}

impl Children {
    pub(super) fn new(dispatcher: Arc<Dispatcher>, parent: &JobRecord) -> Self {
        Children {
            dispatcher,
            parent: parent.id,
            attempt: parent.attempt,
            tenant: parent.tenant.clone(),
            owner: parent.owner.clone(),
        }
    }

    /// The enqueue request `spawn` describes: `options` (a JSON object)
    /// with `job` and `args` added.
    fn request(job: String, args: &str, options: &str) -> Result<JobRequest, String> {
        let args: Value =
            serde_json::from_str(args).map_err(|e| format!("args are not JSON: {e}"))?;
        let mut fields: Map<String, Value> = serde_json::from_str(options).map_err(|_| {
            format!("options must be a JSON object (\"{{}}\" for none), not {options:?}")
        })?;
        for given in ["job", "args"] {
            if fields.contains_key(given) {
                return Err(format!(
                    "options must not set {given:?}: spawn takes it as its own argument"
                ));
            }
        }
        fields.insert("job".into(), Value::String(job));
        fields.insert("args".into(), args);
        serde_json::from_value(Value::Object(fields)).map_err(|e| format!("options: {e}"))
    }
}

#[async_trait::async_trait]
impl Spawner for Children {
    async fn spawn(&self, job: String, args: String, options: String) -> Result<String, String> {
        let request = Self::request(job, &args, &options)?;
        let dispatcher = &self.dispatcher;
        let storage = dispatcher.storage.as_ref();
        let tenant = storage.tenant(&self.tenant).await.map_err(|e| e.to_string())?;
        let now = dispatcher.clock.now();
        let admitter = Admitter {
            storage,
            runtime: &dispatcher.runtime,
            egress: &dispatcher.config.egress,
            now,
        };
        let child =
            admitter.admit(&tenant, &self.owner, request).await.map_err(|e| e.to_string())?;
        let child = storage
            .spawn_child(self.parent, self.attempt, child, now)
            .await
            .map_err(|e| e.to_string())?;
        dispatcher.wake();
        Ok(child.id.to_string())
    }
}
