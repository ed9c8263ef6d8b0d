//! `/Bulk` limits and the result contract (RFC 7644 §3.7), run only when
//! the ServiceProviderConfig advertises `bulk.supported`: one operation more
//! than `bulk.maxOperations` is 413 for the whole request (§3.7.4), and each
//! result of a POST, PUT, PATCH and DELETE carries `method`, `status`,
//! `location` and, with ETags, `version` (§3.7.3).

use serde_json::{Value, json};

use crate::checks::bulk::{bulk_results, checked, send, user_op, users_named};
use crate::expect::{self, attr, ensure, excerpt, str_attr};
use crate::fixtures;
use crate::runner::{Check, CheckResult};
use crate::session::Session;

/// Bulk limit and result checks.
pub const CHECKS: &[Check] = &[
    Check::new("bulk/max_operations_enforced_with_413", max_operations),
    Check::new("bulk/results_carry_status_location_version", results_shape),
];

/// RFC 7644 §3.7.4: more than maxOperations is 413 for the whole request
/// (nothing in it runs); exactly maxOperations is processed.
fn max_operations(s: &Session) -> CheckResult {
    if !s.ctx().supports("bulk")? {
        return Ok(());
    }
    let config = s.ctx().service_provider_config()?;
    let max = attr(config, "bulk.maxOperations")
        .and_then(Value::as_u64)
        .ok_or("bulk.maxOperations is not a number")? as usize;
    let name = fixtures::unique_user_name("bulk-max");
    let mut ops = vec![user_op("u", &name)];
    ops.extend(
        (0..max)
            .map(|_| json!({"method": "DELETE", "path": format!("/Users/{}", fixtures::guid())})),
    );
    let reply = send(s, &ops, None)?;
    let performed = users_named(s, &name)?;
    expect::error(&reply, 413, None)
        .map_err(|e| format!("{} operations (max {max}): {e}", ops.len()))?;
    ensure!(performed == 0, "the refused request still created a user");
    if max <= 5000 {
        ops.truncate(max);
        let results = bulk_results(s, &send(s, &ops, None)?)?;
        ensure!(
            results.len() == max,
            "{} results for {max} operations",
            results.len()
        );
    }
    Ok(())
}

/// POST, PUT, PATCH and DELETE results: status, location (RFC 7644 §3.7:
/// "REQUIRED in a response, except in the event of a POST failure") and,
/// with ETags, the resource's new version.
fn results_shape(s: &Session) -> CheckResult {
    if !s.ctx().supports("bulk")? {
        return Ok(());
    }
    let kept = expect::id_of(&s.create_user("bulk-kept")?)?;
    let doomed = expect::id_of(&s.create_user("bulk-doomed")?)?;
    let new_name = fixtures::unique_user_name("bulk-new");
    let put = fixtures::user_with(
        &fixtures::unique_user_name("bulk-put"),
        &json!({"title": "PUT"}),
    );
    let patch = fixtures::patch(json!([{"op": "replace", "path": "title", "value": "PATCH"}]));
    let ops = [
        user_op("new", &new_name),
        json!({"method": "PUT", "path": format!("/Users/{kept}"), "data": put}),
        json!({"method": "PATCH", "path": format!("/Users/{kept}"), "data": patch}),
        json!({"method": "DELETE", "path": format!("/Users/{doomed}")}),
    ];
    let reply = send(s, &ops, None)?;
    users_named(s, &new_name)?;
    let results = bulk_results(s, &reply)?;
    ensure!(
        results.len() == 4,
        "{} results for 4 operations",
        results.len()
    );
    let etag = s.ctx().supports("etag")?;
    let kept_path = format!("/Users/{kept}");
    let doomed_path = format!("/Users/{doomed}");
    let result = |method: &str, status: u16| -> Result<(String, Option<String>), String> {
        let what = format!("{method} result");
        let op = results
            .iter()
            .find(|o| attr(o, "method").and_then(Value::as_str) == Some(method))
            .ok_or_else(|| format!("no {what}"))?;
        let path = checked(op, status).map_err(|e| format!("{what}: {e}"))?;
        let version = attr(op, "version")
            .and_then(Value::as_str)
            .map(str::to_owned);
        ensure!(
            !etag || method == "DELETE" || version.is_some(),
            "{what} has no version: {}",
            excerpt(op)
        );
        Ok((path, version))
    };
    let (new_path, new_version) = result("POST", 201)?;
    for method in ["PUT", "PATCH"] {
        let (path, _) = result(method, 200)?;
        ensure!(path == kept_path, "{method} result: location names {path}");
    }
    let (_, patched_version) = result("PATCH", 200)?;
    let kept_now = s.client().get(&kept_path).send()?;
    ensure!(
        str_attr(kept_now.json_with(200)?, "title")? == "PATCH",
        "PUT then PATCH left {}",
        kept_now.describe()
    );
    let new_now = s.client().get(&new_path).send()?;
    new_now.json_with(200)?;
    if etag {
        for (label, reply, version) in [
            ("POST", &new_now, new_version),
            ("PATCH", &kept_now, patched_version),
        ] {
            ensure!(
                reply.header("etag") == version.as_deref(),
                "{label} result version {version:?} differs from the ETag GET returns {:?}",
                reply.header("etag")
            );
        }
    }
    expect::error(&s.client().get(&doomed_path).send()?, 404, None)?;
    let (path, _) = result("DELETE", 204)?;
    ensure!(path == doomed_path, "DELETE result: location names {path}");
    Ok(())
}
