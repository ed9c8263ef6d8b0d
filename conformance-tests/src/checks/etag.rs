//! ETags (RFC 7644 §3.14, RFC 9110 §8.8.3 and §13.1), run only when the
//! ServiceProviderConfig advertises `etag.supported`: every response that
//! carries a resource has a weak `ETag` equal to `meta.version`, and every
//! write changes it; `If-None-Match` with the current tag answers 304; a
//! stale `If-Match` on PUT, PATCH or DELETE answers 412 and writes nothing;
//! the current tag lets the write through.

use reqwest::Method;
use serde_json::{Value, json};

use crate::client::Reply;
use crate::expect::{self, attr, ensure, excerpt, id_of, str_attr};
use crate::fixtures;
use crate::runner::{Check, CheckResult};
use crate::session::{Endpoint, Session};

/// ETag checks.
pub const CHECKS: &[Check] = &[
    Check::new("etag/weak_etag_is_meta_version_on_every_write", every_write),
    Check::new("etag/if_none_match_current_is_304", if_none_match),
    Check::new("etag/stale_if_match_put_is_412", stale_put),
    Check::new("etag/stale_if_match_patch_is_412", stale_patch),
    Check::new("etag/stale_if_match_delete_is_412", stale_delete),
    Check::new("etag/current_if_match_succeeds", current_if_match),
];

/// Asserts the reply's `ETag` is weak (`W/"…"`) and equals the body's
/// `meta.version`; returns it.
fn version(reply: &Reply, want_status: u16) -> Result<String, String> {
    let body = reply.json_with(want_status)?;
    let header = reply
        .header("etag")
        .ok_or_else(|| format!("no ETag header ({})", reply.describe()))?;
    ensure!(
        header.starts_with("W/\"") && header.ends_with('"') && header.len() > 4,
        "{}: ETag {header:?} is not a weak entity tag W/\"…\"",
        reply.what
    );
    let meta = str_attr(body, "meta.version")?;
    ensure!(
        meta == header,
        "{}: ETag {header:?} differs from meta.version {meta:?}",
        reply.what
    );
    Ok(header.to_owned())
}

/// A fresh user with title "v1": `(path, its ETag)`.
fn user(s: &Session) -> Result<(String, String), String> {
    let name = fixtures::unique_user_name("etag");
    let body = fixtures::user_with(&name, &json!({"title": "v1"}));
    let reply = s.post(Endpoint::Users, &body)?;
    let tag = version(&reply, 201)?;
    Ok((format!("/Users/{}", id_of(reply.body()?)?), tag))
}

fn title_patch(title: &str) -> Value {
    fixtures::patch(json!([{"op": "replace", "path": "title", "value": title}]))
}

fn every_write(s: &Session) -> CheckResult {
    if !s.ctx().supports("etag")? {
        return Ok(());
    }
    let (path, created) = user(s)?;
    let got = version(&s.client().get(&path).send()?, 200)?;
    ensure!(
        got == created,
        "GET ETag {got:?} differs from POST's {created:?}"
    );
    let name = fixtures::unique_user_name("etag-put");
    let body = fixtures::user_with(&name, &json!({"title": "v2"}));
    let put = version(&s.client().put(&path, &body).send()?, 200)?;
    let patched = version(&s.client().patch(&path, &title_patch("v3")).send()?, 200)?;
    let got = version(&s.client().get(&path).send()?, 200)?;
    ensure!(
        created != put && put != patched && got == patched,
        "versions POST {created} → PUT {put} → PATCH {patched} → GET {got}: each write must change it"
    );
    let group = s.create_group("etag", &[])?;
    let gpath = format!("/Groups/{}", id_of(&group)?);
    let before = version(&s.client().get(&gpath).send()?, 200)?;
    let uid = path.trim_start_matches("/Users/");
    let ops = fixtures::patch(json!([{"op": "add", "path": "members", "value": [{"value": uid}]}]));
    let after = version(&s.client().patch(&gpath, &ops).send()?, 200)?;
    ensure!(
        before != after,
        "adding a member left the group's version {before}"
    );
    Ok(())
}

/// RFC 9110 §13.1.2: a matching `If-None-Match` on GET is 304 with no
/// body (and the ETag); once the resource changes, the old tag gets 200.
fn if_none_match(s: &Session) -> CheckResult {
    if !s.ctx().supports("etag")? {
        return Ok(());
    }
    let (path, tag) = user(s)?;
    let reply = s.client().get(&path).header("If-None-Match", &tag).send()?;
    reply.expect_status(304)?;
    ensure!(
        reply.text.is_empty(),
        "304 with a body: {}",
        reply.describe()
    );
    ensure!(
        reply.header("etag") == Some(tag.as_str()),
        "304 without the current ETag {tag}: {:?}",
        reply.header("etag")
    );
    s.client()
        .patch(&path, &title_patch("v2"))
        .send()?
        .json_with(200)?;
    let reply = s.client().get(&path).header("If-None-Match", &tag).send()?;
    let fresh = version(&reply, 200)?;
    ensure!(fresh != tag, "the ETag did not change after PATCH");
    Ok(())
}

/// Makes a user whose first ETag is stale: `(path, stale, current GET)`.
fn stale_setup(s: &Session) -> Result<(String, String, Value), String> {
    let (path, stale) = user(s)?;
    s.client()
        .patch(&path, &title_patch("v2"))
        .send()?
        .json_with(200)?;
    let current = s.fetch(&path)?;
    ensure!(
        attr(&current, "meta.version") != Some(&json!(stale)),
        "PATCH did not change meta.version"
    );
    Ok((path, stale, current))
}

/// Sends `method` with a stale `If-Match`; requires 412 and an unchanged
/// resource.
fn stale(s: &Session, method: Method, body: Option<Value>) -> CheckResult {
    if !s.ctx().supports("etag")? {
        return Ok(());
    }
    let (path, stale, before) = stale_setup(s)?;
    let mut request = s.client().request(method, &path).header("If-Match", &stale);
    if let Some(body) = &body {
        request = request.json(body);
    }
    let reply = request.send()?;
    expect::error(&reply, 412, None)?;
    let after = s.fetch(&path)?;
    ensure!(
        attr(&after, "title") == attr(&before, "title")
            && attr(&after, "meta.version") == attr(&before, "meta.version"),
        "{} with a stale If-Match was refused but changed the resource: {}",
        reply.what,
        excerpt(&after)
    );
    Ok(())
}

fn stale_put(s: &Session) -> CheckResult {
    let name = fixtures::unique_user_name("etag-stale");
    stale(
        s,
        Method::PUT,
        Some(fixtures::user_with(&name, &json!({"title": "v3"}))),
    )
}

fn stale_patch(s: &Session) -> CheckResult {
    stale(s, Method::PATCH, Some(title_patch("v3")))
}

fn stale_delete(s: &Session) -> CheckResult {
    stale(s, Method::DELETE, None)
}

fn current_if_match(s: &Session) -> CheckResult {
    if !s.ctx().supports("etag")? {
        return Ok(());
    }
    let (path, tag) = user(s)?;
    let current = s.fetch(&path)?;
    let mut body = current.clone();
    if let Some(obj) = body.as_object_mut() {
        obj.insert("title".into(), json!("v2"));
    }
    let reply = s
        .client()
        .put(&path, &body)
        .header("If-Match", &tag)
        .send()?;
    let tag = version(&reply, 200)?;
    let reply = s
        .client()
        .patch(&path, &title_patch("v3"))
        .header("If-Match", &tag)
        .send()?;
    let tag = version(&reply, 200)?;
    ensure!(
        str_attr(reply.body()?, "title")? == "v3",
        "PATCH with the current If-Match did not apply"
    );
    let reply = s.client().delete(&path).header("If-Match", &tag).send()?;
    reply.expect_status(204)?;
    expect::error(&s.client().get(&path).send()?, 404, None)
}
