//! The `/Users` resource lifecycle (RFC 7644 §3.3 create, §3.4.1 read,
//! §3.5.1 replace, §3.6 delete; RFC 7643 §4.1 User): status codes, `meta`,
//! `Location` and `ETag`, password never returned, uniqueness of userName
//! regardless of case, 404 for unknown ids and case-insensitive attribute
//! names on input.

use serde_json::{Value, json};

use crate::expect::{self, USER_SCHEMA, attr, ensure, excerpt, has_schema, id_of, str_attr};
use crate::fixtures;
use crate::runner::{Check, CheckResult};
use crate::session::{Endpoint, Session};

/// User lifecycle checks.
pub const CHECKS: &[Check] = &[
    Check::new("users/create_returns_201_with_meta", create),
    Check::new("users/get_returns_created_resource", get_same),
    Check::new("users/password_never_returned", password_never_returned),
    Check::new("users/put_replaces_resource", put_replaces),
    Check::new("users/put_may_recase_own_username", put_recase_user_name),
    Check::new("users/attributes_param_limits_response", attributes_param),
    Check::new("users/delete_then_get_is_404", delete_then_404),
    Check::new(
        "users/duplicate_username_any_case_is_409",
        duplicate_username,
    ),
    Check::new("users/unknown_id_is_404", unknown_id),
    Check::new(
        "users/attribute_names_case_insensitive",
        case_insensitive_names,
    ),
];

/// A strong password any sane policy accepts.
const PASSWORD: &str = "Conf0rmance!Passw0rd-7643";

fn create(s: &Session) -> CheckResult {
    let name = fixtures::unique_user_name("create");
    let reply = s.post(Endpoint::Users, &fixtures::user(&name))?;
    let user = reply.json_with(201)?;
    let id = id_of(user)?;
    ensure!(has_schema(user, USER_SCHEMA), "schemas lacks {USER_SCHEMA}");
    let got = str_attr(user, "userName")?;
    ensure!(got == name, "userName came back as {got:?}, sent {name:?}");
    let etag = s.ctx().supports("etag")?;
    expect::meta(&reply, user, "User", &format!("/Users/{id}"), etag)
}

fn get_same(s: &Session) -> CheckResult {
    let created = s.create_user("get")?;
    let id = id_of(&created)?;
    let reply = s.client().get(&format!("/Users/{id}")).send()?;
    let fetched = reply.json_with(200)?;
    for path in [
        "id",
        "userName",
        "name",
        "displayName",
        "active",
        "emails",
        "meta.created",
        "meta.location",
        "meta.version",
        "meta.resourceType",
    ] {
        ensure!(
            attr(fetched, path) == attr(&created, path),
            "GET {path} is {:?}, POST returned {:?}",
            attr(fetched, path),
            attr(&created, path)
        );
    }
    let etag = s.ctx().supports("etag")?;
    expect::meta(&reply, fetched, "User", &format!("/Users/{id}"), etag)
}

/// RFC 7643 §4.1.1: password has `returned: never`, even when asked for.
fn password_never_returned(s: &Session) -> CheckResult {
    let name = fixtures::unique_user_name("password");
    let body = fixtures::user_with(&name, &json!({"password": PASSWORD}));
    let created = s.create_user_from(&body)?;
    ensure!(
        attr(&created, "password").is_none(),
        "POST response returned the password"
    );
    let id = id_of(&created)?;
    let path = format!("/Users/{id}");
    let fetched = s.client().get(&path).send()?.json_with(200)?.clone();
    ensure!(
        attr(&fetched, "password").is_none(),
        "GET returned the password"
    );
    let asked = s
        .client()
        .get(&path)
        .query("attributes", "password,userName")
        .send()?;
    let asked = asked.json_with(200)?;
    ensure!(
        attr(asked, "password").is_none(),
        "GET ?attributes=password returned it"
    );
    let filter = format!("userName eq \"{name}\"");
    let page = expect::list(&s.client().get("/Users").query("filter", &filter).send()?)?;
    ensure!(
        page.resources.iter().all(|r| attr(r, "password").is_none()),
        "a list response returned the password"
    );
    Ok(())
}

/// RFC 7644 §3.5.1: PUT replaces the resource. Clearing an omitted
/// attribute is the replace semantics IdPs rely on (the RFC lets a server
/// choose it); id and meta.created must survive.
fn put_replaces(s: &Session) -> CheckResult {
    let name = fixtures::unique_user_name("put");
    let extra = json!({"nickName": "nick", "title": "Engineer"});
    let created = s.create_user_from(&fixtures::user_with(&name, &extra))?;
    let id = id_of(&created)?;
    let path = format!("/Users/{id}");
    let body = fixtures::user_with(&name, &json!({"title": "Manager"}));
    let reply = s.client().put(&path, &body).send()?;
    let put = reply.json_with(200)?.clone();
    let fetched = s.client().get(&path).send()?.json_with(200)?.clone();
    for (label, v) in [("PUT response", &put), ("GET after PUT", &fetched)] {
        ensure!(id_of(v)? == id, "{label}: id changed");
        ensure!(
            str_attr(v, "title")? == "Manager",
            "{label}: title not replaced: {}",
            excerpt(v)
        );
        ensure!(
            attr(v, "nickName").is_none(),
            "{label}: nickName omitted from the PUT is still there"
        );
        ensure!(
            attr(v, "meta.created") == attr(&created, "meta.created"),
            "{label}: meta.created changed"
        );
    }
    if s.ctx().supports("etag")? {
        expect::meta(&reply, &put, "User", &path, true)?;
        ensure!(
            attr(&put, "meta.version") != attr(&created, "meta.version"),
            "meta.version did not change on PUT"
        );
    }
    Ok(())
}

/// RFC 7643 §2.4 uniqueness is among *other* resources: a user may change
/// the case of its own userName (IdPs do when a UPN is re-cased).
fn put_recase_user_name(s: &Session) -> CheckResult {
    let name = fixtures::unique_user_name("recase");
    let id = id_of(&s.create_user_from(&fixtures::user(&name))?)?;
    let upper = name.to_uppercase();
    let reply = s
        .client()
        .put(&format!("/Users/{id}"), &fixtures::user(&upper))
        .send()?;
    let user = reply.json_with(200)?;
    let got = str_attr(user, "userName")?;
    ensure!(got == upper, "userName is {got:?} after PUT of {upper:?}");
    Ok(())
}

/// RFC 7644 §3.9: `attributes` narrows the response to the named
/// attributes (sub-attributes too) plus those returned "always", like `id`.
fn attributes_param(s: &Session) -> CheckResult {
    let id = id_of(&s.create_user("attributes")?)?;
    let path = format!("/Users/{id}");
    let reply = s
        .client()
        .get(&path)
        .query("attributes", "displayName,name.givenName")
        .send()?;
    let user = reply.json_with(200)?;
    ensure!(id_of(user)? == id, "id missing: {}", excerpt(user));
    str_attr(user, "displayName")?;
    str_attr(user, "name.givenName")?;
    for unasked in ["emails", "active", "name.familyName"] {
        ensure!(
            attr(user, unasked).is_none(),
            "{unasked} returned although not asked for: {}",
            excerpt(user)
        );
    }
    Ok(())
}

/// RFC 7644 §3.6: 204 No Content, then the resource is gone.
fn delete_then_404(s: &Session) -> CheckResult {
    let id = id_of(&s.create_user("delete")?)?;
    let path = format!("/Users/{id}");
    let reply = s.client().delete(&path).send()?;
    reply.expect_status(204)?;
    ensure!(
        reply.text.trim().is_empty(),
        "204 with a body: {}",
        reply.describe()
    );
    expect::error(&s.client().get(&path).send()?, 404, None)?;
    expect::error(&s.client().delete(&path).send()?, 404, None)
}

/// RFC 7643 §4.1.1 (userName: caseExact false, uniqueness server) and
/// RFC 7644 §3.3: a duplicate is 409 with scimType `uniqueness`.
fn duplicate_username(s: &Session) -> CheckResult {
    let name = fixtures::unique_user_name("dup");
    s.create_user_from(&fixtures::user(&name))?;
    for clash in [name.clone(), name.to_uppercase()] {
        let reply = s.post(Endpoint::Users, &fixtures::user(&clash))?;
        expect::error(&reply, 409, Some("uniqueness"))
            .map_err(|e| format!("userName {clash:?} after {name:?}: {e}"))?;
    }
    Ok(())
}

/// RFC 7644 §3.12: an unknown resource is 404 with an error body.
fn unknown_id(s: &Session) -> CheckResult {
    let path = format!("/Users/{}", uuid::Uuid::new_v4());
    expect::error(&s.client().get(&path).send()?, 404, None)
}

/// RFC 7643 §2.1: attribute names are case-insensitive.
fn case_insensitive_names(s: &Session) -> CheckResult {
    let name = fixtures::unique_user_name("case");
    let body = json!({
        "schemas": [USER_SCHEMA],
        "USERNAME": name,
        "Name": {"GivenName": "Ada", "FAMILYNAME": "Lovelace"},
        "DisplayName": "Ada Lovelace",
        "ACTIVE": true
    });
    let created = s.create_user_from(&body)?;
    let id = id_of(&created)?;
    let fetched = s.client().get(&format!("/Users/{id}")).send()?;
    let fetched = fetched.json_with(200)?;
    for v in [&created, fetched] {
        ensure!(
            str_attr(v, "userName")? == name,
            "userName lost: {}",
            excerpt(v)
        );
        ensure!(
            str_attr(v, "name.givenName")? == "Ada"
                && str_attr(v, "name.familyName")? == "Lovelace",
            "name lost: {}",
            excerpt(v)
        );
        ensure!(attr(v, "active") == Some(&Value::Bool(true)), "active lost");
    }
    Ok(())
}
