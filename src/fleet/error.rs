//! What can go wrong talking to a cluster, sorted by what the caller should do
//! about it: wait and try again later (transient) or stop (permanent).

/// A failed fleet call. Every message names the cluster and, where there is
/// one, the object and operation, and carries the API server's own words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FleetError {
    /// Connection refused, timeout, 5xx or 429, still failing after the retry
    /// budget. The cluster may well answer a later call.
    #[error("cluster {cluster} unreachable: {message}")]
    Unreachable { cluster: String, message: String },
    /// Server-side apply found fields owned by another field manager. Never
    /// retried: someone else is changing the object and a person must decide.
    #[error("cluster {cluster}: conflict: {message}")]
    Conflict { cluster: String, message: String },
    /// Any other refusal (4xx, unusable object, unreadable answer): retrying
    /// the same request cannot succeed.
    #[error("cluster {cluster} rejected the request: {message}")]
    Rejected { cluster: String, message: String },
    /// The cluster name is not one this fleet was connected to.
    #[error("unknown cluster {0:?}")]
    UnknownCluster(String),
    /// The kubeconfig cannot produce a client for the cluster (missing file or
    /// context, bad credentials section). Permanent until the file is fixed.
    #[error("cluster {cluster}: kubeconfig: {message}")]
    Config { cluster: String, message: String },
}

impl FleetError {
    /// Whether the same call may succeed later without anyone changing anything.
    pub fn is_transient(&self) -> bool {
        matches!(self, FleetError::Unreachable { .. })
    }

    /// The cluster the error is about.
    pub fn cluster(&self) -> &str {
        match self {
            FleetError::Unreachable { cluster, .. }
            | FleetError::Conflict { cluster, .. }
            | FleetError::Rejected { cluster, .. }
            | FleetError::Config { cluster, .. } => cluster,
            FleetError::UnknownCluster(cluster) => cluster,
        }
    }
}

/// How one failed attempt should be treated by the retry loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    Transient,
    Conflict,
    Permanent,
}

/// Reasons the API server uses for overload and internal trouble; used when a
/// `Status` body arrives without a code.
const TRANSIENT_REASONS: [&str; 5] = [
    "InternalError",
    "ServiceUnavailable",
    "Timeout",
    "ServerTimeout",
    "TooManyRequests",
];

/// Sorts a kube error and renders the part of it worth showing a person.
pub(crate) fn classify(err: &kube::Error) -> (Class, String) {
    match err {
        kube::Error::Api(status) => {
            let class = match status.code {
                409 => Class::Conflict,
                408 | 429 => Class::Transient,
                500..=599 => Class::Transient,
                0 if TRANSIENT_REASONS.contains(&status.reason.as_str()) => Class::Transient,
                _ => Class::Permanent,
            };
            let text = if status.message.is_empty() {
                status.reason.as_str()
            } else {
                status.message.as_str()
            };
            let message = match (status.code, status.reason.is_empty()) {
                (0, _) => text.to_owned(),
                (code, true) => format!("HTTP {code}: {text}"),
                (code, false) => format!("HTTP {code} {}: {text}", status.reason),
            };
            (class, message)
        }
        // Transport trouble: refused or reset connections, connect and read
        // timeouts of the kube Config, TLS handshakes cut short.
        kube::Error::HyperError(_) | kube::Error::Service(_) => (Class::Transient, chain(err)),
        _ => (Class::Permanent, chain(err)),
    }
}

/// An error with its causes, because kube's top-level text ("ServiceError:
/// client error (Connect)") hides the part that says what happened.
pub(crate) fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
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
    use super::*;
    use kube::core::Status;

    fn api(code: u16, reason: &str, message: &str) -> kube::Error {
        let mut status = Status::failure(message, reason);
        status.code = code;
        kube::Error::Api(Box::new(status))
    }

    #[test]
    fn status_codes_sort_into_classes() {
        assert_eq!(
            classify(&api(500, "InternalError", "boom")).0,
            Class::Transient
        );
        assert_eq!(
            classify(&api(503, "ServiceUnavailable", "x")).0,
            Class::Transient
        );
        assert_eq!(
            classify(&api(429, "TooManyRequests", "x")).0,
            Class::Transient
        );
        assert_eq!(classify(&api(409, "Conflict", "x")).0, Class::Conflict);
        assert_eq!(classify(&api(422, "Invalid", "x")).0, Class::Permanent);
        assert_eq!(classify(&api(403, "Forbidden", "x")).0, Class::Permanent);
        assert_eq!(
            classify(&api(0, "ServiceUnavailable", "x")).0,
            Class::Transient
        );
        assert_eq!(classify(&api(0, "Invalid", "x")).0, Class::Permanent);
    }

    #[test]
    fn message_keeps_the_servers_words() {
        let (_, message) = classify(&api(
            409,
            "Conflict",
            "Apply failed with 1 conflict: conflict with \"kubectl\"",
        ));
        assert_eq!(
            message,
            "HTTP 409 Conflict: Apply failed with 1 conflict: conflict with \"kubectl\""
        );
    }

    #[test]
    fn only_unreachable_is_transient() {
        let c = || "eu-1".to_owned();
        assert!(
            FleetError::Unreachable {
                cluster: c(),
                message: String::new()
            }
            .is_transient()
        );
        assert!(
            !FleetError::Conflict {
                cluster: c(),
                message: String::new()
            }
            .is_transient()
        );
        assert!(
            !FleetError::Rejected {
                cluster: c(),
                message: String::new()
            }
            .is_transient()
        );
        assert!(
            !FleetError::Config {
                cluster: c(),
                message: String::new()
            }
            .is_transient()
        );
        assert!(!FleetError::UnknownCluster(c()).is_transient());
        assert_eq!(FleetError::UnknownCluster(c()).cluster(), "eu-1");
    }
}
