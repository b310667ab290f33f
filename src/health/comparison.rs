//! The arithmetic of gate verdicts, pure: a reading against a threshold,
//! and updated clusters against a baseline of clusters not yet updated.

use std::fmt;

use serde::{Deserialize, Serialize};

/// How a reading must relate to its threshold for the gate to hold:
/// `error_ratio < 0.05` is `Lt`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub enum Comparator {
    #[serde(rename = "<")]
    Lt,
    #[serde(rename = "<=")]
    Le,
    #[serde(rename = ">")]
    Gt,
    #[serde(rename = ">=")]
    Ge,
}

impl Comparator {
    /// Whether `value <op> threshold`. A NaN on either side never holds:
    /// it is not a reading a release can be judged healthy by (callers map
    /// "no data" to their own policy before getting here).
    pub fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Self::Lt => value < threshold,
            Self::Le => value <= threshold,
            Self::Gt => value > threshold,
            Self::Ge => value >= threshold,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Lt => "<",
            Self::Le => "<=",
            Self::Gt => ">",
            Self::Ge => ">=",
        }
    }
}

impl fmt::Display for Comparator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BaselineVerdict {
    Pass,
    /// `by` explains in words, for the event log and the dashboard.
    Fail {
        by: String,
    },
}

/// Judges the updated clusters' reading against the baseline's, where
/// higher is worse (error rates, latency).
///
/// The allowed increase is the **larger** of `max_increase` (absolute) and
/// `max_increase_ratio × |baseline|` (relative; 0.5 = 50% worse), so an
/// absolute margin acts as a floor under a relative one: with a baseline
/// error rate of 0, a ratio alone would fail on a single error. With neither
/// set there is no margin and any increase fails. Negative limits count as
/// 0. A value equal to or below the baseline always passes; a non-finite
/// reading fails, because it cannot show the release is no worse.
pub fn baseline_verdict(
    updated: f64,
    baseline: f64,
    max_increase: Option<f64>,
    max_increase_ratio: Option<f64>,
) -> BaselineVerdict {
    if !updated.is_finite() || !baseline.is_finite() {
        return BaselineVerdict::Fail {
            by: format!("cannot compare {updated} with the baseline {baseline}"),
        };
    }
    let absolute = max_increase.unwrap_or(0.0);
    let relative = max_increase_ratio.unwrap_or(0.0) * baseline.abs();
    // `max` ignores a NaN limit, which then allows nothing, like a missing one.
    let allowed = absolute.max(relative).max(0.0);
    let increase = updated - baseline;
    if increase <= allowed {
        BaselineVerdict::Pass
    } else {
        BaselineVerdict::Fail {
            by: format!(
                "{} is {} above the baseline {} (allowed {})",
                show(updated),
                show(increase),
                show(baseline),
                show(allowed)
            ),
        }
    }
}

/// Three decimals suit rates and seconds; very small or very large values
/// switch to scientific notation so they do not print as `0.000`.
fn show(value: f64) -> String {
    if value == 0.0 || (0.001..1e9).contains(&value.abs()) {
        format!("{value:.3}")
    } else {
        format!("{value:.3e}")
    }
}
