//! The four requests Meridian makes against one cluster (get, apply, delete,
//! read progress), each wrapped in the call budget.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

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
    /// Namespaces this client saw exist, shared by its clones.
    pub known_namespaces: Arc<KnownNamespaces>,
}

/// Namespaces seen to exist on one cluster. Every apply needs its namespace;
/// asking the API server each time cost a request per apply, one more
/// round trip on the way to every cluster change.
#[derive(Default)]
pub(crate) struct KnownNamespaces(Mutex<HashSet<String>>);

impl KnownNamespaces {
    fn contains(&self, namespace: &str) -> bool {
        self.lock().contains(namespace)
    }

    fn remember(&self, namespace: &str) {
        self.lock().insert(namespace.to_owned());
    }

    fn forget(&self, namespace: &str) {
        self.lock().remove(namespace);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        // A set of names cannot be left half-changed by a panic.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
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

    /// Server-side apply into the object's namespace, created first when
    /// missing. A namespace this client already saw is not asked about
    /// again; if the apply is then refused, the namespace may have been
    /// deleted since, so it is checked (and created) again and the apply
    /// retried once.
    pub async fn apply_in_namespace(
        &self,
        object: &ObjectRef,
        body: &Value,
        force: bool,
    ) -> Result<(), FleetError> {
        let namespace = object.namespace.as_str();
        let remembered = self.known_namespaces.contains(namespace);
        if !remembered {
            self.ensure_namespace(namespace).await?;
        }
        match self.apply(object, body, force).await {
            Err(FleetError::Rejected { .. }) if remembered => {
                self.known_namespaces.forget(namespace);
                self.ensure_namespace(namespace).await?;
                self.apply(object, body, force).await
            }
            result => result,
        }
    }

    /// Creates the namespace when it is missing (server-side apply of a bare
    /// Namespace, so an existing one keeps everything it has).
    async fn ensure_namespace(&self, namespace: &str) -> Result<(), FleetError> {
        let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(self.client.clone());
        let what = format!("ensure namespace {namespace}");
        let exists = self
            .budget
            .run(&self.name, &what, || api.get_opt(namespace))
            .await?
            .is_some();
        if !exists {
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
        }
        self.known_namespaces.remember(namespace);
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
