//! Admission of an applied object, as the API server does it before
//! storing: validation (with the real error codes), identity fields from the
//! URL, and the defaults that matter to rollouts and to clients reading back.

use serde_json::{Map, Value, json};

use super::api_error::ApiError;
use super::kinds::Kind;
use super::status::DEFAULT_PROGRESS_DEADLINE_SECONDS;

pub fn metadata_mut(object: &mut Value) -> &mut Map<String, Value> {
    if !object.is_object() {
        *object = json!({});
    }
    let Some(map) = object.as_object_mut() else {
        unreachable!("the value was just made an object")
    };
    let meta = map.entry("metadata").or_insert_with(|| json!({}));
    if !meta.is_object() {
        *meta = json!({});
    }
    let Some(meta) = meta.as_object_mut() else {
        unreachable!("metadata was just made an object")
    };
    meta
}

/// The identity fields come from the URL, whatever the body held.
pub fn set_identity(kind: &'static Kind, namespace: &str, name: &str, object: &mut Value) {
    if let Some(map) = object.as_object_mut() {
        map.insert("apiVersion".into(), json!(kind.api_version()));
        map.insert("kind".into(), json!(kind.kind));
    }
    let meta = metadata_mut(object);
    meta.insert("name".into(), json!(name));
    if kind.namespaced {
        meta.insert("namespace".into(), json!(namespace));
    } else {
        meta.remove("namespace");
    }
}

/// Rejects bodies a real API server would refuse, with the same codes.
pub fn validate(
    kind: &'static Kind,
    namespace: &str,
    name: &str,
    body: &Value,
) -> Result<(), ApiError> {
    if !body.is_object() {
        return Err(ApiError::bad_request(
            "the body of an apply patch must be a JSON or YAML object",
        ));
    }
    let api_version = body.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let body_kind = body.get("kind").and_then(Value::as_str).unwrap_or("");
    if api_version.is_empty() || body_kind.is_empty() {
        return Err(ApiError::bad_request(
            "Object 'Kind' or 'apiVersion' is missing in the apply patch",
        ));
    }
    if api_version != kind.api_version() {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({api_version}) does not match the expected API version ({})",
            kind.api_version()
        )));
    }
    if body_kind != kind.kind {
        return Err(ApiError::bad_request(format!(
            "the kind in the data ({body_kind}) does not match the expected kind ({})",
            kind.kind
        )));
    }
    let body_name = body
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    if body_name.is_empty() {
        return Err(ApiError::invalid(
            kind,
            name,
            "metadata.name",
            "Required value: name is required",
        ));
    }
    if body_name != name {
        return Err(ApiError::invalid(
            kind,
            name,
            "metadata.name",
            &format!(
                "Invalid value: {body_name:?}: must match the name in the request URL ({name:?})"
            ),
        ));
    }
    if kind.namespaced
        && let Some(body_ns) = body.pointer("/metadata/namespace").and_then(Value::as_str)
        && !body_ns.is_empty()
        && body_ns != namespace
    {
        return Err(ApiError::invalid(
            kind,
            name,
            "metadata.namespace",
            &format!(
                "Invalid value: {body_ns:?}: must match the namespace in the request URL ({namespace:?})"
            ),
        ));
    }
    Ok(())
}

/// The server-side defaults that matter to rollouts and to clients reading
/// objects back. Nobody owns a defaulted field, so applies never conflict on it.
pub fn apply_defaults(kind: &'static Kind, object: &mut Value, resource_version: u64) {
    let Some(map) = object.as_object_mut() else {
        return;
    };
    let spec_default = |map: &mut Map<String, Value>, field: &str, value: Value| {
        if let Some(spec) = map
            .entry("spec")
            .or_insert_with(|| json!({}))
            .as_object_mut()
        {
            spec.entry(field).or_insert(value);
        }
    };
    match kind.kind {
        "Deployment" => {
            spec_default(map, "replicas", json!(1));
            spec_default(
                map,
                "progressDeadlineSeconds",
                json!(DEFAULT_PROGRESS_DEADLINE_SECONDS),
            );
            spec_default(map, "revisionHistoryLimit", json!(10));
        }
        "StatefulSet" => spec_default(map, "replicas", json!(1)),
        "Service" => {
            spec_default(map, "type", json!("ClusterIP"));
            let external = map
                .get("spec")
                .and_then(|s| s.get("type"))
                .and_then(Value::as_str)
                == Some("ExternalName");
            if !external {
                // A stable, plausible address from the service-CIDR.
                let ip = format!(
                    "10.96.{}.{}",
                    (resource_version / 250) % 250,
                    resource_version % 250 + 1
                );
                spec_default(map, "clusterIP", json!(ip.clone()));
                spec_default(map, "clusterIPs", json!([ip]));
            }
        }
        _ => {}
    }
}
