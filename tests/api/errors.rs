//! Failures as a SCIM client sees them: every one is an RFC 7644 §3.12 body
//! with the right status and `scimType`, and a failed request changes nothing.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;

const USER_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";

fn id_of(resource: &Value) -> String {
    resource["id"].as_str().expect("id").to_string()
}

/// A request with a raw body and the given Content-Type.
async fn send_raw_body(
    app: &TestApp,
    method: Method,
    path: &str,
    content_type: &str,
    body: impl Into<reqwest::Body>,
) -> reqwest::Response {
    app.client
        .request(method, app.url(path))
        .bearer_auth(&app.token)
        .header("Content-Type", content_type)
        .body(body)
        .send()
        .await
        .expect("request")
}

// --- 401 ----------------------------------------------------------------------

#[tokio::test]
async fn missing_token_is_401_with_bearer_challenge() {
    let app = spawn_app().await;
    let user = app.create_user("bjensen").await;
    let id = id_of(&user);
    for (method, path) in [
        (Method::GET, "/Users".to_string()),
        (Method::GET, format!("/Users/{id}")),
        (Method::GET, "/Groups".to_string()),
        (Method::DELETE, format!("/Users/{id}")),
    ] {
        let res = app
            .client
            .request(method.clone(), app.url(&path))
            .send()
            .await
            .unwrap();
        let challenge = res
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        assert!(
            challenge.starts_with("Bearer"),
            "{method} {path}: WWW-Authenticate {challenge:?}"
        );
        assert_scim_error(res, 401, None).await;
    }
    let res = app
        .client
        .post(app.url("/Users"))
        .header("Content-Type", SCIM_JSON)
        .body(json!({"schemas": [USER_URN], "userName": "mallory"}).to_string())
        .send()
        .await
        .unwrap();
    assert!(res.headers().contains_key("www-authenticate"));
    assert_scim_error(res, 401, None).await;
    assert_eq!(app.user_count().await, 1);
    assert_eq!(app.get_ok(&format!("/Users/{id}")).await, user);
}

#[tokio::test]
async fn wrong_token_is_401_with_bearer_challenge_and_changes_nothing() {
    let mut app = spawn_app().await;
    let user = app.create_user("bjensen").await;
    let id = id_of(&user);
    let audit_before = app.audit_count(None);
    for bad in ["wrong-token", "acme-test-token-", "ACME-TEST-TOKEN"] {
        app.token = bad.into();
        let res = app.get("/Users").await;
        let challenge = res
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        assert!(challenge.starts_with("Bearer"), "{challenge:?}");
        assert_scim_error(res, 401, None).await;
        assert_scim_error(app.delete(&format!("/Users/{id}")).await, 401, None).await;
        assert_scim_error(
            app.post(
                "/Users",
                &json!({"schemas": [USER_URN], "userName": "mallory"}),
            )
            .await,
            401,
            None,
        )
        .await;
    }
    // The right secret under another scheme is refused too.
    let res = app
        .client
        .get(app.url("/Users"))
        .header("Authorization", format!("Basic {ACME_TOKEN}"))
        .send()
        .await
        .unwrap();
    assert!(res.headers().contains_key("www-authenticate"));
    assert_scim_error(res, 401, None).await;
    app.token = ACME_TOKEN.into();
    assert_eq!(app.user_count().await, 1);
    assert_eq!(app.get_ok(&format!("/Users/{id}")).await, user);
    assert_eq!(app.audit_count(None), audit_before);
}

// --- 404, 405 -------------------------------------------------------------------

#[tokio::test]
async fn unknown_ids_are_404() {
    let app = spawn_app().await;
    let missing = "00000000-0000-4000-8000-000000000000";
    for kind in ["Users", "Groups"] {
        let path = format!("/{kind}/{missing}");
        assert_scim_error(app.get(&path).await, 404, None).await;
        assert_scim_error(app.delete(&path).await, 404, None).await;
        assert_scim_error(
            app.patch(
                &path,
                &patch_op(json!([{"op": "replace", "path": "displayName", "value": "x"}])),
            )
            .await,
            404,
            None,
        )
        .await;
    }
    assert_scim_error(
        app.put(
            &format!("/Users/{missing}"),
            &json!({"schemas": [USER_URN], "userName": "ghost"}),
        )
        .await,
        404,
        None,
    )
    .await;
    assert_scim_error(
        app.put(
            &format!("/Groups/{missing}"),
            &json!({"schemas": [GROUP_URN], "displayName": "ghost"}),
        )
        .await,
        404,
        None,
    )
    .await;
    // A PUT to an unknown id does not create it.
    assert_eq!(app.user_count().await, 0);
    assert_eq!(app.group_count().await, 0);
    // A group id is not a user id.
    let group = app.create_group("Admins", &[]).await;
    assert_scim_error(
        app.get(&format!("/Users/{}", id_of(&group))).await,
        404,
        None,
    )
    .await;
}

#[tokio::test]
async fn unknown_paths_are_404() {
    let app = spawn_app().await;
    for url in [
        app.url("/Nope"),
        app.url("/Users/a/b"),
        format!("{}/nope", app.address),
        format!("{}/scim/v1/Users", app.address),
        format!("{}/", app.address),
    ] {
        let res = app
            .client
            .get(&url)
            .bearer_auth(&app.token)
            .send()
            .await
            .unwrap();
        assert_scim_error(res, 404, None).await;
        let res = app.client.get(&url).send().await.unwrap();
        assert_scim_error(res, 404, None).await;
    }
}

#[tokio::test]
async fn unsupported_methods_are_405() {
    let app = spawn_app().await;
    let user = app.create_user("bjensen").await;
    let id = id_of(&user);
    for (method, path) in [
        (Method::DELETE, "/Users".to_string()),
        (Method::PUT, "/Users".to_string()),
        (Method::PATCH, "/Groups".to_string()),
        (Method::POST, format!("/Users/{id}")),
    ] {
        let res = app
            .request(method.clone(), &path, None)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 405, "{method} {path}");
        assert_scim_error(res, 405, None).await;
    }
    assert_eq!(app.user_count().await, 1);
    assert_eq!(app.get_ok(&format!("/Users/{id}")).await, user);
}

#[tokio::test]

async fn a_405_lists_the_allowed_methods() {
    let app = spawn_app().await;
    let res = app.delete("/Users").await;
    assert_eq!(res.status(), 405);
    let allow = res
        .headers()
        .get("allow")
        .map(|v| v.to_str().unwrap().to_ascii_uppercase())
        .expect("Allow header on 405");
    assert!(allow.contains("GET") && allow.contains("POST"), "{allow}");
}

// --- 409 ------------------------------------------------------------------------

#[tokio::test]
async fn conflict_is_409_uniqueness_and_changes_nothing() {
    let app = spawn_app().await;
    app.create_user("bjensen").await;
    let res = app
        .post(
            "/Users",
            &json!({"schemas": [USER_URN], "userName": "BJensen"}),
        )
        .await;
    let body = assert_scim_error(res, 409, Some("uniqueness")).await;
    assert!(!body["detail"].as_str().unwrap().is_empty());
    assert_eq!(app.user_count().await, 1);
}

// --- body limits and media types ----------------------------------------------

fn big_user(bytes: usize) -> Value {
    json!({"schemas": [USER_URN], "userName": "big", "displayName": "x".repeat(bytes)})
}

#[tokio::test]
async fn body_over_the_limit_is_413_and_stores_nothing() {
    // One long string makes the body big; the string limit is not under test.
    let app = spawn_app_with(|s| s.scim.max_string_length = 128 * 1024).await;
    let res = app.post("/Users", &big_user(70 * 1024)).await;
    assert_scim_error(res, 413, None).await;
    assert_eq!(app.user_count().await, 0);
    assert_eq!(app.audit_count(None), 0);
    // Just under the limit is fine.
    let res = app.post("/Users", &big_user(60 * 1024)).await;
    assert_eq!(res.status(), 201);
}

#[tokio::test]
async fn chunked_body_over_the_limit_is_413_and_stores_nothing() {
    let app = spawn_app().await;
    let body = big_user(70 * 1024).to_string().into_bytes();
    let chunks: Vec<Vec<u8>> = body.chunks(8 * 1024).map(<[u8]>::to_vec).collect();
    let res = app
        .send_chunked("POST", "/Users", &[("Content-Type", SCIM_JSON)], chunks)
        .await;
    assert_eq!(res.status, 413, "{res:?}");
    assert_eq!(res.header("content-type"), Some(SCIM_JSON));
    let body = res.json();
    assert_eq!(
        body["schemas"],
        json!(["urn:ietf:params:scim:api:messages:2.0:Error"])
    );
    assert_eq!(body["status"], "413");
    assert_eq!(app.user_count().await, 0);
    assert_eq!(app.audit_count(None), 0);

    // A small chunked body goes through.
    let small = json!({"schemas": [USER_URN], "userName": "small"})
        .to_string()
        .into_bytes();
    let chunks: Vec<Vec<u8>> = small.chunks(10).map(<[u8]>::to_vec).collect();
    let res = app
        .send_chunked("POST", "/Users", &[("Content-Type", SCIM_JSON)], chunks)
        .await;
    assert_eq!(res.status, 201, "{res:?}");
    assert_eq!(app.user_count().await, 1);
}

#[tokio::test]
async fn text_plain_content_type_is_415_and_changes_nothing() {
    let app = spawn_app().await;
    let user = app.create_user("bjensen").await;
    let id = id_of(&user);
    let res = send_raw_body(
        &app,
        Method::POST,
        "/Users",
        "text/plain",
        json!({"schemas": [USER_URN], "userName": "alice"}).to_string(),
    )
    .await;
    assert_scim_error(res, 415, None).await;
    let res = send_raw_body(
        &app,
        Method::PUT,
        &format!("/Users/{id}"),
        "text/plain",
        json!({"schemas": [USER_URN], "userName": "bjensen", "title": "x"}).to_string(),
    )
    .await;
    assert_scim_error(res, 415, None).await;
    let res = send_raw_body(
        &app,
        Method::PATCH,
        &format!("/Users/{id}"),
        "text/plain",
        patch_op(json!([{"op": "replace", "path": "title", "value": "x"}])).to_string(),
    )
    .await;
    assert_scim_error(res, 415, None).await;
    assert_eq!(app.user_count().await, 1);
    assert_eq!(app.get_ok(&format!("/Users/{id}")).await, user);
}

#[tokio::test]
async fn json_types_that_are_not_scim_are_415_and_change_nothing() {
    let app = spawn_app().await;
    for content_type in [
        "scim+json",
        "application/json-patch+json",
        "application/merge-patch+json",
        "text/json",
    ] {
        let res = send_raw_body(
            &app,
            Method::POST,
            "/Users",
            content_type,
            json!({"schemas": [USER_URN], "userName": "alice"}).to_string(),
        )
        .await;
        assert_scim_error(res, 415, None).await;
    }
    assert_eq!(app.user_count().await, 0);
    // The two SCIM media types, with parameters, still work.
    for (i, content_type) in ["application/scim+json; charset=utf-8", "Application/JSON"]
        .iter()
        .enumerate()
    {
        let res = send_raw_body(
            &app,
            Method::POST,
            "/Users",
            content_type,
            json!({"schemas": [USER_URN], "userName": format!("ok{i}")}).to_string(),
        )
        .await;
        assert_eq!(res.status(), 201, "{content_type}");
    }
}

// --- 400 invalidSyntax ------------------------------------------------------------

#[tokio::test]
async fn malformed_json_is_400_invalid_syntax_and_changes_nothing() {
    let app = spawn_app().await;
    let user = app.create_user("bjensen").await;
    let id = id_of(&user);
    for bad in [
        r#"{"userName": "alice""#,
        "{bad json",
        r#"{"userName": "alice",}"#,
        "",
        "   ",
    ] {
        let res = send_raw_body(&app, Method::POST, "/Users", SCIM_JSON, bad).await;
        assert_scim_error(res, 400, Some("invalidSyntax")).await;
        let res = send_raw_body(&app, Method::PATCH, &format!("/Users/{id}"), SCIM_JSON, bad).await;
        assert_scim_error(res, 400, Some("invalidSyntax")).await;
        let res = send_raw_body(&app, Method::PUT, &format!("/Users/{id}"), SCIM_JSON, bad).await;
        assert_scim_error(res, 400, Some("invalidSyntax")).await;
    }
    assert_eq!(app.user_count().await, 1);
    assert_eq!(app.get_ok(&format!("/Users/{id}")).await, user);
}

#[tokio::test]
async fn json_array_body_is_400_invalid_syntax_and_changes_nothing() {
    let app = spawn_app().await;
    let user = app.create_user("bjensen").await;
    let id = id_of(&user);
    let array = json!([{"schemas": [USER_URN], "userName": "alice"}]);
    assert_scim_error(app.post("/Users", &array).await, 400, Some("invalidSyntax")).await;
    assert_scim_error(
        app.post("/Groups", &json!([])).await,
        400,
        Some("invalidSyntax"),
    )
    .await;
    assert_scim_error(
        app.put(&format!("/Users/{id}"), &array).await,
        400,
        Some("invalidSyntax"),
    )
    .await;
    assert_scim_error(
        app.patch(
            &format!("/Users/{id}"),
            &json!([{"op": "replace", "path": "title", "value": "x"}]),
        )
        .await,
        400,
        Some("invalidSyntax"),
    )
    .await;
    assert_eq!(app.user_count().await, 1);
    assert_eq!(app.group_count().await, 0);
    assert_eq!(app.get_ok(&format!("/Users/{id}")).await, user);
}

/// `{"schemas": [...], "userName": "deep", "name": {"x": {"x": … }}}` whose
/// nesting (the outer object counting as 1) is `depth`.
fn nested_user(depth: usize) -> String {
    let inner = depth - 2; // outer object + `name`'s object
    format!(
        r#"{{"schemas":["{USER_URN}"],"userName":"deep","name":{{"givenName":{}1{}}}}}"#,
        "[".repeat(inner),
        "]".repeat(inner)
    )
}

#[tokio::test]
async fn json_nested_deeper_than_the_limit_is_400_invalid_syntax() {
    let app = spawn_app().await;
    let res = send_raw_body(&app, Method::POST, "/Users", SCIM_JSON, nested_user(33)).await;
    assert_scim_error(res, 400, Some("invalidSyntax")).await;
    let res = send_raw_body(
        &app,
        Method::POST,
        "/Users",
        SCIM_JSON,
        format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)),
    )
    .await;
    assert_scim_error(res, 400, Some("invalidSyntax")).await;
    // At the limit the JSON is read; the schema then refuses the value.
    let res = send_raw_body(&app, Method::POST, "/Users", SCIM_JSON, nested_user(32)).await;
    assert_scim_error(res, 400, Some("invalidValue")).await;
    assert_eq!(app.user_count().await, 0);
}

// --- 400 with other scimTypes -------------------------------------------------------

#[tokio::test]
async fn bad_filter_is_400_invalid_filter() {
    let app = spawn_app().await;
    app.create_user("bjensen").await;
    for filter in [
        "userName%20eq",
        "userName%20zz%20%22a%22",
        "(userName%20eq%20%22a%22",
        "shoeSize%20eq%203",
    ] {
        let res = app.get(&format!("/Users?filter={filter}")).await;
        assert_scim_error(res, 400, Some("invalidFilter")).await;
    }
    let res = app
        .post(
            "/Users/.search",
            &json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
                    "filter": "userName eq"}),
        )
        .await;
    assert_scim_error(res, 400, Some("invalidFilter")).await;
    let res = app.get("/Groups?filter=displayName%20co").await;
    assert_scim_error(res, 400, Some("invalidFilter")).await;
}

#[tokio::test]
async fn a_filter_that_is_not_utf8_once_decoded_is_400_invalid_filter() {
    let app = spawn_app().await;
    app.create_user("bjensen").await;
    // %FF, and a lone continuation byte: no UTF-8 text decodes to these.
    for filter in ["userName%20eq%20%22%FF%22", "userName%20sw%20%22b%80%22"] {
        let res = app.get(&format!("/Users?filter={filter}")).await;
        let body = assert_scim_error(res, 400, Some("invalidFilter")).await;
        assert!(body["detail"].as_str().unwrap().contains("UTF-8"), "{body}");
    }
    let res = app.get("/Users?count=1%FE").await;
    assert_scim_error(res, 400, Some("invalidSyntax")).await;
    // Percent-encoded UTF-8 is fine.
    let res = app.get("/Users?filter=userName%20eq%20%22%C3%A9%22").await;
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn a_date_filter_with_a_value_that_is_not_a_date_is_400_invalid_filter() {
    let app = spawn_app().await;
    app.create_user("bjensen").await;
    for filter in [
        "meta.created%20gt%20%22not-a-date%22",
        "meta.lastModified%20eq%20%22yesterday%22",
        "meta.created%20lt%2042",
    ] {
        let res = app.get(&format!("/Users?filter={filter}")).await;
        assert_scim_error(res, 400, Some("invalidFilter")).await;
    }
    let list = app
        .list_ok(
            "/Users",
            &[("filter", "meta.created gt \"2000-01-01T00:00:00Z\"")],
        )
        .await;
    assert_eq!(list["totalResults"], 1);
}

#[tokio::test]
async fn patch_path_to_an_undefined_attribute_is_400_invalid_path_and_changes_nothing() {
    let app = spawn_app().await;
    let user = app.create_user("bjensen").await;
    let id = id_of(&user);
    for path in [
        "shoeSize",
        "name.nickname",
        "emails[type eq \"work\"].colour",
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:shoeSize",
    ] {
        let res = app
            .patch(
                &format!("/Users/{id}"),
                &patch_op(json!([
                    {"op": "replace", "path": "title", "value": "changed"},
                    {"op": "add", "path": path, "value": "x"}
                ])),
            )
            .await;
        assert_scim_error(res, 400, Some("invalidPath")).await;
    }
    assert_eq!(app.get_ok(&format!("/Users/{id}")).await, user);
    assert_eq!(app.audit_count(Some(&id)), 1);
}

#[tokio::test]
async fn patch_remove_without_path_is_400_no_target_and_changes_nothing() {
    let app = spawn_app().await;
    let uid = id_of(&app.create_user("alice").await);
    let group = app.create_group("Admins", &[&uid]).await;
    let gid = id_of(&group);
    let res = app
        .patch(
            &format!("/Groups/{gid}"),
            &patch_op(json!([{"op": "remove"}])),
        )
        .await;
    assert_scim_error(res, 400, Some("noTarget")).await;
    let res = app
        .patch(
            &format!("/Users/{uid}"),
            &patch_op(json!([{"op": "remove", "value": {"displayName": "x"}}])),
        )
        .await;
    assert_scim_error(res, 400, Some("noTarget")).await;
    assert_eq!(app.get_ok(&format!("/Groups/{gid}")).await, group);
}

#[tokio::test]
async fn wrong_value_types_are_400_invalid_value_and_change_nothing() {
    let app = spawn_app().await;
    let user = app.create_user("bjensen").await;
    let id = id_of(&user);
    for bad in [
        json!({"active": "maybe"}),
        json!({"emails": 5}),
        json!({"userName": {"nested": true}}),
        json!({"name": "Barbara"}),
        json!({"emails": [{"value": "a@x", "primary": true}, {"value": "b@x", "primary": true}]}),
    ] {
        let mut body = json!({"schemas": [USER_URN], "userName": "alice"});
        for (k, v) in bad.as_object().unwrap() {
            body[k] = v.clone();
        }
        let res = app.post("/Users", &body).await;
        assert_scim_error(res, 400, Some("invalidValue")).await;
        body["userName"] = json!("bjensen");
        if bad.get("userName").is_some() {
            body["userName"] = bad["userName"].clone();
        }
        let res = app.put(&format!("/Users/{id}"), &body).await;
        assert_scim_error(res, 400, Some("invalidValue")).await;
    }
    for (path, value) in [
        ("active", json!("maybe")),
        ("emails", json!(5)),
        ("name", json!(7)),
    ] {
        let res = app
            .patch(
                &format!("/Users/{id}"),
                &patch_op(json!([{"op": "replace", "path": path, "value": value}])),
            )
            .await;
        assert_scim_error(res, 400, Some("invalidValue")).await;
    }
    assert_eq!(app.user_count().await, 1);
    assert_eq!(app.get_ok(&format!("/Users/{id}")).await, user);
    assert_eq!(app.audit_count(None), 1);
}

#[tokio::test]
async fn patch_of_read_only_id_meta_or_groups_is_400_mutability_and_changes_nothing() {
    let app = spawn_app().await;
    let user = app.create_user("bjensen").await;
    let id = id_of(&user);
    app.create_group("Admins", &[&id]).await;
    let before = app.get_ok(&format!("/Users/{id}")).await;
    for (path, value) in [
        ("id", json!("new-id")),
        ("meta", json!({"version": "W/\"9\""})),
        ("meta.created", json!("2000-01-01T00:00:00Z")),
        ("groups", json!([{"value": "x"}])),
    ] {
        for op in ["add", "replace"] {
            let res = app
                .patch(
                    &format!("/Users/{id}"),
                    &patch_op(json!([{"op": op, "path": path, "value": value}])),
                )
                .await;
            assert_scim_error(res, 400, Some("mutability")).await;
        }
    }
    let res = app
        .patch(
            &format!("/Users/{id}"),
            &patch_op(json!([{"op": "remove", "path": "groups"}])),
        )
        .await;
    assert_scim_error(res, 400, Some("mutability")).await;
    assert_eq!(app.get_ok(&format!("/Users/{id}")).await, before);
}

// --- 5xx ------------------------------------------------------------------------

#[tokio::test]
async fn a_server_error_leaks_no_internals_and_stores_nothing() {
    let app = spawn_app().await;
    app.create_user("alice").await;
    // Break the store behind the gateway's back: every write needs the audit table.
    app.execute_sql("DROP TABLE audit_events;");
    let res = app
        .post(
            "/Users",
            &json!({"schemas": [USER_URN], "userName": "bjensen"}),
        )
        .await;
    let status = res.status().as_u16();
    assert!((500..600).contains(&status), "status {status}");
    let body = assert_scim_error(res, status, None).await;
    let text = body.to_string().to_ascii_lowercase();
    for secret in [
        "audit_events",
        "no such table",
        "sqlite",
        "diesel",
        "database error",
    ] {
        assert!(!text.contains(secret), "{secret} leaked: {body}");
    }
    assert_eq!(app.user_count().await, 1);
}

// --- answers the HTTP parser gives before any route runs ---------------------------

/// Sends raw bytes on a fresh connection (optionally holding the rest of
/// the request back) and returns the status and the body of the answer.
async fn raw_exchange(app: &TestApp, request: &[u8]) -> (u16, String, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = app.address.trim_start_matches("http://").to_string();
    let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
    // The server may answer (and close) before it has read everything.
    let _ = conn.write_all(request).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        conn.read_to_end(&mut answer),
    )
    .await
    .expect("an answer within 10 s");
    let text = String::from_utf8_lossy(&answer).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/scim+json"),
        "{head}"
    );
    let body: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body:?}"));
    assert_eq!(
        body["schemas"],
        json!(["urn:ietf:params:scim:api:messages:2.0:Error"])
    );
    assert_eq!(body["status"], json!(status.to_string()), "{body}");
    (status, head.to_string(), body)
}

#[tokio::test]
async fn a_url_too_long_for_the_parser_is_414_with_a_scim_error() {
    let app = spawn_app().await;
    let filter = format!("userName eq \"{}\"", "a".repeat(500_000));
    let request = format!(
        "GET /scim/v2/Users?filter={} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\r\n",
        filter.replace(' ', "%20").replace('"', "%22"),
        app.token
    );
    let (status, _, body) = raw_exchange(&app, request.as_bytes()).await;
    assert_eq!(status, 414, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains(".search"),
        "{body}"
    );
    // Within what the parser reads, the filter's own limit answers.
    let filter = format!("userName eq \"{}\"", "a".repeat(20_000));
    let res = app.list_with("/Users", &[("filter", &filter)]).await;
    assert_scim_error(res, 400, Some("invalidFilter")).await;
}

#[tokio::test]
async fn headers_too_large_malformed_or_with_nul_bytes_get_scim_errors() {
    let app = spawn_app().await;
    let big = format!(
        "GET /scim/v2/Users HTTP/1.1\r\nHost: x\r\nX-Padding: {}\r\n\r\n",
        "p".repeat(200_000)
    );
    let (status, _, _) = raw_exchange(&app, big.as_bytes()).await;
    assert_eq!(status, 431);
    let nul = b"GET /scim/v2/Users\0/x HTTP/1.1\r\nHost: x\r\n\r\n";
    let (status, _, _) = raw_exchange(&app, nul).await;
    assert_eq!(status, 400);
    let malformed = b"GET /scim/v2/Users HTTP/1.1\r\nHost: x\r\nNo colon here\r\n\r\n";
    let (status, _, _) = raw_exchange(&app, malformed).await;
    assert_eq!(status, 400);
    // A connection that answered well before still gets a SCIM error.
    let two = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /scim/v2/Users?{} HTTP/1.1\r\nHost: x\r\n\r\n",
        "q".repeat(200_000)
    );
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = app.address.trim_start_matches("http://").to_string();
    let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let _ = conn.write_all(two.as_bytes()).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        conn.read_to_end(&mut answer),
    )
    .await;
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let second = &text[text.find("HTTP/1.1 4").expect("a second answer")..];
    assert!(second.starts_with("HTTP/1.1 414"), "{second}");
    assert!(
        second.contains("urn:ietf:params:scim:api:messages:2.0:Error"),
        "{second}"
    );
    assert_eq!(app.user_count().await, 0);
}

#[tokio::test]
async fn a_client_too_slow_with_its_head_gets_408_with_a_scim_error() {
    let app = spawn_app_with(|s| s.server.header_timeout_ms = 300).await;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = app.address.trim_start_matches("http://").to_string();
    let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
    conn.write_all(b"GET /scim/v2/Users HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        conn.read_to_end(&mut answer),
    )
    .await
    .expect("an answer")
    .unwrap();
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    let body: Value = serde_json::from_str(text.split_once("\r\n\r\n").unwrap().1).unwrap();
    assert_eq!(body["status"], "408");
}
