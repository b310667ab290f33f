//! `cargo bench --bench fleet`: runs Meridian for real (a `meridian serve`
//! child process, PostgreSQL, simulated clusters over HTTP) and measures what
//! Meridian's own machinery adds to a rollout: stage transition overhead,
//! reaction time to a failing gate, capacity, API latency and scale-out.
//!
//! Not a test: it asserts nothing about time. It prints one table and
//! writes the same figures as JSON to `target/bench/fleet.json`.

mod dbproxy;
mod layout;
mod measure;
mod procstat;
mod report;
mod scenarios;
mod world;

use clap::Parser;

#[derive(Parser, Debug, Clone)]
#[command(about = "Meridian fleet benchmark")]
pub struct Args {
    /// Concurrent rollouts (one application each) in the capacity runs.
    #[arg(long, default_value_t = 1000)]
    rollouts: usize,
    /// Simulated clusters.
    #[arg(long, default_value_t = 100)]
    clusters: usize,
    /// Regions the clusters are spread over (evenly).
    #[arg(long, default_value_t = 20)]
    regions: usize,
    /// Bake time of every stage.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    bake: std::time::Duration,
    /// Spread the capacity runs' rollout creations evenly over this long
    /// (0: all at once, in lockstep). With a spread the stages of different
    /// rollouts end at different moments, which shows the overhead at a
    /// sustained rate instead of the drain time of one burst.
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    spread: std::time::Duration,
    /// How often the servers poll a rolled-out (baking) target besides
    /// their watches: the config file's `polling.rolled_out` (default: the
    /// server's own, 5s).
    #[arg(long, value_parser = humantime::parse_duration)]
    poll_rolled_out: Option<std::time::Duration>,
    /// Rollouts of the light-load transition run (after a run of one alone).
    #[arg(long, default_value_t = 20)]
    light: usize,
    /// Rollouts of other applications run to the end in every world
    /// before it is measured: the figures are those of a server that has
    /// been running (0: measure the first requests after a start).
    #[arg(long, default_value_t = 20)]
    warm_up: usize,
    /// Finished (rolled back) rollouts, up to ten targets each, written per
    /// application before the server starts work, then ANALYZE: the planner
    /// plans for a database in use, not for empty tables (0: start empty).
    #[arg(long, default_value_t = 5)]
    history: usize,
    /// Rollouts rolled back in the reaction run.
    #[arg(long, default_value_t = 10)]
    reactions: usize,
    /// Seconds of load per API endpoint.
    #[arg(long, default_value_t = 10)]
    api_seconds: u64,
    /// Which parts to run (comma separated): light, reaction, capacity, api, scaleout.
    #[arg(
        long,
        default_value = "light,reaction,capacity,api,scaleout",
        value_delimiter = ','
    )]
    only: Vec<String>,
    /// PostgreSQL server for the benchmark's (fresh, dropped after) databases.
    #[arg(
        long,
        env = "MERIDIAN_BENCH_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    database_url: String,
    /// Accepted and ignored: cargo passes `--bench` to every bench target.
    #[arg(long, hide = true)]
    bench: bool,
}

impl Args {
    fn wants(&self, part: &str) -> bool {
        self.only.iter().any(|p| p == part)
    }

    fn preparation(&self) -> world::Preparation {
        world::Preparation {
            history: self.history,
            warm_up: self.warm_up,
        }
    }
}

/// The same allocator as `meridian serve`: the simulated fleet shares the
/// two cores with the server it measures, so the less it spends the better.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // reqwest is built without a default TLS provider (see Cargo.toml).
    let _already_installed = rustls::crypto::ring::default_provider().install_default();
    let mut report = report::Report::new(&args);
    if args.wants("light") {
        // One rollout alone is the floor; the few at once share the cores.
        let mut runs = vec![1];
        if args.light != 1 {
            runs.push(args.light);
        }
        for rollouts in runs {
            report.light.push(scenarios::light(&args, rollouts).await?);
        }
    }
    if args.wants("reaction") {
        report.reaction = Some(scenarios::reaction(&args).await?);
    }
    if args.wants("capacity") || args.wants("api") {
        let (capacity, api) = scenarios::capacity_then_api(&args).await?;
        report.capacity = capacity;
        report.api = api;
    }
    if args.wants("scaleout") {
        report.scaleout = Some(scenarios::scaleout(&args).await?);
    }
    report.print();
    let path = report.write_json()?;
    println!("\nJSON: {}", path.display());
    Ok(())
}
