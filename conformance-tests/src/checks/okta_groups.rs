//! Okta Group Push replays: create with `"members": []`, rename with a
//! path-less replace whose value repeats the (unchanged) `id` next to the new
//! `displayName`, one request that removes a member by
//! `members[value eq "…"]` and adds another, a `replace` of all members, and
//! a full PUT carrying members. Members are sent as Okta sends them, with
//! `display`; each result is read back with GET.

use serde_json::{Value, json};

use crate::checks::groups::members_are;
use crate::checks::patch::apply;
use crate::expect::{self, GROUP_SCHEMA, attr, ensure, excerpt, id_of, str_attr};
use crate::fixtures;
use crate::runner::{Check, CheckResult};
use crate::session::{Endpoint, Session};

/// Okta Group Push checks.
pub const CHECKS: &[Check] = &[
    Check::new("okta/group_push_create_with_empty_members", create_empty),
    Check::new("okta/group_push_rename_with_id_in_value", rename),
    Check::new(
        "okta/group_push_add_and_remove_in_one_request",
        add_and_remove,
    ),
    Check::new("okta/group_push_replace_all_members", replace_all),
    Check::new("okta/group_push_put_with_members", put_members),
];

/// Okta-created users' ids.
fn users(s: &Session, n: usize) -> Result<Vec<String>, String> {
    (0..n)
        .map(|_| {
            let name = fixtures::unique_user_name("okta-member");
            id_of(&s.create_user_from(&fixtures::okta_user(&name, "Okta!Push-42"))?)
        })
        .collect()
}

/// Okta's members array for `ids`.
fn members(ids: &[&str]) -> Value {
    Value::Array(ids.iter().map(|id| fixtures::okta_member(id)).collect())
}

/// A pushed group: created empty, then members added by PATCH as Okta
/// does. Returns `(id, path, displayName)`.
fn pushed(s: &Session, ids: &[&str]) -> Result<(String, String, String), String> {
    let name = fixtures::unique_name("okta-push");
    let body = json!({"schemas": [GROUP_SCHEMA], "displayName": name, "members": []});
    let group = s.post(Endpoint::Groups, &body)?.json_with(201)?.clone();
    let id = id_of(&group)?;
    let path = format!("/Groups/{id}");
    if !ids.is_empty() {
        let ops = json!([{"op": "add", "path": "members", "value": members(ids)}]);
        members_are(&apply(s, &path, ops)?, ids).map_err(|e| format!("after add: {e}"))?;
    }
    Ok((id, path, name))
}

fn create_empty(s: &Session) -> CheckResult {
    let name = fixtures::unique_name("okta-push");
    let filter = fixtures::percent_encode(&format!("displayName eq \"{name}\""));
    let lookup = format!("/Groups?filter={filter}&startIndex=1&count=100");
    let before = expect::list(&s.client().get(&lookup).send()?)?;
    ensure!(before.total == 0, "a fresh displayName already matches");
    let body = json!({"schemas": [GROUP_SCHEMA], "displayName": name, "members": []});
    let reply = s.post(Endpoint::Groups, &body)?;
    let group = reply.json_with(201)?;
    let id = id_of(group)?;
    expect::meta(
        &reply,
        group,
        "Group",
        &format!("/Groups/{id}"),
        s.ctx().supports("etag")?,
    )?;
    members_are(group, &[])?;
    members_are(&s.fetch(&format!("/Groups/{id}"))?, &[])?;
    let after = expect::list(&s.client().get(&lookup).send()?)?;
    ensure!(
        after.ids()? == [id],
        "the pushed group is not found by displayName"
    );
    Ok(())
}

fn rename(s: &Session) -> CheckResult {
    let ids = users(s, 1)?;
    let (id, path, _) = pushed(s, &[&ids[0]])?;
    let new_name = fixtures::unique_name("okta-renamed");
    let ops = json!([{"op": "replace", "value": {"id": id, "displayName": new_name}}]);
    let group = apply(s, &path, ops)?;
    ensure!(id_of(&group)? == id, "id changed: {}", excerpt(&group));
    let got = str_attr(&group, "displayName")?;
    ensure!(got == new_name, "displayName is {got:?}, want {new_name:?}");
    members_are(&group, &[&ids[0]]).map_err(|e| format!("rename touched members: {e}"))
}

fn add_and_remove(s: &Session) -> CheckResult {
    let ids = users(s, 3)?;
    let (a, b, c) = (ids[0].as_str(), ids[1].as_str(), ids[2].as_str());
    let (_, path, _) = pushed(s, &[a, b])?;
    let ops = json!([
        {"op": "remove", "path": format!("members[value eq \"{a}\"]")},
        {"op": "add", "path": "members", "value": members(&[c])}
    ]);
    members_are(&apply(s, &path, ops)?, &[b, c])
}

fn replace_all(s: &Session) -> CheckResult {
    let ids = users(s, 3)?;
    let (a, b, c) = (ids[0].as_str(), ids[1].as_str(), ids[2].as_str());
    let (_, path, _) = pushed(s, &[a, b])?;
    let ops = json!([{"op": "replace", "path": "members", "value": members(&[b, c])}]);
    members_are(&apply(s, &path, ops)?, &[b, c])?;
    let ops = json!([{"op": "replace", "path": "members", "value": []}]);
    members_are(&apply(s, &path, ops)?, &[]).map_err(|e| format!("replace with []: {e}"))
}

fn put_members(s: &Session) -> CheckResult {
    let ids = users(s, 3)?;
    let (a, b, c) = (ids[0].as_str(), ids[1].as_str(), ids[2].as_str());
    let (id, path, name) = pushed(s, &[a])?;
    let body = json!({
        "schemas": [GROUP_SCHEMA],
        "id": id,
        "displayName": name,
        "members": members(&[b, c])
    });
    let reply = s.client().put(&path, &body).send()?;
    let put = reply.json_with(200)?;
    ensure!(
        attr(put, "displayName") == Some(&json!(name)),
        "displayName changed: {}",
        excerpt(put)
    );
    members_are(put, &[b, c]).map_err(|e| format!("PUT response: {e}"))?;
    members_are(&s.fetch(&path)?, &[b, c]).map_err(|e| format!("GET after PUT: {e}"))
}
