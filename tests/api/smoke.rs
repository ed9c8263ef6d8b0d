use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn create_then_get_returns_the_same_user() {
    let app = spawn_app().await;
    let res = app
        .post("/Users", &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "bjensen", "password": "hunter2"}))
        .await;
    assert_eq!(res.status(), 201);
    let location = res.headers()["location"].to_str().unwrap().to_string();
    let etag = res.headers()["etag"].to_str().unwrap().to_string();
    let created: serde_json::Value = res.json().await.unwrap();
    assert_eq!(created["meta"]["location"], location);
    assert_eq!(created["meta"]["version"], etag);
    assert!(created.get("password").is_none());
    let id = created["id"].as_str().unwrap();
    let got: serde_json::Value = app.get(&format!("/Users/{id}")).await.json().await.unwrap();
    assert_eq!(got, created);
}

#[tokio::test]
async fn patch_put_and_delete_round_trip() {
    let app = spawn_app().await;
    let user = app.create_user("alice").await;
    let id = user["id"].as_str().unwrap();
    let res = app
        .patch(
            &format!("/Users/{id}"),
            &patch_op(json!([{"op": "Replace", "path": "displayName", "value": "Alice A."}])),
        )
        .await;
    assert_eq!(res.status(), 200);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["displayName"], "Alice A.");
    assert_eq!(body["meta"]["version"], "W/\"2\"");
    let res = app
        .put(
            &format!("/Users/{id}"),
            &json!({"userName": "alice", "title": "CTO"}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let body: serde_json::Value = res.json().await.unwrap();
    assert!(body.get("displayName").is_none());
    assert_eq!(body["title"], "CTO");
    let group = app.create_group("Admins", &[id]).await;
    assert_eq!(group["members"][0]["value"], id);
    assert_eq!(app.delete(&format!("/Users/{id}")).await.status(), 204);
    assert_scim_error(app.get(&format!("/Users/{id}")).await, 404, None).await;
    assert_eq!(app.user_count().await, 0);
    let gid = group["id"].as_str().unwrap();
    let group: serde_json::Value = app
        .get(&format!("/Groups/{gid}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(group["members"], json!([]));
    assert!(app.database_url.starts_with("postgres") || app.db_path.exists());
}
