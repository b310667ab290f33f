//! One fresh database per test on the machine's PostgreSQL.

use sqlx::{Connection, PgConnection};

/// Where the test PostgreSQL is; CI and sessions run one at this address.
fn admin_url() -> String {
    std::env::var("MERIDIAN_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    pub async fn new() -> TestDb {
        let admin = admin_url();
        let name = format!("meridian_test_{}", uuid::Uuid::new_v4().simple());
        let mut conn = PgConnection::connect(&admin)
            .await
            .unwrap_or_else(|e| panic!("cannot reach the test PostgreSQL at {admin}: {e}"));
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .expect("create test database");
        let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
        TestDb {
            url: format!("{base}/{name}"),
            name,
        }
    }

    pub async fn connect(&self) -> PgConnection {
        PgConnection::connect(&self.url)
            .await
            .expect("connect to test database")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let admin = admin_url();
        let name = self.name.clone();
        // Best effort, on its own thread: Drop cannot be async.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok(mut conn) = PgConnection::connect(&admin).await {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .execute(&mut conn)
                    .await;
                }
            });
        })
        .join();
    }
}

/// A fresh database and a store on it with one connection, as
/// [`statistic`] and [`rows_read`] need: the figures they read are then
/// this store's own. Keep the database as long as the store.
pub async fn single_connection_store() -> (TestDb, meridian::store::Store) {
    let db = TestDb::new().await;
    let store = meridian::store::Store::connect(&db.url, 1)
        .await
        .expect("connect");
    (db, store)
}

/// Reads one figure of PostgreSQL's activity statistics (`statistic`: a
/// query answering one `bigint`) through `store`, whose pool must hold one
/// connection: what that connection did so far is flushed to the shared
/// counters first, so the figure includes the statements just run.
pub async fn statistic(store: &meridian::store::Store, statistic: &'static str) -> i64 {
    let mut conn = flushed(store).await;
    let (figure,): (i64,) = sqlx::query_as(statistic)
        .fetch_one(&mut *conn)
        .await
        .expect("read statistics");
    figure
}

/// Rows of `tables` read so far (sequential scans and index fetches), as
/// [`statistic`] reads them.
pub async fn rows_read(store: &meridian::store::Store, tables: &[&str]) -> i64 {
    let mut conn = flushed(store).await;
    sqlx::query_scalar(
        "SELECT coalesce(sum(seq_tup_read + coalesce(idx_tup_fetch, 0)), 0)::bigint
           FROM pg_stat_user_tables WHERE relname = ANY($1)",
    )
    .bind(tables)
    .fetch_one(&mut *conn)
    .await
    .expect("read statistics")
}

async fn flushed(store: &meridian::store::Store) -> sqlx::pool::PoolConnection<sqlx::Postgres> {
    let mut conn = store.pool().acquire().await.expect("connection");
    // Statistics reach the shared counters when a backend goes idle; force
    // this one's at its next idle moment, before the read that follows.
    sqlx::query("SELECT pg_stat_force_next_flush()")
        .execute(&mut *conn)
        .await
        .expect("flush statistics");
    conn
}
