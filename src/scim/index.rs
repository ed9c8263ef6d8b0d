//! What a resource contributes to the attribute index and to the unique
//! keys, derived from its document and the schema (`caseExact` decides
//! whether values are case-folded).

use serde_json::{Map, Value};

use super::schema::{AttrDef, ResourceType};
use crate::store::IndexEntry;

/// Attribute paths kept in the index: what IdPs look users and groups up by.
pub const INDEXED: [&str; 4] = ["userName", "externalId", "displayName", "emails.value"];

/// Normalises a value for the index: case-folded unless the attribute is caseExact.
///
/// Values are cut to [`MAX_INDEXED_BYTES`] so every entry fits a B-tree page;
/// a look-up cuts its operand the same way, so it finds a superset that the
/// evaluator then narrows.
pub fn index_value(def: &AttrDef, s: &str) -> String {
    let v = if def.case_exact {
        s.to_string()
    } else {
        s.to_lowercase()
    };
    truncate(v)
}

/// Longest indexed value, in bytes.
pub const MAX_INDEXED_BYTES: usize = 512;

fn truncate(mut v: String) -> String {
    if v.len() > MAX_INDEXED_BYTES {
        let mut end = MAX_INDEXED_BYTES;
        while !v.is_char_boundary(end) {
            end -= 1;
        }
        v.truncate(end);
    }
    v
}

/// A unique key's stored form: the normalised value, or its SHA-256 when
/// the value is too long to index (so long values never collide by prefix).
fn unique_value(def: &AttrDef, s: &str) -> String {
    use sha2::{Digest, Sha256};
    let v = if def.case_exact {
        s.to_string()
    } else {
        s.to_lowercase()
    };
    if v.len() > MAX_INDEXED_BYTES {
        format!("sha256:{}", hex::encode(Sha256::digest(v.as_bytes())))
    } else {
        v
    }
}

/// The index entries of a document.
pub fn index_entries(rt: &ResourceType, doc: &Map<String, Value>) -> Vec<IndexEntry> {
    let mut out = Vec::new();
    for path in INDEXED {
        let (name, sub) = match path.split_once('.') {
            Some((n, s)) => (n, Some(s)),
            None => (path, None),
        };
        let Some(resolved) = rt.resolve(None, name, sub) else {
            continue;
        };
        let leaf = resolved.sub.unwrap_or(resolved.attr);
        let values: Vec<&Value> = match (doc.get(&resolved.attr.name), resolved.sub) {
            (None, _) => Vec::new(),
            (Some(Value::Array(items)), Some(s)) => {
                items.iter().filter_map(|i| i.get(&s.name)).collect()
            }
            (Some(v), Some(s)) => v.get(&s.name).into_iter().collect(),
            (Some(v), None) => vec![v],
        };
        for v in values {
            if let Value::String(s) = v {
                let entry = IndexEntry {
                    attr: path.to_ascii_lowercase(),
                    value: index_value(leaf, s),
                };
                if !out.contains(&entry) {
                    out.push(entry);
                }
            }
        }
    }
    out
}

/// The server-unique keys of a document (`uniqueness: server|global`).
pub fn unique_keys(rt: &ResourceType, doc: &Map<String, Value>) -> Vec<IndexEntry> {
    rt.schema
        .attributes
        .iter()
        .filter(|a| matches!(a.uniqueness.as_deref(), Some("server" | "global")) && !a.multi_valued)
        .filter_map(|a| match doc.get(&a.name) {
            Some(Value::String(s)) => Some(IndexEntry {
                attr: a.name.to_ascii_lowercase(),
                value: unique_value(a, s),
            }),
            _ => None,
        })
        .collect()
}

/// The display name used in member and group references.
pub fn display_of(doc: &Map<String, Value>) -> Option<String> {
    doc.get("displayName")
        .or_else(|| doc.get("userName"))
        .and_then(Value::as_str)
        .map(str::to_string)
}
