//! Reading container images out of workload specs, and the demo convention
//! that image tags steer simulated behaviour:
//!
//! - a tag containing `crashloop` never becomes ready;
//! - a tag containing `faulty` becomes ready but serves 25% HTTP 500s.

use serde_json::Value;

/// Error rate served by `faulty` images.
pub const FAULTY_ERROR_RATE: f64 = 0.25;

/// Container images of a workload object, from `spec.template.spec.containers`.
pub fn of_object(object: &Value) -> Vec<String> {
    object
        .pointer("/spec/template/spec/containers")
        .and_then(Value::as_array)
        .map(|containers| {
            containers
                .iter()
                .filter_map(|c| c.get("image").and_then(Value::as_str))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// The tag of an image reference: `reg:5000/app:v2@sha256:..` gives `v2`;
/// no tag means `latest`, as the container runtime reads it.
pub fn tag(image: &str) -> &str {
    let without_digest = image.split('@').next().unwrap_or(image);
    let last_segment_start = without_digest.rfind('/').map_or(0, |i| i + 1);
    match without_digest[last_segment_start..].rfind(':') {
        Some(colon) => &without_digest[last_segment_start + colon + 1..],
        None => "latest",
    }
}

/// The `version` label of app metrics: the first container's tag.
pub fn version_label(images: &[String]) -> String {
    images
        .first()
        .map_or_else(|| "unknown".to_owned(), |i| tag(i).to_owned())
}

/// Pods of these images crash forever.
pub fn crashloops(images: &[String]) -> bool {
    images.iter().any(|i| tag(i).contains("crashloop"))
}

/// The error rate these images serve unless overridden.
pub fn default_error_rate(images: &[String]) -> f64 {
    if images.iter().any(|i| tag(i).contains("faulty")) {
        FAULTY_ERROR_RATE
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_read_like_a_container_runtime() {
        assert_eq!(tag("nginx"), "latest");
        assert_eq!(tag("nginx:1.27"), "1.27");
        assert_eq!(tag("registry:5000/team/app"), "latest");
        assert_eq!(
            tag("registry:5000/team/app:v2-faulty@sha256:abc"),
            "v2-faulty"
        );
    }

    #[test]
    fn conventions_follow_the_tag() {
        let crash = vec!["app:v3-crashloop".to_owned()];
        assert!(crashloops(&crash));
        // Only the tag counts, not the repository name.
        assert!(!crashloops(&["crashloop/app:v1".to_owned()]));
        assert_eq!(
            default_error_rate(&["app:v2-faulty".to_owned()]),
            FAULTY_ERROR_RATE
        );
        assert_eq!(version_label(&crash), "v3-crashloop");
    }
}
