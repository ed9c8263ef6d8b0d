//! What a resource contributes to the attribute index and to the unique
//! keys, derived from its document and the schema (`caseExact` decides
//! whether values are case-folded).

use scim_v2::filter::{AttrExp, CompValue, CompareOp, Filter};
use serde_json::{Map, Value};

use super::path::{Target, resolve};
use super::schema::{AttrDef, AttrType, ResourceType};
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
        .filter(|a| is_unique_key(a))
        .filter_map(|a| match doc.get(&a.name) {
            Some(Value::String(s)) => Some(unique_key(a, s)),
            _ => None,
        })
        .collect()
}

/// Whether a core attribute of the schema gets a unique key.
fn is_unique_key(a: &AttrDef) -> bool {
    matches!(a.uniqueness.as_deref(), Some("server" | "global")) && !a.multi_valued
}

fn unique_key(a: &AttrDef, s: &str) -> IndexEntry {
    IndexEntry {
        attr: a.name.to_ascii_lowercase(),
        value: unique_value(a, s),
    }
}

/// The unique key a filter looks up, when it is one `eq` on a string
/// attribute with a unique key (`userName eq "x"`): at most one resource
/// matches it, the one holding that key. Such a filter is what IdPs send
/// before every write, so it gets this point look-up.
pub fn unique_lookup(rt: &ResourceType, filter: &Filter) -> Option<IndexEntry> {
    let Filter::Attr(AttrExp::Comparison(path, CompareOp::Eq, CompValue::Str(s))) = filter else {
        return None;
    };
    let Some(Target::Attr {
        ext: None,
        attr,
        sub: None,
    }) = resolve(rt, path)
    else {
        return None;
    };
    // Only attributes of the core schema have keys (not `id` or `meta`).
    let keyed = rt
        .schema
        .attributes
        .iter()
        .any(|a| std::ptr::eq(a, attr) && is_unique_key(a));
    (keyed && attr.kind == AttrType::String).then(|| unique_key(attr, s))
}

/// The display name used in member and group references.
pub fn display_of(doc: &Map<String, Value>) -> Option<String> {
    doc.get("displayName")
        .or_else(|| doc.get("userName"))
        .and_then(Value::as_str)
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ScimSettings;
    use crate::scim::filter::parse;
    use crate::scim::schema::Registry;

    fn lookup(group: bool, f: &str) -> anyhow::Result<Option<(String, String)>> {
        let reg = Registry::load(&ScimSettings::default())?;
        let rt = if group { &reg.group } else { &reg.user };
        Ok(unique_lookup(rt, &parse(f)?).map(|k| (k.attr, k.value)))
    }

    #[test]
    fn only_a_lone_eq_on_a_keyed_attribute_is_a_unique_look_up() -> anyhow::Result<()> {
        let key = |a: &str, v: &str| Some((a.to_string(), v.to_string()));
        // userName is caseExact false: the key is folded like the stored one.
        assert_eq!(
            lookup(false, r#"userName eq "Alice@X""#)?,
            key("username", "alice@x")
        );
        assert_eq!(
            lookup(
                false,
                r#"urn:ietf:params:scim:schemas:core:2.0:User:userName eq "a""#
            )?,
            key("username", "a")
        );
        assert_eq!(lookup(false, r#"USERNAME eq "a""#)?, key("username", "a"));
        // A group's displayName is unique within a tenant (schemas/group.json).
        assert_eq!(
            lookup(true, r#"displayName eq "Admins""#)?,
            key("displayname", "admins")
        );
        let long = "x".repeat(MAX_INDEXED_BYTES + 1);
        let hashed = lookup(false, &format!(r#"userName eq "{long}""#))?;
        assert!(hashed.is_some_and(|(_, v)| v.starts_with("sha256:")));
        for other in [
            r#"userName ne "a""#,
            r#"userName sw "a""#,
            r#"userName eq null"#,
            r#"not (userName eq "a")"#,
            r#"userName eq "a" and active eq true"#,
            r#"userName eq "a" or userName eq "b""#,
            r#"id eq "a""#,
            r#"externalId eq "a""#,
            r#"displayName eq "a""#,
            r#"emails.value eq "a""#,
            r#"emails[value eq "a"]"#,
        ] {
            assert_eq!(lookup(false, other)?, None, "{other}");
        }
        Ok(())
    }
}
