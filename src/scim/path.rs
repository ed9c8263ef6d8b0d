//! Attribute paths: turning `[urn:]name[.sub]` into a schema definition and a
//! place in a resource document. Shared by filters, PATCH and projection.

use scim_v2::filter::AttrPath;
use serde_json::{Map, Value};

use super::schema::{AttrDef, ResourceType, SchemaDef};
use crate::error::ScimError;

/// What a path names.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    /// An attribute (core, common or extension), possibly a sub-attribute.
    Attr {
        /// The extension holding the attribute, `None` for core and common.
        ext: Option<&'a SchemaDef>,
        /// The top-level attribute.
        attr: &'a AttrDef,
        /// The sub-attribute, when named.
        sub: Option<&'a AttrDef>,
    },
    /// A whole extension object, named by its URN.
    Extension(&'a SchemaDef),
}

/// Resolves a parsed attribute path against a resource type.
pub fn resolve<'a>(rt: &'a ResourceType, path: &AttrPath) -> Option<Target<'a>> {
    if let Some(uri) = &path.uri
        && path.sub_attr.is_none()
    {
        let whole = format!("{uri}:{}", path.name);
        if let Some(ext) = rt.extension(&whole) {
            return Some(Target::Extension(ext));
        }
    }
    let r = rt.resolve(path.uri.as_deref(), &path.name, path.sub_attr.as_deref())?;
    Some(Target::Attr {
        ext: r.extension,
        attr: r.attr,
        sub: r.sub,
    })
}

/// Parses a PATCH or projection path string into an [`AttrPath`] and resolves it.
pub fn resolve_str<'a>(rt: &'a ResourceType, s: &str) -> Result<Target<'a>, ScimError> {
    let path = parse_attr_path(s)?;
    resolve(rt, &path).ok_or_else(|| {
        ScimError::invalid_path(format!(
            "Attribute '{s}' is not defined for {} resources.",
            rt.name
        ))
    })
}

/// Parses `[urn:]name[.sub]` (also a bare extension URN).
pub fn parse_attr_path(s: &str) -> Result<AttrPath, ScimError> {
    let s = s.trim();
    match parse_patch_path(s) {
        Some(scim_v2::filter::PatchPath::Attr(p)) => Ok(p),
        _ => Err(ScimError::invalid_path(format!(
            "'{s}' is not a valid attribute path."
        ))),
    }
}

/// Parses a PATCH path: the common `name[.sub]` directly, anything else
/// (a URN, a value filter) with the grammar. `None` when it is not valid.
pub fn parse_patch_path(s: &str) -> Option<scim_v2::filter::PatchPath> {
    match crate::scim::filter::simple_attr_path(s) {
        Some(p) => Some(scim_v2::filter::PatchPath::Attr(p)),
        None => s.parse().ok(),
    }
}

/// The object an attribute lives in: the document root, or its extension's object.
pub fn container<'d>(doc: &'d Value, ext: Option<&SchemaDef>) -> Option<&'d Map<String, Value>> {
    match ext {
        None => doc.as_object(),
        Some(e) => doc.get(&e.id)?.as_object(),
    }
}

/// Mutable access to an attribute's container, created on demand.
pub fn container_mut<'d>(
    doc: &'d mut Map<String, Value>,
    ext: Option<&SchemaDef>,
) -> &'d mut Map<String, Value> {
    match ext {
        None => doc,
        Some(e) => {
            let slot = doc
                .entry(e.id.clone())
                .or_insert_with(|| Value::Object(Map::new()));
            if !slot.is_object() {
                *slot = Value::Object(Map::new());
            }
            match slot {
                Value::Object(m) => m,
                _ => unreachable!("the slot was made an object above"),
            }
        }
    }
}
