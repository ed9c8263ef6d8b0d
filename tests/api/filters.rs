//! Filtering, sorting and paging (RFC 7644 §3.4.2) as a SCIM client sees
//! them: `GET /Users?filter=…` and `POST /Users/.search` over a small,
//! realistic directory.

use serde_json::{Value, json};

use crate::helpers::*;

const LIST_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
const SEARCH_REQUEST: &str = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";

/// Eight users with varied names, emails, titles, active flags and departments.
/// Returned in creation order.
async fn directory(app: &TestApp) -> Vec<Value> {
    let people = [
        json!({"userName": "bjensen", "externalId": "EXT-BJ",
               "name": {"givenName": "Barbara", "familyName": "Jensen"},
               "title": "Tour Guide", "active": true,
               "emails": [{"value": "bjensen@example.com", "type": "work", "primary": true},
                          {"value": "babs@jensen.org", "type": "home"}],
               ENTERPRISE_USER: {"department": "Tours", "employeeNumber": "1001"}}),
        json!({"userName": "jsmith", "externalId": "ext-js",
               "name": {"givenName": "John", "familyName": "Smith"},
               "title": "Engineer", "active": true,
               "emails": [{"value": "jsmith@example.com", "type": "work"}],
               ENTERPRISE_USER: {"department": "Engineering", "employeeNumber": "1002"}}),
        json!({"userName": "mjones",
               "name": {"givenName": "Mary", "familyName": "Jones"},
               "title": "Senior Engineer", "active": false,
               "emails": [{"value": "mary.jones@example.org", "type": "work"}],
               ENTERPRISE_USER: {"department": "Engineering"}}),
        json!({"userName": "alee",
               "name": {"givenName": "Alice", "familyName": "Lee"},
               "title": "Manager", "active": true,
               "emails": [{"value": "alice@mail.test", "type": "home"}],
               ENTERPRISE_USER: {"department": "Sales"}}),
        json!({"userName": "pmartin",
               "name": {"givenName": "Pierre", "familyName": "Martin"},
               "title": "Sales Rep", "active": false,
               "emails": [{"value": "pierre@corp.test", "type": "work"}],
               ENTERPRISE_USER: {"department": "Sales"}}),
        json!({"userName": "kwong",
               "name": {"givenName": "Kim", "familyName": "Wong"},
               "active": true,
               "emails": [{"value": "kim.wong@example.com", "type": "work"}]}),
        json!({"userName": "dgarcia",
               "name": {"givenName": "Diego", "familyName": "Garcia"},
               "title": "Engineer", "active": true,
               ENTERPRISE_USER: {"department": "Support"}}),
        json!({"userName": "zadmin", "externalId": "ext-admin",
               "title": "Administrator", "active": true}),
    ];
    let mut out = Vec::new();
    for p in people {
        out.push(app.create_user_from(p).await);
    }
    out
}

/// The userNames of a ListResponse's resources, sorted.
fn names(list: &Value) -> Vec<String> {
    let mut n = resource_field(list, "userName");
    n.sort();
    n
}

fn sorted(want: &[&str]) -> Vec<String> {
    let mut w: Vec<String> = want.iter().map(|s| s.to_string()).collect();
    w.sort();
    w
}

/// POSTs a SearchRequest and returns the ListResponse (asserting 200).
async fn search(app: &TestApp, path: &str, body: Value) -> Value {
    let res = app.post(path, &body).await;
    let status = res.status();
    let list: Value = res.json().await.unwrap();
    assert_eq!(status, 200, "POST {path} {body}: {list}");
    list
}

/// Asserts that `filter` selects exactly `want` (userNames) through both
/// `GET /Users?filter=` and `POST /Users/.search`.
async fn assert_filter(app: &TestApp, filter: &str, want: &[&str]) {
    let list = app.list_ok("/Users", &[("filter", filter)]).await;
    assert_eq!(names(&list), sorted(want), "GET filter {filter}");
    assert_eq!(list["totalResults"], want.len(), "GET filter {filter}");
    assert_eq!(list["schemas"], json!([LIST_RESPONSE]));
    let list = search(
        app,
        "/Users/.search",
        json!({"schemas": [SEARCH_REQUEST], "filter": filter}),
    )
    .await;
    assert_eq!(names(&list), sorted(want), ".search filter {filter}");
    assert_eq!(list["totalResults"], want.len(), ".search filter {filter}");
}

async fn assert_invalid_filter(app: &TestApp, filter: &str) {
    let res = app.list_with("/Users", &[("filter", filter)]).await;
    assert_scim_error(res, 400, Some("invalidFilter")).await;
    let res = app
        .post(
            "/Users/.search",
            &json!({"schemas": [SEARCH_REQUEST], "filter": filter}),
        )
        .await;
    assert_scim_error(res, 400, Some("invalidFilter")).await;
}

// ---------------------------------------------------------------- operators

/// Status and body of `GET path?query`.
async fn answer(app: &TestApp, path: &str, query: &[(&str, &str)]) -> (u16, Value) {
    let res = app.list_with(path, query).await;
    (res.status().as_u16(), res.json().await.unwrap())
}

/// A lone `eq` on a unique attribute is answered by a point look-up of its
/// unique key. Against the same filter made general (`and … pr` keeps the
/// same matches), it must page, count and project alike, and follow
/// renames and deletes.
#[tokio::test]
async fn unique_key_look_ups_answer_like_the_general_filter_path() {
    let app = spawn_app().await;
    let users = directory(&app).await;
    let group = app
        .create_group("Tour Guides", &[users[0]["id"].as_str().unwrap()])
        .await;
    let cases = [
        (
            "/Users",
            r#"userName eq "BJensen""#,
            r#"userName eq "BJensen" and userName pr"#,
        ),
        (
            "/Users",
            r#"userName eq "nobody""#,
            r#"userName eq "nobody" and userName pr"#,
        ),
        (
            "/Groups",
            r#"displayName eq "tour guides""#,
            r#"displayName eq "tour guides" and displayName pr"#,
        ),
    ];
    let pages = [
        ("1", "10"),
        ("2", "10"),
        ("0", "10"),
        ("-3", "10"),
        ("1", "0"),
        ("7", "0"),
    ];
    for (path, fast, general) in cases {
        for (start, count) in pages {
            for extra in [None, Some(("attributes", "userName,groups,displayName"))] {
                let mut q = vec![("startIndex", start), ("count", count)];
                q.extend(extra);
                let f = answer(&app, path, &[q.clone(), vec![("filter", fast)]].concat()).await;
                let g = answer(&app, path, &[q.clone(), vec![("filter", general)]].concat()).await;
                assert_eq!(f, g, "{path} {fast} {q:?}");
            }
        }
    }
    let hit = app
        .list_ok("/Users", &[("filter", r#"userName eq "BJENSEN""#)])
        .await;
    assert_eq!(names(&hit), ["bjensen"]);
    assert_eq!(hit["Resources"][0]["groups"][0]["value"], group["id"]);

    let id = users[0]["id"].as_str().unwrap();
    app.patch_ok(
        &format!("/Users/{id}"),
        json!([{"op": "replace", "path": "userName", "value": "barbara"}]),
    )
    .await;
    assert_filter(&app, r#"userName eq "bjensen""#, &[]).await;
    assert_filter(&app, r#"userName eq "Barbara""#, &["barbara"]).await;
    assert_eq!(app.delete(&format!("/Users/{id}")).await.status(), 204);
    assert_filter(&app, r#"userName eq "barbara""#, &[]).await;
}

#[tokio::test]
async fn eq_matches_equal_values() {
    let app = spawn_app().await;
    directory(&app).await;
    assert_filter(&app, r#"userName eq "jsmith""#, &["jsmith"]).await;
    assert_filter(&app, r#"title eq "engineer""#, &["jsmith", "dgarcia"]).await;
    assert_filter(&app, r#"displayName eq "nobody""#, &[]).await;
}

#[tokio::test]
async fn ne_matches_every_other_value() {
    let app = spawn_app().await;
    directory(&app).await;
    assert_filter(
        &app,
        r#"userName ne "jsmith""#,
        &[
            "bjensen", "mjones", "alee", "pmartin", "kwong", "dgarcia", "zadmin",
        ],
    )
    .await;
    assert_filter(&app, r#"active ne true"#, &["mjones", "pmartin"]).await;
}

#[tokio::test]
async fn co_sw_and_ew_match_substrings() {
    let app = spawn_app().await;
    directory(&app).await;
    assert_filter(
        &app,
        r#"emails.value co "example.com""#,
        &["bjensen", "jsmith", "kwong"],
    )
    .await;
    assert_filter(
        &app,
        r#"title co "ENGINEER""#,
        &["jsmith", "mjones", "dgarcia"],
    )
    .await;
    assert_filter(&app, r#"userName sw "J""#, &["jsmith"]).await;
    assert_filter(&app, r#"title sw "senior""#, &["mjones"]).await;
    assert_filter(&app, r#"emails.value ew ".ORG""#, &["bjensen", "mjones"]).await;
    assert_filter(&app, r#"name.givenName ew "e""#, &["alee", "pmartin"]).await;
}

#[tokio::test]
async fn gt_ge_lt_and_le_order_strings_case_insensitively() {
    let app = spawn_app().await;
    directory(&app).await;
    assert_filter(&app, r#"userName gt "mjones""#, &["pmartin", "zadmin"]).await;
    assert_filter(
        &app,
        r#"userName ge "MJONES""#,
        &["mjones", "pmartin", "zadmin"],
    )
    .await;
    assert_filter(&app, r#"userName lt "bjensen""#, &["alee"]).await;
    assert_filter(&app, r#"userName le "BJensen""#, &["alee", "bjensen"]).await;
}

#[tokio::test]
async fn pr_matches_resources_where_the_attribute_has_a_value() {
    let app = spawn_app().await;
    directory(&app).await;
    assert_filter(
        &app,
        "title pr",
        &[
            "bjensen", "jsmith", "mjones", "alee", "pmartin", "dgarcia", "zadmin",
        ],
    )
    .await;
    assert_filter(&app, "externalId pr", &["bjensen", "jsmith", "zadmin"]).await;
    assert_filter(
        &app,
        "emails pr",
        &["bjensen", "jsmith", "mjones", "alee", "pmartin", "kwong"],
    )
    .await;
    assert_filter(
        &app,
        "name.familyName pr",
        &[
            "bjensen", "jsmith", "mjones", "alee", "pmartin", "kwong", "dgarcia",
        ],
    )
    .await;
}

// ---------------------------------------------------------------- logic

#[tokio::test]
async fn and_binds_tighter_than_or() {
    let app = spawn_app().await;
    directory(&app).await;
    assert_filter(
        &app,
        r#"title eq "Engineer" and active eq true"#,
        &["jsmith", "dgarcia"],
    )
    .await;
    assert_filter(
        &app,
        r#"userName eq "alee" or userName eq "kwong""#,
        &["alee", "kwong"],
    )
    .await;
    // a or (b and c): jsmith is active, so only alee.
    assert_filter(
        &app,
        r#"userName eq "alee" or userName eq "jsmith" and active eq false"#,
        &["alee"],
    )
    .await;
    // (b and c) or a, written the other way round.
    assert_filter(
        &app,
        r#"userName eq "jsmith" and active eq false or userName eq "alee""#,
        &["alee"],
    )
    .await;
}

#[tokio::test]
async fn parentheses_group_and_not_negates() {
    let app = spawn_app().await;
    directory(&app).await;
    assert_filter(
        &app,
        r#"(userName eq "alee" or userName eq "mjones") and active eq false"#,
        &["mjones"],
    )
    .await;
    assert_filter(&app, r#"not (active eq true)"#, &["mjones", "pmartin"]).await;
    assert_filter(&app, r#"not (title pr)"#, &["kwong"]).await;
    assert_filter(
        &app,
        r#"active eq true and not (title co "engineer" or title eq "Manager")"#,
        &["bjensen", "kwong", "zadmin"],
    )
    .await;
}

// ---------------------------------------------------------------- attribute forms

#[tokio::test]
async fn value_path_filter_matches_within_one_element() {
    let app = spawn_app().await;
    directory(&app).await;
    assert_filter(
        &app,
        r#"emails[type eq "work" and value co "@example"]"#,
        &["bjensen", "jsmith", "mjones", "kwong"],
    )
    .await;
    // Both conditions must hold for the same email: bjensen has a home
    // email and an @example email, but they are different elements.
    assert_filter(
        &app,
        r#"emails[type eq "home" and value co "@example"]"#,
        &[],
    )
    .await;
    assert_filter(&app, r#"emails[type eq "home"]"#, &["bjensen", "alee"]).await;
}

#[tokio::test]
async fn entra_value_path_with_sub_attribute_comparison_is_understood() {
    let app = spawn_app().await;
    directory(&app).await;
    assert_filter(
        &app,
        r#"emails[type eq "work"].value eq "jsmith@example.com""#,
        &["jsmith"],
    )
    .await;
    assert_filter(
        &app,
        r#"emails[type eq "home"].value eq "bjensen@example.com""#,
        &[],
    )
    .await;
    assert_filter(
        &app,
        r#"emails[type eq "work"].value eq "JSMITH@EXAMPLE.COM" and active eq true"#,
        &["jsmith"],
    )
    .await;
}

#[tokio::test]
async fn sub_attribute_filter_matches_the_complex_attribute() {
    let app = spawn_app().await;
    directory(&app).await;
    assert_filter(&app, r#"name.familyName eq "jones""#, &["mjones"]).await;
    assert_filter(&app, r#"NAME.GIVENNAME eq "Barbara""#, &["bjensen"]).await;
    assert_filter(&app, r#"emails.type eq "home""#, &["bjensen", "alee"]).await;
}

#[tokio::test]
async fn extension_urn_qualified_attribute_filters_on_the_extension() {
    let app = spawn_app().await;
    directory(&app).await;
    let dept = format!(r#"{ENTERPRISE_USER}:department eq "Engineering""#);
    assert_filter(&app, &dept, &["jsmith", "mjones"]).await;
    let dept = format!(r#"{ENTERPRISE_USER}:department eq "sales" and active eq true"#);
    assert_filter(&app, &dept, &["alee"]).await;
    let pr = format!("{ENTERPRISE_USER}:employeeNumber pr");
    assert_filter(&app, &pr, &["bjensen", "jsmith"]).await;
    let core = r#"urn:ietf:params:scim:schemas:core:2.0:User:userName eq "kwong""#;
    assert_filter(&app, core, &["kwong"]).await;
}

#[tokio::test]

async fn not_directly_followed_by_a_parenthesis_is_accepted() {
    let app = spawn_app().await;
    directory(&app).await;
    // RFC 7644 Figure 1: FILTER = ... / *1"not" "(" FILTER ")", no space required.
    assert_filter(&app, r#"not(active eq true)"#, &["mjones", "pmartin"]).await;
    assert_filter(&app, r#"emails[not(type eq "work")]"#, &["bjensen", "alee"]).await;
}

// ---------------------------------------------------------------- case rules and types

#[tokio::test]
async fn user_name_matches_in_any_case_because_it_is_not_case_exact() {
    let app = spawn_app().await;
    directory(&app).await;
    assert_filter(&app, r#"userName eq "JSMITH""#, &["jsmith"]).await;
    assert_filter(&app, r#"USERNAME EQ "JSmith""#, &["jsmith"]).await;
}

#[tokio::test]
async fn external_id_is_case_exact_so_another_case_does_not_match() {
    let app = spawn_app().await;
    directory(&app).await;
    assert_filter(&app, r#"externalId eq "ext-js""#, &["jsmith"]).await;
    assert_filter(&app, r#"externalId eq "EXT-JS""#, &[]).await;
    assert_filter(&app, r#"externalId eq "ext-bj""#, &[]).await;
    assert_filter(&app, r#"externalId sw "ext-""#, &["jsmith", "zadmin"]).await;
}

#[tokio::test]
async fn id_is_case_exact() {
    let app = spawn_app().await;
    let users = directory(&app).await;
    let id = users[3]["id"].as_str().unwrap();
    assert_filter(&app, &format!(r#"id eq "{id}""#), &["alee"]).await;
    let upper = id.to_uppercase();
    assert_ne!(upper, id);
    assert_filter(&app, &format!(r#"id eq "{upper}""#), &[]).await;
}

#[tokio::test]
async fn boolean_filters_compare_active_flags() {
    let app = spawn_app().await;
    directory(&app).await;
    assert_filter(&app, "active eq false", &["mjones", "pmartin"]).await;
    assert_filter(
        &app,
        "active eq true",
        &["bjensen", "jsmith", "alee", "kwong", "dgarcia", "zadmin"],
    )
    .await;
}

#[tokio::test]
async fn date_time_filters_compare_meta_last_modified_and_created() {
    let app = spawn_app().await;
    let users = directory(&app).await;
    let pause = || tokio::time::sleep(std::time::Duration::from_millis(20));
    pause().await;
    let late = app.create_user("latecomer").await;
    let cutoff = late["meta"]["lastModified"].as_str().unwrap().to_string();
    pause().await;
    for u in [&users[1], &users[4]] {
        let path = format!("/Users/{}", u["id"].as_str().unwrap());
        app.patch_ok(
            &path,
            json!([{"op": "replace", "path": "nickName", "value": "changed"}]),
        )
        .await;
    }

    assert_filter(
        &app,
        &format!(r#"meta.lastModified gt "{cutoff}""#),
        &["jsmith", "pmartin"],
    )
    .await;
    assert_filter(
        &app,
        &format!(r#"meta.lastModified ge "{cutoff}""#),
        &["jsmith", "pmartin", "latecomer"],
    )
    .await;
    let created = late["meta"]["created"].as_str().unwrap();
    assert_filter(
        &app,
        &format!(r#"meta.created lt "{created}""#),
        &[
            "bjensen", "jsmith", "mjones", "alee", "pmartin", "kwong", "dgarcia", "zadmin",
        ],
    )
    .await;
    assert_filter(
        &app,
        &format!(r#"meta.created ge "{created}""#),
        &["latecomer"],
    )
    .await;
    assert_filter(&app, r#"meta.lastModified lt "2000-01-01T00:00:00Z""#, &[]).await;
}

#[tokio::test]

async fn ordering_operators_on_boolean_or_binary_attributes_are_invalid_filter() {
    let app = spawn_app().await;
    directory(&app).await;
    // RFC 7644 §3.4.2.2: for gt, ge, lt and le, "Boolean and Binary
    // attributes SHALL cause a failed response (HTTP status code 400) with
    // scimType of invalidFilter".
    for bad in [
        "active gt false",
        "active ge true",
        "active lt true",
        "emails.primary le true",
        "emails[primary gt false]",
        r#"x509Certificates.value gt "TUlJ""#,
    ] {
        assert_invalid_filter(&app, bad).await;
    }
}

#[tokio::test]
async fn meta_resource_type_can_be_filtered() {
    let app = spawn_app().await;
    directory(&app).await;
    assert_filter(
        &app,
        r#"meta.resourceType eq "User""#,
        &[
            "bjensen", "jsmith", "mjones", "alee", "pmartin", "kwong", "dgarcia", "zadmin",
        ],
    )
    .await;
    assert_filter(&app, r#"meta.resourceType eq "Group""#, &[]).await;
}

#[tokio::test]
async fn filter_matching_nothing_returns_an_empty_list_response() {
    let app = spawn_app().await;
    directory(&app).await;
    let filter = format!(
        r#"userName eq "{}""#,
        "5b1e5f0c-3a8e-4bd5-9f57-3d7cbb0a2e61"
    );

    let res = app.list_with("/Users", &[("filter", &filter)]).await;

    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], SCIM_JSON);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["schemas"], json!([LIST_RESPONSE]));
    assert_eq!(body["totalResults"], 0);
    assert_eq!(body["Resources"], json!([]));
    assert_eq!(body["startIndex"], 1);
    assert_eq!(body["itemsPerPage"], 0);
}

#[tokio::test]
async fn groups_filter_by_display_name_and_exclude_members() {
    let app = spawn_app().await;
    let users = directory(&app).await;
    let ids: Vec<&str> = users.iter().map(|u| u["id"].as_str().unwrap()).collect();
    let eng = app.create_group("Engineering", &[ids[1], ids[2]]).await;
    app.create_group("Sales", &[ids[3], ids[4]]).await;
    app.create_group("Engineering Managers", &[ids[3]]).await;

    let list = app
        .list_ok(
            "/Groups",
            &[
                ("filter", r#"displayName eq "engineering""#),
                ("excludedAttributes", "members"),
            ],
        )
        .await;

    assert_eq!(list["totalResults"], 1);
    let group = &list["Resources"][0];
    assert_eq!(group["id"], eng["id"]);
    assert_eq!(group["displayName"], "Engineering");
    assert!(group.get("members").is_none(), "{group}");
    assert_eq!(group["meta"]["resourceType"], "Group");

    let list = search(
        &app,
        "/Groups/.search",
        json!({"schemas": [SEARCH_REQUEST], "filter": "displayName sw \"Engineering\"",
               "excludedAttributes": ["members"]}),
    )
    .await;
    assert_eq!(list["totalResults"], 2);
    for g in list["Resources"].as_array().unwrap() {
        assert!(g.get("members").is_none(), "{g}");
    }
}

#[tokio::test]
async fn filters_see_the_values_a_patch_wrote() {
    let app = spawn_app().await;
    let users = directory(&app).await;
    let path = format!("/Users/{}", users[1]["id"].as_str().unwrap());
    app.patch_ok(
        &path,
        json!([
            {"op": "replace", "path": "userName", "value": "john.smith"},
            {"op": "replace", "path": "emails[type eq \"work\"].value", "value": "John.Smith@Example.com"},
            {"op": "replace", "path": "externalId", "value": "EXT-NEW"},
            {"op": "replace", "path": format!("{ENTERPRISE_USER}:department"), "value": "Research"}
        ]),
    )
    .await;

    assert_filter(&app, r#"userName eq "jsmith""#, &[]).await;
    assert_filter(&app, r#"userName eq "JOHN.SMITH""#, &["john.smith"]).await;
    assert_filter(&app, r#"emails.value eq "jsmith@example.com""#, &[]).await;
    assert_filter(
        &app,
        r#"emails.value eq "john.smith@example.com""#,
        &["john.smith"],
    )
    .await;
    assert_filter(
        &app,
        r#"emails[type eq "work"].value eq "john.smith@example.com""#,
        &["john.smith"],
    )
    .await;
    assert_filter(&app, r#"externalId eq "ext-js""#, &[]).await;
    assert_filter(&app, r#"externalId eq "EXT-NEW""#, &["john.smith"]).await;
    let dept = format!(r#"{ENTERPRISE_USER}:department eq "Engineering""#);
    assert_filter(&app, &dept, &["mjones"]).await;
}

#[tokio::test]
async fn group_membership_can_be_filtered_from_both_sides() {
    let app = spawn_app().await;
    let users = directory(&app).await;
    let ids: Vec<&str> = users.iter().map(|u| u["id"].as_str().unwrap()).collect();
    let eng = app.create_group("Engineering", &[ids[1], ids[2]]).await;
    let sales = app.create_group("Sales", &[ids[3], ids[4]]).await;
    let gid = eng["id"].as_str().unwrap();

    assert_filter(
        &app,
        &format!(r#"groups.value eq "{gid}""#),
        &["jsmith", "mjones"],
    )
    .await;
    assert_filter(&app, r#"groups.display eq "sales""#, &["alee", "pmartin"]).await;
    assert_filter(&app, "groups pr", &["jsmith", "mjones", "alee", "pmartin"]).await;

    let list = app
        .list_ok(
            "/Groups",
            &[("filter", &format!(r#"members.value eq "{}""#, ids[4]))],
        )
        .await;
    assert_eq!(list["totalResults"], 1);
    assert_eq!(list["Resources"][0]["id"], sales["id"]);
    let list = app
        .list_ok(
            "/Groups",
            &[("filter", &format!(r#"members[value eq "{}"]"#, ids[1]))],
        )
        .await;
    assert_eq!(list["totalResults"], 1);
    assert_eq!(list["Resources"][0]["id"], eng["id"]);
}

#[tokio::test]
async fn filters_only_see_the_callers_tenant() {
    let app = spawn_app().await;
    directory(&app).await;

    let res = app
        .client
        .get(app.url("/Users"))
        .bearer_auth(GLOBEX_TOKEN)
        .query(&[("filter", r#"userName eq "alee" or active pr"#)])
        .send()
        .await
        .unwrap();

    assert_eq!(res.status(), 200);
    let list: Value = res.json().await.unwrap();
    assert_eq!(list["totalResults"], 0);
    assert_eq!(list["Resources"], json!([]));
}

// ---------------------------------------------------------------- paging

#[tokio::test]
async fn start_index_and_count_page_through_the_results() {
    let app = spawn_app().await;
    directory(&app).await;

    let mut seen = Vec::new();
    for start in [1, 4, 7] {
        let list = app
            .list_ok(
                "/Users",
                &[("startIndex", &start.to_string()), ("count", "3")],
            )
            .await;
        assert_eq!(list["totalResults"], 8);
        assert_eq!(list["startIndex"], start);
        let expected = if start == 7 { 2 } else { 3 };
        assert_eq!(list["itemsPerPage"], expected);
        assert_eq!(list["Resources"].as_array().unwrap().len(), expected);
        seen.extend(resource_field(&list, "userName"));
    }
    seen.sort();
    assert_eq!(
        seen,
        sorted(&[
            "bjensen", "jsmith", "mjones", "alee", "pmartin", "kwong", "dgarcia", "zadmin"
        ])
    );
}

#[tokio::test]
async fn filtered_pages_report_the_filtered_total() {
    let app = spawn_app().await;
    directory(&app).await;

    let list = app
        .list_ok(
            "/Users",
            &[
                ("filter", "active eq true"),
                ("startIndex", "2"),
                ("count", "4"),
            ],
        )
        .await;
    assert_eq!(list["totalResults"], 6);
    assert_eq!(list["startIndex"], 2);
    assert_eq!(list["itemsPerPage"], 4);

    let list = search(
        &app,
        "/Users/.search",
        json!({"schemas": [SEARCH_REQUEST], "filter": "active eq true", "startIndex": 5, "count": 4}),
    )
    .await;
    assert_eq!(list["totalResults"], 6);
    assert_eq!(list["startIndex"], 5);
    assert_eq!(list["itemsPerPage"], 2);
}

#[tokio::test]
async fn count_zero_returns_only_the_total() {
    let app = spawn_app().await;
    directory(&app).await;

    for query in [
        vec![("count", "0")],
        vec![("count", "0"), ("filter", "active eq true")],
    ] {
        let list = app.list_ok("/Users", &query).await;
        let want = if query.len() == 2 { 6 } else { 8 };
        assert_eq!(list["totalResults"], want, "{query:?}");
        assert_eq!(
            list.get("Resources").cloned().unwrap_or(json!([])),
            json!([]),
            "{query:?}"
        );
        assert_eq!(list["itemsPerPage"], 0, "{query:?}");
    }
}

#[tokio::test]
async fn start_index_past_the_end_returns_an_empty_page_with_the_total() {
    let app = spawn_app().await;
    directory(&app).await;

    for query in [
        vec![("startIndex", "100")],
        vec![("startIndex", "9"), ("filter", "userName pr")],
    ] {
        let list = app.list_ok("/Users", &query).await;
        assert_eq!(list["totalResults"], 8, "{query:?}");
        assert_eq!(list["Resources"], json!([]), "{query:?}");
        assert_eq!(list["itemsPerPage"], 0, "{query:?}");
        assert_eq!(
            list["startIndex"],
            json!(query[0].1.parse::<u64>().unwrap())
        );
    }
}

#[tokio::test]
async fn negative_start_index_is_treated_as_one() {
    let app = spawn_app().await;
    directory(&app).await;

    let list = app
        .list_ok("/Users", &[("startIndex", "-5"), ("count", "2")])
        .await;
    assert_eq!(list["startIndex"], 1);
    assert_eq!(list["itemsPerPage"], 2);
    let first = app
        .list_ok("/Users", &[("startIndex", "1"), ("count", "2")])
        .await;
    assert_eq!(list["Resources"], first["Resources"]);

    let list = search(
        &app,
        "/Users/.search",
        json!({"schemas": [SEARCH_REQUEST], "startIndex": 0, "count": 2, "filter": "userName pr"}),
    )
    .await;
    assert_eq!(list["startIndex"], 1);
    assert_eq!(list["itemsPerPage"], 2);
}

#[tokio::test]
async fn negative_count_is_treated_as_zero() {
    let app = spawn_app().await;
    directory(&app).await;

    let list = app.list_ok("/Users", &[("count", "-1")]).await;
    assert_eq!(list["totalResults"], 8);
    assert_eq!(list["itemsPerPage"], 0);
    assert_eq!(
        list.get("Resources").cloned().unwrap_or(json!([])),
        json!([])
    );

    let list = search(
        &app,
        "/Users/.search",
        json!({"schemas": [SEARCH_REQUEST], "count": -10, "filter": "active eq false"}),
    )
    .await;
    assert_eq!(list["totalResults"], 2);
    assert_eq!(list["itemsPerPage"], 0);
}

#[tokio::test]
async fn count_above_the_maximum_is_clamped_to_the_maximum() {
    let app = spawn_app().await;
    // The harness sets max_page_size = 200: one more user than that.
    for i in 0..201 {
        let res = app
            .post(
                "/Users",
                &json!({"userName": format!("bulk{i:03}"), "active": i % 2 == 0}),
            )
            .await;
        assert_eq!(res.status(), 201);
    }

    let list = app.list_ok("/Users", &[("count", "1000")]).await;
    assert_eq!(list["totalResults"], 201);
    assert_eq!(list["itemsPerPage"], 200);
    assert_eq!(list["Resources"].as_array().unwrap().len(), 200);

    let list = app
        .list_ok(
            "/Users",
            &[("count", "1000"), ("filter", "userName sw \"bulk\"")],
        )
        .await;
    assert_eq!(list["totalResults"], 201);
    assert_eq!(list["itemsPerPage"], 200);

    let list = app
        .list_ok("/Users", &[("count", "1000"), ("startIndex", "200")])
        .await;
    assert_eq!(list["itemsPerPage"], 2);

    // Without count the default page size (50) applies.
    let list = app.list_ok("/Users", &[]).await;
    assert_eq!(list["itemsPerPage"], 50);
    assert_eq!(list["totalResults"], 201);
}

// ---------------------------------------------------------------- sorting

#[tokio::test]
async fn sort_by_orders_ascending_by_default_and_descending_on_request() {
    let app = spawn_app().await;
    directory(&app).await;
    let all = [
        "alee", "bjensen", "dgarcia", "jsmith", "kwong", "mjones", "pmartin", "zadmin",
    ];

    let list = app.list_ok("/Users", &[("sortBy", "userName")]).await;
    assert_eq!(resource_field(&list, "userName"), all);
    let list = app
        .list_ok(
            "/Users",
            &[("sortBy", "userName"), ("sortOrder", "ascending")],
        )
        .await;
    assert_eq!(resource_field(&list, "userName"), all);

    let list = app
        .list_ok(
            "/Users",
            &[("sortBy", "userName"), ("sortOrder", "descending")],
        )
        .await;
    let mut desc = all.to_vec();
    desc.reverse();
    assert_eq!(resource_field(&list, "userName"), desc);

    let list = search(
        &app,
        "/Users/.search",
        json!({"schemas": [SEARCH_REQUEST], "sortBy": "userName", "sortOrder": "descending",
               "filter": "active eq true"}),
    )
    .await;
    assert_eq!(
        resource_field(&list, "userName"),
        ["zadmin", "kwong", "jsmith", "dgarcia", "bjensen", "alee"]
    );
}

#[tokio::test]
async fn sort_by_a_sub_attribute_puts_missing_values_last_ascending_and_first_descending() {
    let app = spawn_app().await;
    directory(&app).await;

    let list = app
        .list_ok("/Users", &[("sortBy", "name.familyName")])
        .await;
    assert_eq!(
        resource_field(&list, "userName"),
        [
            "dgarcia", "bjensen", "mjones", "alee", "pmartin", "jsmith", "kwong", "zadmin"
        ]
    );

    let list = app
        .list_ok(
            "/Users",
            &[("sortBy", "name.familyName"), ("sortOrder", "descending")],
        )
        .await;
    assert_eq!(
        resource_field(&list, "userName"),
        [
            "zadmin", "kwong", "jsmith", "pmartin", "alee", "mjones", "bjensen", "dgarcia"
        ]
    );
}

#[tokio::test]
async fn sorted_paging_is_stable_across_pages() {
    let app = spawn_app().await;
    directory(&app).await;

    // Many ties on title (two Engineers, one without a title): page by 3.
    let full = app
        .list_ok("/Users", &[("sortBy", "title"), ("count", "100")])
        .await;
    let full = resource_field(&full, "userName");
    assert_eq!(full.len(), 8);
    let mut paged = Vec::new();
    for start in [1, 4, 7] {
        let page = app
            .list_ok(
                "/Users",
                &[
                    ("sortBy", "title"),
                    ("startIndex", &start.to_string()),
                    ("count", "3"),
                ],
            )
            .await;
        paged.extend(resource_field(&page, "userName"));
    }
    assert_eq!(paged, full);
    // Titles ascend (case-insensitively), the user without a title is last.
    assert_eq!(full.last().map(String::as_str), Some("kwong"));
    assert_eq!(full.first().map(String::as_str), Some("zadmin"));
    // Repeating the request gives the same order.
    let again = app
        .list_ok("/Users", &[("sortBy", "title"), ("count", "100")])
        .await;
    assert_eq!(resource_field(&again, "userName"), full);
}

// ---------------------------------------------------------------- leniency and errors

#[tokio::test]
async fn unknown_query_parameters_are_ignored() {
    let app = spawn_app().await;
    directory(&app).await;

    // Entra ID's feature flag comes without a value.
    let res = app
        .get("/Users?aadOptscim062020&filter=userName%20eq%20%22alee%22&somethingElse=1")
        .await;
    assert_eq!(res.status(), 200);
    let list: Value = res.json().await.unwrap();
    assert_eq!(names(&list), ["alee"]);
    assert_eq!(list["totalResults"], 1);

    let list = search(
        &app,
        "/Users/.search",
        json!({"schemas": [SEARCH_REQUEST], "filter": "userName eq \"alee\"", "somethingElse": 1}),
    )
    .await;
    assert_eq!(names(&list), ["alee"]);
}

#[tokio::test]
async fn malformed_filters_are_invalid_filter() {
    let app = spawn_app().await;
    directory(&app).await;
    for bad in [
        r#"userName eq"#,
        r#"userName zz "a""#,
        r#"(userName eq "a""#,
        r#"userName eq "a" and"#,
        r#"emails[type eq "work""#,
        r#"userName eq "unterminated"#,
    ] {
        assert_invalid_filter(&app, bad).await;
    }
}

#[tokio::test]
async fn filters_on_unknown_attributes_are_invalid_filter() {
    let app = spawn_app().await;
    directory(&app).await;
    for bad in [
        r#"shoeSize eq "42""#,
        r#"name.shoeSize eq "42""#,
        r#"emails[shoeSize eq "42"]"#,
        r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:shoeSize eq "42""#,
        r#"userName eq "alee" or shoeSize pr"#,
    ] {
        assert_invalid_filter(&app, bad).await;
    }
}

#[tokio::test]
async fn filter_longer_than_4096_characters_is_invalid_filter() {
    let app = spawn_app().await;
    directory(&app).await;
    let mut filter = String::from(r#"userName eq "alee""#);
    while filter.len() <= 4096 {
        filter.push_str(r#" or userName eq "alee""#);
    }
    assert!(filter.len() > 4096);
    assert_invalid_filter(&app, &filter).await;

    // Just under the limit is fine.
    let mut ok = String::from(r#"userName eq "alee""#);
    while ok.len() + 21 <= 4096 {
        ok.push_str(r#" or userName eq "alee""#);
    }
    assert_filter(&app, &ok, &["alee"]).await;
}
