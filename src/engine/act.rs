//! The engine's hands: turns the machine's effects into calls to clusters
//! and the answers into machine inputs.

use std::collections::HashMap;
use std::sync::Arc;

use super::Inner;
use crate::{
    domain::{Application, Cluster, Effect, Input, Progress, Target, TargetState},
    fleet::{Manifest, RenderContext, RolloutProgress, Snapshot, render},
    store::RolloutRecord,
};

/// An Apply or Restore effect made ready for the write-ahead commit.
pub(super) enum Prepared {
    Apply {
        cluster: String,
        manifests: Vec<Manifest>,
        /// What the cluster runs now.
        previous: serde_json::Value,
    },
    Restore {
        cluster: String,
    },
    /// Decided without calling the cluster (it already runs the release,
    /// or the apply cannot even be attempted).
    Settled(Input),
}

impl Prepared {
    /// The record a rollback needs, for the write-ahead commit.
    pub(super) fn previous(&self) -> Option<(String, serde_json::Value)> {
        match self {
            Prepared::Apply {
                cluster, previous, ..
            } => Some((cluster.clone(), previous.clone())),
            Prepared::Restore { .. } | Prepared::Settled(_) => None,
        }
    }
}

/// What a tick needs to talk to clusters about one rollout.
pub(super) struct TickContext<'a> {
    inner: &'a Inner,
    record: &'a RolloutRecord,
    pub(super) application: Arc<Application>,
    pub(super) clusters: Arc<HashMap<String, Cluster>>,
}

impl<'a> TickContext<'a> {
    pub(super) async fn load(inner: &'a Inner, record: &'a RolloutRecord) -> anyhow::Result<Self> {
        let application = inner
            .catalog
            .application(&inner.store, &record.release.application)
            .await?;
        let clusters = inner.catalog.clusters(&inner.store).await?;
        // Clusters registered or changed since start get their client on use.
        inner.fleet.track(
            record
                .machine
                .targets
                .iter()
                .filter_map(|t| clusters.get(&t.cluster))
                .map(|c| (c.name.as_str(), c.context.as_str())),
        );
        Ok(Self {
            inner,
            record,
            application,
            clusters,
        })
    }

    fn manifests(&self, cluster: &str) -> Result<Vec<Manifest>, String> {
        let cluster = self
            .clusters
            .get(cluster)
            .ok_or_else(|| format!("cluster `{cluster}` is no longer registered"))?;
        let release = &self.record.release;
        let context = RenderContext {
            application: self.application.name.clone(),
            namespace: self.application.namespace.clone(),
            release_id: release.id,
            version: release.version.clone(),
            image: release.image.clone(),
            cluster: cluster.name.to_string(),
            region: cluster.region.clone(),
            params: self.application.parameters.for_cluster(cluster),
        };
        render::render(&self.application.templates, &context).map_err(|e| e.to_string())
    }

    async fn previous(&self, cluster: &str) -> anyhow::Result<Option<Snapshot>> {
        let stored = self.inner.store.previous(self.record.id, cluster).await?;
        Ok(match stored {
            Some(value) => Some(serde_json::from_value(value)?),
            None => None,
        })
    }

    /// Reads a target's rollout status: the new release's while it rolls
    /// out and bakes, the restored revision's while a rollback verifies it.
    pub(super) async fn observe(&self, target: &Target) -> Input {
        let cluster = target.cluster.clone();
        let fleet = &self.inner.fleet;
        let result = if target.state == TargetState::Verifying {
            match self.previous(&cluster).await {
                Ok(Some(snapshot)) => fleet.snapshot_progress(&cluster, &snapshot).await,
                // Never changed, so nothing to verify.
                Ok(None) => Ok(RolloutProgress::Complete),
                Err(e) => {
                    return unreachable(
                        cluster,
                        format!("cannot read the recorded revision: {e:#}"),
                    );
                }
            }
        } else {
            match self.manifests(&cluster) {
                Ok(manifests) => fleet.rollout_progress(&cluster, &manifests).await,
                Err(e) => {
                    return Input::Observed {
                        cluster,
                        progress: Progress::Failed(format!("cannot render manifests: {e}")),
                    };
                }
            }
        };
        match result {
            Ok(progress) => Input::Observed {
                cluster,
                progress: to_progress(progress),
            },
            Err(e) => unreachable(cluster, e.to_string()),
        }
    }

    /// Everything about an Apply or Restore that comes before the
    /// write-ahead commit: for an apply, the manifests and what the cluster
    /// runs now (recorded by that commit, so a rollback can put it back).
    pub(super) async fn prepare(&self, effect: &Effect) -> Prepared {
        let cluster = match effect {
            Effect::Apply { cluster } => cluster,
            Effect::Restore { cluster } => {
                return Prepared::Restore {
                    cluster: cluster.clone(),
                };
            }
            Effect::Event(_) => return Prepared::Settled(Input::Tick),
        };
        let failed = |error: String, transient: bool| {
            Prepared::Settled(Input::ApplyFailed {
                cluster: cluster.to_owned(),
                error,
                transient,
            })
        };
        let manifests = match self.manifests(cluster) {
            Ok(m) => m,
            Err(e) => return failed(format!("cannot render manifests: {e}"), false),
        };
        let current = match self.inner.fleet.snapshot(cluster, &manifests).await {
            Ok(s) => s,
            Err(e) => return failed(e.to_string(), e.is_transient()),
        };
        // After a crash between the apply and its record, the cluster
        // already runs this release: do not apply a second time.
        if current.release_id() == Some(self.record.release.id) {
            tracing::info!(rollout = %self.record.id, cluster, "cluster already runs this release; not applying again");
            return Prepared::Settled(Input::Applied {
                cluster: cluster.to_owned(),
            });
        }
        match serde_json::to_value(&current) {
            Ok(previous) => Prepared::Apply {
                cluster: cluster.clone(),
                manifests,
                previous,
            },
            // Without a record of what ran before there is no safe
            // rollback: do not touch the cluster.
            Err(e) => failed(format!("cannot encode the current revision: {e}"), false),
        }
    }

    /// Calls the cluster, once the write-ahead commit recorded the intent.
    pub(super) async fn carry_out(&self, prepared: Prepared) -> Input {
        match prepared {
            Prepared::Settled(input) => input,
            Prepared::Restore { cluster } => self.restore(&cluster).await,
            Prepared::Apply {
                cluster, manifests, ..
            } => match self.inner.fleet.apply(&cluster, &manifests).await {
                Ok(()) => Input::Applied { cluster },
                Err(e) => Input::ApplyFailed {
                    cluster,
                    error: e.to_string(),
                    transient: e.is_transient(),
                },
            },
        }
    }

    async fn restore(&self, cluster: &str) -> Input {
        let failed = |error: String, transient: bool| Input::RestoreFailed {
            cluster: cluster.to_owned(),
            error,
            transient,
        };
        let snapshot = match self.previous(cluster).await {
            Ok(Some(s)) => s,
            // The apply never reached the cluster: it runs what it ran.
            Ok(None) => {
                return Input::Restored {
                    cluster: cluster.to_owned(),
                };
            }
            Err(e) => return failed(format!("cannot read the recorded revision: {e:#}"), true),
        };
        match self.inner.fleet.restore(cluster, &snapshot).await {
            Ok(()) => Input::Restored {
                cluster: cluster.to_owned(),
            },
            Err(e) => failed(e.to_string(), e.is_transient()),
        }
    }
}

fn unreachable(cluster: String, error: String) -> Input {
    Input::Unreachable { cluster, error }
}

fn to_progress(progress: RolloutProgress) -> Progress {
    match progress {
        RolloutProgress::Complete => Progress::Complete,
        RolloutProgress::Progressing { message } => Progress::Progressing(message),
        RolloutProgress::Failed { reason } => Progress::Failed(reason),
    }
}
