//! One benchmark world: a fresh database, the simulated fleet (in this
//! process, over real HTTP), one or more `meridian serve` child processes
//! and, in the runs that count round trips, a counting proxy between them
//! and PostgreSQL.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};
use sqlx::{Connection as _, PgConnection};

use crate::dbproxy::DbProxy;
use crate::layout::{Layout, SIM};
use meridian::sim::SimFleet;

/// Accepted by every server as an admin token (first-run automation).
pub const TOKEN: &str = "bench-admin-token";

pub struct World {
    pub dir: tempfile::TempDir,
    pub sim: SimFleet,
    pub layout: Layout,
    pub servers: Vec<Server>,
    /// Between the servers and PostgreSQL when round trips are counted.
    pub proxy: Option<DbProxy>,
    /// Direct connection for reading results (not through the proxy).
    pub db: PgConnection,
    admin_url: String,
    db_name: String,
    pub http: reqwest::Client,
}

/// What a world's database and server go through before they are measured.
#[derive(Clone, Copy, Debug)]
pub struct Preparation {
    /// Finished rollouts written per application.
    pub history: usize,
    /// Rollouts of other applications run to the end.
    pub warm_up: usize,
}

/// The servers a world runs and how they are wired.
#[derive(Clone, Copy, Debug)]
pub struct ServerSetup {
    pub replicas: usize,
    /// A gate on the second stage that asks the simulator's control URL.
    pub gated: bool,
    /// Connect the servers through the counting proxy. It is one more hop
    /// (and one more process on the cores) for every round trip, so the
    /// runs that measure latency go straight to PostgreSQL.
    pub count_round_trips: bool,
}

pub struct Server {
    child: Child,
    pub url: String,
    pub log: PathBuf,
}

impl Server {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

impl World {
    /// Starts the fleet of `layout` for `apps` measured applications and
    /// the servers of `setup`. Before it answers, the database gets
    /// `history` finished rollouts per application (see
    /// [`World::seed_history`]) and `warm_up` more applications are released
    /// and left finished (see [`World::warm_up`]).
    pub async fn start(
        admin_url: &str,
        mut layout: Layout,
        apps: usize,
        preparation: Preparation,
        setup: ServerSetup,
    ) -> anyhow::Result<World> {
        let Preparation { history, warm_up } = preparation;
        let dir = tempfile::tempdir()?;
        let db_name = format!(
            "meridian_bench_{}_{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        );
        let mut admin = PgConnection::connect(admin_url)
            .await
            .with_context(|| format!("connect to {admin_url} (set MERIDIAN_BENCH_DATABASE_URL)"))?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db_name}")))
            .execute(&mut admin)
            .await?;
        let mut url = url::Url::parse(admin_url)?;
        url.set_path(&db_name);
        let db = PgConnection::connect(url.as_str()).await?;
        let mut server_url = url.clone();
        let proxy = if setup.count_round_trips {
            let upstream = tokio::net::lookup_host(format!(
                "{}:{}",
                url.host_str().unwrap_or("127.0.0.1"),
                url.port().unwrap_or(5432)
            ))
            .await?
            .next()
            .context("PostgreSQL host does not resolve")?;
            let proxy = DbProxy::start(upstream).await?;
            server_url.set_host(Some("127.0.0.1"))?;
            server_url
                .set_port(Some(proxy.addr.port()))
                .map_err(|()| anyhow::anyhow!("cannot set the proxy port"))?;
            // The proxy reads the protocol, so it must stay in plain text.
            server_url.set_query(Some("sslmode=disable"));
            Some(proxy)
        } else {
            None
        };

        let sim = SimFleet::start(layout.clusters.clone(), SIM).await?;
        let kubeconfig = dir.path().join("kubeconfig");
        sim.write_kubeconfig(&kubeconfig)?;
        if setup.gated {
            layout.gate_url = Some(sim.control_url());
        }
        let config = dir.path().join("meridian.yaml");
        std::fs::write(&config, layout.config_yaml(&kubeconfig, apps + warm_up))?;

        let mut servers = Vec::new();
        for i in 0..setup.replicas {
            servers.push(start_server(&config, server_url.as_str(), dir.path(), i)?);
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(64)
            .build()?;
        let mut world = World {
            dir,
            sim,
            layout,
            servers,
            proxy,
            db,
            admin_url: admin_url.to_owned(),
            db_name,
            http,
        };
        for server in &world.servers {
            world.wait_ready(server).await?;
        }
        world.seed_history(history).await?;
        world.warm_up(apps..apps + warm_up).await?;
        Ok(world)
    }

    /// Writes `per_application` finished rollouts (up to ten targets each,
    /// about a tenth of the clusters picked by hash) for every application,
    /// then has PostgreSQL gather statistics. A database in use holds
    /// history, and its planner plans for tables of that size;
    /// one that starts empty gets plans made for a few rows (sequential
    /// scans, cached by every connection) while its tables grow by
    /// thousands of rows a second. They are rolled back, so no cluster is
    /// recorded as running a version the simulated clusters never ran
    /// (gates compare with what a cluster last ran).
    async fn seed_history(&mut self, per_application: usize) -> anyhow::Result<()> {
        if per_application == 0 {
            return Ok(());
        }
        let per_application = i32::try_from(per_application)?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "INSERT INTO releases (id, application, version, image, created_by, created_at)
             SELECT gen_random_uuid(), a.name, 'history-' || n, 'registry.example/bench:history',
                    'bench', now() - interval '1 day'
               FROM applications a, generate_series(1, {per_application}) AS n;
             INSERT INTO rollouts (id, release_id, application, plan_name, plan_version, state,
                                   current_stage, machine, created_by, created_at, finished_at)
             SELECT gen_random_uuid(), rel.id, rel.application, a.plan_name,
                    (SELECT max(version) FROM plans WHERE name = a.plan_name),
                    'rolled_back', 2, '{{}}', 'bench', rel.created_at, rel.created_at + interval '4 seconds'
               FROM releases rel JOIN applications a ON a.name = rel.application
              WHERE rel.version LIKE 'history-%';
             INSERT INTO targets (rollout_id, cluster, region, stage, position, state, apply_seq)
             SELECT r.id, c.name, c.region, c.n / 4, c.n - 1, 'restored', c.n
               FROM rollouts r
               CROSS JOIN LATERAL (
                   SELECT name, region, row_number() OVER (ORDER BY name)::int AS n FROM clusters
                    WHERE hashtext(name || r.id::text) % 10 = 0 LIMIT 10) AS c
              WHERE r.created_by = 'bench';
             ANALYZE;"
        )))
        .execute(&mut self.db)
        .await
        .context("seed history")?;
        Ok(())
    }

    /// Releases the applications `range` and waits for their rollouts to
    /// finish. A server that has been running has its pool's connections
    /// open and its statements prepared; a fresh one pays for both on its
    /// first requests, which is not what the figures are meant to show.
    async fn warm_up(&mut self, range: std::ops::Range<usize>) -> anyhow::Result<()> {
        if range.is_empty() {
            return Ok(());
        }
        let names: Vec<String> = range.map(crate::layout::app_name).collect();
        self.release_all(&names, "1.0.0", "registry.example/bench:warm-up")
            .await?;
        self.wait_all_finished("warm-up", Duration::from_secs(300))
            .await?;
        Ok(())
    }

    async fn wait_ready(&self, server: &Server) -> anyhow::Result<()> {
        let started = Instant::now();
        loop {
            let ready = self
                .http
                .get(format!("{}/readyz", server.url))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                return Ok(());
            }
            if started.elapsed() > Duration::from_secs(60) {
                let log = std::fs::read_to_string(&server.log).unwrap_or_default();
                bail!("meridian serve did not become ready in 60 s:\n{log}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn url(&self) -> &str {
        &self.servers[0].url
    }

    /// Creates a release (and its rollout); answers the rollout id.
    pub async fn release(
        &self,
        app: &str,
        version: &str,
        image: &str,
    ) -> anyhow::Result<uuid::Uuid> {
        let response = self
            .http
            .post(format!("{}/api/v1/releases", self.url()))
            .bearer_auth(TOKEN)
            .json(&json!({"application": app, "version": version, "image": image}))
            .send()
            .await?;
        let status = response.status();
        let body: Value = response.json().await?;
        if !status.is_success() {
            bail!("POST /releases for {app}: {status} {body}");
        }
        body["id"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("no rollout id in {body}"))
    }

    /// Creates one release per application, `concurrency` requests at a time.
    pub async fn release_all(
        &self,
        apps: &[String],
        version: &str,
        image: &str,
    ) -> anyhow::Result<Vec<uuid::Uuid>> {
        self.release_spread(apps, version, image, Duration::ZERO)
            .await
    }

    /// Creates the releases, the `i`-th of `n` no sooner than
    /// `spread * i / n` from now.
    pub async fn release_spread(
        &self,
        apps: &[String],
        version: &str,
        image: &str,
        spread: Duration,
    ) -> anyhow::Result<Vec<uuid::Uuid>> {
        use futures::StreamExt as _;
        let start = tokio::time::Instant::now();
        let n = u32::try_from(apps.len().max(1)).unwrap_or(u32::MAX);
        let results: Vec<anyhow::Result<uuid::Uuid>> =
            futures::stream::iter(apps.iter().zip(0u32..))
                .map(|(app, i)| async move {
                    tokio::time::sleep_until(start + spread * i / n).await;
                    self.release(app, version, image).await
                })
                .buffered(32)
                .collect()
                .await;
        results.into_iter().collect()
    }

    /// Waits until no rollout is active; shows progress every few seconds.
    pub async fn wait_all_finished(&mut self, label: &str, limit: Duration) -> anyhow::Result<()> {
        let started = Instant::now();
        let mut last_shown = Instant::now();
        loop {
            let (active, done): (i64, i64) = sqlx::query_as(
                "SELECT count(*) FILTER (WHERE finished_at IS NULL), count(*) FILTER (WHERE finished_at IS NOT NULL) FROM rollouts",
            )
            .fetch_one(&mut self.db)
            .await?;
            if active == 0 {
                return Ok(());
            }
            if last_shown.elapsed() > Duration::from_secs(5) {
                eprintln!(
                    "  {label}: {done} finished, {active} active ({:.0} s)",
                    started.elapsed().as_secs_f64()
                );
                last_shown = Instant::now();
            }
            if started.elapsed() > limit {
                bail!("{label}: {active} rollouts still active after {limit:?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub async fn finish(self) -> anyhow::Result<()> {
        let World {
            sim,
            servers,
            db,
            admin_url,
            db_name,
            dir,
            ..
        } = self;
        if std::env::var_os("BENCH_SERVE_LOG").is_some() {
            for server in &servers {
                let kept = crate::report::bench_dir()?.join(
                    server
                        .log
                        .file_name()
                        .context("a server log has no file name")?,
                );
                std::fs::copy(&server.log, &kept)?;
                eprintln!("serve log kept: {}", kept.display());
            }
        }
        drop(servers);
        drop(db);
        sim.shutdown().await;
        let mut admin = PgConnection::connect(&admin_url).await?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {db_name} WITH (FORCE)"
        )))
        .execute(&mut admin)
        .await?;
        drop(dir);
        Ok(())
    }
}

fn start_server(
    config: &std::path::Path,
    database_url: &str,
    dir: &std::path::Path,
    index: usize,
) -> anyhow::Result<Server> {
    let port = free_port()?;
    let log = dir.join(format!("serve-{index}.log"));
    let file = std::fs::File::create(&log)?;
    let child = Command::new(env!("CARGO_BIN_EXE_meridian"))
        .arg("serve")
        .arg("--config")
        .arg(config)
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .env("DATABASE_URL", database_url)
        .env("MERIDIAN_WORKER_ID", format!("bench-{index}"))
        .env("MERIDIAN_BOOTSTRAP_TOKEN", TOKEN)
        // Set BENCH_SERVE_LOG (a RUST_LOG filter) to see inside a run; the
        // logs are then kept under target/bench/.
        .env(
            "RUST_LOG",
            std::env::var("BENCH_SERVE_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .spawn()
        .context("start meridian serve")?;
    Ok(Server {
        child,
        url: format!("http://127.0.0.1:{port}"),
        log,
    })
}
