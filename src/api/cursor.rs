//! Opaque page cursors: the (created_at, id) of the last item of a page.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::ApiError;

pub fn encode(created_at: DateTime<Utc>, id: Uuid) -> String {
    hex::encode(format!("{}|{id}", created_at.to_rfc3339()))
}

pub fn decode(cursor: &str) -> Result<(DateTime<Utc>, Uuid), ApiError> {
    let bad = || {
        ApiError::bad_request(
            "`cursor` is not a cursor this API gave out; use `next_cursor` from the previous page",
        )
    };
    let bytes = hex::decode(cursor).map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    let (at, id) = text.split_once('|').ok_or_else(bad)?;
    let at = DateTime::parse_from_rfc3339(at)
        .map_err(|_| bad())?
        .with_timezone(&Utc);
    let id = id.parse().map_err(|_| bad())?;
    Ok((at, id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_round_trips_and_garbage_is_refused() {
        let at = Utc::now();
        let id = Uuid::now_v7();
        assert_eq!(decode(&encode(at, id)).unwrap(), (at, id));
        assert!(decode("zz").is_err());
        assert!(decode(&hex::encode("no-separator")).is_err());
    }
}
