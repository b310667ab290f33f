//! Rollout progress as seen through `kube`: Deployments, StatefulSets and
//! DaemonSets move one replica per `replica_ready_after` and report status
//! the way `kubectl rollout status` reads it.

use std::time::Duration;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use kube::Api;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use serde_json::json;

use super::{apply, client, condition, deployment, eventually, fast, fleet, rolled_out};

const CAP: Duration = Duration::from_secs(20);

#[tokio::test]
async fn ssa_create_reads_back_and_rolls_out_one_replica_at_a_time() {
    // Slower steps than `fast()`, so polling reliably catches partial states
    // even on a loaded machine.
    let opts = crate::sim::SimOptions {
        replica_ready_after: Duration::from_millis(150),
        ..fast()
    };
    let fleet = fleet(opts).await;
    let client = client(&fleet, "eu-1").await;
    let api: Api<Deployment> = Api::namespaced(client.clone(), "default");

    let created = apply(
        &api,
        &deployment("web", "registry/web:v1", 3, json!({})),
        "meridian",
    )
    .await
    .expect("apply creates");
    assert_eq!(created.metadata.generation, Some(1));
    assert!(created.metadata.uid.is_some());
    assert!(created.metadata.creation_timestamp.is_some());

    let read = api.get("web").await.expect("get");
    let containers = read
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .map(|p| p.containers.clone());
    assert_eq!(
        containers
            .and_then(|c| c.first().and_then(|c| c.image.clone()))
            .as_deref(),
        Some("registry/web:v1")
    );
    assert_eq!(
        read.spec.as_ref().and_then(|s| s.progress_deadline_seconds),
        Some(600)
    );

    // Watch the rollout the way a controller would: poll and keep what we saw.
    let ready_seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let done = eventually(CAP, || {
        let api = api.clone();
        let seen = std::sync::Arc::clone(&ready_seen);
        async move {
            let d = api.get("web").await.expect("get");
            let ready = d
                .status
                .as_ref()
                .and_then(|s| s.ready_replicas)
                .unwrap_or(0);
            seen.lock().expect("lock").push(ready);
            rolled_out(&d).then_some(d)
        }
    })
    .await;
    let ready_seen = ready_seen.lock().expect("lock").clone();
    assert!(
        ready_seen.windows(2).all(|w| w[0] <= w[1]),
        "readiness never goes back: {ready_seen:?}"
    );
    assert!(
        ready_seen.iter().any(|r| (1..3).contains(r)),
        "saw partial progress: {ready_seen:?}"
    );
    assert_eq!(
        condition(&done, "Available").map(|c| c.0).as_deref(),
        Some("True")
    );

    // The same object through the dynamic API with a static ApiResource.
    let gvk = GroupVersionKind::gvk("apps", "v1", "Deployment");
    let dynamic: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), "default", &ApiResource::from_gvk(&gvk));
    let obj = dynamic.get("web").await.expect("dynamic get");
    assert_eq!(obj.data["status"]["availableReplicas"], 3);
    let listed = dynamic
        .list(&Default::default())
        .await
        .expect("dynamic list");
    assert_eq!(listed.items.len(), 1);

    // An image change rolls again: generation 2, old replicas go away.
    let updated = apply(
        &api,
        &deployment("web", "registry/web:v2", 3, json!({})),
        "meridian",
    )
    .await
    .expect("update");
    assert_eq!(updated.metadata.generation, Some(2));
    let during = api.get("web").await.expect("get");
    assert!(
        !rolled_out(&during),
        "a fresh spec change is not rolled out yet"
    );
    eventually(CAP, || {
        let api = api.clone();
        async move { rolled_out(&api.get("web").await.expect("get")).then_some(()) }
    })
    .await;

    let log = fleet.cluster("eu-1").expect("cluster").apply_log();
    let images: Vec<Vec<String>> = log.iter().map(|r| r.images.clone()).collect();
    assert_eq!(
        images,
        vec![
            vec!["registry/web:v1".to_owned()],
            vec!["registry/web:v2".to_owned()]
        ]
    );
    assert!(log[0].seq < log[1].seq);
    assert_eq!(log[0].field_manager, "meridian");
    fleet.shutdown().await;
}

#[tokio::test]
async fn crashloop_image_exceeds_the_progress_deadline() {
    let fleet = fleet(fast()).await;
    let api: Api<Deployment> = Api::namespaced(client(&fleet, "us-1").await, "default");
    let d = deployment(
        "api",
        "registry/api:v3-crashloop",
        2,
        json!({"progressDeadlineSeconds": 1}),
    );
    apply(&api, &d, "meridian").await.expect("apply");

    let failed = eventually(CAP, || {
        let api = api.clone();
        async move {
            let d = api.get("api").await.expect("get");
            (condition(&d, "Progressing").and_then(|c| c.1).as_deref()
                == Some("ProgressDeadlineExceeded"))
            .then_some(d)
        }
    })
    .await;
    assert_eq!(
        condition(&failed, "Progressing").map(|c| c.0).as_deref(),
        Some("False")
    );
    let status = failed.status.expect("status");
    assert_eq!(status.available_replicas.unwrap_or(0), 0);
    assert!(
        status.updated_replicas.unwrap_or(0) >= 1,
        "updated pods exist: {status:?}"
    );
    assert_eq!(status.observed_generation, Some(1));
    fleet.shutdown().await;
}

#[tokio::test]
async fn statefulset_and_daemonset_report_revisions_and_node_counts() {
    let fleet = fleet(fast()).await;
    let client = client(&fleet, "eu-1").await;

    let sts_api: Api<StatefulSet> = Api::namespaced(client.clone(), "default");
    let sts = |image: &str| {
        json!({
            "apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "db", "namespace": "default"},
            "spec": {"replicas": 2, "serviceName": "db", "selector": {"matchLabels": {"app": "db"}},
                "template": {"metadata": {"labels": {"app": "db"}},
                    "spec": {"containers": [{"name": "db", "image": image}]}}}
        })
    };
    let pp = PatchParams::apply("meridian");
    sts_api
        .patch("db", &pp, &Patch::Apply(sts("db:v1")))
        .await
        .expect("sts v1");
    let settled = |api: Api<StatefulSet>, generation: i64| async move {
        eventually(CAP, || {
            let api = api.clone();
            async move {
                let s = api.get("db").await.expect("get").status?;
                (s.observed_generation == Some(generation)
                    && s.ready_replicas == Some(2)
                    && s.updated_replicas == Some(2)
                    && s.current_revision == s.update_revision)
                    .then_some(s)
            }
        })
        .await
    };
    let first = settled(sts_api.clone(), 1).await;
    sts_api
        .patch("db", &pp, &Patch::Apply(sts("db:v2")))
        .await
        .expect("sts v2");
    let moving = sts_api
        .get("db")
        .await
        .expect("get")
        .status
        .expect("status");
    assert_eq!(
        moving.current_revision, first.update_revision,
        "current stays until all pods are updated"
    );
    let second = settled(sts_api.clone(), 2).await;
    assert_ne!(second.update_revision, first.update_revision);
    assert_eq!(second.observed_generation, Some(2));

    let ds_api: Api<DaemonSet> = Api::namespaced(client, "default");
    let ds = json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": "agent", "namespace": "default"},
        "spec": {"selector": {"matchLabels": {"app": "agent"}},
            "template": {"metadata": {"labels": {"app": "agent"}},
                "spec": {"containers": [{"name": "agent", "image": "agent:v1"}]}}}
    });
    ds_api
        .patch("agent", &pp, &Patch::Apply(ds))
        .await
        .expect("ds");
    let status = eventually(CAP, || {
        let api = ds_api.clone();
        async move {
            let s = api.get("agent").await.expect("get").status?;
            (s.number_available == Some(3)).then_some(s)
        }
    })
    .await;
    assert_eq!(status.desired_number_scheduled, 3);
    assert_eq!(status.updated_number_scheduled, Some(3));
    assert_eq!(status.number_ready, 3);
    fleet.shutdown().await;
}
