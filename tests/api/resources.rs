//! `/Users` and `/Groups` as a SCIM client sees them: create, read, replace,
//! delete, uniqueness, tenant isolation, schema rules, group membership,
//! projection, content negotiation, preconditions and the audit trail.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;

const USER_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const ENTERPRISE_URN: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

fn id_of(resource: &Value) -> String {
    resource["id"].as_str().expect("id").to_string()
}

fn header(res: &reqwest::Response, name: &str) -> Option<String> {
    res.headers()
        .get(name)
        .map(|v| v.to_str().expect("header is text").to_string())
}

/// The `value`s of a multi-valued attribute, sorted.
fn values_of(list: &Value) -> Vec<String> {
    let mut v: Vec<String> = list
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|i| i["value"].as_str().expect("value").to_string())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn is_rfc3339(s: &Value) -> bool {
    s.as_str()
        .is_some_and(|s| chrono::DateTime::parse_from_rfc3339(s).is_ok())
}

// --- create, read, replace, delete ------------------------------------------

#[tokio::test]
async fn post_user_is_201_with_location_etag_and_full_meta() {
    let app = spawn_app().await;
    let res = app
        .post(
            "/Users",
            &json!({"schemas": [USER_URN], "userName": "bjensen", "displayName": "Babs"}),
        )
        .await;
    assert_eq!(res.status(), 201);
    assert_eq!(header(&res, "content-type").as_deref(), Some(SCIM_JSON));
    let location = header(&res, "location").expect("Location header");
    let etag = header(&res, "etag").expect("ETag header");
    let user: Value = res.json().await.unwrap();
    let id = id_of(&user);
    assert!(!id.is_empty());
    assert_eq!(user["schemas"], json!([USER_URN]));
    assert_eq!(user["userName"], "bjensen");
    assert_eq!(user["displayName"], "Babs");
    let meta = &user["meta"];
    assert_eq!(meta["resourceType"], "User");
    assert_eq!(meta["location"], location.as_str());
    assert_eq!(location, app.url(&format!("/Users/{id}")));
    assert_eq!(meta["version"], etag.as_str());
    assert_eq!(etag, "W/\"1\"");
    assert!(is_rfc3339(&meta["created"]), "created: {meta}");
    assert!(is_rfc3339(&meta["lastModified"]), "lastModified: {meta}");
    assert_eq!(meta["created"], meta["lastModified"]);
}

#[tokio::test]
async fn post_group_is_201_with_location_equal_to_meta_location() {
    let app = spawn_app().await;
    let res = app
        .post(
            "/Groups",
            &json!({"schemas": [GROUP_URN], "displayName": "Admins"}),
        )
        .await;
    assert_eq!(res.status(), 201);
    let location = header(&res, "location").expect("Location header");
    let etag = header(&res, "etag").expect("ETag header");
    let group: Value = res.json().await.unwrap();
    let id = id_of(&group);
    assert_eq!(location, app.url(&format!("/Groups/{id}")));
    assert_eq!(group["meta"]["location"], location.as_str());
    assert_eq!(group["meta"]["resourceType"], "Group");
    assert_eq!(group["meta"]["version"], etag.as_str());
    assert_eq!(group["displayName"], "Admins");
    assert_eq!(app.get_ok(&format!("/Groups/{id}")).await, group);
}

#[tokio::test]
async fn client_supplied_id_and_meta_are_ignored_on_create() {
    let app = spawn_app().await;
    let res = app
        .post(
            "/Users",
            &json!({"schemas": [USER_URN], "id": "chosen-by-client", "userName": "bjensen",
                    "meta": {"version": "W/\"99\"", "created": "2000-01-01T00:00:00Z",
                             "resourceType": "Group", "location": "https://evil.example/x"}}),
        )
        .await;
    assert_eq!(res.status(), 201);
    let user: Value = res.json().await.unwrap();
    let id = id_of(&user);
    assert_ne!(id, "chosen-by-client");
    assert_eq!(user["meta"]["version"], "W/\"1\"");
    assert_eq!(user["meta"]["resourceType"], "User");
    assert_ne!(user["meta"]["created"], "2000-01-01T00:00:00Z");
    assert_eq!(user["meta"]["location"], app.url(&format!("/Users/{id}")));
    assert_scim_error(app.get("/Users/chosen-by-client").await, 404, None).await;
}

#[tokio::test]
async fn get_by_id_returns_the_resource_with_its_etag() {
    let app = spawn_app().await;
    let user = app.create_user("bjensen").await;
    let id = id_of(&user);
    let res = app.get(&format!("/Users/{id}")).await;
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "content-type").as_deref(), Some(SCIM_JSON));
    assert_eq!(header(&res, "etag").as_deref(), Some("W/\"1\""));
    assert!(header(&res, "location").is_none(), "Location only on 201");
    let got: Value = res.json().await.unwrap();
    assert_eq!(got, user);
}

#[tokio::test]
async fn put_replaces_the_resource_clears_omitted_attributes_and_keeps_created() {
    let app = spawn_app().await;
    let res = app
        .post(
            "/Users",
            &json!({"schemas": [USER_URN, ENTERPRISE_URN], "userName": "bjensen",
                    "displayName": "Babs", "title": "Engineer",
                    "emails": [{"value": "b@example.com", "type": "work"}],
                    ENTERPRISE_URN: {"department": "R&D"}}),
        )
        .await;
    assert_eq!(res.status(), 201);
    let before: Value = res.json().await.unwrap();
    let id = id_of(&before);

    let res = app
        .put(
            &format!("/Users/{id}"),
            &json!({"schemas": [USER_URN], "userName": "bjensen", "nickName": "B"}),
        )
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "etag").as_deref(), Some("W/\"2\""));
    let after: Value = res.json().await.unwrap();
    assert_eq!(after["id"], id.as_str());
    assert_eq!(after["userName"], "bjensen");
    assert_eq!(after["nickName"], "B");
    for gone in ["displayName", "title", "emails", ENTERPRISE_URN] {
        assert!(after.get(gone).is_none(), "{gone} survived PUT: {after}");
    }
    assert_eq!(after["schemas"], json!([USER_URN]));
    assert_eq!(after["meta"]["version"], "W/\"2\"");
    assert_eq!(after["meta"]["created"], before["meta"]["created"]);
    assert!(
        after["meta"]["lastModified"].as_str() >= before["meta"]["lastModified"].as_str(),
        "lastModified went backwards"
    );
    assert_eq!(after["meta"]["location"], before["meta"]["location"]);
    assert_eq!(app.get_ok(&format!("/Users/{id}")).await, after);
}

#[tokio::test]
async fn put_replaces_group_members_and_display_name() {
    let app = spawn_app().await;
    let a = id_of(&app.create_user("alice").await);
    let b = id_of(&app.create_user("bob").await);
    let group = app.create_group("Ops", &[&a]).await;
    let gid = id_of(&group);
    let res = app
        .put(
            &format!("/Groups/{gid}"),
            &json!({"schemas": [GROUP_URN], "displayName": "Operations", "members": [{"value": b}]}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["displayName"], "Operations");
    assert_eq!(values_of(&body["members"]), vec![b.clone()]);
    let got = app.get_ok(&format!("/Groups/{gid}")).await;
    assert_eq!(values_of(&got["members"]), vec![b.clone()]);
    let alice = app.get_ok(&format!("/Users/{a}")).await;
    assert!(
        alice.get("groups").is_none(),
        "alice still in a group: {alice}"
    );

    // A PUT without members empties the group.
    let res = app
        .put(
            &format!("/Groups/{gid}"),
            &json!({"schemas": [GROUP_URN], "displayName": "Operations"}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let got = app.get_ok(&format!("/Groups/{gid}")).await;
    assert_eq!(got["members"], json!([]));
}

#[tokio::test]
async fn delete_is_204_then_the_resource_is_404_and_gone_from_lists() {
    let app = spawn_app().await;
    let keep = app.create_user("keep").await;
    let user = app.create_user("bjensen").await;
    let id = id_of(&user);
    assert_eq!(app.user_count().await, 2);
    let res = app.delete(&format!("/Users/{id}")).await;
    assert_eq!(res.status(), 204);
    assert_eq!(res.content_length(), Some(0));
    assert_scim_error(app.get(&format!("/Users/{id}")).await, 404, None).await;
    assert_scim_error(app.delete(&format!("/Users/{id}")).await, 404, None).await;
    let list = app.get_ok("/Users").await;
    assert_eq!(list["totalResults"], 1);
    assert_eq!(list["Resources"][0]["id"], keep["id"]);

    let group = app.create_group("Admins", &[]).await;
    let gid = id_of(&group);
    assert_eq!(app.delete(&format!("/Groups/{gid}")).await.status(), 204);
    assert_scim_error(app.get(&format!("/Groups/{gid}")).await, 404, None).await;
    assert_eq!(app.group_count().await, 0);
}

// --- uniqueness -----------------------------------------------------------

#[tokio::test]
async fn duplicate_user_name_in_other_case_is_409_and_changes_nothing() {
    let app = spawn_app().await;
    let first = app.create_user("bjensen").await;
    let audit_before = app.audit_count(None);
    for name in ["bjensen", "BJensen", "BJENSEN"] {
        let res = app
            .post("/Users", &json!({"schemas": [USER_URN], "userName": name}))
            .await;
        assert_scim_error(res, 409, Some("uniqueness")).await;
    }
    assert_eq!(app.user_count().await, 1);
    assert_eq!(app.audit_count(None), audit_before);
    assert_eq!(
        app.get_ok(&format!("/Users/{}", id_of(&first))).await,
        first
    );
    // Case folding is not limited to ASCII.
    app.create_user("émile").await;
    let res = app
        .post(
            "/Users",
            &json!({"schemas": [USER_URN], "userName": "ÉMILE"}),
        )
        .await;
    assert_scim_error(res, 409, Some("uniqueness")).await;
    assert_eq!(app.user_count().await, 2);
}

#[tokio::test]
async fn put_renaming_to_a_taken_user_name_is_409_and_changes_nothing() {
    let app = spawn_app().await;
    app.create_user("alice").await;
    let bob = app.create_user("bob").await;
    let id = id_of(&bob);
    let res = app
        .put(
            &format!("/Users/{id}"),
            &json!({"schemas": [USER_URN], "userName": "ALICE", "title": "changed"}),
        )
        .await;
    assert_scim_error(res, 409, Some("uniqueness")).await;
    assert_eq!(app.get_ok(&format!("/Users/{id}")).await, bob);
    // bob's own name is still his.
    let res = app
        .post("/Users", &json!({"schemas": [USER_URN], "userName": "Bob"}))
        .await;
    assert_scim_error(res, 409, Some("uniqueness")).await;
}

#[tokio::test]
async fn patch_renaming_to_a_taken_user_name_is_409_and_changes_nothing() {
    let app = spawn_app().await;
    app.create_user("alice").await;
    let bob = app.create_user("bob").await;
    let id = id_of(&bob);
    let res = app
        .patch(
            &format!("/Users/{id}"),
            &patch_op(json!([
                {"op": "replace", "path": "title", "value": "changed"},
                {"op": "replace", "path": "userName", "value": "Alice"}
            ])),
        )
        .await;
    assert_scim_error(res, 409, Some("uniqueness")).await;
    assert_eq!(app.get_ok(&format!("/Users/{id}")).await, bob);
}

#[tokio::test]
async fn user_name_can_change_case_and_a_released_name_can_be_reused() {
    let app = spawn_app().await;
    let bob = app.create_user("bob").await;
    let id = id_of(&bob);
    // Renaming to another case of its own name is not a conflict.
    let res = app
        .patch(
            &format!("/Users/{id}"),
            &patch_op(json!([{"op": "replace", "path": "userName", "value": "Bob"}])),
        )
        .await;
    assert_eq!(res.status(), 200);
    // Renaming frees the old name.
    let res = app
        .put(
            &format!("/Users/{id}"),
            &json!({"schemas": [USER_URN], "userName": "robert"}),
        )
        .await;
    assert_eq!(res.status(), 200);
    app.create_user("bob").await;
    // Deleting frees a name too.
    assert_eq!(app.delete(&format!("/Users/{id}")).await.status(), 204);
    app.create_user("ROBERT").await;
}

#[tokio::test]
async fn concurrent_creates_of_one_user_name_give_one_201_and_409s_for_the_rest() {
    let app = spawn_app().await;
    let names = [
        "bjensen", "BJensen", "bJENSEN", "BJENSEN", "Bjensen", "bjensen",
    ];
    let bodies: Vec<Value> = names
        .iter()
        .map(|name| json!({"schemas": [USER_URN], "userName": name}))
        .collect();
    let results =
        futures_util::future::join_all(bodies.iter().map(|body| app.post("/Users", body))).await;
    let mut created = 0;
    for res in results {
        match res.status().as_u16() {
            201 => created += 1,
            _ => {
                assert_scim_error(res, 409, Some("uniqueness")).await;
            }
        }
    }
    assert_eq!(created, 1);
    assert_eq!(app.user_count().await, 1);
    assert_eq!(app.audit_count(None), 1);
}

#[tokio::test]
async fn duplicate_group_display_name_in_other_case_is_409_and_changes_nothing() {
    let app = spawn_app().await;
    let admins = app.create_group("Admins", &[]).await;
    let res = app
        .post(
            "/Groups",
            &json!({"schemas": [GROUP_URN], "displayName": "ADMINS"}),
        )
        .await;
    assert_scim_error(res, 409, Some("uniqueness")).await;
    assert_eq!(app.group_count().await, 1);

    let ops = app.create_group("Ops", &[]).await;
    let ops_id = id_of(&ops);
    let res = app
        .patch(
            &format!("/Groups/{ops_id}"),
            &patch_op(json!([{"op": "replace", "path": "displayName", "value": "admins"}])),
        )
        .await;
    assert_scim_error(res, 409, Some("uniqueness")).await;
    let res = app
        .put(
            &format!("/Groups/{ops_id}"),
            &json!({"schemas": [GROUP_URN], "displayName": "Admins"}),
        )
        .await;
    assert_scim_error(res, 409, Some("uniqueness")).await;
    assert_eq!(app.get_ok(&format!("/Groups/{ops_id}")).await, ops);
    assert_eq!(
        app.get_ok(&format!("/Groups/{}", id_of(&admins))).await,
        admins
    );
    // A user and a group may share a name.
    app.create_user("Admins").await;
}

// --- tenants -------------------------------------------------------------

#[tokio::test]
async fn a_resource_of_one_tenant_is_404_and_invisible_for_another() {
    let mut app = spawn_app().await;
    let uid = id_of(&app.create_user("bjensen").await);
    let group = app.create_group("Admins", &[&uid]).await;
    let gid = id_of(&group);
    let user = app.get_ok(&format!("/Users/{uid}")).await;

    app.token = GLOBEX_TOKEN.into();
    for path in [format!("/Users/{uid}"), format!("/Groups/{gid}")] {
        assert_scim_error(app.get(&path).await, 404, None).await;
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
        assert_scim_error(app.delete(&path).await, 404, None).await;
    }
    assert_scim_error(
        app.put(
            &format!("/Users/{uid}"),
            &json!({"schemas": [USER_URN], "userName": "mallory"}),
        )
        .await,
        404,
        None,
    )
    .await;
    let users = app.get_ok("/Users").await;
    assert_eq!(users["totalResults"], 0);
    assert_eq!(users["Resources"], json!([]));
    let found = app
        .get_ok("/Users?filter=userName%20eq%20%22bjensen%22")
        .await;
    assert_eq!(found["totalResults"], 0);
    let res = app
        .post(
            "/Users/.search",
            &json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
                    "filter": "userName eq \"bjensen\""}),
        )
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap()["totalResults"], 0);
    assert_eq!(app.group_count().await, 0);
    // Nor can the other tenant make it a member of one of its groups.
    let res = app
        .post(
            "/Groups",
            &json!({"schemas": [GROUP_URN], "displayName": "Stolen", "members": [{"value": uid}]}),
        )
        .await;
    assert_scim_error(res, 400, Some("invalidValue")).await;
    let own = app.create_group("Own", &[]).await;
    let res = app
        .patch(
            &format!("/Groups/{}", id_of(&own)),
            &patch_op(json!([{"op": "add", "path": "members", "value": [{"value": uid}]}])),
        )
        .await;
    assert_scim_error(res, 400, Some("invalidValue")).await;
    assert_eq!(app.get_ok(&format!("/Groups/{}", id_of(&own))).await, own);
    assert_eq!(app.group_count().await, 1);

    app.token = ACME_TOKEN.into();
    assert_eq!(app.get_ok(&format!("/Users/{uid}")).await, user);
    let got = app.get_ok(&format!("/Groups/{gid}")).await;
    assert_eq!(values_of(&got["members"]), vec![uid]);
    assert_eq!(got["meta"]["version"], group["meta"]["version"]);
}

#[tokio::test]
async fn the_same_user_name_and_group_name_are_allowed_in_two_tenants() {
    let mut app = spawn_app().await;
    let acme_user = app.create_user("bjensen").await;
    app.create_group("Admins", &[]).await;
    app.token = GLOBEX_TOKEN.into();
    let globex_user = app.create_user("BJensen").await;
    app.create_group("admins", &[]).await;
    assert_ne!(acme_user["id"], globex_user["id"]);
    assert_eq!(app.user_count().await, 1);
    let list = app.get_ok("/Users").await;
    assert_eq!(list["Resources"][0]["userName"], "BJensen");
    app.token = ACME_TOKEN.into();
    let list = app.get_ok("/Users").await;
    assert_eq!(list["totalResults"], 1);
    assert_eq!(list["Resources"][0]["userName"], "bjensen");
}

// --- schema rules ---------------------------------------------------------

#[tokio::test]
async fn read_only_groups_on_input_is_ignored() {
    let app = spawn_app().await;
    let group = app.create_group("Admins", &[]).await;
    let gid = id_of(&group);
    let res = app
        .post(
            "/Users",
            &json!({"schemas": [USER_URN], "userName": "bjensen",
                    "groups": [{"value": gid, "display": "Admins"}]}),
        )
        .await;
    assert_eq!(res.status(), 201);
    let user: Value = res.json().await.unwrap();
    assert!(user.get("groups").is_none(), "groups was stored: {user}");
    let uid = id_of(&user);
    let res = app
        .put(
            &format!("/Users/{uid}"),
            &json!({"schemas": [USER_URN], "userName": "bjensen", "id": "other-id",
                    "groups": [{"value": gid}], "meta": {"version": "W/\"7\""}}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let user: Value = res.json().await.unwrap();
    assert_eq!(user["id"], uid.as_str());
    assert_eq!(user["meta"]["version"], "W/\"2\"");
    assert!(user.get("groups").is_none());
    let group = app.get_ok(&format!("/Groups/{gid}")).await;
    assert_eq!(group["members"], json!([]));
}

#[tokio::test]
async fn write_only_password_is_accepted_but_never_returned() {
    let app = spawn_app().await;
    let res = app
        .post(
            "/Users",
            &json!({"schemas": [USER_URN], "userName": "bjensen", "password": "t1meMa$heen"}),
        )
        .await;
    assert_eq!(res.status(), 201);
    let text = res.text().await.unwrap();
    assert!(!text.contains("t1meMa$heen") && !text.contains("password"));
    let user: Value = serde_json::from_str(&text).unwrap();
    let id = id_of(&user);

    for path in [
        format!("/Users/{id}"),
        format!("/Users/{id}?attributes=password"),
        format!("/Users/{id}?attributes=userName,password"),
        "/Users".to_string(),
        "/Users?attributes=password".to_string(),
        "/Users?filter=userName%20eq%20%22bjensen%22".to_string(),
    ] {
        let text = app.get(&path).await.text().await.unwrap();
        assert!(
            !text.contains("t1meMa$heen") && !text.contains("password"),
            "{path}: {text}"
        );
    }
    let res = app
        .patch(
            &format!("/Users/{id}"),
            &patch_op(json!([{"op": "replace", "path": "password", "value": "n3wS3cret"}])),
        )
        .await;
    assert_eq!(res.status(), 200);
    let text = res.text().await.unwrap();
    assert!(!text.contains("n3wS3cret") && !text.contains("password"));
    let res = app
        .put(
            &format!("/Users/{id}"),
            &json!({"schemas": [USER_URN], "userName": "bjensen", "password": "an0ther"}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let text = res.text().await.unwrap();
    assert!(!text.contains("an0ther") && !text.contains("password"));
}

#[tokio::test]
async fn missing_required_attribute_is_400_invalid_value_and_nothing_is_stored() {
    let app = spawn_app().await;
    let res = app
        .post(
            "/Users",
            &json!({"schemas": [USER_URN], "displayName": "No Name"}),
        )
        .await;
    assert_scim_error(res, 400, Some("invalidValue")).await;
    let res = app
        .post("/Users", &json!({"schemas": [USER_URN], "userName": ""}))
        .await;
    assert_scim_error(res, 400, Some("invalidValue")).await;
    assert_eq!(app.user_count().await, 0);
    let res = app
        .post("/Groups", &json!({"schemas": [GROUP_URN], "members": []}))
        .await;
    assert_scim_error(res, 400, Some("invalidValue")).await;
    assert_eq!(app.group_count().await, 0);
    assert_eq!(app.audit_count(None), 0);

    // PUT must carry required attributes too.
    let user = app.create_user("bjensen").await;
    let id = id_of(&user);
    let res = app
        .put(
            &format!("/Users/{id}"),
            &json!({"schemas": [USER_URN], "displayName": "B"}),
        )
        .await;
    assert_scim_error(res, 400, Some("invalidValue")).await;
    assert_eq!(app.get_ok(&format!("/Users/{id}")).await, user);
}

#[tokio::test]
async fn attribute_names_are_case_insensitive_and_returned_in_canonical_case() {
    let app = spawn_app().await;
    let res = app
        .post(
            "/Users",
            &json!({"SCHEMAS": [USER_URN.to_uppercase()], "USERNAME": "bjensen",
                    "Name": {"GIVENNAME": "Barbara", "familyname": "Jensen"},
                    "Emails": [{"VALUE": "b@example.com", "Type": "work"}],
                    ENTERPRISE_URN.to_uppercase(): {"DEPARTMENT": "R&D"}}),
        )
        .await;
    assert_eq!(res.status(), 201);
    let user: Value = res.json().await.unwrap();
    assert_eq!(user["userName"], "bjensen");
    assert_eq!(
        user["name"],
        json!({"familyName": "Jensen", "givenName": "Barbara"})
    );
    assert_eq!(
        user["emails"],
        json!([{"value": "b@example.com", "type": "work"}])
    );
    assert_eq!(user[ENTERPRISE_URN], json!({"department": "R&D"}));
    for key in ["USERNAME", "Name", "Emails", "SCHEMAS"] {
        assert!(user.get(key).is_none(), "{key} kept its input case");
    }
    let id = id_of(&user);
    assert_eq!(app.get_ok(&format!("/Users/{id}")).await, user);
}

#[tokio::test]
async fn true_and_false_strings_are_accepted_for_booleans() {
    let app = spawn_app().await;
    let res = app
        .post(
            "/Users",
            &json!({"schemas": [USER_URN], "userName": "bjensen", "active": "False",
                    "emails": [{"value": "b@example.com", "primary": "True"}]}),
        )
        .await;
    assert_eq!(res.status(), 201);
    let user: Value = res.json().await.unwrap();
    assert_eq!(user["active"], json!(false));
    assert_eq!(user["emails"][0]["primary"], json!(true));
    let id = id_of(&user);
    let res = app
        .patch(
            &format!("/Users/{id}"),
            &patch_op(json!([{"op": "Replace", "path": "active", "value": "True"}])),
        )
        .await;
    assert_eq!(res.status(), 200);
    let got = app.get_ok(&format!("/Users/{id}")).await;
    assert_eq!(got["active"], json!(true));
}

#[tokio::test]
async fn unknown_attribute_of_a_declared_schema_is_400_invalid_value_and_nothing_is_stored() {
    let app = spawn_app().await;
    for body in [
        json!({"schemas": [USER_URN], "userName": "a", "shoeSize": 42}),
        json!({"schemas": [USER_URN], "userName": "a", "name": {"nick": "x"}}),
        json!({"schemas": [USER_URN, ENTERPRISE_URN], "userName": "a", ENTERPRISE_URN: {"shoeSize": 42}}),
        json!({"schemas": [USER_URN], "userName": "a", format!("{ENTERPRISE_URN}:shoeSize"): 42}),
        json!({"schemas": ["urn:example:unknown"], "userName": "a"}),
    ] {
        let res = app.post("/Users", &body).await;
        assert_scim_error(res, 400, Some("invalidValue")).await;
    }
    assert_eq!(app.user_count().await, 0);
    let res = app
        .post(
            "/Groups",
            &json!({"schemas": [GROUP_URN], "displayName": "G", "owner": "me"}),
        )
        .await;
    assert_scim_error(res, 400, Some("invalidValue")).await;
    assert_eq!(app.group_count().await, 0);
}

#[tokio::test]
async fn enterprise_extension_is_kept_losslessly_and_listed_in_schemas() {
    let app = spawn_app().await;
    let manager = app.create_user("boss").await;
    let manager_id = id_of(&manager);
    let ext = json!({
        "employeeNumber": "701984",
        "costCenter": "4130",
        "organization": "Universal Studios",
        "division": "Theme Park",
        "department": "Tour Operations",
        "manager": {"value": manager_id},
    });
    let res = app
        .post(
            "/Users",
            &json!({"schemas": [USER_URN, ENTERPRISE_URN], "userName": "bjensen", ENTERPRISE_URN: ext}),
        )
        .await;
    assert_eq!(res.status(), 201);
    let user: Value = res.json().await.unwrap();
    assert_eq!(user["schemas"], json!([USER_URN, ENTERPRISE_URN]));
    assert_eq!(user[ENTERPRISE_URN], ext);
    let id = id_of(&user);
    assert_eq!(app.get_ok(&format!("/Users/{id}")).await, user);
    let list = app
        .get_ok("/Users?filter=userName%20eq%20%22bjensen%22")
        .await;
    assert_eq!(list["Resources"][0], user);

    // Entra's shape: extension attributes as URN-prefixed top-level keys.
    let res = app
        .post(
            "/Users",
            &json!({"schemas": [USER_URN], "userName": "entra",
                    format!("{ENTERPRISE_URN}:department"): "Sales",
                    format!("{ENTERPRISE_URN}:manager"): manager_id}),
        )
        .await;
    assert_eq!(res.status(), 201);
    let entra: Value = res.json().await.unwrap();
    assert_eq!(entra["schemas"], json!([USER_URN, ENTERPRISE_URN]));
    assert_eq!(
        entra[ENTERPRISE_URN],
        json!({"department": "Sales", "manager": {"value": manager_id}})
    );
}

// --- groups and membership ------------------------------------------------

#[tokio::test]
async fn group_members_carry_value_ref_display_and_type() {
    let app = spawn_app().await;
    let res = app
        .post(
            "/Users",
            &json!({"schemas": [USER_URN], "userName": "bjensen", "displayName": "Babs Jensen"}),
        )
        .await;
    let user: Value = res.json().await.unwrap();
    let uid = id_of(&user);
    let inner = app.create_group("Inner", &[]).await;
    let inner_id = id_of(&inner);
    let res = app
        .post(
            "/Groups",
            &json!({"schemas": [GROUP_URN], "displayName": "Outer",
                    "members": [{"value": uid, "type": "User"}, {"value": inner_id, "type": "Group"}]}),
        )
        .await;
    assert_eq!(res.status(), 201);
    let outer: Value = res.json().await.unwrap();
    let oid = id_of(&outer);
    // `members.display` is returned only when asked for (scim2-tester
    // compares members verbatim, and it saves a join on large groups).
    let asked = app
        .get_ok(&format!(
            "/Groups/{oid}?attributes=displayName,members,members.display"
        ))
        .await;
    let by_default = app.get_ok(&format!("/Groups/{oid}")).await;
    for (group, with_display) in [(&outer, false), (&by_default, false), (&asked, true)] {
        let members = group["members"].as_array().expect("members");
        assert_eq!(members.len(), 2, "{group}");
        let user_member = members
            .iter()
            .find(|m| m["value"] == uid.as_str())
            .expect("user member");
        assert_eq!(user_member["$ref"], app.url(&format!("/Users/{uid}")));
        assert_eq!(user_member["type"], "User");
        let group_member = members
            .iter()
            .find(|m| m["value"] == inner_id.as_str())
            .expect("group member");
        assert_eq!(
            group_member["$ref"],
            app.url(&format!("/Groups/{inner_id}"))
        );
        assert_eq!(group_member["type"], "Group");
        if with_display {
            assert_eq!(user_member["display"], "Babs Jensen");
            assert_eq!(group_member["display"], "Inner");
        } else {
            assert!(user_member.get("display").is_none(), "{group}");
            assert!(group_member.get("display").is_none(), "{group}");
        }
    }
}

#[tokio::test]
async fn a_user_shows_the_groups_it_belongs_to() {
    let app = spawn_app().await;
    let user = app.create_user("bjensen").await;
    let uid = id_of(&user);
    assert!(user.get("groups").is_none());
    let admins = app.create_group("Admins", &[&uid]).await;
    let ops = app.create_group("Ops", &[&uid]).await;
    let got = app.get_ok(&format!("/Users/{uid}")).await;
    let groups = got["groups"].as_array().expect("groups").clone();
    let mut expected = vec![id_of(&admins), id_of(&ops)];
    expected.sort();
    assert_eq!(values_of(&got["groups"]), expected);
    for g in &groups {
        let gid = g["value"].as_str().unwrap();
        assert_eq!(g["$ref"], app.url(&format!("/Groups/{gid}")));
        let display = if gid == id_of(&admins) {
            "Admins"
        } else {
            "Ops"
        };
        assert_eq!(g["display"], display);
    }
    let list = app
        .get_ok("/Users?filter=userName%20eq%20%22bjensen%22")
        .await;
    assert_eq!(values_of(&list["Resources"][0]["groups"]), expected);
    // The user and its groups come back from one read: the document is the
    // user's own, whatever the number of groups.
    for doc in [&got, &list["Resources"][0]] {
        assert_eq!(doc["id"], uid.as_str());
        assert_eq!(doc["userName"], "bjensen");
        assert_eq!(doc["active"], true);
        assert_eq!(doc["meta"]["resourceType"], "User");
    }
}

#[tokio::test]
async fn renaming_a_group_or_a_member_shows_in_the_computed_references() {
    let app = spawn_app().await;
    let uid = id_of(&app.create_user("bjensen").await);
    let gid = id_of(&app.create_group("Admins", &[&uid]).await);
    let res = app
        .patch(
            &format!("/Groups/{gid}"),
            &patch_op(json!([{"op": "replace", "path": "displayName", "value": "Operators"}])),
        )
        .await;
    assert_eq!(res.status(), 200);
    let user = app.get_ok(&format!("/Users/{uid}")).await;
    assert_eq!(user["groups"][0]["display"], "Operators");
    let res = app
        .patch(
            &format!("/Users/{uid}"),
            &patch_op(json!([{"op": "replace", "path": "displayName", "value": "Babs"}])),
        )
        .await;
    assert_eq!(res.status(), 200);
    let group = app
        .get_ok(&format!("/Groups/{gid}?attributes=members.display"))
        .await;
    assert_eq!(group["members"][0]["display"], "Babs");
}

#[tokio::test]

async fn joining_a_group_changes_the_users_version_so_a_stale_if_none_match_is_not_304() {
    let app = spawn_app().await;
    let user = app.create_user("bjensen").await;
    let uid = id_of(&user);
    let old = user["meta"]["version"].as_str().unwrap().to_string();
    let gid = id_of(&app.create_group("Admins", &[&uid]).await);
    let res = app
        .request(Method::GET, &format!("/Users/{uid}"), None)
        .header("If-None-Match", &old)
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        200,
        "the cached copy (without groups) is stale, yet the gateway says 304"
    );
    let etag = header(&res, "etag").unwrap();
    let got: Value = res.json().await.unwrap();
    assert_eq!(values_of(&got["groups"]), vec![gid]);
    assert_ne!(etag, old);
    assert_eq!(got["meta"]["version"], etag.as_str());
}

#[tokio::test]
async fn deleting_a_user_removes_it_from_its_groups() {
    let app = spawn_app().await;
    let alice = id_of(&app.create_user("alice").await);
    let bob = id_of(&app.create_user("bob").await);
    let group = app.create_group("Admins", &[&alice, &bob]).await;
    let gid = id_of(&group);
    assert_eq!(app.delete(&format!("/Users/{alice}")).await.status(), 204);
    let got = app.get_ok(&format!("/Groups/{gid}")).await;
    assert_eq!(values_of(&got["members"]), vec![bob.clone()]);
    assert_ne!(
        got["meta"]["version"], group["meta"]["version"],
        "the group changed, so must its version"
    );
    let list = app.get_ok("/Groups?attributes=members").await;
    assert_eq!(values_of(&list["Resources"][0]["members"]), vec![bob]);
}

#[tokio::test]
async fn deleting_a_group_removes_it_from_its_members_groups() {
    let app = spawn_app().await;
    let uid = id_of(&app.create_user("alice").await);
    let gid = id_of(&app.create_group("Admins", &[&uid]).await);
    assert!(
        app.get_ok(&format!("/Users/{uid}"))
            .await
            .get("groups")
            .is_some()
    );
    assert_eq!(app.delete(&format!("/Groups/{gid}")).await.status(), 204);
    let user = app.get_ok(&format!("/Users/{uid}")).await;
    assert!(user.get("groups").is_none(), "{user}");
}

#[tokio::test]
async fn adding_a_nonexistent_member_is_400_invalid_value_and_nothing_is_stored() {
    let app = spawn_app().await;
    let uid = id_of(&app.create_user("alice").await);
    let missing = "00000000-0000-4000-8000-000000000000";
    let audit_before = app.audit_count(None);
    let res = app
        .post(
            "/Groups",
            &json!({"schemas": [GROUP_URN], "displayName": "Admins",
                    "members": [{"value": uid}, {"value": missing}]}),
        )
        .await;
    assert_scim_error(res, 400, Some("invalidValue")).await;
    assert_eq!(app.group_count().await, 0);
    assert_eq!(app.audit_count(None), audit_before);
    // The name was not taken by the failed create.
    let group = app.create_group("Admins", &[&uid]).await;
    let gid = id_of(&group);

    let res = app
        .patch(
            &format!("/Groups/{gid}"),
            &patch_op(json!([{"op": "add", "path": "members", "value": [{"value": missing}]}])),
        )
        .await;
    assert_scim_error(res, 400, Some("invalidValue")).await;
    let res = app
        .put(
            &format!("/Groups/{gid}"),
            &json!({"schemas": [GROUP_URN], "displayName": "Admins", "members": [{"value": missing}]}),
        )
        .await;
    assert_scim_error(res, 400, Some("invalidValue")).await;
    let got = app.get_ok(&format!("/Groups/{gid}")).await;
    assert_eq!(got, group);
    assert_eq!(values_of(&got["members"]), vec![uid]);
}

#[tokio::test]
async fn a_member_of_the_wrong_type_or_the_group_itself_is_400_invalid_value() {
    let app = spawn_app().await;
    let uid = id_of(&app.create_user("alice").await);
    let res = app
        .post(
            "/Groups",
            &json!({"schemas": [GROUP_URN], "displayName": "Admins",
                    "members": [{"value": uid, "type": "Group"}]}),
        )
        .await;
    assert_scim_error(res, 400, Some("invalidValue")).await;
    assert_eq!(app.group_count().await, 0);
    let group = app.create_group("Admins", &[]).await;
    let gid = id_of(&group);
    let res = app
        .patch(
            &format!("/Groups/{gid}"),
            &patch_op(json!([{"op": "add", "path": "members", "value": [{"value": gid}]}])),
        )
        .await;
    assert_scim_error(res, 400, Some("invalidValue")).await;
    assert_eq!(app.get_ok(&format!("/Groups/{gid}")).await, group);
}

#[tokio::test]
async fn excluded_attributes_members_omits_the_members() {
    let app = spawn_app().await;
    let uid = id_of(&app.create_user("alice").await);
    let gid = id_of(&app.create_group("Admins", &[&uid]).await);
    let got = app
        .get_ok(&format!("/Groups/{gid}?excludedAttributes=members"))
        .await;
    assert!(got.get("members").is_none(), "{got}");
    assert_eq!(got["displayName"], "Admins");
    assert_eq!(got["id"], gid.as_str());
    assert!(got.get("meta").is_some());
    let list = app.get_ok("/Groups?excludedAttributes=members").await;
    assert_eq!(list["totalResults"], 1);
    assert!(list["Resources"][0].get("members").is_none());
    assert_eq!(list["Resources"][0]["displayName"], "Admins");
}

// --- projection -------------------------------------------------------------

#[tokio::test]
async fn attributes_parameter_returns_only_the_named_attributes_and_id() {
    let app = spawn_app().await;
    let res = app
        .post(
            "/Users",
            &json!({"schemas": [USER_URN, ENTERPRISE_URN], "userName": "bjensen",
                    "displayName": "Babs", "name": {"givenName": "Barbara", "familyName": "Jensen"},
                    ENTERPRISE_URN: {"department": "R&D", "costCenter": "7"}}),
        )
        .await;
    let user: Value = res.json().await.unwrap();
    let id = id_of(&user);
    let got = app
        .get_ok(&format!("/Users/{id}?attributes=userName,name.givenName"))
        .await;
    assert_eq!(got["id"], id.as_str());
    assert_eq!(got["userName"], "bjensen");
    assert_eq!(got["name"], json!({"givenName": "Barbara"}));
    for absent in ["displayName", "meta", ENTERPRISE_URN] {
        assert!(got.get(absent).is_none(), "{absent} in {got}");
    }
    let got = app
        .get_ok(&format!(
            "/Users/{id}?attributes={ENTERPRISE_URN}:department"
        ))
        .await;
    assert_eq!(got[ENTERPRISE_URN], json!({"department": "R&D"}));
    assert!(got.get("userName").is_none());

    let list = app.get_ok("/Users?attributes=displayName").await;
    assert_eq!(list["totalResults"], 1);
    let item = &list["Resources"][0];
    assert_eq!(item["id"], id.as_str());
    assert_eq!(item["displayName"], "Babs");
    assert!(item.get("userName").is_none(), "{item}");
    assert!(item.get("name").is_none(), "{item}");
}

#[tokio::test]
async fn excluded_attributes_parameter_drops_attributes_but_never_id() {
    let app = spawn_app().await;
    let res = app
        .post(
            "/Users",
            &json!({"schemas": [USER_URN], "userName": "bjensen", "displayName": "Babs",
                    "emails": [{"value": "b@example.com"}], "name": {"givenName": "B", "familyName": "J"}}),
        )
        .await;
    let user: Value = res.json().await.unwrap();
    let id = id_of(&user);
    let got = app
        .get_ok(&format!(
            "/Users/{id}?excludedAttributes=emails,name.familyName,id"
        ))
        .await;
    assert_eq!(got["id"], id.as_str());
    assert_eq!(got["userName"], "bjensen");
    assert_eq!(got["displayName"], "Babs");
    assert_eq!(got["name"], json!({"givenName": "B"}));
    assert!(got.get("emails").is_none());
    let list = app.get_ok("/Users?excludedAttributes=displayName").await;
    let item = &list["Resources"][0];
    assert!(item.get("displayName").is_none(), "{item}");
    assert_eq!(item["userName"], "bjensen");
    assert_eq!(item["emails"], user["emails"]);
}

// --- media types, Prefer, preconditions -------------------------------------

#[tokio::test]
async fn application_json_content_type_is_accepted() {
    let app = spawn_app().await;
    let send = |method: Method, path: String, body: Value| {
        app.client
            .request(method, app.url(&path))
            .bearer_auth(&app.token)
            .header("Content-Type", "application/json; charset=utf-8")
            .body(body.to_string())
            .send()
    };
    let res = send(
        Method::POST,
        "/Users".into(),
        json!({"schemas": [USER_URN], "userName": "bjensen"}),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 201);
    assert_eq!(header(&res, "content-type").as_deref(), Some(SCIM_JSON));
    let id = id_of(&res.json::<Value>().await.unwrap());
    let res = send(
        Method::PUT,
        format!("/Users/{id}"),
        json!({"schemas": [USER_URN], "userName": "bjensen", "title": "CTO"}),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 200);
    let res = send(
        Method::PATCH,
        format!("/Users/{id}"),
        patch_op(json!([{"op": "add", "path": "nickName", "value": "B"}])),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 200);
    let got = app.get_ok(&format!("/Users/{id}")).await;
    assert_eq!(got["title"], "CTO");
    assert_eq!(got["nickName"], "B");
}

#[tokio::test]
async fn patch_with_prefer_return_minimal_is_204_and_applies_the_change() {
    let app = spawn_app().await;
    let id = id_of(&app.create_user("bjensen").await);
    let res = app
        .request(
            Method::PATCH,
            &format!("/Users/{id}"),
            Some(&patch_op(
                json!([{"op": "replace", "path": "displayName", "value": "Babs"}]),
            )),
        )
        .header("Prefer", "return=minimal")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    assert_eq!(header(&res, "etag").as_deref(), Some("W/\"2\""));
    assert!(res.bytes().await.unwrap().is_empty());
    let got = app.get_ok(&format!("/Users/{id}")).await;
    assert_eq!(got["displayName"], "Babs");
    assert_eq!(got["meta"]["version"], "W/\"2\"");
}

#[tokio::test]
async fn get_with_current_if_none_match_is_304_and_with_stale_is_200() {
    let app = spawn_app().await;
    let user = app.create_user("bjensen").await;
    let id = id_of(&user);
    let path = format!("/Users/{id}");
    let res = app
        .request(Method::GET, &path, None)
        .header("If-None-Match", "W/\"1\"")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 304);
    assert_eq!(header(&res, "etag").as_deref(), Some("W/\"1\""));
    assert!(res.bytes().await.unwrap().is_empty());
    app.patch(
        &path,
        &patch_op(json!([{"op": "replace", "path": "title", "value": "CTO"}])),
    )
    .await;
    let res = app
        .request(Method::GET, &path, None)
        .header("If-None-Match", "W/\"1\"")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "etag").as_deref(), Some("W/\"2\""));
    let got: Value = res.json().await.unwrap();
    assert_eq!(got["title"], "CTO");
}

#[tokio::test]
async fn stale_if_match_on_put_patch_and_delete_is_412_and_changes_nothing() {
    let app = spawn_app().await;
    let id = id_of(&app.create_user("bjensen").await);
    let path = format!("/Users/{id}");
    let res = app
        .patch(
            &path,
            &patch_op(json!([{"op": "replace", "path": "title", "value": "CTO"}])),
        )
        .await;
    let current: Value = res.json().await.unwrap();
    assert_eq!(current["meta"]["version"], "W/\"2\"");
    let audit_before = app.audit_count(Some(&id));

    let stale = "W/\"1\"";
    let res = app
        .request(
            Method::PUT,
            &path,
            Some(&json!({"schemas": [USER_URN], "userName": "other"})),
        )
        .header("If-Match", stale)
        .send()
        .await
        .unwrap();
    assert_scim_error(res, 412, None).await;
    let res = app
        .request(
            Method::PATCH,
            &path,
            Some(&patch_op(
                json!([{"op": "replace", "path": "title", "value": "CEO"}]),
            )),
        )
        .header("If-Match", stale)
        .send()
        .await
        .unwrap();
    assert_scim_error(res, 412, None).await;
    let res = app
        .request(Method::DELETE, &path, None)
        .header("If-Match", stale)
        .send()
        .await
        .unwrap();
    assert_scim_error(res, 412, None).await;
    assert_eq!(app.get_ok(&path).await, current);
    assert_eq!(app.audit_count(Some(&id)), audit_before);

    // The current version is accepted.
    let res = app
        .request(
            Method::PATCH,
            &path,
            Some(&patch_op(
                json!([{"op": "replace", "path": "title", "value": "CEO"}]),
            )),
        )
        .header("If-Match", "W/\"2\"")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = app
        .request(Method::DELETE, &path, None)
        .header("If-Match", "W/\"3\"")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
}

// --- audit ------------------------------------------------------------------

#[tokio::test]
async fn every_write_appends_an_audit_row_and_a_failed_write_appends_none() {
    let app = spawn_app().await;
    assert_eq!(app.audit_count(None), 0);
    let user = app.create_user("bjensen").await;
    let id = id_of(&user);
    assert_eq!(app.audit_count(Some(&id)), 1);
    let res = app
        .patch(
            &format!("/Users/{id}"),
            &patch_op(json!([{"op": "replace", "path": "title", "value": "CTO"}])),
        )
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(app.audit_count(Some(&id)), 2);
    let res = app
        .put(
            &format!("/Users/{id}"),
            &json!({"schemas": [USER_URN], "userName": "bjensen"}),
        )
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(app.audit_count(Some(&id)), 3);

    // Failed writes: no resource, no audit row.
    let total = app.audit_count(None);
    let res = app
        .post(
            "/Users",
            &json!({"schemas": [USER_URN], "userName": "BJENSEN"}),
        )
        .await;
    assert_scim_error(res, 409, Some("uniqueness")).await;
    let res = app
        .post(
            "/Users",
            &json!({"schemas": [USER_URN], "userName": "x", "active": "maybe"}),
        )
        .await;
    assert_scim_error(res, 400, Some("invalidValue")).await;
    assert_eq!(app.user_count().await, 1);
    assert_eq!(app.audit_count(None), total);

    assert_eq!(app.delete(&format!("/Users/{id}")).await.status(), 204);
    assert_eq!(app.audit_count(Some(&id)), 4);
    assert_eq!(app.audit_count(None), total + 1);
}

#[tokio::test]
async fn audit_rows_name_the_tenant_token_action_and_resource_but_no_secret() {
    let mut app = spawn_app().await;
    let res = app
        .post(
            "/Users",
            &json!({"schemas": [USER_URN], "userName": "bjensen", "password": "t1meMa$heen"}),
        )
        .await;
    assert_eq!(res.status(), 201);
    let id = id_of(&res.json::<Value>().await.unwrap());
    app.patch(
        &format!("/Users/{id}"),
        &patch_op(json!([{"op": "replace", "path": "password", "value": "n3wS3cret"}])),
    )
    .await;
    assert_eq!(app.delete(&format!("/Users/{id}")).await.status(), 204);
    app.token = GLOBEX_TOKEN.into();
    let gid = id_of(&app.create_group("Admins", &[]).await);

    let rows = app.audit_rows();
    let about_user: Vec<&AuditRow> = rows
        .iter()
        .filter(|r| r.resource_id.as_deref() == Some(id.as_str()))
        .collect();
    let actions: Vec<&str> = about_user.iter().map(|r| r.action.as_str()).collect();
    assert_eq!(actions.first(), Some(&"scim.create"));
    assert_eq!(actions.last(), Some(&"scim.delete"));
    for r in &about_user {
        assert_eq!(r.tenant.as_deref(), Some("acme"));
        assert_eq!(r.actor, "acme/entra");
        assert_eq!(r.resource_type.as_deref(), Some("User"));
        assert_eq!(r.outcome, "success");
    }
    let group_row = rows
        .iter()
        .find(|r| r.resource_id.as_deref() == Some(gid.as_str()))
        .expect("audit row for the group");
    assert_eq!(group_row.tenant.as_deref(), Some("globex"));
    assert_eq!(group_row.actor, "globex/okta");
    assert_eq!(group_row.action, "scim.create");
    assert_eq!(group_row.resource_type.as_deref(), Some("Group"));
    for r in &rows {
        if let Some(detail) = &r.detail {
            serde_json::from_str::<Value>(detail).expect("audit detail is JSON");
        }
    }
    let dump = format!("{rows:?}");
    for secret in ["t1meMa$heen", "n3wS3cret", ACME_TOKEN, GLOBEX_TOKEN] {
        assert!(!dump.contains(secret), "{secret} in the audit trail");
    }
}
