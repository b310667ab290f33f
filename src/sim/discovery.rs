//! The legacy discovery documents (`/version`, `/api`, `/apis`, resource
//! lists) that `kubectl` and `kube` discovery read before anything else.
//! They advertise exactly the kinds in [`super::kinds`].

use std::net::SocketAddr;

use serde_json::{Value, json};

use super::kinds::{self, Kind};

/// The Kubernetes version the sim claims to be (matches k8s-openapi `v1_33`).
pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": "33",
        "gitVersion": "v1.33.0-meridian-sim",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2025-01-01T00:00:00Z",
        "goVersion": "go1.24.0",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

/// `GET /api`.
pub fn core_versions(addr: SocketAddr) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": addr.to_string()}],
    })
}

fn group(name: &str) -> Value {
    let version = json!({"groupVersion": format!("{name}/v1"), "version": "v1"});
    json!({
        "name": name,
        "versions": [version.clone()],
        "preferredVersion": version,
    })
}

/// `GET /apis`.
pub fn group_list() -> Value {
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": [group("apps")]})
}

/// `GET /apis/apps`.
pub fn apps_group() -> Value {
    let mut g = group("apps");
    if let Some(map) = g.as_object_mut() {
        map.insert("kind".into(), json!("APIGroup"));
        map.insert("apiVersion".into(), json!("v1"));
    }
    g
}

fn resource(kind: &Kind) -> Value {
    json!({
        "name": kind.plural,
        "singularName": kind.singular,
        "namespaced": kind.namespaced,
        "kind": kind.kind,
        "verbs": kind.verbs(),
        "shortNames": kind.short_names,
        // `kubectl get all` expands the `all` category from discovery.
        "categories": if kind.workload.is_some() || kind.kind == "Service" { vec!["all"] } else { vec![] },
    })
}

/// `GET /api/v1` or `GET /apis/apps/v1`; workloads also list `/status`.
pub fn resource_list(group: &str, version: &str) -> Value {
    let mut resources = Vec::new();
    for kind in kinds::in_group_version(group, version) {
        resources.push(resource(kind));
        if kind.workload.is_some() {
            resources.push(json!({
                "name": format!("{}/status", kind.plural),
                "singularName": "",
                "namespaced": kind.namespaced,
                "kind": kind.kind,
                "verbs": ["get"],
            }));
        }
    }
    let group_version = if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    };
    json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": resources,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_lists_advertise_served_kinds() {
        let apps = resource_list("apps", "v1");
        let names: Vec<&str> = apps["resources"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["name"].as_str())
            .collect();
        assert_eq!(
            names,
            [
                "deployments",
                "deployments/status",
                "statefulsets",
                "statefulsets/status",
                "daemonsets",
                "daemonsets/status"
            ]
        );
        let core = resource_list("", "v1");
        assert_eq!(core["groupVersion"], "v1");
        assert_eq!(core["resources"].as_array().map(Vec::len), Some(4));
    }
}
