//! The benchmark's runs, each in a fresh world.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde::Serialize;
use uuid::Uuid;

use crate::Args;
use crate::layout::{Layout, app_name};
use crate::measure::{self, Applies, DrivenOnce, Reaction, Spread, Transitions};
use crate::procstat::{self, ProcessCost};
use crate::world::{ServerSetup, TOKEN, World};

const GOOD_IMAGE: &str = "registry.example/bench:1.0.0";
const FAULTY_IMAGE: &str = "registry.example/bench:2.0.0-faulty";
/// Longest a run may take before the benchmark gives up.
const RUN_LIMIT: Duration = Duration::from_secs(30 * 60);

fn layout(args: &Args) -> Layout {
    let mut layout = Layout::new(args.clusters, args.regions, args.bake);
    layout.poll_rolled_out = args.poll_rolled_out;
    layout
}

fn apps(n: usize) -> Vec<String> {
    (0..n).map(app_name).collect()
}

#[derive(Clone, Debug, Serialize)]
pub struct Light {
    pub rollouts: usize,
    pub transitions: Transitions,
}

/// `rollouts` at once (one alone, then a few): what the machinery adds when
/// it is not busy.
pub async fn light(args: &Args, rollouts: usize) -> anyhow::Result<Light> {
    eprintln!("light: {rollouts} rollout(s) at once");
    let mut world = World::start(
        &args.database_url,
        layout(args),
        rollouts,
        args.preparation(),
        ServerSetup {
            replicas: 1,
            gated: false,
            count_round_trips: false,
        },
    )
    .await?;
    let ids = world
        .release_all(&apps(rollouts), "1.0.0", GOOD_IMAGE)
        .await?;
    world.wait_all_finished("light", RUN_LIMIT).await?;
    let rows = measure::rollouts(&mut world.db, &ids).await?;
    let applies = Applies::collect(&world.sim);
    let transitions = measure::transitions(&mut world.db, &world.layout, &applies, &rows).await?;
    world.finish().await?;
    Ok(Light {
        rollouts,
        transitions,
    })
}

/// A good release everywhere, then a faulty one whose second stage's gate
/// fails: how fast Meridian puts every changed cluster back.
pub async fn reaction(args: &Args) -> anyhow::Result<Reaction> {
    eprintln!("reaction: {} faulty releases", args.reactions);
    let mut world = World::start(
        &args.database_url,
        layout(args),
        args.reactions,
        args.preparation(),
        ServerSetup {
            replicas: 1,
            gated: true,
            count_round_trips: false,
        },
    )
    .await?;
    let names = apps(args.reactions);
    world.release_all(&names, "1.0.0", GOOD_IMAGE).await?;
    world
        .wait_all_finished("reaction (good release)", RUN_LIMIT)
        .await?;
    let ids = world.release_all(&names, "2.0.0", FAULTY_IMAGE).await?;
    world
        .wait_all_finished("reaction (faulty release)", RUN_LIMIT)
        .await?;
    let rows = measure::rollouts(&mut world.db, &ids).await?;
    let applies = Applies::collect(&world.sim);
    let reaction = measure::reaction(&mut world.db, &world.layout, &applies, &rows).await?;
    world.finish().await?;
    Ok(reaction)
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Capacity {
    pub servers: usize,
    pub rollouts: usize,
    pub clusters: usize,
    pub regions: usize,
    pub wall_seconds: f64,
    pub stage_transitions_per_second: f64,
    pub events_per_second: f64,
    pub transitions: Transitions,
    pub per_server: Vec<ProcessCost>,
    pub cpu_seconds_per_rollout: f64,
    /// PostgreSQL's CPU per rollout; `None` when it runs on another machine.
    pub postgres_cpu_seconds_per_rollout: Option<f64>,
    /// This process's CPU per rollout: the simulated fleet, the load and
    /// the counting proxy.
    pub bench_cpu_seconds_per_rollout: f64,
    /// The share of the machine's CPU time that was busy during the run,
    /// and the share the hypervisor gave to others.
    pub machine_busy: f64,
    pub machine_steal: f64,
    pub db_round_trips: u64,
    pub db_round_trips_per_stage_transition: f64,
    pub db_round_trips_per_event: f64,
    /// Where the round trips went: statement, round trips per transition.
    pub db_round_trips_by_statement: Vec<(String, f64)>,
    pub driven_once: Option<DrivenOnce>,
}

async fn capacity_run(args: &Args, servers: usize) -> anyhow::Result<(Capacity, World, Vec<Uuid>)> {
    eprintln!(
        "capacity: {} rollouts over {} clusters in {} regions, {servers} server(s)",
        args.rollouts, args.clusters, args.regions
    );
    let mut world = World::start(
        &args.database_url,
        layout(args),
        args.rollouts,
        args.preparation(),
        ServerSetup {
            replicas: servers,
            gated: false,
            count_round_trips: true,
        },
    )
    .await?;
    let cpu_before: Vec<f64> = world
        .servers
        .iter()
        .map(|s| procstat::cost(s.pid()).map(|c| c.cpu_seconds))
        .collect::<anyhow::Result<_>>()?;
    let events_before = count_events(&mut world.db).await?;
    let postgres_before = procstat::postgres_cpu_seconds()?;
    let own_before = procstat::own_cpu_seconds()?;
    let machine_before = procstat::MachineCpu::read()?;
    let proxy = world
        .proxy
        .clone()
        .context("the capacity run counts round trips through the proxy")?;
    let trips_before = proxy.round_trips();
    let statements_before: std::collections::HashMap<String, u64> =
        proxy.by_statement().into_iter().collect();
    let started = Instant::now();
    let ids = world
        .release_spread(&apps(args.rollouts), "1.0.0", GOOD_IMAGE, args.spread)
        .await?;
    world.wait_all_finished("capacity", RUN_LIMIT).await?;
    let wall = started.elapsed();
    let machine = procstat::MachineCpu::read()?.since(machine_before);
    let own_cpu = procstat::own_cpu_seconds()? - own_before;
    let postgres_cpu = procstat::postgres_cpu_seconds()?
        .zip(postgres_before)
        .map(|(after, before)| after - before);
    let trips = proxy.round_trips() - trips_before;
    let per_server: Vec<ProcessCost> = world
        .servers
        .iter()
        .zip(&cpu_before)
        .map(|(s, before)| {
            procstat::cost(s.pid()).map(|c| ProcessCost {
                peak_rss_mb: c.peak_rss_mb,
                cpu_seconds: c.cpu_seconds - before,
            })
        })
        .collect::<anyhow::Result<_>>()?;

    let rows = measure::rollouts(&mut world.db, &ids).await?;
    let applies = Applies::collect(&world.sim);
    let transitions = measure::transitions(&mut world.db, &world.layout, &applies, &rows).await?;
    let events = count_events(&mut world.db).await? - events_before;
    let driven_once = if servers > 1 {
        Some(measure::driven_once(&mut world.db, &world.layout, &applies, &rows).await?)
    } else {
        None
    };
    let per_transition = |n: u64| n as f64 / transitions.stage_transitions.max(1) as f64;
    let by_statement: Vec<(String, f64)> = proxy
        .by_statement()
        .into_iter()
        .map(|(sql, n)| {
            let before = statements_before.get(&sql).copied().unwrap_or(0);
            (sql, per_transition(n - before))
        })
        .filter(|(_, n)| *n > 0.0)
        .collect();
    let seconds = wall.as_secs_f64();
    let cpu: f64 = per_server.iter().map(|c| c.cpu_seconds).sum();
    let capacity = Capacity {
        servers,
        rollouts: args.rollouts,
        clusters: args.clusters,
        regions: args.regions,
        wall_seconds: seconds,
        stage_transitions_per_second: transitions.stage_transitions as f64 / seconds,
        events_per_second: events as f64 / seconds,
        per_server,
        cpu_seconds_per_rollout: cpu / args.rollouts as f64,
        postgres_cpu_seconds_per_rollout: postgres_cpu.map(|s| s / args.rollouts as f64),
        bench_cpu_seconds_per_rollout: own_cpu / args.rollouts as f64,
        machine_busy: machine.busy / machine.total.max(f64::EPSILON),
        machine_steal: machine.steal / machine.total.max(f64::EPSILON),
        db_round_trips: trips,
        db_round_trips_per_stage_transition: trips as f64
            / transitions.stage_transitions.max(1) as f64,
        db_round_trips_per_event: trips as f64 / events.max(1) as f64,
        db_round_trips_by_statement: by_statement,
        transitions,
        driven_once,
    };
    Ok((capacity, world, ids))
}

async fn count_events(db: &mut sqlx::PgConnection) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(db)
        .await?)
}

#[derive(Clone, Debug, Serialize)]
pub struct ApiLatency {
    pub endpoint: String,
    pub connections: u32,
    pub requests_per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub non_2xx: u64,
}

pub async fn capacity_then_api(args: &Args) -> anyhow::Result<(Option<Capacity>, Vec<ApiLatency>)> {
    let (capacity, world, ids) = capacity_run(args, 1).await?;
    let api = if args.wants("api") {
        api_latency(args, &world, ids.first().copied().context("no rollout")?)?
    } else {
        Vec::new()
    };
    world.finish().await?;
    Ok((args.wants("capacity").then_some(capacity), api))
}

pub async fn scaleout(args: &Args) -> anyhow::Result<Capacity> {
    let (capacity, world, _) = capacity_run(args, 2).await?;
    world.finish().await?;
    Ok(capacity)
}

/// `wrk` against the first server, while its engine keeps working.
fn api_latency(args: &Args, world: &World, rollout: Uuid) -> anyhow::Result<Vec<ApiLatency>> {
    if std::process::Command::new("wrk")
        .arg("--version")
        .output()
        .is_err()
    {
        bail!("the API part needs `wrk` (Debian: apt-get install wrk)");
    }
    let connections = 16;
    let script = world.dir.path().join("post.lua");
    std::fs::write(&script, post_script(args.rollouts))?;
    let get = wrk(
        args,
        connections,
        &format!("{}/api/v1/rollouts/{rollout}", world.url()),
        None,
    )?;
    let post = wrk(
        args,
        connections,
        &format!("{}/api/v1/releases", world.url()),
        Some(&script),
    )?;
    Ok(vec![
        ApiLatency {
            endpoint: "GET /api/v1/rollouts/{id}".to_owned(),
            ..get
        },
        ApiLatency {
            endpoint: "POST /api/v1/releases".to_owned(),
            ..post
        },
    ])
}

/// New releases for every application in turn, queued behind any active
/// rollout; versions are unique per thread and request.
fn post_script(apps: usize) -> String {
    format!(
        r#"-- `id` is set per thread by setup(); it must stay a global for that.
counter = 0
local threads = 0
function setup(thread)
  thread:set("id", threads)
  threads = threads + 1
end
function request()
  counter = counter + 1
  local app = string.format("a%04d", (counter * 7 + id) % {apps})
  local body = string.format('{{"application":"%s","version":"api-%d-%d","image":"registry.example/bench:api","on_active":"queue"}}', app, id, counter)
  return wrk.format("POST", nil, {{["Authorization"] = "Bearer {TOKEN}", ["Content-Type"] = "application/json"}}, body)
end
"#
    )
}

fn wrk(
    args: &Args,
    connections: u32,
    url: &str,
    script: Option<&std::path::Path>,
) -> anyhow::Result<ApiLatency> {
    let mut command = std::process::Command::new("wrk");
    command
        .arg("--latency")
        .arg("-t2")
        .arg(format!("-c{connections}"))
        .arg(format!("-d{}s", args.api_seconds))
        .arg("-H")
        .arg(format!("Authorization: Bearer {TOKEN}"));
    if let Some(script) = script {
        command.arg("-s").arg(script);
    }
    let output = command.arg(url).output().context("run wrk")?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        bail!(
            "wrk failed: {text}{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    parse_wrk(&text, connections).with_context(|| format!("unexpected wrk output:\n{text}"))
}

fn parse_wrk(text: &str, connections: u32) -> Option<ApiLatency> {
    let value_after = |prefix: &str| -> Option<&str> {
        text.lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix(prefix))
            .map(str::trim)
    };
    let latency = |v: &str| -> Option<f64> {
        let (number, factor) = if let Some(n) = v.strip_suffix("us") {
            (n, 0.001)
        } else if let Some(n) = v.strip_suffix("ms") {
            (n, 1.0)
        } else if let Some(n) = v.strip_suffix('s') {
            (n, 1000.0)
        } else {
            return None;
        };
        number.parse::<f64>().ok().map(|n| n * factor)
    };
    let non_2xx = value_after("Non-2xx or 3xx responses:")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Some(ApiLatency {
        endpoint: String::new(),
        connections,
        requests_per_second: value_after("Requests/sec:")?.parse().ok()?,
        p50_ms: latency(value_after("50%")?)?,
        p99_ms: latency(value_after("99%")?)?,
        non_2xx,
    })
}

pub fn spread_row(name: &str, s: &Spread) -> String {
    format!(
        "{name:<52} {:>9.1} {:>9.1} {:>9.1}   (n={})",
        s.median_ms, s.p99_ms, s.max_ms, s.count
    )
}
