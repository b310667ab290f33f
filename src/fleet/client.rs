//! [`Fleet`]: the operations the engine performs on clusters, each through
//! the cluster's client.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::future::try_join_all;

use super::cluster::{ClusterClient, ObjectRef};
use super::error::FleetError;
use super::manifest::Manifest;
use super::registry::Registry;
use super::snapshot::{Snapshot, SnapshotObject, strip};
use super::status::RolloutProgress;
use super::watch::Watches;

/// How the fleet talks to clusters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FleetOptions {
    /// Server-side apply field manager; owning fields under one stable name is
    /// what lets a later apply drop fields an earlier release set.
    pub field_manager: String,
    /// Bound on one attempt of one request, and the transport timeouts.
    pub call_timeout: Duration,
    /// Attempts per request for transient failures (at least one).
    pub attempts: u32,
}

impl Default for FleetOptions {
    fn default() -> Self {
        FleetOptions {
            field_manager: "meridian".to_owned(),
            call_timeout: Duration::from_secs(5),
            attempts: 3,
        }
    }
}

/// Clients for every cluster Meridian may change, built on first use (see
/// [`super::registry`]). Cloning is cheap (clones share the clients and
/// their connection pools), so tasks can hold their own.
#[derive(Clone)]
pub struct Fleet {
    registry: Arc<Registry>,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet").finish_non_exhaustive()
    }
}

impl Fleet {
    /// A fleet that builds each cluster's client the first time it is used,
    /// from `kubeconfig` (`None`: none is known, and using a cluster fails
    /// saying so).
    pub fn lazy(kubeconfig: Option<PathBuf>, opts: FleetOptions) -> Fleet {
        Fleet {
            registry: Arc::new(Registry::new(kubeconfig, opts, None)),
        }
    }

    /// Like [`Fleet::lazy`], and every cluster is watched from the moment
    /// its client is built, through the context its client uses.
    pub fn watching(kubeconfig: Option<PathBuf>, opts: FleetOptions, watches: Watches) -> Fleet {
        Fleet {
            registry: Arc::new(Registry::new(kubeconfig, opts, Some(watches))),
        }
    }

    /// Builds the cluster's client (and starts its watches) now rather than
    /// at its first use, so that a bad context shows at once (the server
    /// stops its start for a config-file cluster). Nothing is sent to the
    /// cluster yet, so an unreachable one does not fail here.
    pub async fn prepare(&self, cluster: &str) -> Result<(), FleetError> {
        self.registry.client(cluster).await.map(drop)
    }

    /// Tells the fleet which kubeconfig context each cluster uses, as the
    /// catalog says now. A cluster it had no client for gets one when first
    /// used; one whose context changed gets a new one.
    pub fn track<'a>(&self, clusters: impl IntoIterator<Item = (&'a str, &'a str)>) {
        self.registry.track(clusters);
    }

    async fn cluster(&self, name: &str) -> Result<ClusterClient, FleetError> {
        self.registry.client(name).await
    }

    /// What the cluster runs now for each manifest's object, ready to be put
    /// back by [`Fleet::restore`].
    pub async fn snapshot(
        &self,
        cluster: &str,
        manifests: &[Manifest],
    ) -> Result<Snapshot, FleetError> {
        let client = &self.cluster(cluster).await?;
        let objects = resolve_all(client, manifests)?;
        let lives = try_join_all(objects.iter().map(|object| client.get(object))).await?;
        let objects = objects
            .into_iter()
            .zip(lives)
            .map(|(object, live)| SnapshotObject {
                api_version: object.kind.api_version().to_owned(),
                kind: object.kind.name().to_owned(),
                live: live.map(|l| strip(l, object.kind)),
                namespace: object.namespace,
                name: object.name,
            })
            .collect();
        Ok(Snapshot { objects })
    }

    /// Server-side applies the manifests without forcing: if another field
    /// manager owns a field we set, this stops with [`FleetError::Conflict`]
    /// instead of silently overwriting someone's change.
    pub async fn apply(&self, cluster: &str, manifests: &[Manifest]) -> Result<(), FleetError> {
        let client = &self.cluster(cluster).await?;
        // Resolve everything before the first request so an unsupported
        // manifest cannot leave the cluster half-applied.
        let mut work: Vec<(ObjectRef, &Manifest)> = resolve_all(client, manifests)?
            .into_iter()
            .zip(manifests)
            .collect();
        work.sort_by_key(|(object, _)| object.kind.apply_rank());
        // Objects need their namespace; a first release creates it. It is
        // never deleted by a rollback: other things may live there.
        for (object, manifest) in work {
            client
                .apply_in_namespace(&object, &manifest.0, false)
                .await?;
        }
        Ok(())
    }

    /// Puts back what the snapshot recorded: forced apply of the objects that
    /// existed (restoring is the operator's intent, so it wins over other
    /// field managers), deletion of those that did not.
    pub async fn restore(&self, cluster: &str, snapshot: &Snapshot) -> Result<(), FleetError> {
        let client = &self.cluster(cluster).await?;
        let mut present = Vec::new();
        let mut absent = Vec::new();
        for object in &snapshot.objects {
            let reference = resolve_snapshot_object(client, object)?;
            match &object.live {
                Some(live) => present.push((reference, live)),
                None => absent.push(reference),
            }
        }
        present.sort_by_key(|(object, _)| object.kind.apply_rank());
        for (object, live) in present {
            client.apply(&object, live, true).await?;
        }
        // Workloads go first so no pod is left mounting a deleted ConfigMap.
        absent.sort_by_key(|object| std::cmp::Reverse(object.kind.apply_rank()));
        for object in absent {
            client.delete(&object).await?;
        }
        Ok(())
    }

    /// Combined rollout progress of the manifests' workloads. A workload that
    /// does not exist yet is still progressing.
    pub async fn rollout_progress(
        &self,
        cluster: &str,
        manifests: &[Manifest],
    ) -> Result<RolloutProgress, FleetError> {
        let client = &self.cluster(cluster).await?;
        let workloads: Vec<ObjectRef> = resolve_all(client, manifests)?
            .into_iter()
            .filter(|o| o.kind.is_workload())
            .collect();
        let parts = try_join_all(workloads.iter().map(|object| async move {
            Ok::<_, FleetError>(client.progress(object).await?.unwrap_or_else(|| {
                RolloutProgress::Progressing {
                    message: format!("{} does not exist yet", object.describe()),
                }
            }))
        }))
        .await?;
        Ok(RolloutProgress::combine(parts))
    }

    /// Progress of a restore: workloads that existed must be rolled out again,
    /// objects that did not exist must be gone.
    pub async fn snapshot_progress(
        &self,
        cluster: &str,
        snapshot: &Snapshot,
    ) -> Result<RolloutProgress, FleetError> {
        let client = &self.cluster(cluster).await?;
        let checks = snapshot.objects.iter().map(|recorded| async move {
            let object = resolve_snapshot_object(client, recorded)?;
            if recorded.live.is_none() {
                return Ok(match client.get(&object).await? {
                    None => RolloutProgress::Complete,
                    Some(_) => RolloutProgress::Progressing {
                        message: format!("{} is still being deleted", object.describe()),
                    },
                });
            }
            if !object.kind.is_workload() {
                return Ok(RolloutProgress::Complete);
            }
            Ok::<_, FleetError>(client.progress(&object).await?.unwrap_or_else(|| {
                RolloutProgress::Progressing {
                    message: format!(
                        "{} does not exist (restore not applied yet?)",
                        object.describe()
                    ),
                }
            }))
        });
        Ok(RolloutProgress::combine(try_join_all(checks).await?))
    }
}

/// The object a manifest names; objects without a namespace go to the
/// context's default namespace, as kubectl would put them.
fn resolve(client: &ClusterClient, manifest: &Manifest) -> Result<ObjectRef, FleetError> {
    let kind = manifest.supported_kind().ok_or_else(|| {
        client.rejected(
            &format!("manifest {}", manifest.describe()),
            format!(
                "{} {} is not a supported kind",
                manifest.api_version(),
                manifest.kind()
            ),
        )
    })?;
    if manifest.name().is_empty() {
        return Err(client.rejected(
            &format!("manifest {}", manifest.describe()),
            "metadata.name is missing".to_owned(),
        ));
    }
    Ok(ObjectRef {
        kind,
        namespace: manifest
            .namespace()
            .unwrap_or(client.client.default_namespace())
            .to_owned(),
        name: manifest.name().to_owned(),
    })
}

fn resolve_all(
    client: &ClusterClient,
    manifests: &[Manifest],
) -> Result<Vec<ObjectRef>, FleetError> {
    manifests.iter().map(|m| resolve(client, m)).collect()
}

fn resolve_snapshot_object(
    client: &ClusterClient,
    object: &SnapshotObject,
) -> Result<ObjectRef, FleetError> {
    let kind = object.supported_kind().ok_or_else(|| {
        client.rejected(
            &format!("snapshot object {}", object.describe()),
            format!(
                "{} {} is not a supported kind",
                object.api_version, object.kind
            ),
        )
    })?;
    Ok(ObjectRef {
        kind,
        namespace: object.namespace.clone(),
        name: object.name.clone(),
    })
}
