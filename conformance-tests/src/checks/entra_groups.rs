//! Microsoft Entra ID group replays. Entra creates a group without members,
//! looks it up with `excludedAttributes=members&filter=displayName eq …`,
//! then adds members a few at a time as `[{"$ref": null, "value": id}]`
//! (re-sending ones it is unsure of, so adds must never duplicate), asks
//! whether a user is in a group with `id eq "g" and members eq "u"`, and
//! removes members either by `members[value eq "id"]` or by the legacy
//! `{"op": "Remove", "path": "members", "value": [{"value": id}]}`, which
//! must remove only the listed members and never empty the group.

use serde_json::{Value, json};

use crate::checks::entra::entra_user;
use crate::checks::groups::members_are;
use crate::checks::patch::apply;
use crate::expect::{self, array_attr, attr, ensure, excerpt, id_of, str_attr};
use crate::fixtures;
use crate::runner::{Check, CheckResult};
use crate::session::{Endpoint, Session};

/// Entra ID group checks.
pub const CHECKS: &[Check] = &[
    Check::new(
        "entra/group_lookup_excludes_members",
        lookup_excludes_members,
    ),
    Check::new("entra/member_adds_never_duplicate", adds_never_duplicate),
    Check::new("entra/group_membership_query", membership_query),
    Check::new("entra/member_remove_by_value_filter", remove_by_filter),
    Check::new("entra/member_remove_legacy_value_list", remove_legacy),
];

/// An Entra-created (empty) group: `(id, path, displayName)`.
fn entra_group(s: &Session) -> Result<(String, String, String), String> {
    let name = fixtures::unique_name("entra");
    let body = fixtures::entra_group(&name, &fixtures::guid());
    let group = s.post(Endpoint::Groups, &body)?.json_with(201)?.clone();
    let id = id_of(&group)?;
    ensure!(
        array_attr(&group, "members")?.is_empty(),
        "a group created without members has some: {}",
        excerpt(&group)
    );
    Ok((id.clone(), format!("/Groups/{id}"), name))
}

/// Entra's add-members operation for `ids`.
fn add(ids: &[&str]) -> Value {
    let value: Vec<Value> = ids
        .iter()
        .map(|id| json!({"$ref": null, "value": id}))
        .collect();
    json!({"op": "Add", "path": "members", "value": value})
}

/// `n` Entra-provisioned users' ids.
fn users(s: &Session, n: usize) -> Result<Vec<String>, String> {
    (0..n).map(|_| Ok(entra_user(s)?.0)).collect()
}

/// An Entra group holding `ids`, built the way Entra builds it.
fn group_with(s: &Session, ids: &[&str]) -> Result<String, String> {
    let (_, path, _) = entra_group(s)?;
    let group = apply(s, &path, json!([add(ids)]))?;
    members_are(&group, ids).map_err(|e| format!("after adding: {e}"))?;
    Ok(path)
}

fn lookup_excludes_members(s: &Session) -> CheckResult {
    let ids = users(s, 1)?;
    let (id, path, name) = entra_group(s)?;
    apply(s, &path, json!([add(&[&ids[0]])]))?;
    let reply = s
        .client()
        .get("/Groups")
        .query("excludedAttributes", "members")
        .query("filter", &format!("displayName eq \"{name}\""))
        .send()?;
    let page = expect::list(&reply)?;
    ensure!(
        page.ids()? == [id.clone()] && page.total == 1,
        "lookup by displayName did not find exactly the group: {}",
        reply.describe()
    );
    ensure!(
        attr(&page.resources[0], "members").is_none(),
        "members returned despite excludedAttributes=members: {}",
        reply.describe()
    );
    str_attr(&page.resources[0], "displayName")?;
    let one = s
        .client()
        .get(&path)
        .query("excludedAttributes", "members")
        .send()?;
    ensure!(
        attr(one.json_with(200)?, "members").is_none(),
        "GET by id returned members: {}",
        one.describe()
    );
    members_are(&s.fetch(&path)?, &[&ids[0]]).map_err(|e| format!("members lost: {e}"))
}

/// Re-adding members already present changes nothing.
fn adds_never_duplicate(s: &Session) -> CheckResult {
    let ids = users(s, 2)?;
    let (a, b) = (ids[0].as_str(), ids[1].as_str());
    let (gid, path, _) = entra_group(s)?;
    for (ops, want) in [
        (add(&[a]), vec![a]),
        (add(&[a]), vec![a]),
        (add(&[a, b]), vec![a, b]),
        (add(&[b]), vec![a, b]),
    ] {
        let group = apply(s, &path, json!([ops]))?;
        members_are(&group, &want).map_err(|e| format!("after {ops}: {e}"))?;
    }
    let user = s.fetch(&format!("/Users/{a}"))?;
    let listed = array_attr(&user, "groups")?
        .iter()
        .filter(|g| attr(g, "value") == Some(&json!(gid)))
        .count();
    ensure!(
        listed == 1,
        "the user's groups list the group {listed} times"
    );
    Ok(())
}

/// Entra asks "is this user in that group?" with `id eq … and members eq …`.
fn membership_query(s: &Session) -> CheckResult {
    let ids = users(s, 2)?;
    let (a, b) = (ids[0].as_str(), ids[1].as_str());
    let path = group_with(s, &[a])?;
    let gid = path.trim_start_matches("/Groups/");
    for (user, want) in [(a, vec![gid]), (b, vec![])] {
        let filter = format!("id eq \"{gid}\" and members eq \"{user}\"");
        let reply = s
            .client()
            .get("/Groups")
            .query("excludedAttributes", "members")
            .query("filter", &filter)
            .send()?;
        let page = expect::list(&reply)?;
        ensure!(
            page.ids()? == want && page.total == want.len() as u64,
            "filter {filter:?}: want {want:?}: {}",
            reply.describe()
        );
    }
    Ok(())
}

fn remove_by_filter(s: &Session) -> CheckResult {
    let ids = users(s, 2)?;
    let (a, b) = (ids[0].as_str(), ids[1].as_str());
    let path = group_with(s, &[a, b])?;
    let ops = json!([{"op": "Remove", "path": format!("members[value eq \"{a}\"]")}]);
    let group = apply(s, &path, ops)?;
    members_are(&group, &[b]).map_err(|e| format!("after removing {a}: {e}"))?;
    s.fetch(&format!("/Users/{a}")).map(|_| ())
}

/// The legacy form names members in `value`; removing a user who is no
/// longer a member (Entra retries) is a no-op, not "remove all".
fn remove_legacy(s: &Session) -> CheckResult {
    let ids = users(s, 3)?;
    let (a, b, c) = (ids[0].as_str(), ids[1].as_str(), ids[2].as_str());
    let path = group_with(s, &[a, b, c])?;
    let remove = |id: &str| json!({"op": "Remove", "path": "members", "value": [{"$ref": null, "value": id}]});
    for (ops, want) in [
        (remove(a), vec![b, c]),
        (remove(a), vec![b, c]),
        (remove(b), vec![c]),
    ] {
        let group = apply(s, &path, json!([ops]))?;
        members_are(&group, &want).map_err(|e| format!("after {ops}: {e}"))?;
    }
    Ok(())
}
