//! Who may call what: bearer tokens, roles, and the table of the role each
//! route needs.
//!
//! Every request that matched an API route passes [`authenticate`]: it finds
//! the token, decides the caller, checks the caller's role against
//! [`required_role`] and hands the caller to the handler as [`Caller`].
//! Requests that matched no route never get here, so unknown paths answer
//! 404 as before instead of 401.

use std::fmt;

use axum::{
    extract::{FromRequestParts, MatchedPath, Request, State},
    http::{HeaderMap, HeaderValue, Method, StatusCode, header, request::Parts},
    middleware::Next,
    response::{IntoResponse, Response},
};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{ApiError, AppState};
use crate::store::tokens::{BOOTSTRAP_NAME, Presented, Role, SECRET_PREFIX};

/// Where the API is mounted; routes below are named relative to it.
pub const API_PREFIX: &str = "/api/v1";
/// The route whose clients cannot set headers (browsers' `EventSource`).
pub const STREAM_ROUTE: &str = "/events/stream";
/// The query parameter that carries a token on [`STREAM_ROUTE`].
pub const QUERY_TOKEN: &str = "access_token";
/// The environment variable whose value is accepted as an admin token.
pub const BOOTSTRAP_TOKEN_ENV: &str = "MERIDIAN_BOOTSTRAP_TOKEN";
/// A shorter bootstrap token could be guessed; generated ones are far longer.
const MIN_BOOTSTRAP_CHARS: usize = 16;

/// What a route asks of its caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Anyone, without a token.
    Open,
    Needs(Role),
    /// The route is missing from [`required_role`]: refused to all but
    /// admins, so forgetting to declare a route cannot open it up.
    Undeclared,
}

/// The one table of which role each API route needs, by method and route
/// pattern relative to `/api/v1` (as written in the router). A route not
/// listed here is admin-only and logged as a bug.
pub fn required_role(method: &Method, route: &str) -> Access {
    // axum answers HEAD with the GET handler; it reads the same data.
    let method = if method == Method::HEAD {
        "GET"
    } else {
        method.as_str()
    };
    let first_segment = route.trim_start_matches('/').split('/').next();
    match (method, route) {
        // The API's description: clients read it before they have a token.
        ("GET", "/openapi.json") => Access::Open,
        (
            "GET",
            "/rollouts"
            | "/rollouts/{id}"
            | "/rollouts/{id}/events"
            | "/rollouts/{id}/gates"
            | "/events/stream"
            | "/whoami"
            | "/applications"
            | "/clusters"
            | "/clusters/{name}"
            | "/applications/{name}"
            | "/releases"
            | "/releases/{id}"
            | "/plans"
            | "/plans/{name}"
            | "/plans/{name}/versions"
            | "/plans/{name}/versions/{version}",
        ) => Access::Needs(Role::Viewer),
        ("POST", "/releases") => Access::Needs(Role::Deployer),
        // Checking a plan changes nothing; CI does it before proposing one.
        ("POST", "/plans/validate") => Access::Needs(Role::Deployer),
        ("POST", "/rollouts/{id}/{action}") => Access::Needs(Role::Operator),
        // Tokens and webhooks hold or lead to secrets: admins only, reads included.
        (_, "/tokens" | "/tokens/{id}") => Access::Needs(Role::Admin),
        _ if first_segment == Some("webhooks") => Access::Needs(Role::Admin),
        // Changing the catalog changes what every rollout may touch.
        ("POST" | "PUT" | "PATCH" | "DELETE", _)
            if matches!(first_segment, Some("clusters" | "applications" | "plans")) =>
        {
            Access::Needs(Role::Admin)
        }
        _ => Access::Undeclared,
    }
}

/// The authenticated caller, for handlers: its name is the actor recorded
/// on whatever it changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub name: String,
    pub role: Role,
    /// `None` for the bootstrap token, which has no row.
    pub token_id: Option<Uuid>,
}

impl Caller {
    /// The name recorded on events, releases and rollouts.
    pub fn actor(&self) -> &str {
        &self.name
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Caller, ApiError> {
        parts.extensions.get::<Caller>().cloned().ok_or_else(|| {
            // Only a handler on a route outside the auth layer gets here: a bug.
            tracing::error!(path = %parts.uri.path(), "handler wants a caller but the route is not authenticated");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal error",
                "the server hit a bug while serving this request",
            )
        })
    }
}

/// Who a token stands for.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct WhoAmI {
    /// The token's name, recorded as the actor of what it does.
    pub name: String,
    pub role: Role,
}

/// The caller's own name and role, so a client (the dashboard) can offer
/// only what the token may do.
#[utoipa::path(
    get,
    path = "/whoami",
    operation_id = "whoami",
    tag = "meta",
    responses((status = 200, description = "The caller", body = WhoAmI)),
)]
pub async fn whoami(caller: Caller) -> axum::Json<WhoAmI> {
    axum::Json(WhoAmI {
        name: caller.name,
        role: caller.role,
    })
}

/// `MERIDIAN_BOOTSTRAP_TOKEN`, kept only as its hash. `Debug` shows nothing.
#[derive(Clone)]
pub struct BootstrapToken {
    hash: [u8; 32],
}

impl BootstrapToken {
    /// Reads [`BOOTSTRAP_TOKEN_ENV`]; unset or empty means none.
    pub fn from_env() -> anyhow::Result<Option<BootstrapToken>> {
        match std::env::var(BOOTSTRAP_TOKEN_ENV) {
            Ok(value) => BootstrapToken::new(&value),
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => {
                anyhow::bail!("{BOOTSTRAP_TOKEN_ENV} is not valid UTF-8")
            }
        }
    }

    pub fn new(value: &str) -> anyhow::Result<Option<BootstrapToken>> {
        let value = value.trim();
        if value.is_empty() {
            return Ok(None);
        }
        if value.chars().count() < MIN_BOOTSTRAP_CHARS {
            anyhow::bail!(
                "{BOOTSTRAP_TOKEN_ENV} is shorter than {MIN_BOOTSTRAP_CHARS} characters; use a long random secret (e.g. `openssl rand -hex 32`)"
            );
        }
        Ok(Some(BootstrapToken {
            hash: Sha256::digest(value.as_bytes()).into(),
        }))
    }

    /// Compares hashes in constant time, so response timing says nothing
    /// about how much of a guess was right.
    fn matches(&self, presented: &str) -> bool {
        let presented: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        presented
            .iter()
            .zip(self.hash.iter())
            .fold(0u8, |diff, (a, b)| diff | (a ^ b))
            == 0
    }
}

impl fmt::Debug for BootstrapToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BootstrapToken(<redacted>)")
    }
}

/// The auth layer: decides the caller and whether it may use the route.
pub async fn authenticate(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let Some(matched) = request.extensions().get::<MatchedPath>().cloned() else {
        // Not a matched route (the layer is a route layer, so this does not
        // happen); the fallback answers 404 without looking at tokens.
        return next.run(request).await;
    };
    let route = matched
        .as_str()
        .strip_prefix(API_PREFIX)
        .unwrap_or(matched.as_str());
    let needed = match required_role(request.method(), route) {
        Access::Open => return next.run(request).await,
        Access::Needs(role) => role,
        Access::Undeclared => {
            tracing::error!(
                method = %request.method(),
                route,
                "route declares no role in api/auth.rs `required_role`; only admins may call it"
            );
            Role::Admin
        }
    };

    // The stream's token may ride in the query; take it out either way so
    // the handler never sees it and its strict query parsing still holds.
    let query_token = if route == STREAM_ROUTE {
        take_query_token(&mut request)
    } else {
        None
    };
    let secret = match bearer_token(request.headers()) {
        Ok(Some(secret)) => secret,
        Ok(None) => match query_token {
            Some(secret) => secret,
            None => {
                let hint = if route == STREAM_ROUTE {
                    format!("send `Authorization: Bearer <token>` or `?{QUERY_TOKEN}=<token>`")
                } else {
                    "send `Authorization: Bearer <token>`".to_owned()
                };
                return unauthorized(&format!("this endpoint needs an API token: {hint}"));
            }
        },
        Err(detail) => return unauthorized(detail),
    };

    let caller = match identify(&state, &secret).await {
        Ok(Ok(caller)) => caller,
        Ok(Err(detail)) => return unauthorized(detail),
        Err(e) => return e.into_response(),
    };
    if !caller.role.allows(needed) {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "Forbidden",
            format!(
                "this needs the `{needed}` role; token `{}` has `{}`",
                caller.name, caller.role
            ),
        )
        .into_response();
    }
    request.extensions_mut().insert(caller);
    next.run(request).await
}

/// The token in `Authorization: Bearer <token>`, if the header is there.
fn bearer_token(headers: &HeaderMap) -> Result<Option<String>, &'static str> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let malformed = "the Authorization header must be `Bearer <token>`";
    let value = value.to_str().map_err(|_| malformed)?;
    let (scheme, token) = value.trim().split_once(' ').ok_or(malformed)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(malformed);
    }
    Ok(Some(token.to_owned()))
}

/// Removes `access_token` from the request's query and returns its value.
fn take_query_token(request: &mut Request) -> Option<String> {
    let query = request.uri().query()?;
    let mut token = None;
    let mut kept = url::form_urlencoded::Serializer::new(String::new());
    for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
        if key == QUERY_TOKEN {
            token = Some(value.into_owned());
        } else {
            kept.append_pair(&key, &value);
        }
    }
    token.as_ref()?;
    let kept = kept.finish();
    let path = request.uri().path();
    let path_and_query = if kept.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{kept}")
    };
    let mut parts = request.uri().clone().into_parts();
    parts.path_and_query = path_and_query.parse().ok();
    if let Ok(uri) = axum::http::Uri::from_parts(parts) {
        *request.uri_mut() = uri;
    }
    token
}

/// The caller a secret stands for, or why it stands for none.
async fn identify(
    state: &AppState,
    secret: &str,
) -> Result<Result<Caller, &'static str>, ApiError> {
    if let Some(bootstrap) = &state.bootstrap_token
        && bootstrap.matches(secret)
    {
        return Ok(Ok(Caller {
            name: BOOTSTRAP_NAME.to_owned(),
            role: Role::Admin,
            token_id: None,
        }));
    }
    // Issued secrets carry the prefix; anything else cannot be one, so
    // spare the database the lookup.
    if !secret.starts_with(SECRET_PREFIX) {
        return Ok(Err("unknown API token"));
    }
    Ok(match state.store.token_by_secret(secret).await? {
        None => Err("unknown API token"),
        Some(Presented::Revoked) => Err("this API token was revoked"),
        Some(Presented::Expired) => Err("this API token has expired"),
        Some(Presented::Valid(token)) => Ok(Caller {
            name: token.name,
            role: token.role,
            token_id: Some(token.id),
        }),
    })
}

/// 401 with the challenge RFC 6750 asks for.
fn unauthorized(detail: &str) -> Response {
    let mut response =
        ApiError::new(StatusCode::UNAUTHORIZED, "Unauthorized", detail).into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"meridian\""),
    );
    response
}

/// The request span for the trace layer: method and path only, because the
/// query may carry `access_token` and logs must never hold a token.
pub fn request_span(request: &Request) -> tracing::Span {
    tracing::debug_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_need_a_viewer_releases_a_deployer_and_actions_an_operator() {
        for route in [
            "/rollouts",
            "/rollouts/{id}",
            "/rollouts/{id}/events",
            "/rollouts/{id}/gates",
            "/events/stream",
            "/applications",
            "/clusters",
        ] {
            assert_eq!(
                required_role(&Method::GET, route),
                Access::Needs(Role::Viewer),
                "{route}"
            );
            assert_eq!(
                required_role(&Method::HEAD, route),
                Access::Needs(Role::Viewer)
            );
        }
        assert_eq!(
            required_role(&Method::POST, "/releases"),
            Access::Needs(Role::Deployer)
        );
        assert_eq!(
            required_role(&Method::POST, "/rollouts/{id}/{action}"),
            Access::Needs(Role::Operator)
        );
    }

    #[test]
    fn tokens_webhooks_and_catalog_writes_are_for_admins_even_to_read_secrets() {
        for (method, route) in [
            (Method::GET, "/tokens"),
            (Method::POST, "/tokens"),
            (Method::DELETE, "/tokens/{id}"),
            (Method::GET, "/webhooks"),
            (Method::GET, "/webhooks/{id}/deliveries"),
            (Method::DELETE, "/webhooks/{id}"),
            (Method::POST, "/clusters"),
            (Method::PUT, "/applications/{name}"),
            (Method::DELETE, "/plans/{name}"),
        ] {
            assert_eq!(
                required_role(&method, route),
                Access::Needs(Role::Admin),
                "{method} {route}"
            );
        }
    }

    #[test]
    fn a_route_missing_from_the_table_is_undeclared_rather_than_open() {
        assert_eq!(
            required_role(&Method::GET, "/something-new"),
            Access::Undeclared
        );
        assert_eq!(
            required_role(&Method::POST, "/rollouts"),
            Access::Undeclared
        );
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive_and_other_schemes_are_refused() {
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(
                header::AUTHORIZATION,
                HeaderValue::from_str(value).expect("header"),
            );
            bearer_token(&headers)
        };
        assert_eq!(with("Bearer mrd_x"), Ok(Some("mrd_x".to_owned())));
        assert_eq!(with("bearer  mrd_x "), Ok(Some("mrd_x".to_owned())));
        assert!(with("Basic dXNlcjpwYXNz").is_err());
        assert!(with("Bearer").is_err());
        assert_eq!(bearer_token(&HeaderMap::new()), Ok(None));
    }

    #[test]
    fn the_query_token_is_taken_out_and_the_rest_of_the_query_kept() {
        let mut request = Request::builder()
            .uri("/api/v1/events/stream?rollout=abc&access_token=mrd_s%2Bx")
            .body(axum::body::Body::empty())
            .expect("request");
        assert_eq!(take_query_token(&mut request), Some("mrd_s+x".to_owned()));
        assert_eq!(
            request.uri().to_string(),
            "/api/v1/events/stream?rollout=abc"
        );
        let mut alone = Request::builder()
            .uri("/api/v1/events/stream?access_token=t")
            .body(axum::body::Body::empty())
            .expect("request");
        assert_eq!(take_query_token(&mut alone), Some("t".to_owned()));
        assert_eq!(alone.uri().to_string(), "/api/v1/events/stream");
    }

    #[test]
    fn the_bootstrap_token_matches_only_itself_and_never_shows_in_debug() {
        let token = BootstrapToken::new("0123456789abcdef-bootstrap")
            .expect("long enough")
            .expect("set");
        assert!(token.matches("0123456789abcdef-bootstrap"));
        assert!(!token.matches("0123456789abcdef-bootstrap2"));
        assert!(!format!("{token:?}").contains("0123"));
        assert!(BootstrapToken::new("  ").expect("empty is unset").is_none());
        assert!(BootstrapToken::new("short").is_err());
    }
}
