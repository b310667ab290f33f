//! Equality-based `labelSelector` and `fieldSelector` for LIST, the subset
//! clients actually send (`a=b`, `a==b`, `a!=b`, `a`, `!a`).

use serde_json::Value;

use super::api_error::ApiError;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    Exists(String),
    NotExists(String),
}

/// A parsed selector; empty matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector {
    requirements: Vec<Requirement>,
}

impl Selector {
    /// Parses the equality-based syntax; set-based (`in`, `notin`) is refused
    /// with a 400 rather than silently ignored.
    pub fn parse(text: &str) -> Result<Self, ApiError> {
        let mut requirements = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let req = if let Some((k, v)) = part.split_once("!=") {
                Requirement::NotEquals(k.trim().to_owned(), v.trim().to_owned())
            } else if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
                Requirement::Equals(k.trim().to_owned(), v.trim().to_owned())
            } else if let Some(k) = part.strip_prefix('!') {
                Requirement::NotExists(k.trim().to_owned())
            } else if part.contains(' ') || part.contains('(') {
                return Err(ApiError::bad_request(format!(
                    "unable to parse requirement {part:?}: set-based selectors are not supported by the meridian sim"
                )));
            } else {
                Requirement::Exists(part.to_owned())
            };
            requirements.push(req);
        }
        Ok(Self { requirements })
    }

    /// Matches against a lookup from key to value.
    pub fn matches(&self, lookup: impl Fn(&str) -> Option<String>) -> bool {
        self.requirements.iter().all(|req| match req {
            Requirement::Equals(k, v) => lookup(k).as_deref() == Some(v.as_str()),
            Requirement::NotEquals(k, v) => lookup(k).as_deref() != Some(v.as_str()),
            Requirement::Exists(k) => lookup(k).is_some(),
            Requirement::NotExists(k) => lookup(k).is_none(),
        })
    }

    /// Label selector against `metadata.labels`.
    pub fn matches_labels(&self, object: &Value) -> bool {
        self.matches(|key| {
            object
                .pointer("/metadata/labels")
                .and_then(|labels| labels.get(key))
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
    }

    /// Field selector; only `metadata.name` and `metadata.namespace`, like
    /// most built-in types.
    pub fn matches_fields(&self, object: &Value) -> Result<bool, ApiError> {
        for req in &self.requirements {
            let key = match req {
                Requirement::Equals(k, _) | Requirement::NotEquals(k, _) => k,
                Requirement::Exists(k) | Requirement::NotExists(k) => k,
            };
            if key != "metadata.name" && key != "metadata.namespace" {
                return Err(ApiError::bad_request(format!(
                    "field label not supported: {key}"
                )));
            }
        }
        Ok(self.matches(|key| {
            let pointer = format!("/{}", key.replace('.', "/"));
            Some(
                object
                    .pointer(&pointer)
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned(),
            )
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn equality_selectors_match_labels() {
        let obj = json!({"metadata": {"name": "web", "labels": {"app": "web", "tier": "front"}}});
        assert!(
            Selector::parse("app=web,tier!=back")
                .expect("parse")
                .matches_labels(&obj)
        );
        assert!(
            Selector::parse("app==web,!missing,tier")
                .expect("parse")
                .matches_labels(&obj)
        );
        assert!(
            !Selector::parse("app=api")
                .expect("parse")
                .matches_labels(&obj)
        );
        assert!(Selector::parse("").expect("parse").matches_labels(&obj));
        assert!(Selector::parse("env in (a,b)").is_err());
    }

    #[test]
    fn field_selectors_cover_name_only() {
        let obj = json!({"metadata": {"name": "web", "namespace": "shop"}});
        assert_eq!(
            Selector::parse("metadata.name=web")
                .expect("parse")
                .matches_fields(&obj),
            Ok(true)
        );
        assert_eq!(
            Selector::parse("metadata.namespace!=shop")
                .expect("parse")
                .matches_fields(&obj),
            Ok(false)
        );
        assert!(
            Selector::parse("spec.x=1")
                .expect("parse")
                .matches_fields(&obj)
                .is_err()
        );
    }
}
