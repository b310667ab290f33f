use crate::health::{HealthError, StatusClass};

#[test]
fn parses_classes_and_exact_codes() {
    assert_eq!("2xx".parse(), Ok(StatusClass::Class(2)));
    assert_eq!(" 5XX ".parse(), Ok(StatusClass::Class(5)));
    assert_eq!("204".parse(), Ok(StatusClass::Exact(204)));
    for bad in ["6xx", "xx", "2x", "99", "600", "ok", ""] {
        assert_eq!(
            bad.parse::<StatusClass>(),
            Err(HealthError::BadStatusClass(bad.to_owned())),
            "{bad:?}"
        );
    }
}

#[test]
fn matches_its_class_or_its_code_only() {
    let two = StatusClass::Class(2);
    assert!(two.matches(200) && two.matches(299));
    assert!(!two.matches(199) && !two.matches(300));
    let exact = StatusClass::Exact(204);
    assert!(exact.matches(204) && !exact.matches(200));
    assert_eq!(StatusClass::default(), two);
}

#[test]
fn round_trips_through_serde_as_the_written_string() {
    for text in ["\"3xx\"", "\"200\""] {
        let class: StatusClass = serde_json::from_str(text).expect("parse");
        assert_eq!(serde_json::to_string(&class).expect("print"), text);
    }
    let error = serde_json::from_str::<StatusClass>("\"7xx\"").unwrap_err();
    assert!(error.to_string().contains("7xx"), "{error}");
}
