//! Request bodies the checks send: users, groups and PATCH requests with
//! unique names (a fresh UUID each time), so runs never collide with each
//! other or with data already on the server. The `entra_*` and `okta_*`
//! bodies copy the shape those clients really send (Microsoft's "Develop a
//! SCIM endpoint" samples, Okta's SCIM 2.0 reference), down to read-only
//! noise like `meta` and `groups`.

use serde_json::{Value, json};
use uuid::Uuid;

use crate::expect::{ENTERPRISE_SCHEMA, GROUP_SCHEMA, PATCH_SCHEMA, USER_SCHEMA};

/// A fresh 12-hex-digit token, unique enough to keep runs apart.
pub fn unique_token() -> String {
    Uuid::new_v4().simple().to_string()[..12].to_owned()
}

/// A unique plain name, e.g. `conf-admins-1a2b3c4d5e6f`.
pub fn unique_name(tag: &str) -> String {
    format!("conf-{tag}-{}", unique_token())
}

/// A unique, email-shaped userName (what Entra ID and Okta send).
pub fn unique_user_name(tag: &str) -> String {
    format!("{}@example.com", unique_name(tag))
}

/// A typical IdP-created user: name, displayName, one work email, active.
pub fn user(user_name: &str) -> Value {
    json!({
        "schemas": [USER_SCHEMA],
        "userName": user_name,
        "name": {"givenName": "Conformance", "familyName": "Tester"},
        "displayName": "Conformance Tester",
        "active": true,
        "emails": [{"value": user_name, "type": "work", "primary": true}]
    })
}

/// [`user`] plus extra top-level attributes (later keys win).
pub fn user_with(user_name: &str, extra: &Value) -> Value {
    merge(user(user_name), extra)
}

/// `body` with the top-level keys of `extra` added or overwritten.
pub fn merge(mut body: Value, extra: &Value) -> Value {
    if let (Some(target), Some(source)) = (body.as_object_mut(), extra.as_object()) {
        for (k, v) in source {
            target.insert(k.clone(), v.clone());
        }
    }
    body
}

/// A random GUID, as Entra ID sends for externalId and "Test connection".
pub fn guid() -> String {
    Uuid::new_v4().to_string()
}

/// Entra ID's create-user body: both schemas, a GUID externalId, a work
/// email, `meta.resourceType` and an empty `roles`.
pub fn entra_user(user_name: &str, external_id: &str, work_email: &str) -> Value {
    json!({
        "schemas": [USER_SCHEMA, ENTERPRISE_SCHEMA],
        "externalId": external_id,
        "userName": user_name,
        "active": true,
        "emails": [{"primary": true, "type": "work", "value": work_email}],
        "meta": {"resourceType": "User"},
        "name": {"formatted": "Conformance Tester", "familyName": "Tester", "givenName": "Conformance"},
        "roles": []
    })
}

/// Entra ID's create-group body: no members (they follow by PATCH).
pub fn entra_group(display_name: &str, external_id: &str) -> Value {
    json!({
        "schemas": [GROUP_SCHEMA],
        "externalId": external_id,
        "displayName": display_name,
        "meta": {"resourceType": "Group"}
    })
}

/// Okta's create-user body: a password and an empty `groups`.
pub fn okta_user(user_name: &str, password: &str) -> Value {
    json!({
        "schemas": [USER_SCHEMA],
        "userName": user_name,
        "name": {"givenName": "Conformance", "familyName": "Tester"},
        "emails": [{"primary": true, "value": user_name, "type": "work"}],
        "displayName": "Conformance Tester",
        "locale": "en-US",
        "externalId": format!("00u{}", unique_token()),
        "groups": [],
        "password": password,
        "active": true
    })
}

/// An Okta Group Push member: `value` plus the user's `display`.
pub fn okta_member(id: &str) -> Value {
    json!({"value": id, "display": format!("{id}@example.com")})
}

/// Percent-encodes a query value the way Okta does (`%20`, `%22`, `%40`),
/// unlike the `+` form encoding the HTTP client uses.
pub fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A group with `members` given as user ids.
pub fn group(display_name: &str, members: &[&str]) -> Value {
    let members: Vec<Value> = members.iter().map(|id| json!({"value": id})).collect();
    json!({
        "schemas": [GROUP_SCHEMA],
        "displayName": display_name,
        "members": members
    })
}

/// A PatchOp request carrying `operations` (a JSON array).
pub fn patch(operations: Value) -> Value {
    json!({"schemas": [PATCH_SCHEMA], "Operations": operations})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_tagged() {
        let a = unique_user_name("alice");
        let b = unique_user_name("alice");
        assert_ne!(a, b);
        assert!(a.starts_with("conf-alice-") && a.ends_with("@example.com"));
    }

    #[test]
    fn user_with_overrides_and_adds() {
        let body = user_with("u@example.com", &json!({"active": false, "title": "T"}));
        assert_eq!(body["active"], json!(false));
        assert_eq!(body["title"], json!("T"));
        assert_eq!(body["userName"], json!("u@example.com"));
    }

    #[test]
    fn percent_encoding_matches_okta() {
        assert_eq!(
            percent_encode("userName eq \"a.b@x.io\""),
            "userName%20eq%20%22a.b%40x.io%22"
        );
    }
}
