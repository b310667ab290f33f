//! App metrics: monotonic counters per running version, and the `faulty`
//! convention and error-rate overrides.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use serde_json::json;

use super::{apply, client, deployment, eventually, fast, fleet, raw_get, rolled_out};

/// `(metric, version) → value` of the `app` series in a scrape.
fn parse(text: &str, app: &str) -> BTreeMap<(String, String), f64> {
    let mut out = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Some((metric, labels)) = series.split_once('{') else {
            continue;
        };
        if !labels.contains(&format!("app=\"{app}\"")) {
            continue;
        }
        let version = labels
            .split(',')
            .find_map(|l| l.strip_prefix("version=\""))
            .map(|v| v.trim_end_matches(['"', '}']).to_owned())
            .unwrap_or_default();
        out.insert(
            (metric.to_owned(), version),
            value.parse().unwrap_or(f64::NAN),
        );
    }
    out
}

#[tokio::test]
async fn counters_grow_monotonically_and_faulty_serves_a_quarter_errors() {
    let fleet = fleet(fast()).await;
    let client = client(&fleet, "eu-1").await;
    let api: Api<Deployment> = Api::namespaced(client.clone(), "default");
    apply(&api, &deployment("web", "web:v1", 3, json!({})), "meridian")
        .await
        .expect("web");
    apply(
        &api,
        &deployment("api", "api:v2-faulty", 3, json!({})),
        "meridian",
    )
    .await
    .expect("api");
    for name in ["web", "api"] {
        eventually(Duration::from_secs(20), || {
            let api = api.clone();
            async move { rolled_out(&api.get(name).await.expect("get")).then_some(()) }
        })
        .await;
    }

    // 3 ready pods serve 30 requests/s; wait for a solid sample.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let first = raw_get(&client, "/metrics").await;
    assert!(first.contains("# TYPE app_http_requests_total counter"));
    assert!(first.contains("cluster=\"eu-1\",region=\"europe\""));
    let web1 = parse(&first, "web");
    let api1 = parse(&first, "api");
    let requests = api1[&("app_http_requests_total".to_owned(), "v2-faulty".to_owned())];
    let errors = api1[&("app_http_errors_total".to_owned(), "v2-faulty".to_owned())];
    assert!(requests >= 40.0, "{requests}");
    let ratio = errors / requests;
    assert!((0.22..=0.26).contains(&ratio), "faulty error ratio {ratio}");
    assert_eq!(
        web1[&("app_http_errors_total".to_owned(), "v1".to_owned())],
        0.0
    );

    // An override applies from now on; counters only ever go up.
    fleet
        .cluster("eu-1")
        .expect("cluster")
        .set_error_rate("web:v1", 0.5);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let web2 = parse(&raw_get(&client, "/metrics").await, "web");
    for (key, before) in &web1 {
        assert!(
            web2[key] >= *before,
            "{key:?} went from {before} to {}",
            web2[key]
        );
    }
    let req_key = ("app_http_requests_total".to_owned(), "v1".to_owned());
    let err_key = ("app_http_errors_total".to_owned(), "v1".to_owned());
    assert!(web2[&req_key] > web1[&req_key]);
    assert!(web2[&err_key] > 0.0);
    fleet.shutdown().await;
}
