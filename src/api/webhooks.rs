//! Webhooks: register, list, delete, and see recent deliveries. Secrets go
//! in and, when the server made one up, come out exactly once.

use axum::{
    Json,
    extract::{Path, Query, State, rejection::PathRejection, rejection::QueryRejection},
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::{
    ApiError, AppState,
    auth::Caller,
    error::{ApiJson, Problem},
    views::Items,
};
use crate::{
    store::webhooks::{DeliveryRecord, NewWebhook, WebhookRecord},
    webhooks::{EventFilter, Format, Secret},
};

/// Longest webhook URL accepted.
const MAX_URL_CHARS: usize = 2048;
/// Default and largest page of deliveries.
const DEFAULT_LIMIT: i64 = 50;
const MAX_LIMIT: i64 = 500;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(get_one, delete))
        .routes(routes!(deliveries))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(
    as = CreateWebhook,
    example = json!({"url": "https://hooks.example/meridian", "events": ["rolled_back", "succeeded"]})
)]
pub struct CreateBody {
    /// Where to POST events (http or https).
    #[schema(max_length = 2048, pattern = r"^https?://[^/?#@:\s]+")]
    pub url: String,
    /// Event kinds (`rolled_back`, `succeeded`, ...), or `["*"]` for all.
    pub events: Vec<String>,
    /// The HMAC-SHA256 signing secret; made up (and shown once) when absent.
    pub secret: Option<String>,
    /// `json` (default) or `slack`.
    #[schema(value_type = Option<Format>)]
    pub format: Option<String>,
}

/// A webhook and where to find it.
#[derive(Serialize, ToSchema)]
#[schema(as = WebhookWithLinks)]
pub struct WebhookView {
    #[serde(flatten)]
    pub webhook: WebhookRecord,
    pub links: Links,
}

#[derive(Serialize, ToSchema)]
#[schema(as = WebhookLinks)]
pub struct Links {
    #[serde(rename = "self")]
    pub self_: String,
    pub deliveries: String,
}

/// A registered webhook; `secret` only when the server made it up.
#[derive(Serialize, ToSchema)]
#[schema(as = WebhookCreated)]
pub struct Created {
    #[serde(flatten)]
    pub view: WebhookView,
    /// Only when the server generated it: this is the one time it is shown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

impl WebhookView {
    fn of(webhook: WebhookRecord, public_url: &str) -> Self {
        let base = format!("{public_url}/api/v1/webhooks/{}", webhook.id);
        WebhookView {
            links: Links {
                deliveries: format!("{base}/deliveries"),
                self_: base,
            },
            webhook,
        }
    }
}

/// Where a new webhook's events begin: the settled horizon, below which no
/// event can still commit. Every event committed after the registration is
/// above it; a few that committed just before may be delivered too.
async fn settled_horizon(state: &AppState) -> Result<i64, ApiError> {
    let mut horizon = state.event_horizon.clone();
    let known = tokio::time::timeout(HORIZON_WAIT, horizon.wait_for(Option::is_some)).await;
    match known {
        Ok(Ok(settled)) => Ok(settled.unwrap_or_default()),
        Ok(Err(_)) | Err(_) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Event log not followed yet",
            "the server has not yet found where the event log stands; retry in a moment",
        )),
    }
}

/// How long a registration waits for the horizon (known within
/// milliseconds of start, unless a transaction holds it up).
const HORIZON_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// The body, parsed into types that can only hold valid values.
fn parse(body: CreateBody, created_by: &str) -> Result<(NewWebhook, bool), ApiError> {
    let url = parse_url(&body.url)?;
    let events =
        EventFilter::parse(&body.events).map_err(|e| ApiError::invalid("events", e.to_string()))?;
    let format = match body.format.as_deref() {
        None => Format::default(),
        Some(text) => Format::parse(text).ok_or_else(|| {
            ApiError::invalid(
                "format",
                format!("unknown format `{text}`; one of json, slack"),
            )
        })?,
    };
    let (secret, generated) = match body.secret.as_deref() {
        None => (Secret::generate(), true),
        Some(text) => (
            Secret::parse(text).map_err(|e| ApiError::invalid("secret", e))?,
            false,
        ),
    };
    let new = NewWebhook {
        url,
        events,
        secret,
        format,
        created_by: created_by.to_owned(),
    };
    Ok((new, generated))
}

fn parse_url(text: &str) -> Result<url::Url, ApiError> {
    if text.chars().count() > MAX_URL_CHARS {
        return Err(ApiError::invalid(
            "url",
            format!("the URL is longer than {MAX_URL_CHARS} characters"),
        ));
    }
    let url = url::Url::parse(text)
        .map_err(|e| ApiError::invalid("url", format!("`{text}` is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(ApiError::invalid(
            "url",
            format!("the URL must be http or https, not `{}`", url.scheme()),
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(ApiError::invalid("url", "the URL has no host"));
    }
    Ok(url)
}

/// Register a webhook.
#[utoipa::path(
    post,
    path = "/webhooks",
    operation_id = "create_webhook",
    tag = "webhooks",
    request_body = CreateBody,
    responses(
        (status = 201, description = "Registered", body = Created,
            headers(
                ("Location" = String, description = "The webhook's URL"),
                ("Cache-Control" = String, description = "`no-store`: the body may hold the secret"),
            )),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not `application/json`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field is invalid", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The server has not yet found where the event log stands (just after start); retry", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateBody>,
) -> Result<Response, ApiError> {
    let (new, generated) = parse(body, caller.actor())?;
    let after_event_id = settled_horizon(&state).await?;
    let record = state.store.create_webhook(&new, after_event_id).await?;
    tracing::info!(webhook = %record.id, url = %record.url, by = caller.actor(), "webhook registered");
    let view = WebhookView::of(record, &state.public_url);
    let location = view.links.self_.clone();
    let created = Created {
        view,
        secret: generated.then(|| new.secret.expose().to_owned()),
    };
    let mut response = (StatusCode::CREATED, Json(created)).into_response();
    let headers = response.headers_mut();
    if let Ok(location) = HeaderValue::from_str(&location) {
        headers.insert(header::LOCATION, location);
    }
    // The body may hold the secret: no cache anywhere may keep it.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// Every webhook (never their secrets).
#[utoipa::path(
    get,
    path = "/webhooks",
    operation_id = "list_webhooks",
    tag = "webhooks",
    responses((status = 200, description = "Every webhook", body = Items<WebhookView>)),
)]
pub async fn list(State(state): State<AppState>) -> Result<Json<Items<WebhookView>>, ApiError> {
    let items = state
        .store
        .webhooks()
        .await?
        .into_iter()
        .map(|w| WebhookView::of(w, &state.public_url))
        .collect();
    Ok(Json(Items { items }))
}

/// One webhook.
#[utoipa::path(
    get,
    path = "/webhooks/{id}",
    operation_id = "get_webhook",
    tag = "webhooks",
    params(("id" = Uuid, Path, description = "The webhook's id")),
    responses(
        (status = 200, description = "The webhook", body = WebhookView),
        (status = 400, description = "The id is not a UUID", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such webhook", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn get_one(
    State(state): State<AppState>,
    id: Result<Path<Uuid>, PathRejection>,
) -> Result<Json<WebhookView>, ApiError> {
    let Path(id) = id?;
    let record = state.store.webhook(id).await?;
    Ok(Json(WebhookView::of(record, &state.public_url)))
}

/// Delete a webhook; it gets no more deliveries.
#[utoipa::path(
    delete,
    path = "/webhooks/{id}",
    operation_id = "delete_webhook",
    tag = "webhooks",
    params(("id" = Uuid, Path, description = "The webhook's id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "The id is not a UUID", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such webhook", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    id: Result<Path<Uuid>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let Path(id) = id?;
    state.store.delete_webhook(id).await?;
    tracing::info!(webhook = %id, by = caller.actor(), "webhook deleted");
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeliveriesQuery {
    /// How many of the latest deliveries.
    #[param(minimum = 1, maximum = 500, default = 50)]
    pub limit: Option<i64>,
}

/// A webhook's latest deliveries, each with every attempt.
#[utoipa::path(
    get,
    path = "/webhooks/{id}/deliveries",
    operation_id = "list_webhook_deliveries",
    tag = "webhooks",
    params(("id" = Uuid, Path, description = "The webhook's id"), DeliveriesQuery),
    responses(
        (status = 200, description = "The deliveries, newest first", body = Items<DeliveryRecord>),
        (status = 400, description = "The id is not a UUID, or a bad limit", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such webhook", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn deliveries(
    State(state): State<AppState>,
    id: Result<Path<Uuid>, PathRejection>,
    query: Result<Query<DeliveriesQuery>, QueryRejection>,
) -> Result<Json<Items<DeliveryRecord>>, ApiError> {
    let Path(id) = id?;
    let Query(query) = query?;
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit must be between 1 and {MAX_LIMIT}"
        )));
    }
    Ok(Json(Items {
        items: state.store.deliveries(id, limit).await?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(url: &str, events: &[&str]) -> CreateBody {
        CreateBody {
            url: url.to_owned(),
            events: events.iter().map(|e| (*e).to_owned()).collect(),
            secret: None,
            format: None,
        }
    }

    fn field_of(result: Result<(NewWebhook, bool), ApiError>) -> Option<String> {
        result.err().and_then(|e| e.field)
    }

    #[test]
    fn a_webhook_without_a_secret_gets_a_generated_one_and_the_json_format() {
        let (new, generated) =
            parse(body("https://hooks.example/x", &["succeeded"]), "admin").unwrap();
        assert!(generated);
        assert_eq!(new.format, Format::Json);
        assert_eq!(new.secret.expose().len(), 64);
    }

    #[test]
    fn only_http_and_https_urls_with_a_host_are_accepted() {
        for bad in [
            "ftp://files.example/x",
            "not a url",
            "file:///etc/passwd",
            "http://",
        ] {
            assert_eq!(
                field_of(parse(body(bad, &["*"]), "admin")).as_deref(),
                Some("url"),
                "{bad}"
            );
        }
        assert!(parse(body("http://127.0.0.1:9/hook", &["*"]), "admin").is_ok());
    }

    #[test]
    fn unknown_event_kinds_formats_and_short_secrets_name_their_field() {
        assert_eq!(
            field_of(parse(body("https://h.example", &["deployed"]), "admin")).as_deref(),
            Some("events")
        );
        let mut bad_format = body("https://h.example", &["*"]);
        bad_format.format = Some("xml".to_owned());
        assert_eq!(
            field_of(parse(bad_format, "admin")).as_deref(),
            Some("format")
        );
        let mut short = body("https://h.example", &["*"]);
        short.secret = Some("short".to_owned());
        assert_eq!(field_of(parse(short, "admin")).as_deref(), Some("secret"));
    }
}
