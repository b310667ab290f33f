//! The OpenAPI document of `/api/v1`, served at `GET /api/v1/openapi.json`.
//!
//! It is generated from the code: every API route is registered through
//! `utoipa_axum`'s `OpenApiRouter` with `routes!`, which takes the path and
//! method from the handler's `#[utoipa::path]`, so a route cannot be served
//! without being described (and `mod.rs`'s test checks nothing is added
//! with a plain `.route`). What every route shares is added here from the
//! one role table in `auth.rs` (the bearer scheme, `401`, `403` for routes
//! above `viewer`, `503` when the database cannot answer), so the document
//! and the auth layer cannot disagree about who may call what.

use std::sync::LazyLock;

use axum::{
    http::{Method, StatusCode, header},
    response::IntoResponse,
};
use utoipa::{
    PartialSchema, ToSchema,
    openapi::{
        Components, ContentBuilder, Info, OpenApi, Ref, RefOr, ResponseBuilder, Schema,
        header::HeaderBuilder,
        path::{Operation, PathItem},
        schema::{ObjectBuilder, Type},
        security::{
            ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
        },
    },
};

use super::{
    auth::{API_PREFIX, Access, QUERY_TOKEN, STREAM_ROUTE, required_role},
    error::{PROBLEM_JSON, Problem},
};
use crate::{
    domain::{ClusterName, HumanDuration},
    store::tokens::Role,
};

/// The names of the security schemes in the document.
const BEARER: &str = "bearer";
const QUERY_TOKEN_SCHEME: &str = "access_token";

/// The document, built once: it depends on the code only.
static DOCUMENT: LazyLock<Vec<u8>> = LazyLock::new(|| {
    serde_json::to_vec_pretty(&document()).unwrap_or_else(|e| {
        tracing::error!(error = %e, "cannot serialise the OpenAPI document");
        Vec::new()
    })
});

/// This API's OpenAPI document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    operation_id = "openapi_document",
    tag = "meta",
    responses(
        (status = 200, description = "The OpenAPI 3.1 document of `/api/v1`", content_type = "application/json", body = Object),
    ),
)]
pub async fn serve() -> impl IntoResponse {
    if DOCUMENT.is_empty() {
        return super::ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal error",
            "the OpenAPI document could not be built",
        )
        .into_response();
    }
    (
        [(header::CONTENT_TYPE, "application/json")],
        DOCUMENT.as_slice(),
    )
        .into_response()
}

/// The OpenAPI document of every route under `/api/v1`.
pub fn document() -> OpenApi {
    let (_, mut doc) = utoipa_axum::router::OpenApiRouter::<super::AppState>::new()
        .nest(API_PREFIX, super::api_routes())
        .split_for_parts();
    doc.info = Info::builder()
        .title("Meridian")
        .version(env!("CARGO_PKG_VERSION"))
        .description(Some(
            "Takes one release of an application around the world, cluster by cluster. \
             Every request but this document's needs `Authorization: Bearer <token>`; \
             errors are `application/problem+json`.",
        ))
        .build();
    let components = doc.components.get_or_insert_with(Components::new);
    components.add_security_scheme(
        BEARER,
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("mrd_<64 hex digits>")
                .description(Some(
                    "An API token (`meridian token create`), or `MERIDIAN_BOOTSTRAP_TOKEN`",
                ))
                .build(),
        ),
    );
    components.add_security_scheme(
        QUERY_TOKEN_SCHEME,
        SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::with_description(
            QUERY_TOKEN,
            "The token in the query, for browsers' `EventSource` (event stream only)",
        ))),
    );
    // Referenced by the responses added below, whichever handlers use it.
    components
        .schemas
        .insert(Problem::name().into_owned(), Problem::schema());
    let mut missing = Vec::new();
    for (path, item) in doc.paths.paths.iter_mut() {
        let route = path.strip_prefix(API_PREFIX).unwrap_or(path);
        for (method, operation) in operations_mut(item) {
            match required_role(&method, route) {
                Access::Open => {}
                Access::Needs(role) => {
                    secure(operation, role);
                    if route == STREAM_ROUTE
                        && let Some(security) = operation.security.as_mut()
                    {
                        security.push(SecurityRequirement::new(
                            QUERY_TOKEN_SCHEME,
                            Vec::<String>::new(),
                        ));
                    }
                }
                Access::Undeclared => {
                    // The auth layer treats it as admin-only; say the same.
                    missing.push(format!("{method} {route}"));
                    secure(operation, Role::Admin);
                }
            }
        }
    }
    if !missing.is_empty() {
        tracing::error!(routes = ?missing, "documented routes missing from api/auth.rs `required_role`");
    }
    doc
}

/// Every operation of a path item with its method.
fn operations_mut(item: &mut PathItem) -> Vec<(Method, &mut Operation)> {
    [
        (Method::GET, item.get.as_mut()),
        (Method::PUT, item.put.as_mut()),
        (Method::POST, item.post.as_mut()),
        (Method::DELETE, item.delete.as_mut()),
        (Method::PATCH, item.patch.as_mut()),
        (Method::HEAD, item.head.as_mut()),
        (Method::OPTIONS, item.options.as_mut()),
        (Method::TRACE, item.trace.as_mut()),
    ]
    .into_iter()
    .filter_map(|(method, op)| op.map(|op| (method, op)))
    .collect()
}

/// Adds what the auth layer does to an operation: the bearer requirement,
/// `401`, `403` when a viewer is not enough, and `503` because the token is
/// looked up in the database.
fn secure(operation: &mut Operation, role: Role) {
    operation.security = Some(vec![SecurityRequirement::new(BEARER, Vec::<String>::new())]);
    let needs = format!("Needs the `{role}` role.");
    operation.description = Some(match operation.description.take() {
        Some(text) if !text.is_empty() => format!("{text}\n\n{needs}"),
        _ => needs,
    });
    let responses = &mut operation.responses.responses;
    responses.entry("401".to_owned()).or_insert_with(|| {
        RefOr::T(
            ResponseBuilder::new()
                .description("No token, or a token that is unknown, expired or revoked")
                .header(
                    "WWW-Authenticate",
                    HeaderBuilder::new()
                        .schema(Some(String::schema()))
                        .description(Some("`Bearer realm=\"meridian\"`"))
                        .build(),
                )
                .content(PROBLEM_JSON, problem_content())
                .build(),
        )
    });
    if role != Role::Viewer {
        responses
            .entry("403".to_owned())
            .or_insert_with(|| problem_response(&format!("The token's role is below `{role}`")));
    }
    responses
        .entry("503".to_owned())
        .or_insert_with(|| problem_response("The database could not serve the request; try again"));
}

fn problem_content() -> utoipa::openapi::Content {
    ContentBuilder::new()
        .schema(Some(Ref::from_schema_name(Problem::name())))
        .build()
}

fn problem_response(description: &str) -> RefOr<utoipa::openapi::Response> {
    RefOr::T(
        ResponseBuilder::new()
            .description(description)
            .content(PROBLEM_JSON, problem_content())
            .build(),
    )
}

// The shapes of `store::rollouts` types the API answers with. They are
// described here rather than derived there because that module belongs to
// the engine's side; a test below checks they have the same fields.

/// A release: one version of an application's image.
#[derive(ToSchema)]
#[schema(as = Release)]
#[allow(dead_code)]
pub struct ReleaseSchema {
    id: uuid::Uuid,
    application: String,
    version: String,
    image: String,
    /// The token name that created it.
    created_by: String,
    created_at: chrono::DateTime<chrono::Utc>,
}

/// What to do when the application already has an active rollout:
/// `reject` answers `409` naming it, `queue` starts once it ended.
#[derive(ToSchema)]
#[schema(as = OnActive, rename_all = "snake_case")]
#[allow(dead_code)]
pub enum OnActiveSchema {
    Reject,
    Queue,
}

// Types whose serde is written by hand get their schema by hand too.

impl PartialSchema for HumanDuration {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(
                "A duration as people write it: `30s`, `5m`, `1h 30m`, `500ms`",
            ))
            .examples(["30s", "5m"])
            .into()
    }
}

impl ToSchema for HumanDuration {}

impl PartialSchema for ClusterName {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(
                "A cluster's name: lower-case letters, digits and `-`, at most 63",
            ))
            .pattern(Some("^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"))
            .into()
    }
}

impl ToSchema for ClusterName {}

#[cfg(test)]
mod tests {
    use super::*;

    fn json() -> serde_json::Value {
        serde_json::to_value(document()).expect("the document serialises")
    }

    #[test]
    fn every_documented_route_is_in_the_role_table() {
        let doc = document();
        for (path, item) in &doc.paths.paths {
            let route = path.strip_prefix(API_PREFIX).expect("under /api/v1");
            let mut item = item.clone();
            for (method, _) in operations_mut(&mut item) {
                assert_ne!(
                    required_role(&method, route),
                    Access::Undeclared,
                    "{method} {route} is documented but has no role in auth.rs"
                );
            }
        }
    }

    #[test]
    fn every_operation_but_the_document_needs_a_bearer_token_and_answers_401() {
        let doc = json();
        let paths = doc["paths"].as_object().expect("paths");
        assert!(paths.len() > 20, "{:?}", paths.keys());
        for (path, item) in paths {
            for (method, operation) in item.as_object().expect("path item") {
                let open = path == "/api/v1/openapi.json";
                assert_eq!(operation.get("security").is_none(), open, "{method} {path}");
                assert_eq!(
                    operation["responses"].get("401").is_none(),
                    open,
                    "{method} {path}"
                );
            }
        }
        assert_eq!(
            doc["components"]["securitySchemes"][BEARER]["scheme"],
            "bearer"
        );
    }

    #[test]
    fn the_described_store_types_have_the_fields_they_serialise() {
        let release = crate::store::ReleaseRecord {
            id: uuid::Uuid::nil(),
            application: "shop".into(),
            version: "1".into(),
            image: "shop:1".into(),
            created_by: "ci".into(),
            created_at: chrono::Utc::now(),
        };
        let serialised = serde_json::to_value(&release).expect("serialises");
        let keys: Vec<&String> = serialised.as_object().expect("object").keys().collect();
        let schema = serde_json::to_value(ReleaseSchema::schema()).expect("schema");
        let described: Vec<&String> = schema["properties"]
            .as_object()
            .expect("properties")
            .keys()
            .collect();
        assert_eq!(keys, described);
        for (value, expected) in [
            (crate::store::OnActive::Reject, "reject"),
            (crate::store::OnActive::Queue, "queue"),
        ] {
            assert_eq!(serde_json::to_value(value).expect("serialises"), expected);
        }
        let on_active = serde_json::to_value(OnActiveSchema::schema()).expect("schema");
        assert_eq!(on_active["enum"], serde_json::json!(["reject", "queue"]));
    }

    #[test]
    fn operation_ids_are_unique() {
        let doc = json();
        let mut seen = std::collections::BTreeSet::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (method, operation) in item.as_object().expect("path item") {
                let id = operation["operationId"].as_str().unwrap_or_default();
                assert!(seen.insert(id.to_owned()), "{method} {path}: `{id}` twice");
            }
        }
    }

    #[test]
    fn bodies_that_refuse_unknown_fields_say_so() {
        let doc = json();
        let schemas = &doc["components"]["schemas"];
        for name in [
            "CreateRelease",
            "CreateToken",
            "CreateWebhook",
            "PlanSpec",
            "StageSpec",
            "ActionBody",
        ] {
            assert_eq!(
                schemas[name]["additionalProperties"], false,
                "{name}: {}",
                schemas[name]
            );
        }
    }
}
