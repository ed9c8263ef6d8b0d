//! The `/Groups` resource (RFC 7643 §4.2): creation with members, the
//! member sub-attributes `value`, `$ref` and `type`, `excludedAttributes`
//! (RFC 7644 §3.9), a user's read-only `groups` (RFC 7643 §4.1.2) and
//! deleting a group without touching its members.

use serde_json::Value;

use crate::expect::{
    self, GROUP_SCHEMA, array_attr, attr, ensure, excerpt, has_schema, id_of, str_attr,
};
use crate::runner::{Check, CheckResult};
use crate::session::Session;

/// Group checks.
pub const CHECKS: &[Check] = &[
    Check::new("groups/create_with_members", create_with_members),
    Check::new("groups/excluded_attributes_members", excluded_members),
    Check::new("groups/user_groups_reflect_membership", user_groups),
    Check::new("groups/delete_keeps_members", delete_group),
];

/// Asserts `group.members` is exactly `want` (user ids, any order), each
/// entry with `value`, a `$ref` to the user and `type` "User".
pub fn members_are(group: &Value, want: &[&str]) -> CheckResult {
    let members = array_attr(group, "members")?;
    let mut got: Vec<&str> = Vec::new();
    for m in members {
        let value = str_attr(m, "value")?;
        let reference = str_attr(m, "$ref")?;
        ensure!(
            reference.ends_with(&format!("/Users/{value}")),
            "member $ref {reference:?} does not point at /Users/{value}"
        );
        let kind = str_attr(m, "type")?;
        ensure!(kind == "User", "member type is {kind:?}, want \"User\"");
        got.push(value);
    }
    got.sort_unstable();
    let mut want = want.to_vec();
    want.sort_unstable();
    ensure!(got == want, "members are {got:?}, want {want:?}");
    Ok(())
}

fn create_with_members(s: &Session) -> CheckResult {
    let alice = id_of(&s.create_user("member-a")?)?;
    let bob = id_of(&s.create_user("member-b")?)?;
    let created = s.create_group("create", &[&alice, &bob])?;
    let id = id_of(&created)?;
    ensure!(
        has_schema(&created, GROUP_SCHEMA),
        "schemas lacks {GROUP_SCHEMA}"
    );
    str_attr(&created, "displayName")?;
    let reply = s.client().get(&format!("/Groups/{id}")).send()?;
    let fetched = reply.json_with(200)?;
    ensure!(
        attr(fetched, "displayName") == attr(&created, "displayName"),
        "displayName differs between POST and GET"
    );
    members_are(fetched, &[&alice, &bob])?;
    let etag = s.ctx().supports("etag")?;
    expect::meta(&reply, fetched, "Group", &format!("/Groups/{id}"), etag)
}

fn excluded_members(s: &Session) -> CheckResult {
    let alice = id_of(&s.create_user("member")?)?;
    let group = s.create_group("excluded", &[&alice])?;
    let id = id_of(&group)?;
    let one = s
        .client()
        .get(&format!("/Groups/{id}"))
        .query("excludedAttributes", "members")
        .send()?;
    let one = one.json_with(200)?;
    ensure!(
        attr(one, "members").is_none(),
        "members returned: {}",
        excerpt(one)
    );
    ensure!(id_of(one)? == id, "id missing or different");
    str_attr(one, "displayName")?;
    let filter = format!("displayName eq \"{}\"", str_attr(&group, "displayName")?);
    let listed = s
        .client()
        .get("/Groups")
        .query("filter", &filter)
        .query("excludedAttributes", "members")
        .send()?;
    let page = expect::list(&listed)?;
    ensure!(
        page.ids()? == [id],
        "filter by displayName did not find the group"
    );
    ensure!(
        page.resources.iter().all(|g| attr(g, "members").is_none()),
        "list returned members despite excludedAttributes=members"
    );
    Ok(())
}

fn user_groups(s: &Session) -> CheckResult {
    let alice = id_of(&s.create_user("member")?)?;
    let group = s.create_group("reflect", &[&alice])?;
    let gid = id_of(&group)?;
    let user = s.client().get(&format!("/Users/{alice}")).send()?;
    let user = user.json_with(200)?;
    let groups = array_attr(user, "groups")?;
    ensure!(
        groups
            .iter()
            .any(|g| str_attr(g, "value").is_ok_and(|v| v == gid)),
        "user's groups do not list {gid}: {}",
        excerpt(user)
    );
    Ok(())
}

/// RFC 7644 §3.6: deleting a group removes the group, not its members.
fn delete_group(s: &Session) -> CheckResult {
    let alice = id_of(&s.create_user("member")?)?;
    let id = id_of(&s.create_group("delete", &[&alice])?)?;
    let path = format!("/Groups/{id}");
    s.client().delete(&path).send()?.expect_status(204)?;
    expect::error(&s.client().get(&path).send()?, 404, None)?;
    let user = s.client().get(&format!("/Users/{alice}")).send()?;
    user.json_with(200)
        .map_err(|e| format!("member deleted with its group: {e}"))?;
    Ok(())
}
