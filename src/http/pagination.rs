//! Keyset pagination: `?cursor=&limit=` in, `{"items": [...], "next_cursor": ...}` out.
//!
//! A cursor is the opaque (base64url) encoding of the last row's sort key; clients must
//! not build one. `limit` above [`MAX_LIMIT`] is rejected with 422 rather than clamped,
//! so a client never silently gets fewer rows than it asked for.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use serde::{Serialize, de::DeserializeOwned};
use utoipa::ToSchema;

use crate::error::ApiError;

pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 200;

/// One page of a list.
#[derive(Debug, Serialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `cursor` to get the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// A validated `limit` and decoded `cursor` for a list whose sort key is `K`.
#[derive(Debug)]
pub struct PageRequest<K> {
    pub after: Option<K>,
    pub limit: u32,
}

impl<K: Serialize + DeserializeOwned> PageRequest<K> {
    pub fn parse(cursor: Option<&str>, limit: Option<u32>) -> Result<Self, ApiError> {
        let limit = limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(ApiError::validation(
                "limit",
                format!("must be between 1 and {MAX_LIMIT}"),
            ));
        }
        let after = cursor
            .filter(|c| !c.is_empty())
            .map(|c| {
                URL_SAFE_NO_PAD
                    .decode(c)
                    .ok()
                    .filter(|bytes| !crate::input::json_has_nul(bytes))
                    .and_then(|bytes| serde_json::from_slice(&bytes).ok())
                    .ok_or_else(|| {
                        ApiError::validation("cursor", "is not a cursor this API issued")
                    })
            })
            .transpose()?;
        Ok(Self { after, limit })
    }

    /// Refuses a cursor whose key fails `valid` (a forged one: keys this API issues
    /// always pass), as any other cursor it did not issue.
    pub fn check(self, valid: impl Fn(&K) -> bool) -> Result<Self, ApiError> {
        match &self.after {
            Some(key) if !valid(key) => Err(ApiError::validation(
                "cursor",
                "is not a cursor this API issued",
            )),
            _ => Ok(self),
        }
    }

    /// Rows to fetch: one more than the page, to learn whether another page exists.
    pub fn fetch_limit(&self) -> i64 {
        i64::from(self.limit) + 1
    }

    /// Cuts the extra row and derives the next cursor from the last row kept.
    pub fn page<T>(&self, mut rows: Vec<T>, key: impl Fn(&T) -> K) -> Page<T> {
        let has_more = rows.len() > self.limit as usize;
        rows.truncate(self.limit as usize);
        let next_cursor = has_more
            .then(|| rows.last().map(|last| encode_cursor(&key(last))))
            .flatten();
        Page {
            items: rows,
            next_cursor,
        }
    }
}

fn encode_cursor<K: Serialize>(key: &K) -> String {
    // Serialising a plain key (strings, uuids, timestamps) cannot fail.
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(key).unwrap_or_default())
}

impl<T> Page<T> {
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(f).collect(),
            next_cursor: self.next_cursor,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_bounds_and_cursor_round_trip() {
        assert!(PageRequest::<String>::parse(None, Some(201)).is_err());
        assert!(PageRequest::<String>::parse(None, Some(0)).is_err());
        assert!(PageRequest::<String>::parse(Some("%%%"), None).is_err());
        let request = PageRequest::<String>::parse(None, Some(2)).expect("valid");
        let page = request.page(vec!["a", "b", "c"], |s| (*s).to_owned());
        assert_eq!(page.items, vec!["a", "b"]);
        let next =
            PageRequest::<String>::parse(page.next_cursor.as_deref(), Some(2)).expect("valid");
        assert_eq!(next.after.as_deref(), Some("b"));
        let last = request.page(vec!["x"], |s| (*s).to_owned());
        assert!(last.next_cursor.is_none());
    }
}
