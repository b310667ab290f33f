//! Config files for tests: the simulated fleet's clusters plus the plans
//! and applications a test needs.

use std::path::{Path, PathBuf};

/// The clusters `meridian sim` runs, as config YAML, but those in `omit`
/// (which the sim's kubeconfig still has a context for).
fn clusters_yaml(omit: &[&str]) -> String {
    let mut out = String::from("clusters:\n");
    for (name, region, timezone, labels) in meridian::demo::DEMO_CLUSTERS {
        if omit.contains(&name) {
            continue;
        }
        let labels: Vec<String> = labels
            .split(',')
            .map(|kv| kv.replacen('=', ": ", 1))
            .collect();
        out.push_str(&format!(
            "  - {{name: {name}, region: {region}, timezone: {timezone}, labels: {{{}}}}}\n",
            labels.join(", ")
        ));
    }
    out
}

/// An application like the demo's: a ConfigMap and a Deployment of
/// `replicas` replicas whose progress deadline is `deadline_secs`.
pub fn app_yaml(name: &str, plan: &str, replicas: u32, deadline_secs: u32) -> String {
    format!(
        r#"  - name: {name}
    namespace: {name}
    plan: {plan}
    parameters:
      defaults: {{replicas: {replicas}}}
    templates:
      - |
        apiVersion: v1
        kind: ConfigMap
        metadata: {{name: {name}-config}}
        data: {{version: "{{{{ version }}}}", cluster: "{{{{ cluster }}}}"}}
      - |
        apiVersion: apps/v1
        kind: Deployment
        metadata: {{name: {name}}}
        spec:
          replicas: {{{{ params.replicas }}}}
          progressDeadlineSeconds: {deadline_secs}
          selector: {{matchLabels: {{app: {name}}}}}
          template:
            metadata: {{labels: {{app: {name}}}}}
            spec:
              containers:
                - {{name: app, image: "{{{{ image }}}}"}}
"#
    )
}

/// Writes `dir/meridian.yaml` naming the sim's kubeconfig.
pub fn write_config(dir: &Path, kubeconfig: &Path, plans: &str, applications: &str) -> PathBuf {
    write_config_with(dir, kubeconfig, plans, applications, "")
}

/// [`write_config`] with more top-level settings (e.g. `prometheus:`).
pub fn write_config_with(
    dir: &Path,
    kubeconfig: &Path,
    plans: &str,
    applications: &str,
    extra: &str,
) -> PathBuf {
    write_config_without(dir, kubeconfig, plans, applications, extra, &[])
}

/// [`write_config_with`] leaving the sim's clusters in `omit` out of the
/// file, as clusters to register later through the API.
pub fn write_config_without(
    dir: &Path,
    kubeconfig: &Path,
    plans: &str,
    applications: &str,
    extra: &str,
    omit: &[&str],
) -> PathBuf {
    let text = format!(
        "kubeconfig: {}\n{extra}{}plans:\n{plans}applications:\n{applications}",
        kubeconfig.display(),
        clusters_yaml(omit)
    );
    let path = dir.join("meridian.yaml");
    std::fs::write(&path, text).expect("write config");
    path
}
