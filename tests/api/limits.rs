//! Configurable limits on hostile input: each is answered with the right
//! SCIM error, and a refused request stores nothing (no resource, no audit
//! row, no membership). Slow or stalled clients time out without holding
//! the only worker.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::*;

const USER_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const BULK: &str = "urn:ietf:params:scim:api:messages:2.0:BulkRequest";
const SEARCH: &str = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";

fn id_of(resource: &Value) -> String {
    resource["id"].as_str().expect("id").to_string()
}

/// The resource as stored now, and the number of audit rows about it.
async fn snapshot(app: &TestApp, path: &str) -> (Value, i64) {
    let doc = app.get_ok(path).await;
    let id = id_of(&doc);
    (doc, app.audit_count(Some(&id)))
}

#[tokio::test]
async fn patch_with_too_many_operations_is_400_invalid_value_and_changes_nothing() {
    let app = spawn_app_with(|s| s.scim.max_patch_operations = 3).await;
    let id = id_of(&app.create_user("bjensen").await);
    let path = format!("/Users/{id}");
    let before = snapshot(&app, &path).await;
    let ops: Vec<Value> = (0..4)
        .map(|i| json!({"op": "replace", "path": "title", "value": format!("t{i}")}))
        .collect();
    let res = app.patch(&path, &patch_op(json!(ops))).await;
    let body = assert_scim_error(res, 400, Some("invalidValue")).await;
    assert!(body["detail"].as_str().unwrap().contains('3'), "{body}");
    assert_eq!(snapshot(&app, &path).await, before);
    // At the limit the PATCH applies.
    app.patch_ok(&path, json!(ops[..3])).await;
    assert_eq!(app.get_ok(&path).await["title"], "t2");
}

#[tokio::test]
async fn too_many_members_in_one_request_is_400_invalid_value_and_stores_nothing() {
    let app = spawn_app_with(|s| s.scim.max_members_per_request = 2).await;
    let mut users = Vec::new();
    for name in ["a", "b", "c"] {
        users.push(id_of(&app.create_user(name).await));
    }
    let members =
        |ids: &[String]| -> Vec<Value> { ids.iter().map(|i| json!({"value": i})).collect() };
    let audit_before = app.audit_count(None);

    let res = app
        .post(
            "/Groups",
            &json!({"schemas": [GROUP_URN], "displayName": "g", "members": members(&users)}),
        )
        .await;
    assert_scim_error(res, 400, Some("invalidValue")).await;
    assert_eq!(app.group_count().await, 0);
    assert_eq!(app.audit_count(None), audit_before);

    let group = app.create_group("g", &[&users[0]]).await;
    let path = format!("/Groups/{}", id_of(&group));
    let before = snapshot(&app, &path).await;
    let res = app
        .put(
            &path,
            &json!({"schemas": [GROUP_URN], "displayName": "g", "members": members(&users)}),
        )
        .await;
    assert_scim_error(res, 400, Some("invalidValue")).await;
    assert_eq!(snapshot(&app, &path).await, before);

    // Across the operations of one PATCH: two added plus one removed are three.
    for ops in [
        json!([{"op": "add", "path": "members", "value": members(&users)}]),
        json!([
            {"op": "add", "path": "members", "value": members(&users[1..])},
            {"op": "remove", "path": format!("members[value eq \"{}\"]", users[0])},
        ]),
    ] {
        let res = app.patch(&path, &patch_op(ops)).await;
        assert_scim_error(res, 400, Some("invalidValue")).await;
        assert_eq!(snapshot(&app, &path).await, before);
    }
    // Two members in one request are fine.
    let ops = json!([{"op": "add", "path": "members", "value": members(&users[1..])}]);
    let after = app.patch_ok(&path, ops).await;
    assert_eq!(after["members"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn filters_over_the_length_or_depth_limit_are_400_invalid_filter() {
    let app = spawn_app_with(|s| {
        s.scim.max_filter_length = 64;
        s.scim.max_filter_depth = 2;
    })
    .await;
    app.create_user("bjensen").await;
    let long = format!("userName eq \"{}\"", "b".repeat(60));
    let deep = "(((userName eq \"bjensen\")))".to_string();
    for filter in [&long, &deep] {
        for path in ["/Users", "/Groups"] {
            let res = app.list_with(path, &[("filter", filter)]).await;
            assert_scim_error(res, 400, Some("invalidFilter")).await;
        }
        for path in ["/Users/.search", "/.search"] {
            let res = app
                .post(path, &json!({"schemas": [SEARCH], "filter": filter}))
                .await;
            assert_scim_error(res, 400, Some("invalidFilter")).await;
        }
    }
    // Within both limits the same query is answered.
    let list = app
        .list_ok("/Users", &[("filter", "((userName eq \"bjensen\"))")])
        .await;
    assert_eq!(list["totalResults"], 1);
}

#[tokio::test]
async fn patch_paths_over_the_filter_limits_are_400_invalid_path_and_change_nothing() {
    let app = spawn_app_with(|s| {
        s.scim.max_filter_length = 64;
        s.scim.max_filter_depth = 2;
    })
    .await;
    let user = app
        .create_user_from(
            json!({"userName": "bjensen", "emails": [{"value": "b@x.org", "type": "work"}]}),
        )
        .await;
    let path = format!("/Users/{}", id_of(&user));
    let before = snapshot(&app, &path).await;
    for bad in [
        format!("emails[type eq \"{}\"].value", "w".repeat(60)),
        "emails[((type eq \"work\"))].value".to_string(),
    ] {
        let ops = json!([{"op": "replace", "path": bad, "value": "n@x.org"}]);
        let res = app.patch(&path, &patch_op(ops)).await;
        assert_scim_error(res, 400, Some("invalidPath")).await;
        assert_eq!(snapshot(&app, &path).await, before);
    }
    let ops =
        json!([{"op": "replace", "path": "emails[(type eq \"work\")].value", "value": "n@x.org"}]);
    assert_eq!(
        app.patch_ok(&path, ops).await["emails"][0]["value"],
        "n@x.org"
    );
}

#[tokio::test]
async fn too_many_attribute_values_is_400_invalid_value_and_stores_nothing() {
    // userName (1) + 4 emails of one value each = 5.
    let app = spawn_app_with(|s| s.scim.max_attributes = 5).await;
    let emails = |n: usize| -> Vec<Value> {
        (0..n)
            .map(|i| json!({"value": format!("u{i}@x.org")}))
            .collect()
    };
    let res = app
        .post(
            "/Users",
            &json!({"schemas": [USER_URN], "userName": "big", "emails": emails(5)}),
        )
        .await;
    assert_scim_error(res, 400, Some("invalidValue")).await;
    assert_eq!(app.user_count().await, 0);
    assert_eq!(app.audit_count(None), 0);

    let user = app
        .create_user_from(json!({"userName": "big", "emails": emails(4)}))
        .await;
    let path = format!("/Users/{}", id_of(&user));
    let before = snapshot(&app, &path).await;
    let res = app
        .put(
            &path,
            &json!({"schemas": [USER_URN], "userName": "big", "emails": emails(5)}),
        )
        .await;
    assert_scim_error(res, 400, Some("invalidValue")).await;
    // A PATCH cannot grow the resource past the limit either.
    let ops = json!([{"op": "add", "path": "title", "value": "one too many"}]);
    let res = app.patch(&path, &patch_op(ops)).await;
    assert_scim_error(res, 400, Some("invalidValue")).await;
    assert_eq!(snapshot(&app, &path).await, before);
}

#[tokio::test]
async fn strings_over_the_length_limit_are_400_invalid_value_and_store_nothing() {
    let app = spawn_app_with(|s| s.scim.max_string_length = 32).await;
    let res = app
        .post(
            "/Users",
            &json!({"schemas": [USER_URN], "userName": "u", "displayName": "x".repeat(33)}),
        )
        .await;
    let body = assert_scim_error(res, 400, Some("invalidValue")).await;
    assert!(
        body["detail"].as_str().unwrap().contains("displayName"),
        "{body}"
    );
    assert_eq!(app.user_count().await, 0);
    assert_eq!(app.audit_count(None), 0);

    // Characters are counted, not bytes.
    let user = app
        .create_user_from(json!({"userName": "u", "displayName": "é".repeat(32)}))
        .await;
    let path = format!("/Users/{}", id_of(&user));
    let before = snapshot(&app, &path).await;
    let ops = json!([{"op": "replace", "path": "name.givenName", "value": "y".repeat(33)}]);
    let res = app.patch(&path, &patch_op(ops)).await;
    assert_scim_error(res, 400, Some("invalidValue")).await;
    assert_eq!(snapshot(&app, &path).await, before);

    // In a Bulk request the operation fails on its own, with the same error.
    let bulk = json!({"schemas": [BULK], "Operations": [
        {"method": "POST", "bulkId": "a", "path": "/Users",
         "data": {"schemas": [USER_URN], "userName": "z".repeat(33)}}]});
    let res = app.post("/Bulk", &bulk).await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    let op = &body["Operations"][0];
    assert_eq!(op["status"], "400", "{body}");
    assert_eq!(op["response"]["scimType"], "invalidValue", "{body}");
    assert_eq!(app.user_count().await, 1);
}

/// Opens a raw connection to the gateway and sends `bytes` (and nothing more).
async fn stalled_connection(app: &TestApp, bytes: &[u8]) -> tokio::net::TcpStream {
    let host = app.address.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(host).await.expect("connect");
    stream.write_all(bytes).await.expect("write");
    stream
}

/// Reads one response (head and Content-Length body), or what arrived
/// before the server closed the connection; gives up after a minute.
async fn read_response(stream: &mut tokio::net::TcpStream) -> String {
    let mut out = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        loop {
            if let Some(end) = out.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&out[..end]).to_ascii_lowercase();
                let len = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                if out.len() >= end + 4 + len {
                    return;
                }
            }
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(60), read).await;
    String::from_utf8_lossy(&out).to_string()
}

#[tokio::test]
async fn a_stalled_request_head_gets_408_without_tying_up_the_worker() {
    let app = spawn_app_with(|s| {
        s.server.workers = 1;
        s.server.header_timeout_ms = 300;
    })
    .await;
    let mut stalled = stalled_connection(
        &app,
        b"POST /scim/v2/Users HTTP/1.1\r\nHost: localhost\r\nContent-Ty",
    )
    .await;
    // The one worker still serves other clients meanwhile.
    app.create_user("bjensen").await;
    let answer = read_response(&mut stalled).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert_eq!(app.user_count().await, 1);
}

#[tokio::test]
async fn a_stalled_body_gets_408_and_stores_nothing() {
    let app = spawn_app_with(|s| {
        s.server.workers = 1;
        s.server.body_timeout_secs = 1;
    })
    .await;
    let head = format!(
        "POST /scim/v2/Users HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\n\
         Content-Type: {SCIM_JSON}\r\nContent-Length: 200\r\n\r\n{{\"userName\": \"slo",
        app.token
    );
    let mut stalled = stalled_connection(&app, head.as_bytes()).await;
    app.create_user("bjensen").await;
    let answer = read_response(&mut stalled).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert!(answer.contains(SCIM_JSON), "{answer:?}");
    assert!(
        answer.contains("urn:ietf:params:scim:api:messages:2.0:Error"),
        "{answer:?}"
    );
    assert_eq!(app.user_count().await, 1);
    assert_eq!(
        app.list_ok("/Users", &[("filter", "userName sw \"slo\"")])
            .await["totalResults"],
        0
    );
}
