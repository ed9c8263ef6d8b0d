//! `/Bulk` (RFC 7644 §3.7): many operations in one request, each applied as
//! its own transaction through the same service functions as single
//! requests. `bulkId:` references let a later operation use the id of a
//! resource an earlier one created (a group whose member was created in the
//! same request); operations run in an order that resolves references, and
//! one that cannot be resolved fails with 409.

use std::collections::HashMap;

use actix_web::http::StatusCode;
use serde_json::{Map, Value, json};

use super::render::Stored;
use super::service::{Load, Service};
use crate::domain::{Actor, Kind};
use crate::error::ScimError;

/// URN of the BulkRequest message.
pub const BULK_REQUEST_URN: &str = "urn:ietf:params:scim:api:messages:2.0:BulkRequest";
/// URN of the BulkResponse message.
pub const BULK_RESPONSE_URN: &str = "urn:ietf:params:scim:api:messages:2.0:BulkResponse";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    Post,
    Put,
    Patch,
    Delete,
}

impl Method {
    fn as_str(self) -> &'static str {
        match self {
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
        }
    }
}

#[derive(Debug, Clone)]
struct BulkOp {
    method: Method,
    bulk_id: Option<String>,
    version: Option<String>,
    path: String,
    data: Option<Value>,
}

/// Parses a BulkRequest; returns the operations and `failOnErrors`.
fn parse(body: &Value, max_operations: usize) -> Result<(Vec<BulkOp>, Option<usize>), ScimError> {
    let Value::Object(obj) = body else {
        return Err(ScimError::invalid_syntax(
            "The Bulk body must be a JSON object.",
        ));
    };
    let get = |name: &str| {
        obj.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    };
    if let Some(schemas) = get("schemas") {
        let ok = schemas.as_array().is_some_and(|a| {
            a.iter().any(|s| {
                s.as_str()
                    .is_some_and(|s| s.eq_ignore_ascii_case(BULK_REQUEST_URN))
            })
        });
        if !ok {
            return Err(ScimError::invalid_value(format!(
                "'schemas' must contain {BULK_REQUEST_URN}."
            )));
        }
    }
    let fail_on_errors = match get("failOnErrors") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) if n.as_u64().is_some_and(|n| n > 0) => {
            n.as_u64().map(|n| n as usize)
        }
        Some(_) => {
            return Err(ScimError::invalid_value(
                "'failOnErrors' must be a positive integer.",
            ));
        }
    };
    let Some(Value::Array(items)) = get("Operations") else {
        return Err(ScimError::invalid_value("'Operations' must be an array."));
    };
    if items.len() > max_operations {
        return Err(ScimError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("At most {max_operations} operations are accepted in one Bulk request."),
        ));
    }
    let mut ops = Vec::with_capacity(items.len());
    let mut seen = std::collections::HashSet::new();
    for item in items {
        let Value::Object(o) = item else {
            return Err(ScimError::invalid_value(
                "Each Bulk operation must be an object.",
            ));
        };
        let get = |name: &str| {
            o.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v)
        };
        let method = match get("method")
            .and_then(Value::as_str)
            .map(str::to_ascii_uppercase)
            .as_deref()
        {
            Some("POST") => Method::Post,
            Some("PUT") => Method::Put,
            Some("PATCH") => Method::Patch,
            Some("DELETE") => Method::Delete,
            _ => {
                return Err(ScimError::invalid_value(
                    "Each Bulk operation needs a method: POST, PUT, PATCH or DELETE.",
                ));
            }
        };
        let path = get("path")
            .and_then(Value::as_str)
            .ok_or_else(|| ScimError::invalid_value("Each Bulk operation needs a 'path'."))?
            .to_string();
        let bulk_id = get("bulkId").and_then(Value::as_str).map(str::to_string);
        if method == Method::Post && bulk_id.is_none() {
            return Err(ScimError::invalid_value(
                "A POST Bulk operation needs a 'bulkId'.",
            ));
        }
        if let Some(b) = &bulk_id
            && !seen.insert(b.clone())
        {
            return Err(ScimError::invalid_value(format!(
                "bulkId '{b}' is used twice."
            )));
        }
        let data = get("data").cloned();
        if matches!(method, Method::Post | Method::Put | Method::Patch) && data.is_none() {
            return Err(ScimError::invalid_value(format!(
                "A {} Bulk operation needs 'data'.",
                method.as_str()
            )));
        }
        ops.push(BulkOp {
            method,
            bulk_id,
            version: get("version").and_then(Value::as_str).map(str::to_string),
            path,
            data,
        });
    }
    Ok((ops, fail_on_errors))
}

/// Every `bulkId:x` reference in a value (strings only) and in the path.
fn references(op: &BulkOp) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::String(s) => {
                if let Some(r) = s.strip_prefix("bulkId:") {
                    out.push(r.to_string());
                }
            }
            Value::Array(items) => items.iter().for_each(|i| walk(i, out)),
            Value::Object(m) => m.values().for_each(|i| walk(i, out)),
            _ => {}
        }
    }
    if let Some(d) = &op.data {
        walk(d, &mut out);
    }
    if let Some((_, last)) = op.path.rsplit_once('/')
        && let Some(r) = last.strip_prefix("bulkId:")
    {
        out.push(r.to_string());
    }
    out
}

fn substitute(v: &mut Value, ids: &HashMap<String, String>) {
    match v {
        Value::String(s) => {
            if let Some(id) = s.strip_prefix("bulkId:").and_then(|r| ids.get(r)) {
                *s = id.clone();
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| substitute(i, ids)),
        Value::Object(m) => m.values_mut().for_each(|i| substitute(i, ids)),
        _ => {}
    }
}

/// Splits `/Users`, `/Users/{id}` into kind and id.
fn target(path: &str) -> Result<(Kind, Option<String>), ScimError> {
    let trimmed = path.trim_start_matches('/');
    let (collection, id) = match trimmed.split_once('/') {
        Some((c, id)) if !id.is_empty() && !id.contains('/') => (c, Some(id.to_string())),
        Some(_) => {
            return Err(ScimError::invalid_path(format!(
                "Bulk path '{path}' is not a resource path."
            )));
        }
        None => (trimmed, None),
    };
    let kind = match collection {
        "Users" => Kind::User,
        "Groups" => Kind::Group,
        _ => {
            return Err(ScimError::invalid_path(format!(
                "Bulk path '{path}' names no resource type."
            )));
        }
    };
    Ok((kind, id))
}

/// Validates a BulkRequest without running it: parses it, resolves each
/// operation's target and its `bulkId` references as `run` would, and
/// returns the number of operations. Reads untrusted input only, so the
/// fuzz target drives it.
pub fn check(body: &Value, max_operations: usize) -> Result<usize, ScimError> {
    let (ops, _) = parse(body, max_operations)?;
    let mut ids = HashMap::new();
    for op in &ops {
        target(&op.path)?;
        for r in references(op) {
            ids.entry(r.clone()).or_insert_with(|| format!("id-of-{r}"));
        }
        let mut data = op.data.clone().unwrap_or(Value::Null);
        substitute(&mut data, &ids);
    }
    Ok(ops.len())
}

/// Runs a BulkRequest and builds the BulkResponse body.
pub async fn run(
    svc: &Service,
    actor: &Actor,
    body: &Value,
    base: &str,
) -> Result<Value, ScimError> {
    let (ops, fail_on_errors) = parse(body, svc.settings.bulk_max_operations)?;
    let mut ids: HashMap<String, String> = HashMap::new();
    let mut results: Vec<Option<Value>> = vec![None; ops.len()];
    let declared: std::collections::HashSet<&str> =
        ops.iter().filter_map(|o| o.bulk_id.as_deref()).collect();
    let mut errors = 0usize;
    let mut pending: Vec<usize> = (0..ops.len()).collect();
    while !pending.is_empty() {
        // Run, in request order, every operation whose references are resolved.
        let ready: Vec<usize> = pending
            .iter()
            .copied()
            .filter(|&i| {
                references(&ops[i])
                    .iter()
                    .all(|r| ids.contains_key(r) || !declared.contains(r.as_str()))
            })
            .collect();
        let progress = !ready.is_empty();
        let batch = if progress { ready } else { pending.clone() };
        for i in batch {
            pending.retain(|&p| p != i);
            if fail_on_errors.is_some_and(|n| errors >= n) {
                break;
            }
            let op = &ops[i];
            let unresolved: Vec<String> = references(op)
                .into_iter()
                .filter(|r| !ids.contains_key(r))
                .collect();
            let outcome = if !unresolved.is_empty() {
                Err(ScimError::new(
                    StatusCode::CONFLICT,
                    format!(
                        "bulkId reference(s) {} cannot be resolved.",
                        unresolved.join(", ")
                    ),
                ))
            } else {
                execute(svc, actor, op, &ids).await
            };
            let result = match outcome {
                Ok((status, kind, id, stored)) => {
                    let mut r = Map::new();
                    r.insert(
                        "location".into(),
                        Value::String(format!("{base}{}/{id}", svc.resource_type(kind).endpoint)),
                    );
                    if let Some(s) = &stored {
                        r.insert("version".into(), Value::String(s.etag()));
                    }
                    if let (Some(b), Method::Post) = (&op.bulk_id, op.method) {
                        ids.insert(b.clone(), id);
                    }
                    r.insert("status".into(), Value::String(status.as_u16().to_string()));
                    r
                }
                Err(e) => {
                    errors += 1;
                    let mut r = Map::new();
                    r.insert(
                        "status".into(),
                        Value::String(e.status().as_u16().to_string()),
                    );
                    r.insert("response".into(), e.body());
                    r
                }
            };
            let mut entry = Map::new();
            entry.insert("method".into(), Value::String(op.method.as_str().into()));
            if let Some(b) = &op.bulk_id {
                entry.insert("bulkId".into(), Value::String(b.clone()));
            }
            entry.extend(result);
            results[i] = Some(Value::Object(entry));
        }
        if fail_on_errors.is_some_and(|n| errors >= n) {
            break;
        }
    }
    Ok(json!({
        "schemas": [BULK_RESPONSE_URN],
        "Operations": results.into_iter().flatten().collect::<Vec<_>>(),
    }))
}

async fn execute(
    svc: &Service,
    actor: &Actor,
    op: &BulkOp,
    ids: &HashMap<String, String>,
) -> Result<(StatusCode, Kind, String, Option<Stored>), ScimError> {
    let mut path = op.path.clone();
    if let Some((head, last)) = op.path.rsplit_once('/')
        && let Some(id) = last.strip_prefix("bulkId:").and_then(|r| ids.get(r))
    {
        path = format!("{head}/{id}");
    }
    let (kind, id) = target(&path)?;
    let mut data = op.data.clone().unwrap_or(Value::Null);
    substitute(&mut data, ids);
    let load = Load::default();
    let version = op.version.clone();
    let (status, stored) = match (op.method, id.as_deref()) {
        (Method::Post, None) => (
            StatusCode::CREATED,
            svc.create(actor, kind, data, load).await?,
        ),
        (Method::Put, Some(id)) => (
            StatusCode::OK,
            svc.replace(actor, kind, id, data, version, load).await?,
        ),
        (Method::Patch, Some(id)) => (
            StatusCode::OK,
            svc.patch(actor, kind, id, data, version, load).await?,
        ),
        (Method::Delete, Some(id)) => {
            svc.delete(actor, kind, id, version).await?;
            return Ok((StatusCode::NO_CONTENT, kind, id.to_string(), None));
        }
        (Method::Post, Some(_)) => {
            return Err(ScimError::invalid_path(
                "POST goes to a collection such as /Users.",
            ));
        }
        (_, None) => {
            return Err(ScimError::invalid_path(format!(
                "{} needs a resource id in its path.",
                op.method.as_str()
            )));
        }
    };
    let id = stored.row.id.clone();
    Ok((status, kind, id, Some(stored)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_validates_targets_and_limits_without_running() {
        let ok = json!({"Operations": [
            {"method": "POST", "bulkId": "u", "path": "/Users", "data": {"userName": "a"}},
            {"method": "POST", "bulkId": "g", "path": "/Groups",
             "data": {"displayName": "g", "members": [{"value": "bulkId:u"}]}},
            {"method": "DELETE", "path": "/Groups/bulkId:g"}]});
        assert_eq!(check(&ok, 3).unwrap(), 3);
        assert_eq!(
            check(&ok, 2).unwrap_err().status(),
            StatusCode::PAYLOAD_TOO_LARGE
        );
        let bad = json!({"Operations": [{"method": "DELETE", "path": "/Users/a/b"}]});
        let e = check(&bad, 3).unwrap_err();
        assert_eq!(e.scim_type().map(|t| t.as_str()), Some("invalidPath"));
    }

    #[test]
    fn parse_enforces_shape_and_limits() {
        let ok = json!({"schemas": [BULK_REQUEST_URN], "failOnErrors": 1, "Operations": [
            {"method": "post", "bulkId": "a", "path": "/Users", "data": {"userName": "x"}},
            {"method": "DELETE", "path": "/Users/1"}]});
        let (ops, foe) = parse(&ok, 10).unwrap();
        assert_eq!((ops.len(), foe), (2, Some(1)));
        assert_eq!(parse(&ok, 1).unwrap_err().status(), 413);
        let dup = json!({"Operations": [
            {"method": "POST", "bulkId": "a", "path": "/Users", "data": {}},
            {"method": "POST", "bulkId": "a", "path": "/Users", "data": {}}]});
        assert!(parse(&dup, 10).is_err());
        assert!(
            parse(
                &json!({"Operations": [{"method": "GET", "path": "/Users"}]}),
                10
            )
            .is_err()
        );
    }

    #[test]
    fn references_are_found_in_data_and_path() {
        let op = BulkOp {
            method: Method::Patch,
            bulk_id: None,
            version: None,
            path: "/Groups/bulkId:g".into(),
            data: Some(
                json!({"Operations": [{"op": "add", "path": "members", "value": [{"value": "bulkId:u"}]}]}),
            ),
        };
        let mut refs = references(&op);
        refs.sort();
        assert_eq!(refs, vec!["g".to_string(), "u".to_string()]);
        assert_eq!(
            target("/Users/abc").unwrap(),
            (Kind::User, Some("abc".into()))
        );
        assert!(target("/Nope").is_err());
    }
}
