//! Error responses (RFC 7644 §3.12): authentication failures are 401 with
//! `WWW-Authenticate` (RFC 6750 §3), malformed JSON is 400 `invalidSyntax`,
//! a missing required attribute is 400 `invalidValue`, unknown resources are
//! 404 for every method. Every error is checked for the full error contract
//! (`schemas` = [Error URN], `status` as a string, `application/scim+json`)
//! by `expect::error`, here and in every other area.

use reqwest::Method;
use serde_json::json;
use uuid::Uuid;

use crate::client::{Reply, SCIM_MEDIA_TYPE};
use crate::expect::{self, USER_SCHEMA, ensure, id_of};
use crate::fixtures;
use crate::runner::{Check, CheckResult};
use crate::session::{Endpoint, Session};

/// Error checks.
pub const CHECKS: &[Check] = &[
    Check::new("errors/missing_token_is_401", missing_token),
    Check::new("errors/wrong_token_is_401", wrong_token),
    Check::new(
        "errors/malformed_json_is_400_invalid_syntax",
        malformed_json,
    ),
    Check::new(
        "errors/missing_username_is_400_invalid_value",
        missing_user_name,
    ),
    Check::new(
        "errors/unknown_resource_is_404_for_every_method",
        unknown_resource,
    ),
];

fn expect_unauthorized(reply: &Reply) -> CheckResult {
    expect::error(reply, 401, None)?;
    let challenge = reply.header("www-authenticate").unwrap_or_default();
    ensure!(
        challenge.to_ascii_lowercase().starts_with("bearer"),
        "{}: 401 without a `WWW-Authenticate: Bearer` challenge (RFC 6750 §3)",
        reply.what
    );
    Ok(())
}

fn missing_token(s: &Session) -> CheckResult {
    expect_unauthorized(&s.client().get("/Users").without_token().send()?)?;
    let body = fixtures::user(&fixtures::unique_user_name("noauth"));
    let reply = s.client().post("/Users", &body).without_token().send()?;
    if reply.status == 201
        && let Ok(id) = reply.body().and_then(id_of)
    {
        s.track(Endpoint::Users, &id);
    }
    expect_unauthorized(&reply)
}

fn wrong_token(s: &Session) -> CheckResult {
    let token = format!("wrong-{}", Uuid::new_v4());
    expect_unauthorized(&s.client().get("/Users").with_token(&token).send()?)
}

/// RFC 7644 §3.12, Table 9: `invalidSyntax` is for a request body that is
/// not a valid SCIM message, as for JSON that does not parse.
fn malformed_json(s: &Session) -> CheckResult {
    let truncated = format!("{{\"schemas\": [\"{USER_SCHEMA}\"], \"userName\": ");
    for broken in [truncated.as_str(), "[]", "not json at all"] {
        let reply = s
            .client()
            .request(Method::POST, "/Users")
            .raw_body(SCIM_MEDIA_TYPE, broken)
            .send()?;
        expect::error(&reply, 400, Some("invalidSyntax"))
            .map_err(|e| format!("body {broken:?}: {e}"))?;
    }
    let user = s.create_user("malformed")?;
    let path = format!("/Users/{}", id_of(&user)?);
    for method in [Method::PUT, Method::PATCH] {
        let reply = s
            .client()
            .request(method, &path)
            .raw_body(SCIM_MEDIA_TYPE, "{\"Operations\": [")
            .send()?;
        expect::error(&reply, 400, Some("invalidSyntax"))?;
    }
    Ok(())
}

/// RFC 7643 §4.1.1 (userName is required) and RFC 7644 §3.12, Table 9:
/// `invalidValue` covers "a required value was missing".
fn missing_user_name(s: &Session) -> CheckResult {
    let body = json!({"schemas": [USER_SCHEMA], "displayName": "No userName"});
    let reply = s.post(Endpoint::Users, &body)?;
    expect::error(&reply, 400, Some("invalidValue"))
}

fn unknown_resource(s: &Session) -> CheckResult {
    let id = Uuid::new_v4();
    let user = fixtures::user(&fixtures::unique_user_name("ghost"));
    let group = fixtures::group(&fixtures::unique_name("ghost"), &[]);
    let ops = fixtures::patch(json!([{"op": "replace", "path": "displayName", "value": "x"}]));
    let client = s.client();
    let requests = [
        client.get(&format!("/Users/{id}")),
        client.put(&format!("/Users/{id}"), &user),
        client.patch(&format!("/Users/{id}"), &ops),
        client.delete(&format!("/Users/{id}")),
        client.get(&format!("/Groups/{id}")),
        client.put(&format!("/Groups/{id}"), &group),
        client.patch(&format!("/Groups/{id}"), &ops),
        client.delete(&format!("/Groups/{id}")),
    ];
    for request in requests {
        let reply = request.send()?;
        if (200..300).contains(&reply.status) {
            // A server that upserts on PUT created something; remove it.
            let endpoint = if reply.what.contains("/Groups/") {
                Endpoint::Groups
            } else {
                Endpoint::Users
            };
            s.track(endpoint, &id.to_string());
        }
        expect::error(&reply, 404, None)?;
    }
    Ok(())
}
