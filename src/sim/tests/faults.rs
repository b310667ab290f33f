//! Fault injection seen from a real client: refused connections, 500s,
//! latency; and the bearer token check.

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use kube::{Api, Client, Config};
use serde_json::json;

use super::{apply, client, deployment, fast, fleet};
use crate::sim::Faults;

#[tokio::test]
async fn refused_connections_fail_at_tcp_level_and_recover_on_the_same_port() {
    let fleet = fleet(fast()).await;
    let cluster = fleet.cluster("eu-1").expect("cluster");
    let api: Api<Deployment> = Api::namespaced(client(&fleet, "eu-1").await, "default");
    apply(&api, &deployment("web", "web:v1", 2, json!({})), "meridian")
        .await
        .expect("apply");
    let url = cluster.base_url();

    cluster.set_faults(Faults {
        refuse_connections: true,
        ..Faults::default()
    });
    // The pooled keep-alive connection was cut too, so this is not an HTTP error.
    match api.get("web").await {
        Err(kube::Error::HyperError(_) | kube::Error::Service(_)) => {}
        other => panic!("expected a connection error, got {other:?}"),
    }
    let refused = tokio::net::TcpStream::connect(cluster.addr())
        .await
        .expect_err("refused");
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    assert!(!cluster.is_accepting());
    // The other cluster is unaffected.
    let other: Api<Deployment> = Api::namespaced(client(&fleet, "us-1").await, "default");
    other
        .list(&Default::default())
        .await
        .expect("us-1 still answers");

    cluster.set_faults(Faults::default());
    assert_eq!(cluster.base_url(), url);
    let back = api.get("web").await.expect("same port, state kept");
    assert_eq!(back.metadata.generation, Some(1));
    fleet.shutdown().await;
}

#[tokio::test]
async fn injected_errors_and_latency() {
    let fleet = fleet(fast()).await;
    let cluster = fleet.cluster("eu-1").expect("cluster");
    let api: Api<Deployment> = Api::namespaced(client(&fleet, "eu-1").await, "default");

    cluster.set_faults(Faults {
        error_rate: 1.0,
        ..Faults::default()
    });
    match apply(&api, &deployment("web", "web:v1", 1, json!({})), "meridian").await {
        Err(kube::Error::Api(status)) => {
            assert_eq!(
                (status.code, status.reason.as_str()),
                (500, "InternalError")
            );
        }
        other => panic!("expected a 500 Status, got {other:?}"),
    }
    assert_eq!(
        cluster.apply_calls(),
        0,
        "an injected 500 never reached the API"
    );

    cluster.set_faults(Faults {
        latency_ms: 150,
        ..Faults::default()
    });
    let started = Instant::now();
    apply(&api, &deployment("web", "web:v1", 1, json!({})), "meridian")
        .await
        .expect("slow but fine");
    assert!(started.elapsed() >= Duration::from_millis(150));
    fleet.shutdown().await;
}

#[tokio::test]
async fn a_wrong_token_is_unauthorized_and_none_is_anonymous() {
    let fleet = fleet(fast()).await;
    let url = fleet.cluster("eu-1").expect("cluster").base_url();
    let mut config = Config::new(url.parse().expect("uri"));
    let anonymous: Api<Deployment> =
        Api::namespaced(Client::try_from(config.clone()).expect("client"), "default");
    anonymous
        .list(&Default::default())
        .await
        .expect("no credentials, like kubectl over http");

    config.auth_info.token = Some("not-the-token".to_owned().into());
    let api: Api<Deployment> =
        Api::namespaced(Client::try_from(config).expect("client"), "default");
    match api.list(&Default::default()).await {
        Err(kube::Error::Api(status)) => {
            assert_eq!((status.code, status.reason.as_str()), (401, "Unauthorized"))
        }
        other => panic!("expected 401, got {other:?}"),
    }
    fleet.shutdown().await;
}
