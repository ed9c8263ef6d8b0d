//! Cursor pagination (RFC 9865). A cursor is stateless: it names the
//! boundary resource of a page by its sort key — (sort value, created, id) —
//! and the direction, plus a fingerprint of the query it belongs to. Any
//! gateway process can continue any cursor, resources added meanwhile are
//! seen exactly once (keyset, not offset), and nothing is kept in memory.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::{ScimError, ScimType};

/// Which side of the boundary the page lies on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Direction {
    /// Resources after the boundary (next page).
    #[serde(rename = "a")]
    After,
    /// Resources before the boundary (previous page).
    #[serde(rename = "b")]
    Before,
}

/// A decoded cursor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cursor {
    /// Direction from the boundary.
    #[serde(rename = "d")]
    pub direction: Direction,
    /// The boundary's sort value (null without `sortBy`).
    #[serde(rename = "v", default)]
    pub value: Value,
    /// The boundary's creation time.
    #[serde(rename = "c")]
    pub created: String,
    /// The boundary's id.
    #[serde(rename = "i")]
    pub id: String,
    /// Fingerprint of the query (filter, sort) the cursor belongs to.
    #[serde(rename = "f")]
    pub query: String,
}

/// Fingerprint of a query, so a cursor cannot be replayed on another one.
pub fn fingerprint(
    kind: &str,
    filter: Option<&str>,
    sort_by: Option<&str>,
    descending: bool,
) -> String {
    let mut h = Sha256::new();
    for part in [
        kind,
        filter.unwrap_or(""),
        &sort_by.unwrap_or("").to_ascii_lowercase(),
        if descending { "d" } else { "a" },
    ] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    hex::encode(&h.finalize()[..8])
}

impl Cursor {
    /// The opaque token handed to clients.
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).unwrap_or_default())
    }

    /// Decodes a token and checks it belongs to `query`.
    pub fn decode(token: &str, query: &str) -> Result<Self, ScimError> {
        let invalid = || {
            ScimError::bad_request(
                ScimType::InvalidCursor,
                "The cursor is not valid for this query.",
            )
        };
        if token.len() > 2048 {
            return Err(invalid());
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(token.trim())
            .map_err(|_| invalid())?;
        let cursor: Cursor = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
        if cursor.query != query || cursor.id.contains('\0') || cursor.created.contains('\0') {
            return Err(invalid());
        }
        Ok(cursor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips_and_is_bound_to_its_query() {
        let q = fingerprint("User", Some("userName sw \"a\""), None, false);
        let c = Cursor {
            direction: Direction::After,
            value: Value::Null,
            created: "2026-01-01T00:00:00.000Z".into(),
            id: "x".into(),
            query: q.clone(),
        };
        assert_eq!(Cursor::decode(&c.encode(), &q).unwrap(), c);
        let other = fingerprint("User", None, None, false);
        let e = Cursor::decode(&c.encode(), &other).unwrap_err();
        assert_eq!(e.scim_type().map(|t| t.as_str()), Some("invalidCursor"));
        assert!(Cursor::decode("!!!", &q).is_err());
        assert!(Cursor::decode(&"A".repeat(5000), &q).is_err());
    }
}
