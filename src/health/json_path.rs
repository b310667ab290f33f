//! Dot paths into JSON bodies (`status`, `checks.db`, `items.0.state`), as
//! HTTP checks name the field they look at.

use serde_json::Value;

/// The value at `path`, or the first segment that does not exist. A
/// segment indexes an object by key, or an array by position.
pub(crate) fn lookup<'a>(root: &'a Value, path: &str) -> Result<&'a Value, String> {
    let mut current = root;
    let mut walked = Vec::new();
    for segment in path.split('.') {
        walked.push(segment);
        let next = match current {
            Value::Object(map) => map.get(segment),
            Value::Array(items) => segment.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => None,
        };
        current = next.ok_or_else(|| format!("no field `{}` in the body", walked.join(".")))?;
    }
    Ok(current)
}

/// JSON equality where `1` equals `1.0`: a health endpoint may serialise
/// the same number either way, and the plan's author should not care.
pub(crate) fn same(actual: &Value, expected: &Value) -> bool {
    match (actual, expected) {
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        _ => actual == expected,
    }
}
