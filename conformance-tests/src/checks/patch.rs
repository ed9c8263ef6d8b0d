//! PATCH on attributes (RFC 7644 §3.5.2): `add`, `replace` and `remove`
//! with and without `path`, a value-path filter (`emails[type eq "work"]`),
//! operation names in any case (Entra ID sends `Replace`) and the response:
//! 200 with the updated resource, or 204. Every check reads the resource
//! back with GET, because that is what the next client will see.

use serde_json::{Value, json};

use crate::expect::{self, array_attr, attr, ensure, excerpt, id_of, str_attr};
use crate::fixtures;
use crate::runner::{Check, CheckResult};
use crate::session::Session;

/// Attribute PATCH checks.
pub const CHECKS: &[Check] = &[
    Check::new("patch/add_with_path", add_with_path),
    Check::new("patch/add_without_path", add_without_path),
    Check::new("patch/replace_with_path", replace_with_path),
    Check::new("patch/replace_without_path", replace_without_path),
    Check::new("patch/remove_with_path", remove_with_path),
    Check::new("patch/value_path_filter", value_path_filter),
    Check::new("patch/op_names_any_case", op_names_any_case),
    Check::new("patch/path_names_any_case", path_names_any_case),
    Check::new("patch/response_reflects_change", response_reflects_change),
];

/// Sends a PatchOp with `operations` to `path`, requires 200 (with the
/// resource) or 204 (empty), and returns the resource as GET now shows it.
pub fn apply(s: &Session, path: &str, operations: Value) -> Result<Value, String> {
    let reply = s
        .client()
        .patch(path, &fixtures::patch(operations))
        .send()?;
    match reply.status {
        204 => {}
        _ => {
            let body = reply.json_with(200)?;
            ensure!(
                path.ends_with(&format!("/{}", id_of(body)?)),
                "PATCH response is not the patched resource: {}",
                excerpt(body)
            );
        }
    }
    s.client().get(path).send()?.json_with(200).cloned()
}

/// A fresh user with `extra` attributes; returns its path.
fn user_path(s: &Session, extra: &Value) -> Result<String, String> {
    let name = fixtures::unique_user_name("patch");
    let user = s.create_user_from(&fixtures::user_with(&name, extra))?;
    Ok(format!("/Users/{}", id_of(&user)?))
}

fn want_str(v: &Value, path: &str, want: &str) -> CheckResult {
    let got = str_attr(v, path)?;
    ensure!(got == want, "{path} is {got:?}, want {want:?}");
    Ok(())
}

fn add_with_path(s: &Session) -> CheckResult {
    let path = user_path(s, &json!({}))?;
    let user = apply(
        s,
        &path,
        json!([{"op": "add", "path": "nickName", "value": "nick-1"}]),
    )?;
    want_str(&user, "nickName", "nick-1")
}

fn add_without_path(s: &Session) -> CheckResult {
    let path = user_path(s, &json!({}))?;
    let ops = json!([{"op": "add", "value": {"nickName": "nick-2", "title": "Engineer"}}]);
    let user = apply(s, &path, ops)?;
    want_str(&user, "nickName", "nick-2")?;
    want_str(&user, "title", "Engineer")
}

fn replace_with_path(s: &Session) -> CheckResult {
    let path = user_path(s, &json!({}))?;
    let ops = json!([{"op": "replace", "path": "name.givenName", "value": "Renamed"}]);
    let user = apply(s, &path, ops)?;
    want_str(&user, "name.givenName", "Renamed")?;
    want_str(&user, "name.familyName", "Tester")
}

fn replace_without_path(s: &Session) -> CheckResult {
    let path = user_path(s, &json!({}))?;
    let ops = json!([{"op": "replace", "value": {"displayName": "Replaced", "active": false}}]);
    let user = apply(s, &path, ops)?;
    want_str(&user, "displayName", "Replaced")?;
    ensure!(
        attr(&user, "active") == Some(&json!(false)),
        "active not replaced"
    );
    want_str(&user, "name.givenName", "Conformance")
}

fn remove_with_path(s: &Session) -> CheckResult {
    let path = user_path(s, &json!({"nickName": "doomed", "title": "Stays"}))?;
    let user = apply(s, &path, json!([{"op": "remove", "path": "nickName"}]))?;
    ensure!(attr(&user, "nickName").is_none(), "nickName still there");
    want_str(&user, "title", "Stays")
}

/// RFC 7644 §3.5.2 / RFC 7644 §3.10 valuePath: only the matching value changes.
fn value_path_filter(s: &Session) -> CheckResult {
    let emails = json!({"emails": [
        {"value": "work@example.com", "type": "work", "primary": true},
        {"value": "home@example.com", "type": "home"}
    ]});
    let path = user_path(s, &emails)?;
    let ops = json!([{
        "op": "replace",
        "path": "emails[type eq \"work\"].value",
        "value": "new-work@example.com"
    }]);
    let user = apply(s, &path, ops)?;
    let emails = array_attr(&user, "emails")?;
    let of_type = |t: &str| -> Vec<&str> {
        emails
            .iter()
            .filter(|e| str_attr(e, "type").is_ok_and(|v| v == t))
            .filter_map(|e| str_attr(e, "value").ok())
            .collect()
    };
    ensure!(
        of_type("work") == ["new-work@example.com"],
        "work email not replaced: {}",
        excerpt(&user)
    );
    ensure!(
        of_type("home") == ["home@example.com"] && emails.len() == 2,
        "other emails changed: {}",
        excerpt(&user)
    );
    Ok(())
}

/// Entra ID sends `"op": "Replace"`/`"Add"`; treating op names
/// case-insensitively is what interoperable servers do.
fn op_names_any_case(s: &Session) -> CheckResult {
    let path = user_path(s, &json!({"title": "Before"}))?;
    let ops = json!([
        {"op": "Replace", "path": "title", "value": "After"},
        {"op": "Add", "path": "nickName", "value": "nick"}
    ]);
    let user = apply(s, &path, ops)?;
    want_str(&user, "title", "After")?;
    want_str(&user, "nickName", "nick")?;
    let user = apply(s, &path, json!([{"op": "REMOVE", "path": "nickName"}]))?;
    ensure!(
        attr(&user, "nickName").is_none(),
        "\"REMOVE\" left nickName"
    );
    Ok(())
}

/// RFC 7644 §3.10 / RFC 7643 §2.1: attribute names in a path are
/// case-insensitive.
fn path_names_any_case(s: &Session) -> CheckResult {
    let path = user_path(s, &json!({}))?;
    let ops = json!([
        {"op": "replace", "path": "NAME.GIVENNAME", "value": "Upper"},
        {"op": "add", "path": "NickName", "value": "mixed"}
    ]);
    let user = apply(s, &path, ops)?;
    want_str(&user, "name.givenName", "Upper")?;
    want_str(&user, "nickName", "mixed")
}

/// RFC 7644 §3.5.2: 200 carries the updated resource (with a new version
/// when ETags are supported), or 204 carries nothing.
fn response_reflects_change(s: &Session) -> CheckResult {
    let path = user_path(s, &json!({"title": "Before"}))?;
    let before = s.client().get(&path).send()?.json_with(200)?.clone();
    let ops = json!([{"op": "replace", "path": "title", "value": "After"}]);
    let reply = s.client().patch(&path, &fixtures::patch(ops)).send()?;
    if reply.status == 204 {
        ensure!(
            reply.text.trim().is_empty(),
            "204 with a body: {}",
            reply.describe()
        );
        return Ok(());
    }
    let user = reply.json_with(200)?;
    want_str(user, "title", "After")?;
    if s.ctx().supports("etag")? {
        expect::meta(&reply, user, "User", &path, true)?;
        ensure!(
            attr(user, "meta.version") != attr(&before, "meta.version"),
            "meta.version unchanged after PATCH"
        );
    }
    Ok(())
}
