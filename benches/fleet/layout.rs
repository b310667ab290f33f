//! The benchmark's fleet and catalog: clusters spread evenly over regions,
//! one plan per region (canary cluster, the rest of the region, then the
//! next region), applications spread over the plans.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use meridian::sim::{SimClusterSpec, SimOptions};

/// How fast the simulated controllers move: a one-replica Deployment is
/// rolled out `observe_delay + replica_ready_after` after its apply.
pub const SIM: SimOptions = SimOptions {
    replica_ready_after: Duration::from_millis(200),
    observe_delay: Duration::from_millis(20),
    daemonset_nodes: 1,
};

/// Time the simulated cluster needs to roll out one application.
pub fn rollout_time() -> Duration {
    SIM.observe_delay + SIM.replica_ready_after
}

#[derive(Clone, Debug)]
pub struct Layout {
    pub clusters: Vec<SimClusterSpec>,
    pub regions: usize,
    pub bake: Duration,
    /// A gate on the second stage (`wave`) that fails when the sim's app
    /// health check does; `None` for ungated plans.
    pub gate_url: Option<String>,
    /// The servers' `polling.rolled_out`; `None`: their default.
    pub poll_rolled_out: Option<Duration>,
}

/// One stage's clusters, for one application.
pub type Stages = Vec<Vec<String>>;

impl Layout {
    pub fn new(clusters: usize, regions: usize, bake: Duration) -> Layout {
        let regions = regions.clamp(1, clusters.max(1));
        let per_region = clusters.div_ceil(regions);
        let clusters = (0..clusters)
            .map(|i| SimClusterSpec::new(format!("c{i:03}"), region_name(i / per_region)))
            .collect();
        Layout {
            clusters,
            regions,
            bake,
            gate_url: None,
            poll_rolled_out: None,
        }
    }

    fn region_clusters(&self, region: usize) -> Vec<String> {
        let name = region_name(region);
        self.clusters
            .iter()
            .filter(|c| c.region == name)
            .map(|c| c.name.clone())
            .collect()
    }

    pub fn plan_of(&self, app: usize) -> usize {
        app % self.regions
    }

    /// The clusters of each stage of plan `plan`.
    pub fn stages(&self, plan: usize) -> Stages {
        let home = self.region_clusters(plan);
        let next = self.region_clusters((plan + 1) % self.regions);
        let (canary, wave) = home.split_at(1.min(home.len()));
        let mut stages = vec![canary.to_vec()];
        if !wave.is_empty() {
            stages.push(wave.to_vec());
        }
        if self.regions > 1 && !next.is_empty() {
            stages.push(next);
        }
        stages
    }

    /// The plan-given minimum of one rollout: every stage rolls all its
    /// clusters out in parallel, then bakes.
    pub fn minimum(&self, plan: usize) -> Duration {
        let stages = u32::try_from(self.stages(plan).len()).unwrap_or(u32::MAX);
        (rollout_time() + self.bake) * stages
    }

    pub fn config_yaml(&self, kubeconfig: &Path, apps: usize) -> String {
        let mut out = format!("kubeconfig: {}\nclusters:\n", kubeconfig.display());
        for c in &self.clusters {
            let _ = writeln!(
                out,
                "  - {{name: {}, region: {}, timezone: UTC}}",
                c.name, c.region
            );
        }
        if let Some(poll) = self.poll_rolled_out {
            let _ = writeln!(out, "polling: {{rolled_out: {}ms}}", poll.as_millis());
        }
        out.push_str("plans:\n");
        let bake_ms = self.bake.as_millis();
        for plan in 0..self.regions {
            let _ = writeln!(out, "  - name: p{plan:02}");
            if let Some(url) = &self.gate_url {
                let _ = write!(
                    out,
                    r#"    gates:
      - name: health
        http:
          url: "{url}/clusters/{{{{ cluster }}}}/apps/{{{{ namespace }}}}/{{{{ application }}}}/health"
          expect_status: 2xx
          json_field: status
          json_value: ok
        interval: 250ms
        failure_limit: 1
"#
                );
            }
            out.push_str("    stages:\n");
            for (i, clusters) in self.stages(plan).iter().enumerate() {
                let gates = if self.gate_url.is_some() && i == 1 {
                    ", gates: [health]"
                } else {
                    ""
                };
                let _ = writeln!(
                    out,
                    "      - {{name: s{i}, clusters: {{names: [{}]}}, max_parallel: {}, bake: {bake_ms}ms{gates}}}",
                    clusters.join(", "),
                    clusters.len().max(1)
                );
            }
        }
        out.push_str("applications:\n");
        for app in 0..apps {
            let name = app_name(app);
            let plan = self.plan_of(app);
            let _ = write!(
                out,
                r#"  - name: {name}
    namespace: {name}
    plan: p{plan:02}
    templates:
      - |
        apiVersion: apps/v1
        kind: Deployment
        metadata: {{name: {name}}}
        spec:
          replicas: 1
          selector: {{matchLabels: {{app: {name}}}}}
          template:
            metadata: {{labels: {{app: {name}}}}}
            spec:
              containers:
                - {{name: app, image: "{{{{ image }}}}"}}
"#
            );
        }
        out
    }
}

pub fn region_name(i: usize) -> String {
    format!("r{i:02}")
}

pub fn app_name(i: usize) -> String {
    format!("a{i:04}")
}

/// The `i` of [`app_name`]`(i)`.
pub fn app_index(name: &str) -> usize {
    name.trim_start_matches('a').parse().unwrap_or(0)
}
