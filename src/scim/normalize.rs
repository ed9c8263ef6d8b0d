//! Schema-driven normalisation of resource documents.
//!
//! Lenient on input, strict on output: attribute names are matched in any
//! case and stored in the schema's canonical case; values a real client sends
//! with the wrong JSON type are coerced where the meaning is unambiguous
//! (`"True"` for a boolean, `"42"` for an integer, a bare id for `manager`);
//! readOnly attributes are dropped; unknown attributes are refused. The
//! stored document never holds `id`, `meta`, `password` or group `members`
//! (membership lives in its own table), and `normalize` is idempotent.

use serde_json::{Map, Value};

use super::schema::{AttrDef, AttrType, Mutability, ResourceType};
use crate::error::ScimError;

/// A member reference taken out of a Group document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRef {
    /// The member resource's id.
    pub value: String,
    /// `User` or `Group`, when the client said.
    pub kind: Option<String>,
}

/// A normalised document and what was split off it.
#[derive(Debug, Clone)]
pub struct Normalized {
    /// The document to store: `schemas`, `externalId`, core attributes, extensions.
    pub doc: Map<String, Value>,
    /// Group members, when the input carried `members`.
    pub members: Option<Vec<MemberRef>>,
}

/// Normalises a full document (POST or PUT body, or a patched document).
pub fn normalize(rt: &ResourceType, input: &Value) -> Result<Normalized, ScimError> {
    let Value::Object(obj) = input else {
        return Err(ScimError::invalid_syntax(
            "The request body must be a JSON object.",
        ));
    };
    let mut core = Map::new();
    let mut ext: Vec<(String, Map<String, Value>)> = Vec::new();
    let mut external_id = None;
    let mut members = None;
    for (key, value) in obj {
        if key.eq_ignore_ascii_case("schemas") {
            check_schemas(rt, value)?;
        } else if key.eq_ignore_ascii_case("id") || key.eq_ignore_ascii_case("meta") {
            // readOnly, assigned by the server
        } else if key.eq_ignore_ascii_case("externalId") {
            external_id = string_value("externalId", value)?;
        } else if rt.is_group() && key.eq_ignore_ascii_case("members") {
            members = Some(member_refs(value)?);
        } else if let Some(schema) = rt.extension(key) {
            let Value::Object(inner) = value else {
                if value.is_null() {
                    continue;
                }
                return Err(ScimError::invalid_value(format!(
                    "Extension {} must be a JSON object.",
                    schema.id
                )));
            };
            let entry = ext_entry(&mut ext, &schema.id);
            for (k, v) in inner {
                if is_own_schemas_key(k, v, schema) {
                    continue;
                }
                let def = schema.attr(k).ok_or_else(|| unknown(k, &schema.id))?;
                put(entry, def, v, &schema.id)?;
            }
        } else if let Some((schema, name)) = split_urn_attr(rt, key) {
            // `urn:…:User:department` as a top-level key (Entra sends this shape).
            let def = schema.attr(name).ok_or_else(|| unknown(name, &schema.id))?;
            let entry = ext_entry(&mut ext, &schema.id);
            put(entry, def, value, &schema.id)?;
        } else if let Some(def) = rt.schema.attr(key) {
            put(&mut core, def, value, &rt.schema.id)?;
        } else {
            return Err(unknown(key, &rt.schema.id));
        }
    }
    for def in &rt.schema.attributes {
        if def.required && def.mutability != Mutability::ReadOnly && !core.contains_key(&def.name) {
            return Err(ScimError::invalid_value(format!(
                "Attribute '{}' is required.",
                def.name
            )));
        }
    }
    let mut doc = Map::new();
    let mut schemas = vec![Value::String(rt.schema.id.clone())];
    for (schema, required) in &rt.extensions {
        let present = ext
            .iter()
            .any(|(urn, m)| urn == &schema.id && !m.is_empty());
        if *required && !present {
            return Err(ScimError::invalid_value(format!(
                "Extension {} is required.",
                schema.id
            )));
        }
        if present {
            schemas.push(Value::String(schema.id.clone()));
        }
    }
    doc.insert("schemas".into(), Value::Array(schemas));
    if let Some(e) = external_id {
        doc.insert("externalId".into(), Value::String(e));
    }
    // Canonical order: the schema's attribute order, then extensions in declaration order.
    for def in &rt.schema.attributes {
        if let Some(v) = core.remove(&def.name) {
            doc.insert(def.name.clone(), v);
        }
    }
    for (schema, _) in &rt.extensions {
        if let Some((_, mut m)) = ext
            .iter()
            .position(|(u, _)| u == &schema.id)
            .map(|i| ext.swap_remove(i))
            && !m.is_empty()
        {
            let mut ordered = Map::new();
            for def in &schema.attributes {
                if let Some(v) = m.remove(&def.name) {
                    ordered.insert(def.name.clone(), v);
                }
            }
            for def in &schema.attributes {
                if def.required
                    && def.mutability != Mutability::ReadOnly
                    && !ordered.contains_key(&def.name)
                {
                    return Err(ScimError::invalid_value(format!(
                        "Attribute '{}' of {} is required.",
                        def.name, schema.id
                    )));
                }
            }
            doc.insert(schema.id.clone(), Value::Object(ordered));
        }
    }
    Ok(Normalized { doc, members })
}

fn ext_entry<'a>(
    ext: &'a mut Vec<(String, Map<String, Value>)>,
    urn: &str,
) -> &'a mut Map<String, Value> {
    let i = match ext.iter().position(|(u, _)| u == urn) {
        Some(i) => i,
        None => {
            ext.push((urn.to_string(), Map::new()));
            ext.len() - 1
        }
    };
    &mut ext[i].1
}

/// Splits `urn:…:Schema:attr` into the extension and the attribute name.
pub fn split_urn_attr<'a>(
    rt: &'a ResourceType,
    key: &'a str,
) -> Option<(&'a super::schema::SchemaDef, &'a str)> {
    if !key.get(..4)?.eq_ignore_ascii_case("urn:") {
        return None;
    }
    let (urn, name) = key.rsplit_once(':')?;
    rt.extension(urn).map(|s| (s, name))
}

/// Some clients (scim2-models) repeat `"schemas": [<extension URN>]` inside
/// an extension object. It says nothing new, so it is accepted and dropped.
pub fn is_own_schemas_key(key: &str, value: &Value, ext: &super::schema::SchemaDef) -> bool {
    key.eq_ignore_ascii_case("schemas")
        && value.as_array().is_some_and(|items| {
            items
                .iter()
                .all(|i| i.as_str().is_some_and(|u| u.eq_ignore_ascii_case(&ext.id)))
        })
}

fn unknown(name: &str, schema: &str) -> ScimError {
    ScimError::invalid_value(format!("Unknown attribute '{name}' in schema {schema}."))
}

/// Schema URIs some IdPs add that carry no attributes (Entra's classic
/// client sends its ADSCIM marker on groups); accepted and dropped.
fn is_idp_marker(urn: &str) -> bool {
    urn.to_ascii_lowercase()
        .starts_with("http://schemas.microsoft.com/2006/11/resourcemanagement/adscim/")
}

fn check_schemas(rt: &ResourceType, value: &Value) -> Result<(), ScimError> {
    let Value::Array(items) = value else {
        return Err(ScimError::invalid_value(
            "'schemas' must be an array of URNs.",
        ));
    };
    for item in items {
        let Value::String(urn) = item else {
            return Err(ScimError::invalid_value(
                "'schemas' must be an array of URNs.",
            ));
        };
        if !rt.schema_urns().any(|u| u.eq_ignore_ascii_case(urn)) && !is_idp_marker(urn) {
            return Err(ScimError::invalid_value(format!(
                "Schema {urn} is not supported for {} resources.",
                rt.name
            )));
        }
    }
    Ok(())
}

/// Normalises `value` for `def` and stores it under the canonical name
/// (or removes the attribute when the value is null or empty).
fn put(
    target: &mut Map<String, Value>,
    def: &AttrDef,
    value: &Value,
    schema: &str,
) -> Result<(), ScimError> {
    if def.mutability == Mutability::ReadOnly {
        return Ok(());
    }
    if def.mutability == Mutability::WriteOnly {
        // Validated, never stored: a write-only secret (password) has no
        // business in the identity store, its audit trail or its backups.
        attr_value(def, value, schema)?;
        return Ok(());
    }
    match attr_value(def, value, schema)? {
        Some(v) => target.insert(def.name.clone(), v),
        None => target.remove(&def.name),
    };
    Ok(())
}

/// Normalises a whole attribute value (a list for a multi-valued attribute).
/// `None` means unassigned.
pub fn attr_value(def: &AttrDef, value: &Value, schema: &str) -> Result<Option<Value>, ScimError> {
    if !def.multi_valued {
        if let Value::Array(items) = value {
            // Some clients wrap a single value in a one-element list.
            return match items.as_slice() {
                [] => Ok(None),
                [one] => single_value(def, one, schema),
                _ => Err(ScimError::invalid_value(format!(
                    "Attribute '{}' is single-valued.",
                    def.name
                ))),
            };
        }
        return single_value(def, value, schema);
    }
    let items: Vec<&Value> = match value {
        Value::Null => return Ok(None),
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        if let Some(v) = single_value(def, item, schema)?
            && !out.contains(&v)
        {
            out.push(v);
        }
    }
    let primaries = out
        .iter()
        .filter(|v| v.get("primary") == Some(&Value::Bool(true)))
        .count();
    if primaries > 1 {
        return Err(ScimError::invalid_value(format!(
            "At most one value of '{}' may be primary.",
            def.name
        )));
    }
    Ok((!out.is_empty()).then_some(Value::Array(out)))
}

/// Normalises one value (one element of a multi-valued attribute).
pub fn single_value(
    def: &AttrDef,
    value: &Value,
    schema: &str,
) -> Result<Option<Value>, ScimError> {
    if value.is_null() {
        return Ok(None);
    }
    let bad = || {
        ScimError::invalid_value(format!(
            "Attribute '{}' expects a value of type {:?}.",
            def.name, def.kind
        ))
    };
    let v = match def.kind {
        AttrType::String | AttrType::Reference | AttrType::Binary => match value {
            Value::String(s) => Value::String(s.clone()),
            Value::Number(n) => Value::String(n.to_string()),
            Value::Bool(b) => Value::String(b.to_string()),
            _ => return Err(bad()),
        },
        AttrType::Boolean => match value {
            Value::Bool(b) => Value::Bool(*b),
            Value::String(s) if s.eq_ignore_ascii_case("true") => Value::Bool(true),
            Value::String(s) if s.eq_ignore_ascii_case("false") => Value::Bool(false),
            _ => return Err(bad()),
        },
        AttrType::Integer => match value {
            Value::Number(n) if n.is_i64() || n.is_u64() => Value::Number(n.clone()),
            Value::String(s) => s
                .trim()
                .parse::<i64>()
                .map(Value::from)
                .map_err(|_| bad())?,
            _ => return Err(bad()),
        },
        AttrType::Decimal => match value {
            Value::Number(n) => Value::Number(n.clone()),
            Value::String(s) => s
                .trim()
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map(Value::Number)
                .ok_or_else(bad)?,
            _ => return Err(bad()),
        },
        AttrType::DateTime => match value {
            Value::String(s) if s.parse::<scim_v2::ScimDateTime>().is_ok() => {
                Value::String(s.clone())
            }
            _ => {
                return Err(ScimError::invalid_value(format!(
                    "Attribute '{}' expects an xsd:dateTime such as 2026-01-31T12:00:00Z.",
                    def.name
                )));
            }
        },
        AttrType::Complex => return complex_value(def, value, schema),
    };
    if let Value::String(s) = &v {
        if s.is_empty() {
            return Ok(None);
        }
        if s.contains('\0') {
            return Err(ScimError::invalid_value(format!(
                "Attribute '{}' contains a NUL character.",
                def.name
            )));
        }
    }
    Ok(Some(v))
}

fn complex_value(def: &AttrDef, value: &Value, schema: &str) -> Result<Option<Value>, ScimError> {
    let obj = match value {
        Value::Object(o) => o,
        // A bare value for a complex attribute with a `value` sub-attribute:
        // Entra sends `manager` as the manager's id.
        Value::String(s) if def.sub("value").is_some() => {
            if s.is_empty() {
                return Ok(None);
            }
            let mut m = Map::new();
            m.insert("value".into(), Value::String(s.clone()));
            return Ok(Some(Value::Object(m)));
        }
        _ => {
            return Err(ScimError::invalid_value(format!(
                "Attribute '{}' expects a JSON object.",
                def.name
            )));
        }
    };
    let mut out = Map::new();
    for (k, v) in obj {
        let Some(sub) = def.sub(k) else {
            return Err(ScimError::invalid_value(format!(
                "Unknown sub-attribute '{k}' of '{}' in schema {schema}.",
                def.name
            )));
        };
        if sub.mutability == Mutability::ReadOnly && def.mutability != Mutability::ReadOnly {
            continue;
        }
        if let Some(v) = attr_value(sub, v, schema)? {
            out.insert(sub.name.clone(), v);
        }
    }
    // Canonical sub-attribute order.
    let mut ordered = Map::new();
    for sub in &def.sub_attributes {
        if let Some(v) = out.remove(&sub.name) {
            ordered.insert(sub.name.clone(), v);
        }
    }
    Ok((!ordered.is_empty()).then_some(Value::Object(ordered)))
}

fn string_value(name: &str, value: &Value) -> Result<Option<String>, ScimError> {
    let s = match value {
        Value::Null => return Ok(None),
        Value::String(s) if s.is_empty() => return Ok(None),
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => {
            return Err(ScimError::invalid_value(format!(
                "Attribute '{name}' must be a string."
            )));
        }
    };
    if s.contains('\0') {
        return Err(ScimError::invalid_value(format!(
            "Attribute '{name}' contains a NUL character."
        )));
    }
    Ok(Some(s))
}

/// Reads group member references: `[{"value": id, "type"?: …}]`; `$ref`
/// and `display` are derived by the server and ignored on input.
pub fn member_refs(value: &Value) -> Result<Vec<MemberRef>, ScimError> {
    let items: Vec<&Value> = match value {
        Value::Null => return Ok(Vec::new()),
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    };
    let mut out: Vec<MemberRef> = Vec::with_capacity(items.len());
    let mut seen = std::collections::HashSet::with_capacity(items.len());
    for item in items {
        let Value::Object(obj) = item else {
            return Err(ScimError::invalid_value(
                "Each member must be an object with a 'value'.",
            ));
        };
        let mut value = None;
        let mut kind = None;
        for (k, v) in obj {
            if k.eq_ignore_ascii_case("value") {
                value = string_value("members.value", v)?;
            } else if k.eq_ignore_ascii_case("type") {
                kind = match string_value("members.type", v)? {
                    Some(t) if t.eq_ignore_ascii_case("user") => Some("User".to_string()),
                    Some(t) if t.eq_ignore_ascii_case("group") => Some("Group".to_string()),
                    Some(t) => {
                        return Err(ScimError::invalid_value(format!(
                            "Member type '{t}' is not User or Group."
                        )));
                    }
                    None => None,
                };
            } else if k.eq_ignore_ascii_case("$ref") || k.eq_ignore_ascii_case("display") {
                // derived by the server
            } else {
                return Err(ScimError::invalid_value(format!(
                    "Unknown sub-attribute '{k}' of 'members'."
                )));
            }
        }
        let value =
            value.ok_or_else(|| ScimError::invalid_value("Each member needs a 'value'."))?;
        if seen.insert(value.clone()) {
            out.push(MemberRef { value, kind });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ScimSettings;
    use crate::scim::schema::{ENTERPRISE_URN, Registry};
    use serde_json::json;

    fn reg() -> Registry {
        Registry::load(&ScimSettings::default()).unwrap()
    }

    #[test]
    fn canonicalises_names_and_coerces_types() {
        let reg = reg();
        let n = normalize(
            &reg.user,
            &json!({"USERNAME": "bjensen", "Active": "False", "name": {"GivenName": "Barbara"},
                    "emails": {"value": "b@x.org", "primary": "true"}, "id": "ignored",
                    "password": "hunter2", "groups": []}),
        )
        .unwrap();
        assert_eq!(
            Value::Object(n.doc),
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "bjensen",
                   "name": {"givenName": "Barbara"}, "active": false,
                   "emails": [{"value": "b@x.org", "primary": true}]})
        );
    }

    #[test]
    fn normalize_is_idempotent() {
        let reg = reg();
        let input = json!({"userName": "a", ENTERPRISE_URN: {"manager": "42", "Department": "R&D"},
                           "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:costCenter": "7"});
        let once = normalize(&reg.user, &input).unwrap().doc;
        let twice = normalize(&reg.user, &Value::Object(once.clone()))
            .unwrap()
            .doc;
        assert_eq!(once, twice);
        assert_eq!(once[ENTERPRISE_URN]["manager"], json!({"value": "42"}));
        assert_eq!(once[ENTERPRISE_URN]["costCenter"], "7");
        assert_eq!(once["schemas"][1], ENTERPRISE_URN);
    }

    #[test]
    fn refuses_unknown_wrong_and_missing() {
        let reg = reg();
        for bad in [
            json!({"userName": "a", "shoeSize": 42}),
            json!({"userName": "a", "active": "maybe"}),
            json!({"userName": "a", "name": {"nick": "x"}}),
            json!({"displayName": "no user name"}),
            json!({"userName": "a", "emails": [{"value": "1", "primary": true}, {"value": "2", "primary": true}]}),
            json!({"userName": "a", "schemas": ["urn:example:unknown"]}),
            json!({"userName": {"nested": true}}),
        ] {
            let e = normalize(&reg.user, &bad).unwrap_err();
            assert_eq!(
                e.scim_type().map(|t| t.as_str()),
                Some("invalidValue"),
                "{bad}"
            );
        }
        assert_eq!(
            normalize(&reg.user, &json!([1]))
                .unwrap_err()
                .scim_type()
                .map(|t| t.as_str()),
            Some("invalidSyntax")
        );
    }

    #[test]
    fn group_members_are_split_off() {
        let reg = reg();
        let n = normalize(
            &reg.group,
            &json!({"displayName": "Ops", "members": [{"value": "u1", "$ref": null}, {"value": "u1"}, {"value": "g2", "type": "group"}]}),
        )
        .unwrap();
        assert!(!n.doc.contains_key("members"));
        assert_eq!(
            n.members.unwrap(),
            vec![
                MemberRef {
                    value: "u1".into(),
                    kind: None
                },
                MemberRef {
                    value: "g2".into(),
                    kind: Some("Group".into())
                }
            ]
        );
    }
}
