//! Turning a stored row into the SCIM representation: the document plus
//! `id`, `meta`, group `members` and a user's computed `groups`.

use serde_json::{Map, Value};

use super::schema::ResourceType;
use crate::store::{GroupRef, MemberRow, ResourceRow};

/// A resource read from the store with whatever side data was loaded.
#[derive(Debug, Clone)]
pub struct Stored {
    /// The row.
    pub row: ResourceRow,
    /// Group members, when loaded.
    pub members: Option<Vec<MemberRow>>,
    /// A user's groups, when loaded.
    pub groups: Option<Vec<GroupRef>>,
}

impl Stored {
    /// The weak ETag of this version.
    pub fn etag(&self) -> String {
        etag(self.row.version)
    }
}

/// The weak ETag for a version number.
pub fn etag(version: i64) -> String {
    format!("W/\"{version}\"")
}

/// Renders a stored resource; `base` is the SCIM base URL (…/scim/v2).
///
/// The stored document is in canonical order (`schemas`, the core
/// attributes, then extensions), so the computed attributes are inserted
/// into the parsed map where they belong instead of copying it into a new
/// one: `id` second, `members` and `groups` after the core attributes,
/// `meta` last.
pub fn render(rt: &ResourceType, stored: &Stored, base: &str) -> Map<String, Value> {
    let row = &stored.row;
    let mut out: Map<String, Value> = serde_json::from_str(&row.data).unwrap_or_default();
    let mut at = out.len().min(1);
    out.shift_insert(at, "id".into(), Value::String(row.id.clone()));
    // Where the extensions start (the end when there are none).
    at = out
        .keys()
        .skip(at + 1)
        .position(|k| k.starts_with("urn:"))
        .map_or(out.len(), |p| p + at + 1);
    if let Some(members) = &stored.members {
        let list: Vec<Value> = members
            .iter()
            .map(|m| {
                let endpoint = if m.member_type == "Group" {
                    "Groups"
                } else {
                    "Users"
                };
                reference(
                    &m.member_id,
                    format!("{base}/{endpoint}/{}", m.member_id),
                    m.display.as_deref(),
                    &m.member_type,
                )
            })
            .collect();
        out.shift_insert(at, "members".into(), Value::Array(list));
        at += 1;
    }
    if let Some(groups) = &stored.groups
        && !groups.is_empty()
    {
        let list: Vec<Value> = groups
            .iter()
            .map(|g| {
                reference(
                    &g.group_id,
                    format!("{base}/Groups/{}", g.group_id),
                    g.display.as_deref(),
                    "direct",
                )
            })
            .collect();
        out.shift_insert(at, "groups".into(), Value::Array(list));
    }
    let mut meta = Map::with_capacity(5);
    meta.insert("resourceType".into(), Value::String(rt.name.to_string()));
    meta.insert("created".into(), Value::String(row.created.clone()));
    meta.insert(
        "lastModified".into(),
        Value::String(row.last_modified.clone()),
    );
    meta.insert(
        "location".into(),
        Value::String(format!("{base}{}/{}", rt.endpoint, row.id)),
    );
    meta.insert("version".into(), Value::String(etag(row.version)));
    out.insert("meta".into(), Value::Object(meta));
    out
}

/// A member or group reference: `value`, `$ref`, `display` when known, `type`.
fn reference(id: &str, href: String, display: Option<&str>, kind: &str) -> Value {
    let mut v = Map::with_capacity(4);
    v.insert("value".into(), Value::String(id.to_string()));
    v.insert("$ref".into(), Value::String(href));
    if let Some(d) = display {
        v.insert("display".into(), Value::String(d.to_string()));
    }
    v.insert("type".into(), Value::String(kind.to_string()));
    Value::Object(v)
}
