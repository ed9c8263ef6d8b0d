//! Turning a stored row into the SCIM representation: the document plus
//! `id`, `meta`, group `members` and a user's computed `groups`.

use serde_json::{Map, Value, json};

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
pub fn render(rt: &ResourceType, stored: &Stored, base: &str) -> Map<String, Value> {
    let row = &stored.row;
    let data: Map<String, Value> = serde_json::from_str(&row.data).unwrap_or_default();
    let mut out = Map::with_capacity(data.len() + 4);
    let mut rest = data.into_iter();
    // `schemas` first, then `id`, then the document in stored (canonical) order.
    if let Some((k, v)) = rest.next() {
        out.insert(k, v);
    }
    out.insert("id".into(), Value::String(row.id.clone()));
    let ext_start: Vec<(String, Value)> = rest.collect();
    let (core, exts): (Vec<_>, Vec<_>) = ext_start
        .into_iter()
        .partition(|(k, _)| !k.starts_with("urn:"));
    out.extend(core);
    if let Some(members) = &stored.members {
        let list: Vec<Value> = members
            .iter()
            .map(|m| {
                let endpoint = if m.member_type == "Group" { "Groups" } else { "Users" };
                let mut v = json!({"value": m.member_id, "$ref": format!("{base}/{endpoint}/{}", m.member_id)});
                if let (Some(d), Some(o)) = (&m.display, v.as_object_mut()) {
                    o.insert("display".into(), Value::String(d.clone()));
                }
                if let Some(o) = v.as_object_mut() {
                    o.insert("type".into(), Value::String(m.member_type.clone()));
                }
                v
            })
            .collect();
        out.insert("members".into(), Value::Array(list));
    }
    if let Some(groups) = &stored.groups
        && !groups.is_empty()
    {
        let list: Vec<Value> = groups
            .iter()
            .map(|g| {
                let mut v =
                    json!({"value": g.group_id, "$ref": format!("{base}/Groups/{}", g.group_id)});
                if let (Some(d), Some(o)) = (&g.display, v.as_object_mut()) {
                    o.insert("display".into(), Value::String(d.clone()));
                }
                if let Some(o) = v.as_object_mut() {
                    o.insert("type".into(), Value::String("direct".into()));
                }
                v
            })
            .collect();
        out.insert("groups".into(), Value::Array(list));
    }
    out.extend(exts);
    out.insert(
        "meta".into(),
        json!({
            "resourceType": rt.name,
            "created": row.created,
            "lastModified": row.last_modified,
            "location": format!("{base}{}/{}", rt.endpoint, row.id),
            "version": etag(row.version),
        }),
    );
    out
}
