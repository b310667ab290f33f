//! Timestamps as Kubernetes writes them: RFC 3339, whole seconds, `Z`.

use chrono::{DateTime, SecondsFormat, Utc};

pub fn k8s_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    #[test]
    fn whole_seconds_with_z() {
        let t = chrono::DateTime::<chrono::Utc>::UNIX_EPOCH + chrono::TimeDelta::milliseconds(1500);
        assert_eq!(super::k8s_time(t), "1970-01-01T00:00:01Z");
    }
}
