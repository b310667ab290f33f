//! The bytes a webhook receives for one event. Rendered once per attempt
//! from stored rows, signed as they are sent.

use serde::Serialize;
use uuid::Uuid;

use super::Format;
use crate::store::events::EventRecord;

/// What the event's rollout is about, for a readable message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventContext {
    pub application: Option<String>,
    pub version: Option<String>,
}

#[derive(Serialize)]
struct JsonBody<'a> {
    /// The event exactly as `GET /api/v1/rollouts/{id}/events` shows it.
    #[serde(flatten)]
    event: &'a EventRecord,
    application: Option<&'a str>,
    version: Option<&'a str>,
    links: Option<Links>,
}

#[derive(Serialize)]
struct Links {
    rollout: String,
    events: String,
    dashboard: String,
}

#[derive(Serialize)]
struct SlackBody {
    text: String,
}

fn links(public_url: &str, rollout: Uuid) -> Links {
    Links {
        rollout: format!("{public_url}/api/v1/rollouts/{rollout}"),
        events: format!("{public_url}/api/v1/rollouts/{rollout}/events"),
        dashboard: format!("{public_url}/rollouts/{rollout}"),
    }
}

/// The request body for `event` in `format`.
pub fn render(
    format: Format,
    event: &EventRecord,
    context: &EventContext,
    public_url: &str,
) -> Vec<u8> {
    let body = match format {
        Format::Json => serde_json::to_vec(&JsonBody {
            event,
            application: context.application.as_deref(),
            version: context.version.as_deref(),
            links: event.rollout_id.map(|id| links(public_url, id)),
        }),
        Format::Slack => serde_json::to_vec(&SlackBody {
            text: slack_line(event, context, public_url),
        }),
    };
    // Serializing plain structs of strings and numbers cannot fail.
    body.unwrap_or_default()
}

/// One line a person reads in a chat channel, e.g.
/// `shop 1.0.1: rolled back on use1-canary — reason <url|open rollout>`.
fn slack_line(event: &EventRecord, context: &EventContext, public_url: &str) -> String {
    let subject = match (&context.application, &context.version) {
        (Some(app), Some(version)) => format!("{} {}", escape(app), escape(version)),
        (Some(app), None) => escape(app),
        _ => "Meridian".to_owned(),
    };
    let mut line = format!("{subject}: {}", event.kind.replace('_', " "));
    if let Some(cluster) = &event.cluster {
        line.push_str(&format!(" on {}", escape(cluster)));
    }
    if !event.message.is_empty() {
        line.push_str(&format!(" — {}", escape(&event.message)));
    }
    if let Some(id) = event.rollout_id {
        line.push_str(&format!(
            " <{}|open rollout>",
            links(public_url, id).dashboard
        ));
    }
    line
}

/// Slack reads `<`, `>` and `&` as markup; text must escape them.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};
    use serde_json::Value;

    use super::*;

    fn event(kind: &str, cluster: Option<&str>, message: &str) -> EventRecord {
        EventRecord {
            id: 42,
            rollout_id: Some(Uuid::nil()),
            cluster: cluster.map(str::to_owned),
            kind: kind.to_owned(),
            actor: "engine".to_owned(),
            message: message.to_owned(),
            worker: Some("solo".to_owned()),
            lease_token: Some(3),
            created_at: Utc
                .with_ymd_and_hms(2025, 1, 2, 3, 4, 5)
                .single()
                .unwrap_or_default(),
        }
    }

    fn shop() -> EventContext {
        EventContext {
            application: Some("shop".to_owned()),
            version: Some("1.0.1".to_owned()),
        }
    }

    #[test]
    fn the_json_body_is_the_api_event_plus_the_release_and_links() {
        let e = event("succeeded", None, "every stage healthy");
        let body: Value =
            serde_json::from_slice(&render(Format::Json, &e, &shop(), "http://m:8080")).unwrap();
        let api: Value = serde_json::to_value(&e).unwrap();
        for (key, value) in api.as_object().unwrap() {
            assert_eq!(&body[key], value, "{key}");
        }
        assert_eq!(body["application"], "shop");
        assert_eq!(body["version"], "1.0.1");
        assert_eq!(
            body["links"]["dashboard"],
            format!("http://m:8080/rollouts/{}", Uuid::nil())
        );
        assert_eq!(
            body["links"]["rollout"],
            format!("http://m:8080/api/v1/rollouts/{}", Uuid::nil())
        );
    }

    #[test]
    fn the_slack_body_is_one_readable_line_of_text_only() {
        let e = event(
            "rolled_back",
            Some("use1-canary"),
            "gate <error-rate> & more",
        );
        let body: Value =
            serde_json::from_slice(&render(Format::Slack, &e, &shop(), "http://m")).unwrap();
        assert_eq!(body.as_object().map(|o| o.len()), Some(1));
        let text = body["text"].as_str().unwrap();
        assert_eq!(
            text,
            format!(
                "shop 1.0.1: rolled back on use1-canary — gate &lt;error-rate&gt; &amp; more \
                 <http://m/rollouts/{}|open rollout>",
                Uuid::nil()
            )
        );
        assert!(!text.contains('\n'));
    }

    #[test]
    fn an_event_without_a_rollout_has_no_links() {
        let mut e = event("succeeded", None, "");
        e.rollout_id = None;
        let body: Value = serde_json::from_slice(&render(
            Format::Json,
            &e,
            &EventContext::default(),
            "http://m",
        ))
        .unwrap();
        assert_eq!(body["links"], Value::Null);
        let slack: Value = serde_json::from_slice(&render(
            Format::Slack,
            &e,
            &EventContext::default(),
            "http://m",
        ))
        .unwrap();
        assert_eq!(slack["text"], "Meridian: succeeded");
    }
}
