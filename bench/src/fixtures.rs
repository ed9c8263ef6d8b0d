//! The documents the benchmark sends: users shaped like the ones Entra ID
//! provisions (userName, a work email, name, enterprise department), groups,
//! PATCH bodies and Bulk requests. Loaded user `i` is fully determined by
//! `i`, so the benchmark keeps only the ids the gateway assigned.

use serde_json::{Value, json};

const USER_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const ENTERPRISE_URN: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const GROUP_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const PATCH_URN: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const BULK_URN: &str = "urn:ietf:params:scim:api:messages:2.0:BulkRequest";

/// `userName` of loaded user `i`.
pub fn user_name(i: usize) -> String {
    format!("user{i}@bench.example")
}

/// Work email of loaded user `i` (differs from the userName, so the email
/// filter cannot be answered by the userName index).
pub fn work_email(i: usize) -> String {
    format!("mail.{i}@corp.bench.example")
}

/// A User document named `name` with work email `email`.
pub fn user(name: &str, email: &str, i: usize) -> Value {
    json!({
        "schemas": [USER_URN, ENTERPRISE_URN],
        "userName": name,
        "displayName": format!("Bench User {i}"),
        "name": {"givenName": format!("Given{i}"), "familyName": format!("Family{i}")},
        "emails": [{"type": "work", "value": email, "primary": true}],
        "active": true,
        ENTERPRISE_URN: {"department": format!("Department {}", i % 50)},
    })
}

/// Loaded user `i`.
pub fn loaded_user(i: usize) -> Value {
    user(&user_name(i), &work_email(i), i)
}

/// A user created by the POST benchmark (`n` is unique within the run).
pub fn new_user(n: u64) -> Value {
    let i = n as usize;
    user(
        &format!("new{n}@bench.example"),
        &format!("new.{n}@corp.bench.example"),
        i,
    )
}

/// A Group document without members.
pub fn group(display_name: &str) -> Value {
    json!({"schemas": [GROUP_URN], "displayName": display_name})
}

/// A PATCH that adds `ids` to a group's members.
pub fn add_members<'a>(ids: impl IntoIterator<Item = &'a str>) -> Value {
    members_patch("add", ids)
}

/// A PATCH that removes `ids` from a group's members, in the form Entra ID
/// sends (`path` "members" with the values to drop).
pub fn remove_members<'a>(ids: impl IntoIterator<Item = &'a str>) -> Value {
    members_patch("remove", ids)
}

fn members_patch<'a>(op: &str, ids: impl IntoIterator<Item = &'a str>) -> Value {
    let members: Vec<Value> = ids.into_iter().map(|id| json!({"value": id})).collect();
    json!({
        "schemas": [PATCH_URN],
        "Operations": [{"op": op, "path": "members", "value": members}],
    })
}

/// A PATCH that replaces a user's `title`.
pub fn replace_title(title: &str) -> Value {
    json!({
        "schemas": [PATCH_URN],
        "Operations": [{"op": "replace", "path": "title", "value": title}],
    })
}

/// A BulkRequest creating loaded users `range`; operation `bulkId`s are the
/// user indexes, so the response maps back to them.
pub fn bulk_create_users(range: std::ops::Range<usize>) -> Value {
    let ops: Vec<Value> = range
        .map(|i| {
            json!({
                "method": "POST",
                "path": "/Users",
                "bulkId": i.to_string(),
                "data": loaded_user(i),
            })
        })
        .collect();
    json!({"schemas": [BULK_URN], "failOnErrors": 1, "Operations": ops})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loaded_users_are_distinct_and_complete() {
        let (a, b) = (loaded_user(1), loaded_user(2));
        assert_ne!(a["userName"], b["userName"]);
        assert_eq!(a["emails"][0]["type"], "work");
        assert_eq!(a["emails"][0]["value"], work_email(1));
        assert_eq!(a[ENTERPRISE_URN]["department"], "Department 1");
    }

    #[test]
    fn bulk_ids_are_user_indexes() {
        let bulk = bulk_create_users(5..7);
        let ops = bulk["Operations"].as_array().map(Vec::len);
        assert_eq!(ops, Some(2));
        assert_eq!(bulk["Operations"][1]["bulkId"], "6");
    }
}
