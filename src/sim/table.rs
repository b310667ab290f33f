//! Server-side printing: the `meta.k8s.io/v1` `Table` that `kubectl get`
//! asks for (`Accept: application/json;as=Table;…`), with the same columns a
//! real API server prints for each kind.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::kinds::Kind;

/// Whether the client asked for a Table rendering.
pub fn wanted(accept: &str) -> bool {
    accept.split(',').any(|media| media.contains("as=Table"))
}

/// `kubectl`'s short human age: `45s`, `3m12s`, `17m`, `5h3m`, `2d4h`, `30d`.
pub fn human_age(age: chrono::TimeDelta) -> String {
    let s = age.num_seconds().max(0);
    let (m, h, d) = (s / 60, s / 3600, s / 86_400);
    match s {
        _ if s < 120 => format!("{s}s"),
        _ if m < 10 => format!("{m}m{}s", s % 60),
        _ if h < 3 => format!("{m}m"),
        _ if h < 8 => format!("{h}h{}m", m % 60),
        _ if h < 48 => format!("{h}h"),
        _ if d < 8 => format!("{d}d{}h", h % 24),
        _ => format!("{d}d"),
    }
}

fn column(name: &str, kind: &str, priority: u8, description: &str) -> Value {
    let format = if name == "Name" { "name" } else { "" };
    json!({"name": name, "type": kind, "format": format, "description": description, "priority": priority})
}

fn int(object: &Value, pointer: &str) -> i64 {
    object.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

fn text<'a>(object: &'a Value, pointer: &str) -> &'a str {
    object
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn age(object: &Value, now: DateTime<Utc>) -> String {
    DateTime::parse_from_rfc3339(text(object, "/metadata/creationTimestamp"))
        .map(|created| human_age(now - created.with_timezone(&Utc)))
        .unwrap_or_else(|_| "<unknown>".to_owned())
}

fn containers(object: &Value, field: &str) -> String {
    object
        .pointer("/spec/template/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c.get(field).and_then(Value::as_str))
        .collect::<Vec<_>>()
        .join(",")
}

fn count(object: &Value, pointer: &str) -> usize {
    object
        .pointer(pointer)
        .and_then(Value::as_object)
        .map_or(0, |m| m.len())
}

fn selector(object: &Value) -> String {
    object
        .pointer("/spec/selector/matchLabels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

fn ports(object: &Value) -> String {
    let ports: Vec<String> = object
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|p| {
            format!(
                "{}/{}",
                int(p, "/port"),
                p.get("protocol").and_then(Value::as_str).unwrap_or("TCP")
            )
        })
        .collect();
    if ports.is_empty() {
        "<none>".to_owned()
    } else {
        ports.join(",")
    }
}

/// Column definitions and cells of one kind.
fn layout(kind: &Kind) -> Vec<Value> {
    let name = column(
        "Name",
        "string",
        0,
        "Name must be unique within a namespace.",
    );
    let age = column(
        "Age",
        "string",
        0,
        "CreationTimestamp is a timestamp representing the server time when this object was created.",
    );
    match kind.kind {
        "Deployment" => vec![
            name,
            column("Ready", "string", 0, "Number of the pod with ready state"),
            column(
                "Up-to-date",
                "integer",
                0,
                "Total number of non-terminated pods targeted by this deployment that have the desired template spec.",
            ),
            column(
                "Available",
                "integer",
                0,
                "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.",
            ),
            age,
            column(
                "Containers",
                "string",
                1,
                "Names of each container in the template.",
            ),
            column(
                "Images",
                "string",
                1,
                "Images referenced by each container in the template.",
            ),
            column("Selector", "string", 1, "Label selector for pods."),
        ],
        "StatefulSet" => vec![
            name,
            column("Ready", "string", 0, "Number of the pod with ready state"),
            age,
            column(
                "Containers",
                "string",
                1,
                "Names of each container in the template.",
            ),
            column(
                "Images",
                "string",
                1,
                "Images referenced by each container in the template.",
            ),
        ],
        "DaemonSet" => vec![
            name,
            column(
                "Desired",
                "integer",
                0,
                "The total number of nodes that should be running the daemon pod.",
            ),
            column(
                "Current",
                "integer",
                0,
                "The number of nodes that are running at least 1 daemon pod.",
            ),
            column(
                "Ready",
                "integer",
                0,
                "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and ready.",
            ),
            column(
                "Up-to-date",
                "integer",
                0,
                "The total number of nodes that are running updated daemon pod",
            ),
            column(
                "Available",
                "integer",
                0,
                "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available.",
            ),
            age,
        ],
        "ConfigMap" => vec![name, column("Data", "integer", 0, "Number of keys."), age],
        "Secret" => vec![
            name,
            column("Type", "string", 0, "The type of the secret"),
            column("Data", "integer", 0, "The number of entries in the data"),
            age,
        ],
        "Service" => vec![
            name,
            column("Type", "string", 0, "The type of the service."),
            column("Cluster-IP", "string", 0, "The cluster IP of the service."),
            column(
                "External-IP",
                "string",
                0,
                "The external IP of the service.",
            ),
            column("Port(s)", "string", 0, "The ports of the service."),
            age,
        ],
        "Namespace" => vec![
            name,
            column("Status", "string", 0, "The status of the namespace"),
            age,
        ],
        _ => vec![name, age],
    }
}

fn cells(kind: &Kind, o: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let name = json!(text(o, "/metadata/name"));
    let age = json!(age(o, now));
    match kind.kind {
        "Deployment" => vec![
            name,
            json!(format!(
                "{}/{}",
                int(o, "/status/readyReplicas"),
                int(o, "/spec/replicas")
            )),
            json!(int(o, "/status/updatedReplicas")),
            json!(int(o, "/status/availableReplicas")),
            age,
            json!(containers(o, "name")),
            json!(containers(o, "image")),
            json!(selector(o)),
        ],
        "StatefulSet" => vec![
            name,
            json!(format!(
                "{}/{}",
                int(o, "/status/readyReplicas"),
                int(o, "/spec/replicas")
            )),
            age,
            json!(containers(o, "name")),
            json!(containers(o, "image")),
        ],
        "DaemonSet" => vec![
            name,
            json!(int(o, "/status/desiredNumberScheduled")),
            json!(int(o, "/status/currentNumberScheduled")),
            json!(int(o, "/status/numberReady")),
            json!(int(o, "/status/updatedNumberScheduled")),
            json!(int(o, "/status/numberAvailable")),
            age,
        ],
        "ConfigMap" => vec![
            name,
            json!(count(o, "/data") + count(o, "/binaryData")),
            age,
        ],
        "Secret" => vec![
            name,
            json!(o.get("type").and_then(Value::as_str).unwrap_or("Opaque")),
            json!(count(o, "/data")),
            age,
        ],
        "Service" => vec![
            name,
            json!(text(o, "/spec/type")),
            json!(
                o.pointer("/spec/clusterIP")
                    .and_then(Value::as_str)
                    .unwrap_or("<none>")
            ),
            json!("<none>"),
            json!(ports(o)),
            age,
        ],
        "Namespace" => vec![name, json!(text(o, "/status/phase")), age],
        _ => vec![name, age],
    }
}

/// The Table for `items` (already rendered objects).
pub fn render(kind: &Kind, items: &[Value], resource_version: &str, now: DateTime<Utc>) -> Value {
    let rows: Vec<Value> = items
        .iter()
        .map(|item| {
            json!({
                "cells": cells(kind, item, now),
                "object": {
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": item.get("metadata").cloned().unwrap_or_else(|| json!({})),
                },
            })
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": layout(kind),
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::kinds;
    use chrono::TimeDelta;

    #[test]
    fn ages_read_like_kubectl() {
        assert_eq!(human_age(TimeDelta::seconds(45)), "45s");
        assert_eq!(human_age(TimeDelta::seconds(192)), "3m12s");
        assert_eq!(human_age(TimeDelta::minutes(17)), "17m");
        assert_eq!(human_age(TimeDelta::minutes(303)), "5h3m");
        assert_eq!(human_age(TimeDelta::hours(52)), "2d4h");
    }

    #[test]
    fn deployment_rows_match_their_columns() {
        let now = DateTime::<Utc>::UNIX_EPOCH + TimeDelta::seconds(30);
        let item = json!({
            "metadata": {"name": "web", "creationTimestamp": "1970-01-01T00:00:00Z"},
            "spec": {"replicas": 3, "template": {"spec": {"containers": [{"name": "app", "image": "app:v1"}]}}},
            "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}
        });
        let table = render(&kinds::DEPLOYMENT, &[item], "7", now);
        let row = &table["rows"][0]["cells"];
        assert_eq!(
            row,
            &json!(["web", "2/3", 3, 2, "30s", "app", "app:v1", ""])
        );
        assert_eq!(table["columnDefinitions"].as_array().map(Vec::len), Some(8));
        assert!(wanted(
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
        ));
        assert!(!wanted("application/json"));
    }
}
