//! Webhooks against a real server and a real receiver: signed deliveries,
//! retries with every attempt recorded, the Slack format, event filters,
//! and input validation.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use std::time::Duration;

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode, Uri},
};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use uuid::Uuid;

use crate::support::{
    Api, ServerBuilder, Sim, TestDb,
    config::{app_yaml, write_config},
    eventually,
};

const ONE_STAGE: &str = r#"  - name: quick
    stages:
      - {name: canary, clusters: {names: [use1-canary]}, bake: 1s}
"#;

struct World {
    db: TestDb,
    _sim: Sim,
    server: crate::support::Server,
    /// Starts more replicas, or this one again, on the same database.
    builder: ServerBuilder,
    dir: tempfile::TempDir,
}

async fn world() -> World {
    world_of(&app_yaml("shop", "quick", 1, 20)).await
}

async fn world_of(apps: &str) -> World {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = TestDb::new().await;
    let sim = Sim::start(dir.path()).await;
    let config = write_config(dir.path(), &sim.kubeconfig, ONE_STAGE, apps);
    let builder = ServerBuilder::new(&db.url, &config, dir.path(), "solo");
    let server = builder.start().await;
    World {
        db,
        _sim: sim,
        server,
        builder,
        dir,
    }
}

/// One request a receiver got, and what it answered.
#[derive(Clone, Debug)]
struct Call {
    path: String,
    headers: HeaderMap,
    body: Bytes,
    answered: u16,
}

impl Call {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("the body is JSON")
    }

    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }
}

#[derive(Clone, Default)]
struct Receiver {
    calls: Arc<Mutex<Vec<Call>>>,
    /// Per path: how many more requests to answer 500 before 200.
    failures_left: Arc<Mutex<HashMap<String, usize>>>,
}

impl Receiver {
    /// A receiver on 127.0.0.1:0 answering every path; returns its base URL.
    async fn start(failures: &[(&str, usize)]) -> (Receiver, String) {
        let receiver = Receiver::default();
        receiver
            .failures_left
            .lock()
            .expect("lock")
            .extend(failures.iter().map(|(path, n)| ((*path).to_owned(), *n)));
        let app = Router::new().fallback(record).with_state(receiver.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the receiver");
        let address = listener.local_addr().expect("receiver address");
        tokio::spawn(async move { axum::serve(listener, app).await.expect("receiver serves") });
        (receiver, format!("http://{address}"))
    }

    fn calls_to(&self, path: &str) -> Vec<Call> {
        let calls = self.calls.lock().expect("lock");
        calls.iter().filter(|c| c.path == path).cloned().collect()
    }
}

async fn record(
    State(receiver): State<Receiver>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let path = uri.path().to_owned();
    let status = {
        let mut failures = receiver.failures_left.lock().expect("lock");
        match failures.get_mut(&path) {
            Some(left) if *left > 0 => {
                *left -= 1;
                StatusCode::INTERNAL_SERVER_ERROR
            }
            _ => StatusCode::OK,
        }
    };
    receiver.calls.lock().expect("lock").push(Call {
        path,
        headers,
        body,
        answered: status.as_u16(),
    });
    status
}

/// Checks `sha256=<hex>` the way a receiver would, independently of
/// Meridian's own signing code.
fn signature_is_valid(secret: &str, call: &Call) -> bool {
    let Some(hex_part) = call.header("x-meridian-signature").strip_prefix("sha256=") else {
        return false;
    };
    let Ok(expected) = hex::decode(hex_part) else {
        return false;
    };
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).expect("any key");
    mac.update(&call.body);
    mac.verify_slice(&expected).is_ok()
}

async fn register(api: &Api, body: Value) -> Value {
    let (status, created) = api.post("/api/v1/webhooks", body).await;
    assert_eq!(status, 201, "register webhook: {created}");
    created
}

async fn deliveries(api: &Api, webhook: &Value) -> Vec<Value> {
    let id = webhook["id"].as_str().expect("webhook id");
    let (status, body) = api.get(&format!("/api/v1/webhooks/{id}/deliveries")).await;
    assert_eq!(status, 200, "deliveries: {body}");
    body["items"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn a_receiver_that_fails_twice_gets_the_event_once_as_a_success_signed_after_three_attempts()
{
    let w = world().await;
    let api = &w.server.api;
    let (receiver, base) = Receiver::start(&[("/flaky", 2)]).await;
    let secret = "it-is-a-shared-secret-0123456789";
    let webhook = register(
        api,
        json!({"url": format!("{base}/flaky"), "events": ["succeeded"], "secret": secret, "format": "json"}),
    )
    .await;
    assert!(
        webhook.get("secret").is_none(),
        "a secret the caller chose is not echoed: {webhook}"
    );

    let id = api
        .release("shop", "1.0.0", "registry.example/shop:1.0.0")
        .await;
    api.wait_state(id, "succeeded").await;
    let delivery = eventually("the delivery to succeed", || async {
        let list = deliveries(api, &webhook).await;
        list.first().filter(|d| d["state"] == "succeeded").cloned()
    })
    .await;

    assert_eq!(delivery["attempts"], 3, "{delivery:#}");
    assert_eq!(delivery["last_status"], 200, "{delivery:#}");
    assert_eq!(delivery["event_kind"], "succeeded");
    assert_eq!(delivery["rollout_id"], id.to_string());
    let statuses: Vec<&Value> = delivery["attempt_log"]
        .as_array()
        .expect("attempt log")
        .iter()
        .map(|a| &a["status"])
        .collect();
    assert_eq!(
        statuses,
        [&json!(500), &json!(500), &json!(200)],
        "{delivery:#}"
    );
    assert_eq!(
        deliveries(api, &webhook).await.len(),
        1,
        "one delivery for the one matching event"
    );

    let calls = receiver.calls_to("/flaky");
    let answers: Vec<u16> = calls.iter().map(|c| c.answered).collect();
    assert_eq!(answers, [500, 500, 200], "exactly one successful request");
    for call in &calls {
        assert!(signature_is_valid(secret, call), "bad signature: {call:?}");
        assert_eq!(call.header("x-meridian-event"), "succeeded");
        assert_eq!(call.header("x-meridian-delivery"), delivery["id"]);
        assert_eq!(call.header("content-type"), "application/json");
    }
    let body = calls[2].json();
    assert_eq!(body["kind"], "succeeded");
    assert_eq!(body["rollout_id"], id.to_string());
    assert_eq!(body["application"], "shop");
    assert_eq!(body["version"], "1.0.0");
    assert_eq!(
        body["links"]["rollout"],
        format!("{}/api/v1/rollouts/{id}", api.base)
    );
    let event_in_log = api
        .events(id)
        .await
        .into_iter()
        .find(|e| e["kind"] == "succeeded")
        .expect("succeeded event");
    assert_eq!(
        body["id"], event_in_log["id"],
        "the body is the logged event"
    );
    assert_eq!(body["message"], event_in_log["message"]);
}

#[tokio::test]
async fn a_slack_webhook_gets_one_line_of_text_signed_with_the_secret_generated_for_it() {
    let w = world().await;
    let api = &w.server.api;
    let (receiver, base) = Receiver::start(&[]).await;
    let webhook = register(
        api,
        json!({"url": format!("{base}/slack"), "events": ["*"], "format": "slack"}),
    )
    .await;
    let secret = webhook["secret"]
        .as_str()
        .expect("a generated secret is shown once")
        .to_owned();
    let (_, listed) = api.get("/api/v1/webhooks").await;
    assert!(
        !listed.to_string().contains(&secret) && listed["items"][0].get("secret").is_none(),
        "the list shows no secret: {listed}"
    );

    let id = api
        .release("shop", "1.0.0", "registry.example/shop:1.0.0")
        .await;
    api.wait_state(id, "succeeded").await;
    let done = eventually("the succeeded line to arrive", || async {
        receiver
            .calls_to("/slack")
            .into_iter()
            .find(|c| c.header("x-meridian-event") == "succeeded")
    })
    .await;

    let text = done.json()["text"].as_str().expect("text").to_owned();
    assert!(text.starts_with("shop 1.0.0: succeeded"), "{text}");
    assert!(text.contains(&format!("/rollouts/{id}|")), "{text}");
    for call in receiver.calls_to("/slack") {
        let body = call.json();
        let object = body.as_object().expect("an object");
        assert_eq!(object.keys().collect::<Vec<_>>(), ["text"], "{body}");
        let line = body["text"].as_str().expect("text is a string");
        assert!(!line.contains('\n'), "one line: {line:?}");
        assert!(
            signature_is_valid(&secret, &call),
            "bad signature: {call:?}"
        );
    }
}

#[tokio::test]
async fn a_webhook_for_rolled_back_only_is_not_called_for_a_successful_rollout_but_is_for_a_rollback()
 {
    // A 3 s progress deadline, so the crashloop release below fails fast.
    let w = world_of(&app_yaml("shop", "quick", 1, 3)).await;
    let api = &w.server.api;
    let (receiver, base) = Receiver::start(&[]).await;
    let rollbacks = register(
        api,
        json!({"url": format!("{base}/rollbacks"), "events": ["rolled_back"]}),
    )
    .await;
    let everything = register(
        api,
        json!({"url": format!("{base}/everything"), "events": ["*"]}),
    )
    .await;

    let id = api
        .release("shop", "1.0.0", "registry.example/shop:1.0.0")
        .await;
    api.wait_state(id, "succeeded").await;
    // Both webhooks' deliveries for an event are created together, so once
    // the catch-all one has the last event, the filtered one had its chance.
    eventually(
        "the catch-all webhook to get the succeeded event",
        || async {
            deliveries(api, &everything)
                .await
                .iter()
                .any(|d| d["event_kind"] == "succeeded" && d["state"] == "succeeded")
                .then_some(())
        },
    )
    .await;
    assert!(
        deliveries(api, &everything).await.len() > 1,
        "the catch-all webhook gets every event"
    );
    assert_eq!(deliveries(api, &rollbacks).await, Vec::<Value>::new());
    assert!(receiver.calls_to("/rollbacks").is_empty());

    let bad = api
        .release("shop", "1.0.1", "registry.example/shop:1.0.1-crashloop")
        .await;
    api.wait_state(bad, "rolled_back").await;
    let call = eventually("the rolled_back event to arrive", || async {
        receiver.calls_to("/rollbacks").into_iter().next()
    })
    .await;
    assert_eq!(call.json()["kind"], "rolled_back");
    assert_eq!(call.json()["rollout_id"], bad.to_string());
    let list = deliveries(api, &rollbacks).await;
    assert_eq!(list.len(), 1, "only the rolled_back event: {list:#?}");
}

#[tokio::test]
async fn bad_webhook_registrations_are_refused_with_problem_json_and_register_nothing() {
    let w = world().await;
    let api = &w.server.api;
    let cases = [
        (
            json!({"url": "ftp://files.example/hook", "events": ["succeeded"]}),
            Some("url"),
        ),
        (
            json!({"url": "not a url", "events": ["succeeded"]}),
            Some("url"),
        ),
        (
            json!({"url": "https://hooks.example/x", "events": ["deployed"]}),
            Some("events"),
        ),
        (
            json!({"url": "https://hooks.example/x", "events": []}),
            Some("events"),
        ),
        (
            json!({"url": "https://hooks.example/x", "events": ["*"], "format": "xml"}),
            Some("format"),
        ),
        (
            json!({"url": "https://hooks.example/x", "events": ["*"], "secret": "short"}),
            Some("secret"),
        ),
        (
            json!({"url": "https://hooks.example/x", "events": ["*"], "colour": "red"}),
            None,
        ),
        (json!({"events": ["*"]}), None),
    ];
    for (body, field) in cases {
        let (status, problem) = api.post("/api/v1/webhooks", body.clone()).await;
        assert!(
            (400..500).contains(&status),
            "{body} answered {status}: {problem}"
        );
        assert_eq!(
            problem["status"], status,
            "problem+json for {body}: {problem}"
        );
        assert!(problem["detail"].is_string(), "{problem}");
        if let Some(field) = field {
            assert_eq!(problem["field"], field, "{body}: {problem}");
        }
    }
    let (status, listed) = api.get("/api/v1/webhooks").await;
    assert_eq!(status, 200);
    assert_eq!(listed["items"], json!([]));

    let (status, _) = api
        .get(&format!("/api/v1/webhooks/{}/deliveries", Uuid::now_v7()))
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn only_admins_see_webhooks_and_a_deleted_webhook_is_gone_with_its_deliveries() {
    let w = world().await;
    let api = &w.server.api;
    let webhook = register(
        api,
        json!({"url": "https://hooks.example/x", "events": ["rolled_back", "succeeded"]}),
    )
    .await;
    let id = webhook["id"].as_str().expect("id").to_owned();
    assert_eq!(webhook["events"], json!(["rolled_back", "succeeded"]));
    assert_eq!(webhook["format"], "json");

    let (status, operator) = api
        .post("/api/v1/tokens", json!({"name": "ops", "role": "operator"}))
        .await;
    assert_eq!(status, 201, "{operator}");
    let operator = api.with_token(operator["token"].as_str());
    let (status, _) = operator.get("/api/v1/webhooks").await;
    assert_eq!(status, 403, "operators may not read webhooks");
    let (status, _) = operator
        .post(
            "/api/v1/webhooks",
            json!({"url": "https://evil.example/", "events": ["*"]}),
        )
        .await;
    assert_eq!(status, 403, "operators may not register webhooks");

    let delete = |path: String| async move {
        api.request(reqwest::Method::DELETE, &path)
            .send()
            .await
            .expect("API reachable")
            .status()
            .as_u16()
    };
    assert_eq!(delete(format!("/api/v1/webhooks/{id}")).await, 204);
    assert_eq!(delete(format!("/api/v1/webhooks/{id}")).await, 404);
    let (status, _) = api.get(&format!("/api/v1/webhooks/{id}/deliveries")).await;
    assert_eq!(status, 404);
    let (_, listed) = api.get("/api/v1/webhooks").await;
    assert_eq!(listed["items"], json!([]));
}

#[tokio::test]
async fn two_replicas_deliver_every_event_of_four_rollouts_exactly_once() {
    let apps: String = (1..=4)
        .map(|i| app_yaml(&format!("app-{i}"), "quick", 1, 20))
        .collect();
    let w = world_of(&apps).await;
    let other = ServerBuilder::new(
        &w.db.url,
        &w.dir.path().join("meridian.yaml"),
        w.dir.path(),
        "replica-b",
    )
    .start()
    .await;
    let api = &w.server.api;
    let (receiver, base) = Receiver::start(&[]).await;
    let webhook = register(api, json!({"url": format!("{base}/all"), "events": ["*"]})).await;

    let mut ids = Vec::new();
    for i in 1..=4 {
        let via = if i % 2 == 0 { api } else { &other.api };
        ids.push(
            via.release(&format!("app-{i}"), "1.0.0", "registry.example/app:1.0.0")
                .await,
        );
    }
    let mut event_ids = Vec::new();
    for id in &ids {
        api.wait_state(*id, "succeeded").await;
        event_ids.extend(
            api.events(*id)
                .await
                .iter()
                .filter_map(|e| e["id"].as_i64()),
        );
    }
    event_ids.sort_unstable();
    let delivered = eventually("every event to be delivered", || async {
        let list = deliveries(api, &webhook).await;
        (list.len() == event_ids.len() && list.iter().all(|d| d["state"] == "succeeded"))
            .then_some(list)
    })
    .await;

    let mut delivered_events: Vec<i64> = delivered
        .iter()
        .filter_map(|d| d["event_id"].as_i64())
        .collect();
    delivered_events.sort_unstable();
    assert_eq!(
        delivered_events, event_ids,
        "one delivery per event, none skipped"
    );
    assert!(
        delivered.iter().all(|d| d["attempts"] == 1),
        "{delivered:#?}"
    );
    let mut sent: HashMap<String, usize> = HashMap::new();
    for call in receiver.calls_to("/all") {
        *sent
            .entry(call.header("x-meridian-delivery").to_owned())
            .or_default() += 1;
    }
    assert_eq!(
        sent.len(),
        event_ids.len(),
        "every delivery reached the receiver"
    );
    assert!(
        sent.values().all(|&n| n == 1),
        "a delivery was sent twice: {sent:?}"
    );
}

#[tokio::test]
async fn events_written_while_no_server_runs_are_delivered_after_a_restart() {
    let mut w = world().await;
    let (receiver, base) = Receiver::start(&[]).await;
    let webhook = register(
        &w.server.api,
        json!({"url": format!("{base}/late"), "events": ["succeeded"]}),
    )
    .await;
    w.server.stop();

    // Written straight into the log, as another process would while this
    // one is down: the worker must pick it up from its stored cursor.
    let mut db = w.db.connect().await;
    let (event_id,): (i64,) = sqlx::query_as(
        "INSERT INTO events (kind, actor, message) VALUES ('succeeded', 'test', 'while down')
         RETURNING id",
    )
    .fetch_one(&mut db)
    .await
    .expect("insert an event");

    w.server = w.builder.start().await;
    let call = eventually("the event written while down to arrive", || async {
        receiver.calls_to("/late").into_iter().next()
    })
    .await;
    assert_eq!(call.json()["id"], event_id);
    assert_eq!(call.json()["message"], "while down");
    let list = deliveries(&w.server.api, &webhook).await;
    assert_eq!(list.len(), 1, "{list:#?}");
    assert_eq!(list[0]["event_id"], event_id);
}

#[tokio::test]
async fn an_event_whose_transaction_began_before_a_webhook_was_registered_and_committed_after_is_delivered()
 {
    let w = world().await;
    let (receiver, base) = Receiver::start(&[]).await;
    // A slow writer draws its event id first, as the service's writers do
    // (transaction id, then event id), and stays open.
    let mut slow = w.db.connect().await;
    sqlx::query("BEGIN")
        .execute(&mut slow)
        .await
        .expect("begin");
    let (slow_id,): (i64,) = sqlx::query_as(
        "WITH with_xid AS (SELECT pg_current_xact_id())
         INSERT INTO events (kind, actor, message)
         SELECT 'succeeded', 'test', 'slow' FROM with_xid RETURNING id",
    )
    .fetch_one(&mut slow)
    .await
    .expect("draw the slow event's id");
    // A faster one commits a newer id before the webhook exists.
    let mut fast = w.db.connect().await;
    let (fast_id,): (i64,) = sqlx::query_as(
        "INSERT INTO events (kind, actor, message) VALUES ('succeeded', 'test', 'fast') RETURNING id",
    )
    .fetch_one(&mut fast)
    .await
    .expect("insert the fast event");
    assert!(fast_id > slow_id);

    let webhook = register(
        &w.server.api,
        json!({"url": format!("{base}/hook"), "events": ["succeeded"]}),
    )
    .await;
    sqlx::query("COMMIT")
        .execute(&mut slow)
        .await
        .expect("commit the slow event");

    let call = eventually(
        "the slow event, committed after the registration",
        || async {
            receiver
                .calls_to("/hook")
                .into_iter()
                .find(|c| c.json()["id"] == slow_id)
        },
    )
    .await;
    assert_eq!(call.json()["message"], "slow");
    let list = deliveries(&w.server.api, &webhook).await;
    assert!(list.iter().any(|d| d["event_id"] == slow_id), "{list:#?}");
}

#[tokio::test]
async fn a_sender_whose_lease_ran_out_cannot_record_its_outcome_over_the_new_owner() {
    use meridian::{
        store::{
            Store,
            webhooks::{DeliveryState, FinishedAttempt, NewWebhook, NextStep},
        },
        webhooks::{EventFilter, Format, Secret},
    };

    let db = TestDb::new().await;
    let store = Store::connect(&db.url, 4).await.expect("connect");
    let webhook = store
        .create_webhook(
            &NewWebhook {
                url: "http://127.0.0.1:9/hook".parse().expect("url"),
                events: EventFilter::All,
                secret: Secret::generate(),
                format: Format::Json,
                created_by: "test".to_owned(),
            },
            settled_horizon(&store).await,
        )
        .await
        .expect("create webhook");
    sqlx::query("INSERT INTO events (kind, actor, message) VALUES ('succeeded', 'test', 'one')")
        .execute(store.pool())
        .await
        .expect("insert event");
    let upto = settled_horizon(&store).await;
    let fanned = store.fan_out_webhooks(100, upto).await.expect("fan out");
    assert_eq!(fanned.deliveries_created, 1);
    // Fan-out again from the start: the (webhook, event) pair is unique.
    sqlx::query("UPDATE webhook_cursor SET last_event_id = 0")
        .execute(store.pool())
        .await
        .expect("rewind");
    assert_eq!(
        store
            .fan_out_webhooks(100, upto)
            .await
            .expect("again")
            .deliveries_created,
        0
    );

    let lease = Duration::from_secs(60);
    let a = store
        .claim_deliveries("a", lease, 10)
        .await
        .expect("claim a");
    assert_eq!(a.deliveries.len(), 1);
    assert_eq!(a.next_due, None, "the one pending delivery was claimed");
    let refused = store
        .claim_deliveries("b", lease, 10)
        .await
        .expect("claim b");
    assert!(
        refused.deliveries.is_empty(),
        "a live lease keeps others out"
    );
    let lease_ends = chrono::Utc::now() + chrono::TimeDelta::seconds(60);
    let due = refused.next_due.expect("due when the lease ends");
    assert!(
        (due - lease_ends).abs() < chrono::TimeDelta::seconds(5),
        "{due} vs {lease_ends}"
    );
    // A's attempt hangs past its lease; B takes the delivery over.
    sqlx::query("UPDATE webhook_deliveries SET lease_expires_at = now() - interval '1 second'")
        .execute(store.pool())
        .await
        .expect("expire lease");
    let b = store
        .claim_deliveries("b", lease, 10)
        .await
        .expect("claim b");
    assert_eq!(b.deliveries.len(), 1);
    let (a, b) = (&a.deliveries[0], &b.deliveries[0]);
    assert!(b.lease.token > a.lease.token);

    let delivered = FinishedAttempt {
        started_at: chrono::Utc::now(),
        duration: Duration::from_millis(5),
        status: Some(200),
        error: None,
        next: NextStep::Succeeded,
    };
    assert!(
        !store
            .finish_attempt(&a.lease, 1, &delivered)
            .await
            .expect("a")
    );
    assert!(
        store
            .finish_attempt(&b.lease, 1, &delivered)
            .await
            .expect("b")
    );
    assert!(
        !store
            .finish_attempt(&b.lease, 2, &delivered)
            .await
            .expect("b again")
    );

    let list = store.deliveries(webhook.id, 10).await.expect("deliveries");
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].state, DeliveryState::Succeeded);
    assert_eq!(list[0].attempts, 1);
    assert_eq!(list[0].attempt_log.len(), 1);
    assert!(
        store
            .claim_deliveries("c", lease, 10)
            .await
            .expect("claim c")
            .deliveries
            .is_empty(),
        "a finished delivery is never claimed again"
    );
}

/// The fan-out runs every time the event horizon moves; if it read history
/// from the start each time, a server's database work would grow with
/// every event it ever wrote.
#[tokio::test]
async fn fanning_out_reads_the_events_after_the_cursor_not_the_whole_history() {
    let (_db, store) = crate::support::db::single_connection_store().await;
    sqlx::query(
        "INSERT INTO events (kind, actor, message)
         SELECT 'target_applied', 'test', 'history' FROM generate_series(1, 20000)",
    )
    .execute(store.pool())
    .await
    .expect("write history");
    let upto = settled_horizon(&store).await;
    sqlx::query("UPDATE webhook_cursor SET last_event_id = $1 - 5")
        .bind(upto)
        .execute(store.pool())
        .await
        .expect("cursor near the end");

    let before = events_index_reads(&store).await;
    let fanned = store.fan_out_webhooks(100, upto).await.expect("fan out");
    assert_eq!(fanned.events_read, 5, "the events after the cursor");
    let read = events_index_reads(&store).await - before;
    assert!(
        read < 1_000,
        "the fan-out read {read} index entries of events for 5 new ones out of 20,005"
    );
}

/// Index entries of `events` read so far by this database's backends.
async fn events_index_reads(store: &meridian::store::Store) -> i64 {
    crate::support::db::statistic(
        store,
        "SELECT coalesce(sum(idx_tup_read), 0)::bigint FROM pg_stat_user_indexes
          WHERE relname = 'events'",
    )
    .await
}

/// The event log's settled horizon, as a replica's follower would publish
/// it (transactions of other tests may run: wait for them).
async fn settled_horizon(store: &meridian::store::Store) -> i64 {
    let mut horizon = meridian::store::event_horizon::EventHorizon::default();
    let mut conn = store.pool().acquire().await.expect("connection");
    for _ in 0..500 {
        horizon.advance(&mut conn).await.expect("read the horizon");
        if let Some(upto) = horizon.settled() {
            return upto;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the event horizon did not settle in 10 s");
}
