//! SCIM filters (RFC 7644 §3.4.2.2): parsing with the client quirks real IdPs
//! send, and the in-memory evaluator. The evaluator is the reference
//! semantics: the SQL planner only narrows candidates, and policy rules use
//! this same code.

use std::cmp::Ordering;

use chrono::{DateTime, FixedOffset};
use scim_v2::filter::{AttrExp, AttrPath, CompValue, CompareOp, Filter, ValFilter};
use serde_json::Value;

use super::path::{Target, container, resolve};
use super::schema::{AttrDef, AttrType, ResourceType};
use crate::error::ScimError;

mod simple;

pub(crate) use simple::attr_path as simple_attr_path;

/// How long and how deeply nested a filter may be: a client's filter is
/// parsed and evaluated per request, so both are bounded before parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FilterLimits {
    /// Longest filter text, in bytes.
    pub max_length: usize,
    /// Deepest nesting of `(…)` and `[…]`.
    pub max_depth: usize,
}

impl Default for FilterLimits {
    fn default() -> Self {
        let s = crate::config::ScimSettings::default();
        Self::from_settings(&s)
    }
}

impl FilterLimits {
    /// The limits configured in `[scim]`.
    pub fn from_settings(s: &crate::config::ScimSettings) -> Self {
        Self {
            max_length: s.max_filter_length,
            max_depth: s.max_filter_depth,
        }
    }

    /// Refuses text over the length or nesting limit with `error`.
    pub fn check(
        &self,
        text: &str,
        what: &str,
        error: fn(String) -> ScimError,
    ) -> Result<(), ScimError> {
        if text.len() > self.max_length {
            return Err(error(format!(
                "The {what} is longer than {} characters.",
                self.max_length
            )));
        }
        if nesting(text) > self.max_depth {
            return Err(error(format!(
                "The {what} nests parentheses or brackets deeper than {} levels.",
                self.max_depth
            )));
        }
        Ok(())
    }
}

/// Deepest nesting of `(` and `[` outside string literals.
fn nesting(text: &str) -> usize {
    let (mut depth, mut max, mut in_str, mut escaped) = (0usize, 0usize, false, false);
    for b in text.bytes() {
        if in_str {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_str = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_str = true,
            b'(' | b'[' => {
                depth += 1;
                max = max.max(depth);
            }
            b')' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// Parses a filter within the default [`FilterLimits`] (policy rules in
/// the configuration).
pub fn parse(text: &str) -> Result<Filter, ScimError> {
    parse_limited(text, FilterLimits::default())
}

/// Parses a filter, accepting Entra's `attr[filter].sub op value` form
/// (not in the RFC grammar) by folding the comparison into the brackets.
pub fn parse_limited(text: &str, limits: FilterLimits) -> Result<Filter, ScimError> {
    limits.check(text, "filter", ScimError::invalid_filter)?;
    if text.contains('\0') {
        return Err(ScimError::invalid_filter(
            "The filter contains a NUL character.",
        ));
    }
    if let Some(filter) = simple::parse(text.trim()) {
        return Ok(filter);
    }
    let spaced = space_after_not(text.trim());
    let text = spaced.as_str();
    let rewritten = fold_value_path_comparison(text);
    rewritten
        .as_deref()
        .unwrap_or(text)
        .parse::<Filter>()
        .map_err(|e| ScimError::invalid_filter(format!("The filter is not valid: {e}")))
}

/// The grammar allows `not(…)` without a space; the parser wants one.
/// Inserts it outside string literals, at a word boundary.
fn space_after_not(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len() + 4);
    let mut in_str = false;
    let mut escaped = false;
    for (i, ch) in text.char_indices() {
        out.push(ch);
        if in_str {
            match (escaped, ch) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_str = false,
                _ => {}
            }
            continue;
        }
        if ch == '"' {
            in_str = true;
        } else if (ch == 't' || ch == 'T')
            && i >= 2
            && bytes[i - 2..=i].eq_ignore_ascii_case(b"not")
            && bytes.get(i + 1) == Some(&b'(')
            && (i < 3 || matches!(bytes[i - 3], b' ' | b'(' | b'['))
        {
            out.push(' ');
        }
    }
    out
}

/// Checks that every attribute a filter names is defined for `rt`, and that
/// ordering operators are not used on booleans or binaries (RFC 7644 §3.4.2.2).
pub fn check(rt: &ResourceType, filter: &Filter) -> Result<(), ScimError> {
    check_names(rt, filter)?;
    check_orderings(rt, filter, None)
}

fn is_ordering(op: &CompareOp) -> bool {
    matches!(
        op,
        CompareOp::Gt | CompareOp::Ge | CompareOp::Lt | CompareOp::Le
    )
}

fn unorderable(def: &AttrDef, path: &AttrPath) -> Result<(), ScimError> {
    if matches!(def.kind, AttrType::Boolean | AttrType::Binary) {
        return Err(ScimError::invalid_filter(format!(
            "'{path}' is a {:?} attribute: gt, ge, lt and le do not apply.",
            def.kind
        )));
    }
    Ok(())
}

/// A dateTime is compared with a dateTime: `meta.created gt "not-a-date"`
/// is a client's mistake, not a filter that matches nothing.
fn comparable(
    def: &AttrDef,
    path: &AttrPath,
    op: &CompareOp,
    value: &CompValue,
) -> Result<(), ScimError> {
    let compares = is_ordering(op) || matches!(op, CompareOp::Eq | CompareOp::Ne);
    if def.kind != AttrType::DateTime || !compares {
        return Ok(());
    }
    match value {
        CompValue::Str(s) if parse_time(s).is_some() => Ok(()),
        CompValue::Null if matches!(op, CompareOp::Eq | CompareOp::Ne) => Ok(()),
        other => Err(ScimError::invalid_filter(format!(
            "'{path}' is a dateTime: {other} is not one (use e.g. \"2026-01-31T00:00:00Z\")."
        ))),
    }
}

fn check_orderings(
    rt: &ResourceType,
    filter: &Filter,
    _parent: Option<&AttrDef>,
) -> Result<(), ScimError> {
    match filter {
        Filter::Attr(AttrExp::Comparison(p, op, value)) => match resolve(rt, p) {
            Some(Target::Attr { attr, sub, .. }) => {
                let leaf = match sub {
                    Some(s) => s,
                    None if attr.kind == AttrType::Complex => attr.sub("value").unwrap_or(attr),
                    None => attr,
                };
                if is_ordering(op) {
                    unorderable(leaf, p)?;
                }
                comparable(leaf, p, op, value)
            }
            _ => Ok(()),
        },
        Filter::Attr(_) => Ok(()),
        Filter::ValuePath(vp) => match resolve(rt, &vp.attr) {
            Some(Target::Attr { attr, .. }) => check_val_orderings(attr, &vp.filter),
            _ => Ok(()),
        },
        Filter::Not(inner) => check_orderings(rt, inner, None),
        Filter::And(items) | Filter::Or(items) => {
            items.iter().try_for_each(|i| check_orderings(rt, i, None))
        }
    }
}

fn check_val_orderings(parent: &AttrDef, filter: &ValFilter) -> Result<(), ScimError> {
    match filter {
        ValFilter::Attr(AttrExp::Comparison(p, op, _)) if is_ordering(op) => {
            match parent.sub(&p.name) {
                Some(def) => unorderable(def, p),
                None => Ok(()),
            }
        }
        ValFilter::Attr(_) => Ok(()),
        ValFilter::Not(inner) => check_val_orderings(parent, inner),
        ValFilter::And(items) | ValFilter::Or(items) => items
            .iter()
            .try_for_each(|i| check_val_orderings(parent, i)),
    }
}

fn check_names(rt: &ResourceType, filter: &Filter) -> Result<(), ScimError> {
    let mut bad = None;
    visit_paths(filter, &mut |path, parent| {
        let ok = match parent {
            None => resolve(rt, path).is_some(),
            Some(p) => match resolve(rt, p) {
                Some(Target::Attr {
                    attr, sub: None, ..
                }) => {
                    path.uri.is_none() && path.sub_attr.is_none() && attr.sub(&path.name).is_some()
                }
                _ => false,
            },
        };
        if !ok && bad.is_none() {
            bad = Some(match parent {
                Some(p) => format!("{p}.{path}"),
                None => path.to_string(),
            });
        }
    });
    match bad {
        Some(name) => Err(ScimError::invalid_filter(format!(
            "Attribute '{name}' is not defined for {} resources.",
            rt.name
        ))),
        None => Ok(()),
    }
}

/// Whether a filter mentions a top-level attribute (e.g. `members`).
pub fn mentions(filter: &Filter, name: &str) -> bool {
    let mut found = false;
    visit_paths(filter, &mut |path, parent| {
        let top = parent.unwrap_or(path);
        if top.name.eq_ignore_ascii_case(name) && top.uri.is_none() {
            found = true;
        }
    });
    found
}

fn visit_paths(filter: &Filter, f: &mut impl FnMut(&AttrPath, Option<&AttrPath>)) {
    match filter {
        Filter::Attr(e) => f(attr_exp_path(e), None),
        Filter::ValuePath(vp) => {
            f(&vp.attr, None);
            visit_val_paths(&vp.filter, &vp.attr, f);
        }
        Filter::Not(inner) => visit_paths(inner, f),
        Filter::And(items) | Filter::Or(items) => items.iter().for_each(|i| visit_paths(i, f)),
    }
}

fn visit_val_paths(
    filter: &ValFilter,
    parent: &AttrPath,
    f: &mut impl FnMut(&AttrPath, Option<&AttrPath>),
) {
    match filter {
        ValFilter::Attr(e) => f(attr_exp_path(e), Some(parent)),
        ValFilter::Not(inner) => visit_val_paths(inner, parent, f),
        ValFilter::And(items) | ValFilter::Or(items) => {
            items.iter().for_each(|i| visit_val_paths(i, parent, f))
        }
    }
}

fn attr_exp_path(e: &AttrExp) -> &AttrPath {
    match e {
        AttrExp::Present(p) | AttrExp::Comparison(p, _, _) => p,
    }
}

/// Rewrites `emails[type eq "work"].value eq "x"` into
/// `emails[(type eq "work") and value eq "x"]`. Returns `None` when the
/// text has no such form.
fn fold_value_path_comparison(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(text.len() + 8);
    let mut in_str = false;
    let mut changed = false;
    let mut open: Vec<usize> = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if in_str {
            out.push(c);
            if c == b'\\' && i + 1 < bytes.len() {
                out.push(bytes[i + 1]);
                i += 2;
                continue;
            }
            if c == b'"' {
                in_str = false;
            }
            i += 1;
            continue;
        }
        match c {
            b'"' => {
                in_str = true;
                out.push(b'"');
            }
            b'[' => {
                open.push(out.len());
                out.push(b'[');
            }
            b']' if bytes.get(i + 1) == Some(&b'.') => {
                let start = open.pop()?;
                // sub-attribute name
                let mut j = i + 2;
                while j < bytes.len()
                    && (bytes[j].is_ascii_alphanumeric()
                        || bytes[j] == b'_'
                        || bytes[j] == b'-'
                        || bytes[j] == b'$')
                {
                    j += 1;
                }
                let sub = &text[i + 2..j];
                let (comparison, end) = take_comparison(text, j)?;
                let inner = String::from_utf8_lossy(&out[start + 1..]).into_owned();
                out.truncate(start + 1);
                out.extend_from_slice(format!("({inner}) and {sub}{comparison}]").as_bytes());
                changed = true;
                i = end;
                continue;
            }
            b']' => {
                open.pop();
                out.push(b']');
            }
            _ => out.push(c),
        }
        i += 1;
    }
    // Bytes are copied verbatim and only ASCII is inserted at ASCII
    // delimiters, so the result is valid UTF-8 whenever the input was.
    if changed {
        String::from_utf8(out).ok()
    } else {
        None
    }
}

/// Reads ` op value` or ` pr` starting at `from`; returns it and where it ends.
fn take_comparison(text: &str, from: usize) -> Option<(String, usize)> {
    let rest = &text[from..];
    let trimmed = rest.trim_start();
    let ws = rest.len() - trimmed.len();
    if ws == 0 {
        return None;
    }
    let op_len = trimmed
        .find(|c: char| c.is_whitespace())
        .unwrap_or(trimmed.len());
    let op = &trimmed[..op_len];
    if op.eq_ignore_ascii_case("pr") {
        return Some((" pr".into(), from + ws + op_len));
    }
    const OPS: [&str; 9] = ["eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le"];
    if !OPS.iter().any(|o| o.eq_ignore_ascii_case(op)) {
        return None;
    }
    let after = &trimmed[op_len..];
    let value = after.trim_start();
    let ws2 = after.len() - value.len();
    let value_len = if value.starts_with('"') {
        let mut esc = false;
        let mut end = None;
        for (k, ch) in value.char_indices().skip(1) {
            if esc {
                esc = false;
            } else if ch == '\\' {
                esc = true;
            } else if ch == '"' {
                end = Some(k + 1);
                break;
            }
        }
        end?
    } else {
        value
            .find(|c: char| c.is_whitespace() || c == ')' || c == ']')
            .unwrap_or(value.len())
    };
    let consumed = ws + op_len + ws2 + value_len;
    Some((format!(" {op} {}", &value[..value_len]), from + consumed))
}

/// Evaluates a filter against a rendered resource (with `id`, `meta`, …).
pub fn matches(rt: &ResourceType, filter: &Filter, doc: &Value) -> bool {
    match filter {
        Filter::Attr(e) => attr_matches(rt, e, doc),
        Filter::ValuePath(vp) => {
            let Some(Target::Attr {
                ext,
                attr,
                sub: None,
            }) = resolve(rt, &vp.attr)
            else {
                return false;
            };
            elements(container(doc, ext).and_then(|c| c.get(&attr.name)))
                .any(|el| val_matches(attr, &vp.filter, el))
        }
        Filter::Not(inner) => !matches(rt, inner, doc),
        Filter::And(items) => items.iter().all(|i| matches(rt, i, doc)),
        Filter::Or(items) => items.iter().any(|i| matches(rt, i, doc)),
    }
}

/// Evaluates a value filter (the part inside `[...]`) against one element.
pub fn val_matches(parent: &AttrDef, filter: &ValFilter, element: &Value) -> bool {
    match filter {
        ValFilter::Attr(e) => {
            let path = attr_exp_path(e);
            let Some(sub) = parent.sub(&path.name) else {
                return false;
            };
            let value = element.get(&sub.name);
            compare(sub, e, value)
        }
        ValFilter::Not(inner) => !val_matches(parent, inner, element),
        ValFilter::And(items) => items.iter().all(|i| val_matches(parent, i, element)),
        ValFilter::Or(items) => items.iter().any(|i| val_matches(parent, i, element)),
    }
}

fn attr_matches(rt: &ResourceType, e: &AttrExp, doc: &Value) -> bool {
    let path = attr_exp_path(e);
    match resolve(rt, path) {
        Some(Target::Attr { ext, attr, sub }) => {
            let top = container(doc, ext).and_then(|c| c.get(&attr.name));
            match sub {
                Some(sub) => {
                    let values: Vec<&Value> =
                        elements(top).filter_map(|el| el.get(&sub.name)).collect();
                    compare_many(sub, e, &values)
                }
                // A comparison on a complex attribute compares its `value`.
                None if attr.kind == AttrType::Complex => match attr.sub("value") {
                    Some(v) => {
                        let values: Vec<&Value> =
                            elements(top).filter_map(|el| el.get(&v.name)).collect();
                        compare_many(v, e, &values)
                    }
                    None => matches!(e, AttrExp::Present(_)) && top.is_some_and(is_present),
                },
                None => compare(attr, e, top),
            }
        }
        Some(Target::Extension(ext)) => {
            matches!(e, AttrExp::Present(_)) && doc.get(&ext.id).is_some_and(is_present)
        }
        None => false,
    }
}

fn elements(v: Option<&Value>) -> Box<dyn Iterator<Item = &Value> + '_> {
    match v {
        None | Some(Value::Null) => Box::new(std::iter::empty()),
        Some(Value::Array(items)) => Box::new(items.iter()),
        Some(other) => Box::new(std::iter::once(other)),
    }
}

fn compare_many(def: &AttrDef, e: &AttrExp, values: &[&Value]) -> bool {
    match e {
        AttrExp::Comparison(_, CompareOp::Ne, _) => {
            // `ne` holds when no value equals the operand.
            let eq = AttrExp::Comparison(
                attr_exp_path(e).clone(),
                CompareOp::Eq,
                comp_value(e).clone(),
            );
            !values.iter().any(|v| compare(def, &eq, Some(v)))
        }
        _ => values.iter().any(|v| compare(def, e, Some(v))),
    }
}

fn comp_value(e: &AttrExp) -> &CompValue {
    match e {
        AttrExp::Comparison(_, _, v) => v,
        AttrExp::Present(_) => &CompValue::Null,
    }
}

fn is_present(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        _ => true,
    }
}

/// Compares one attribute value (which may be a list) with an expression.
pub fn compare(def: &AttrDef, e: &AttrExp, value: Option<&Value>) -> bool {
    if let Some(Value::Array(items)) = value {
        let refs: Vec<&Value> = items.iter().collect();
        return compare_many(def, e, &refs);
    }
    let (op, operand) = match e {
        AttrExp::Present(_) => return value.is_some_and(is_present),
        AttrExp::Comparison(_, op, v) => (op.clone(), v),
    };
    let present = value.filter(|v| is_present(v));
    if matches!(operand, CompValue::Null) {
        return match op {
            CompareOp::Eq => present.is_none(),
            CompareOp::Ne => present.is_some(),
            _ => false,
        };
    }
    let Some(value) = present else {
        return op == CompareOp::Ne;
    };
    let ord = match order(def, value, operand) {
        Some(o) => o,
        None => return op == CompareOp::Ne && !matches!(def.kind, AttrType::Complex),
    };
    match op {
        CompareOp::Eq => ord == Ordering::Equal,
        CompareOp::Ne => ord != Ordering::Equal,
        CompareOp::Gt => ord == Ordering::Greater,
        CompareOp::Ge => ord != Ordering::Less,
        CompareOp::Lt => ord == Ordering::Less,
        CompareOp::Le => ord != Ordering::Greater,
        CompareOp::Co | CompareOp::Sw | CompareOp::Ew => {
            let (Value::String(s), CompValue::Str(needle)) = (value, operand) else {
                return false;
            };
            let (s, needle) = if def.case_exact {
                (s.clone(), needle.clone())
            } else {
                (s.to_lowercase(), needle.to_lowercase())
            };
            match op {
                CompareOp::Co => s.contains(&needle),
                CompareOp::Sw => s.starts_with(&needle),
                _ => s.ends_with(&needle),
            }
        }
    }
}

/// Orders a stored value against a filter operand, by the attribute's type.
fn order(def: &AttrDef, value: &Value, operand: &CompValue) -> Option<Ordering> {
    match (def.kind, value, operand) {
        (AttrType::Boolean, Value::Bool(b), CompValue::True) => Some(b.cmp(&true)),
        (AttrType::Boolean, Value::Bool(b), CompValue::False) => Some(b.cmp(&false)),
        (AttrType::Boolean, Value::Bool(b), CompValue::Str(s)) => {
            let o = if s.eq_ignore_ascii_case("true") {
                true
            } else if s.eq_ignore_ascii_case("false") {
                false
            } else {
                return None;
            };
            Some(b.cmp(&o))
        }
        (AttrType::Integer | AttrType::Decimal, Value::Number(n), CompValue::Number(m)) => {
            n.as_f64()?.partial_cmp(&m.as_f64()?)
        }
        (AttrType::Integer | AttrType::Decimal, Value::Number(n), CompValue::Str(m)) => {
            n.as_f64()?.partial_cmp(&m.trim().parse::<f64>().ok()?)
        }
        (AttrType::DateTime, Value::String(s), CompValue::Str(m)) => {
            Some(parse_time(s)?.cmp(&parse_time(m)?))
        }
        (_, Value::String(s), CompValue::Str(m)) => Some(if def.case_exact {
            s.as_str().cmp(m.as_str())
        } else {
            s.to_lowercase().cmp(&m.to_lowercase())
        }),
        (_, Value::String(s), CompValue::Number(m)) => Some(s.as_str().cmp(m.to_string().as_str())),
        _ => None,
    }
}

/// Parses an xsd:dateTime; a value without an offset is taken as UTC.
pub fn parse_time(s: &str) -> Option<DateTime<FixedOffset>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .or_else(|| DateTime::parse_from_rfc3339(&format!("{s}Z")).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ScimSettings;
    use crate::scim::schema::Registry;
    use serde_json::json;

    fn user() -> Value {
        json!({"id": "1", "userName": "BJensen", "active": true, "title": "Tour Guide",
               "emails": [{"value": "bj@Example.com", "type": "work", "primary": true},
                          {"value": "b@home.org", "type": "home"}],
               "name": {"familyName": "Jensen", "givenName": "Barbara"},
               "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "Sales", "manager": {"value": "m1"}},
               "meta": {"lastModified": "2026-01-02T10:00:00Z", "resourceType": "User"}})
    }

    fn eval(f: &str) -> bool {
        let reg = Registry::load(&ScimSettings::default()).unwrap();
        let filter = parse(f).unwrap();
        check(&reg.user, &filter).unwrap();
        matches(&reg.user, &filter, &user())
    }

    #[test]
    fn operators_follow_case_and_type_rules() {
        for (f, want) in [
            (r#"userName eq "bjensen""#, true),
            (r#"USERNAME Eq "BJENSEN""#, true),
            (r#"id eq "1""#, true),
            (r#"userName ne "bjensen""#, false),
            (r#"userName sw "bj""#, true),
            (r#"userName ew "SEN""#, true),
            (r#"userName co "jen""#, true),
            (r#"title pr"#, true),
            (r#"nickName pr"#, false),
            (r#"nickName ne "x""#, true),
            (r#"active eq true"#, true),
            (r#"active eq false"#, false),
            (r#"name.familyName eq "jensen""#, true),
            (r#"emails.value eq "b@home.org""#, true),
            (r#"emails eq "b@home.org""#, true),
            (r#"emails[type eq "work" and value co "example"]"#, true),
            (r#"emails[type eq "work"].value eq "bj@example.com""#, true),
            (r#"emails[type eq "home"].value eq "bj@example.com""#, false),
            (r#"emails[type eq "mobile"]"#, false),
            (r#"meta.lastModified gt "2026-01-01T00:00:00Z""#, true),
            (r#"meta.lastModified gt "2026-01-02T11:00:00+02:00""#, true),
            (r#"meta.lastModified lt "2026-01-02T10:00:00Z""#, false),
            (
                r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department eq "sales""#,
                true,
            ),
            (
                r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value eq "m1""#,
                true,
            ),
            (
                r#"not (userName eq "x") and (title sw "tour" or active eq false)"#,
                true,
            ),
            (
                r#"userName eq "x" or userName eq "y" and active eq true"#,
                false,
            ),
        ] {
            assert_eq!(eval(f), want, "{f}");
        }
    }

    #[test]
    fn bad_filters_are_invalid_filter() {
        let reg = Registry::load(&ScimSettings::default()).unwrap();
        for f in [
            "userName eq",
            "userName zz \"a\"",
            "(userName eq \"a\"",
            "shoeSize eq 3",
            "emails[nope eq 1]",
        ] {
            let e = parse(f).and_then(|p| check(&reg.user, &p)).unwrap_err();
            assert_eq!(
                e.scim_type().map(|t| t.as_str()),
                Some("invalidFilter"),
                "{f}"
            );
        }
        let max = FilterLimits::default().max_length;
        assert!(parse(&"a".repeat(max + 1)).is_err());
    }

    #[test]
    fn long_or_deep_filters_are_refused_before_parsing() {
        let limits = FilterLimits {
            max_length: 64,
            max_depth: 3,
        };
        assert!(parse_limited("(((userName pr)))", limits).is_ok());
        assert!(parse_limited(r#"emails[type eq "w" and ((value pr))]"#, limits).is_ok());
        for bad in [
            "((((userName pr))))".to_string(),
            r#"emails[type eq "w" and (((value pr)))]"#.to_string(),
            format!(r#"userName eq "{}""#, "a".repeat(64)),
        ] {
            let e = parse_limited(&bad, limits).unwrap_err();
            assert_eq!(e.scim_type().map(|t| t.as_str()), Some("invalidFilter"));
        }
        // Brackets inside string literals do not nest.
        assert!(parse_limited(r#"userName eq "(((([[[[\"((""#, limits).is_ok());
    }

    #[test]
    fn folding_keeps_other_text_intact() {
        assert_eq!(
            fold_value_path_comparison(r#"emails[type eq "w]."].value eq "a b" and x pr"#)
                .as_deref(),
            Some(r#"emails[(type eq "w].") and value eq "a b"] and x pr"#)
        );
        assert_eq!(
            fold_value_path_comparison(r#"emails[type eq "work"]"#),
            None
        );
    }
}

#[cfg(test)]
mod more_tests {
    use super::*;

    #[test]
    fn not_without_space_and_non_ascii_text_parse() {
        assert_eq!(space_after_not("not(a pr)"), "not (a pr)");
        assert_eq!(
            space_after_not("x eq \"not(\" and NOT(y pr)"),
            "x eq \"not(\" and NOT (y pr)"
        );
        assert_eq!(space_after_not("knot(a)"), "knot(a)");
        assert_eq!(space_after_not("ñot(a) or émnot(b)"), "ñot(a) or émnot(b)");
        assert!(parse("not(userName eq \"a\")").is_ok());
    }
}

#[cfg(test)]
mod fold_tests {
    use super::*;

    #[test]
    fn entra_value_path_comparison_with_non_ascii_text() {
        assert_eq!(
            fold_value_path_comparison(
                r#"emails[type eq "wörk"].value eq "ä@x.org" and userName eq "José""#
            )
            .as_deref(),
            Some(r#"emails[(type eq "wörk") and value eq "ä@x.org"] and userName eq "José""#)
        );
        assert!(parse(r#"emails[type eq "work"].value eq "ä@x.org""#).is_ok());
    }
}
