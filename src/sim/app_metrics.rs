//! Per-cluster application metrics in Prometheus text format, as if every
//! ready pod served traffic: counters integrated exactly over the simulated
//! pod history, so they are monotonic and independent of scrape timing.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use super::images;
use super::pods::{Epoch, Timing};

/// Requests per second one ready pod serves.
pub const REQUESTS_PER_READY_POD_PER_SECOND: f64 = 10.0;

/// One series: labels other than `cluster` and `region`, which are the same
/// for every series of a cluster.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SeriesKey {
    pub namespace: String,
    pub app: String,
    pub version: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Counters {
    pub requests: f64,
    pub errors: f64,
}

/// Error rates by image: overrides set at run time win over the demo
/// convention (`faulty` tags serve 25% errors).
#[derive(Debug, Clone, Default)]
pub struct ErrorRates {
    /// (image substring, rate); later entries win.
    overrides: Vec<(String, f64)>,
}

impl ErrorRates {
    pub fn set(&mut self, image_substring: &str, rate: f64) {
        self.overrides.retain(|(s, _)| s != image_substring);
        self.overrides
            .push((image_substring.to_owned(), rate.clamp(0.0, 1.0)));
    }

    pub fn rate(&self, images: &[String]) -> f64 {
        self.overrides
            .iter()
            .rev()
            .find(|(sub, _)| images.iter().any(|i| i.contains(sub.as_str())))
            .map_or_else(|| images::default_error_rate(images), |(_, rate)| *rate)
    }
}

#[derive(Debug, Clone, Default)]
pub struct AppMetrics {
    series: BTreeMap<SeriesKey, Counters>,
}

impl AppMetrics {
    /// Adds the traffic of `epoch`'s pods between `from` and `to`.
    pub fn integrate(
        &mut self,
        namespace: &str,
        app: &str,
        epoch: &Epoch,
        span: (DateTime<Utc>, DateTime<Utc>),
        timing: Timing,
        rates: &ErrorRates,
    ) {
        let (from, to) = span;
        if to <= from {
            return;
        }
        // The pods are constant between change points, so each slice is exact.
        let mut cuts = vec![from];
        cuts.extend(
            epoch
                .change_points(timing)
                .into_iter()
                .filter(|p| *p > from && *p < to),
        );
        cuts.push(to);
        for slice in cuts.windows(2) {
            let [a, b] = slice else { continue };
            let seconds = (*b - *a).num_microseconds().unwrap_or(i64::MAX) as f64 / 1e6;
            for group in epoch.at(*a, timing).groups.iter().filter(|g| g.total > 0) {
                let key = SeriesKey {
                    namespace: namespace.to_owned(),
                    app: app.to_owned(),
                    version: images::version_label(&group.images),
                };
                // Created at zero as soon as pods exist, so `rate()` sees the
                // first increase instead of a series appearing mid-flight.
                let counters = self.series.entry(key).or_default();
                let requests = f64::from(group.ready) * REQUESTS_PER_READY_POD_PER_SECOND * seconds;
                counters.requests += requests;
                counters.errors += requests * rates.rate(&group.images);
            }
        }
    }

    #[cfg(test)]
    pub fn get(&self, key: &SeriesKey) -> Option<Counters> {
        self.series.get(key).copied()
    }

    /// Prometheus text exposition of every series ever seen.
    pub fn render(&self, cluster: &str, region: &str) -> String {
        let mut out = String::new();
        for (metric, help, pick) in [
            (
                "app_http_requests_total",
                "HTTP requests served by the application (simulated).",
                (|c: &Counters| c.requests) as fn(&Counters) -> f64,
            ),
            (
                "app_http_errors_total",
                "HTTP requests answered with a 5xx by the application (simulated).",
                |c: &Counters| c.errors,
            ),
        ] {
            let _ = writeln!(out, "# HELP {metric} {help}");
            let _ = writeln!(out, "# TYPE {metric} counter");
            for (key, counters) in &self.series {
                let _ = writeln!(
                    out,
                    "{metric}{{namespace=\"{}\",app=\"{}\",version=\"{}\",cluster=\"{}\",region=\"{}\"}} {}",
                    escape(&key.namespace),
                    escape(&key.app),
                    escape(&key.version),
                    escape(cluster),
                    escape(region),
                    pick(counters).floor()
                );
            }
        }
        out
    }
}

/// Label value escaping of the text exposition format.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::pods::Strategy;
    use chrono::TimeDelta;
    use serde_json::json;

    fn timing() -> Timing {
        Timing {
            ready_after: TimeDelta::seconds(1),
            observe_delay: TimeDelta::zero(),
        }
    }

    fn epoch(image: &str, desired: u32) -> Epoch {
        Epoch {
            start: DateTime::<Utc>::UNIX_EPOCH,
            generation: 1,
            desired,
            template: image.to_owned(),
            images: vec![image.to_owned()],
            strategy: Strategy::Surge,
            initial: vec![],
            frozen_status: json!({}),
        }
    }

    #[test]
    fn integrates_exactly_over_readiness_steps() {
        let e = epoch("app:v1-faulty", 2);
        let mut m = AppMetrics::default();
        let t0 = e.start;
        // 0 ready for 1s, 1 ready for 1s, 2 ready for 2s = 10 + 40 = 50 requests.
        m.integrate(
            "ns",
            "web",
            &e,
            (t0, t0 + TimeDelta::seconds(4)),
            timing(),
            &ErrorRates::default(),
        );
        let key = SeriesKey {
            namespace: "ns".into(),
            app: "web".into(),
            version: "v1-faulty".into(),
        };
        let c = m.get(&key).expect("series");
        assert!((c.requests - 50.0).abs() < 1e-9, "{c:?}");
        assert!((c.errors - 12.5).abs() < 1e-9, "{c:?}");
        // Splitting the same span in two gives the same totals.
        let mut split = AppMetrics::default();
        let mid = t0 + TimeDelta::milliseconds(1500);
        split.integrate("ns", "web", &e, (t0, mid), timing(), &ErrorRates::default());
        split.integrate(
            "ns",
            "web",
            &e,
            (mid, t0 + TimeDelta::seconds(4)),
            timing(),
            &ErrorRates::default(),
        );
        assert_eq!(split.get(&key), Some(c));
    }

    #[test]
    fn overrides_win_and_render_is_prometheus_text() {
        let mut rates = ErrorRates::default();
        rates.set("v2", 0.03);
        assert_eq!(rates.rate(&["app:v2".to_owned()]), 0.03);
        assert_eq!(rates.rate(&["app:v3-faulty".to_owned()]), 0.25);
        let mut m = AppMetrics::default();
        let e = epoch("app:v2", 1);
        m.integrate(
            "ns",
            "web",
            &e,
            (e.start, e.start + TimeDelta::seconds(11)),
            timing(),
            &rates,
        );
        let text = m.render("eu-1", "europe");
        assert!(text.contains("# TYPE app_http_requests_total counter"));
        assert!(text.contains(
            "app_http_requests_total{namespace=\"ns\",app=\"web\",version=\"v2\",cluster=\"eu-1\",region=\"europe\"} 100"
        ));
        assert!(text.contains("app_http_errors_total{namespace=\"ns\",app=\"web\",version=\"v2\",cluster=\"eu-1\",region=\"europe\"} 3"));
    }
}
