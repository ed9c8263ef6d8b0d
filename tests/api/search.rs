//! `POST /.search` across resource types and `POST /Users/.search`.

use serde_json::{Value, json};

use crate::helpers::*;

const SEARCH: &str = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";

#[tokio::test]
async fn root_search_pages_over_users_then_groups() {
    let app = spawn_app().await;
    for name in ["u1", "u2", "u3"] {
        app.create_user(name).await;
    }
    app.create_group("g1", &[]).await;
    app.create_group("g2", &[]).await;
    let res = app
        .post(
            "/.search",
            &json!({"schemas": [SEARCH], "startIndex": 3, "count": 2}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["totalResults"], 5);
    assert_eq!(body["startIndex"], 3);
    assert_eq!(body["itemsPerPage"], 2);
    assert_eq!(body["Resources"][0]["userName"], "u3");
    assert_eq!(body["Resources"][1]["displayName"], "g1");
    assert_eq!(body["Resources"][1]["meta"]["resourceType"], "Group");
}

#[tokio::test]
async fn root_search_filter_on_a_user_only_attribute_matches_only_users() {
    let app = spawn_app().await;
    app.create_user("alice").await;
    app.create_group("alice-group", &[]).await;
    let res = app
        .post("/.search", &json!({"schemas": [SEARCH], "filter": "userName sw \"ali\"", "attributes": ["userName"]}))
        .await;
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["totalResults"], 1, "{body}");
    assert_eq!(
        body["Resources"][0],
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "id": body["Resources"][0]["id"], "userName": "alice"})
    );
    let res = app
        .post(
            "/.search",
            &json!({"schemas": [SEARCH], "filter": "shoeSize eq 4"}),
        )
        .await;
    assert_scim_error(res, 400, Some("invalidFilter")).await;
}

#[tokio::test]
async fn resource_search_takes_the_filter_from_the_body() {
    let app = spawn_app().await;
    app.create_user("bjensen").await;
    app.create_user("jsmith").await;
    let res = app
        .post("/Users/.search", &json!({"schemas": [SEARCH], "filter": "userName eq \"BJENSEN\"", "excludedAttributes": ["meta"]}))
        .await;
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["totalResults"], 1);
    assert!(body["Resources"][0].get("meta").is_none());
    assert_eq!(app.get("/Users/.search").await.status(), 405);
}

async fn walk(
    app: &TestApp,
    query: &str,
    prefix: &str,
    added_midway: &mut Vec<String>,
) -> Vec<String> {
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let res = app
            .get(&format!("/Users?{query}&count=3&cursor={cursor}"))
            .await;
        assert_eq!(res.status(), 200);
        let body: Value = res.json().await.unwrap();
        assert!(body.get("startIndex").is_none(), "{body}");
        for r in body["Resources"].as_array().unwrap() {
            seen.push(r["userName"].as_str().unwrap().to_string());
        }
        if seen.len() == 3 {
            // Resources created during the walk come after the cursor.
            let name = format!("{prefix}{}", added_midway.len());
            app.create_user(&name).await;
            added_midway.push(name);
        }
        match body.get("nextCursor").and_then(Value::as_str) {
            Some(c) => cursor = c.to_string(),
            None => return seen,
        }
    }
}

#[tokio::test]
async fn cursor_walk_sees_every_user_exactly_once_while_users_are_added() {
    let app = spawn_app().await;
    let mut names: Vec<String> = (0..8).map(|i| format!("user{i}")).collect();
    for n in &names {
        app.create_user(n).await;
    }
    let mut late = Vec::new();
    let seen = walk(&app, "", "late", &mut late).await;
    names.extend(late.clone());
    assert_eq!(seen, names);

    // The same through the filtered (evaluator) path, sorted descending.
    let mut late2 = Vec::new();
    let seen = walk(
        &app,
        "filter=userName%20sw%20%22user%22&sortBy=userName&sortOrder=descending",
        "userlate",
        &mut late2,
    )
    .await;
    let mut want: Vec<String> = (0..8).map(|i| format!("user{i}")).collect();
    want.reverse();
    assert_eq!(seen, want);
}

#[tokio::test]
async fn previous_cursor_walks_back() {
    let app = spawn_app().await;
    for i in 0..7 {
        app.create_user(&format!("u{i}")).await;
    }
    let first: Value = app.get("/Users?count=3&cursor").await.json().await.unwrap();
    assert!(first.get("previousCursor").is_none());
    assert_eq!(first["totalResults"], 7);
    let next = first["nextCursor"].as_str().unwrap();
    let second: Value = app
        .get(&format!("/Users?count=3&cursor={next}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(second["Resources"][0]["userName"], "u3");
    let prev = second["previousCursor"].as_str().unwrap();
    let back: Value = app
        .get(&format!("/Users?count=3&cursor={prev}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(back["Resources"], first["Resources"]);
    let config: Value = app
        .get("/ServiceProviderConfig")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(config["pagination"]["cursor"], true);
}

#[tokio::test]
async fn bad_cursors_are_refused() {
    let app = spawn_app().await;
    app.create_user("a").await;
    assert_scim_error(
        app.get("/Users?cursor=not-a-cursor").await,
        400,
        Some("invalidCursor"),
    )
    .await;
    let first: Value = app
        .get("/Users?count=0&cursor=")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(first["totalResults"], 1);
    let page: Value = app
        .get("/Users?filter=userName%20pr&count=1&cursor=")
        .await
        .json()
        .await
        .unwrap();
    assert!(page.get("nextCursor").is_none());
    app.create_user("b").await;
    let page: Value = app
        .get("/Users?filter=userName%20pr&count=1&cursor=")
        .await
        .json()
        .await
        .unwrap();
    let c = page["nextCursor"].as_str().unwrap();
    // A cursor belongs to its query.
    assert_scim_error(
        app.get(&format!("/Users?count=1&cursor={c}")).await,
        400,
        Some("invalidCursor"),
    )
    .await;
    assert_scim_error(
        app.get("/Users?startIndex=2&cursor=").await,
        400,
        Some("invalidValue"),
    )
    .await;
}

#[tokio::test]
async fn indexed_filters_compile_to_index_lookups_without_a_scan() {
    let app = spawn_app().await;
    app.create_user("bjensen").await;
    for filter in [
        r#"userName eq "bjensen""#,
        r#"emails[type eq "work"].value eq "bj@example.com""#,
        r#"userName eq "a" or externalId eq "b""#,
    ] {
        let (plan, _) = app.explain_user_filter(filter);
        println!("{filter}:\n{plan}");
        // The look-up drives the query: resources are then read by primary
        // key, never walked through the tenant's (tenant, type) index.
        assert!(plan.contains("attr_index_lookup"), "{filter}: {plan}");
        assert!(
            plan.contains("sqlite_autoindex_resources_1") || plan.contains("resources_pkey"),
            "{filter}: {plan}"
        );
        assert!(
            !plan.contains("SCAN r")
                && !plan.contains("Seq Scan")
                && !plan.contains("resources_by_type"),
            "{filter}: {plan}"
        );
    }
    // `id eq` reads the primary key (also on PostgreSQL, where order
    // comparisons on ids use byte order but equality keeps the index).
    let (plan, exact) = app.explain_user_filter(r#"id eq "x""#);
    assert!(exact);
    assert!(
        (plan.contains("sqlite_autoindex_resources_1") || plan.contains("resources_pkey"))
            && !plan.contains("resources_by_type")
            && !plan.contains("Seq Scan"),
        "id eq: {plan}"
    );
    // `userName eq` is decided in SQL; the value path needs the evaluator
    // for `type`, on the rows the index found.
    assert!(app.explain_user_filter(r#"userName eq "bjensen""#).1);
    assert!(
        !app.explain_user_filter(r#"emails[type eq "work"].value eq "x""#)
            .1
    );
}
