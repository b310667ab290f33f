//! The fleet's watches wake the rollouts that look at a changed workload,
//! and only those: the query behind it, against the rollouts a real server
//! left in the database. Also what the engine's claim answers about when to
//! look next.

use chrono::{DateTime, Timelike as _, Utc};
use meridian::store::{ClaimedRollout, Store, TickCommit};
use uuid::Uuid;

use crate::support::{
    api::target_states,
    config::app_yaml,
    db::{rows_read, single_connection_store},
    world::World,
};

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

    let mut engines = sqlx::postgres::PgListener::connect_with(store.pool())
        .await
        .expect("listen");
    engines
        .listen(meridian::store::WAKE_CHANNEL)
        .await
        .expect("listen to wake-ups");
    let woken = store
        .wake_watching(&[("use1-canary".to_owned(), "shop".to_owned())])
        .await
        .expect("wake");
    assert_eq!(woken, 1, "only shop watches use1-canary/shop");
    let told = tokio::time::timeout(std::time::Duration::from_secs(10), engines.recv())
        .await
        .expect("the engines are told within 10 s")
        .expect("a notification");
    assert_eq!(told.payload(), "watch");
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

/// The claim runs after every tick, so the time it answers must come from
/// the index, not from reading every rollout that waits for its time.
#[tokio::test]
async fn a_claim_finds_the_next_due_time_without_reading_every_waiting_rollout() {
    let (_db, store) = single_connection_store().await;
    let whole_second = |at: DateTime<Utc>| at.with_nanosecond(0).expect("a valid instant");
    let first_waiting = whole_second(Utc::now() + chrono::TimeDelta::minutes(1));
    let lease_ends = whole_second(Utc::now() + chrono::TimeDelta::seconds(30));
    sqlx::query(
        "WITH plan AS (INSERT INTO plans (name, version, spec, plan) VALUES ('p', 1, '{}', '{}')),
              apps AS (INSERT INTO applications (name, namespace, plan_name, templates)
                       SELECT 'app' || n, 'app' || n, 'p', '[]' FROM generate_series(1, 1002) n
                       RETURNING name),
              releases AS (INSERT INTO releases (id, application, version, image, created_by)
                           SELECT gen_random_uuid(), name, '1.0', 'img', 'test' FROM apps
                           RETURNING id, application)
         -- 1,000 rollouts waiting for their time, a minute apart from
         -- $1 on; 2 more due long ago but driven by another engine until $2.
         INSERT INTO rollouts (id, release_id, application, plan_name, plan_version, state,
                               machine, created_by, next_wake_at, lease_owner, lease_expires_at)
         SELECT gen_random_uuid(), r.id, r.application, 'p', 1, 'baking', '{}', 'test',
                CASE WHEN n <= 1000 THEN $1 + make_interval(mins => n - 1)
                     ELSE now() - interval '1 hour' END,
                CASE WHEN n > 1000 THEN 'other engine' END,
                CASE WHEN n > 1000 THEN $2 END
           FROM releases r, LATERAL (SELECT substr(r.application, 4)::int AS n) number",
    )
    .bind(first_waiting)
    .bind(lease_ends)
    .execute(store.pool())
    .await
    .expect("write waiting rollouts");
    sqlx::query("ANALYZE rollouts")
        .execute(store.pool())
        .await
        .expect("analyze");

    let before = rows_read(&store, &["rollouts"]).await;
    let claim = store.claim_due("test", 30.0, 10).await.expect("claim");
    let read = rows_read(&store, &["rollouts"]).await - before;
    assert!(claim.rollouts.is_empty(), "none is due and free");
    assert_eq!(
        claim.next_due,
        Some(lease_ends),
        "the leased rollouts are due when their lease ends, before the first waiting one"
    );
    assert!(
        read < 100,
        "the claim read {read} rows of 1,002 rollouts with a wake time"
    );

    sqlx::query("UPDATE rollouts SET lease_expires_at = now() + interval '1 hour' WHERE lease_owner IS NOT NULL")
        .execute(store.pool())
        .await
        .expect("lengthen the leases");
    let claim = store.claim_due("test", 30.0, 10).await.expect("claim");
    assert_eq!(
        claim.next_due,
        Some(first_waiting),
        "with the leases longer, the first waiting rollout is next"
    );
}

/// Every batch of watch events runs the wake-up; it must read the
/// applications of the changed namespaces and their active rollouts, not
/// every application or every rollout with a wake time, even when the
/// statistics were taken before those rollouts began.
#[tokio::test]
async fn a_wake_up_reads_only_the_rollouts_of_the_changed_namespaces() {
    let (_db, store) = single_connection_store().await;
    sqlx::raw_sql(
        "INSERT INTO plans (name, version, spec, plan) VALUES ('p', 1, '{}', '{}');
         -- Templates of a realistic size: a Deployment and a Service.
         INSERT INTO applications (name, namespace, plan_name, templates)
              SELECT 'app' || n, 'ns' || n, 'p', jsonb_build_array(repeat('x', 1500))
                FROM generate_series(1, 1000) n;
         INSERT INTO releases (id, application, version, image, created_by)
              SELECT gen_random_uuid(), name, v, 'img', 'test'
                FROM applications, unnest(ARRAY['1', '2']) v;
         -- Every application's first release finished long ago ...
         INSERT INTO rollouts (id, release_id, application, plan_name, plan_version, state,
                               machine, created_by, finished_at)
              SELECT gen_random_uuid(), id, application, 'p', 1, 'succeeded', '{}', 'test', now()
                FROM releases WHERE version = '1';
         ANALYZE;
         -- ... and its second bakes on the canary, begun after the statistics.
         INSERT INTO rollouts (id, release_id, application, plan_name, plan_version, state,
                               machine, created_by, next_wake_at)
              SELECT gen_random_uuid(), id, application, 'p', 1, 'baking', '{}', 'test',
                     now() + interval '10 minutes'
                FROM releases WHERE version = '2';
         INSERT INTO targets (rollout_id, cluster, region, stage, position, state)
              SELECT id, 'use1-canary', 'us', 0, 0, 'rolled_out' FROM rollouts WHERE state = 'baking';",
    )
    .execute(store.pool())
    .await
    .expect("write rollouts");

    let tables = ["applications", "rollouts"];
    let before = rows_read(&store, &tables).await;
    let woken = store
        .wake_watching(&[("use1-canary".to_owned(), "ns7".to_owned())])
        .await
        .expect("wake");
    let read = rows_read(&store, &tables).await - before;
    assert_eq!(woken, 1, "app7's rollout looks at that namespace");
    assert!(
        read < 100,
        "a change in one namespace read {read} rows of 1,000 applications and 2,000 rollouts"
    );
}
