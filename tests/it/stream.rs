//! The live event stream: every event once, in order, on every replica,
//! resumable with `Last-Event-ID`.

use futures::StreamExt;

use crate::support::{
    ServerBuilder, Sim, TestDb,
    config::{app_yaml, write_config},
};

/// Reads SSE events (id, kind) until `stop` says so or the stream ends.
async fn read_events(
    url: &str,
    last_event_id: Option<i64>,
    mut stop: impl FnMut(&[(i64, String)]) -> bool,
) -> Vec<(i64, String)> {
    let mut request = reqwest::Client::new()
        .get(url)
        .bearer_auth(crate::support::api::TEST_TOKEN);
    if let Some(id) = last_event_id {
        request = request.header("Last-Event-ID", id.to_string());
    }
    let response = request.send().await.expect("stream reachable");
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap_or_default()
            .starts_with("text/event-stream")
    );
    let mut body = response.bytes_stream();
    let mut text = String::new();
    let mut events = Vec::new();
    let (mut id, mut kind) = (None, None);
    while let Some(chunk) = body.next().await {
        text.push_str(&String::from_utf8_lossy(&chunk.expect("chunk")));
        while let Some(end) = text.find('\n') {
            let line: String = text.drain(..=end).collect();
            let line = line.trim_end();
            if let Some(v) = line.strip_prefix("id:") {
                id = v.trim().parse().ok();
            } else if let Some(v) = line.strip_prefix("event:") {
                kind = Some(v.trim().to_owned());
            } else if line.is_empty()
                && let (Some(i), Some(k)) = (id.take(), kind.take())
            {
                events.push((i, k));
                if stop(&events) {
                    return events;
                }
            }
        }
    }
    events
}

#[tokio::test]
async fn a_client_that_reconnects_with_last_event_id_misses_no_event_even_on_another_replica() {
    let plan = r#"  - name: two
    stages:
      - {name: canary, clusters: {names: [use1-canary]}, bake: 1s}
      - {name: rest, clusters: {names: [euw1-a, aps1-a]}, max_parallel: 1, bake: 1s}
"#;
    let dir = tempfile::tempdir().expect("tempdir");
    let db = TestDb::new().await;
    let sim = Sim::start(dir.path()).await;
    let config = write_config(
        dir.path(),
        &sim.kubeconfig,
        plan,
        &app_yaml("shop", "two", 1, 20),
    );
    let driver = ServerBuilder::new(&db.url, &config, dir.path(), "driver")
        .start()
        .await;
    let watcher = ServerBuilder::new(&db.url, &config, dir.path(), "watcher")
        .start()
        .await;
    let id = driver
        .api
        .release("shop", "1.0.0", "registry.example/shop:1.0.0")
        .await;
    let url = format!("{}/api/v1/events/stream?rollout={id}", watcher.api.base);

    // Read a few events, then drop the connection mid-rollout.
    let first = read_events(&url, None, |seen| seen.len() >= 4).await;
    let last_seen = first.last().map(|(i, _)| *i).expect("some events");
    let rest = read_events(&url, Some(last_seen), |seen| {
        seen.iter().any(|(_, kind)| kind == "succeeded")
    })
    .await;

    let streamed: Vec<i64> = first.iter().chain(&rest).map(|(i, _)| *i).collect();
    let stored: Vec<i64> = driver
        .api
        .events(id)
        .await
        .iter()
        .filter_map(|e| e["id"].as_i64())
        .collect();
    assert_eq!(streamed, stored, "every event once, in order");
    assert!(
        rest.iter().all(|(i, _)| *i > last_seen),
        "nothing repeated after resume"
    );
}

/// Appends one event in `tx` the way Meridian's writers do: the
/// transaction has its id before the event id is drawn. Returns the id.
async fn append_event(tx: &mut sqlx::PgConnection, kind: &str) -> i64 {
    sqlx::query_scalar(
        "WITH with_xid AS (SELECT pg_current_xact_id())
         INSERT INTO events (kind, actor, message)
         SELECT $1, 'test', 'written by the test' FROM with_xid RETURNING id",
    )
    .bind(kind)
    .fetch_one(&mut *tx)
    .await
    .expect("append an event")
}

async fn announce(pool: &sqlx::PgPool) {
    sqlx::query("SELECT pg_notify('meridian_events', '')")
        .execute(pool)
        .await
        .expect("notify");
}

/// One server over a fresh database, and a connection pool to write
/// events beside it as concurrent transactions would.
struct EventLog {
    pool: sqlx::PgPool,
    stream_url: String,
    _server: crate::support::Server,
    _sim: Sim,
    _db: TestDb,
    _dir: tempfile::TempDir,
}

impl EventLog {
    async fn start() -> EventLog {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = TestDb::new().await;
        let sim = Sim::start(dir.path()).await;
        let plan =
            "  - name: one\n    stages:\n      - {name: all, clusters: {names: [use1-canary]}}\n";
        let config = write_config(
            dir.path(),
            &sim.kubeconfig,
            plan,
            &app_yaml("shop", "one", 1, 20),
        );
        let server = ServerBuilder::new(&db.url, &config, dir.path(), "server")
            .start()
            .await;
        let pool = sqlx::PgPool::connect(&db.url).await.expect("connect");
        EventLog {
            pool,
            stream_url: format!("{}/api/v1/events/stream", server.api.base),
            _server: server,
            _sim: sim,
            _db: db,
            _dir: dir,
        }
    }

    /// Reads the stream, from after the newest event now (so it cannot
    /// start past what the test writes), until an event of kind `last`.
    async fn stream_until(
        &self,
        last: &'static str,
    ) -> tokio::task::JoinHandle<Vec<(i64, String)>> {
        let base: i64 = sqlx::query_scalar("SELECT coalesce(max(id), 0) FROM events")
            .fetch_one(&self.pool)
            .await
            .expect("newest event");
        let url = self.stream_url.clone();
        tokio::spawn(async move {
            read_events(&url, Some(base), |seen| seen.iter().any(|(_, k)| k == last)).await
        })
    }
}

#[tokio::test]
async fn an_event_committed_after_a_newer_one_is_still_streamed_first_and_a_rolled_back_id_holds_nothing_up()
 {
    let log = EventLog::start().await;
    let pool = &log.pool;
    // Up to the last event written: a stream that skipped one shows it.
    let reader = log.stream_until("test_after_rollback").await;

    // A slow writer draws the smaller id and stays open...
    let mut slow = pool.begin().await.expect("begin");
    let slow_id = append_event(&mut slow, "test_slow").await;
    // ...while a fast one draws the next id and commits.
    let mut fast = pool.begin().await.expect("begin");
    let fast_id = append_event(&mut fast, "test_fast").await;
    fast.commit().await.expect("commit");
    announce(pool).await;
    assert!(fast_id > slow_id);
    // A writer that draws an id and rolls back leaves a gap for good.
    let mut gone = pool.begin().await.expect("begin");
    let gone_id = append_event(&mut gone, "test_rolled_back").await;
    gone.rollback().await.expect("rollback");
    let mut after = pool.begin().await.expect("begin");
    let after_id = append_event(&mut after, "test_after_rollback").await;
    after.commit().await.expect("commit");
    announce(pool).await;
    assert!(after_id > gone_id);

    // Whatever the stream sends meanwhile, it cannot send the fast event
    // before the slow one: the slow one commits only now.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    slow.commit().await.expect("commit");
    announce(pool).await;

    let streamed = tokio::time::timeout(std::time::Duration::from_secs(30), reader)
        .await
        .expect("the stream reached the last event written")
        .expect("reader task");
    let ours: Vec<(i64, String)> = streamed
        .into_iter()
        .filter(|(_, k)| k.starts_with("test_"))
        .collect();
    assert_eq!(
        ours,
        vec![
            (slow_id, "test_slow".to_owned()),
            (fast_id, "test_fast".to_owned()),
            (after_id, "test_after_rollback".to_owned()),
        ],
        "in id order, the slow writer's event included, the rolled-back one absent"
    );
}

#[tokio::test]
async fn a_long_transaction_of_another_database_on_the_server_does_not_hold_up_the_stream() {
    let log = EventLog::start().await;
    let pool = &log.pool;
    let reader = log.stream_until("test_after_gap").await;

    // Another application on the same PostgreSQL server keeps a writing
    // transaction open.
    let neighbour = TestDb::new().await;
    let mut elsewhere = neighbour.connect().await;
    sqlx::query("BEGIN")
        .execute(&mut elsewhere)
        .await
        .expect("begin");
    sqlx::query("SELECT pg_current_xact_id()")
        .execute(&mut elsewhere)
        .await
        .expect("take a transaction id");

    // A gap in our ids: a writer rolled back, the next one committed.
    let mut gone = pool.begin().await.expect("begin");
    append_event(&mut gone, "test_rolled_back").await;
    gone.rollback().await.expect("rollback");
    let mut after = pool.begin().await.expect("begin");
    let after_id = append_event(&mut after, "test_after_gap").await;
    after.commit().await.expect("commit");
    announce(pool).await;

    let streamed = tokio::time::timeout(std::time::Duration::from_secs(20), reader)
        .await
        .expect("the event after the gap is streamed while the other database's transaction runs")
        .expect("reader task");
    let ours: Vec<i64> = streamed
        .iter()
        .filter(|(_, k)| k.starts_with("test_"))
        .map(|(i, _)| *i)
        .collect();
    assert_eq!(ours, [after_id]);
    sqlx::query("ROLLBACK")
        .execute(&mut elsewhere)
        .await
        .expect("rollback");
}
