//! Catalog writes (admins): register and change clusters and applications.
//!
//! Bodies have the config file's shapes and pass the same checks
//! ([`ClusterSpec::check`], [`ApplicationSpec::check`]), so a cluster or an
//! application the API accepts is one the config file would accept too.
//! Bodies never carry credentials: a cluster names a kubeconfig context on
//! the server's side, and unknown fields are refused.

use axum::{
    Json,
    body::Bytes,
    extract::{Path, State, rejection::BytesRejection},
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;
use utoipa::ToSchema;

use super::{
    ApiError, AppState, Caller,
    error::{Problem, find_nul},
    views::{ApplicationView, ClusterView},
};
use crate::domain::{Application, ApplicationSpec, Cluster, ClusterSpec};

/// A `PUT` answer: the item as it is now, and which fields the request
/// changed (empty when it matched what was stored).
#[derive(Serialize, ToSchema)]
pub struct Updated<T> {
    #[serde(flatten)]
    pub item: T,
    pub changed: Vec<&'static str>,
}

/// Register a cluster.
///
/// The body is a config file's cluster entry as JSON. `context` names a
/// kubeconfig context on the server (default: the cluster's name); no
/// credentials are taken.
#[utoipa::path(
    post,
    path = "/clusters",
    tag = "clusters",
    request_body = ClusterSpec,
    responses(
        (status = 201, description = "Registered", body = ClusterView,
            headers(("Location" = String, description = "The cluster's URL"))),
        (status = 400, description = "The body is not a JSON object", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A cluster of that name exists", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field is invalid; `field` says which", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn register_cluster(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let cluster = cluster_from_body(parse_object(&body?, "cluster")?)?;
    state
        .store
        .register_cluster(&cluster, caller.actor())
        .await?;
    tracing::info!(actor = caller.actor(), cluster = %cluster.name, region = %cluster.region, context = %cluster.context, "cluster registered");
    let location = format!("/api/v1/clusters/{}", cluster.name);
    Ok(created(location, ClusterView::from(cluster)))
}

/// Change a cluster.
///
/// Replaces its settings: fields left out take their defaults, as in the
/// config file. The engine reconnects when `context` changed.
#[utoipa::path(
    put,
    path = "/clusters/{name}",
    tag = "clusters",
    params(("name" = String, Path, description = "The cluster's name")),
    request_body = ClusterSpec,
    responses(
        (status = 200, description = "Stored; `changed` lists the fields that differed", body = Updated<ClusterView>),
        (status = 400, description = "The body is not a JSON object", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such cluster", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field is invalid; `field` says which", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn update_cluster(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Updated<ClusterView>>, ApiError> {
    let body = with_path_name(parse_object(&body?, "cluster")?, &name)?;
    let cluster = cluster_from_body(body)?;
    let changed = state.store.update_cluster(&cluster, caller.actor()).await?;
    tracing::info!(actor = caller.actor(), cluster = %cluster.name, ?changed, "cluster updated");
    Ok(Json(Updated {
        item: cluster.into(),
        changed,
    }))
}

/// Register an application.
///
/// The body is a config file's application entry as JSON, checked the same
/// way: a known plan, templates that render with the default parameters.
#[utoipa::path(
    post,
    path = "/applications",
    tag = "applications",
    request_body = ApplicationSpec,
    responses(
        (status = 201, description = "Registered", body = ApplicationView,
            headers(("Location" = String, description = "The application's URL"))),
        (status = 400, description = "The body is not a JSON object", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "An application of that name exists", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field is invalid (unknown plan, bad template...); `field` says which", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn register_application(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = parse_object(&body?, "application")?;
    let app = application_from_body(&state, body).await?;
    state
        .store
        .register_application(&app, caller.actor())
        .await?;
    tracing::info!(actor = caller.actor(), application = %app.name, plan = %app.plan, "application registered");
    let location = format!("/api/v1/applications/{}", app.name);
    Ok(created(location, ApplicationView::from(app)))
}

/// Change an application.
///
/// Replaces it; rollouts in flight render the new templates from their next
/// apply on.
#[utoipa::path(
    put,
    path = "/applications/{name}",
    tag = "applications",
    params(("name" = String, Path, description = "The application's name")),
    request_body = ApplicationSpec,
    responses(
        (status = 200, description = "Stored; `changed` lists the fields that differed", body = Updated<ApplicationView>),
        (status = 400, description = "The body is not a JSON object", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such application", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field is invalid (unknown plan, bad template...); `field` says which", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn update_application(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Updated<ApplicationView>>, ApiError> {
    let body = with_path_name(parse_object(&body?, "application")?, &name)?;
    let app = application_from_body(&state, body).await?;
    let changed = state.store.update_application(&app, caller.actor()).await?;
    tracing::info!(actor = caller.actor(), application = %app.name, ?changed, "application updated");
    Ok(Json(Updated {
        item: app.into(),
        changed,
    }))
}

fn cluster_from_body(body: Value) -> Result<Cluster, ApiError> {
    let spec: ClusterSpec = from_value(body)?;
    spec.check()
        .map_err(|e| ApiError::invalid(&e.path, e.message))
}

/// Checks the application against the catalog as it is now: its plan and
/// the clusters its parameters name must exist.
async fn application_from_body(state: &AppState, body: Value) -> Result<Application, ApiError> {
    let spec: ApplicationSpec = from_value(body)?;
    let plans = state.store.plan_names().await?;
    let clusters = state.store.clusters().await?;
    spec.check(
        |plan| plans.contains(plan),
        |name| clusters.iter().any(|c| c.name.as_str() == name),
    )
    .map_err(|e| ApiError::invalid(&e.path, e.message))
}

/// The body, which must be a JSON object; anything else is not worth a
/// field path. Text PostgreSQL cannot store (NUL) is refused here, with its
/// path.
fn parse_object(body: &[u8], what: &str) -> Result<Value, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the body is not valid JSON: {e}")))?;
    if !value.is_object() {
        return Err(ApiError::bad_request(format!(
            "the body must be a JSON object describing the {what}"
        )));
    }
    if let Some(path) = find_nul(&value) {
        return Err(ApiError::invalid(
            &path,
            "contains a NUL character (U+0000), which cannot be stored",
        ));
    }
    Ok(value)
}

/// A `PUT` names its item in the path; a `name` in the body may repeat it
/// but not contradict it (renaming would orphan rollouts and plans that
/// name the old one).
fn with_path_name(mut body: Value, name: &str) -> Result<Value, ApiError> {
    let Some(fields) = body.as_object_mut() else {
        return Ok(body);
    };
    match fields.get("name") {
        None => {
            fields.insert("name".to_owned(), Value::String(name.to_owned()));
        }
        Some(Value::String(given)) if given == name => {}
        Some(given) => {
            return Err(ApiError::invalid(
                "name",
                format!("the body names {given} but the path names `{name}`; names cannot change"),
            ));
        }
    }
    Ok(body)
}

/// Deserialises with the path of the field that failed, so a `422` points
/// at it (`labels.tier`, `parameters.defaults`).
fn from_value<T: DeserializeOwned>(body: Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(body).map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().to_string();
        let field = if path == "." {
            // Missing and unknown top-level fields fail on the object
            // itself; the field is named in serde's message.
            backticked(&message).unwrap_or_default()
        } else {
            path
        };
        ApiError::invalid(&field, message)
    })
}

/// The first `` `quoted` `` word of a serde message (`missing field
/// `region``, `unknown field `token`, expected ...`).
fn backticked(message: &str) -> Option<String> {
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    Some(message[start..start + len].to_owned())
}

fn created<T: Serialize>(location: String, item: T) -> Response {
    let mut response = (StatusCode::CREATED, Json(item)).into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn missing_and_unknown_fields_name_the_field() {
        let err = from_value::<ClusterSpec>(json!({"name": "eu-1"})).expect_err("no region");
        assert_eq!(err.field.as_deref(), Some("region"), "{}", err.detail);
        let err = from_value::<ClusterSpec>(json!({"name": "eu-1", "region": "eu", "token": "x"}))
            .expect_err("no credentials");
        assert_eq!(err.field.as_deref(), Some("token"), "{}", err.detail);
        let err =
            from_value::<ClusterSpec>(json!({"name": "eu-1", "region": "eu", "labels": {"a": 1}}))
                .expect_err("a label is text");
        assert_eq!(err.field.as_deref(), Some("labels.a"), "{}", err.detail);
        let err =
            from_value::<ClusterSpec>(json!({"name": "EU", "region": "eu"})).expect_err("bad name");
        assert_eq!(err.field.as_deref(), Some("name"), "{}", err.detail);
    }

    #[test]
    fn a_put_body_may_repeat_the_path_name_but_not_contradict_it() {
        let named = with_path_name(json!({"region": "eu"}), "eu-1").expect("filled in");
        assert_eq!(named["name"], "eu-1");
        with_path_name(json!({"name": "eu-1"}), "eu-1").expect("same name");
        let err = with_path_name(json!({"name": "eu-2"}), "eu-1").expect_err("renamed");
        assert_eq!(err.field.as_deref(), Some("name"));
    }
}
