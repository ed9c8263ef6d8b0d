//! The `scim` adapter: a downstream SCIM 2.0 service provider.
//!
//! Creates with POST and remembers the app's id. A 409 on create means the
//! account already exists (made by hand, or by an attempt whose answer was
//! lost): the adapter finds it by `userName` (or a group's `displayName`),
//! links it and brings it in line, so a retried create never duplicates an
//! account. Updates are PATCH operations for exactly the attributes that
//! changed (member additions and removals for groups), or a PUT where the
//! app is configured for it. Disable is an update of `active`.
//!
//! Listing (for reconciliation) pages with `startIndex`/`count`; its cursor
//! is the next `startIndex`, as a string. A server that answers with fewer
//! resources than asked for (its own page cap) is asked again until the
//! page is full or the list ends, so a short page always means the end.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Map, Value, json};

use super::http::{client, read_secret, status_error, transport_error};
use super::{Adapter, AdapterError, Applied, ErrorKind, OpContext, RemoteAccount};
use crate::config::{ScimAdapterSettings, UpdateMethod};
use crate::domain::Kind;

const SCIM_JSON: &str = "application/scim+json";
const PATCH_URN: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// A downstream SCIM service provider.
pub struct ScimAdapter {
    base: String,
    token: Option<String>,
    update: UpdateMethod,
    http: reqwest::Client,
}

impl ScimAdapter {
    /// Builds the adapter; reads the token now.
    pub fn new(s: &ScimAdapterSettings, timeout: Duration) -> anyhow::Result<Self> {
        let base = s.base_url.trim_end_matches('/').to_string();
        anyhow::ensure!(
            base.starts_with("https://") || base.starts_with("http://"),
            "base_url must be an http(s) URL"
        );
        Ok(Self {
            base,
            token: read_secret(
                s.token_env.as_deref(),
                s.token_file.as_deref(),
                "scim token",
            )?,
            update: s.update,
            http: client(timeout)?,
        })
    }

    fn endpoint(kind: Kind) -> &'static str {
        match kind {
            Kind::User => "Users",
            Kind::Group => "Groups",
        }
    }

    async fn call(
        &self,
        method: Method,
        url: String,
        body: Option<&Value>,
    ) -> Result<(StatusCode, String), AdapterError> {
        let mut rb = self.http.request(method, url).header("Accept", SCIM_JSON);
        if let Some(t) = &self.token {
            rb = rb.bearer_auth(t);
        }
        if let Some(b) = body {
            rb = rb.header("Content-Type", SCIM_JSON).body(b.to_string());
        }
        let res = rb.send().await.map_err(|e| transport_error(&e))?;
        let status = res.status();
        let headers = res.headers().clone();
        let text = res.text().await.map_err(|e| transport_error(&e))?;
        if status.is_success() {
            Ok((status, text))
        } else {
            Err(status_error(status, &headers, &text))
        }
    }

    /// The ids of the app's accounts of `kind` whose `attr` equals `value`.
    async fn lookup(
        &self,
        kind: Kind,
        attr: &str,
        value: &str,
    ) -> Result<Vec<String>, AdapterError> {
        let filter = format!("{attr} eq {}", Value::String(value.into()));
        let url = reqwest::Url::parse_with_params(
            &format!("{}/{}", self.base, Self::endpoint(kind)),
            &[("filter", filter.as_str()), ("attributes", "id")],
        )
        .map_err(|e| AdapterError::rejected(format!("bad lookup URL: {e}")))?;
        let (_, body) = self.call(Method::GET, url.to_string(), None).await?;
        let list: Value = serde_json::from_str(&body)
            .map_err(|_| AdapterError::transient("lookup answered with a body that is not JSON"))?;
        Ok(list
            .get("Resources")
            .and_then(Value::as_array)
            .map(|r| {
                r.iter()
                    .filter_map(|x| Some(x.get("id")?.as_str()?.to_string()))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Finds an existing account by its unique name.
    async fn find_existing(&self, kind: Kind, account: &Value) -> Result<String, AdapterError> {
        let attr = unique_name(kind);
        let value = account.get(attr).and_then(Value::as_str).ok_or_else(|| {
            AdapterError::rejected(format!("409 on create and no {attr} to look up"))
        })?;
        match self.lookup(kind, attr, value).await?.as_slice() {
            [one] => Ok(one.clone()),
            [] => Err(AdapterError::rejected(format!(
                "409 on create, yet no account with {attr} {value:?} was found"
            ))),
            _ => Err(AdapterError::rejected(format!(
                "409 on create and several accounts have {attr} {value:?}"
            ))),
        }
    }

    async fn replace(
        &self,
        kind: Kind,
        remote_id: &str,
        after: &Value,
    ) -> Result<Applied, AdapterError> {
        let mut body = after.clone();
        if let Some(o) = body.as_object_mut() {
            o.insert("id".into(), Value::String(remote_id.into()));
        }
        let url = format!("{}/{}/{}", self.base, Self::endpoint(kind), remote_id);
        let (status, _) = self.call(Method::PUT, url, Some(&body)).await?;
        Ok(Applied {
            remote_id: None,
            adopted: false,
            status: Some(status.as_u16()),
        })
    }

    async fn patch(
        &self,
        kind: Kind,
        remote_id: &str,
        ops: Vec<Value>,
    ) -> Result<Applied, AdapterError> {
        if ops.is_empty() {
            return Ok(Applied::default());
        }
        let body = json!({ "schemas": [PATCH_URN], "Operations": ops });
        let url = format!("{}/{}/{}", self.base, Self::endpoint(kind), remote_id);
        let (status, _) = self.call(Method::PATCH, url, Some(&body)).await?;
        Ok(Applied {
            remote_id: None,
            adopted: false,
            status: Some(status.as_u16()),
        })
    }

    /// One `GET /Users` (or `/Groups`) page: the accounts and `totalResults`.
    async fn list_page(
        &self,
        kind: Kind,
        start: usize,
        count: usize,
    ) -> Result<(Vec<RemoteAccount>, Option<usize>), AdapterError> {
        let url = reqwest::Url::parse_with_params(
            &format!("{}/{}", self.base, Self::endpoint(kind)),
            &[
                ("startIndex", start.to_string()),
                ("count", count.to_string()),
            ],
        )
        .map_err(|e| AdapterError::rejected(format!("bad listing URL: {e}")))?;
        let (_, body) = self.call(Method::GET, url.to_string(), None).await?;
        let list: Value = serde_json::from_str(&body).map_err(|_| {
            AdapterError::transient("listing answered with a body that is not JSON")
        })?;
        let total = list
            .get("totalResults")
            .and_then(Value::as_u64)
            .map(|t| t as usize);
        let resources = match list.get("Resources") {
            Some(Value::Array(r)) => r.clone(),
            None | Some(Value::Null) => Vec::new(),
            Some(_) => {
                return Err(AdapterError::transient(
                    "listing answered with Resources that is not a list",
                ));
            }
        };
        let accounts = resources.into_iter().filter_map(remote_account).collect();
        Ok((accounts, total))
    }
}

/// A listed resource as an account: the server's `id` is the remote id,
/// `externalId` the key, and the attributes are the rest minus `id`,
/// `meta` and `schemas`.
fn remote_account(resource: Value) -> Option<RemoteAccount> {
    let Value::Object(mut attrs) = resource else {
        return None;
    };
    let remote_id = match attrs.remove("id")? {
        Value::String(s) => s,
        other => other.to_string(),
    };
    attrs.remove("meta");
    attrs.remove("schemas");
    let key = attrs
        .get("externalId")
        .and_then(Value::as_str)
        .map(str::to_string);
    Some(RemoteAccount {
        remote_id,
        key,
        attributes: Value::Object(attrs),
    })
}

/// The attribute that names an account uniquely.
fn unique_name(kind: Kind) -> &'static str {
    match kind {
        Kind::User => "userName",
        Kind::Group => "displayName",
    }
}

/// PATCH operations for an update whose starting state is in doubt: as
/// [`diff_ops`], but members are replaced as a whole instead of added and
/// removed one by one, so the result is the same whichever state the
/// group was in.
fn whole_ops(before: &Map<String, Value>, after: &Map<String, Value>) -> Vec<Value> {
    let without = |m: &Map<String, Value>| {
        let mut m = m.clone();
        m.remove("members");
        m
    };
    let mut ops = diff_ops(&without(before), &without(after));
    match after.get("members") {
        Some(m) if before.get("members") != Some(m) => {
            ops.push(json!({ "op": "replace", "path": "members", "value": m }));
        }
        None if before.contains_key("members") => {
            ops.push(json!({ "op": "remove", "path": "members" }));
        }
        _ => {}
    }
    ops
}

fn member_values(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|m| m.get("value")?.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// PATCH operations that turn `before` into `after`: `replace` for every
/// attribute whose value differs, `remove` for every attribute that is
/// gone, extension attributes one by one, and group members as additions
/// and removals rather than a rewrite of the whole list.
pub fn diff_ops(before: &Map<String, Value>, after: &Map<String, Value>) -> Vec<Value> {
    let mut ops = Vec::new();
    for (k, v) in after {
        if k == "schemas" || k == "id" || k == "meta" {
            continue;
        }
        if k == "members" {
            let old: std::collections::BTreeSet<String> =
                member_values(before.get("members")).into_iter().collect();
            let new: std::collections::BTreeSet<String> =
                member_values(Some(v)).into_iter().collect();
            for gone in old.difference(&new) {
                ops.push(json!({
                    "op": "remove",
                    "path": format!("members[value eq {}]", Value::String(gone.clone()))
                }));
            }
            let added: Vec<Value> = new
                .difference(&old)
                .map(|v| json!({ "value": v }))
                .collect();
            if !added.is_empty() {
                ops.push(json!({ "op": "add", "path": "members", "value": added }));
            }
            continue;
        }
        if k.starts_with("urn:")
            && let (Some(new), old) = (v.as_object(), before.get(k).and_then(Value::as_object))
        {
            let empty = Map::new();
            let old = old.unwrap_or(&empty);
            for (sk, sv) in new {
                if old.get(sk) != Some(sv) {
                    ops.push(json!({ "op": "replace", "path": format!("{k}:{sk}"), "value": sv }));
                }
            }
            for sk in old.keys().filter(|sk| !new.contains_key(*sk)) {
                ops.push(json!({ "op": "remove", "path": format!("{k}:{sk}") }));
            }
            continue;
        }
        if before.get(k) != Some(v) {
            ops.push(json!({ "op": "replace", "path": k, "value": v }));
        }
    }
    for k in before.keys() {
        if !after.contains_key(k) && k != "schemas" && k != "id" && k != "meta" {
            ops.push(json!({ "op": "remove", "path": k }));
        }
    }
    ops
}

#[async_trait::async_trait]
impl Adapter for ScimAdapter {
    async fn create(&self, ctx: &OpContext, account: &Value) -> Result<Applied, AdapterError> {
        let url = format!("{}/{}", self.base, Self::endpoint(ctx.kind));
        match self.call(Method::POST, url, Some(account)).await {
            Ok((status, body)) => {
                let id = serde_json::from_str::<Value>(&body)
                    .ok()
                    .and_then(|v| v.get("id")?.as_str().map(str::to_string))
                    .ok_or_else(|| AdapterError {
                        // The account may exist now: the retry's 409 will link it.
                        kind: ErrorKind::Transient,
                        status: Some(status.as_u16()),
                        message: "create answered without a resource id".into(),
                    })?;
                Ok(Applied {
                    remote_id: Some(id),
                    adopted: false,
                    status: Some(status.as_u16()),
                })
            }
            Err(e) if e.status == Some(409) => {
                let id = self.find_existing(ctx.kind, account).await?;
                let empty = Map::new();
                let after = account.as_object().unwrap_or(&empty);
                // Bring the adopted account in line with what it should be.
                let applied = match self.update {
                    UpdateMethod::Put => self.replace(ctx.kind, &id, account).await?,
                    UpdateMethod::Patch => {
                        let ops: Vec<Value> = after
                            .iter()
                            .filter(|(k, _)| *k != "schemas")
                            .flat_map(|(k, v)| {
                                if k == "members" {
                                    vec![json!({ "op": "replace", "path": k, "value": v })]
                                } else {
                                    diff_ops(&Map::new(), &Map::from_iter([(k.clone(), v.clone())]))
                                }
                            })
                            .collect();
                        self.patch(ctx.kind, &id, ops).await?
                    }
                };
                Ok(Applied {
                    remote_id: Some(id),
                    adopted: true,
                    status: applied.status.or(Some(409)),
                })
            }
            Err(e) => Err(e),
        }
    }

    async fn locate(
        &self,
        ctx: &OpContext,
        account: &Value,
    ) -> Result<Option<String>, AdapterError> {
        // The gateway id travels as externalId where the mapping sends it;
        // it survives a rename, the unique name does not.
        let by = ["externalId", unique_name(ctx.kind)]
            .into_iter()
            .find_map(|attr| Some((attr, account.get(attr)?.as_str()?)));
        let Some((attr, value)) = by else {
            return Ok(None);
        };
        match self.lookup(ctx.kind, attr, value).await?.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some(one.clone())),
            _ => Err(AdapterError::rejected(format!(
                "several accounts have {attr} {value:?}"
            ))),
        }
    }

    async fn update(
        &self,
        ctx: &OpContext,
        remote_id: &str,
        before: &Value,
        after: &Value,
    ) -> Result<Applied, AdapterError> {
        match self.update {
            UpdateMethod::Put => self.replace(ctx.kind, remote_id, after).await,
            UpdateMethod::Patch => {
                let empty = Map::new();
                let (before, after) = (
                    before.as_object().unwrap_or(&empty),
                    after.as_object().unwrap_or(&empty),
                );
                let ops = if ctx.in_doubt {
                    whole_ops(before, after)
                } else {
                    diff_ops(before, after)
                };
                self.patch(ctx.kind, remote_id, ops).await
            }
        }
    }

    async fn delete(
        &self,
        ctx: &OpContext,
        remote_id: &str,
        _last: &Value,
    ) -> Result<Applied, AdapterError> {
        let url = format!("{}/{}/{}", self.base, Self::endpoint(ctx.kind), remote_id);
        match self.call(Method::DELETE, url, None).await {
            Ok((status, _)) => Ok(Applied {
                remote_id: None,
                adopted: false,
                status: Some(status.as_u16()),
            }),
            Err(e) if e.kind == ErrorKind::NotFound => Ok(Applied {
                remote_id: None,
                adopted: false,
                status: e.status,
            }),
            Err(e) => Err(e),
        }
    }

    fn can_list(&self) -> bool {
        true
    }

    async fn list(
        &self,
        kind: Kind,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<RemoteAccount>, AdapterError> {
        let limit = limit.max(1);
        let mut start = start_index(after)?;
        let mut out: Vec<RemoteAccount> = Vec::new();
        while out.len() < limit {
            let (page, total) = self.list_page(kind, start, limit - out.len()).await?;
            let n = page.len();
            out.extend(page);
            start += n;
            if n == 0 || total.is_some_and(|t| start > t) {
                break;
            }
        }
        out.truncate(limit);
        Ok(out)
    }

    fn next_cursor(&self, after: Option<&str>, page: &[RemoteAccount]) -> Option<String> {
        let start = start_index(after).ok()?;
        Some((start + page.len()).to_string())
    }
}

/// The `startIndex` a listing cursor stands for (1 at the start).
fn start_index(after: Option<&str>) -> Result<usize, AdapterError> {
    match after {
        None => Ok(1),
        Some(a) => a
            .parse::<usize>()
            .ok()
            .filter(|s| *s >= 1)
            .ok_or_else(|| AdapterError::rejected(format!("bad listing cursor {a:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn diff_sends_only_what_changed() {
        let before = obj(json!({
            "schemas": ["x"], "userName": "a", "title": "Dev", "active": true,
            "urn:e:User": {"department": "R&D", "costCenter": "1"}
        }));
        let after = obj(json!({
            "schemas": ["x"], "userName": "a", "active": false,
            "urn:e:User": {"department": "Sales"}
        }));
        let ops = diff_ops(&before, &after);
        assert_eq!(
            ops,
            vec![
                json!({"op": "replace", "path": "active", "value": false}),
                json!({"op": "replace", "path": "urn:e:User:department", "value": "Sales"}),
                json!({"op": "remove", "path": "urn:e:User:costCenter"}),
                json!({"op": "remove", "path": "title"}),
            ]
        );
        assert!(diff_ops(&after, &after).is_empty());
    }

    #[test]
    fn listed_resources_become_accounts_keyed_by_external_id() {
        let a = remote_account(json!({
            "schemas": ["x"], "id": "r1", "externalId": "gw-1", "userName": "ada",
            "meta": {"resourceType": "User"}
        }))
        .unwrap();
        assert_eq!(a.remote_id, "r1");
        assert_eq!(a.key.as_deref(), Some("gw-1"));
        assert_eq!(
            a.attributes,
            json!({"externalId": "gw-1", "userName": "ada"})
        );
        assert!(remote_account(json!({"userName": "no id"})).is_none());
        assert_eq!(start_index(None).unwrap(), 1);
        assert_eq!(start_index(Some("51")).unwrap(), 51);
        assert!(start_index(Some("0")).is_err());
    }

    #[test]
    fn members_change_by_addition_and_removal() {
        let before = obj(json!({"displayName": "g", "members": [{"value": "1"}, {"value": "2"}]}));
        let after = obj(json!({"displayName": "g", "members": [{"value": "2"}, {"value": "3"}]}));
        assert_eq!(
            diff_ops(&before, &after),
            vec![
                json!({"op": "remove", "path": "members[value eq \"1\"]"}),
                json!({"op": "add", "path": "members", "value": [{"value": "3"}]}),
            ]
        );
    }
}
