//! The kubeconfig a fleet hands to Meridian and kubectl: one context per
//! cluster, named like the cluster, plain HTTP, one shared dummy token.

use serde_json::json;

use super::auth::SIM_TOKEN;

/// The user every context refers to.
pub const SIM_USER: &str = "meridian-sim";

/// `(cluster name, base URL)` pairs to YAML; the first cluster is the
/// current context so bare `kubectl` calls work too.
pub fn render(clusters: &[(String, String)]) -> String {
    let doc = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "preferences": {},
        "current-context": clusters.first().map(|(name, _)| name.as_str()).unwrap_or(""),
        "clusters": clusters
            .iter()
            .map(|(name, url)| json!({"name": name, "cluster": {"server": url}}))
            .collect::<Vec<_>>(),
        "contexts": clusters
            .iter()
            .map(|(name, _)| json!({"name": name, "context": {"cluster": name, "user": SIM_USER, "namespace": "default"}}))
            .collect::<Vec<_>>(),
        "users": [{"name": SIM_USER, "user": {"token": SIM_TOKEN}}],
    });
    // Serialising a JSON value to YAML cannot fail; fall back to JSON, which
    // is valid YAML as well, rather than panic.
    serde_yaml_ng::to_string(&doc).unwrap_or_else(|_| doc.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kube_reads_every_context() {
        let yaml = render(&[
            ("eu-1".to_owned(), "http://127.0.0.1:1234".to_owned()),
            ("us-1".to_owned(), "http://127.0.0.1:5678".to_owned()),
        ]);
        let parsed = kube::config::Kubeconfig::from_yaml(&yaml).expect("valid kubeconfig");
        let names: Vec<&str> = parsed.contexts.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["eu-1", "us-1"]);
        assert_eq!(parsed.current_context.as_deref(), Some("eu-1"));
        let server = parsed.clusters[1]
            .cluster
            .as_ref()
            .and_then(|c| c.server.as_deref());
        assert_eq!(server, Some("http://127.0.0.1:5678"));
    }
}
