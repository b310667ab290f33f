//! The fleet's watches wake the rollouts that look at a changed workload,
//! and only those: the query behind it, against the rollouts a real server
//! left in the database. Also what the engine's claim answers about when to
//! look next.

use chrono::{DateTime, Timelike as _, Utc};
use meridian::store::{ClaimedRollout, Store, TickCommit};
use uuid::Uuid;

use crate::support::{api::target_states, config::app_yaml, world::World};

const BAKING: &str = r#"  - name: baking
    stages:
      - {name: canary, clusters: {names: [use1-canary]}, bake: 10m}
"#;

async fn next_wake(store: &Store, id: Uuid) -> Option<DateTime<Utc>> {
    sqlx::query_scalar("SELECT next_wake_at FROM rollouts WHERE id = $1")
        .bind(id)
        .fetch_one(store.pool())
        .await
        .expect("read next_wake_at")
}

/// Shop's and cart's rollouts, both baking their canary, as a server that
/// was then stopped left them (the world must outlive the store).
async fn two_baking_rollouts_left_by_a_stopped_server(name: &str) -> (World, Store, Vec<Uuid>) {
    let apps = app_yaml("shop", "baking", 1, 20) + &app_yaml("cart", "baking", 1, 20);
    let mut w = World::start(BAKING, &apps, name).await;
    let api = &w.server.api;
    let mut ids = Vec::new();
    for app in ["shop", "cart"] {
        let id = api
            .release(app, "1.0.0", &format!("registry.example/{app}:1.0.0"))
            .await;
        api.wait_until(id, "the canary to bake", |r| {
            target_states(r) == [("use1-canary".to_owned(), "rolled_out".to_owned())]
        })
        .await;
        ids.push(id);
    }
    w.server.stop();
    let store = Store::connect(&w.db.url, 2).await.expect("connect");
    (w, store, ids)
}

#[tokio::test]
async fn a_workload_change_wakes_only_the_rollouts_looking_at_that_cluster_and_namespace() {
    // Nothing else may move the wake times from here on.
    let (_world, store, ids) = two_baking_rollouts_left_by_a_stopped_server("watch").await;
    let (shop, cart) = (ids[0], ids[1]);
    sqlx::query("UPDATE rollouts SET next_wake_at = now() + interval '1 hour'")
        .execute(store.pool())
        .await
        .expect("push wake times out");

    let woken = store
        .wake_watching(&[("use1-canary".to_owned(), "shop".to_owned())])
        .await
        .expect("wake");
    assert_eq!(woken, 1, "only shop watches use1-canary/shop");
    let now = Utc::now();
    assert!(next_wake(&store, shop).await.is_some_and(|at| at <= now));
    assert!(next_wake(&store, cart).await.is_some_and(|at| at > now));

    // The same namespace on a cluster no target is on wakes nobody.
    let woken = store
        .wake_watching(&[("euw1-a".to_owned(), "cart".to_owned())])
        .await
        .expect("wake");
    assert_eq!(woken, 0);
    assert!(next_wake(&store, cart).await.is_some_and(|at| at > now));
}

#[tokio::test]
async fn a_wake_up_during_a_tick_survives_the_ticks_own_idea_of_when_to_look_next() {
    let (_world, store, ids) = two_baking_rollouts_left_by_a_stopped_server("wake-in-tick").await;
    sqlx::query("UPDATE rollouts SET next_wake_at = now()")
        .execute(store.pool())
        .await
        .expect("make both due");
    let claimed = store
        .claim_due("test", 30.0, 10)
        .await
        .expect("claim")
        .rollouts;
    assert_eq!(claimed.len(), 2);

    // While both ticks run, shop's workload changes; cart's does not.
    let woken = store
        .wake_watching(&[("use1-canary".to_owned(), "shop".to_owned())])
        .await
        .expect("wake");
    assert_eq!(woken, 1, "a leased rollout is woken too");

    // Whole seconds: PostgreSQL keeps microseconds, not nanoseconds.
    let later = (Utc::now() + chrono::TimeDelta::hours(1))
        .with_nanosecond(0)
        .expect("a valid instant");
    for ClaimedRollout { lease, record, .. } in &claimed {
        store
            .commit_tick(
                lease,
                TickCommit {
                    expected_version: record.version,
                    before: &record.machine.targets,
                    after: &record.machine,
                    events: &[],
                    processed_actions: &[],
                    next_wake_at: Some(later),
                    release_lease: true,
                    readings: &[],
                    previous: &[],
                },
            )
            .await
            .expect("commit");
    }
    let now = Utc::now();
    assert!(
        next_wake(&store, ids[0]).await.is_some_and(|at| at <= now),
        "shop was woken during its tick, so it is due again at once"
    );
    assert_eq!(
        next_wake(&store, ids[1]).await,
        Some(later),
        "cart keeps the time its tick chose"
    );
}

#[tokio::test]
async fn a_claim_answers_when_the_next_rollout_it_did_not_take_is_due() {
    let (_world, store, ids) = two_baking_rollouts_left_by_a_stopped_server("claim-next").await;
    let in_an_hour = (Utc::now() + chrono::TimeDelta::hours(1))
        .with_nanosecond(0)
        .expect("a valid instant");
    sqlx::query("UPDATE rollouts SET next_wake_at = CASE WHEN id = $1 THEN now() ELSE $2 END")
        .bind(ids[0])
        .bind(in_an_hour)
        .execute(store.pool())
        .await
        .expect("shop due now, cart in an hour");

    let claim = store.claim_due("test", 30.0, 10).await.expect("claim");
    assert_eq!(claim.rollouts.len(), 1);
    assert_eq!(claim.rollouts[0].record.id, ids[0]);
    assert_eq!(
        claim.next_due,
        Some(in_an_hour),
        "the rollout just claimed is not the next one due"
    );

    let claim = store
        .claim_due("test", 30.0, 10)
        .await
        .expect("claim again");
    assert!(claim.rollouts.is_empty(), "shop is leased");
    let due = claim.next_due.expect("a time");
    let lease_ends = Utc::now() + chrono::TimeDelta::seconds(30);
    assert!(
        (due - lease_ends).abs() < chrono::TimeDelta::seconds(5),
        "shop is due when its lease ends, not before: {due} vs {lease_ends}"
    );
}
