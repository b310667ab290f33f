use std::{collections::BTreeMap, fmt};

use serde::{Deserialize, Serialize};

/// A cluster's name: a DNS-label-like identifier, checked once at the edge.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ClusterName(String);

impl ClusterName {
    pub fn parse(name: &str) -> Result<Self, String> {
        let valid = !name.is_empty()
            && name.len() <= 63
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !name.starts_with('-')
            && !name.ends_with('-');
        if valid {
            Ok(Self(name.to_owned()))
        } else {
            Err(format!(
                "`{name}` is not a valid cluster name (lower-case letters, digits and `-`, at most 63)"
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ClusterName {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<ClusterName> for String {
    fn from(value: ClusterName) -> Self {
        value.0
    }
}

impl fmt::Display for ClusterName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One Kubernetes API server Meridian may change. Credentials are not here:
/// `context` names a kubeconfig context on the server's side.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cluster {
    pub name: ClusterName,
    pub region: String,
    pub timezone: chrono_tz::Tz,
    pub labels: BTreeMap<String, String>,
    pub context: String,
}

/// A cluster as written: a config file entry or an API request body.
/// [`ClusterSpec::check`] is the one place its rules live.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClusterSpec {
    pub name: ClusterName,
    pub region: String,
    /// An IANA time zone (`Europe/Berlin`); default `UTC`.
    #[serde(default = "utc")]
    #[schema(value_type = String, example = "Europe/Berlin")]
    pub timezone: chrono_tz::Tz,
    /// What plans select clusters by (`tier: canary`).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The kubeconfig context on the server's side; defaults to the name.
    #[serde(default)]
    pub context: Option<String>,
}

fn utc() -> chrono_tz::Tz {
    chrono_tz::UTC
}

impl ClusterSpec {
    /// Checks what the types cannot say; the error's path is relative to
    /// the spec.
    pub fn check(self) -> Result<Cluster, super::FieldError> {
        use super::FieldError;
        if self.region.trim().is_empty() {
            return Err(FieldError::at("region", "region is empty"));
        }
        if let Some(context) = &self.context
            && context.trim().is_empty()
        {
            return Err(FieldError::at(
                "context",
                "context is empty; leave it out to use the cluster's name",
            ));
        }
        Ok(Cluster {
            context: self.context.unwrap_or_else(|| self.name.to_string()),
            name: self.name,
            region: self.region,
            timezone: self.timezone,
            labels: self.labels,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: serde_json::Value) -> ClusterSpec {
        serde_json::from_value(json).expect("spec parses")
    }

    #[test]
    fn defaults_are_utc_no_labels_and_the_name_as_context() {
        let cluster = spec(serde_json::json!({"name": "eu-1", "region": "eu"}))
            .check()
            .expect("valid");
        assert_eq!(cluster.timezone, chrono_tz::UTC);
        assert!(cluster.labels.is_empty());
        assert_eq!(cluster.context, "eu-1");
    }

    #[test]
    fn an_empty_region_or_context_is_refused_with_its_field() {
        let err = spec(serde_json::json!({"name": "eu-1", "region": " "}))
            .check()
            .expect_err("empty region");
        assert_eq!(err.path, "region");
        let err = spec(serde_json::json!({"name": "eu-1", "region": "eu", "context": ""}))
            .check()
            .expect_err("empty context");
        assert_eq!(err.path, "context");
    }
}
