//! The HTTP side of a delivery: one signed POST, one outcome. Knows nothing
//! of the database; the worker decides what an outcome means.

use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue, USER_AGENT};
use uuid::Uuid;

use super::signing::{SIGNATURE_HEADER, signature};

pub const EVENT_HEADER: &str = "X-Meridian-Event";
pub const DELIVERY_HEADER: &str = "X-Meridian-Delivery";

/// How much of a refusing receiver's answer is kept as the attempt's error:
/// enough to read its message, not enough to store someone's HTML page.
const ERROR_BODY_BYTES: usize = 300;

/// What one attempt came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The receiver answered 2xx.
    Delivered { status: u16 },
    /// The receiver answered, but not 2xx (redirects are not followed: a
    /// webhook URL that moved must be updated, not silently chased).
    Refused { status: u16, detail: String },
    /// No answer: connection refused, DNS, TLS, or the attempt timed out.
    Unreachable { error: String },
}

impl Outcome {
    pub fn is_delivered(&self) -> bool {
        matches!(self, Outcome::Delivered { .. })
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            Outcome::Delivered { status } | Outcome::Refused { status, .. } => Some(*status),
            Outcome::Unreachable { .. } => None,
        }
    }

    /// What went wrong, for the delivery's `last_error`.
    pub fn error(&self) -> Option<String> {
        match self {
            Outcome::Delivered { .. } => None,
            Outcome::Refused { status, detail } if detail.is_empty() => {
                Some(format!("HTTP {status}"))
            }
            Outcome::Refused { status, detail } => Some(format!("HTTP {status}: {detail}")),
            Outcome::Unreachable { error } => Some(error.clone()),
        }
    }
}

/// One signed request to send.
pub struct Request<'a> {
    pub url: &'a str,
    pub secret: &'a str,
    pub event_kind: &'a str,
    pub delivery_id: Uuid,
    pub body: Vec<u8>,
}

/// The webhook HTTP client, built once.
#[derive(Clone)]
pub struct Sender {
    http: reqwest::Client,
    timeout: Duration,
}

impl Sender {
    /// `timeout` bounds each attempt end to end, so a receiver that hangs
    /// costs one attempt, not the worker.
    pub fn new(timeout: Duration) -> reqwest::Result<Sender> {
        // reqwest is built without a crypto provider; main installs ring,
        // tests may not have: install it unless someone already did.
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            let _raced = rustls::crypto::ring::default_provider().install_default();
        }
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Sender { http, timeout })
    }

    pub async fn send(&self, request: Request<'_>) -> Outcome {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(
            USER_AGENT,
            HeaderValue::from_static(concat!("meridian-webhooks/", env!("CARGO_PKG_VERSION"))),
        );
        let signed = signature(request.secret, &request.body);
        for (name, value) in [
            (SIGNATURE_HEADER, signed.as_str()),
            (EVENT_HEADER, request.event_kind),
            (DELIVERY_HEADER, &request.delivery_id.to_string()),
        ] {
            if let Ok(value) = HeaderValue::from_str(value) {
                headers.insert(name, value);
            }
        }
        let response = self
            .http
            .post(request.url)
            .headers(headers)
            .body(request.body)
            .send()
            .await;
        let mut response = match response {
            Ok(r) => r,
            Err(e) => return self.unreachable(&e),
        };
        let status = response.status().as_u16();
        if response.status().is_success() {
            return Outcome::Delivered { status };
        }
        let mut snippet = Vec::new();
        while snippet.len() < ERROR_BODY_BYTES {
            match response.chunk().await {
                Ok(Some(chunk)) => snippet.extend_from_slice(&chunk),
                // The status already says it was refused; a body cut short
                // only loses detail.
                Ok(None) | Err(_) => break,
            }
        }
        snippet.truncate(ERROR_BODY_BYTES);
        let detail = String::from_utf8_lossy(&snippet)
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        Outcome::Refused { status, detail }
    }

    fn unreachable(&self, error: &reqwest::Error) -> Outcome {
        let error = if error.is_timeout() {
            format!("no answer within {:?}", self.timeout)
        } else {
            chain(error)
        };
        Outcome::Unreachable { error }
    }
}

/// `error: cause: cause …`: reqwest's own message hides the part that
/// matters (the refused connection, the DNS failure).
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use axum::{
        Router, body::Bytes, http::HeaderMap as AxumHeaders, http::StatusCode, routing::post,
    };

    use super::*;
    use crate::webhooks::verify;

    type Seen = Arc<Mutex<Vec<(AxumHeaders, Bytes)>>>;

    async fn receiver() -> (String, Seen) {
        let seen: Seen = Arc::default();
        let record = seen.clone();
        let app = Router::new()
            .route(
                "/ok",
                post(move |headers: AxumHeaders, body: Bytes| async move {
                    record.lock().unwrap().push((headers, body));
                    StatusCode::NO_CONTENT
                }),
            )
            .route(
                "/broken",
                post(|| async { (StatusCode::BAD_GATEWAY, "upstream\n  down") }),
            )
            .route(
                "/slow",
                post(|| async {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    "late"
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (format!("http://{address}"), seen)
    }

    fn request(url: &str) -> Request<'_> {
        Request {
            url,
            secret: "s3cret",
            event_kind: "succeeded",
            delivery_id: Uuid::nil(),
            body: b"{\"kind\":\"succeeded\"}".to_vec(),
        }
    }

    #[tokio::test]
    async fn a_delivery_carries_the_body_signature_kind_and_delivery_id() {
        let (base, seen) = receiver().await;
        let sender = Sender::new(Duration::from_secs(5)).unwrap();
        let outcome = sender.send(request(&format!("{base}/ok"))).await;
        assert_eq!(outcome, Outcome::Delivered { status: 204 });
        let seen = seen.lock().unwrap();
        let (headers, body) = &seen[0];
        assert_eq!(&body[..], b"{\"kind\":\"succeeded\"}");
        assert_eq!(headers["content-type"], "application/json");
        assert_eq!(headers["x-meridian-event"], "succeeded");
        assert_eq!(headers["x-meridian-delivery"], Uuid::nil().to_string());
        let signature = headers["x-meridian-signature"].to_str().unwrap();
        assert!(verify("s3cret", body, signature), "{signature}");
    }

    #[tokio::test]
    async fn a_non_2xx_answer_is_refused_with_its_status_and_a_short_detail() {
        let (base, _) = receiver().await;
        let sender = Sender::new(Duration::from_secs(5)).unwrap();
        let outcome = sender.send(request(&format!("{base}/broken"))).await;
        assert_eq!(outcome.status(), Some(502));
        assert_eq!(outcome.error().as_deref(), Some("HTTP 502: upstream down"));
    }

    #[tokio::test]
    async fn a_closed_port_and_a_hanging_receiver_are_unreachable() {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let sender = Sender::new(Duration::from_millis(300)).unwrap();
        let refused = sender
            .send(request(&format!("http://127.0.0.1:{port}/hook")))
            .await;
        assert!(
            matches!(refused, Outcome::Unreachable { .. }),
            "{refused:?}"
        );

        let (base, _) = receiver().await;
        let slow = sender.send(request(&format!("{base}/slow"))).await;
        assert_eq!(
            slow,
            Outcome::Unreachable {
                error: "no answer within 300ms".to_owned()
            }
        );
    }
}
