//! The HTTP face of one simulated cluster: the Kubernetes REST paths for the
//! kinds in [`super::kinds`] (GET, LIST, server-side apply PATCH, DELETE),
//! discovery, and the app `/metrics`. Faults and auth wrap the API paths
//! only; `/metrics` is the application's port in spirit, not the API's.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get};
use serde_json::Value;

use super::api_error::ApiError;
use super::auth;
use super::cluster::ClusterInner;
use super::discovery;
use super::faults;
use super::kinds::{self, Kind};
use super::requests;
use super::selector::Selector;
use super::store::{ApplyRequest, Scope};
use super::table;
use super::watch;

type Shared = Arc<ClusterInner>;
type Params = Result<Query<HashMap<String, String>>, QueryRejection>;

const APPLY_PATCH: &str = "application/apply-patch+yaml";

/// The API server's default `--min-request-timeout` for watches.
const DEFAULT_WATCH_TIMEOUT: Duration = Duration::from_secs(1800);

/// The router of one cluster's port.
pub fn router(cluster: Shared) -> Router {
    let api =
        Router::new()
            .route(
                "/version",
                get(|| async { axum::Json(discovery::version()) }),
            )
            .route(
                "/api",
                get(|State(c): State<Shared>| async move {
                    axum::Json(discovery::core_versions(c.addr()))
                }),
            )
            .route(
                "/apis",
                get(|| async { axum::Json(discovery::group_list()) }),
            )
            .route(
                "/apis/apps",
                get(|| async { axum::Json(discovery::apps_group()) }),
            )
            .route(
                "/api/v1",
                get(|| async { axum::Json(discovery::resource_list("", "v1")) }),
            )
            .route(
                "/apis/apps/v1",
                get(|| async { axum::Json(discovery::resource_list("apps", "v1")) }),
            )
            .route("/api/v1/namespaces", with_fallback(get(list_namespaces)))
            .route(
                // Same parameter name as the namespaced routes below: the router
                // requires one name per position.
                "/api/v1/namespaces/{ns}",
                with_fallback(
                    get(get_namespace)
                        .patch(patch_namespace)
                        .delete(delete_namespace),
                ),
            )
            .merge(resource_routes("", "/api/v1"))
            .merge(resource_routes("apps", "/apis/apps/v1"))
            .fallback(|| async { ApiError::no_route() })
            .layer(from_fn_with_state(Arc::clone(&cluster), requests::count))
            .layer(from_fn_with_state(Arc::clone(&cluster), faults::inject))
            .layer(axum::middleware::from_fn(auth::require_token));
    // Layers run outside-in: the token check first, then injected faults,
    // then the count of requests that reached the API.
    Router::new()
        .route("/metrics", get(metrics))
        .route("/apps/{namespace}/{name}/health", get(app_health))
        .merge(api)
        .with_state(cluster)
}

fn with_fallback(method_router: MethodRouter<Shared>) -> MethodRouter<Shared> {
    method_router.fallback(|| async { ApiError::method_not_allowed() })
}

/// The namespaced paths of one API group.
fn resource_routes(group: &'static str, prefix: &str) -> Router<Shared> {
    let object =
        move |c: Shared, ns: String, plural: String, name: String| -> Result<Target, ApiError> {
            let kind = namespaced_kind(group, &plural)?;
            Ok(Target {
                cluster: c,
                kind,
                namespace: ns,
                name,
            })
        };
    Router::new()
        .route(
            &format!("{prefix}/{{plural}}"),
            with_fallback(get(move |State(c): State<Shared>, Path(plural): Path<String>, q: Params, h: HeaderMap| async move {
                let kind = namespaced_kind(group, &plural)?;
                list(&c, kind, None, q, &h)
            })),
        )
        .route(
            &format!("{prefix}/namespaces/{{ns}}/{{plural}}"),
            with_fallback(get(
                move |State(c): State<Shared>, Path((ns, plural)): Path<(String, String)>, q: Params, h: HeaderMap| async move {
                    let kind = namespaced_kind(group, &plural)?;
                    list(&c, kind, Some(&ns), q, &h)
                },
            )),
        )
        .route(
            &format!("{prefix}/namespaces/{{ns}}/{{plural}}/{{name}}"),
            with_fallback(
                get(move |State(c): State<Shared>, Path((ns, plural, name)): Path<(String, String, String)>, h: HeaderMap| async move {
                    object(c, ns, plural, name)?.get(&h)
                })
                .patch(
                    move |State(c): State<Shared>,
                          Path((ns, plural, name)): Path<(String, String, String)>,
                          q: Params,
                          h: HeaderMap,
                          body: Bytes| async move { object(c, ns, plural, name)?.apply(q, &h, &body) },
                )
                .delete(move |State(c): State<Shared>, Path((ns, plural, name)): Path<(String, String, String)>| async move {
                    object(c, ns, plural, name)?.delete()
                }),
            ),
        )
        .route(
            &format!("{prefix}/namespaces/{{ns}}/{{plural}}/{{name}}/status"),
            with_fallback(get(
                move |State(c): State<Shared>, Path((ns, plural, name)): Path<(String, String, String)>| async move {
                    let target = object(c, ns, plural, name)?;
                    if target.kind.workload.is_none() {
                        return Err(ApiError::no_route());
                    }
                    target.get(&HeaderMap::new())
                },
            )),
        )
}

fn namespaced_kind(group: &str, plural: &str) -> Result<&'static Kind, ApiError> {
    kinds::by_path(group, "v1", plural)
        .filter(|k| k.namespaced)
        .ok_or_else(ApiError::no_route)
}

/// One addressed object.
struct Target {
    cluster: Shared,
    kind: &'static Kind,
    namespace: String,
    name: String,
}

impl Target {
    fn get(&self, headers: &HeaderMap) -> Result<Response, ApiError> {
        let now = crate::clock::now();
        let object = self
            .cluster
            .store()
            .get(self.kind, &self.namespace, &self.name, now)?;
        if table::wanted(accept(headers)) {
            let rv = object
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                .unwrap_or("");
            return Ok(axum::Json(table::render(
                self.kind,
                std::slice::from_ref(&object),
                rv,
                now,
            ))
            .into_response());
        }
        Ok(axum::Json(object).into_response())
    }

    fn apply(
        &self,
        params: Params,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Response, ApiError> {
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let media_type = content_type.split(';').next().unwrap_or("").trim();
        if !media_type.eq_ignore_ascii_case(APPLY_PATCH) {
            return Err(ApiError::unsupported_media_type(content_type));
        }
        let Query(params) = params.map_err(|e| ApiError::bad_request(e.body_text()))?;
        let manager = params.get("fieldManager").map(String::as_str).unwrap_or("");
        if manager.is_empty() {
            return Err(ApiError::bad_request(
                "fieldManager: Required value: is required for apply patch",
            ));
        }
        let dry_run = match params.get("dryRun").map(String::as_str) {
            None | Some("") => false,
            Some("All") => true,
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "dryRun: Unsupported value: {other:?}: supported values: \"All\""
                )));
            }
        };
        let body = parse_body(body)?;
        let request = ApplyRequest {
            kind: self.kind,
            namespace: &self.namespace,
            name: &self.name,
            body,
            manager,
            force: params.get("force").is_some_and(|f| f == "true"),
            dry_run,
        };
        let response = self.cluster.store().apply(request, crate::clock::now())?;
        let code = if response.created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        Ok((code, axum::Json(response.object)).into_response())
    }

    fn delete(&self) -> Result<Response, ApiError> {
        let status = self.cluster.store().delete(
            self.kind,
            &self.namespace,
            &self.name,
            crate::clock::now(),
        )?;
        Ok(axum::Json(status).into_response())
    }
}

/// Apply bodies are YAML, and JSON is YAML; try the cheap parser first.
fn parse_body(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .or_else(|_| serde_yaml_ng::from_slice::<Value>(body))
        .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))
}

fn accept(headers: &HeaderMap) -> &str {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

fn list(
    c: &Shared,
    kind: &'static Kind,
    namespace: Option<&str>,
    params: Params,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let labels = Selector::parse(params.get("labelSelector").map_or("", String::as_str))?;
    let fields = Selector::parse(params.get("fieldSelector").map_or("", String::as_str))?;
    if params.get("watch").is_some_and(|w| w == "true" || w == "1") {
        let since =
            match params.get("resourceVersion").map(String::as_str) {
                None | Some("") => None,
                Some(rv) => Some(rv.parse().map_err(|_| {
                    ApiError::bad_request(format!("invalid resourceVersion {rv:?}"))
                })?),
            };
        let timeout = params
            .get("timeoutSeconds")
            .and_then(|t| t.parse().ok())
            .map_or(DEFAULT_WATCH_TIMEOUT, Duration::from_secs);
        let request = watch::WatchRequest {
            kind,
            namespace: namespace.map(str::to_owned),
            labels,
            fields,
            since,
            timeout,
        };
        return watch::respond(Arc::clone(c), request);
    }
    let now = crate::clock::now();
    let scope = Scope {
        kind,
        namespace,
        labels: &labels,
        fields: &fields,
    };
    let list = c.store().list(&scope, now)?;
    if table::wanted(accept(headers)) {
        let items = list
            .get("items")
            .and_then(Value::as_array)
            .map_or(&[][..], Vec::as_slice);
        let rv = list
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .unwrap_or("");
        return Ok(axum::Json(table::render(kind, items, rv, now)).into_response());
    }
    Ok(axum::Json(list).into_response())
}

fn namespace_target(c: Shared, name: String) -> Target {
    Target {
        cluster: c,
        kind: &kinds::NAMESPACE,
        namespace: String::new(),
        name,
    }
}

async fn list_namespaces(
    State(c): State<Shared>,
    q: Params,
    h: HeaderMap,
) -> Result<Response, ApiError> {
    list(&c, &kinds::NAMESPACE, None, q, &h)
}

async fn get_namespace(
    State(c): State<Shared>,
    Path(name): Path<String>,
    h: HeaderMap,
) -> Result<Response, ApiError> {
    namespace_target(c, name).get(&h)
}

async fn patch_namespace(
    State(c): State<Shared>,
    Path(name): Path<String>,
    q: Params,
    h: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    namespace_target(c, name).apply(q, &h, &body)
}

async fn delete_namespace(
    State(c): State<Shared>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    namespace_target(c, name).delete()
}

/// An application health endpoint like many services have: 200 while the
/// app's error rate is under 5%, 503 above. The demo's HTTP gate reads it
/// when no Prometheus is installed.
async fn app_health(
    State(c): State<Shared>,
    Path((namespace, name)): Path<(String, String)>,
) -> Response {
    let found = c.store().app_error_rate(&namespace, &name);
    app_health_response(found)
}

/// The app health answer for an app's (error rate, images), if it runs.
pub(crate) fn app_health_response(found: Option<(f64, Vec<String>)>) -> Response {
    /// The error rate above which the app reports itself failing.
    const FAILING_ERROR_RATE: f64 = 0.05;
    match found {
        None => (
            axum::http::StatusCode::NOT_FOUND,
            axum::Json(serde_json::json!({"status": "absent"})),
        )
            .into_response(),
        Some((rate, images)) => {
            let failing = rate >= FAILING_ERROR_RATE;
            let status = if failing {
                axum::http::StatusCode::SERVICE_UNAVAILABLE
            } else {
                axum::http::StatusCode::OK
            };
            let body = serde_json::json!({
                "status": if failing { "failing" } else { "ok" },
                "error_rate": rate,
                "images": images,
            });
            (status, axum::Json(body)).into_response()
        }
    }
}

async fn metrics(State(c): State<Shared>) -> Response {
    let text = c.store().metrics_text(crate::clock::now());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}
