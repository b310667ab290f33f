//! End-to-end tests of the sim through the real `kube` client over HTTP,
//! built from the fleet's own kubeconfig, exactly as Meridian connects.

mod apply;
mod control;
mod faults;
mod metrics;
mod rollout;
mod watch;

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use serde_json::{Value, json};

use super::{SimClusterSpec, SimFleet, SimOptions};

/// Fast timings so rollouts finish in well under a second.
pub fn fast() -> SimOptions {
    SimOptions {
        replica_ready_after: Duration::from_millis(60),
        observe_delay: Duration::from_millis(20),
        daemonset_nodes: 3,
    }
}

pub async fn fleet(opts: SimOptions) -> SimFleet {
    SimFleet::start(
        vec![
            SimClusterSpec::new("eu-1", "europe"),
            SimClusterSpec::new("us-1", "america"),
        ],
        opts,
    )
    .await
    .expect("fleet starts")
}

/// A client for one context of the generated kubeconfig.
pub async fn client(fleet: &SimFleet, context: &str) -> Client {
    let kubeconfig = Kubeconfig::from_yaml(&fleet.kubeconfig_yaml()).expect("kubeconfig parses");
    let options = KubeConfigOptions {
        context: Some(context.to_owned()),
        ..KubeConfigOptions::default()
    };
    let config = Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .expect("config");
    Client::try_from(config).expect("client")
}

pub fn deployment(name: &str, image: &str, replicas: i32, extra_spec: Value) -> Deployment {
    let mut spec = json!({
        "replicas": replicas,
        "selector": {"matchLabels": {"app": name}},
        "template": {
            "metadata": {"labels": {"app": name}},
            "spec": {"containers": [{"name": "app", "image": image}]}
        }
    });
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra_spec.as_object()) {
        spec.extend(extra.clone());
    }
    serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": name}},
        "spec": spec,
    }))
    .expect("deployment")
}

pub async fn apply(
    api: &Api<Deployment>,
    d: &Deployment,
    manager: &str,
) -> Result<Deployment, kube::Error> {
    let name = d.metadata.name.clone().unwrap_or_default();
    api.patch(&name, &PatchParams::apply(manager), &Patch::Apply(d))
        .await
}

/// Polls `probe` every 20ms until it yields `Some`, for at most `cap`.
pub async fn eventually<T, F, Fut>(cap: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + cap;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not reached within {cap:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The condition of `type` in a Deployment's status.
pub fn condition(d: &Deployment, kind: &str) -> Option<(String, Option<String>)> {
    d.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == kind)
        .map(|c| (c.status.clone(), c.reason.clone()))
}

/// `kubectl rollout status` semantics for a Deployment.
pub fn rolled_out(d: &Deployment) -> bool {
    let (Some(status), Some(spec)) = (&d.status, &d.spec) else {
        return false;
    };
    let want = spec.replicas.unwrap_or(1);
    status.observed_generation >= d.metadata.generation
        && status.updated_replicas.unwrap_or(0) == want
        && status.replicas.unwrap_or(0) == want
        && status.available_replicas.unwrap_or(0) == want
        && condition(d, "Progressing")
            .is_some_and(|(_, r)| r.as_deref() == Some("NewReplicaSetAvailable"))
}

/// Raw GET through the kube client (auth included), returning the body.
pub async fn raw_get(client: &Client, path: &str) -> String {
    let request = axum::http::Request::get(path)
        .body(Vec::new())
        .expect("request");
    client.request_text(request).await.expect("raw get")
}
