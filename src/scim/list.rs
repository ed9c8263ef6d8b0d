//! List and search parameters (RFC 7644 §3.4.2): parsing them leniently
//! (names in any case, unknown parameters ignored) and clamping paging
//! values the way §3.4.2.4 says.

use std::cmp::Ordering;

use serde_json::{Map, Value};

use super::path::{Target, parse_attr_path, resolve};
use super::schema::{AttrDef, ResourceType};
use crate::config::ScimSettings;
use crate::error::ScimError;

/// URN of the ListResponse message.
pub const LIST_RESPONSE_URN: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";

/// Parsed list parameters.
#[derive(Debug, Clone, Default)]
pub struct ListParams {
    /// The raw filter text.
    pub filter: Option<String>,
    /// 1-based index of the first result (≥ 1).
    pub start_index: usize,
    /// Page size (0 = only the total).
    pub count: usize,
    /// Attribute to sort by.
    pub sort_by: Option<String>,
    /// Descending order.
    pub descending: bool,
    /// `attributes`.
    pub attributes: Option<String>,
    /// `excludedAttributes`.
    pub excluded_attributes: Option<String>,
    /// RFC 9865 cursor: `Some("")` asks for the first page in cursor mode.
    pub cursor: Option<String>,
}

impl ListParams {
    /// Reads parameters from query pairs (names case-insensitive).
    pub fn from_pairs(
        pairs: &[(String, String)],
        settings: &ScimSettings,
    ) -> Result<Self, ScimError> {
        let get = |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        Self::build(
            get("filter"),
            get("startIndex").map(Value::String),
            get("count").map(Value::String),
            get("sortBy"),
            get("sortOrder"),
            get("attributes"),
            get("excludedAttributes"),
            get("cursor"),
            settings,
        )
    }

    /// Reads parameters from a SearchRequest body (`POST /.search`).
    pub fn from_search_body(body: &Value, settings: &ScimSettings) -> Result<Self, ScimError> {
        let Value::Object(obj) = body else {
            return Err(ScimError::invalid_syntax(
                "The search body must be a JSON object.",
            ));
        };
        let get = |name: &str| {
            obj.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        let text = |name: &str| -> Result<Option<String>, ScimError> {
            match get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s)),
                Some(Value::Array(items)) => Ok(Some(
                    items
                        .iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(","),
                )),
                Some(_) => Err(ScimError::invalid_value(format!(
                    "'{name}' must be a string."
                ))),
            }
        };
        Self::build(
            text("filter")?,
            get("startIndex"),
            get("count"),
            text("sortBy")?,
            text("sortOrder")?,
            text("attributes")?,
            text("excludedAttributes")?,
            match get("cursor") {
                None | Some(Value::Null) => None,
                Some(Value::String(c)) => Some(c),
                Some(_) => return Err(ScimError::invalid_value("'cursor' must be a string.")),
            },
            settings,
        )
    }

    #[expect(clippy::too_many_arguments, reason = "one argument per RFC parameter")]
    fn build(
        filter: Option<String>,
        start_index: Option<Value>,
        count: Option<Value>,
        sort_by: Option<String>,
        sort_order: Option<String>,
        attributes: Option<String>,
        excluded_attributes: Option<String>,
        cursor: Option<String>,
        settings: &ScimSettings,
    ) -> Result<Self, ScimError> {
        if cursor.is_some() && start_index.as_ref().is_some_and(|v| !v.is_null()) {
            return Err(ScimError::invalid_value(
                "'startIndex' and 'cursor' cannot be combined.",
            ));
        }
        let start = number("startIndex", start_index)?.unwrap_or(1).max(1) as usize;
        let count = match number("count", count)? {
            None => settings.default_page_size,
            Some(n) => (n.max(0) as usize).min(settings.max_page_size),
        };
        let descending = match sort_order
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("") | Some("ascending") => false,
            Some("descending") => true,
            Some(other) => {
                return Err(ScimError::invalid_value(format!(
                    "sortOrder '{other}' is neither ascending nor descending."
                )));
            }
        };
        Ok(ListParams {
            filter: filter.filter(|f| !f.trim().is_empty()),
            start_index: start,
            count,
            sort_by: sort_by.filter(|s| !s.trim().is_empty()),
            descending,
            attributes,
            excluded_attributes,
            cursor,
        })
    }
}

fn number(name: &str, v: Option<Value>) -> Result<Option<i64>, ScimError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(Some(n.as_i64().unwrap_or(i64::MAX))),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => s
            .trim()
            .parse::<i64>()
            .map(Some)
            .map_err(|_| ScimError::invalid_value(format!("'{name}' must be an integer."))),
        Some(_) => Err(ScimError::invalid_value(format!(
            "'{name}' must be an integer."
        ))),
    }
}

/// A resolved sort key.
pub struct SortKey<'a> {
    ext: Option<String>,
    attr: &'a AttrDef,
    sub: Option<&'a AttrDef>,
}

/// Resolves `sortBy`; it must name a singular attribute (or a sub-attribute).
pub fn sort_key<'a>(rt: &'a ResourceType, sort_by: &str) -> Result<SortKey<'a>, ScimError> {
    let bad = || ScimError::invalid_value(format!("Cannot sort by '{sort_by}'."));
    let path = parse_attr_path(sort_by).map_err(|_| bad())?;
    match resolve(rt, &path).ok_or_else(bad)? {
        Target::Attr { ext, attr, sub } => Ok(SortKey {
            ext: ext.map(|e| e.id.clone()),
            attr,
            sub,
        }),
        Target::Extension(_) => Err(bad()),
    }
}

impl SortKey<'_> {
    /// The path of a core or common attribute (`userName`, `meta.created`);
    /// `None` for an extension's.
    pub fn core_path(&self) -> Option<String> {
        if self.ext.is_some() {
            return None;
        }
        Some(match self.sub {
            Some(s) => format!("{}.{}", self.attr.name, s.name),
            None => self.attr.name.clone(),
        })
    }

    /// The sort value of a rendered resource (first element of a multi-valued
    /// attribute, preferring the primary one).
    pub fn value<'d>(&self, doc: &'d Map<String, Value>) -> Option<&'d Value> {
        let container = match &self.ext {
            Some(e) => doc.get(e)?.as_object()?,
            None => doc,
        };
        let v = container.get(&self.attr.name)?;
        let v = match v {
            Value::Array(items) => items
                .iter()
                .find(|i| i.get("primary") == Some(&Value::Bool(true)))
                .or_else(|| items.first())?,
            other => other,
        };
        match self.sub {
            Some(s) => v.get(&s.name),
            None if v.is_object() => v.get("value"),
            None => Some(v),
        }
    }

    /// Orders two values; absent values sort last in ascending order.
    pub fn compare(&self, a: Option<&Value>, b: Option<&Value>) -> Ordering {
        let case_exact = self.sub.unwrap_or(self.attr).case_exact;
        match (a, b) {
            (None, None) => Ordering::Equal,
            (None, Some(_)) => Ordering::Greater,
            (Some(_), None) => Ordering::Less,
            (Some(Value::String(x)), Some(Value::String(y))) => {
                if case_exact {
                    x.cmp(y)
                } else {
                    x.to_lowercase().cmp(&y.to_lowercase())
                }
            }
            (Some(Value::Number(x)), Some(Value::Number(y))) => x
                .as_f64()
                .partial_cmp(&y.as_f64())
                .unwrap_or(Ordering::Equal),
            (Some(Value::Bool(x)), Some(Value::Bool(y))) => x.cmp(y),
            (Some(x), Some(y)) => x.to_string().cmp(&y.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn paging_values_are_clamped() {
        let s = ScimSettings::default();
        let p =
            ListParams::from_pairs(&pairs(&[("startIndex", "-5"), ("count", "-1")]), &s).unwrap();
        assert_eq!((p.start_index, p.count), (1, 0));
        let p = ListParams::from_pairs(&pairs(&[("STARTINDEX", "3"), ("count", "999999")]), &s)
            .unwrap();
        assert_eq!((p.start_index, p.count), (3, s.max_page_size));
        let p = ListParams::from_pairs(&pairs(&[("aadOptscim062020", "1")]), &s).unwrap();
        assert_eq!((p.start_index, p.count), (1, s.default_page_size));
        assert!(ListParams::from_pairs(&pairs(&[("count", "ten")]), &s).is_err());
        assert!(ListParams::from_pairs(&pairs(&[("sortOrder", "sideways")]), &s).is_err());
    }
}
