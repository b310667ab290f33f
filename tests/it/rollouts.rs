//! A release travels through its plan; failures roll back; pause holds.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::support::{Sim, api::target_states, config::app_yaml, world::World};

const THREE_STAGES: &str = r#"  - name: waves
    stages:
      - {name: canary, clusters: {names: [use1-canary]}, bake: 2s}
      - {name: small, clusters: {names: [euw1-a, aps1-a]}, max_parallel: 1, bake: 2s}
      - {name: large, clusters: {names: [use1-a, euc1-a]}, max_parallel: 2, bake: 1s}
"#;

fn time_of(event: &Value) -> DateTime<Utc> {
    event["created_at"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("event time")
}

fn events_of<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["kind"] == kind).collect()
}

async fn world(plans: &str, apps: &str) -> World {
    World::start(plans, apps, "solo").await
}

#[tokio::test]
async fn good_release_reaches_every_cluster_in_stage_order_each_stage_after_the_previous_bake() {
    let w = world(THREE_STAGES, &app_yaml("shop", "waves", 2, 20)).await;
    let api = &w.server.api;
    let id = api
        .release("shop", "1.0.0", "registry.example/shop:1.0.0")
        .await;
    let done = api.wait_state(id, "succeeded").await;
    assert!(
        target_states(&done).iter().all(|(_, s)| s == "rolled_out"),
        "{done:#}"
    );

    for cluster in ["use1-canary", "euw1-a", "aps1-a", "use1-a", "euc1-a"] {
        let images = w.sim.control.deployment_images(cluster, "shop").await;
        assert_eq!(
            images,
            Some(vec!["registry.example/shop:1.0.0".to_owned()]),
            "{cluster}"
        );
    }
    for untouched in ["usw2-a", "euw1-b", "aps1-b"] {
        assert_eq!(
            w.sim.control.state(untouched).await.apply_calls,
            0,
            "{untouched}"
        );
    }

    // Each stage's first change comes after the previous stage rolled out
    // everywhere and baked for its full bake time.
    let events = api.events(id).await;
    let baking = events_of(&events, "stage_baking");
    assert_eq!(baking.len(), 3, "one bake per stage");
    let stage_of: HashMap<&str, usize> = [
        ("use1-canary", 0),
        ("euw1-a", 1),
        ("aps1-a", 1),
        ("use1-a", 2),
        ("euc1-a", 2),
    ]
    .into_iter()
    .collect();
    let bakes = [2, 2, 1];
    let mut first_change_per_stage: [Option<DateTime<Utc>>; 3] = [None; 3];
    for cluster in stage_of.keys() {
        let state = w.sim.control.state(cluster).await;
        let first = state.apply_log.iter().map(|r| r.at).min().expect("applied");
        let stage = stage_of[cluster];
        let slot = &mut first_change_per_stage[stage];
        *slot = Some(slot.map_or(first, |t: DateTime<Utc>| t.min(first)));
    }
    for k in 0..2 {
        let bake_start = time_of(baking[k]);
        let next_first = first_change_per_stage[k + 1].expect("stage changed");
        assert!(
            next_first >= bake_start + chrono::Duration::seconds(bakes[k]),
            "stage {} changed a cluster at {next_first}, before stage {k}'s bake ended ({bake_start} + {}s)",
            k + 1,
            bakes[k]
        );
    }
    // max_parallel 1 in the small stage: aps1-a rolled out before euw1-a was touched.
    let rolled_out: HashMap<String, DateTime<Utc>> = events_of(&events, "target_rolled_out")
        .into_iter()
        .map(|e| {
            (
                e["cluster"].as_str().unwrap_or_default().to_owned(),
                time_of(e),
            )
        })
        .collect();
    let euw_first = w.sim.control.state("euw1-a").await.apply_log[0].at;
    assert!(
        euw_first >= rolled_out["aps1-a"],
        "small stage ran two clusters at once"
    );
}

#[tokio::test]
async fn crashloop_release_fails_in_first_stage_never_touches_later_clusters_and_restores_the_canary()
 {
    let plan = r#"  - name: two
    stages:
      - {name: canary, clusters: {names: [use1-canary]}, bake: 1s}
      - {name: rest, clusters: {names: [euw1-a, aps1-a]}, max_parallel: 2, bake: 1s}
"#;
    let w = world(plan, &app_yaml("shop", "two", 2, 3)).await;
    let api = &w.server.api;
    let good = api
        .release("shop", "1.0.0", "registry.example/shop:1.0.0")
        .await;
    api.wait_state(good, "succeeded").await;
    let later_before: Vec<usize> = futures_lengths(&w.sim, &["euw1-a", "aps1-a"]).await;

    let bad = api
        .release("shop", "1.1.0", "registry.example/shop:1.1.0-crashloop")
        .await;
    let done = api.wait_state(bad, "rolled_back").await;
    let states: HashMap<String, String> = target_states(&done).into_iter().collect();
    assert_eq!(states["use1-canary"], "restored");
    assert_eq!(states["euw1-a"], "pending");
    assert_eq!(states["aps1-a"], "pending");

    assert_eq!(
        futures_lengths(&w.sim, &["euw1-a", "aps1-a"]).await,
        later_before,
        "a later cluster was changed after the canary failed"
    );
    assert_eq!(
        w.sim.control.deployment_images("use1-canary", "shop").await,
        Some(vec!["registry.example/shop:1.0.0".to_owned()]),
        "the canary is back on the previous image"
    );
    let events = api.events(bad).await;
    let failed = events_of(&events, "target_failed");
    assert!(
        failed.iter().any(|e| e["message"]
            .as_str()
            .unwrap_or_default()
            .contains("exceeded its progress deadline")),
        "the failure names the deadline: {events:#?}"
    );
}

async fn futures_lengths(sim: &Sim, clusters: &[&str]) -> Vec<usize> {
    let mut out = Vec::new();
    for c in clusters {
        out.push(sim.control.state(c).await.apply_log.len());
    }
    out
}

#[tokio::test]
async fn failure_in_a_later_stage_rolls_back_the_earlier_stages_too_newest_first() {
    let w = world(THREE_STAGES, &app_yaml("shop", "waves", 1, 20)).await;
    let api = &w.server.api;
    let good = api
        .release("shop", "1.0.0", "registry.example/shop:1.0.0")
        .await;
    api.wait_state(good, "succeeded").await;

    // The large stage's first cluster answers every API call with a 500.
    w.sim.control.set_faults("use1-a", 1.0, false).await;
    let id = api
        .release("shop", "2.0.0", "registry.example/shop:2.0.0")
        .await;
    let done = api.wait_state(id, "rolled_back").await;
    let states: HashMap<String, String> = target_states(&done).into_iter().collect();
    assert_eq!(states["use1-a"], "restored", "{done:#}");
    for c in ["use1-canary", "euw1-a", "aps1-a", "euc1-a"] {
        assert_eq!(
            w.sim.control.deployment_images(c, "shop").await,
            Some(vec!["registry.example/shop:1.0.0".to_owned()]),
            "{c} is back on 1.0.0"
        );
    }

    // Restores go newest change first.
    let events = api.events(id).await;
    let applied_order: Vec<String> = events_of(&events, "target_applying")
        .iter()
        .map(|e| e["cluster"].as_str().unwrap_or_default().to_owned())
        .collect();
    let restored_order: Vec<String> = events_of(&events, "target_restoring")
        .iter()
        .map(|e| e["cluster"].as_str().unwrap_or_default().to_owned())
        .collect();
    let mut expected = applied_order.clone();
    expected.reverse();
    assert_eq!(restored_order, expected, "events: {events:#?}");
    assert!(applied_order.starts_with(&["use1-canary".to_owned()]));
    // And the clusters saw them in that order.
    let mut restore_times = Vec::new();
    for c in restored_order.iter().filter(|c| *c != "use1-a") {
        let log = w.sim.control.state(c).await.apply_log;
        let last = log
            .iter()
            .filter(|r| r.kind == "Deployment" && r.images == ["registry.example/shop:1.0.0"])
            .map(|r| r.seq)
            .max()
            .expect("restore applied");
        restore_times.push(last);
    }
    assert!(
        restore_times.windows(2).all(|w| w[0] < w[1]),
        "{restore_times:?}"
    );
}

#[tokio::test]
async fn pause_stops_every_cluster_change_until_resume() {
    let plan = r#"  - name: two
    stages:
      - {name: canary, clusters: {names: [use1-canary]}, bake: 2s}
      - {name: rest, clusters: {names: [euw1-a, aps1-a]}, max_parallel: 2, bake: 1s}
"#;
    let w = world(plan, &app_yaml("shop", "two", 1, 20)).await;
    let api = &w.server.api;
    let id = api
        .release("shop", "1.0.0", "registry.example/shop:1.0.0")
        .await;
    api.wait_until(id, "the canary to bake", |r| {
        r["bake_started_at"].is_string()
    })
    .await;
    let (status, body) = api.act(id, "pause").await;
    assert_eq!(status, 202, "{body}");
    api.wait_state(id, "paused").await;
    let calls_at_pause = total_calls(&w.sim).await;

    // Well past the canary's bake: a running rollout would have moved on.
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    let still = api.rollout(id).await;
    assert_eq!(still["state"], "paused");
    assert_eq!(
        total_calls(&w.sim).await,
        calls_at_pause,
        "a paused rollout changed a cluster"
    );
    let (status, _) = api.act(id, "approve").await;
    assert_eq!(status, 409, "approve makes no sense while paused");

    let (status, body) = api.act(id, "resume").await;
    assert_eq!(status, 202, "{body}");
    api.wait_state(id, "succeeded").await;
    assert!(total_calls(&w.sim).await > calls_at_pause);
    let events = api.events(id).await;
    assert_eq!(events_of(&events, "paused").len(), 1);
    assert_eq!(events_of(&events, "resumed").len(), 1);
}

async fn total_calls(sim: &Sim) -> u64 {
    let mut total = 0;
    for (name, ..) in meridian::demo::DEMO_CLUSTERS {
        total += sim.control.state(name).await.apply_calls;
    }
    total
}
