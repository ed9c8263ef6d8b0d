//! Turning a stored row into the SCIM representation: the document plus
//! `id`, `meta`, group `members` and a user's computed `groups`.

use std::borrow::Cow;

use serde::Serialize;
use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::project::shown_by_default;
use super::schema::{AttrDef, ResourceType};
use crate::store::{GroupRef, MemberRow, ResourceRow};

/// A resource read from the store with whatever side data was loaded.
#[derive(Debug, Clone)]
pub struct Stored {
    /// The row.
    pub row: std::sync::Arc<ResourceRow>,
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
    let list = |refs: Vec<Ref<'_>>| Value::Array(refs.iter().map(|r| r.value(base)).collect());
    if let Some(members) = member_refs(stored) {
        out.shift_insert(at, "members".into(), list(members));
        at += 1;
    }
    if let Some(groups) = group_refs(stored) {
        out.shift_insert(at, "groups".into(), list(groups));
    }
    // MetaOut's members are strings: it always converts.
    let meta = serde_json::to_value(meta_out(rt, row, base)).unwrap_or_default();
    out.insert("meta".into(), meta);
    out
}

/// The response body of a resource under the default projection (no
/// `attributes` or `excludedAttributes`), written from the stored text:
/// the same bytes as [`render`] followed by the default
/// [`Projection`](super::project::Projection) would give, without building a
/// `Value` tree for the document and serialising it again.
///
/// `None` when the default projection would change the stored document (an
/// attribute or sub-attribute that is `returned: never` or `request`, a name
/// the schema does not define, an empty extension) or the document holds a
/// name the renderer computes: the caller then takes the general path.
pub fn render_default(rt: &ResourceType, stored: &Stored, base: &str) -> Option<Vec<u8>> {
    let row = &stored.row;
    let Entries(stored_entries) = serde_json::from_str(&row.data).ok()?;
    let mut out: Vec<(Cow<'_, str>, Piece<'_>)> = Vec::with_capacity(stored_entries.len() + 4);
    for (key, raw) in stored_entries {
        if !shown_whole_by_default(rt, &key, raw)? {
            return None;
        }
        out.push((key, Piece::Raw(raw)));
    }
    let mut at = out.len().min(1);
    out.insert(at, ("id".into(), Piece::Str(&row.id)));
    at = out
        .iter()
        .skip(at + 1)
        .position(|(k, _)| k.starts_with("urn:"))
        .map_or(out.len(), |p| p + at + 1);
    if let Some(piece) = member_refs(stored).and_then(|r| ref_piece(rt, "members", r, base)) {
        out.insert(at, ("members".into(), piece));
        at += 1;
    }
    if let Some(piece) = group_refs(stored).and_then(|r| ref_piece(rt, "groups", r, base)) {
        out.insert(at, ("groups".into(), piece));
    }
    out.push(("meta".into(), Piece::Meta(meta_out(rt, row, base))));
    let mut buf = Vec::with_capacity(row.data.len() + 256);
    buf.push(b'{');
    for (i, (key, piece)) in out.iter().enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        serde_json::to_writer(&mut buf, key).ok()?;
        buf.push(b':');
        match piece {
            Piece::Raw(raw) => buf.extend_from_slice(raw.get().as_bytes()),
            Piece::Str(v) => serde_json::to_writer(&mut buf, v).ok()?,
            Piece::Refs(v) => serde_json::to_writer(&mut buf, v).ok()?,
            Piece::Meta(v) => serde_json::to_writer(&mut buf, v).ok()?,
        }
    }
    buf.push(b'}');
    Some(buf)
}

/// Whether the default projection keeps a stored top-level member exactly
/// as stored; `None` for a member it would drop or that must not be there.
fn shown_whole_by_default(rt: &ResourceType, key: &str, raw: &RawValue) -> Option<bool> {
    if key == "schemas" {
        return Some(true);
    }
    if ["id", "meta", "members", "groups"].contains(&key) {
        return None;
    }
    if let Some(ext) = rt.extension(key) {
        let Entries(inner) = serde_json::from_str(raw.get()).ok()?;
        if inner.is_empty() {
            return None;
        }
        return Some(
            inner
                .iter()
                .all(|(name, _)| ext.attr(name).is_some_and(whole_by_default)),
        );
    }
    let def = rt
        .schema
        .attr(key)
        .or_else(|| rt.common.iter().find(|a| a.name == key))?;
    Some(whole_by_default(def))
}

/// An attribute the default projection shows with every sub-attribute.
fn whole_by_default(def: &AttrDef) -> bool {
    shown_by_default(def.returned)
        && def
            .sub_attributes
            .iter()
            .all(|s| shown_by_default(s.returned))
}

/// A member of the response: stored text, or computed.
enum Piece<'a> {
    Raw(&'a RawValue),
    Str(&'a str),
    Refs(Vec<RefOut<'a>>),
    Meta(MetaOut<'a>),
}

/// A member or group a resource refers to.
struct Ref<'a> {
    id: &'a str,
    endpoint: &'a str,
    display: Option<&'a str>,
    kind: &'a str,
}

impl Ref<'_> {
    /// The referenced resource's URL.
    fn href(&self, base: &str) -> String {
        format!("{base}/{}/{}", self.endpoint, self.id)
    }

    /// The reference with every sub-attribute: `value`, `$ref`, `display`
    /// when known, `type` (the general path; the projection drops what it
    /// must).
    fn value(&self, base: &str) -> Value {
        let mut v = Map::with_capacity(4);
        v.insert("value".into(), Value::String(self.id.to_string()));
        v.insert("$ref".into(), Value::String(self.href(base)));
        if let Some(d) = self.display {
            v.insert("display".into(), Value::String(d.to_string()));
        }
        v.insert("type".into(), Value::String(self.kind.to_string()));
        Value::Object(v)
    }
}

/// A group's `members`, when they were loaded (an empty list included).
fn member_refs(stored: &Stored) -> Option<Vec<Ref<'_>>> {
    let members = stored.members.as_ref()?;
    Some(
        members
            .iter()
            .map(|m| Ref {
                id: &m.member_id,
                endpoint: if m.member_type == "Group" {
                    "Groups"
                } else {
                    "Users"
                },
                display: m.display.as_deref(),
                kind: &m.member_type,
            })
            .collect(),
    )
}

/// A user's `groups`, when they were loaded and there are any.
fn group_refs(stored: &Stored) -> Option<Vec<Ref<'_>>> {
    let groups = stored.groups.as_ref().filter(|g| !g.is_empty())?;
    Some(
        groups
            .iter()
            .map(|g| Ref {
                id: &g.group_id,
                endpoint: "Groups",
                display: g.display.as_deref(),
                kind: "direct",
            })
            .collect(),
    )
}

/// A reference as the default projection shows it: each sub-attribute
/// that is not, by the schema, `returned: never` or `request` (a group
/// member's `display`, say) is written.
#[derive(Serialize)]
struct RefOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<&'a str>,
    #[serde(rename = "$ref", skip_serializing_if = "Option::is_none")]
    href: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    display: Option<&'a str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'a str>,
}

/// The computed reference list `name` (`members`, `groups`) under the
/// default projection: `None` when the schema does not show it by default.
fn ref_piece<'a>(
    rt: &ResourceType,
    name: &str,
    refs: Vec<Ref<'a>>,
    base: &str,
) -> Option<Piece<'a>> {
    let def = rt.schema.attr(name)?;
    if !shown_by_default(def.returned) {
        return None;
    }
    let shown = |sub: &str| def.sub(sub).is_none_or(|s| shown_by_default(s.returned));
    let (value, href, display, kind) = (
        shown("value"),
        shown("$ref"),
        shown("display"),
        shown("type"),
    );
    Some(Piece::Refs(
        refs.into_iter()
            .map(|r| RefOut {
                value: value.then_some(r.id),
                href: href.then(|| r.href(base)),
                display: r.display.filter(|_| display),
                kind: kind.then_some(r.kind),
            })
            .collect(),
    ))
}

/// `meta`: resource type, timestamps, location and version.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MetaOut<'a> {
    resource_type: &'a str,
    created: &'a str,
    last_modified: &'a str,
    location: String,
    version: String,
}

/// A JSON object's members in document order, values left as text.
struct Entries<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de> Deserialize<'de> for Entries<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Entries<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::with_capacity(map.size_hint().unwrap_or(16));
                while let Some(entry) = map.next_entry::<CowStr<'de>, &'de RawValue>()? {
                    out.push((entry.0.0, entry.1));
                }
                Ok(Entries(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// A key borrowed from the input unless it had escapes.
struct CowStr<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for CowStr<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = CowStr<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Owned(v.to_string())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// A stored resource's `meta`.
fn meta_out<'a>(rt: &'a ResourceType, row: &'a ResourceRow, base: &str) -> MetaOut<'a> {
    MetaOut {
        resource_type: rt.name,
        created: &row.created,
        last_modified: &row.last_modified,
        location: location(rt, row, base),
        version: etag(row.version),
    }
}

/// A resource's URL.
pub fn location(rt: &ResourceType, row: &ResourceRow, base: &str) -> String {
    format!("{base}{}/{}", rt.endpoint, row.id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ScimSettings;
    use crate::scim::project::Projection;
    use crate::scim::schema::{ENTERPRISE_URN, Registry};
    use serde_json::json;

    fn stored(
        data: Value,
        members: Option<Vec<MemberRow>>,
        groups: Option<Vec<GroupRef>>,
    ) -> Stored {
        Stored {
            row: std::sync::Arc::new(ResourceRow {
                id: "0194-a".into(),
                tenant: "default".into(),
                resource_type: "User".into(),
                external_id: None,
                display: None,
                data: data.to_string(),
                version: 3,
                created: "2026-01-02T03:04:05.678Z".into(),
                last_modified: "2026-02-03T04:05:06.789Z".into(),
            }),
            members,
            groups,
        }
    }

    /// The general path: render, then the default projection.
    fn general(rt: &ResourceType, s: &Stored) -> Vec<u8> {
        let mut doc = render(rt, s, "https://h/scim/v2");
        Projection::default().apply(rt, &mut doc);
        serde_json::to_vec(&doc).unwrap()
    }

    #[test]
    fn default_projection_from_stored_text_matches_the_general_path() {
        let reg = Registry::load(&ScimSettings::default()).unwrap();
        let group = |id: &str, display: Option<&str>| GroupRef {
            member_id: "0194-a".into(),
            group_id: id.into(),
            display: display.map(str::to_string),
        };
        let users = [
            stored(
                json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "a"}),
                None,
                None,
            ),
            stored(
                json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENTERPRISE_URN],
                       "externalId": "e\"1", "userName": "ä\u{1F600}\\x",
                       "name": {"givenName": "G", "familyName": "F", "unknownSub": 1.5},
                       "emails": [{"value": "a@x", "type": "work", "primary": true}],
                       "active": false,
                       ENTERPRISE_URN: {"department": "D", "manager": {"value": "m"}}}),
                None,
                Some(vec![group("g1", Some("Eng")), group("g2", None)]),
            ),
            stored(json!({"schemas": [], "userName": "a"}), None, Some(vec![])),
            stored(
                json!({"userName": "no schemas first", "schemas": []}),
                None,
                None,
            ),
        ];
        for s in &users {
            let fast = render_default(&reg.user, s, "https://h/scim/v2").expect("fast path taken");
            assert_eq!(
                String::from_utf8(fast).unwrap(),
                String::from_utf8(general(&reg.user, s)).unwrap()
            );
        }
        let member = |id: &str, kind: &str| MemberRow {
            member_id: id.into(),
            member_type: kind.into(),
            display: Some(format!("d{id}")),
        };
        let groups = [
            stored(
                json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "G"}),
                None,
                None,
            ),
            stored(
                json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "G"}),
                Some(vec![member("u1", "User"), member("g9", "Group")]),
                None,
            ),
            stored(
                json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "G"}),
                Some(vec![]),
                None,
            ),
        ];
        for s in &groups {
            let fast = render_default(&reg.group, s, "https://h/scim/v2").expect("fast path taken");
            assert_eq!(
                String::from_utf8(fast).unwrap(),
                String::from_utf8(general(&reg.group, s)).unwrap()
            );
        }
    }

    #[test]
    fn documents_the_default_projection_would_change_take_the_general_path() {
        let reg = Registry::load(&ScimSettings::default()).unwrap();
        for data in [
            // returned: never
            json!({"schemas": [], "userName": "a", "password": "secret"}),
            // not in the schema
            json!({"schemas": [], "userName": "a", "nickName2": "x"}),
            // an empty extension is dropped
            json!({"schemas": [], "userName": "a", ENTERPRISE_URN: {}}),
            json!({"schemas": [], "userName": "a", ENTERPRISE_URN: {"undefined": 1}}),
            // computed names
            json!({"schemas": [], "id": "x", "userName": "a"}),
            json!({"schemas": [], "userName": "a", "meta": {}}),
        ] {
            let s = stored(data.clone(), None, None);
            assert!(render_default(&reg.user, &s, "").is_none(), "{data}");
        }
    }
}
