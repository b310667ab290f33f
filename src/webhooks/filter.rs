//! What a webhook asks for: which event kinds, in which body format.
//! Parsed once at the API boundary; stored as plain text.

use serde::{Deserialize, Serialize};

use crate::domain::EventKind;

/// The wildcard that subscribes to every event kind, now and future.
pub const ALL_EVENTS: &str = "*";

/// The event kinds a webhook is told about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventFilter {
    All,
    /// Never empty, no duplicates, in the order given.
    Kinds(Vec<EventKind>),
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    #[error("list at least one event kind, or [\"*\"] for all of them")]
    Empty,
    #[error("`*` means every event kind and cannot be combined with others")]
    WildcardMixed,
    /// Carries serde's message, which lists every known kind.
    #[error("{0}")]
    UnknownKind(String),
}

impl EventFilter {
    pub fn parse(names: &[String]) -> Result<EventFilter, FilterError> {
        if names.is_empty() {
            return Err(FilterError::Empty);
        }
        if names.iter().any(|n| n == ALL_EVENTS) {
            return if names.iter().all(|n| n == ALL_EVENTS) {
                Ok(EventFilter::All)
            } else {
                Err(FilterError::WildcardMixed)
            };
        }
        let mut kinds = Vec::with_capacity(names.len());
        for name in names {
            // serde knows the snake_case names; its error lists them all.
            let kind: EventKind = serde_json::from_value(serde_json::Value::String(name.clone()))
                .map_err(|e| FilterError::UnknownKind(e.to_string()))?;
            if !kinds.contains(&kind) {
                kinds.push(kind);
            }
        }
        Ok(EventFilter::Kinds(kinds))
    }

    /// The names as stored and shown: `["*"]` or the kinds' names.
    pub fn names(&self) -> Vec<String> {
        match self {
            EventFilter::All => vec![ALL_EVENTS.to_owned()],
            EventFilter::Kinds(kinds) => kinds.iter().map(|k| k.as_str().to_owned()).collect(),
        }
    }
}

/// The body a webhook receives.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = WebhookFormat)]
pub enum Format {
    /// The event as the API shows it, plus links.
    #[default]
    Json,
    /// `{"text": "..."}`, what Slack's incoming webhooks (and many chat
    /// tools copying them) accept.
    Slack,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Slack => "slack",
        }
    }

    pub fn parse(text: &str) -> Option<Format> {
        match text {
            "json" => Some(Format::Json),
            "slack" => Some(Format::Slack),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn known_kinds_parse_and_duplicates_collapse() {
        let filter = EventFilter::parse(&names(&["rolled_back", "succeeded", "rolled_back"]));
        assert_eq!(
            filter,
            Ok(EventFilter::Kinds(vec![
                EventKind::RolledBack,
                EventKind::Succeeded
            ]))
        );
    }

    #[test]
    fn an_unknown_kind_is_refused_with_the_known_ones_listed() {
        let Err(FilterError::UnknownKind(message)) =
            EventFilter::parse(&names(&["succeeded", "deployed"]))
        else {
            panic!("expected an unknown-kind error");
        };
        assert!(message.contains("deployed"), "{message}");
        assert!(message.contains("rolled_back"), "{message}");
    }

    #[test]
    fn an_empty_list_and_a_mixed_wildcard_are_refused() {
        assert_eq!(EventFilter::parse(&[]), Err(FilterError::Empty));
        assert_eq!(
            EventFilter::parse(&names(&["*", "succeeded"])),
            Err(FilterError::WildcardMixed)
        );
    }

    #[test]
    fn formats_round_trip_through_their_names() {
        for format in [Format::Json, Format::Slack] {
            assert_eq!(Format::parse(format.as_str()), Some(format));
        }
        assert_eq!(Format::parse("xml"), None);
    }
}
