//! `/Bulk` (RFC 7644 §3.7) as a client uses it.

use serde_json::{Value, json};

use crate::helpers::*;

const BULK: &str = "urn:ietf:params:scim:api:messages:2.0:BulkRequest";

#[tokio::test]
async fn bulk_creates_a_group_with_a_member_created_in_the_same_request() {
    let app = spawn_app().await;
    let res = app
        .post(
            "/Bulk",
            &json!({"schemas": [BULK], "Operations": [
                {"method": "POST", "bulkId": "grp", "path": "/Groups",
                 "data": {"displayName": "Tour Guides", "members": [{"type": "User", "value": "bulkId:alice"}]}},
                {"method": "POST", "bulkId": "alice", "path": "/Users", "data": {"userName": "alice"}},
            ]}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        body["schemas"],
        json!(["urn:ietf:params:scim:api:messages:2.0:BulkResponse"])
    );
    let ops = body["Operations"].as_array().unwrap();
    assert_eq!(ops.len(), 2);
    assert!(ops.iter().all(|o| o["status"] == "201"), "{body}");
    let group_location = ops.iter().find(|o| o["bulkId"] == "grp").unwrap()["location"]
        .as_str()
        .unwrap();
    let user_location = ops.iter().find(|o| o["bulkId"] == "alice").unwrap()["location"]
        .as_str()
        .unwrap();
    let user_id = user_location.rsplit('/').next().unwrap();
    let group: Value = app
        .client
        .get(group_location)
        .bearer_auth(&app.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(group["members"][0]["value"], user_id);
}

#[tokio::test]
async fn bulk_fail_on_errors_stops_processing() {
    let app = spawn_app().await;
    let res = app
        .post(
            "/Bulk",
            &json!({"schemas": [BULK], "failOnErrors": 1, "Operations": [
                {"method": "POST", "bulkId": "a", "path": "/Users", "data": {"userName": "dup"}},
                {"method": "POST", "bulkId": "b", "path": "/Users", "data": {"userName": "DUP"}},
                {"method": "POST", "bulkId": "c", "path": "/Users", "data": {"userName": "never"}},
            ]}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    let ops = body["Operations"].as_array().unwrap();
    assert_eq!(ops.len(), 2, "{body}");
    assert_eq!(ops[1]["status"], "409");
    assert_eq!(ops[1]["response"]["scimType"], "uniqueness");
    assert_eq!(app.user_count().await, 1);
}

#[tokio::test]
async fn bulk_unresolvable_reference_fails_that_operation_only() {
    let app = spawn_app().await;
    let res = app
        .post(
            "/Bulk",
            &json!({"schemas": [BULK], "Operations": [
                {"method": "POST", "bulkId": "g", "path": "/Groups", "data": {"displayName": "G", "members": [{"value": "bulkId:missing"}]}},
                {"method": "POST", "bulkId": "u", "path": "/Users", "data": {"userName": "ok"}},
                {"method": "DELETE", "path": "/Users/does-not-exist"},
            ]}),
        )
        .await;
    let body: Value = res.json().await.unwrap();
    let ops = body["Operations"].as_array().unwrap();
    let status = |b: &str| ops.iter().find(|o| o["bulkId"] == b).unwrap()["status"].clone();
    assert_eq!(status("u"), "201");
    assert_eq!(status("g"), "409", "{body}");
    assert_eq!(
        ops.iter().find(|o| o["method"] == "DELETE").unwrap()["status"],
        "404"
    );
}

#[tokio::test]
async fn bulk_limits_are_advertised_and_enforced() {
    let app = spawn_app_with(|s| {
        s.scim.bulk_max_operations = 2;
        s.scim.bulk_max_payload_bytes = 2048;
    })
    .await;
    let config: Value = app
        .get("/ServiceProviderConfig")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        config["bulk"],
        json!({"supported": true, "maxOperations": 2, "maxPayloadSize": 2048})
    );
    let three: Vec<Value> = (0..3)
        .map(|i| json!({"method": "POST", "bulkId": format!("u{i}"), "path": "/Users", "data": {"userName": format!("u{i}")}}))
        .collect();
    let res = app
        .post("/Bulk", &json!({"schemas": [BULK], "Operations": three}))
        .await;
    assert_scim_error(res, 413, None).await;
    let big = json!({"schemas": [BULK], "Operations": [
        {"method": "POST", "bulkId": "x", "path": "/Users", "data": {"userName": "x", "displayName": "y".repeat(4000)}}]});
    assert_scim_error(app.post("/Bulk", &big).await, 413, None).await;
    assert_eq!(app.user_count().await, 0);
}
