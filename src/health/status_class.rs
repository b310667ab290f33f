//! Which HTTP status codes an HTTP check accepts: a class (`2xx`) or one
//! exact code (`204`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::HealthError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum StatusClass {
    /// Any code whose first digit is this (2 for `2xx`).
    Class(u8),
    /// Exactly this code.
    Exact(u16),
}

impl StatusClass {
    pub fn matches(self, status: u16) -> bool {
        match self {
            Self::Class(first) => status / 100 == u16::from(first),
            Self::Exact(code) => status == code,
        }
    }
}

impl Default for StatusClass {
    /// What a health endpoint answers when all is well.
    fn default() -> Self {
        Self::Class(2)
    }
}

impl FromStr for StatusClass {
    type Err = HealthError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || HealthError::BadStatusClass(text.to_owned());
        let lower = text.trim().to_ascii_lowercase();
        if let Some(first) = lower.strip_suffix("xx") {
            return match first {
                "1" | "2" | "3" | "4" | "5" => first.parse().map(Self::Class).map_err(|_| bad()),
                _ => Err(bad()),
            };
        }
        match lower.parse::<u16>() {
            Ok(code) if (100..=599).contains(&code) => Ok(Self::Exact(code)),
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for StatusClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Class(first) => write!(f, "{first}xx"),
            Self::Exact(code) => write!(f, "{code}"),
        }
    }
}

impl TryFrom<String> for StatusClass {
    type Error = HealthError;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

impl From<StatusClass> for String {
    fn from(class: StatusClass) -> Self {
        class.to_string()
    }
}
