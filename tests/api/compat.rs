//! Replays of the requests Microsoft Entra ID and Okta really send.

use serde_json::{Value, json};

use crate::helpers::*;

const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

async fn list(app: &TestApp, query: &str) -> Value {
    let res = app.get(&format!("/Users?{query}")).await;
    assert_eq!(res.status(), 200, "{query}");
    res.json().await.unwrap()
}

fn q(filter: &str) -> String {
    format!("filter={}", urlencode(filter))
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn entra_user(app: &TestApp) -> Value {
    let res = app
        .post(
            "/Users",
            &json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENTERPRISE],
                "externalId": "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef",
                "userName": "Test_User_ab6490ee@contoso.com",
                "active": true,
                "emails": [{"primary": true, "type": "work", "value": "Test_User_fd0ea19b@contoso.com"}],
                "meta": {"resourceType": "User"},
                "name": {"formatted": "givenName familyName", "familyName": "familyName", "givenName": "givenName"},
                "roles": []
            }),
        )
        .await;
    assert_eq!(res.status(), 201);
    res.json().await.unwrap()
}

#[tokio::test]
async fn entra_test_connection_with_random_guid_gets_empty_list() {
    let app = spawn_app().await;
    let body = list(
        &app,
        &format!(
            "{}&aadOptscim062020",
            q(r#"userName eq "9c7f3b1e-57b1-4bd2-a2b5-3f2b1a0d7e11""#)
        ),
    )
    .await;
    assert_eq!(
        body,
        json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"], "totalResults": 0,
               "itemsPerPage": 0, "startIndex": 1, "Resources": []})
    );
}

#[tokio::test]
async fn entra_matches_by_user_name_external_id_and_work_email() {
    let app = spawn_app().await;
    let user = entra_user(&app).await;
    for filter in [
        r#"userName eq "test_user_AB6490EE@contoso.com""#,
        r#"externalId eq "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef""#,
        r#"emails[type eq "work"].value eq "Test_User_fd0ea19b@contoso.com""#,
    ] {
        let body = list(&app, &q(filter)).await;
        assert_eq!(body["totalResults"], 1, "{filter}");
        assert_eq!(body["Resources"][0]["id"], user["id"], "{filter}");
    }
}

#[tokio::test]
async fn entra_patch_with_capitalised_ops_string_booleans_and_value_paths() {
    let app = spawn_app().await;
    let user = entra_user(&app).await;
    let path = format!("/Users/{}", user["id"].as_str().unwrap());
    let res = app
        .patch(
            &path,
            &patch_op(json!([
                {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "updatedEmail@contoso.com"},
                {"op": "Replace", "path": "name.familyName", "value": "updatedFamilyName"},
                {"op": "Add", "path": "phoneNumbers[type eq \"mobile\"].value", "value": "+1 555 0100"},
                {"op": "Replace", "path": "active", "value": "False"}
            ])),
        )
        .await;
    assert_eq!(res.status(), 200);
    let got: Value = app.get(&path).await.json().await.unwrap();
    assert_eq!(
        got["emails"],
        json!([{"value": "updatedEmail@contoso.com", "type": "work", "primary": true}])
    );
    assert_eq!(got["name"]["familyName"], "updatedFamilyName");
    assert_eq!(
        got["phoneNumbers"],
        json!([{"value": "+1 555 0100", "type": "mobile"}])
    );
    assert_eq!(got["active"], false);
}

#[tokio::test]
async fn entra_pathless_replace_with_dotted_and_urn_keys() {
    let app = spawn_app().await;
    let user = entra_user(&app).await;
    let path = format!("/Users/{}", user["id"].as_str().unwrap());
    let res = app
        .patch(
            &path,
            &patch_op(json!([{"op": "replace", "value": {
                "name.givenName": "Barbara",
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department": "Tour Operations",
                "active": "True",
                "displayName": "Babs"
            }}])),
        )
        .await;
    assert_eq!(res.status(), 200);
    let got: Value = app.get(&path).await.json().await.unwrap();
    assert_eq!(got["name"]["givenName"], "Barbara");
    assert_eq!(got["name"]["familyName"], "familyName");
    assert_eq!(got[ENTERPRISE]["department"], "Tour Operations");
    assert_eq!(got["active"], true);
    assert_eq!(got["displayName"], "Babs");
    assert!(
        got["schemas"]
            .as_array()
            .unwrap()
            .contains(&json!(ENTERPRISE))
    );
}

#[tokio::test]
async fn entra_manager_as_bare_id_is_stored_complex_and_cleared() {
    let app = spawn_app().await;
    let user = entra_user(&app).await;
    let manager = app.create_user("manager@contoso.com").await;
    let mid = manager["id"].as_str().unwrap();
    let path = format!("/Users/{}", user["id"].as_str().unwrap());
    let manager_path = format!("{ENTERPRISE}:manager");
    let res = app
        .patch(
            &path,
            &patch_op(json!([{"op": "Add", "path": manager_path, "value": mid}])),
        )
        .await;
    assert_eq!(res.status(), 200);
    let got: Value = app.get(&path).await.json().await.unwrap();
    assert_eq!(got[ENTERPRISE]["manager"], json!({"value": mid}));
    for clear in [json!(""), Value::Null] {
        app.patch(
            &path,
            &patch_op(json!([{"op": "Replace", "path": manager_path, "value": mid}])),
        )
        .await;
        let res = app
            .patch(
                &path,
                &patch_op(json!([{"op": "Replace", "path": manager_path, "value": clear}])),
            )
            .await;
        assert_eq!(res.status(), 200);
        let got: Value = app.get(&path).await.json().await.unwrap();
        assert!(
            got.get(ENTERPRISE).and_then(|e| e.get("manager")).is_none(),
            "cleared with {clear}: {got}"
        );
    }
}

#[tokio::test]
async fn entra_group_members_added_in_several_requests_never_duplicate() {
    let app = spawn_app().await;
    let res = app
        .post(
            "/Groups",
            &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "externalId": "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159",
                    "displayName": "Sales", "meta": {"resourceType": "Group"}}),
        )
        .await;
    assert_eq!(res.status(), 201);
    let group: Value = res.json().await.unwrap();
    let gpath = format!("/Groups/{}", group["id"].as_str().unwrap());
    let a = app.create_user("a@contoso.com").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let b = app.create_user("b@contoso.com").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let c = app.create_user("c@contoso.com").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    for ids in [vec![&a, &b], vec![&b], vec![&c, &a]] {
        let value: Vec<Value> = ids
            .iter()
            .map(|id| json!({"$ref": null, "value": id}))
            .collect();
        let res = app
            .patch(
                &gpath,
                &patch_op(json!([{"op": "Add", "path": "members", "value": value}])),
            )
            .await;
        assert_eq!(res.status(), 200);
    }
    let got: Value = app.get(&gpath).await.json().await.unwrap();
    let mut members: Vec<&str> = got["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["value"].as_str().unwrap())
        .collect();
    members.sort();
    let mut want = vec![a.as_str(), b.as_str(), c.as_str()];
    want.sort();
    assert_eq!(members, want);

    // Entra's two removal forms remove only what they name.
    let res = app
        .patch(
            &gpath,
            &patch_op(json!([{"op": "Remove", "path": format!("members[value eq \"{a}\"]")}])),
        )
        .await;
    assert_eq!(res.status(), 200);
    let res = app
        .patch(
            &gpath,
            &patch_op(
                json!([{"op": "Remove", "path": "members", "value": [{"$ref": null, "value": b}]}]),
            ),
        )
        .await;
    assert_eq!(res.status(), 200);
    let got: Value = app.get(&gpath).await.json().await.unwrap();
    assert_eq!(got["members"].as_array().unwrap().len(), 1);
    assert_eq!(got["members"][0]["value"], c.as_str());

    // Entra looks groups up without members, and checks membership by filter.
    let res = app
        .get(&format!(
            "/Groups?excludedAttributes=members&{}",
            q(r#"displayName eq "sales""#)
        ))
        .await;
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["totalResults"], 1);
    assert!(body["Resources"][0].get("members").is_none());
    let gid = group["id"].as_str().unwrap();
    let res = app
        .get(&format!(
            "/Groups?excludedAttributes=members&{}",
            q(&format!(r#"id eq "{gid}" and members[value eq "{c}"]"#))
        ))
        .await;
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["totalResults"], 1);
    let res = app
        .get(&format!(
            "/Groups?excludedAttributes=members&{}",
            q(&format!(r#"id eq "{gid}" and members[value eq "{a}"]"#))
        ))
        .await;
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["totalResults"], 0);
}

#[tokio::test]
async fn entra_leaver_is_readable_when_inactive_and_gone_after_delete() {
    let app = spawn_app().await;
    let user = entra_user(&app).await;
    let id = user["id"].as_str().unwrap();
    let path = format!("/Users/{id}");
    let res = app
        .patch(
            &path,
            &patch_op(json!([{"op": "Replace", "path": "active", "value": "False"}])),
        )
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(app.get(&path).await.status(), 200);
    let body = list(
        &app,
        &q(r#"userName eq "Test_User_ab6490ee@contoso.com" and active eq false"#),
    )
    .await;
    assert_eq!(body["totalResults"], 1);
    assert_eq!(app.delete(&path).await.status(), 204);
    assert_scim_error(app.get(&path).await, 404, None).await;
}

#[tokio::test]
async fn okta_existence_check_create_with_password_and_full_put() {
    let mut app = spawn_app().await;
    app.token = GLOBEX_TOKEN.into();
    let body = list(
        &app,
        &format!(
            "{}&startIndex=1&count=100",
            q(r#"userName eq "isabell.provisioning@okta.local""#)
        ),
    )
    .await;
    assert_eq!(body["totalResults"], 0);
    let res = app
        .post(
            "/Users",
            &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "isabell.provisioning@okta.local",
                    "name": {"givenName": "Isabell", "familyName": "Provisioning"},
                    "emails": [{"primary": true, "value": "isabell.provisioning@okta.local", "type": "work"}],
                    "displayName": "Isabell Provisioning", "locale": "en-US", "externalId": "00ujl29u0le5T6Aj10h7",
                    "groups": [], "password": "1mz050nq", "active": true}),
        )
        .await;
    assert_eq!(res.status(), 201);
    let user: Value = res.json().await.unwrap();
    assert!(user.get("password").is_none());
    let body = list(
        &app,
        &format!(
            "{}&startIndex=1&count=100",
            q(r#"userName eq "ISABELL.provisioning@okta.local""#)
        ),
    )
    .await;
    assert_eq!(body["totalResults"], 1);
    assert!(body["Resources"][0].get("password").is_none());

    // Read-modify-write PUT including enterprise attributes.
    let path = format!("/Users/{}", user["id"].as_str().unwrap());
    let mut full: Value = app.get(&path).await.json().await.unwrap();
    full["name"]["familyName"] = json!("Provisioned");
    full["schemas"] = json!(["urn:ietf:params:scim:schemas:core:2.0:User", ENTERPRISE]);
    full[ENTERPRISE] = json!({"department": "Engineering", "employeeNumber": "42"});
    full["password"] = json!("n3w-pass");
    let res = app.put(&path, &full).await;
    assert_eq!(res.status(), 200);
    let got: Value = app.get(&path).await.json().await.unwrap();
    assert_eq!(got["name"]["familyName"], "Provisioned");
    assert_eq!(
        got[ENTERPRISE],
        json!({"employeeNumber": "42", "department": "Engineering"})
    );
    assert_eq!(got["meta"]["created"], user["meta"]["created"]);
    assert!(got.get("password").is_none());

    // Deactivate and reactivate with a path-less replace.
    for active in [false, true] {
        let res = app
            .patch(
                &path,
                &patch_op(json!([{"op": "replace", "value": {"active": active}}])),
            )
            .await;
        assert_eq!(res.status(), 200);
        let got: Value = app.get(&path).await.json().await.unwrap();
        assert_eq!(got["active"], active);
    }
}

#[tokio::test]
async fn okta_group_push_create_rename_members_and_put() {
    let mut app = spawn_app().await;
    app.token = GLOBEX_TOKEN.into();
    let u1 = app.create_user("u1@okta.local").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let u2 = app.create_user("u2@okta.local").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let u3 = app.create_user("u3@okta.local").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let res = app
        .post("/Groups", &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Test SCIMv2", "members": []}))
        .await;
    assert_eq!(res.status(), 201);
    let group: Value = res.json().await.unwrap();
    let gid = group["id"].as_str().unwrap();
    let gpath = format!("/Groups/{gid}");

    let res = app
        .patch(&gpath, &patch_op(json!([{"op": "replace", "value": {"id": gid, "displayName": "Test SCIMv2 renamed"}}])))
        .await;
    assert_eq!(res.status(), 200);
    let res = app
        .patch(&gpath, &patch_op(json!([{"op": "add", "path": "members", "value": [{"value": u1, "display": "u1@okta.local"}, {"value": u2}]}])))
        .await;
    assert_eq!(res.status(), 200);
    let res = app
        .patch(
            &gpath,
            &patch_op(json!([
                {"op": "remove", "path": format!("members[value eq \"{u1}\"]")},
                {"op": "add", "path": "members", "value": [{"value": u3, "display": "u3@okta.local"}]}
            ])),
        )
        .await;
    assert_eq!(res.status(), 200);
    let got: Value = app.get(&gpath).await.json().await.unwrap();
    assert_eq!(got["displayName"], "Test SCIMv2 renamed");
    let mut ids: Vec<&str> = got["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["value"].as_str().unwrap())
        .collect();
    ids.sort();
    let mut want = vec![u2.as_str(), u3.as_str()];
    want.sort();
    assert_eq!(ids, want);

    let res = app
        .patch(
            &gpath,
            &patch_op(json!([{"op": "replace", "path": "members", "value": [{"value": u1}]}])),
        )
        .await;
    assert_eq!(res.status(), 200);
    let got: Value = app.get(&gpath).await.json().await.unwrap();
    assert_eq!(got["members"].as_array().unwrap().len(), 1);
    assert_eq!(got["members"][0]["value"], u1.as_str());

    let res = app
        .put(&gpath, &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "id": gid, "displayName": "Test SCIMv2",
                             "members": [{"value": u2}, {"value": u3}]}))
        .await;
    assert_eq!(res.status(), 200);
    let got: Value = app.get(&gpath).await.json().await.unwrap();
    assert_eq!(got["displayName"], "Test SCIMv2");
    assert_eq!(got["members"].as_array().unwrap().len(), 2);
}
