//! The one table the benchmark prints, and the same figures as JSON.

use std::path::PathBuf;

use serde::Serialize;

use crate::Args;
use crate::layout::rollout_time;
use crate::measure::{Reaction, Transitions};
use crate::procstat;
use crate::scenarios::{ApiLatency, Capacity, Light, spread_row};

#[derive(Serialize)]
pub struct Report {
    pub machine: String,
    pub command: String,
    pub simulated_rollout_ms: f64,
    pub bake_ms: f64,
    /// Capacity runs' creations spread over this long (0: at once).
    pub spread_ms: f64,
    /// The servers' `polling.rolled_out`, when the command set it.
    pub poll_rolled_out_ms: Option<f64>,
    /// Finished rollouts per application written before each world runs.
    pub history: usize,
    /// Rollouts run in every world before it is measured.
    pub warm_up: usize,
    /// One rollout alone, then `--light` at once.
    pub light: Vec<Light>,
    pub reaction: Option<Reaction>,
    pub capacity: Option<Capacity>,
    pub api: Vec<ApiLatency>,
    pub scaleout: Option<Capacity>,
}

impl Report {
    pub fn new(args: &Args) -> Report {
        Report {
            machine: procstat::machine(),
            command: std::env::args().collect::<Vec<_>>().join(" "),
            simulated_rollout_ms: rollout_time().as_secs_f64() * 1000.0,
            bake_ms: args.bake.as_secs_f64() * 1000.0,
            spread_ms: args.spread.as_secs_f64() * 1000.0,
            poll_rolled_out_ms: args.poll_rolled_out.map(|p| p.as_secs_f64() * 1000.0),
            history: args.history,
            warm_up: args.warm_up,
            light: Vec::new(),
            reaction: None,
            capacity: None,
            api: Vec::new(),
            scaleout: None,
        }
    }

    pub fn print(&self) {
        println!("\nMeridian fleet benchmark on {}", self.machine);
        let spread = if self.spread_ms > 0.0 {
            format!(
                ", capacity rollouts created over {:.0} s",
                self.spread_ms / 1000.0
            )
        } else {
            String::new()
        };
        let polling = match self.poll_rolled_out_ms {
            Some(ms) => format!(", baking targets polled every {ms:.0} ms"),
            None => String::new(),
        };
        let warm_up = format!(
            "each world: {} finished rollouts per application in the database, then {} rollouts run before measuring",
            self.history, self.warm_up
        );
        println!(
            "simulated roll-out {:.0} ms per cluster, bake {:.0} ms per stage{spread}{polling}\n{warm_up}\n",
            self.simulated_rollout_ms, self.bake_ms
        );
        println!("{:<52} {:>9} {:>9} {:>9}", "", "median", "p99", "max");
        for light in &self.light {
            let t = &light.transitions;
            if light.rollouts == 1 {
                println!("-- one rollout alone, ms");
            } else {
                println!("-- {} rollouts at once (light load), ms", light.rollouts);
            }
            print_transitions(t);
        }
        if let Some(r) = &self.reaction {
            println!(
                "-- reaction ({} rolled back, {} other), ms",
                r.rolled_back, r.other
            );
            println!(
                "{}",
                spread_row(
                    "first failing reading -> first rollback apply",
                    &r.to_first_restore_apply
                )
            );
            println!(
                "{}",
                spread_row(
                    "first failing reading -> all restored (recorded)",
                    &r.to_all_restored
                )
            );
        }
        for run in self.capacity.iter().chain(&self.scaleout) {
            print_capacity(run);
        }
        if !self.api.is_empty() {
            println!("-- API under load (wrk, engine running)");
            println!(
                "{:<40} {:>6} {:>10} {:>9} {:>9} {:>8}",
                "", "conns", "req/s", "p50 ms", "p99 ms", "non-2xx"
            );
            for a in &self.api {
                println!(
                    "{:<40} {:>6} {:>10.0} {:>9.2} {:>9.2} {:>8}",
                    a.endpoint, a.connections, a.requests_per_second, a.p50_ms, a.p99_ms, a.non_2xx
                );
            }
        }
    }

    pub fn write_json(&self) -> anyhow::Result<PathBuf> {
        let path = bench_dir()?.join("fleet.json");
        std::fs::write(&path, serde_json::to_string_pretty(self)?)?;
        Ok(path)
    }
}

/// `target/bench`, where the report and kept logs go.
pub fn bench_dir() -> anyhow::Result<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .map(|p| p.join("bench"))
        .unwrap_or_else(|| PathBuf::from("target/bench"));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// The rows every run of good releases shows.
fn print_transitions(t: &Transitions) {
    println!(
        "{}",
        spread_row("stage ready -> next stage's first apply", &t.overhead)
    );
    println!(
        "{}",
        spread_row(
            "  of which: ready -> apply decided",
            &t.overhead_to_decision
        )
    );
    println!(
        "{}",
        spread_row("  target rolled out -> Meridian noticed", &t.noticed)
    );
    println!("{}", spread_row("rollout created -> first apply", &t.start));
    println!(
        "{}",
        spread_row("  of which: created -> apply decided", &t.start_to_decision)
    );
    println!("{}", spread_row("last stage ready -> succeeded", &t.finish));
    println!(
        "{:<52} {:>9.3} {:>9} {:>9.3}",
        "duration / plan-given minimum", t.duration_ratio_median, "", t.duration_ratio_max
    );
    // Meridian cannot see a cluster rolled out before the simulator
    // finished it; if it did, the figures above rest on a wrong model.
    if t.model_check_min_ms < 0.0 {
        println!(
            "WARNING: a target was reported rolled out {:.1} ms before the simulated roll-out could end; the benchmark's model of the simulator is wrong",
            -t.model_check_min_ms
        );
    }
}

fn print_capacity(run: &Capacity) {
    let t = &run.transitions;
    println!(
        "-- capacity: {} rollouts, {} clusters, {} regions, {} server(s): {} succeeded, {} not, in {:.1} s",
        run.rollouts,
        run.clusters,
        run.regions,
        run.servers,
        t.succeeded,
        t.not_succeeded,
        run.wall_seconds
    );
    print_transitions(t);
    println!(
        "{:<52} {:>9.1}",
        "stage transitions per second", run.stage_transitions_per_second
    );
    println!(
        "{:<52} {:>9.1}",
        "events (state changes) per second", run.events_per_second
    );
    for (i, cost) in run.per_server.iter().enumerate() {
        println!(
            "{:<52} {:>9.0} MB peak RSS, {:.1} CPU s",
            format!("server {i}"),
            cost.peak_rss_mb,
            cost.cpu_seconds
        );
    }
    println!(
        "{:<52} {:>9.3}",
        "server CPU seconds per rollout", run.cpu_seconds_per_rollout
    );
    // Where the rest of the machine's CPU went: what a rollout costs
    // beyond the server bounds how many a second these cores carry at all.
    let postgres = run
        .postgres_cpu_seconds_per_rollout
        .map_or_else(|| "not local".to_owned(), |s| format!("{s:.3}"));
    println!("{:<52} {postgres:>9}", "  PostgreSQL's");
    println!(
        "{:<52} {:>9.3}",
        "  the benchmark's (simulated fleet, load, proxy)", run.bench_cpu_seconds_per_rollout
    );
    println!(
        "{:<52} {:>8.0}% ({:.0}% stolen by the hypervisor)",
        "machine CPU busy during the run",
        run.machine_busy * 100.0,
        run.machine_steal * 100.0
    );
    println!(
        "{:<52} {:>9.1} ({:.1} per event)",
        "DB round trips per stage transition",
        run.db_round_trips_per_stage_transition,
        run.db_round_trips_per_event
    );
    for (sql, n) in run.db_round_trips_by_statement.iter().take(8) {
        println!(
            "  {:<50} {n:>9.1}",
            sql.chars().take(50).collect::<String>()
        );
    }
    if let Some(once) = &run.driven_once {
        println!(
            "{:<52} {} targets, {} applied twice, {} with two applied events; events by worker {:?}",
            "driven once",
            once.targets,
            once.applied_more_than_once,
            once.applying_events_more_than_once,
            once.workers
        );
    }
}
