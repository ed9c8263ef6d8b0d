//! PATCH (RFC 7644 §3.5.2) as a SCIM client sees it: every test checks the
//! PATCH response and then what a later GET returns.

use serde_json::{Value, json};

use crate::helpers::*;

/// A user with a name, a title, two emails (work primary) and a department.
async fn barbara(app: &TestApp) -> Value {
    app.create_user_from(json!({
        "userName": "bjensen",
        "name": {"givenName": "Barbara", "familyName": "Jensen", "middleName": "Jane"},
        "displayName": "Babs Jensen",
        "title": "Tour Guide",
        "active": true,
        "emails": [
            {"value": "bjensen@example.com", "type": "work", "primary": true},
            {"value": "babs@home.example.org", "type": "home"}
        ],
        ENTERPRISE_USER: {"department": "Tours", "costCenter": "4130"}
    }))
    .await
}

fn user_path(user: &Value) -> String {
    format!("/Users/{}", user["id"].as_str().unwrap())
}

fn group_path(group: &Value) -> String {
    format!("/Groups/{}", group["id"].as_str().unwrap())
}

fn id_of(resource: &Value) -> String {
    resource["id"].as_str().unwrap().to_string()
}

/// The element of `emails` with this `type`.
fn email<'a>(user: &'a Value, kind: &str) -> &'a Value {
    user["emails"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == kind)
        .unwrap_or_else(|| panic!("no {kind} email in {user}"))
}

/// Member ids of a group representation, sorted.
fn member_ids(group: &Value) -> Vec<String> {
    let mut ids: Vec<String> = group["members"]
        .as_array()
        .map(|m| {
            m.iter()
                .map(|m| m["value"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids
}

fn sorted(ids: &[&Value]) -> Vec<String> {
    let mut ids: Vec<String> = ids.iter().map(|v| id_of(v)).collect();
    ids.sort();
    ids
}

/// Removes `meta` so that two representations compare on their data.
fn without_meta(mut v: Value) -> Value {
    v.as_object_mut().unwrap().remove("meta");
    v
}

// ---------------------------------------------------------------- add / replace / remove

#[tokio::test]
async fn add_without_path_sets_the_attributes_in_the_value() {
    let app = spawn_app().await;
    let user = barbara(&app).await;
    let path = user_path(&user);

    let body = app
        .patch_ok(
            &path,
            json!([{"op": "add", "value": {"nickName": "Babs", "userType": "Employee"}}]),
        )
        .await;

    assert_eq!(body["nickName"], "Babs");
    assert_eq!(body["userType"], "Employee");
    assert_eq!(body["title"], "Tour Guide", "other attributes stay");
    assert_eq!(body["meta"]["version"], "W/\"2\"");
    let got = app.fetch_json(&path).await;
    assert_eq!(got, body);
}

#[tokio::test]
async fn add_with_path_sets_a_single_attribute() {
    let app = spawn_app().await;
    let user = barbara(&app).await;
    let path = user_path(&user);

    let body = app
        .patch_ok(
            &path,
            json!([{"op": "add", "path": "nickName", "value": "Babs"}]),
        )
        .await;

    assert_eq!(body["nickName"], "Babs");
    assert_eq!(app.fetch_json(&path).await["nickName"], "Babs");

    // On a single-valued attribute that has a value, add replaces it.
    let body = app
        .patch_ok(
            &path,
            json!([{"op": "add", "path": "title", "value": "Chief Guide"}]),
        )
        .await;
    assert_eq!(body["title"], "Chief Guide");
    assert_eq!(app.fetch_json(&path).await["title"], "Chief Guide");
}

#[tokio::test]
async fn replace_with_path_overwrites_the_attribute() {
    let app = spawn_app().await;
    let user = barbara(&app).await;
    let path = user_path(&user);

    let body = app
        .patch_ok(
            &path,
            json!([{"op": "replace", "path": "title", "value": "Chief Guide"}]),
        )
        .await;

    assert_eq!(body["title"], "Chief Guide");
    assert_eq!(body["displayName"], "Babs Jensen");
    let got = app.fetch_json(&path).await;
    assert_eq!(got["title"], "Chief Guide");
    assert_eq!(got, body);
}

#[tokio::test]
async fn replace_without_path_overwrites_each_attribute_in_the_value() {
    let app = spawn_app().await;
    let user = barbara(&app).await;
    let path = user_path(&user);

    let body = app
        .patch_ok(
            &path,
            json!([{"op": "replace", "value": {"title": "Chief Guide", "displayName": "B. Jensen"}}]),
        )
        .await;

    assert_eq!(body["title"], "Chief Guide");
    assert_eq!(body["displayName"], "B. Jensen");
    assert_eq!(body["userName"], "bjensen");
    assert_eq!(app.fetch_json(&path).await, body);
}

#[tokio::test]
async fn remove_with_path_unassigns_the_attribute() {
    let app = spawn_app().await;
    let user = barbara(&app).await;
    let path = user_path(&user);

    let body = app
        .patch_ok(&path, json!([{"op": "remove", "path": "title"}]))
        .await;

    assert!(body.get("title").is_none(), "{body}");
    assert_eq!(body["displayName"], "Babs Jensen");
    let got = app.fetch_json(&path).await;
    assert!(got.get("title").is_none(), "{got}");
    assert_eq!(got, body);
}

#[tokio::test]
async fn remove_of_a_whole_multi_valued_attribute_removes_every_value() {
    let app = spawn_app().await;
    let user = barbara(&app).await;
    let path = user_path(&user);

    let body = app
        .patch_ok(&path, json!([{"op": "remove", "path": "emails"}]))
        .await;

    assert!(body.get("emails").is_none(), "{body}");
    assert!(app.fetch_json(&path).await.get("emails").is_none());
}

#[tokio::test]
async fn op_names_are_accepted_in_any_case() {
    let app = spawn_app().await;
    let user = barbara(&app).await;
    let path = user_path(&user);

    let body = app
        .patch_ok(
            &path,
            json!([
                {"op": "Add", "path": "nickName", "value": "Babs"},
                {"op": "Replace", "path": "title", "value": "Chief Guide"},
                {"op": "Remove", "path": "displayName"},
                {"op": "ADD", "path": "locale", "value": "en-US"},
                {"op": "rePlace", "path": "userType", "value": "Employee"}
            ]),
        )
        .await;

    assert_eq!(body["nickName"], "Babs");
    assert_eq!(body["title"], "Chief Guide");
    assert!(body.get("displayName").is_none());
    assert_eq!(body["locale"], "en-US");
    assert_eq!(body["userType"], "Employee");
    assert_eq!(
        body["meta"]["version"], "W/\"2\"",
        "one request, one version"
    );
    assert_eq!(app.fetch_json(&path).await, body);
}

#[tokio::test]
async fn replace_of_a_complex_attribute_leaves_unspecified_sub_attributes() {
    let app = spawn_app().await;
    let user = barbara(&app).await;
    let path = user_path(&user);

    let body = app
        .patch_ok(
            &path,
            json!([
                {"op": "replace", "path": "name", "value": {"givenName": "Barb", "honorificSuffix": "PhD"}},
                {"op": "replace", "path": "nickName", "value": "Babs"}
            ]),
        )
        .await;

    assert_eq!(
        body["name"],
        json!({"familyName": "Jensen", "givenName": "Barb", "middleName": "Jane", "honorificSuffix": "PhD"})
    );
    assert_eq!(
        body["nickName"], "Babs",
        "replace of an unassigned attribute adds it"
    );
    assert_eq!(app.fetch_json(&path).await, body);
}

#[tokio::test]
async fn removing_every_matching_element_leaves_the_attribute_unassigned() {
    let app = spawn_app().await;
    let user = barbara(&app).await;
    let path = user_path(&user);

    let body = app
        .patch_ok(
            &path,
            json!([
                {"op": "remove", "path": "emails[type eq \"home\"]"},
                {"op": "remove", "path": "emails[value co \"example.com\"]"}
            ]),
        )
        .await;

    assert!(body.get("emails").is_none(), "{body}");
    assert!(app.fetch_json(&path).await.get("emails").is_none());
}

#[tokio::test]
async fn patch_response_honours_the_attributes_parameter() {
    let app = spawn_app().await;
    let user = barbara(&app).await;
    let path = user_path(&user);

    let res = app
        .request(
            reqwest::Method::PATCH,
            &format!("{path}?attributes=title"),
            Some(&patch_op(
                json!([{"op": "replace", "path": "nickName", "value": "Babs"}]),
            )),
        )
        .send()
        .await
        .unwrap();

    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["id"], user["id"]);
    assert_eq!(body["title"], "Tour Guide");
    assert!(body.get("nickName").is_none(), "{body}");
    assert!(body.get("emails").is_none(), "{body}");
    assert_eq!(app.fetch_json(&path).await["nickName"], "Babs");
}

// ---------------------------------------------------------------- sub-attributes, extensions

#[tokio::test]
async fn sub_attribute_path_changes_only_that_sub_attribute() {
    let app = spawn_app().await;
    let user = barbara(&app).await;
    let path = user_path(&user);

    let body = app
        .patch_ok(
            &path,
            json!([
                {"op": "replace", "path": "name.givenName", "value": "Barb"},
                {"op": "remove", "path": "name.middleName"},
                {"op": "add", "path": "name.honorificPrefix", "value": "Ms."}
            ]),
        )
        .await;

    assert_eq!(
        body["name"],
        json!({"familyName": "Jensen", "givenName": "Barb", "honorificPrefix": "Ms."})
    );
    assert_eq!(app.fetch_json(&path).await["name"], body["name"]);
}

#[tokio::test]
async fn extension_attribute_path_sets_and_removes_the_department() {
    let app = spawn_app().await;
    let user = app.create_user("alice").await;
    let path = user_path(&user);

    let body = app
        .patch_ok(
            &path,
            json!([{"op": "add", "path": format!("{ENTERPRISE_USER}:department"), "value": "Engineering"}]),
        )
        .await;

    assert_eq!(body[ENTERPRISE_USER], json!({"department": "Engineering"}));
    assert!(
        body["schemas"]
            .as_array()
            .unwrap()
            .contains(&json!(ENTERPRISE_USER)),
        "schemas lists the extension: {body}"
    );
    assert_eq!(app.fetch_json(&path).await, body);

    let body = app
        .patch_ok(
            &path,
            json!([{"op": "replace", "path": format!("{ENTERPRISE_USER}:department"), "value": "Sales"}]),
        )
        .await;
    assert_eq!(body[ENTERPRISE_USER]["department"], "Sales");
    assert_eq!(
        app.fetch_json(&path).await[ENTERPRISE_USER]["department"],
        "Sales"
    );

    let body = app
        .patch_ok(
            &path,
            json!([{"op": "remove", "path": format!("{ENTERPRISE_USER}:department")}]),
        )
        .await;
    assert!(body.get(ENTERPRISE_USER).is_none(), "{body}");
    let got = app.fetch_json(&path).await;
    assert!(got.get(ENTERPRISE_USER).is_none(), "{got}");
    assert_eq!(
        got["schemas"],
        json!(["urn:ietf:params:scim:schemas:core:2.0:User"])
    );
}

#[tokio::test]
async fn whole_extension_object_path_merges_on_replace_and_goes_on_remove() {
    let app = spawn_app().await;
    let user = barbara(&app).await;
    let path = user_path(&user);

    // RFC 7644 §3.5.2.3: sub-attributes not in the value are left unchanged.
    let body = app
        .patch_ok(
            &path,
            json!([{"op": "replace", "path": ENTERPRISE_USER,
                    "value": {"department": "Sales", "division": "EMEA"}}]),
        )
        .await;
    assert_eq!(
        body[ENTERPRISE_USER],
        json!({"costCenter": "4130", "division": "EMEA", "department": "Sales"})
    );
    assert_eq!(app.fetch_json(&path).await, body);

    let body = app
        .patch_ok(&path, json!([{"op": "remove", "path": ENTERPRISE_USER}]))
        .await;
    assert!(body.get(ENTERPRISE_USER).is_none(), "{body}");
    let got = app.fetch_json(&path).await;
    assert!(got.get(ENTERPRISE_USER).is_none(), "{got}");
    assert!(
        !got["schemas"]
            .as_array()
            .unwrap()
            .contains(&json!(ENTERPRISE_USER))
    );
}

#[tokio::test]
async fn add_of_the_whole_extension_object_creates_it() {
    let app = spawn_app().await;
    let user = app.create_user("alice").await;
    let path = user_path(&user);

    let body = app
        .patch_ok(
            &path,
            json!([{"op": "add", "path": ENTERPRISE_USER,
                    "value": {"employeeNumber": "701984", "department": "Tours"}}]),
        )
        .await;

    assert_eq!(
        body[ENTERPRISE_USER],
        json!({"employeeNumber": "701984", "department": "Tours"})
    );
    assert_eq!(
        app.fetch_json(&path).await[ENTERPRISE_USER],
        body[ENTERPRISE_USER]
    );
}

// ---------------------------------------------------------------- value paths

#[tokio::test]
async fn value_path_with_sub_attribute_changes_only_the_matching_element() {
    let app = spawn_app().await;
    let user = barbara(&app).await;
    let path = user_path(&user);

    let body = app
        .patch_ok(
            &path,
            json!([{"op": "replace", "path": "emails[type eq \"work\"].value",
                    "value": "barbara.jensen@example.com"}]),
        )
        .await;

    assert_eq!(
        email(&body, "work"),
        &json!({"value": "barbara.jensen@example.com", "type": "work", "primary": true})
    );
    assert_eq!(email(&body, "home")["value"], "babs@home.example.org");
    assert_eq!(body["emails"].as_array().unwrap().len(), 2);
    assert_eq!(app.fetch_json(&path).await["emails"], body["emails"]);
}

#[tokio::test]
async fn value_path_with_object_value_updates_the_matching_element() {
    let app = spawn_app().await;
    let user = barbara(&app).await;
    let path = user_path(&user);

    let body = app
        .patch_ok(
            &path,
            json!([{"op": "replace", "path": "emails[type eq \"work\"]",
                    "value": {"value": "bj@example.com", "display": "Barbara at work"}}]),
        )
        .await;

    let work = email(&body, "work");
    assert_eq!(work["value"], "bj@example.com");
    assert_eq!(work["display"], "Barbara at work");
    assert_eq!(work["primary"], true, "unspecified sub-attributes stay");
    assert_eq!(email(&body, "home")["value"], "babs@home.example.org");
    assert_eq!(app.fetch_json(&path).await["emails"], body["emails"]);
}

#[tokio::test]
async fn remove_with_value_path_deletes_only_the_matching_element() {
    let app = spawn_app().await;
    let user = barbara(&app).await;
    let path = user_path(&user);

    let body = app
        .patch_ok(
            &path,
            json!([{"op": "remove", "path": "emails[type eq \"home\"]"}]),
        )
        .await;

    assert_eq!(
        body["emails"],
        json!([{"value": "bjensen@example.com", "type": "work", "primary": true}])
    );
    assert_eq!(app.fetch_json(&path).await["emails"], body["emails"]);
}

#[tokio::test]
async fn remove_with_value_path_and_sub_attribute_clears_only_that_sub_attribute() {
    let app = spawn_app().await;
    let user = barbara(&app).await;
    let path = user_path(&user);

    let body = app
        .patch_ok(
            &path,
            json!([{"op": "remove", "path": "emails[type eq \"work\"].primary"}]),
        )
        .await;

    assert_eq!(
        email(&body, "work"),
        &json!({"value": "bjensen@example.com", "type": "work"})
    );
    assert_eq!(body["emails"].as_array().unwrap().len(), 2);
    assert_eq!(app.fetch_json(&path).await["emails"], body["emails"]);
}

#[tokio::test]
async fn add_to_a_value_path_that_matches_nothing_creates_that_element() {
    let app = spawn_app().await;
    let user = barbara(&app).await;
    let path = user_path(&user);

    // Entra ID sends this for a user without a mobile number.
    let body = app
        .patch_ok(
            &path,
            json!([{"op": "Add", "path": "phoneNumbers[type eq \"mobile\"].value",
                    "value": "+1 555 0100"}]),
        )
        .await;

    assert_eq!(
        body["phoneNumbers"],
        json!([{"value": "+1 555 0100", "type": "mobile"}])
    );
    assert_eq!(
        app.fetch_json(&path).await["phoneNumbers"],
        body["phoneNumbers"]
    );

    // A second number of another type is a second element.
    let body = app
        .patch_ok(
            &path,
            json!([{"op": "Add", "path": "phoneNumbers[type eq \"work\"].value",
                    "value": "+1 555 0199"}]),
        )
        .await;
    assert_eq!(
        body["phoneNumbers"],
        json!([{"value": "+1 555 0100", "type": "mobile"}, {"value": "+1 555 0199", "type": "work"}])
    );
    assert_eq!(
        app.fetch_json(&path).await["phoneNumbers"],
        body["phoneNumbers"]
    );
}

// ---------------------------------------------------------------- multi-valued rules

#[tokio::test]
async fn add_to_a_multi_valued_attribute_appends_without_duplicating() {
    let app = spawn_app().await;
    let user = barbara(&app).await;
    let path = user_path(&user);

    let body = app
        .patch_ok(
            &path,
            json!([{"op": "add", "path": "emails", "value": [
                {"value": "babs@home.example.org", "type": "home"},
                {"value": "b.jensen@other.example.net", "type": "other"}
            ]}]),
        )
        .await;

    assert_eq!(
        body["emails"],
        json!([
            {"value": "bjensen@example.com", "type": "work", "primary": true},
            {"value": "babs@home.example.org", "type": "home"},
            {"value": "b.jensen@other.example.net", "type": "other"}
        ])
    );
    assert_eq!(app.fetch_json(&path).await["emails"], body["emails"]);

    // The same add again changes nothing.
    let again = app
        .patch_ok(
            &path,
            json!([{"op": "add", "path": "emails", "value": [
                {"value": "b.jensen@other.example.net", "type": "other"}
            ]}]),
        )
        .await;
    assert_eq!(again["emails"], body["emails"]);
    assert_eq!(again["meta"]["version"], body["meta"]["version"]);
}

#[tokio::test]
async fn pathless_add_of_a_multi_valued_attribute_appends() {
    let app = spawn_app().await;
    let user = barbara(&app).await;
    let path = user_path(&user);

    let body = app
        .patch_ok(
            &path,
            json!([{"op": "add", "value": {"emails": [{"value": "b@other.example.net", "type": "other"}]}}]),
        )
        .await;

    assert_eq!(body["emails"].as_array().unwrap().len(), 3, "{body}");
    assert_eq!(email(&body, "other")["value"], "b@other.example.net");
    assert_eq!(email(&body, "work")["value"], "bjensen@example.com");
    assert_eq!(app.fetch_json(&path).await["emails"], body["emails"]);
}

#[tokio::test]
async fn replace_on_a_multi_valued_attribute_replaces_the_whole_list() {
    let app = spawn_app().await;
    let user = barbara(&app).await;
    let path = user_path(&user);

    let body = app
        .patch_ok(
            &path,
            json!([{"op": "replace", "path": "emails", "value": [
                {"value": "new@example.com", "type": "work"}
            ]}]),
        )
        .await;

    assert_eq!(
        body["emails"],
        json!([{"value": "new@example.com", "type": "work"}])
    );
    assert_eq!(app.fetch_json(&path).await["emails"], body["emails"]);

    let body = app
        .patch_ok(
            &path,
            json!([{"op": "replace", "value": {"emails": [{"value": "other@example.com", "type": "home"}]}}]),
        )
        .await;
    assert_eq!(
        body["emails"],
        json!([{"value": "other@example.com", "type": "home"}])
    );
    assert_eq!(app.fetch_json(&path).await["emails"], body["emails"]);
}

#[tokio::test]
async fn setting_primary_on_one_email_clears_it_on_the_other() {
    let app = spawn_app().await;
    let user = barbara(&app).await;
    let path = user_path(&user);

    let body = app
        .patch_ok(
            &path,
            json!([{"op": "replace", "path": "emails[type eq \"home\"].primary", "value": true}]),
        )
        .await;

    let primaries = |u: &Value| -> Vec<String> {
        u["emails"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["primary"] == true)
            .map(|e| e["type"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(primaries(&body), ["home"], "{body}");
    assert_eq!(primaries(&app.fetch_json(&path).await), ["home"]);

    // Adding a new primary email moves primary again.
    let body = app
        .patch_ok(
            &path,
            json!([{"op": "add", "path": "emails",
                    "value": [{"value": "b@other.example.net", "type": "other", "primary": true}]}]),
        )
        .await;
    assert_eq!(primaries(&body), ["other"], "{body}");
    let got = app.fetch_json(&path).await;
    assert_eq!(primaries(&got), ["other"]);
    assert_eq!(got["emails"].as_array().unwrap().len(), 3);
}

// ---------------------------------------------------------------- path-less value shapes

#[tokio::test]
async fn pathless_replace_accepts_dotted_and_urn_qualified_keys() {
    let app = spawn_app().await;
    let user = barbara(&app).await;
    let path = user_path(&user);

    let body = app
        .patch_ok(
            &path,
            json!([{"op": "replace", "value": {
                "name.givenName": "Barb",
                format!("{ENTERPRISE_USER}:department"): "Sales"
            }}]),
        )
        .await;

    assert_eq!(body["name"]["givenName"], "Barb");
    assert_eq!(body["name"]["familyName"], "Jensen");
    assert_eq!(body[ENTERPRISE_USER]["department"], "Sales");
    assert_eq!(body[ENTERPRISE_USER]["costCenter"], "4130");
    assert_eq!(app.fetch_json(&path).await, body);
}

#[tokio::test]
async fn pathless_values_accept_booleans_as_strings() {
    let app = spawn_app().await;
    let user = barbara(&app).await;
    let path = user_path(&user);

    let body = app
        .patch_ok(
            &path,
            json!([{"op": "Replace", "value": {"active": "False"}}]),
        )
        .await;
    assert_eq!(body["active"], false);
    assert_eq!(app.fetch_json(&path).await["active"], false);

    let body = app
        .patch_ok(
            &path,
            json!([{"op": "Replace", "value": {"active": "True"}}]),
        )
        .await;
    assert_eq!(body["active"], true);
    assert_eq!(app.fetch_json(&path).await["active"], true);
}

#[tokio::test]
async fn manager_sent_as_a_bare_id_is_stored_as_a_reference_and_cleared_with_empty_string() {
    let app = spawn_app().await;
    let boss = app.create_user("boss").await;
    let user = barbara(&app).await;
    let path = user_path(&user);
    let manager = format!("{ENTERPRISE_USER}:manager");

    let body = app
        .patch_ok(
            &path,
            json!([{"op": "Add", "path": manager, "value": id_of(&boss)}]),
        )
        .await;
    assert_eq!(
        body[ENTERPRISE_USER]["manager"]["value"],
        json!(id_of(&boss))
    );
    assert_eq!(
        app.fetch_json(&path).await[ENTERPRISE_USER]["manager"]["value"],
        json!(id_of(&boss))
    );

    let body = app
        .patch_ok(
            &path,
            json!([{"op": "Replace", "path": manager, "value": ""}]),
        )
        .await;
    assert!(body[ENTERPRISE_USER].get("manager").is_none(), "{body}");
    let got = app.fetch_json(&path).await;
    assert!(got[ENTERPRISE_USER].get("manager").is_none(), "{got}");
    assert_eq!(got[ENTERPRISE_USER]["department"], "Tours");
}

#[tokio::test]
async fn pathless_manager_as_a_bare_id_is_stored_as_a_reference() {
    let app = spawn_app().await;
    let boss = app.create_user("boss").await;
    let user = app.create_user("alice").await;
    let path = user_path(&user);

    let body = app
        .patch_ok(
            &path,
            json!([{"op": "Add", "value": {format!("{ENTERPRISE_USER}:manager"): id_of(&boss)}}]),
        )
        .await;

    assert_eq!(
        body[ENTERPRISE_USER]["manager"]["value"],
        json!(id_of(&boss))
    );
    let got = app.fetch_json(&path).await;
    assert_eq!(
        got[ENTERPRISE_USER]["manager"]["value"],
        json!(id_of(&boss))
    );
}

// ---------------------------------------------------------------- errors

#[tokio::test]
async fn remove_without_path_is_no_target_and_changes_nothing() {
    let app = spawn_app().await;
    let user = barbara(&app).await;
    let path = user_path(&user);

    let res = app.patch(&path, &patch_op(json!([{"op": "remove"}]))).await;

    assert_scim_error(res, 400, Some("noTarget")).await;
    assert_eq!(app.fetch_json(&path).await, user);
}

#[tokio::test]
async fn path_to_an_undefined_attribute_is_invalid_path() {
    let app = spawn_app().await;
    let user = barbara(&app).await;
    let path = user_path(&user);

    for bad in [
        "shoeSize",
        "name.shoeSize",
        "emails[type eq \"work\"].shoeSize",
        "emails[shoeSize eq \"work\"]",
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:shoeSize",
    ] {
        let res = app
            .patch(
                &path,
                &patch_op(json!([{"op": "replace", "path": bad, "value": "x"}])),
            )
            .await;
        assert_scim_error(res, 400, Some("invalidPath")).await;
    }
    assert_eq!(app.fetch_json(&path).await, user);
}

#[tokio::test]
async fn value_of_the_wrong_type_is_invalid_value() {
    let app = spawn_app().await;
    let user = barbara(&app).await;
    let path = user_path(&user);

    for (attr, value) in [
        ("active", json!("maybe")),
        ("name", json!(42)),
        (
            "emails",
            json!([{"value": "a@example.com", "primary": "often"}]),
        ),
        ("userName", json!({"nested": true})),
    ] {
        let res = app
            .patch(
                &path,
                &patch_op(json!([{"op": "replace", "path": attr, "value": value}])),
            )
            .await;
        assert_scim_error(res, 400, Some("invalidValue")).await;
    }
    assert_eq!(app.fetch_json(&path).await, user);
}

#[tokio::test]
async fn patching_the_read_only_id_is_a_mutability_error() {
    let app = spawn_app().await;
    let user = barbara(&app).await;
    let path = user_path(&user);

    let res = app
        .patch(
            &path,
            &patch_op(json!([{"op": "replace", "path": "id", "value": "a-new-id"}])),
        )
        .await;

    assert_scim_error(res, 400, Some("mutability")).await;
    assert_eq!(app.fetch_json(&path).await, user);
}

#[tokio::test]
async fn request_whose_second_operation_fails_leaves_the_first_unapplied() {
    let app = spawn_app().await;
    let user = barbara(&app).await;
    let path = user_path(&user);

    let res = app
        .patch(
            &path,
            &patch_op(json!([
                {"op": "replace", "path": "title", "value": "Chief Guide"},
                {"op": "replace", "path": "shoeSize", "value": 42}
            ])),
        )
        .await;

    assert_scim_error(res, 400, Some("invalidPath")).await;
    let got = app.fetch_json(&path).await;
    assert_eq!(got["title"], "Tour Guide");
    assert_eq!(got["meta"]["version"], "W/\"1\"");
    assert_eq!(got, user);
}

#[tokio::test]
async fn renaming_user_name_onto_another_users_name_in_other_case_is_a_conflict() {
    let app = spawn_app().await;
    app.create_user("alice").await;
    let user = barbara(&app).await;
    let path = user_path(&user);

    let res = app
        .patch(
            &path,
            &patch_op(json!([
                {"op": "replace", "path": "title", "value": "Chief Guide"},
                {"op": "replace", "path": "userName", "value": "ALICE"}
            ])),
        )
        .await;

    assert_scim_error(res, 409, Some("uniqueness")).await;
    assert_eq!(app.fetch_json(&path).await, user);
    assert_eq!(app.user_count().await, 2);
}

#[tokio::test]
async fn renaming_user_name_to_another_case_of_its_own_name_is_allowed() {
    let app = spawn_app().await;
    let user = barbara(&app).await;
    let path = user_path(&user);

    let body = app
        .patch_ok(
            &path,
            json!([{"op": "replace", "path": "userName", "value": "BJensen"}]),
        )
        .await;

    assert_eq!(body["userName"], "BJensen");
    assert_eq!(app.fetch_json(&path).await["userName"], "BJensen");
}

// ---------------------------------------------------------------- versions and Prefer

#[tokio::test]
async fn patch_that_changes_nothing_keeps_the_version() {
    let app = spawn_app().await;
    let user = barbara(&app).await;
    let path = user_path(&user);

    let res = app
        .patch(
            &path,
            &patch_op(json!([
                {"op": "replace", "path": "title", "value": "Tour Guide"},
                {"op": "add", "path": "emails", "value": [{"value": "bjensen@example.com", "type": "work"}]},
                {"op": "remove", "path": "nickName"}
            ])),
        )
        .await;

    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["etag"], "W/\"1\"");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body, user);
    let got = app.fetch_json(&path).await;
    assert_eq!(got["meta"]["version"], "W/\"1\"");
    assert_eq!(got["meta"]["lastModified"], user["meta"]["lastModified"]);
}

#[tokio::test]
async fn patch_with_prefer_return_minimal_answers_204_without_a_body() {
    let app = spawn_app().await;
    let user = barbara(&app).await;
    let path = user_path(&user);

    let res = app
        .request(
            reqwest::Method::PATCH,
            &path,
            Some(&patch_op(
                json!([{"op": "replace", "path": "title", "value": "Chief Guide"}]),
            )),
        )
        .header("Prefer", "return=minimal")
        .send()
        .await
        .unwrap();

    assert_eq!(res.status(), 204);
    assert_eq!(res.headers()["etag"], "W/\"2\"");
    assert!(res.bytes().await.unwrap().is_empty());
    let got = app.fetch_json(&path).await;
    assert_eq!(got["title"], "Chief Guide");
    assert_eq!(got["meta"]["version"], "W/\"2\"");
}

#[tokio::test]
async fn successful_patch_returns_the_same_representation_as_a_later_get() {
    let app = spawn_app().await;
    let user = barbara(&app).await;
    let path = user_path(&user);

    let res = app
        .patch(
            &path,
            &patch_op(json!([{"op": "replace", "path": "title", "value": "Chief Guide"}])),
        )
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"].to_str().unwrap(), SCIM_JSON);
    assert_eq!(res.headers()["etag"], "W/\"2\"");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["id"], user["id"]);
    assert_eq!(body["meta"]["created"], user["meta"]["created"]);
    assert_eq!(body["meta"]["location"], user["meta"]["location"]);
    let got = app.fetch_json(&path).await;
    assert_eq!(got, body);
    let mut expected = without_meta(user);
    expected["title"] = json!("Chief Guide");
    assert_eq!(without_meta(got), expected, "nothing else changed");
}

#[tokio::test]

async fn adding_an_existing_email_with_primary_true_makes_it_the_only_primary() {
    let app = spawn_app().await;
    let user = app
        .create_user_from(json!({"userName": "bjensen", "emails": [
            {"value": "bjensen@example.com", "type": "work"},
            {"value": "babs@home.example.org", "type": "home", "primary": true}
        ]}))
        .await;
    let path = user_path(&user);

    // RFC 7644 §3.5.2: setting primary true on one value sets it false on the others.
    let body = app
        .patch_ok(
            &path,
            json!([{"op": "add", "path": "emails",
                    "value": [{"value": "bjensen@example.com", "type": "work", "primary": true}]}]),
        )
        .await;

    let want = json!([
        {"value": "bjensen@example.com", "type": "work", "primary": true},
        {"value": "babs@home.example.org", "type": "home", "primary": false}
    ]);
    assert_eq!(body["emails"], want, "{body}");
    assert_eq!(body["meta"]["version"], "W/\"2\"");
    assert_eq!(app.fetch_json(&path).await["emails"], want);
}

#[tokio::test]
async fn entra_pathless_replace_with_value_path_and_dotted_keys() {
    let app = spawn_app().await;
    let user = barbara(&app).await;
    let path = user_path(&user);

    let body = app
        .patch_ok(
            &path,
            json!([{"op": "Replace", "value": {
                "emails[type eq \"work\"].value": "barbara@example.com",
                "name.familyName": "Jensen-Smith",
                "active": "False"
            }}]),
        )
        .await;

    assert_eq!(email(&body, "work")["value"], "barbara@example.com");
    assert_eq!(email(&body, "work")["primary"], true);
    assert_eq!(email(&body, "home")["value"], "babs@home.example.org");
    assert_eq!(body["name"]["familyName"], "Jensen-Smith");
    assert_eq!(body["name"]["givenName"], "Barbara");
    assert_eq!(body["active"], false);
    assert_eq!(app.fetch_json(&path).await, body);
}

#[tokio::test]
async fn successive_adds_to_one_value_path_build_a_single_element() {
    let app = spawn_app().await;
    let user = app.create_user("alice").await;
    let path = user_path(&user);

    let body = app
        .patch_ok(
            &path,
            json!([
                {"op": "Add", "path": "addresses[type eq \"work\"].streetAddress", "value": "1 Main St"},
                {"op": "Add", "path": "addresses[type eq \"work\"].locality", "value": "Springfield"},
                {"op": "Add", "path": "addresses[type eq \"work\"].postalCode", "value": "12345"}
            ]),
        )
        .await;

    let want = json!([{"streetAddress": "1 Main St", "locality": "Springfield",
                       "postalCode": "12345", "type": "work"}]);
    assert_eq!(body["addresses"], want);
    assert_eq!(app.fetch_json(&path).await["addresses"], want);
}

#[tokio::test]

async fn removing_a_required_attribute_is_a_mutability_error() {
    let app = spawn_app().await;
    let user = barbara(&app).await;
    let path = user_path(&user);
    let group = app.create_group("Engineering", &[]).await;

    // RFC 7644 §3.5.2: an attribute that is required and would become
    // unassigned fails with scimType mutability.
    let res = app
        .patch(
            &path,
            &patch_op(json!([{"op": "remove", "path": "userName"}])),
        )
        .await;
    assert_scim_error(res, 400, Some("mutability")).await;
    assert_eq!(app.fetch_json(&path).await, user);

    let res = app
        .patch(
            &group_path(&group),
            &patch_op(json!([{"op": "remove", "path": "displayName"}])),
        )
        .await;
    assert_scim_error(res, 400, Some("mutability")).await;
    assert_eq!(app.fetch_json(&group_path(&group)).await, group);
}

#[tokio::test]
async fn patch_with_a_stale_if_match_is_refused_and_changes_nothing() {
    let app = spawn_app().await;
    let user = barbara(&app).await;
    let path = user_path(&user);
    app.patch_ok(
        &path,
        json!([{"op": "replace", "path": "title", "value": "Chief Guide"}]),
    )
    .await;

    let res = app
        .request(
            reqwest::Method::PATCH,
            &path,
            Some(&patch_op(
                json!([{"op": "replace", "path": "title", "value": "Intern"}]),
            )),
        )
        .header("If-Match", "W/\"1\"")
        .send()
        .await
        .unwrap();

    assert_scim_error(res, 412, None).await;
    let got = app.fetch_json(&path).await;
    assert_eq!(got["title"], "Chief Guide");
    assert_eq!(got["meta"]["version"], "W/\"2\"");
}

#[tokio::test]
async fn patch_of_another_tenants_user_is_not_found() {
    let app = spawn_app().await;
    let user = barbara(&app).await;

    let res = app
        .client
        .patch(app.url(&user_path(&user)))
        .bearer_auth(GLOBEX_TOKEN)
        .header("Content-Type", SCIM_JSON)
        .body(patch_op(json!([{"op": "replace", "path": "title", "value": "x"}])).to_string())
        .send()
        .await
        .unwrap();

    assert_scim_error(res, 404, None).await;
    assert_eq!(app.fetch_json(&user_path(&user)).await, user);
}

// ---------------------------------------------------------------- Groups

#[tokio::test]
async fn members_added_across_several_requests_are_never_duplicated() {
    let app = spawn_app().await;
    let u1 = app.create_user("alice").await;
    let u2 = app.create_user("bob").await;
    let group = app.create_group("Engineering", &[]).await;
    let path = group_path(&group);

    app.patch_ok(
        &path,
        json!([{"op": "Add", "path": "members", "value": [{"value": id_of(&u1), "$ref": null}]}]),
    )
    .await;
    app.patch_ok(
        &path,
        json!([{"op": "Add", "path": "members", "value": [
            {"value": id_of(&u1), "$ref": null}, {"value": id_of(&u2), "$ref": null}
        ]}]),
    )
    .await;
    let before = app.fetch_json(&path).await;
    let body = app
        .patch_ok(
            &path,
            json!([{"op": "Add", "path": "members", "value": [
                {"value": id_of(&u2), "$ref": null}, {"value": id_of(&u1)}
            ]}]),
        )
        .await;

    let want = sorted(&[&u1, &u2]);
    assert_eq!(member_ids(&body), want);
    assert_eq!(body["members"].as_array().unwrap().len(), 2);
    assert_eq!(
        body["meta"]["version"], before["meta"]["version"],
        "adding present members changes nothing"
    );
    let got = app.fetch_json(&path).await;
    assert_eq!(member_ids(&got), want);
    assert_eq!(got, body);
}

#[tokio::test]
async fn member_removed_by_a_value_filter() {
    let app = spawn_app().await;
    let u1 = app.create_user("alice").await;
    let u2 = app.create_user("bob").await;
    let group = app
        .create_group("Engineering", &[&id_of(&u1), &id_of(&u2)])
        .await;
    let path = group_path(&group);

    let body = app
        .patch_ok(
            &path,
            json!([{"op": "Remove", "path": format!("members[value eq \"{}\"]", id_of(&u1))}]),
        )
        .await;

    assert_eq!(member_ids(&body), [id_of(&u2)]);
    assert_eq!(member_ids(&app.fetch_json(&path).await), [id_of(&u2)]);
}

#[tokio::test]
async fn legacy_remove_with_a_member_list_removes_only_the_listed_members() {
    let app = spawn_app().await;
    let u1 = app.create_user("alice").await;
    let u2 = app.create_user("bob").await;
    let u3 = app.create_user("carol").await;
    let group = app
        .create_group("Engineering", &[&id_of(&u1), &id_of(&u2), &id_of(&u3)])
        .await;
    let path = group_path(&group);

    let body = app
        .patch_ok(
            &path,
            json!([{"op": "Remove", "path": "members", "value": [{"value": id_of(&u1)}, {"value": id_of(&u3)}]}]),
        )
        .await;

    assert_eq!(member_ids(&body), [id_of(&u2)]);
    assert_eq!(member_ids(&app.fetch_json(&path).await), [id_of(&u2)]);
}

#[tokio::test]
async fn remove_members_without_a_value_empties_the_group() {
    let app = spawn_app().await;
    let u1 = app.create_user("alice").await;
    let u2 = app.create_user("bob").await;
    let group = app
        .create_group("Engineering", &[&id_of(&u1), &id_of(&u2)])
        .await;
    let path = group_path(&group);

    let body = app
        .patch_ok(&path, json!([{"op": "remove", "path": "members"}]))
        .await;

    assert_eq!(body["members"], json!([]));
    assert_eq!(body["displayName"], "Engineering");
    assert_eq!(app.fetch_json(&path).await["members"], json!([]));
}

#[tokio::test]
async fn replace_members_sets_exactly_the_given_list() {
    let app = spawn_app().await;
    let u1 = app.create_user("alice").await;
    let u2 = app.create_user("bob").await;
    let u3 = app.create_user("carol").await;
    let group = app
        .create_group("Engineering", &[&id_of(&u1), &id_of(&u2)])
        .await;
    let path = group_path(&group);

    let body = app
        .patch_ok(
            &path,
            json!([{"op": "replace", "path": "members", "value": [{"value": id_of(&u2)}, {"value": id_of(&u3)}]}]),
        )
        .await;

    let want = sorted(&[&u2, &u3]);
    assert_eq!(member_ids(&body), want);
    assert_eq!(member_ids(&app.fetch_json(&path).await), want);
}

#[tokio::test]
async fn pathless_replace_with_id_in_the_value_renames_the_group() {
    let app = spawn_app().await;
    let u1 = app.create_user("alice").await;
    let group = app.create_group("Engineering", &[&id_of(&u1)]).await;
    let path = group_path(&group);

    // Okta's rename repeats the id in the value.
    let body = app
        .patch_ok(
            &path,
            json!([{"op": "replace", "value": {"id": id_of(&group), "displayName": "R&D"}}]),
        )
        .await;

    assert_eq!(body["displayName"], "R&D");
    assert_eq!(body["id"], group["id"]);
    assert_eq!(member_ids(&body), [id_of(&u1)]);
    let got = app.fetch_json(&path).await;
    assert_eq!(got["displayName"], "R&D");
    assert_eq!(member_ids(&got), [id_of(&u1)]);
}

#[tokio::test]
async fn member_add_and_remove_in_one_request() {
    let app = spawn_app().await;
    let u1 = app.create_user("alice").await;
    let u2 = app.create_user("bob").await;
    let u3 = app.create_user("carol").await;
    let group = app
        .create_group("Engineering", &[&id_of(&u1), &id_of(&u2)])
        .await;
    let path = group_path(&group);

    let body = app
        .patch_ok(
            &path,
            json!([
                {"op": "Add", "path": "members", "value": [{"value": id_of(&u3)}]},
                {"op": "Remove", "path": format!("members[value eq \"{}\"]", id_of(&u1))}
            ]),
        )
        .await;

    let want = sorted(&[&u2, &u3]);
    assert_eq!(member_ids(&body), want);
    assert_eq!(body["meta"]["version"], "W/\"2\"");
    assert_eq!(member_ids(&app.fetch_json(&path).await), want);
}

#[tokio::test]
async fn adding_a_member_that_does_not_exist_is_invalid_value_and_changes_nothing() {
    let app = spawn_app().await;
    let u1 = app.create_user("alice").await;
    let u2 = app.create_user("bob").await;
    let group = app.create_group("Engineering", &[&id_of(&u1)]).await;
    let path = group_path(&group);

    let res = app
        .patch(
            &path,
            &patch_op(json!([
                {"op": "add", "path": "members", "value": [{"value": id_of(&u2)}]},
                {"op": "remove", "path": format!("members[value eq \"{}\"]", id_of(&u1))},
                {"op": "add", "path": "members", "value": [{"value": "00000000-0000-4000-8000-000000000000"}]}
            ])),
        )
        .await;

    assert_scim_error(res, 400, Some("invalidValue")).await;
    let got = app.fetch_json(&path).await;
    assert_eq!(member_ids(&got), [id_of(&u1)]);
    assert_eq!(got["meta"]["version"], "W/\"1\"");
    assert_eq!(got, group);
}

#[tokio::test]
async fn members_removed_by_a_filter_on_type_or_display() {
    let app = spawn_app().await;
    let u1 = app.create_user("alice").await;
    let u2 = app.create_user("bob").await;
    let sub = app.create_group("Contractors", &[]).await;
    let group = app
        .create_group("Engineering", &[&id_of(&u1), &id_of(&u2), &id_of(&sub)])
        .await;
    let path = group_path(&group);
    assert_eq!(member_ids(&group).len(), 3);

    let body = app
        .patch_ok(
            &path,
            json!([{"op": "remove", "path": "members[display eq \"alice\"]"}]),
        )
        .await;
    let want = sorted(&[&u2, &sub]);
    assert_eq!(member_ids(&body), want);
    assert_eq!(member_ids(&app.fetch_json(&path).await), want);

    let body = app
        .patch_ok(
            &path,
            json!([{"op": "remove", "path": "members[type eq \"User\"]"}]),
        )
        .await;
    assert_eq!(member_ids(&body), [id_of(&sub)]);
    assert_eq!(member_ids(&app.fetch_json(&path).await), [id_of(&sub)]);
}

#[tokio::test]
async fn group_patch_with_prefer_return_minimal_answers_204() {
    let app = spawn_app().await;
    let u1 = app.create_user("alice").await;
    let group = app.create_group("Engineering", &[]).await;
    let path = group_path(&group);

    let res = app
        .request(
            reqwest::Method::PATCH,
            &path,
            Some(&patch_op(
                json!([{"op": "add", "path": "members", "value": [{"value": id_of(&u1)}]}]),
            )),
        )
        .header("Prefer", "return=minimal")
        .send()
        .await
        .unwrap();

    assert_eq!(res.status(), 204);
    assert_eq!(member_ids(&app.fetch_json(&path).await), [id_of(&u1)]);
}

#[tokio::test]
async fn group_rename_conflict_rolls_back_member_changes_in_the_same_request() {
    let app = spawn_app().await;
    let u1 = app.create_user("alice").await;
    let u2 = app.create_user("bob").await;
    app.create_group("Sales", &[]).await;
    let group = app.create_group("Engineering", &[&id_of(&u1)]).await;
    let path = group_path(&group);

    let res = app
        .patch(
            &path,
            &patch_op(json!([
                {"op": "add", "path": "members", "value": [{"value": id_of(&u2)}]},
                {"op": "remove", "path": format!("members[value eq \"{}\"]", id_of(&u1))},
                {"op": "replace", "path": "displayName", "value": "SALES"}
            ])),
        )
        .await;

    assert_scim_error(res, 409, Some("uniqueness")).await;
    let got = app.fetch_json(&path).await;
    assert_eq!(got, group);
    assert_eq!(member_ids(&got), [id_of(&u1)]);
}

#[tokio::test]
async fn member_patches_that_change_nothing_keep_the_version() {
    let app = spawn_app().await;
    let u1 = app.create_user("alice").await;
    let u2 = app.create_user("bob").await;
    let group = app
        .create_group("Engineering", &[&id_of(&u1), &id_of(&u2)])
        .await;
    let path = group_path(&group);

    for ops in [
        json!([{"op": "remove", "path": "members[value eq \"00000000-0000-4000-8000-000000000000\"]"}]),
        json!([{"op": "replace", "path": "members", "value": [{"value": id_of(&u2)}, {"value": id_of(&u1)}]}]),
        json!([{"op": "add", "path": "members", "value": [{"value": id_of(&u1)}]}]),
        json!([{"op": "replace", "path": "displayName", "value": "Engineering"}]),
    ] {
        let body = app.patch_ok(&path, ops.clone()).await;
        assert_eq!(body["meta"]["version"], "W/\"1\"", "{ops}");
        assert_eq!(member_ids(&body), member_ids(&group), "{ops}");
    }
    assert_eq!(app.fetch_json(&path).await, group);
}

#[tokio::test]
async fn adding_a_member_from_another_tenant_is_invalid_value() {
    let app = spawn_app().await;
    let foreign: Value = app
        .client
        .post(app.url("/Users"))
        .bearer_auth(GLOBEX_TOKEN)
        .header("Content-Type", SCIM_JSON)
        .body(json!({"userName": "outsider"}).to_string())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let group = app.create_group("Engineering", &[]).await;
    let path = group_path(&group);

    let res = app
        .patch(
            &path,
            &patch_op(
                json!([{"op": "add", "path": "members", "value": [{"value": id_of(&foreign)}]}]),
            ),
        )
        .await;

    assert_scim_error(res, 400, Some("invalidValue")).await;
    assert_eq!(app.fetch_json(&path).await, group);
}
