//! Server-side apply semantics and error shapes through `kube`.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use serde_json::json;

use super::{apply, client, deployment, fast, fleet};

/// The `Status` of a failed call, or a panic naming what came back instead.
fn status_of<T: std::fmt::Debug>(result: Result<T, kube::Error>) -> kube::core::Status {
    match result {
        Err(kube::Error::Api(status)) => *status,
        other => panic!("expected an API error Status, got {other:?}"),
    }
}

#[tokio::test]
async fn reapplying_the_same_body_changes_nothing() {
    let fleet = fleet(fast()).await;
    let api: Api<Deployment> = Api::namespaced(client(&fleet, "eu-1").await, "default");
    let d = deployment("web", "web:v1", 2, json!({}));
    let first = apply(&api, &d, "meridian").await.expect("create");
    let second = apply(&api, &d, "meridian").await.expect("re-apply");
    assert_eq!(second.metadata.generation, Some(1));
    assert_eq!(
        second.metadata.resource_version,
        first.metadata.resource_version
    );

    let cluster = fleet.cluster("eu-1").expect("cluster");
    assert_eq!(cluster.apply_log().len(), 1);
    assert_eq!(cluster.apply_calls(), 2);
    assert_eq!(
        cluster.images("Deployment", "default", "web"),
        Some(vec!["web:v1".to_owned()])
    );
    fleet.shutdown().await;
}

#[tokio::test]
async fn another_manager_conflicts_unless_it_forces() {
    let fleet = fleet(fast()).await;
    let api: Api<Deployment> = Api::namespaced(client(&fleet, "eu-1").await, "default");
    apply(&api, &deployment("web", "web:v1", 2, json!({})), "kubectl")
        .await
        .expect("kubectl applies");

    let changed = deployment("web", "web:v2", 2, json!({}));
    let status = status_of(apply(&api, &changed, "meridian").await);
    assert_eq!(status.code, 409);
    assert_eq!(status.reason, "Conflict");
    assert!(
        status.message.contains("conflict with \"kubectl\""),
        "{}",
        status.message
    );
    assert!(
        status.message.contains(".spec.template.spec.containers"),
        "{}",
        status.message
    );
    assert_eq!(
        fleet.cluster("eu-1").expect("cluster").apply_log().len(),
        1,
        "a conflict changes nothing"
    );

    // The same values are shared, not contested.
    apply(&api, &deployment("web", "web:v1", 2, json!({})), "meridian")
        .await
        .expect("same values");

    let name = "web";
    let forced = api
        .patch(
            name,
            &PatchParams::apply("meridian").force(),
            &Patch::Apply(&changed),
        )
        .await
        .expect("force wins");
    assert_eq!(forced.metadata.generation, Some(2));
    let managers: Vec<String> = forced
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter_map(|m| m.manager.clone())
        .collect();
    assert!(managers.contains(&"meridian".to_owned()), "{managers:?}");
    // kubectl no longer owns the containers, so it conflicts in turn.
    let back = status_of(apply(&api, &deployment("web", "web:v1", 2, json!({})), "kubectl").await);
    assert!(back.message.contains("\"meridian\""), "{}", back.message);
    fleet.shutdown().await;
}

#[tokio::test]
async fn errors_have_the_kubernetes_status_shape() {
    let fleet = fleet(fast()).await;
    let client = client(&fleet, "eu-1").await;
    let api: Api<Deployment> = Api::namespaced(client.clone(), "default");

    let missing = status_of(api.get("nope").await);
    assert_eq!((missing.code, missing.reason.as_str()), (404, "NotFound"));
    assert_eq!(missing.message, "deployments.apps \"nope\" not found");
    assert_eq!(
        missing.details.as_ref().map(|d| d.kind.as_str()),
        Some("deployments")
    );

    let wrong_name =
        status_of(apply_as(&api, "other", &deployment("web", "web:v1", 1, json!({}))).await);
    assert_eq!(
        (wrong_name.code, wrong_name.reason.as_str()),
        (422, "Invalid")
    );

    apply(&api, &deployment("web", "web:v1", 1, json!({})), "meridian")
        .await
        .expect("create");
    let merge = status_of(
        api.patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 2}})),
        )
        .await,
    );
    assert_eq!(merge.code, 415);

    let elsewhere: Api<Deployment> = Api::namespaced(client.clone(), "shop");
    let mut in_shop = deployment("web", "web:v1", 1, json!({}));
    in_shop.metadata.namespace = Some("shop".into());
    let no_ns = status_of(apply(&elsewhere, &in_shop, "meridian").await);
    assert_eq!(no_ns.message, "namespaces \"shop\" not found");

    // Creating the namespace first, as a real cluster requires, works.
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}});
    namespaces
        .patch("shop", &PatchParams::apply("meridian"), &Patch::Apply(ns))
        .await
        .expect("namespace");
    apply(&elsewhere, &in_shop, "meridian")
        .await
        .expect("deployment in shop");

    // Deleting returns a Status; afterwards the object is gone.
    let deleted = api
        .delete("web", &DeleteParams::default())
        .await
        .expect("delete");
    assert!(deleted.is_right(), "delete answers with a Status");
    assert_eq!(status_of(api.get("web").await).code, 404);
    fleet.shutdown().await;
}

async fn apply_as(
    api: &Api<Deployment>,
    url_name: &str,
    d: &Deployment,
) -> Result<Deployment, kube::Error> {
    api.patch(url_name, &PatchParams::apply("meridian"), &Patch::Apply(d))
        .await
}

#[tokio::test]
async fn yaml_bodies_selectors_and_field_removal() {
    let fleet = fleet(fast()).await;
    let client = client(&fleet, "eu-1").await;

    let yaml = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  labels:\n    app: web\ndata:\n  a: \"1\"\n  b: \"2\"\n";
    let request = axum::http::Request::patch(
        "/api/v1/namespaces/default/configmaps/settings?fieldManager=meridian",
    )
    .header("content-type", "application/apply-patch+yaml")
    .body(yaml.as_bytes().to_vec())
    .expect("request");
    client.request_text(request).await.expect("yaml apply");

    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let cm = cms.get("settings").await.expect("get");
    assert_eq!(cm.data.as_ref().map(|d| d.len()), Some(2));

    // Dropping a field from the applied body removes it (SSA ownership).
    let smaller = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "settings", "labels": {"app": "web"}}, "data": {"a": "1"}});
    let cm = cms
        .patch(
            "settings",
            &PatchParams::apply("meridian"),
            &Patch::Apply(smaller),
        )
        .await
        .expect("apply");
    assert_eq!(
        cm.data.map(|d| d.into_keys().collect::<Vec<_>>()),
        Some(vec!["a".to_owned()])
    );

    let hit = cms
        .list(&ListParams::default().labels("app=web"))
        .await
        .expect("list");
    assert_eq!(hit.items.len(), 1);
    let miss = cms
        .list(&ListParams::default().labels("app=api"))
        .await
        .expect("list");
    assert!(miss.items.is_empty());
    let all: Api<ConfigMap> = Api::all(client);
    assert_eq!(
        all.list(&ListParams::default())
            .await
            .expect("list all")
            .items
            .len(),
        1
    );
    fleet.shutdown().await;
}
