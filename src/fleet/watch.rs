//! Watches the workloads Meridian manages on every cluster, so that a
//! rollout is looked at the moment a workload finishes, fails or stops
//! being rolled out, instead of on the next poll. Every cluster the fleet
//! has a client for is watched, also one registered after start; a watch
//! is still only a hint: whatever it misses (a reconnect) the engine's
//! polling catches.

use std::collections::HashMap;
use std::time::Duration;

use futures::{StreamExt as _, TryStreamExt as _};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, WatchEvent, WatchParams};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tokio_util::sync::{CancellationToken, DropGuard};

use super::render::{MANAGED_BY_LABEL, MANAGED_BY_VALUE};
use super::status::{
    RolloutProgress, daemonset_progress, deployment_progress, statefulset_progress,
};

/// A managed workload changed: `(cluster, namespace)`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct WorkloadChanged {
    pub cluster: String,
    pub namespace: String,
}

/// How long one watch request stays open before it is renewed.
const WATCH_SECONDS: u32 = 240;
/// Wait before re-opening a watch that failed.
const RETRY_AFTER: Duration = Duration::from_secs(2);

/// What a watch last saw of each workload: its generation and whether it
/// was rolled out.
#[derive(Default)]
struct Seen(HashMap<(String, String), (Option<i64>, bool)>);

impl Seen {
    /// A rollout only decides something when a workload finished, failed,
    /// or stopped being rolled out without a new spec (pods lost: the bake
    /// starts again). Waking it for every step of a roll-out (spec seen,
    /// one more pod ready) costs a tick that finds nothing to do; its
    /// polling still shows the steps.
    fn worth_a_wake(&mut self, meta: &ObjectMeta, progress: &RolloutProgress) -> bool {
        let complete = matches!(progress, RolloutProgress::Complete);
        let before = self.0.insert(key_of(meta), (meta.generation, complete));
        match progress {
            RolloutProgress::Complete | RolloutProgress::Failed { .. } => true,
            RolloutProgress::Progressing { .. } => before == Some((meta.generation, true)),
        }
    }

    fn forget(&mut self, meta: &ObjectMeta) {
        self.0.remove(&key_of(meta));
    }
}

fn key_of(meta: &ObjectMeta) -> (String, String) {
    (
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

/// Where the fleet's watches report, and what stops them all.
#[derive(Clone, Debug)]
pub struct Watches {
    pub sink: mpsc::Sender<WorkloadChanged>,
    pub shutdown: CancellationToken,
}

impl Watches {
    /// Starts one watch per workload kind on `cluster`, through a client
    /// made for long-lived requests. They run until shutdown or until the
    /// returned guard is dropped: the cluster's client was replaced (its
    /// context changed) or the fleet is gone.
    pub(crate) fn start(&self, cluster: &str, client: &Client) -> DropGuard {
        let stop = self.shutdown.child_token();
        spawn_kind(cluster, client, &self.sink, &stop, deployment_progress);
        spawn_kind(cluster, client, &self.sink, &stop, statefulset_progress);
        spawn_kind(cluster, client, &self.sink, &stop, daemonset_progress);
        stop.drop_guard()
    }
}

fn spawn_kind<K>(
    cluster: &str,
    client: &Client,
    sink: &mpsc::Sender<WorkloadChanged>,
    shutdown: &CancellationToken,
    progress: fn(&K) -> RolloutProgress,
) where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let api: Api<K> = Api::all(client.clone());
    let cluster = cluster.to_owned();
    let sink = sink.clone();
    let shutdown = shutdown.clone();
    tokio::spawn(async move {
        tokio::select! {
            () = shutdown.cancelled() => {}
            () = watch_forever(api, cluster, sink, progress) => {}
        }
    });
}

async fn watch_forever<K>(
    api: Api<K>,
    cluster: String,
    sink: mpsc::Sender<WorkloadChanged>,
    progress: fn(&K) -> RolloutProgress,
) where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let params = WatchParams::default()
        .labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}"))
        .timeout(WATCH_SECONDS);
    // "0": start from any recent state; the ADDED events it replays only
    // wake rollouts that would be looked at anyway.
    let mut version = "0".to_owned();
    let mut seen = Seen::default();
    loop {
        let stream = match api.watch(&params, &version).await {
            Ok(stream) => stream,
            Err(error) => {
                tracing::debug!(%cluster, %error, "watch failed; retrying");
                tokio::time::sleep(RETRY_AFTER).await;
                continue;
            }
        };
        let mut stream = stream.boxed();
        loop {
            match stream.try_next().await {
                Ok(Some(WatchEvent::Added(object) | WatchEvent::Modified(object))) => {
                    let meta = object.meta();
                    if let Some(v) = &meta.resource_version {
                        version.clone_from(v);
                    }
                    if !seen.worth_a_wake(meta, &progress(&object)) {
                        continue;
                    }
                    let changed = WorkloadChanged {
                        cluster: cluster.clone(),
                        namespace: meta.namespace.clone().unwrap_or_default(),
                    };
                    if sink.send(changed).await.is_err() {
                        return;
                    }
                }
                Ok(Some(WatchEvent::Deleted(object))) => {
                    if let Some(v) = &object.meta().resource_version {
                        version.clone_from(v);
                    }
                    seen.forget(object.meta());
                }
                Ok(Some(WatchEvent::Bookmark(bookmark))) => {
                    version = bookmark.metadata.resource_version;
                }
                Ok(Some(WatchEvent::Error(status))) => {
                    // 410 Gone: our version is too old; start over at once.
                    // Anything else may repeat: do not spin on it.
                    if status.code == 410 {
                        version = "0".to_owned();
                    } else {
                        tracing::debug!(%cluster, code = status.code, message = %status.message, "watch error; re-opening");
                        tokio::time::sleep(RETRY_AFTER).await;
                    }
                    break;
                }
                Ok(None) => break,
                Err(error) => {
                    tracing::debug!(%cluster, %error, "watch ended; re-opening");
                    tokio::time::sleep(RETRY_AFTER).await;
                    break;
                }
            }
        }
    }
}
