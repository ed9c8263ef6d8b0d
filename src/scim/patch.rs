//! The PATCH engine (RFC 7644 §3.5.2) over schema-driven documents.
//!
//! ```text
//!  PatchOp body ──parse──▶ [Op] ──apply, one by one──▶ document'  ──normalize──▶ stored
//!                                         └──────────▶ [MemberChange] ──▶ group_members rows
//! ```
//! Operations apply to a copy of the document; any error discards the copy,
//! so a PATCH applies completely or not at all. Group membership is never
//! loaded into the document: member operations become [`MemberChange`]s that
//! the store applies row by row, so a change costs what it touches.

use scim_v2::filter::{AttrExp, CompValue, CompareOp, PatchPath, ValFilter};
use serde_json::{Map, Value};

use super::filter::{FilterLimits, val_matches};
use super::normalize::{
    MemberRef, attr_value, is_own_schemas_key, member_refs, single_value, split_urn_attr,
};
use super::path::{Target, container_mut, parse_attr_path, resolve};
use super::schema::{AttrDef, AttrType, Mutability, ResourceType, SchemaDef};
use crate::error::ScimError;

/// URN of the PatchOp message.
pub const PATCH_OP_URN: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// What one PATCH request may hold, from `[scim]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PatchLimits {
    /// Most operations in one request.
    pub max_operations: usize,
    /// Length and nesting of each operation's `path`.
    pub path: FilterLimits,
}

impl PatchLimits {
    /// The limits configured in `[scim]`.
    pub fn from_settings(s: &crate::config::ScimSettings) -> Self {
        Self {
            max_operations: s.max_patch_operations,
            path: FilterLimits::from_settings(s),
        }
    }
}

impl Default for PatchLimits {
    fn default() -> Self {
        Self::from_settings(&crate::config::ScimSettings::default())
    }
}

/// The kind of an operation; clients send it in any case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    Add,
    Replace,
    Remove,
}

/// One parsed operation.
#[derive(Debug, Clone)]
pub struct Op {
    /// add / replace / remove.
    pub kind: OpKind,
    /// The target path, if any.
    pub path: Option<String>,
    /// The value, if any.
    pub value: Option<Value>,
}

/// A change to a group's membership, applied by the store.
#[derive(Debug, Clone, PartialEq)]
pub enum MemberChange {
    /// Add these members (existing ones are left alone).
    Add(Vec<MemberRef>),
    /// Remove these member ids (absent ones are ignored).
    Remove(Vec<String>),
    /// Remove every member.
    RemoveAll,
    /// Remove the members matching a filter over `value`, `display`, `type`.
    RemoveWhere(ValFilter),
}

/// The result of applying operations.
#[derive(Debug, Clone)]
pub struct Patched {
    /// The patched document (still to be normalised and validated).
    pub doc: Map<String, Value>,
    /// Membership changes, in request order.
    pub members: Vec<MemberChange>,
}

impl Patched {
    /// How many member references the operations name, added or removed.
    pub fn member_refs(&self) -> usize {
        self.members
            .iter()
            .map(|c| match c {
                MemberChange::Add(m) => m.len(),
                MemberChange::Remove(ids) => ids.len(),
                MemberChange::RemoveAll | MemberChange::RemoveWhere(_) => 0,
            })
            .sum()
    }
}

/// Parses a PatchOp request body within `limits`.
pub fn parse(body: &Value, limits: PatchLimits) -> Result<Vec<Op>, ScimError> {
    let Value::Object(obj) = body else {
        return Err(ScimError::invalid_syntax(
            "The PATCH body must be a JSON object.",
        ));
    };
    let mut ops = None;
    for (k, v) in obj {
        if k.eq_ignore_ascii_case("schemas") {
            let ok = v.as_array().is_some_and(|a| {
                a.iter().any(|s| {
                    s.as_str()
                        .is_some_and(|s| s.eq_ignore_ascii_case(PATCH_OP_URN))
                })
            });
            if !ok {
                return Err(ScimError::invalid_value(format!(
                    "'schemas' must contain {PATCH_OP_URN}."
                )));
            }
        } else if k.eq_ignore_ascii_case("Operations") {
            ops = Some(v);
        }
    }
    let Some(Value::Array(items)) = ops else {
        return Err(ScimError::invalid_value(
            "'Operations' must be an array of operations.",
        ));
    };
    if items.is_empty() {
        return Err(ScimError::invalid_value("'Operations' is empty."));
    }
    if items.len() > limits.max_operations {
        return Err(ScimError::invalid_value(format!(
            "At most {} operations are accepted in one PATCH request.",
            limits.max_operations
        )));
    }
    let ops = items.iter().map(parse_op).collect::<Result<Vec<_>, _>>()?;
    for path in ops.iter().filter_map(|op| op.path.as_deref()) {
        limits
            .path
            .check(path, "PATCH path", ScimError::invalid_path)?;
    }
    Ok(ops)
}

fn parse_op(item: &Value) -> Result<Op, ScimError> {
    let Value::Object(obj) = item else {
        return Err(ScimError::invalid_value(
            "Each operation must be a JSON object.",
        ));
    };
    let mut kind = None;
    let mut path = None;
    let mut value = None;
    for (k, v) in obj {
        if k.eq_ignore_ascii_case("op") {
            kind = match v.as_str().map(str::to_ascii_lowercase).as_deref() {
                Some("add") => Some(OpKind::Add),
                Some("replace") => Some(OpKind::Replace),
                Some("remove") => Some(OpKind::Remove),
                _ => return Err(ScimError::invalid_value(format!("Unknown PATCH op {v}."))),
            };
        } else if k.eq_ignore_ascii_case("path") {
            path = match v {
                Value::Null => None,
                Value::String(s) if s.trim().is_empty() => None,
                Value::String(s) => Some(s.trim().to_string()),
                _ => return Err(ScimError::invalid_path("'path' must be a string.")),
            };
        } else if k.eq_ignore_ascii_case("value") {
            value = Some(v.clone());
        }
    }
    let kind = kind.ok_or_else(|| ScimError::invalid_value("Each operation needs an 'op'."))?;
    if kind != OpKind::Remove && value.is_none() {
        return Err(ScimError::invalid_value("add and replace need a 'value'."));
    }
    Ok(Op { kind, path, value })
}

/// Applies operations to a copy of `doc`.
pub fn apply(
    rt: &ResourceType,
    doc: &Map<String, Value>,
    ops: &[Op],
) -> Result<Patched, ScimError> {
    let mut out = Patched {
        doc: doc.clone(),
        members: Vec::new(),
    };
    for op in ops {
        match &op.path {
            Some(path) => apply_path(rt, &mut out, op.kind, path, op.value.as_ref())?,
            None => apply_pathless(rt, &mut out, op)?,
        }
    }
    Ok(out)
}

fn apply_pathless(rt: &ResourceType, out: &mut Patched, op: &Op) -> Result<(), ScimError> {
    if op.kind == OpKind::Remove {
        return Err(ScimError::no_target("A remove operation needs a 'path'."));
    }
    let Some(Value::Object(value)) = &op.value else {
        return Err(ScimError::invalid_value(
            "Without a 'path', the value must be a JSON object.",
        ));
    };
    for (key, v) in value {
        if key.eq_ignore_ascii_case("schemas")
            || key.eq_ignore_ascii_case("id")
            || key.eq_ignore_ascii_case("meta")
        {
            continue; // Okta repeats `id` and `schemas` in path-less values.
        }
        if let Some(ext) = rt.extension(key) {
            let Value::Object(inner) = v else {
                return Err(ScimError::invalid_value(format!(
                    "Extension {} must be a JSON object.",
                    ext.id
                )));
            };
            for (k2, v2) in inner {
                if is_own_schemas_key(k2, v2, ext) {
                    continue;
                }
                let attr = ext.attr(k2).ok_or_else(|| {
                    ScimError::invalid_value(format!(
                        "Unknown attribute '{k2}' in schema {}.",
                        ext.id
                    ))
                })?;
                apply_attr(out, op.kind, Some(ext), attr, None, Some(v2))?;
            }
            continue;
        }
        if let Some((ext, name)) = split_urn_attr(rt, key)
            && !name.contains('.')
        {
            let attr = ext.attr(name).ok_or_else(|| {
                ScimError::invalid_value(format!(
                    "Unknown attribute '{name}' in schema {}.",
                    ext.id
                ))
            })?;
            apply_attr(out, op.kind, Some(ext), attr, None, Some(v))?;
            continue;
        }
        apply_path(rt, out, op.kind, key, Some(v)).map_err(|e| {
            if e.scim_type() == Some(crate::error::ScimType::InvalidPath) {
                ScimError::invalid_value(e.detail().to_string())
            } else {
                e
            }
        })?;
    }
    Ok(())
}

fn apply_path(
    rt: &ResourceType,
    out: &mut Patched,
    kind: OpKind,
    path: &str,
    value: Option<&Value>,
) -> Result<(), ScimError> {
    let parsed = super::path::parse_patch_path(path)
        .ok_or_else(|| ScimError::invalid_path(format!("'{path}' is not a valid PATCH path.")))?;
    let undefined = || {
        ScimError::invalid_path(format!(
            "Attribute '{path}' is not defined for {} resources.",
            rt.name
        ))
    };
    match parsed {
        PatchPath::Attr(p) => match resolve(rt, &p).ok_or_else(undefined)? {
            Target::Extension(ext) => apply_extension(out, kind, ext, value),
            Target::Attr { ext, attr, sub } => {
                if rt.is_group() && ext.is_none() && attr.name == "members" {
                    if sub.is_some() {
                        return Err(ScimError::invalid_path(
                            "Member sub-attributes cannot be patched.",
                        ));
                    }
                    return member_op(out, kind, None, value);
                }
                apply_attr(out, kind, ext, attr, sub, value)
            }
        },
        PatchPath::Value(vp) => {
            let Some(Target::Attr {
                ext,
                attr,
                sub: None,
            }) = resolve(rt, &vp.attr)
            else {
                return Err(undefined());
            };
            if !attr.multi_valued || attr.kind != AttrType::Complex {
                return Err(ScimError::invalid_path(format!(
                    "'{}' is not a multi-valued complex attribute.",
                    attr.name
                )));
            }
            for_each_val_attr(&vp.filter, &mut |name| {
                attr.sub(name).map(|_| ()).ok_or_else(|| {
                    ScimError::invalid_path(format!(
                        "'{}' has no sub-attribute '{name}'.",
                        attr.name
                    ))
                })
            })?;
            let sub = match &vp.sub_attr {
                Some(s) => Some(attr.sub(s).ok_or_else(undefined)?),
                None => None,
            };
            if rt.is_group() && ext.is_none() && attr.name == "members" {
                if sub.is_some() || kind != OpKind::Remove {
                    return Err(ScimError::mutability(
                        "Members can be added or removed, not modified in place.",
                    ));
                }
                return member_op(out, kind, Some(vp.filter), value);
            }
            apply_value_path(out, kind, ext, attr, &vp.filter, sub, value)
        }
    }
}

fn for_each_val_attr(
    f: &ValFilter,
    check: &mut impl FnMut(&str) -> Result<(), ScimError>,
) -> Result<(), ScimError> {
    match f {
        ValFilter::Attr(AttrExp::Present(p) | AttrExp::Comparison(p, _, _)) => {
            if p.uri.is_some() || p.sub_attr.is_some() {
                return Err(ScimError::invalid_path(format!(
                    "'{p}' is not a sub-attribute name."
                )));
            }
            check(&p.name)
        }
        ValFilter::Not(inner) => for_each_val_attr(inner, check),
        ValFilter::And(items) | ValFilter::Or(items) => {
            items.iter().try_for_each(|i| for_each_val_attr(i, check))
        }
    }
}

fn member_op(
    out: &mut Patched,
    kind: OpKind,
    filter: Option<ValFilter>,
    value: Option<&Value>,
) -> Result<(), ScimError> {
    match (kind, filter) {
        (OpKind::Add, None) => out.members.push(MemberChange::Add(member_refs(
            value.unwrap_or(&Value::Null),
        )?)),
        (OpKind::Replace, None) => {
            out.members.push(MemberChange::RemoveAll);
            out.members.push(MemberChange::Add(member_refs(
                value.unwrap_or(&Value::Null),
            )?));
        }
        (OpKind::Remove, None) => match value {
            // Entra's legacy form: remove only the listed members.
            Some(v) if !v.is_null() => {
                let ids = member_refs(v)?.into_iter().map(|m| m.value).collect();
                out.members.push(MemberChange::Remove(ids));
            }
            _ => out.members.push(MemberChange::RemoveAll),
        },
        (OpKind::Remove, Some(filter)) => match value_eq_ids(&filter) {
            Some(ids) => out.members.push(MemberChange::Remove(ids)),
            None => out.members.push(MemberChange::RemoveWhere(filter)),
        },
        (_, Some(_)) => {
            return Err(ScimError::mutability(
                "Members cannot be modified in place.",
            ));
        }
    }
    Ok(())
}

/// `value eq "a"` or `value eq "a" or value eq "b"` → the ids.
fn value_eq_ids(filter: &ValFilter) -> Option<Vec<String>> {
    match filter {
        ValFilter::Attr(AttrExp::Comparison(p, CompareOp::Eq, CompValue::Str(v)))
            if p.name.eq_ignore_ascii_case("value") && p.sub_attr.is_none() =>
        {
            Some(vec![v.clone()])
        }
        ValFilter::Or(items) => {
            let mut ids = Vec::new();
            for i in items.iter() {
                ids.extend(value_eq_ids(i)?);
            }
            Some(ids)
        }
        _ => None,
    }
}

fn apply_extension(
    out: &mut Patched,
    kind: OpKind,
    ext: &SchemaDef,
    value: Option<&Value>,
) -> Result<(), ScimError> {
    match kind {
        OpKind::Remove => {
            out.doc.remove(&ext.id);
            Ok(())
        }
        _ => {
            let Some(Value::Object(inner)) = value else {
                return Err(ScimError::invalid_value(format!(
                    "Extension {} must be a JSON object.",
                    ext.id
                )));
            };
            for (k, v) in inner {
                if is_own_schemas_key(k, v, ext) {
                    continue;
                }
                let attr = ext.attr(k).ok_or_else(|| {
                    ScimError::invalid_value(format!(
                        "Unknown attribute '{k}' in schema {}.",
                        ext.id
                    ))
                })?;
                apply_attr(out, kind, Some(ext), attr, None, Some(v))?;
            }
            Ok(())
        }
    }
}

fn check_writable(attr: &AttrDef, sub: Option<&AttrDef>) -> Result<(), ScimError> {
    for def in std::iter::once(attr).chain(sub) {
        if def.mutability == Mutability::ReadOnly {
            return Err(ScimError::mutability(format!(
                "Attribute '{}' is read-only.",
                def.name
            )));
        }
    }
    Ok(())
}

fn apply_attr(
    out: &mut Patched,
    kind: OpKind,
    ext: Option<&SchemaDef>,
    attr: &AttrDef,
    sub: Option<&AttrDef>,
    value: Option<&Value>,
) -> Result<(), ScimError> {
    check_writable(attr, sub)?;
    let schema = ext.map_or("core", |e| e.id.as_str());
    if attr.mutability == Mutability::WriteOnly {
        // Validated, never stored (see normalize).
        if let Some(v) = value {
            attr_value(attr, v, schema)?;
        }
        return Ok(());
    }
    let target = container_mut(&mut out.doc, ext);
    if let Some(sub) = sub {
        return apply_sub(target, kind, attr, sub, value, schema);
    }
    match kind {
        OpKind::Remove => {
            if attr.required {
                return Err(ScimError::mutability(format!(
                    "Attribute '{}' is required and cannot be removed.",
                    attr.name
                )));
            }
            match value.filter(|v| !v.is_null()) {
                Some(v) if attr.multi_valued => {
                    // Remove only the listed values (matched on `value` when complex).
                    let listed = attr_value(attr, v, schema)?.unwrap_or(Value::Array(Vec::new()));
                    if let Some(Value::Array(items)) = target.get_mut(&attr.name) {
                        let listed = listed.as_array().cloned().unwrap_or_default();
                        items.retain(|el| !listed.iter().any(|l| same_element(attr, el, l)));
                    }
                }
                _ => {
                    target.remove(&attr.name);
                }
            }
        }
        OpKind::Add | OpKind::Replace => {
            let Some(v) = value else { return Ok(()) };
            let new = attr_value(attr, v, schema)?;
            match (new, target.get_mut(&attr.name)) {
                (None, _) if kind == OpKind::Replace || !attr.multi_valued => {
                    target.remove(&attr.name);
                }
                (None, _) => {}
                (Some(Value::Array(new)), Some(Value::Array(existing))) if kind == OpKind::Add => {
                    // The value this operation makes primary stays the only primary.
                    let mut keep = None;
                    for el in new {
                        let primary = el.get("primary") == Some(&Value::Bool(true));
                        let pos = match existing.iter().position(|e| same_element(attr, e, &el)) {
                            Some(pos) => {
                                merge_into(&mut existing[pos], &el);
                                pos
                            }
                            None => {
                                existing.push(el);
                                existing.len() - 1
                            }
                        };
                        if primary {
                            keep = Some(pos);
                        }
                    }
                    fix_primary(existing, keep);
                }
                (Some(Value::Object(new)), Some(Value::Object(existing))) if !attr.multi_valued => {
                    // Complex single-valued: the sub-attributes given replace, others stay.
                    for (k, v) in new {
                        existing.insert(k, v);
                    }
                }
                (Some(new), _) => {
                    target.insert(attr.name.clone(), new);
                }
            }
        }
    }
    Ok(())
}

fn apply_sub(
    target: &mut Map<String, Value>,
    kind: OpKind,
    attr: &AttrDef,
    sub: &AttrDef,
    value: Option<&Value>,
    schema: &str,
) -> Result<(), ScimError> {
    let new = match (kind, value) {
        (OpKind::Remove, _) | (_, None) => None,
        (_, Some(v)) => attr_value(sub, v, schema)?,
    };
    match target.get_mut(&attr.name) {
        Some(Value::Array(items)) => {
            for el in items.iter_mut() {
                set_sub(el, sub, new.clone());
            }
        }
        Some(el @ Value::Object(_)) => set_sub(el, sub, new),
        _ => {
            if let Some(v) = new {
                let mut m = Map::new();
                m.insert(sub.name.clone(), v);
                let el = Value::Object(m);
                target.insert(
                    attr.name.clone(),
                    if attr.multi_valued {
                        Value::Array(vec![el])
                    } else {
                        el
                    },
                );
            }
        }
    }
    if let Some(v) = target.get(&attr.name)
        && is_empty(v)
    {
        target.remove(&attr.name);
    }
    Ok(())
}

fn set_sub(el: &mut Value, sub: &AttrDef, new: Option<Value>) {
    if let Value::Object(m) = el {
        match new {
            Some(v) => {
                m.insert(sub.name.clone(), v);
            }
            None => {
                m.remove(&sub.name);
            }
        }
    }
}

fn apply_value_path(
    out: &mut Patched,
    kind: OpKind,
    ext: Option<&SchemaDef>,
    attr: &AttrDef,
    filter: &ValFilter,
    sub: Option<&AttrDef>,
    value: Option<&Value>,
) -> Result<(), ScimError> {
    check_writable(attr, sub)?;
    let schema = ext.map_or("core", |e| e.id.as_str());
    let target = container_mut(&mut out.doc, ext);
    let mut items = match target.remove(&attr.name) {
        Some(Value::Array(items)) => items,
        Some(other) => vec![other],
        None => Vec::new(),
    };
    let matched: Vec<usize> = items
        .iter()
        .enumerate()
        .filter(|(_, el)| val_matches(attr, filter, el))
        .map(|(i, _)| i)
        .collect();
    match kind {
        OpKind::Remove => match sub {
            Some(sub) => matched
                .iter()
                .for_each(|&i| set_sub(&mut items[i], sub, None)),
            None => {
                let mut i = 0;
                items.retain(|_| {
                    i += 1;
                    !matched.contains(&(i - 1))
                });
            }
        },
        OpKind::Add | OpKind::Replace => {
            let v = value.unwrap_or(&Value::Null);
            let patch: Value = match sub {
                Some(sub) => {
                    let mut m = Map::new();
                    if let Some(nv) = attr_value(sub, v, schema)? {
                        m.insert(sub.name.clone(), nv);
                    } else {
                        // clearing a sub-attribute of the matched values
                        matched
                            .iter()
                            .for_each(|&i| set_sub(&mut items[i], sub, None));
                    }
                    Value::Object(m)
                }
                None => single_value(attr, v, schema)?.unwrap_or(Value::Object(Map::new())),
            };
            if matched.is_empty() {
                // Entra adds `phoneNumbers[type eq "mobile"].value` to a user
                // without one: create the element the filter describes.
                let Some(mut seed) = element_from_filter(attr, filter) else {
                    return Err(ScimError::no_target(format!(
                        "No value of '{}' matches the filter.",
                        attr.name
                    )));
                };
                merge_into(&mut seed, &patch);
                if let Some(el) = single_value(attr, &seed, schema)? {
                    items.push(el);
                    let last = items.len() - 1;
                    fix_primary(&mut items, Some(last));
                }
            } else {
                for &i in &matched {
                    merge_into(&mut items[i], &patch);
                }
                if patch.get("primary") == Some(&Value::Bool(true))
                    && let Some(&first) = matched.first()
                {
                    fix_primary(&mut items, Some(first));
                }
            }
        }
    }
    items.retain(|el| !is_empty(el));
    if !items.is_empty() {
        target.insert(attr.name.clone(), Value::Array(items));
    }
    Ok(())
}

/// Builds `{type: "mobile"}` from `type eq "mobile"` (conjunctions of `eq` only).
fn element_from_filter(attr: &AttrDef, filter: &ValFilter) -> Option<Value> {
    let mut m = Map::new();
    fn collect(attr: &AttrDef, f: &ValFilter, m: &mut Map<String, Value>) -> Option<()> {
        match f {
            ValFilter::Attr(AttrExp::Comparison(p, CompareOp::Eq, v)) => {
                let sub = attr.sub(&p.name)?;
                let v = match v {
                    CompValue::Str(s) => Value::String(s.clone()),
                    CompValue::True => Value::Bool(true),
                    CompValue::False => Value::Bool(false),
                    CompValue::Number(n) => Value::Number(n.clone()),
                    CompValue::Null => return None,
                };
                m.insert(sub.name.clone(), v);
                Some(())
            }
            ValFilter::And(items) => items.iter().try_for_each(|i| collect(attr, i, m)),
            _ => None,
        }
    }
    collect(attr, filter, &mut m)?;
    Some(Value::Object(m))
}

fn merge_into(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                t.insert(k.clone(), v.clone());
            }
        }
        (t, p) => *t = p.clone(),
    }
}

/// Two elements are the same value when equal, or (complex) when their
/// `value` and `type` agree.
fn same_element(attr: &AttrDef, a: &Value, b: &Value) -> bool {
    if a == b {
        return true;
    }
    if attr.kind != AttrType::Complex || attr.sub("value").is_none() {
        return false;
    }
    let value_eq = match (a.get("value"), b.get("value")) {
        (Some(Value::String(x)), Some(Value::String(y))) => {
            let case_exact = attr.sub("value").is_some_and(|s| s.case_exact);
            if case_exact {
                x == y
            } else {
                x.eq_ignore_ascii_case(y)
            }
        }
        (Some(x), Some(y)) => x == y,
        _ => false,
    };
    value_eq && (b.get("type").is_none() || a.get("type") == b.get("type"))
}

/// Keeps at most one `primary: true`: the element at `keep`, or the last one set.
fn fix_primary(items: &mut [Value], keep: Option<usize>) {
    let primaries: Vec<usize> = items
        .iter()
        .enumerate()
        .filter(|(_, v)| v.get("primary") == Some(&Value::Bool(true)))
        .map(|(i, _)| i)
        .collect();
    if primaries.len() <= 1 {
        return;
    }
    let keep = keep
        .filter(|k| primaries.contains(k))
        .or(primaries.last().copied());
    for i in primaries {
        if Some(i) != keep
            && let Value::Object(m) = &mut items[i]
        {
            m.insert("primary".into(), Value::Bool(false));
        }
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

/// Checks a path string without applying anything (used by tests and Bulk).
pub fn check_path(rt: &ResourceType, path: &str) -> Result<(), ScimError> {
    if path.contains('[') {
        return path
            .parse::<PatchPath>()
            .map(|_| ())
            .map_err(|_| ScimError::invalid_path(format!("'{path}' is not a valid PATCH path.")));
    }
    let p = parse_attr_path(path)?;
    resolve(rt, &p)
        .map(|_| ())
        .ok_or_else(|| ScimError::invalid_path(format!("Attribute '{path}' is not defined.")))
}
