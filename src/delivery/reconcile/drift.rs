//! Drift: which managed attributes of an account differ between what the
//! gateway wants the app to hold and what a listing says it holds.
//!
//! Only managed attributes count: the paths the adapter lists (columns,
//! directory attributes), or, for apps that return whole accounts (SCIM),
//! the attributes of the desired account. Comparison forgives the changes
//! a store makes on its own: sub-attributes the app adds (`display`,
//! `$ref`, `primary: false`), a single value stored as a one-element list,
//! booleans read back as `TRUE`, numbers read back as text, order of
//! multi-valued attributes, and an absent `active` (which means true).

use std::collections::BTreeSet;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::adapters::paths::value_at;

/// One attribute that differs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AttributeDrift {
    /// The account attribute path (`title`, `name.givenName`, `urn:…:department`).
    pub attribute: String,
    /// What the gateway wants there (`null`: nothing).
    pub desired: Value,
    /// What the app holds (`null`: nothing).
    pub actual: Value,
    /// For the entitlements attribute: entitlements the app lacks.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<String>,
    /// For the entitlements attribute: entitlements no rule grants.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub surplus: Vec<String>,
}

/// Attributes never compared: protocol plumbing, and read-only or
/// write-only ones the app computes or never returns.
const SKIPPED: [&str; 5] = ["schemas", "id", "meta", "groups", "password"];

/// The managed attributes of `actual` that differ from `desired`, sorted
/// by path. `listed` names the paths the app's listing reports (`None`:
/// the listing returns whole accounts); `entitlements` is the account
/// attribute that carries them.
pub fn compare(
    desired: &Value,
    actual: &Value,
    listed: Option<&[String]>,
    entitlements: &str,
) -> Vec<AttributeDrift> {
    let mut out = Vec::new();
    let mut check = |path: &str, d: Option<&Value>, a: Option<&Value>| {
        let (d, a) = if path == "active" {
            (Some(active(d)), Some(active(a)))
        } else {
            (d.cloned(), a.cloned())
        };
        let (d, a) = (d.unwrap_or(Value::Null), a.unwrap_or(Value::Null));
        let a = decoded(&d, a);
        if same(&d, &a) {
            return;
        }
        let (missing, surplus) = if path == entitlements {
            let (dv, av) = (texts(&d), texts(&a));
            (
                dv.difference(&av).cloned().collect(),
                av.difference(&dv).cloned().collect(),
            )
        } else {
            (Vec::new(), Vec::new())
        };
        out.push(AttributeDrift {
            attribute: path.to_string(),
            desired: d,
            actual: a,
            missing,
            surplus,
        });
    };
    match listed {
        Some(paths) => {
            for p in paths {
                check(p, value_at(desired, p), value_at(actual, p));
            }
        }
        None => {
            let empty = Map::new();
            let d = desired.as_object().unwrap_or(&empty);
            let mut leaves = Vec::new();
            for (k, v) in d.iter().filter(|(k, _)| !SKIPPED.contains(&k.as_str())) {
                leaves_of(k, v, k.starts_with("urn:"), &mut leaves);
            }
            if !d.contains_key("active") {
                leaves.push("active".to_string());
            }
            for p in leaves {
                check(&p, value_at(desired, &p), value_at(actual, &p));
            }
        }
    }
    out.sort_by(|x, y| x.attribute.cmp(&y.attribute));
    out
}

/// The compared paths under one desired attribute: a complex attribute
/// (`name`, an extension) by its sub-attributes, anything else whole. The
/// first level below an extension URN joins with `:`, deeper ones with `.`.
fn leaves_of(path: &str, v: &Value, urn: bool, out: &mut Vec<String>) {
    match v.as_object() {
        Some(o) if !o.is_empty() => {
            for (k, sub) in o {
                let p = if urn {
                    format!("{path}:{k}")
                } else {
                    format!("{path}.{k}")
                };
                leaves_of(&p, sub, false, out);
            }
        }
        _ => out.push(path.to_string()),
    }
}

fn active(v: Option<&Value>) -> Value {
    let on = match v {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => !s.eq_ignore_ascii_case("false"),
        _ => true,
    };
    Value::Bool(on)
}

/// A scalar as comparable text; `None` for nothing (null, "").
fn text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) if s.is_empty() => None,
        Value::String(s) if s.eq_ignore_ascii_case("true") || s.eq_ignore_ascii_case("false") => {
            Some(s.to_ascii_lowercase())
        }
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::Object(o) => o.get("value").and_then(text),
        Value::Array(_) => None,
    }
}

/// Every value of a (possibly multi-valued) attribute as text, as a set.
fn texts(v: &Value) -> BTreeSet<String> {
    match v {
        Value::Array(items) => items.iter().filter_map(text).collect(),
        other => text(other).into_iter().collect(),
    }
}

/// A list or object the app keeps as JSON text (a SQL `TEXT` column holds
/// what the adapter wrote, `[{"value":"eng"}]`), read back as JSON, when
/// that is what is desired; anything else as it is.
fn decoded(desired: &Value, actual: Value) -> Value {
    match (&desired, &actual) {
        (Value::Array(_) | Value::Object(_), Value::String(s)) => {
            match serde_json::from_str::<Value>(s) {
                Ok(v @ (Value::Array(_) | Value::Object(_))) => v,
                _ => actual,
            }
        }
        _ => actual,
    }
}

fn has_objects(v: &Value) -> bool {
    v.as_array().is_some_and(|a| a.iter().any(Value::is_object))
}

/// Whether the app's `a` holds what `d` asks for.
fn same(d: &Value, a: &Value) -> bool {
    match (d, a) {
        // Sub-attributes the app adds do not count; a `false` it drops neither.
        (Value::Object(dm), Value::Object(am)) => dm.iter().all(|(k, dv)| {
            let av = am.get(k).unwrap_or(&Value::Null);
            same(dv, av) || (*dv == Value::Bool(false) && av.is_null())
        }),
        (Value::Array(da), Value::Array(aa)) if has_objects(d) && has_objects(a) => {
            da.iter().all(|x| aa.iter().any(|y| same(x, y)))
                && aa.iter().all(|y| da.iter().any(|x| same(x, y)))
        }
        _ => texts(d) == texts(a),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn names(d: &[AttributeDrift]) -> Vec<&str> {
        d.iter().map(|x| x.attribute.as_str()).collect()
    }

    #[test]
    fn a_whole_account_is_compared_on_the_desired_attributes_only() {
        let desired = json!({
            "schemas": ["u"], "userName": "ada", "title": "Engineer", "active": true,
            "name": {"givenName": "Ada", "familyName": "Lovelace"},
            "emails": [{"value": "ada@example.com", "primary": true}],
            "urn:e:2.0:User": {"department": "R&D"}
        });
        // What a SCIM app returns: extra sub-attributes, an extra attribute.
        let actual = json!({
            "userName": "ada", "title": "Engineer", "nickName": "x",
            "name": {"givenName": "Ada", "familyName": "Lovelace", "formatted": "Ada Lovelace"},
            "emails": [{"value": "ada@example.com", "primary": true, "type": "work"}],
            "urn:e:2.0:User": {"department": "R&D"}
        });
        assert!(compare(&desired, &actual, None, "entitlements").is_empty());
        let mut changed = actual.clone();
        changed["title"] = json!("Boss");
        changed["name"]["givenName"] = json!("Eve");
        changed["urn:e:2.0:User"]["department"] = json!("Sales");
        changed["active"] = json!(false);
        let d = compare(&desired, &changed, None, "entitlements");
        assert_eq!(
            names(&d),
            [
                "active",
                "name.givenName",
                "title",
                "urn:e:2.0:User:department"
            ]
        );
        assert_eq!(d[2].desired, json!("Engineer"));
        assert_eq!(d[2].actual, json!("Boss"));
    }

    #[test]
    fn listed_paths_forgive_the_stores_representation() {
        let desired = json!({"userName": "ada", "emails": [{"value": "a@x"}], "active": true,
                             "name": {"givenName": "Ada"}, "title": null});
        let actual = json!({"userName": "ada", "emails": "a@x", "active": "TRUE",
                            "name": {"givenName": "Ada", "familyName": null}, "title": ""});
        let paths: Vec<String> = [
            "userName",
            "emails",
            "active",
            "name.givenName",
            "name.familyName",
            "title",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert!(compare(&desired, &actual, Some(&paths), "entitlements").is_empty());
        let actual = json!({"userName": "ada", "emails": ["a@x", "b@x"], "active": false,
                            "name": {"givenName": "Ada", "familyName": "L"}});
        assert_eq!(
            names(&compare(&desired, &actual, Some(&paths), "entitlements")),
            ["active", "emails", "name.familyName"]
        );
    }

    #[test]
    fn a_list_kept_as_json_text_is_compared_as_the_list() {
        let desired = json!({"entitlements": [{"value": "eng"}, {"value": "vpn"}]});
        let listed = vec!["entitlements".to_string()];
        let same_text = json!({"entitlements": "[{\"value\":\"eng\"},{\"value\":\"vpn\"}]"});
        assert!(compare(&desired, &same_text, Some(&listed), "entitlements").is_empty());
        let other = json!({"entitlements": "[{\"value\":\"eng\"}]"});
        let d = compare(&desired, &other, Some(&listed), "entitlements");
        assert_eq!(names(&d), ["entitlements"]);
        assert_eq!(d[0].missing, ["vpn"]);
        // Text that is not JSON stays text.
        let garbage = json!({"entitlements": "eng"});
        assert_eq!(
            names(&compare(&desired, &garbage, Some(&listed), "entitlements")),
            ["entitlements"]
        );
    }

    #[test]
    fn entitlements_drift_lists_what_is_missing_and_surplus() {
        let desired = json!({"entitlements": [{"value": "Sales User"}, {"value": "Reader"}]});
        let actual =
            json!({"entitlements": [{"value": "Reader", "display": "R"}, {"value": "Admin"}]});
        let d = compare(&desired, &actual, None, "entitlements");
        assert_eq!(names(&d), ["entitlements"]);
        assert_eq!(d[0].missing, ["Sales User"]);
        assert_eq!(d[0].surplus, ["Admin"]);
        let same_set = json!({"entitlements": [{"value": "Reader"}, {"value": "Sales User"}]});
        assert!(compare(&desired, &same_set, None, "entitlements").is_empty());
    }
}
