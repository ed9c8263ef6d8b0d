//! Assertions shared by the checks: the `ensure!` macro, case-insensitive
//! attribute lookup (RFC 7643 §2.1: attribute names are case-insensitive),
//! the RFC 7644 §3.12 error-body contract, the §3.4.2 ListResponse shape and
//! a few value-format tests. Every helper returns `Err(reason)` instead of
//! panicking, so a garbled answer fails one check and nothing else.

use serde_json::Value;

use crate::client::Reply;

/// Returns `Err(format!(...))` from the enclosing check unless `cond` holds.
macro_rules! ensure {
    ($cond:expr, $($arg:tt)+) => {
        if !$cond {
            return Err(format!($($arg)+));
        }
    };
}
pub(crate) use ensure;

/// The error message schema (RFC 7644 §3.12).
pub const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
/// The list response schema (RFC 7644 §3.4.2).
pub const LIST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
/// The PATCH request schema (RFC 7644 §3.5.2).
pub const PATCH_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
/// The core User schema (RFC 7643 §4.1).
pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
/// The core Group schema (RFC 7643 §4.2).
pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
/// The enterprise User extension (RFC 7643 §4.3).
pub const ENTERPRISE_SCHEMA: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

/// Looks up a dotted attribute path (`name.givenName`), matching each name
/// case-insensitively. Not for URN-qualified names, which contain dots.
pub fn attr<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |cur, name| {
        cur.as_object()?
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}

/// Looks up `path` inside the extension object keyed by `urn` (RFC 7643
/// §3.3), e.g. `manager.value` in the enterprise extension.
pub fn ext_attr<'a>(v: &'a Value, urn: &str, path: &str) -> Option<&'a Value> {
    let ext = v
        .as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(urn))
        .map(|(_, v)| v)?;
    attr(ext, path)
}

/// The string at `path`, or a reason why there is none.
pub fn str_attr<'a>(v: &'a Value, path: &str) -> Result<&'a str, String> {
    match attr(v, path) {
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(format!("\"{path}\" is not a string: {other}")),
        None => Err(format!("no \"{path}\" in {}", excerpt(v))),
    }
}

/// The array at `path`; an absent attribute counts as empty (RFC 7643 §2.5:
/// unassigned and empty are equivalent).
pub fn array_attr<'a>(v: &'a Value, path: &str) -> Result<&'a [Value], String> {
    match attr(v, path) {
        Some(Value::Array(a)) => Ok(a),
        None | Some(Value::Null) => Ok(&[]),
        Some(other) => Err(format!("\"{path}\" is not an array: {other}")),
    }
}

/// Whether the resource's `schemas` lists `urn`.
pub fn has_schema(v: &Value, urn: &str) -> bool {
    array_attr(v, "schemas")
        .unwrap_or_default()
        .iter()
        .any(|s| s.as_str().is_some_and(|s| s.eq_ignore_ascii_case(urn)))
}

/// The `id` of a resource.
pub fn id_of(v: &Value) -> Result<String, String> {
    let id = str_attr(v, "id")?;
    ensure!(!id.is_empty(), "\"id\" is empty");
    Ok(id.to_owned())
}

/// A JSON value shortened for a failure message.
pub fn excerpt(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 200 {
        format!("{}…", s.chars().take(200).collect::<String>())
    } else {
        s
    }
}

/// Asserts an RFC 7644 §3.12 error: the status, `application/scim+json`,
/// `schemas` exactly the Error URN, `status` as a JSON string equal to the
/// HTTP status and, when given, the `scimType`.
pub fn error(reply: &Reply, status: u16, scim_type: Option<&str>) -> Result<(), String> {
    let body = reply.json_with(status)?;
    let schemas = array_attr(body, "schemas")?;
    ensure!(
        schemas.len() == 1 && has_schema(body, ERROR_SCHEMA),
        "error \"schemas\" should be [\"{ERROR_SCHEMA}\"] ({})",
        reply.describe()
    );
    match attr(body, "status") {
        Some(Value::String(s)) if s.trim() == status.to_string() => {}
        other => {
            return Err(format!(
                "error \"status\" should be the string \"{status}\", got {} ({})",
                other.map_or("nothing".to_owned(), Value::to_string),
                reply.describe()
            ));
        }
    }
    if let Some(want) = scim_type {
        let got = attr(body, "scimType").and_then(Value::as_str);
        ensure!(
            got == Some(want),
            "\"scimType\" should be \"{want}\", got {} ({})",
            got.map_or("nothing".to_owned(), |t| format!("{t:?}")),
            reply.describe()
        );
    }
    Ok(())
}

/// One page of an RFC 7644 §3.4.2 ListResponse.
pub struct ListPage {
    /// `totalResults`.
    pub total: u64,
    /// `itemsPerPage`, when sent.
    pub items_per_page: Option<u64>,
    /// `startIndex`, when sent.
    pub start_index: Option<u64>,
    /// `Resources` (empty when absent).
    pub resources: Vec<Value>,
}

impl ListPage {
    /// The ids of the returned resources, in order.
    pub fn ids(&self) -> Result<Vec<String>, String> {
        self.resources.iter().map(id_of).collect()
    }
}

/// Asserts a 200 ListResponse and reads its paging fields.
pub fn list(reply: &Reply) -> Result<ListPage, String> {
    let body = reply.json_with(200)?;
    ensure!(
        has_schema(body, LIST_SCHEMA),
        "\"schemas\" lacks {LIST_SCHEMA} ({})",
        reply.describe()
    );
    let number = |name: &str| -> Result<Option<u64>, String> {
        match attr(body, name) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .map(Some)
                .ok_or_else(|| format!("\"{name}\" is not a count ({})", reply.describe())),
        }
    };
    let total = number("totalResults")?
        .ok_or_else(|| format!("no \"totalResults\" ({})", reply.describe()))?;
    let resources = array_attr(body, "Resources")?.to_vec();
    ensure!(
        resources.len() as u64 <= total,
        "more Resources than totalResults ({})",
        reply.describe()
    );
    Ok(ListPage {
        total,
        items_per_page: number("itemsPerPage")?,
        start_index: number("startIndex")?,
        resources,
    })
}

/// Asserts a resource's `meta` (RFC 7643 §3.1) and, for a 201, the
/// `Location` header (RFC 7644 §3.3); with ETags supported, `meta.version`
/// and the `ETag` header must agree (RFC 7644 §3.14). `path` is the
/// resource's path below the base URL, e.g. `/Users/{id}`.
pub fn meta(
    reply: &Reply,
    resource: &Value,
    resource_type: &str,
    path: &str,
    etag: bool,
) -> Result<(), String> {
    let what = &reply.what;
    let got = str_attr(resource, "meta.resourceType")?;
    ensure!(
        got == resource_type,
        "{what}: meta.resourceType is {got}, want {resource_type}"
    );
    for stamp in ["meta.created", "meta.lastModified"] {
        let value = str_attr(resource, stamp)?;
        ensure!(
            is_datetime(value),
            "{what}: {stamp} {value:?} is not an xsd:dateTime"
        );
    }
    let location = str_attr(resource, "meta.location")?;
    ensure!(
        (location.starts_with("http://") || location.starts_with("https://"))
            && location.ends_with(path),
        "{what}: meta.location {location:?} is not an absolute URI ending in {path}"
    );
    if reply.status == 201 {
        let header = reply.header("location");
        ensure!(
            header == Some(location),
            "{what}: Location header {header:?} differs from meta.location {location:?}"
        );
    }
    if etag {
        let version = str_attr(resource, "meta.version")?;
        ensure!(!version.is_empty(), "{what}: meta.version is empty");
        let header = reply.header("etag");
        ensure!(
            header == Some(version),
            "{what}: ETag header {header:?} differs from meta.version {version:?}"
        );
    }
    Ok(())
}

/// Whether `s` looks like an xsd:dateTime with a zone (RFC 7643 §2.3.5),
/// e.g. `2024-05-01T12:00:00Z` or `2024-05-01T12:00:00.123+02:00`.
pub fn is_datetime(s: &str) -> bool {
    let b = s.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    let at = |i: usize, c: u8| b.get(i) == Some(&c);
    let shape = digits(0..4)
        && at(4, b'-')
        && digits(5..7)
        && at(7, b'-')
        && digits(8..10)
        && (at(10, b'T') || at(10, b't'))
        && digits(11..13)
        && at(13, b':')
        && digits(14..16)
        && at(16, b':')
        && digits(17..19);
    let mut rest = b.get(19..).unwrap_or_default();
    if let Some((b'.', frac)) = rest.split_first() {
        let n = frac.iter().take_while(|d| d.is_ascii_digit()).count();
        if n == 0 {
            return false;
        }
        rest = &frac[n..];
    }
    let zone = matches!(rest, [b'Z' | b'z'])
        || matches!(rest, [b'+' | b'-', h1, h2, b':', m1, m2]
            if [h1, h2, m1, m2].iter().all(|d| d.is_ascii_digit()));
    shape && zone
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn attr_matches_names_case_insensitively() {
        let v = json!({"Name": {"GIVENNAME": "Ada"}, "userName": "ada"});
        assert_eq!(attr(&v, "name.givenName"), Some(&json!("Ada")));
        assert_eq!(str_attr(&v, "USERNAME").unwrap(), "ada");
        assert!(attr(&v, "name.familyName").is_none());
        assert!(str_attr(&v, "name").is_err());
        let ext = json!({ENTERPRISE_SCHEMA: {"manager": {"value": "m"}}});
        assert_eq!(
            ext_attr(&ext, ENTERPRISE_SCHEMA, "Manager.Value"),
            Some(&json!("m"))
        );
    }

    #[test]
    fn datetime_accepts_rfc3339_only() {
        assert!(is_datetime("2024-05-01T12:00:00Z"));
        assert!(is_datetime("2024-05-01T12:00:00.123456+02:00"));
        assert!(!is_datetime("2024-05-01 12:00:00Z"));
        assert!(!is_datetime("2024-05-01T12:00:00"));
        assert!(!is_datetime("2024-05-01T12:00:00.Z"));
        assert!(!is_datetime("yesterday"));
    }
}
