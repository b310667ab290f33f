//! WATCH through `kube`, and resourceVersions that move with status.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use kube::api::{DeleteParams, ListParams, WatchEvent, WatchParams};
use serde_json::json;

use super::{apply, client, deployment, eventually, fast, fleet, rolled_out};

#[tokio::test]
async fn watch_follows_a_rollout_from_added_to_deleted() {
    let fleet = fleet(fast()).await;
    let api: Api<Deployment> = Api::namespaced(client(&fleet, "eu-1").await, "default");
    let rv = api
        .list(&ListParams::default())
        .await
        .expect("list")
        .metadata
        .resource_version
        .expect("rv");
    let mut events = api
        .watch(&WatchParams::default().timeout(20), &rv)
        .await
        .expect("watch")
        .boxed();

    apply(&api, &deployment("web", "web:v1", 2, json!({})), "meridian")
        .await
        .expect("apply");
    let first = tokio::time::timeout(Duration::from_secs(10), events.try_next())
        .await
        .expect("an event in time")
        .expect("no stream error")
        .expect("stream open");
    assert!(
        matches!(&first, WatchEvent::Added(d) if d.metadata.generation == Some(1)),
        "{first:?}"
    );

    let mut last_rv = 0u64;
    loop {
        let event = tokio::time::timeout(Duration::from_secs(10), events.try_next())
            .await
            .expect("progress in time")
            .expect("no stream error")
            .expect("stream open");
        let WatchEvent::Modified(d) = event else {
            panic!("expected MODIFIED, got {event:?}")
        };
        let rv: u64 = d
            .metadata
            .resource_version
            .as_deref()
            .and_then(|v| v.parse().ok())
            .expect("rv");
        assert!(rv > last_rv, "resourceVersions increase");
        last_rv = rv;
        if rolled_out(&d) {
            break;
        }
    }

    api.delete("web", &DeleteParams::default())
        .await
        .expect("delete");
    let gone = tokio::time::timeout(Duration::from_secs(10), events.try_next())
        .await
        .expect("delete event in time")
        .expect("no stream error")
        .expect("stream open");
    assert!(matches!(gone, WatchEvent::Deleted(_)), "{gone:?}");
    fleet.shutdown().await;
}

#[tokio::test]
async fn status_changes_move_the_resource_version_but_not_the_generation() {
    let fleet = fleet(fast()).await;
    let api: Api<Deployment> = Api::namespaced(client(&fleet, "eu-1").await, "default");
    let created = apply(&api, &deployment("web", "web:v1", 2, json!({})), "meridian")
        .await
        .expect("apply");
    let done = eventually(Duration::from_secs(20), || {
        let api = api.clone();
        async move {
            let d = api.get("web").await.expect("get");
            rolled_out(&d).then_some(d)
        }
    })
    .await;
    assert_eq!(done.metadata.generation, created.metadata.generation);
    assert_ne!(
        done.metadata.resource_version,
        created.metadata.resource_version
    );
    // Settled: reading again changes nothing.
    let again = api.get("web").await.expect("get");
    assert_eq!(
        again.metadata.resource_version,
        done.metadata.resource_version
    );
    fleet.shutdown().await;
}
