//! PATCH on group membership and PATCH error semantics (RFC 7644
//! §3.5.2): adding members, removing one with `members[value eq "id"]`,
//! `remove` without a path (400 `noTarget`, §3.5.2.2), and atomicity: when
//! any operation fails, none of them is applied.

use serde_json::json;

use crate::checks::groups::members_are;
use crate::checks::patch::apply;
use crate::expect::{self, ensure, id_of, str_attr};
use crate::fixtures;
use crate::runner::{Check, CheckResult};
use crate::session::Session;

/// Membership and error PATCH checks.
pub const CHECKS: &[Check] = &[
    Check::new("patch/group_members_add_and_remove", members_add_remove),
    Check::new(
        "patch/remove_without_path_is_400_no_target",
        remove_no_target,
    ),
    Check::new("patch/is_atomic", atomic),
];

fn members_add_remove(s: &Session) -> CheckResult {
    let alice = id_of(&s.create_user("member-a")?)?;
    let bob = id_of(&s.create_user("member-b")?)?;
    let group = s.create_group("patch", &[&alice])?;
    let path = format!("/Groups/{}", id_of(&group)?);
    let add = json!([{"op": "add", "path": "members", "value": [{"value": bob}]}]);
    let after_add = apply(s, &path, add)?;
    members_are(&after_add, &[&alice, &bob]).map_err(|e| format!("after add: {e}"))?;
    let remove = json!([{"op": "remove", "path": format!("members[value eq \"{alice}\"]")}]);
    let after_remove = apply(s, &path, remove)?;
    members_are(&after_remove, &[&bob]).map_err(|e| format!("after remove: {e}"))
}

/// RFC 7644 §3.5.2.2: "If "path" is unspecified, the operation fails with
/// HTTP status code 400 and a "scimType" error code of "noTarget"."
fn remove_no_target(s: &Session) -> CheckResult {
    let user = s.create_user("notarget")?;
    let path = format!("/Users/{}", id_of(&user)?);
    let body = fixtures::patch(json!([{"op": "remove"}]));
    let reply = s.client().patch(&path, &body).send()?;
    expect::error(&reply, 400, Some("noTarget"))
}

/// RFC 7644 §3.5.2: a PATCH request is atomic; an invalid second
/// operation must leave the first one unapplied.
fn atomic(s: &Session) -> CheckResult {
    let name = fixtures::unique_user_name("atomic");
    let user = s.create_user_from(&fixtures::user_with(&name, &json!({"title": "Before"})))?;
    let path = format!("/Users/{}", id_of(&user)?);
    let body = fixtures::patch(json!([
        {"op": "replace", "path": "title", "value": "After"},
        {"op": "remove"}
    ]));
    let reply = s.client().patch(&path, &body).send()?;
    expect::error(&reply, 400, None)?;
    let now = s.client().get(&path).send()?;
    let title = str_attr(now.json_with(200)?, "title")?;
    ensure!(
        title == "Before",
        "the first operation was applied (title {title:?}) although the request failed"
    );
    Ok(())
}
