//! Okta user replays: the pre-create existence check
//! (`filter=userName eq "…"&startIndex=1&count=100`, percent-encoded the
//! way Okta encodes it) that must match a userName differing only in case,
//! create with a `password` and `"groups": []`, the full-object PUT Okta
//! builds by reading the user and writing it back with changes (enterprise
//! extension included), and deactivate/reactivate with a path-less
//! `{"op": "replace", "value": {"active": false}}`.

use serde_json::{Value, json};

use crate::checks::patch::apply;
use crate::expect::{self, ENTERPRISE_SCHEMA, USER_SCHEMA, attr, ensure, excerpt, ext_attr, id_of};
use crate::fixtures;
use crate::runner::{Check, CheckResult};
use crate::session::Session;

/// Okta user checks.
pub const CHECKS: &[Check] = &[
    Check::new(
        "okta/existence_check_ignores_username_case",
        existence_check,
    ),
    Check::new("okta/create_with_password_and_empty_groups", create),
    Check::new("okta/put_full_object_with_enterprise_extension", full_put),
    Check::new("okta/deactivate_and_reactivate_pathless", deactivate),
];

/// What Okta puts in `password` (never to be stored or echoed).
const PASSWORD: &str = "1mz050nq-Okta!Sync";

/// Creates an Okta user; returns `(id, userName)`.
fn okta_user(s: &Session) -> Result<(String, String), String> {
    let user_name = fixtures::unique_user_name("okta");
    let user = s.create_user_from(&fixtures::okta_user(&user_name, PASSWORD))?;
    Ok((id_of(&user)?, user_name))
}

/// Okta's lookup, byte for byte: `%20`-encoded filter, then paging.
fn okta_lookup(s: &Session, user_name: &str) -> Result<expect::ListPage, String> {
    let filter = fixtures::percent_encode(&format!("userName eq \"{user_name}\""));
    let path = format!("/Users?filter={filter}&startIndex=1&count=100");
    expect::list(&s.client().get(&path).send()?)
}

fn existence_check(s: &Session) -> CheckResult {
    let (id, user_name) = okta_user(s)?;
    let (local, domain) = user_name.split_once('@').ok_or("userName has no @")?;
    let recased = format!("{}@{}", capitalise(local), domain.to_uppercase());
    let page = okta_lookup(s, &recased)?;
    ensure!(
        page.total == 1 && page.ids()? == [id],
        "userName eq {recased:?} (stored {user_name:?}) found {} users",
        page.total
    );
    ensure!(
        page.start_index == Some(1) && page.items_per_page.is_none_or(|n| n == 1),
        "startIndex {:?}, itemsPerPage {:?}; want 1 and 1",
        page.start_index,
        page.items_per_page
    );
    let missing = okta_lookup(s, &fixtures::unique_user_name("absent"))?;
    ensure!(
        missing.total == 0 && missing.resources.is_empty(),
        "an unknown userName matched {} users",
        missing.total
    );
    Ok(())
}

/// Upper-cases the first letter of every `-`/`.`-separated part.
fn capitalise(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut start = true;
    for c in s.chars() {
        out.extend(if start {
            c.to_uppercase().collect()
        } else {
            vec![c]
        });
        start = matches!(c, '-' | '.');
    }
    out
}

fn create(s: &Session) -> CheckResult {
    let (id, user_name) = okta_user(s)?;
    let path = format!("/Users/{id}");
    let reply = s.client().get(&path).send()?;
    let user = reply.json_with(200)?;
    expect::meta(&reply, user, "User", &path, s.ctx().supports("etag")?)?;
    ensure!(
        attr(user, "password").is_none(),
        "GET returned the password"
    );
    ensure!(
        expect::array_attr(user, "groups")?.is_empty(),
        "a new user has groups: {}",
        excerpt(user)
    );
    for (name, value) in [
        ("userName", json!(user_name)),
        ("locale", json!("en-US")),
        ("active", json!(true)),
        ("name.givenName", json!("Conformance")),
    ] {
        ensure!(
            attr(user, name) == Some(&value),
            "{name} is not {value}: {}",
            excerpt(user)
        );
    }
    Ok(())
}

/// Okta's PUT: the GET result with edits, `id`, `meta` and `groups`
/// included, sent back whole; run twice so an omitted extension attribute
/// is seen to be cleared.
fn full_put(s: &Session) -> CheckResult {
    let (id, _) = okta_user(s)?;
    let (manager, _) = okta_user(s)?;
    let path = format!("/Users/{id}");
    let created = s.fetch(&path)?;
    let mut body = created.clone();
    let obj = body.as_object_mut().ok_or("GET did not return an object")?;
    obj.insert("schemas".into(), json!([USER_SCHEMA, ENTERPRISE_SCHEMA]));
    obj.insert(
        "name".into(),
        json!({"givenName": "Another", "middleName": "Test", "familyName": "Tester"}),
    );
    obj.insert("displayName".into(), json!("Another Tester"));
    obj.insert("password".into(), json!(PASSWORD));
    obj.insert(
        ENTERPRISE_SCHEMA.into(),
        json!({
            "employeeNumber": "1234",
            "department": "Engineering",
            "costCenter": "CC-7",
            "manager": {"value": manager, "displayName": "Conformance Tester"}
        }),
    );
    let put = put_json(s, &path, &body)?;
    let fetched = s.fetch(&path)?;
    for (label, v) in [("PUT response", &put), ("GET after PUT", &fetched)] {
        ensure!(id_of(v)? == id, "{label}: id changed");
        ensure!(attr(v, "password").is_none(), "{label}: password returned");
        ensure!(
            attr(v, "meta.created") == attr(&created, "meta.created"),
            "{label}: meta.created changed"
        );
        ensure!(
            attr(v, "name.middleName") == Some(&json!("Test"))
                && ext(v, "department") == Some(json!("Engineering"))
                && ext(v, "costCenter") == Some(json!("CC-7"))
                && ext(v, "manager.value") == Some(json!(manager)),
            "{label}: edits not stored: {}",
            excerpt(v)
        );
    }
    let mut body = fetched;
    let extension = body
        .get_mut(ENTERPRISE_SCHEMA)
        .and_then(Value::as_object_mut)
        .ok_or("GET lost the enterprise extension")?;
    extension.insert("department".into(), json!("Sales"));
    extension.remove("costCenter");
    put_json(s, &path, &body)?;
    let v = s.fetch(&path)?;
    ensure!(
        ext(&v, "department") == Some(json!("Sales"))
            && ext(&v, "costCenter").is_none()
            && ext(&v, "employeeNumber") == Some(json!("1234")),
        "second PUT: want department Sales, no costCenter, employeeNumber kept: {}",
        excerpt(&v)
    );
    Ok(())
}

fn ext(v: &Value, path: &str) -> Option<Value> {
    ext_attr(v, ENTERPRISE_SCHEMA, path).cloned()
}

fn put_json(s: &Session, path: &str, body: &Value) -> Result<Value, String> {
    s.client().put(path, body).send()?.json_with(200).cloned()
}

/// Okta's lifecycle PATCH carries `active` as a path-less JSON boolean.
fn deactivate(s: &Session) -> CheckResult {
    let (id, _) = okta_user(s)?;
    let path = format!("/Users/{id}");
    for active in [false, true] {
        let user = apply(
            s,
            &path,
            json!([{"op": "replace", "value": {"active": active}}]),
        )?;
        ensure!(
            attr(&user, "active") == Some(&json!(active)),
            "active is not {active}: {}",
            excerpt(&user)
        );
        ensure!(
            attr(&user, "name.givenName") == Some(&json!("Conformance")),
            "the path-less replace touched other attributes: {}",
            excerpt(&user)
        );
    }
    Ok(())
}
