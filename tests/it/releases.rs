//! Creating releases is safe to retry, and one rollout per application is
//! active at a time.

use serde_json::json;

use crate::support::{config::app_yaml, world::World};

const PLAN: &str = r#"  - name: one
    stages:
      - {name: canary, clusters: {names: [use1-canary]}, bake: 1s}
"#;

async fn post_with_key(
    base: &str,
    key: &str,
    body: serde_json::Value,
) -> (u16, serde_json::Value, bool) {
    post_with_key_as(crate::support::api::TEST_TOKEN, base, key, body).await
}

async fn post_with_key_as(
    token: &str,
    base: &str,
    key: &str,
    body: serde_json::Value,
) -> (u16, serde_json::Value, bool) {
    let response = reqwest::Client::new()
        .post(format!("{base}/api/v1/releases"))
        .bearer_auth(token)
        .header("Idempotency-Key", key)
        .json(&body)
        .send()
        .await
        .expect("API reachable");
    let status = response.status().as_u16();
    let replayed = response.headers().contains_key("idempotent-replayed");
    (status, response.json().await.unwrap_or_default(), replayed)
}

#[tokio::test]
async fn the_same_release_posted_three_times_with_one_idempotency_key_creates_one_release_and_one_rollout()
 {
    let world = World::start(PLAN, &app_yaml("shop", "one", 1, 20), "idem").await;
    let server = &world.server;
    let base = server.api.base.clone();
    let body =
        json!({"application": "shop", "version": "1.0.0", "image": "registry.example/shop:1.0.0"});

    let mut ids = Vec::new();
    for attempt in 0..3 {
        let (status, answer, replayed) = post_with_key(&base, "ci-build-42", body.clone()).await;
        assert_eq!(status, 201, "{answer}");
        assert_eq!(replayed, attempt > 0, "attempt {attempt}");
        ids.push(answer["id"].as_str().expect("id").to_owned());
    }
    assert!(ids.windows(2).all(|w| w[0] == w[1]), "{ids:?}");
    let (_, list) = server.api.get("/api/v1/rollouts?application=shop").await;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1), "{list}");

    let other =
        json!({"application": "shop", "version": "1.0.1", "image": "registry.example/shop:1.0.1"});
    let (status, problem, _) = post_with_key(&base, "ci-build-42", other).await;
    assert_eq!(status, 422, "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("different body")
    );
    let (_, list) = server.api.get("/api/v1/rollouts?application=shop").await;
    assert_eq!(
        list["items"].as_array().map(Vec::len),
        Some(1),
        "nothing more was created"
    );
}

#[tokio::test]
async fn two_pipelines_that_pick_the_same_idempotency_key_each_get_their_own_release() {
    let world = World::start(PLAN, &app_yaml("shop", "one", 1, 20), "idem-owners").await;
    let api = &world.server.api;
    let base = api.base.clone();
    let mut tokens = Vec::new();
    for name in ["pipeline-a", "pipeline-b"] {
        let (status, created) = api
            .post("/api/v1/tokens", json!({"name": name, "role": "deployer"}))
            .await;
        assert_eq!(status, 201, "{created}");
        tokens.push(created["token"].as_str().expect("secret").to_owned());
    }
    let body = |v: &str| json!({"application": "shop", "version": v, "image": format!("registry.example/shop:{v}"), "on_active": "queue"});

    let (status_a, a, replayed_a) =
        post_with_key_as(&tokens[0], &base, "build-7", body("1.0.0")).await;
    let (status_b, b, replayed_b) =
        post_with_key_as(&tokens[1], &base, "build-7", body("2.0.0")).await;
    assert_eq!((status_a, status_b), (201, 201), "{a} {b}");
    assert!(!replayed_a && !replayed_b);
    assert_ne!(a["id"], b["id"]);
    assert_eq!(b["release"]["version"], "2.0.0", "{b}");

    // Each pipeline's retry answers its own first request.
    let (status, again, replayed) =
        post_with_key_as(&tokens[1], &base, "build-7", body("2.0.0")).await;
    assert_eq!((status, replayed), (201, true), "{again}");
    assert_eq!(again["id"], b["id"]);
    let (status, again, replayed) =
        post_with_key_as(&tokens[0], &base, "build-7", body("1.0.0")).await;
    assert_eq!((status, replayed), (201, true), "{again}");
    assert_eq!(again["id"], a["id"]);
}

/// A key is remembered for a day. After that the same key may start
/// another release (a nightly job's fixed key, say), and the clean-up
/// removes it from the database.
#[tokio::test]
async fn an_idempotency_key_is_forgotten_a_day_after_its_first_use() {
    let world = World::start(PLAN, &app_yaml("shop", "one", 1, 20), "idem-expiry").await;
    let base = world.server.api.base.clone();
    let body = |v: &str| json!({"application": "shop", "version": v, "image": format!("registry.example/shop:{v}"), "on_active": "queue"});
    let mut db = world.db.connect().await;
    let age_keys_by_a_day =
        "UPDATE idempotency_keys SET created_at = created_at - interval '1 day 1 minute'";

    let (status, first, _) = post_with_key(&base, "nightly", body("1.0.0")).await;
    assert_eq!(status, 201, "{first}");
    sqlx::query(age_keys_by_a_day)
        .execute(&mut db)
        .await
        .expect("age the key");
    let (status, second, replayed) = post_with_key(&base, "nightly", body("1.0.1")).await;
    assert_eq!((status, replayed), (201, false), "{second}");
    assert_ne!(second["id"], first["id"]);
    assert_eq!(second["release"]["version"], "1.0.1", "{second}");
    // From then on the key answers with its new release.
    let (status, again, replayed) = post_with_key(&base, "nightly", body("1.0.1")).await;
    assert_eq!((status, replayed), (201, true), "{again}");
    assert_eq!(again["id"], second["id"]);

    sqlx::query(age_keys_by_a_day)
        .execute(&mut db)
        .await
        .expect("age the key");
    let (status, fresh, _) = post_with_key(&base, "build-9", body("1.0.2")).await;
    assert_eq!(status, 201, "{fresh}");
    let store = meridian::store::Store::connect(&world.db.url, 1)
        .await
        .expect("connect");
    let forgotten = store
        .forget_expired_idempotency_keys()
        .await
        .expect("forget expired keys");
    assert_eq!(forgotten, 1);
    let kept: Vec<(String,)> = sqlx::query_as("SELECT key FROM idempotency_keys")
        .fetch_all(&mut db)
        .await
        .expect("read keys");
    assert_eq!(kept, vec![("build-9".to_owned(),)]);
}

#[tokio::test]
async fn a_second_release_is_rejected_while_one_is_active_unless_it_asks_to_queue() {
    let world = World::start(PLAN, &app_yaml("shop", "one", 1, 20), "queue").await;
    let (sim, server) = (&world.sim, &world.server);
    let api = &server.api;
    let first = api
        .release("shop", "1.0.0", "registry.example/shop:1.0.0")
        .await;

    let (status, problem) = api
        .post("/api/v1/releases", json!({"application": "shop", "version": "1.1.0", "image": "registry.example/shop:1.1.0"}))
        .await;
    assert_eq!(status, 409, "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap_or_default()
            .contains(&first.to_string()),
        "names the active rollout: {problem}"
    );

    let (status, queued) = api
        .post(
            "/api/v1/releases",
            json!({"application": "shop", "version": "1.1.0", "image": "registry.example/shop:1.1.0", "on_active": "queue"}),
        )
        .await;
    assert_eq!(status, 201, "{queued}");
    assert_eq!(queued["queued"], true);
    let second: uuid::Uuid = queued["id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("id");

    let done_first = api.wait_state(first, "succeeded").await;
    let done_second = api.wait_state(second, "succeeded").await;
    let first_end = done_first["finished_at"].as_str().expect("finished");
    let second_events = api.events(second).await;
    let started = second_events
        .iter()
        .find(|e| e["kind"] == "rollout_started")
        .and_then(|e| e["created_at"].as_str())
        .expect("second started");
    let parse = |t: &str| t.parse::<chrono::DateTime<chrono::Utc>>().expect("time");
    assert!(
        parse(started) >= parse(first_end),
        "queued rollout started only after the first ended"
    );
    assert_eq!(done_second["state"], "succeeded");
    assert_eq!(
        sim.control.deployment_images("use1-canary", "shop").await,
        Some(vec!["registry.example/shop:1.1.0".to_owned()])
    );
}

#[tokio::test]
async fn releases_of_one_application_sent_at_once_start_one_rollout_and_are_refused_or_queued() {
    let world = World::start(PLAN, &app_yaml("shop", "one", 1, 20), "rivals").await;
    let api = &world.server.api;
    let send = |version: String, on_active: &'static str| async move {
        api.post(
            "/api/v1/releases",
            json!({"application": "shop", "version": version, "image": format!("registry.example/shop:{version}"), "on_active": on_active}),
        )
        .await
    };
    let refused_or_not =
        futures::future::join_all((0..8).map(|i| send(format!("1.0.{i}"), "reject"))).await;
    let created: Vec<_> = refused_or_not
        .iter()
        .filter(|(status, _)| *status == 201)
        .collect();
    assert_eq!(created.len(), 1, "{refused_or_not:?}");
    assert!(
        refused_or_not
            .iter()
            .all(|(status, _)| *status == 201 || *status == 409),
        "{refused_or_not:?}"
    );

    let queued_or_not =
        futures::future::join_all((0..8).map(|i| send(format!("2.0.{i}"), "queue"))).await;
    assert!(
        queued_or_not
            .iter()
            .all(|(status, body)| *status == 201 && body["queued"] == true),
        "{queued_or_not:?}"
    );
    let (_, list) = api.get("/api/v1/rollouts?application=shop&limit=100").await;
    let active: Vec<_> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|r| {
            !["pending", "succeeded", "rolled_back", "failed", "aborted"]
                .contains(&r["state"].as_str().unwrap_or_default())
        })
        .collect();
    assert!(
        active.len() <= 1,
        "more than one rollout of shop is moving: {list}"
    );
}

#[tokio::test]
async fn long_lists_page_with_a_cursor_and_releases_link_their_rollouts() {
    let world = World::start(PLAN, &app_yaml("shop", "one", 1, 20), "pages").await;
    let server = &world.server;
    let api = &server.api;
    let mut created = Vec::new();
    for v in ["1.0.0", "1.0.1", "1.0.2"] {
        let (status, body) = api
            .post(
                "/api/v1/releases",
                json!({"application": "shop", "version": v, "image": format!("registry.example/shop:{v}"), "on_active": "queue"}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        created.push(body["id"].as_str().expect("id").to_owned());
    }
    let (_, first) = api.get("/api/v1/rollouts?limit=2").await;
    let cursor = first["next_cursor"]
        .as_str()
        .expect("a next page")
        .to_owned();
    let (_, second) = api
        .get(&format!("/api/v1/rollouts?limit=2&cursor={cursor}"))
        .await;
    assert!(second["next_cursor"].is_null(), "{second}");
    let seen: Vec<String> = first["items"]
        .as_array()
        .into_iter()
        .chain(second["items"].as_array())
        .flatten()
        .filter_map(|r| r["id"].as_str().map(str::to_owned))
        .collect();
    let mut newest_first = created.clone();
    newest_first.reverse();
    assert_eq!(seen, newest_first, "every rollout once, newest first");

    let (status, problem) = api.get("/api/v1/rollouts?cursor=nonsense").await;
    assert_eq!(status, 400, "{problem}");
    let later = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let (status, none) = api
        .get(&format!(
            "/api/v1/rollouts?since={}",
            later.replace('+', "%2B")
        ))
        .await;
    assert_eq!(status, 200, "{none}");
    assert_eq!(none["items"].as_array().map(Vec::len), Some(0));

    let (_, releases) = api.get("/api/v1/releases?application=shop").await;
    let items = releases["items"].as_array().expect("items");
    assert_eq!(items.len(), 3);
    let release_id = items[0]["id"].as_str().expect("release id");
    let (status, release) = api.get(&format!("/api/v1/releases/{release_id}")).await;
    assert_eq!(status, 200, "{release}");
    assert_eq!(release["version"], "1.0.2");
    let dashboard = release["rollouts"][0]["links"]["dashboard"]
        .as_str()
        .unwrap_or_default();
    assert!(
        dashboard.ends_with(&format!("/rollouts/{}", created[2])),
        "{release}"
    );
}
