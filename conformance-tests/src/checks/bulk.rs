//! `/Bulk` (RFC 7644 §3.7), run only when the ServiceProviderConfig
//! advertises `bulk.supported`: `bulkId:` references from a group to a
//! member created in the same request, whichever comes first (§3.7.1), and
//! `failOnErrors` stopping the run (§3.7.3); plus the request and response
//! helpers `bulk_rules.rs` shares. Everything a request creates is tracked
//! (from `location`, and by name as a safety net) and the bulkId checks
//! delete what they made with Bulk itself.

use serde_json::{Value, json};

use crate::checks::groups::members_are;
use crate::client::Reply;
use crate::expect::{self, GROUP_SCHEMA, attr, ensure, excerpt, has_schema, str_attr};
use crate::fixtures;
use crate::runner::{Check, CheckResult};
use crate::session::{Endpoint, Session};

/// Bulk checks.
pub const CHECKS: &[Check] = &[
    Check::new("bulk/bulk_id_member_posted_before_group", member_first),
    Check::new("bulk/bulk_id_member_posted_after_group", group_first),
    Check::new("bulk/fail_on_errors_stops_processing", fail_on_errors),
];

const BULK_REQUEST: &str = "urn:ietf:params:scim:api:messages:2.0:BulkRequest";
const BULK_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:BulkResponse";

/// Sends a BulkRequest with `operations`.
pub fn send(
    s: &Session,
    operations: &[Value],
    fail_on_errors: Option<u64>,
) -> Result<Reply, String> {
    let mut body = json!({"schemas": [BULK_REQUEST], "Operations": operations});
    if let Some(n) = fail_on_errors {
        body["failOnErrors"] = json!(n);
    }
    s.client().post("/Bulk", &body).send()
}

/// Requires a 200 BulkResponse; tracks every `location` it reports and
/// returns the results.
pub fn bulk_results(s: &Session, reply: &Reply) -> Result<Vec<Value>, String> {
    let body = reply.json_with(200)?;
    let ops = expect::array_attr(body, "Operations")?.to_vec();
    for op in &ops {
        if let Some(location) = attr(op, "location").and_then(Value::as_str) {
            s.track_location(location);
        }
    }
    ensure!(
        has_schema(body, BULK_RESPONSE),
        "schemas lacks {BULK_RESPONSE}: {}",
        reply.describe()
    );
    Ok(ops)
}

/// The result for `bulk_id`, with `status` (a string, as in RFC 7644's
/// examples) equal to `want`; returns the path its `location` names.
pub fn result_for(ops: &[Value], bulk_id: &str, want: u16) -> Result<String, String> {
    let op = ops
        .iter()
        .find(|o| attr(o, "bulkId") == Some(&json!(bulk_id)))
        .ok_or_else(|| format!("no result for bulkId {bulk_id:?}"))?;
    checked(op, want)
}

/// Checks one result's status and absolute `location`; returns the path
/// below the base URL (`/Users/{id}`).
pub fn checked(op: &Value, want: u16) -> Result<String, String> {
    let status = str_attr(op, "status")?;
    ensure!(
        status == want.to_string(),
        "status {status:?}, want \"{want}\": {}",
        excerpt(op)
    );
    let location = str_attr(op, "location")?;
    let path = ["/Users/", "/Groups/"]
        .iter()
        .find_map(|p| location.rfind(p).map(|i| location[i..].to_owned()))
        .filter(|_| location.starts_with("http"))
        .ok_or_else(|| format!("location {location:?} is not an absolute resource URL"))?;
    Ok(path)
}

/// Tracks any user named `user_name` (whatever the reply said) and
/// returns how many there are.
pub fn users_named(s: &Session, user_name: &str) -> Result<u64, String> {
    let filter = format!("userName eq \"{user_name}\"");
    s.adopt(Endpoint::Users, &filter);
    Ok(expect::list(&s.client().get("/Users").query("filter", &filter).send()?)?.total)
}

/// A POST of a typical user under `bulk_id`.
pub fn user_op(bulk_id: &str, user_name: &str) -> Value {
    json!({"method": "POST", "path": "/Users", "bulkId": bulk_id, "data": fixtures::user(user_name)})
}

fn group_op(bulk_id: &str, name: &str, member_ref: &str) -> Value {
    json!({"method": "POST", "path": "/Groups", "bulkId": bulk_id, "data": {
        "schemas": [GROUP_SCHEMA],
        "displayName": name,
        "members": [{"type": "User", "value": format!("bulkId:{member_ref}")}]
    }})
}

/// RFC 7644 §3.7.2's example: a user and a group naming it by bulkId.
fn linked(s: &Session, member_first: bool) -> CheckResult {
    if !s.ctx().supports("bulk")? {
        return Ok(());
    }
    let (user_name, group_name) = (
        fixtures::unique_user_name("bulk"),
        fixtures::unique_name("bulk"),
    );
    let (user, group) = (
        user_op("qwerty", &user_name),
        group_op("ytrewq", &group_name, "qwerty"),
    );
    let ops = if member_first {
        [user, group]
    } else {
        [group, user]
    };
    let reply = send(s, &ops, None)?;
    s.adopt(
        Endpoint::Groups,
        &format!("displayName eq \"{group_name}\""),
    );
    users_named(s, &user_name)?;
    let results = bulk_results(s, &reply)?;
    let user_path = result_for(&results, "qwerty", 201)?;
    let group_path = result_for(&results, "ytrewq", 201)?;
    let user_id = user_path.trim_start_matches("/Users/");
    members_are(&s.fetch(&group_path)?, &[user_id])
        .map_err(|e| format!("{e}: the bulkId reference was not resolved"))?;
    let cleanup = [
        json!({"method": "DELETE", "path": group_path}),
        json!({"method": "DELETE", "path": user_path}),
    ];
    for op in bulk_results(s, &send(s, &cleanup, None)?)? {
        let status = str_attr(&op, "status")?;
        ensure!(
            status == "204",
            "Bulk DELETE answered {status:?}: {}",
            excerpt(&op)
        );
    }
    for path in [&group_path, &user_path] {
        expect::error(&s.client().get(path).send()?, 404, None)?;
    }
    Ok(())
}

fn member_first(s: &Session) -> CheckResult {
    linked(s, true)
}

fn group_first(s: &Session) -> CheckResult {
    linked(s, false)
}

/// With failOnErrors 1, the first error ends the run: later operations are
/// neither performed nor reported; earlier ones stay done.
fn fail_on_errors(s: &Session) -> CheckResult {
    if !s.ctx().supports("bulk")? {
        return Ok(());
    }
    let (first, last) = (
        fixtures::unique_user_name("bulk-ok"),
        fixtures::unique_user_name("bulk-late"),
    );
    let invalid = json!({"method": "POST", "path": "/Users", "bulkId": "bad", "data": {
        "schemas": [expect::USER_SCHEMA], "displayName": "no userName"
    }});
    let ops = [user_op("first", &first), invalid, user_op("last", &last)];
    let reply = send(s, &ops, Some(1))?;
    users_named(s, &first)?;
    let performed = users_named(s, &last)?;
    let results = bulk_results(s, &reply)?;
    result_for(&results, "first", 201)?;
    let bad = results
        .iter()
        .find(|o| attr(o, "bulkId") == Some(&json!("bad")))
        .ok_or("no result for the failing operation")?;
    ensure!(
        str_attr(bad, "status")? == "400" && attr(bad, "response.status") == Some(&json!("400")),
        "the failing operation's result is not a 400 with an error response: {}",
        excerpt(bad)
    );
    ensure!(
        results.len() == 2,
        "{} results; the operation after the error must not run",
        results.len()
    );
    ensure!(
        performed == 0,
        "the operation after the error was performed"
    );
    Ok(())
}
