//! Microsoft Entra ID PATCH replays on users: `Add`/`Replace`/`Remove`
//! capitalised, `"True"`/`"False"` strings for `active` (with and without a
//! path), path-less values whose keys are dotted paths or extension URNs,
//! `manager` as a bare id (and cleared with `""` or `null`), and `Add` to
//! `phoneNumbers[type eq "mobile"].value` or `addresses[type eq
//! "work"].locality` on a user that has no such element yet. Every check
//! reads the user back, since the next sync cycle acts on what GET shows.

use serde_json::{Value, json};

use crate::checks::entra::entra_user;
use crate::checks::patch::apply;
use crate::expect::{ENTERPRISE_SCHEMA, array_attr, attr, ensure, excerpt, ext_attr, has_schema};
use crate::fixtures;
use crate::runner::{Check, CheckResult};
use crate::session::Session;

/// Entra ID attribute PATCH checks.
pub const CHECKS: &[Check] = &[
    Check::new("entra/patch_op_names_capitalised", op_names),
    Check::new(
        "entra/active_as_string_with_and_without_path",
        active_strings,
    ),
    Check::new("entra/pathless_replace_dotted_and_urn_keys", pathless_keys),
    Check::new("entra/manager_bare_id_set_and_cleared", manager),
    Check::new("entra/add_phone_by_filter_creates_element", phone_by_filter),
    Check::new(
        "entra/add_address_parts_by_filter_one_element",
        address_by_filter,
    ),
];

/// A fresh Entra-provisioned user's path.
fn user_path(s: &Session) -> Result<String, String> {
    Ok(format!("/Users/{}", entra_user(s)?.0))
}

fn want(v: &Value, path: &str, expected: &Value) -> CheckResult {
    let got = attr(v, path);
    ensure!(
        got == Some(expected),
        "{path} is {}, want {expected}: {}",
        got.map_or("absent".to_owned(), Value::to_string),
        excerpt(v)
    );
    Ok(())
}

fn enterprise(v: &Value, path: &str) -> Option<Value> {
    ext_attr(v, ENTERPRISE_SCHEMA, path).cloned()
}

/// Microsoft's "update user" samples: capitalised ops, a value-path filter
/// on the work email, a sub-attribute, then `Remove`.
fn op_names(s: &Session) -> CheckResult {
    let path = user_path(s)?;
    let new_name = fixtures::unique_user_name("renamed");
    let user = apply(
        s,
        &path,
        json!([
            {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "updated@example.net"},
            {"op": "Replace", "path": "name.familyName", "value": "updatedFamilyName"},
            {"op": "Replace", "path": "userName", "value": new_name},
            {"op": "Add", "path": "title", "value": "Engineer"}
        ]),
    )?;
    want(&user, "name.familyName", &json!("updatedFamilyName"))?;
    want(&user, "name.givenName", &json!("Conformance"))?;
    want(&user, "userName", &json!(new_name))?;
    want(&user, "title", &json!("Engineer"))?;
    let emails = array_attr(&user, "emails")?;
    ensure!(
        emails.len() == 1 && attr(&emails[0], "value") == Some(&json!("updated@example.net")),
        "work email not replaced in place: {}",
        excerpt(&user)
    );
    let user = apply(s, &path, json!([{"op": "Remove", "path": "title"}]))?;
    ensure!(attr(&user, "title").is_none(), "\"Remove\" left title");
    Ok(())
}

/// Entra sends booleans as strings; GET must show real JSON booleans.
fn active_strings(s: &Session) -> CheckResult {
    let path = user_path(s)?;
    let steps = [
        (
            json!([{"op": "Replace", "path": "active", "value": "False"}]),
            false,
        ),
        (
            json!([{"op": "Replace", "value": {"active": "True"}}]),
            true,
        ),
        (
            json!([{"op": "Add", "value": {"active": "False", "title": "Leaver"}}]),
            false,
        ),
    ];
    for (ops, expected) in steps {
        let user = apply(s, &path, ops.clone())?;
        want(&user, "active", &json!(expected)).map_err(|e| format!("after {ops}: {e}"))?;
    }
    Ok(())
}

/// Path-less values keyed `name.givenName` or `urn:…:User:department` set
/// that one sub-attribute; siblings stay as they were.
fn pathless_keys(s: &Session) -> CheckResult {
    let path = user_path(s)?;
    let urn = |name: &str| format!("{ENTERPRISE_SCHEMA}:{name}");
    let user = apply(
        s,
        &path,
        json!([
            {"op": "Replace", "value": {
                "name.givenName": "Barbara",
                urn("department"): "Finance",
                urn("employeeNumber"): "701984"
            }},
            {"op": "Add", "value": {"name.formatted": "Barbara Tester"}}
        ]),
    )?;
    want(&user, "name.givenName", &json!("Barbara"))?;
    want(&user, "name.familyName", &json!("Tester"))?;
    want(&user, "name.formatted", &json!("Barbara Tester"))?;
    for (name, value) in [("department", "Finance"), ("employeeNumber", "701984")] {
        ensure!(
            enterprise(&user, name) == Some(json!(value)),
            "{name} not set from a URN key: {}",
            excerpt(&user)
        );
    }
    ensure!(
        has_schema(&user, ENTERPRISE_SCHEMA),
        "schemas does not list {ENTERPRISE_SCHEMA} although the user has extension data"
    );
    Ok(())
}

/// `manager` arrives as a bare id, comes back as `{"value": id}`, and
/// `""` or `null` clear it.
fn manager(s: &Session) -> CheckResult {
    let path = user_path(s)?;
    let (first, second) = (entra_user(s)?.0, entra_user(s)?.0);
    let target = format!("{ENTERPRISE_SCHEMA}:manager");
    let steps = [
        ("Add", json!(first), Some(&first)),
        ("Replace", json!(second), Some(&second)),
        ("Replace", json!(""), None),
        ("Add", json!(first), Some(&first)),
        ("Replace", Value::Null, None),
    ];
    for (op, value, expected) in steps {
        let ops = json!([{"op": op, "path": target, "value": value}]);
        let user = apply(s, &path, ops)?;
        let got = enterprise(&user, "manager");
        let ok = match expected {
            Some(id) => got
                .as_ref()
                .is_some_and(|m| m.is_object() && attr(m, "value") == Some(&json!(id))),
            None => got
                .as_ref()
                .is_none_or(|m| m.is_null() || attr(m, "value").is_none()),
        };
        ensure!(
            ok,
            "after {op} manager {value}: manager is {}, want {}",
            got.map_or("absent".to_owned(), |m| m.to_string()),
            expected.map_or("absent".to_owned(), |id| format!("{{\"value\":\"{id}\"}}"))
        );
    }
    Ok(())
}

/// The elements of `attribute` whose `type` is `kind`.
fn of_type(user: &Value, attribute: &str, kind: &str) -> Result<Vec<Value>, String> {
    Ok(array_attr(user, attribute)?
        .iter()
        .filter(|e| attr(e, "type") == Some(&json!(kind)))
        .cloned()
        .collect())
}

/// Adding through a filter that matches nothing creates the element.
fn phone_by_filter(s: &Session) -> CheckResult {
    let path = user_path(s)?;
    let add = |kind: &str, number: &str| json!({"op": "Add", "path": format!("phoneNumbers[type eq \"{kind}\"].value"), "value": number});
    let first = apply(
        s,
        &path,
        json!([add("mobile", "+1 555 0100"), add("work", "+1 555 0199")]),
    )?;
    let ops = json!([{
        "op": "Replace",
        "path": "phoneNumbers[type eq \"mobile\"].value",
        "value": "+1 555 0101"
    }]);
    let after = apply(s, &path, ops)?;
    for (label, v, mobile) in [
        ("Add", &first, "+1 555 0100"),
        ("Replace", &after, "+1 555 0101"),
    ] {
        let phones = array_attr(v, "phoneNumbers")?;
        let mobiles = of_type(v, "phoneNumbers", "mobile")?;
        ensure!(
            phones.len() == 2
                && mobiles.len() == 1
                && attr(&mobiles[0], "value") == Some(&json!(mobile))
                && of_type(v, "phoneNumbers", "work")?.len() == 1,
            "after {label}: want one mobile {mobile:?} and one work number: {}",
            excerpt(v)
        );
    }
    Ok(())
}

/// Two filtered adds to the same missing address build one element.
fn address_by_filter(s: &Session) -> CheckResult {
    let path = user_path(s)?;
    let part = |name: &str, value: &str| json!({"op": "Add", "path": format!("addresses[type eq \"work\"].{name}"), "value": value});
    let ops = json!([
        part("streetAddress", "1 Main St"),
        part("locality", "Springfield"),
        part("country", "US")
    ]);
    let user = apply(s, &path, ops)?;
    let work = of_type(&user, "addresses", "work")?;
    ensure!(
        array_attr(&user, "addresses")?.len() == 1 && work.len() == 1,
        "want exactly one work address: {}",
        excerpt(&user)
    );
    for (name, value) in [
        ("streetAddress", "1 Main St"),
        ("locality", "Springfield"),
        ("country", "US"),
    ] {
        want(&work[0], name, &json!(value))?;
    }
    Ok(())
}
