//! Opaque page cursors: the (created_at, id) of the last item of a page.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::ApiError;

/// Default and largest page of a list.
const DEFAULT_LIMIT: i64 = 50;
const MAX_LIMIT: i64 = 500;

/// One page request: how many items, and after which one.
pub struct PageRequest {
    pub limit: i64,
    pub after: Option<(DateTime<Utc>, Uuid)>,
}

impl PageRequest {
    pub fn parse(limit: Option<i64>, cursor: Option<&str>) -> Result<PageRequest, ApiError> {
        let limit = limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(ApiError::bad_request(format!(
                "limit must be between 1 and {MAX_LIMIT}"
            )));
        }
        Ok(PageRequest {
            limit,
            after: cursor.map(decode).transpose()?,
        })
    }

    /// The cursor of the next page: only when this page came back full.
    pub fn next_cursor<T>(
        &self,
        items: &[T],
        key: impl Fn(&T) -> (DateTime<Utc>, Uuid),
    ) -> Option<String> {
        let full = items.len() == usize::try_from(self.limit).unwrap_or(usize::MAX);
        full.then(|| {
            items.last().map(|item| {
                let (at, id) = key(item);
                encode(at, id)
            })
        })
        .flatten()
    }
}

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
