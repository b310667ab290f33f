//! The four requests Meridian makes against one cluster (get, apply, delete,
//! read progress), each wrapped in the call budget.

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use kube::Client;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use serde_json::Value;

use super::budget::Budget;
use super::error::FleetError;
use super::manifest::{Kind, describe_object};
use super::status::{
    RolloutProgress, daemonset_progress, deployment_progress, statefulset_progress,
};

/// Which object a request is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ObjectRef {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
}

impl ObjectRef {
    pub fn describe(&self) -> String {
        describe_object(self.kind.name(), &self.namespace, &self.name)
    }
}

/// One cluster's client and the settings every request to it uses.
#[derive(Clone)]
pub(crate) struct ClusterClient {
    pub name: String,
    pub client: Client,
    pub budget: Budget,
    pub field_manager: String,
}

impl ClusterClient {
    fn api(&self, object: &ObjectRef) -> Api<DynamicObject> {
        Api::namespaced_with(
            self.client.clone(),
            &object.namespace,
            &object.kind.api_resource(),
        )
    }

    /// The live object, or `None` when it does not exist.
    pub async fn get(&self, object: &ObjectRef) -> Result<Option<Value>, FleetError> {
        let api = self.api(object);
        let what = format!("get {}", object.describe());
        let found = self
            .budget
            .run(&self.name, &what, || api.get_opt(&object.name))
            .await?;
        found
            .map(serde_json::to_value)
            .transpose()
            .map_err(|e| self.rejected(&what, format!("cannot encode the live object: {e}")))
    }

    /// Server-side apply under our field manager. `force` takes fields over
    /// from other managers instead of failing with a conflict.
    pub async fn apply(
        &self,
        object: &ObjectRef,
        body: &Value,
        force: bool,
    ) -> Result<(), FleetError> {
        let api = self.api(object);
        let mut params = PatchParams::apply(&self.field_manager);
        if force {
            params = params.force();
        }
        let what = format!(
            "apply {} as field manager {:?}",
            object.describe(),
            self.field_manager
        );
        let patch = Patch::Apply(body);
        self.budget
            .run(&self.name, &what, || {
                api.patch(&object.name, &params, &patch)
            })
            .await?;
        Ok(())
    }

    /// Creates the namespace when it is missing (server-side apply of a bare
    /// Namespace, so an existing one keeps everything it has).
    pub async fn ensure_namespace(&self, namespace: &str) -> Result<(), FleetError> {
        let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(self.client.clone());
        let what = format!("ensure namespace {namespace}");
        let exists = self
            .budget
            .run(&self.name, &what, || api.get_opt(namespace))
            .await?
            .is_some();
        if exists {
            return Ok(());
        }
        let body = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": namespace},
        });
        let params = PatchParams::apply(&self.field_manager);
        let patch = Patch::Apply(&body);
        self.budget
            .run(&self.name, &what, || api.patch(namespace, &params, &patch))
            .await?;
        Ok(())
    }

    /// Deletes the object and what it owns (ReplicaSets, pods) in the
    /// background; an object that is already gone counts as deleted, which
    /// also makes a retried delete safe.
    pub async fn delete(&self, object: &ObjectRef) -> Result<(), FleetError> {
        let api = self.api(object);
        let what = format!("delete {}", object.describe());
        let params = DeleteParams::background();
        self.budget
            .run(&self.name, &what, || async {
                match api.delete(&object.name, &params).await {
                    Ok(_) => Ok(()),
                    Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
                    Err(err) => Err(err),
                }
            })
            .await
    }

    /// Rollout progress of a workload, or `None` when it does not exist.
    pub async fn progress(
        &self,
        object: &ObjectRef,
    ) -> Result<Option<RolloutProgress>, FleetError> {
        let Some(live) = self.get(object).await? else {
            return Ok(None);
        };
        let what = format!("read status of {}", object.describe());
        let progress = progress_of(object.kind, live).map_err(|e| self.rejected(&what, e))?;
        // kubectl's messages do not always name the object ("Waiting for 2
        // pods to be ready..."); with several workloads that is ambiguous.
        Ok(Some(match progress {
            RolloutProgress::Complete => RolloutProgress::Complete,
            RolloutProgress::Progressing { message } => RolloutProgress::Progressing {
                message: format!("{}: {message}", object.describe()),
            },
            RolloutProgress::Failed { reason } => RolloutProgress::Failed {
                reason: format!("{}: {reason}", object.describe()),
            },
        }))
    }

    pub fn rejected(&self, what: &str, message: String) -> FleetError {
        FleetError::Rejected {
            cluster: self.name.clone(),
            message: format!("{what}: {message}"),
        }
    }
}

/// Reads a live workload through its typed form and asks `status` about it.
fn progress_of(kind: Kind, live: Value) -> Result<RolloutProgress, String> {
    let unreadable = |e: serde_json::Error| format!("unreadable {} object: {e}", kind.name());
    match kind {
        Kind::Deployment => serde_json::from_value::<Deployment>(live)
            .map(|d| deployment_progress(&d))
            .map_err(unreadable),
        Kind::StatefulSet => serde_json::from_value::<StatefulSet>(live)
            .map(|s| statefulset_progress(&s))
            .map_err(unreadable),
        Kind::DaemonSet => serde_json::from_value::<DaemonSet>(live)
            .map(|d| daemonset_progress(&d))
            .map_err(unreadable),
        Kind::ConfigMap | Kind::Service | Kind::Secret => Ok(RolloutProgress::Complete),
    }
}
