use proptest::prelude::*;

use crate::health::{BaselineVerdict, Comparator, baseline_verdict};

#[test]
fn comparators_read_and_print_as_written() {
    for (text, op) in [
        ("<", Comparator::Lt),
        ("<=", Comparator::Le),
        (">", Comparator::Gt),
        (">=", Comparator::Ge),
    ] {
        let quoted = format!("\"{text}\"");
        assert_eq!(
            serde_json::from_str::<Comparator>(&quoted).expect("parse"),
            op
        );
        assert_eq!(serde_json::to_string(&op).expect("print"), quoted);
        assert_eq!(op.to_string(), text);
    }
    assert!(serde_json::from_str::<Comparator>("\"==\"").is_err());
}

#[test]
fn comparators_at_the_threshold() {
    assert!(!Comparator::Lt.holds(0.05, 0.05));
    assert!(Comparator::Le.holds(0.05, 0.05));
    assert!(!Comparator::Gt.holds(0.05, 0.05));
    assert!(Comparator::Ge.holds(0.05, 0.05));
    for op in [
        Comparator::Lt,
        Comparator::Le,
        Comparator::Gt,
        Comparator::Ge,
    ] {
        assert!(!op.holds(f64::NAN, 1.0), "{op} holds for NaN");
    }
}

#[test]
fn baseline_failures_explain_the_numbers() {
    assert_eq!(
        baseline_verdict(0.030, 0.010, Some(0.010), None),
        BaselineVerdict::Fail {
            by: "0.030 is 0.020 above the baseline 0.010 (allowed 0.010)".to_owned()
        }
    );
    // 50% worse than 0.2 is allowed, 0.31 is 55% worse.
    assert_eq!(
        baseline_verdict(0.30, 0.2, None, Some(0.5)),
        BaselineVerdict::Pass
    );
    assert_eq!(
        baseline_verdict(0.31, 0.2, None, Some(0.5)),
        BaselineVerdict::Fail {
            by: "0.310 is 0.110 above the baseline 0.200 (allowed 0.100)".to_owned()
        }
    );
    // The absolute margin is a floor under the ratio at a zero baseline.
    assert_eq!(
        baseline_verdict(0.004, 0.0, Some(0.005), Some(0.5)),
        BaselineVerdict::Pass
    );
    assert!(matches!(
        baseline_verdict(0.0001, 0.0, None, Some(0.5)),
        BaselineVerdict::Fail { by } if by == "1.000e-4 is 1.000e-4 above the baseline 0.000 (allowed 0.000)"
    ));
    assert!(matches!(
        baseline_verdict(f64::NAN, 0.1, Some(1.0), None),
        BaselineVerdict::Fail { .. }
    ));
}

fn comparator() -> impl Strategy<Value = Comparator> {
    prop_oneof![
        Just(Comparator::Lt),
        Just(Comparator::Le),
        Just(Comparator::Gt),
        Just(Comparator::Ge),
    ]
}

fn reading() -> impl Strategy<Value = f64> {
    -1e6..1e6f64
}

fn limit() -> impl Strategy<Value = Option<f64>> {
    proptest::option::of(0.0..1e3f64)
}

fn fails(verdict: &BaselineVerdict) -> bool {
    matches!(verdict, BaselineVerdict::Fail { .. })
}

proptest! {
    #[test]
    fn strict_and_loose_comparators_differ_only_at_equality(
        value in reading(), threshold in reading()
    ) {
        prop_assert_eq!(
            Comparator::Le.holds(value, threshold),
            Comparator::Lt.holds(value, threshold) || value == threshold
        );
        prop_assert_eq!(
            Comparator::Ge.holds(value, threshold),
            Comparator::Gt.holds(value, threshold) || value == threshold
        );
        // Exactly one of "<" and ">=" holds for any pair of numbers.
        prop_assert_ne!(
            Comparator::Lt.holds(value, threshold),
            Comparator::Ge.holds(value, threshold)
        );
    }

    #[test]
    fn comparators_are_monotone_in_the_value(
        op in comparator(), a in reading(), b in reading(), threshold in reading()
    ) {
        let (low, high) = if a <= b { (a, b) } else { (b, a) };
        match op {
            // Holding for a higher value implies holding for a lower one.
            Comparator::Lt | Comparator::Le => prop_assert!(!op.holds(high, threshold) || op.holds(low, threshold)),
            Comparator::Gt | Comparator::Ge => prop_assert!(!op.holds(low, threshold) || op.holds(high, threshold)),
        }
    }

    #[test]
    fn equal_to_the_baseline_always_passes(
        baseline in reading(), abs in limit(), ratio in limit()
    ) {
        prop_assert_eq!(baseline_verdict(baseline, baseline, abs, ratio), BaselineVerdict::Pass);
    }

    #[test]
    fn better_than_the_baseline_always_passes(
        baseline in reading(), better_by in 0.0..1e6f64, abs in limit(), ratio in limit()
    ) {
        prop_assert_eq!(
            baseline_verdict(baseline - better_by, baseline, abs, ratio),
            BaselineVerdict::Pass
        );
    }

    #[test]
    fn getting_worse_never_turns_a_fail_into_a_pass(
        baseline in reading(), a in reading(), b in reading(), abs in limit(), ratio in limit()
    ) {
        let (low, high) = if a <= b { (a, b) } else { (b, a) };
        let verdict_low = baseline_verdict(low, baseline, abs, ratio);
        let verdict_high = baseline_verdict(high, baseline, abs, ratio);
        prop_assert!(!fails(&verdict_low) || fails(&verdict_high));
    }

    #[test]
    fn a_wider_margin_never_turns_a_pass_into_a_fail(
        baseline in reading(), updated in reading(),
        abs in 0.0..1e3f64, more in 0.0..1e3f64, ratio in limit()
    ) {
        let narrow = baseline_verdict(updated, baseline, Some(abs), ratio);
        let wide = baseline_verdict(updated, baseline, Some(abs + more), ratio);
        prop_assert!(fails(&narrow) || !fails(&wide));
    }

    #[test]
    fn without_a_margin_any_increase_fails(baseline in reading(), worse_by in 1e-3..1e3f64) {
        prop_assert!(fails(&baseline_verdict(baseline + worse_by, baseline, None, None)));
    }

    #[test]
    fn failures_name_both_readings(
        baseline in 0.001..1.0f64, worse_by in 0.01..1.0f64
    ) {
        let updated = baseline + worse_by;
        match baseline_verdict(updated, baseline, Some(0.001), None) {
            BaselineVerdict::Fail { by } => {
                let updated_text = format!("{updated:.3}");
                let baseline_text = format!("the baseline {baseline:.3}");
                prop_assert!(by.starts_with(&updated_text), "{}", by);
                prop_assert!(by.contains(&baseline_text), "{}", by);
            }
            BaselineVerdict::Pass => prop_assert!(false, "{} vs {} passed", updated, baseline),
        }
    }
}
