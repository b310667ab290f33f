//! `meridian demo` (the service with a simulated fleet) and `meridian sim`
//! (the simulated fleet alone, for a service run separately).

mod prometheus;

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use crate::{
    server::{ServeOptions, serve_until, spawn_signal_handler},
    sim::{SimClusterSpec, SimFleet, SimOptions},
};

/// The demo fleet: 8 clusters in 5 regions, labelled for the demo plan's
/// canary, small, large and global waves.
pub const DEMO_CLUSTERS: [(&str, &str, &str, &str); 8] = [
    // (name, region, timezone, labels)
    (
        "use1-canary",
        "us-east",
        "America/New_York",
        "tier=canary,size=small",
    ),
    ("euw1-a", "eu-west", "Europe/Dublin", "size=small"),
    ("aps1-a", "ap-south", "Asia/Kolkata", "size=small"),
    ("use1-a", "us-east", "America/New_York", "size=large"),
    ("euc1-a", "eu-central", "Europe/Berlin", "size=large"),
    ("usw2-a", "us-west", "America/Los_Angeles", "size=large"),
    ("euw1-b", "eu-west", "Europe/Dublin", "size=medium"),
    ("aps1-b", "ap-south", "Asia/Kolkata", "size=medium"),
];

pub fn demo_cluster_specs() -> Vec<SimClusterSpec> {
    DEMO_CLUSTERS
        .iter()
        .map(|(name, region, _, _)| SimClusterSpec {
            name: (*name).to_owned(),
            region: (*region).to_owned(),
        })
        .collect()
}

/// How the demo judges health between stages.
pub enum DemoGate {
    /// The error ratio from Prometheus scraping the simulated clusters.
    Prometheus { url: String },
    /// The simulated app's own health endpoint, through the sim's control API.
    Http { control_url: String },
}

impl DemoGate {
    fn yaml(&self) -> (String, String) {
        match self {
            DemoGate::Prometheus { url } => (
                format!("prometheus: {{url: \"{url}\"}}\n"),
                r#"      - name: error-rate
        prometheus:
          query: 'sum(rate(app_http_errors_total{cluster="{{ cluster }}",app="{{ application }}"}[5s])) / sum(rate(app_http_requests_total{cluster="{{ cluster }}",app="{{ application }}"}[5s]))'
          comparator: "<"
          threshold: 0.05
        interval: 2s
        failure_limit: 2
        inconclusive_limit: 5
"#
                .to_owned(),
            ),
            DemoGate::Http { control_url } => (
                String::new(),
                format!(
                    r#"      - name: error-rate
        http:
          url: "{control_url}/clusters/{{{{ cluster }}}}/apps/{{{{ namespace }}}}/{{{{ application }}}}/health"
          expect_status: 2xx
          json_field: status
          json_value: ok
        interval: 2s
        failure_limit: 2
"#
                ),
            ),
        }
    }
}

/// The config file for the demo fleet: its clusters, the `shop` sample
/// application and the `worldwide` plan (bake times of seconds) with an
/// error-rate gate on every stage.
pub fn demo_config_yaml(kubeconfig: &Path, gate: &DemoGate) -> String {
    let (settings, gates) = gate.yaml();
    let mut out = format!(
        "kubeconfig: {}\n{settings}clusters:\n",
        kubeconfig.display()
    );
    for (name, region, timezone, labels) in DEMO_CLUSTERS {
        let labels: Vec<String> = labels
            .split(',')
            .map(|kv| kv.replacen('=', ": ", 1))
            .collect();
        out.push_str(&format!(
            "  - name: {name}\n    region: {region}\n    timezone: {timezone}\n    labels: {{{}}}\n",
            labels.join(", ")
        ));
    }
    out.push_str(&DEMO_CATALOG.replace("    gates: []\n", &format!("    gates:\n{gates}")));
    out
}

const DEMO_CATALOG: &str = r#"plans:
  - name: worldwide
    gates: []
    stages:
      - name: canary
        clusters: {labels: {tier: canary}}
        bake: 10s
        gates: [error-rate]
      - name: small
        clusters: {labels: {size: small}}
        max_parallel: 2
        bake: 10s
        gates: [error-rate]
      - name: large
        clusters: {labels: {size: large}}
        max_parallel: 2
        bake: 10s
        gates: [error-rate]
      - name: global
        clusters: all
        max_parallel: 3
        bake: 10s
        gates: [error-rate]
applications:
  - name: shop
    namespace: shop
    plan: worldwide
    parameters:
      defaults: {replicas: 2}
      labels:
        - selector: {size: large}
          values: {replicas: 4}
    templates:
      - |
        apiVersion: v1
        kind: ConfigMap
        metadata:
          name: shop-config
        data:
          region: "{{ region }}"
          cluster: "{{ cluster }}"
          version: "{{ version }}"
      - |
        apiVersion: apps/v1
        kind: Deployment
        metadata:
          name: shop
          labels: {app: shop}
        spec:
          replicas: {{ params.replicas }}
          progressDeadlineSeconds: {{ params.progress_deadline_seconds | default(20) }}
          selector:
            matchLabels: {app: shop}
          template:
            metadata:
              labels: {app: shop, version: "{{ version }}"}
            spec:
              containers:
                - name: shop
                  image: "{{ image }}"
                  env:
                    - {name: REGION, value: "{{ region }}"}
"#;

/// Files `meridian sim --out DIR` writes.
pub struct SimFiles {
    pub kubeconfig: PathBuf,
    pub config: PathBuf,
}

/// Writes the kubeconfig, the config file and `sim.json` for a fleet.
pub fn write_sim_files(fleet: &SimFleet, dir: &Path, gate: &DemoGate) -> anyhow::Result<SimFiles> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let dir = dir
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", dir.display()))?;
    let kubeconfig = dir.join("kubeconfig");
    fleet.write_kubeconfig(&kubeconfig)?;
    let config = dir.join("meridian.yaml");
    std::fs::write(&config, demo_config_yaml(&kubeconfig, gate))
        .with_context(|| format!("cannot write {}", config.display()))?;
    let clusters: serde_json::Map<String, serde_json::Value> = fleet
        .cluster_names()
        .into_iter()
        .filter_map(|name| {
            let url = fleet.cluster(&name)?.base_url();
            Some((name, serde_json::Value::String(url)))
        })
        .collect();
    let sim_json = serde_json::json!({ "control_url": fleet.control_url(), "clusters": clusters });
    std::fs::write(dir.join("sim.json"), serde_json::to_vec_pretty(&sim_json)?)
        .context("cannot write sim.json")?;
    Ok(SimFiles { kubeconfig, config })
}

/// `host:port` of each simulated cluster, for Prometheus.
fn scrape_targets(fleet: &SimFleet) -> Vec<String> {
    fleet
        .clusters()
        .iter()
        .map(|c| c.addr().to_string())
        .collect()
}

/// `meridian sim --out DIR`: runs the simulated fleet until Ctrl-C.
pub async fn run_sim(out: &Path) -> anyhow::Result<()> {
    let fleet = SimFleet::start(demo_cluster_specs(), SimOptions::default()).await?;
    let gate = DemoGate::Http {
        control_url: fleet.control_url(),
    };
    let files = write_sim_files(&fleet, out, &gate)?;
    println!(
        "simulated fleet of {} clusters is running",
        fleet.cluster_names().len()
    );
    println!("  kubeconfig:   {}", files.kubeconfig.display());
    println!("  config file:  {}", files.config.display());
    println!("  control API:  {}", fleet.control_url());
    println!("start the service against it with:");
    println!("  meridian serve --config {}", files.config.display());
    let shutdown = CancellationToken::new();
    spawn_signal_handler(shutdown.clone());
    shutdown.cancelled().await;
    fleet.shutdown().await;
    Ok(())
}

/// `meridian demo`: a simulated fleet plus the service, until Ctrl-C.
pub async fn run_demo(mut options: ServeOptions) -> anyhow::Result<()> {
    let fleet = SimFleet::start(demo_cluster_specs(), SimOptions::default()).await?;
    let dir = std::env::temp_dir().join(format!("meridian-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let (gate, prometheus) = match prometheus::find_binary() {
        Some(binary) => {
            let targets = scrape_targets(&fleet);
            let running = prometheus::start(&binary, &dir, &targets).await?;
            println!(
                "Prometheus is scraping the simulated clusters at {}",
                running.url
            );
            (
                DemoGate::Prometheus {
                    url: running.url.clone(),
                },
                Some(running),
            )
        }
        None => {
            println!(
                "`prometheus` is not installed (apt-get install prometheus): the demo's error-rate gate is an HTTP check of the simulated app's health endpoint instead."
            );
            (
                DemoGate::Http {
                    control_url: fleet.control_url(),
                },
                None,
            )
        }
    };
    let files = write_sim_files(&fleet, &dir, &gate)?;
    options.config = Some(files.config);
    // The API needs a token; a demo with none set makes one up and says it.
    let token = match std::env::var("MERIDIAN_BOOTSTRAP_TOKEN") {
        Ok(value) if !value.trim().is_empty() => value,
        _ => {
            let generated = format!("demo-{}", hex::encode(rand::random::<[u8; 16]>()));
            options.bootstrap_token = Some(generated.clone());
            generated
        }
    };
    let shutdown = CancellationToken::new();
    spawn_signal_handler(shutdown.clone());
    let result = serve_until(options, shutdown, |address| {
        let url = format!("http://{address}");
        println!();
        println!("Meridian demo is running: 8 simulated clusters in 5 regions.");
        println!("  API:        {url}/api/v1/rollouts");
        println!("  dashboard:  {url}/");
        println!("  sim control: {}", fleet.control_url());
        println!();
        println!("  admin token: {token}   (sign in to the dashboard with it)");
        println!();
        println!("Start a good release:");
        println!(
            "  curl -sS -X POST {url}/api/v1/releases -H 'authorization: Bearer {token}' -H 'content-type: application/json' \\\n    -d '{{\"application\":\"shop\",\"version\":\"1.1.0\",\"image\":\"registry.example/shop:1.1.0\"}}'"
        );
        println!("A release that never becomes ready (rolled back in its first stage): use an image tag containing `crashloop`.");
        println!("A release whose error rate fails the gate during the canary's bake: an image tag containing `faulty`.");
        println!("Gate readings: {url}/api/v1/rollouts/<id>/gates");
        println!("Press Ctrl-C to stop.");
    })
    .await;
    drop(prometheus);
    fleet.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}
