//! Regression tests named after what broke.

use serde_json::{Value, json};

use crate::helpers::*;

#[tokio::test]
async fn concurrent_patches_to_one_user_all_apply_and_none_is_a_false_conflict() {
    let app = spawn_app().await;
    let user = app.create_user("busy").await;
    let path = format!("/Users/{}", user["id"].as_str().unwrap());
    let patches = (0..8).map(|i| {
        let body = patch_op(
            json!([{"op": "add", "path": "emails", "value": [{"value": format!("e{i}@x.org")}]}]),
        );
        let path = path.clone();
        let app = &app;
        async move { app.patch(&path, &body).await.status().as_u16() }
    });
    let statuses = futures_util::future::join_all(patches).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let got: Value = app.get(&path).await.json().await.unwrap();
    assert_eq!(got["emails"].as_array().unwrap().len(), 8, "{got}");
    assert_eq!(got["meta"]["version"], "W/\"9\"");
}

#[tokio::test]
async fn nul_characters_are_400_and_long_values_index_safely() {
    let app = spawn_app().await;
    for body in [
        json!({"userName": "nul\u{0000}byte"}),
        json!({"userName": "ok", "externalId": "a\u{0000}"}),
    ] {
        assert_scim_error(app.post("/Users", &body).await, 400, Some("invalidValue")).await;
    }
    assert_scim_error(app.get("/Users/a%00b").await, 404, None).await;
    assert_scim_error(
        app.get("/Users?filter=userName%20eq%20%22a%00%22").await,
        400,
        Some("invalidFilter"),
    )
    .await;
    assert_eq!(app.user_count().await, 0);
    // Values longer than an index entry are stored, found and kept unique.
    let long = format!("{}@x.org", "ä".repeat(1500));
    let res = app
        .post(
            "/Users",
            &json!({"userName": long.clone(), "emails": [{"value": long.clone()}]}),
        )
        .await;
    assert_eq!(res.status(), 201);
    let res = app
        .post(
            "/Users",
            &json!({"userName": format!("{}b@x.org", "ä".repeat(1500))}),
        )
        .await;
    assert_eq!(
        res.status(),
        201,
        "a long name sharing a prefix is not a conflict"
    );
    assert_scim_error(
        app.post("/Users", &json!({"userName": long.to_uppercase()}))
            .await,
        409,
        Some("uniqueness"),
    )
    .await;
    let found: Value = app
        .request(
            reqwest::Method::POST,
            "/Users/.search",
            Some(&json!({"filter": format!("emails.value eq \"{long}\"")})),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(found["totalResults"], 1, "{found}");
}

#[tokio::test]
async fn database_messages_never_reach_clients_on_conflicts() {
    let app = spawn_app().await;
    app.create_user("taken").await;
    let body = assert_scim_error(
        app.post("/Users", &json!({"userName": "TAKEN"})).await,
        409,
        Some("uniqueness"),
    )
    .await;
    let detail = body["detail"].as_str().unwrap().to_lowercase();
    assert!(
        !detail.contains("constraint") && !detail.contains("unique_keys"),
        "{detail}"
    );
}

/// SQLite numbers `$n` placeholders by first appearance: the enqueue
/// statement once bound the due time to `next_attempt_at`'s neighbours, so
/// on SQLite leavers were not due first and `created_at` held a number.
#[tokio::test]
async fn a_leavers_job_is_due_first_and_records_when_it_was_written() {
    let down = crate::delivery::downstream().await;
    let (base, token) = (down.base(), down.token_file.clone());
    let up =
        spawn_app_with(move |s| s.apps.push(crate::delivery::scim_app("crm", &base, &token))).await;
    // Paused, so the jobs stay in the queue to be looked at.
    let (status, _) = up.admin_post("/apps/crm/pause").await;
    assert_eq!(status, 200);
    let joiner = up.create_user("joiner@example.com").await;
    let leaver = up.create_user("leaver@example.com").await;
    let leaver_id = leaver["id"].as_str().unwrap();
    up.patch_ok(
        &format!("/Users/{leaver_id}"),
        json!([{"op": "replace", "path": "active", "value": false}]),
    )
    .await;
    let job = |id: String| {
        let up = up.clone();
        async move {
            let (status, job) = up.admin_get(&format!("/apps/crm/jobs/{id}")).await;
            assert_eq!(status, 200, "{job}");
            job
        }
    };
    let j = job(joiner["id"].as_str().unwrap().to_string()).await;
    let l = job(leaver_id.to_string()).await;
    assert_eq!(j["priority"], 0, "{j}");
    assert_eq!(l["priority"], 10, "{l}");
    assert_eq!(l["next_attempt_at"], "1970-01-01T00:00:00.000Z", "{l}");
    assert_eq!(
        j["next_attempt_at"], j["created_at"],
        "due when written: {j}"
    );
    for row in [&j, &l] {
        let at = row["created_at"].as_str().unwrap_or_default();
        assert!(
            chrono::DateTime::parse_from_rfc3339(at).is_ok(),
            "created_at is a time: {row}"
        );
    }
}

#[tokio::test]
async fn member_steps_that_cancel_out_write_nothing_so_a_repeated_patch_changes_nothing() {
    let app = spawn_app().await;
    let m1 = app.create_user("m1").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let m2 = app.create_user("m2").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let group = app.create_group("g", &[&m1]).await;
    let path = format!("/Groups/{}", group["id"].as_str().unwrap());
    // Found by the PATCH property test: add then replace-all with nothing.
    let ops = json!([
        {"op": "add", "path": "members", "value": [{"value": m1}]},
        {"op": "replace", "path": "members", "value": []},
    ]);
    let first = app.patch_ok(&path, ops.clone()).await;
    assert_eq!(first["members"], json!([]));
    let audit = app.audit_count(Some(group["id"].as_str().unwrap()));
    let second = app.patch_ok(&path, ops).await;
    assert_eq!(second, first, "the second PATCH bumped the version");
    assert_eq!(app.audit_count(Some(group["id"].as_str().unwrap())), audit);
    // Add and remove in one request: no change at all.
    let ops = json!([
        {"op": "add", "path": "members", "value": [{"value": m2}]},
        {"op": "remove", "path": format!("members[value eq \"{m2}\"]")},
    ]);
    assert_eq!(app.patch_ok(&path, ops).await, first);
    // Every added member is still checked, even one removed again later.
    let ops = json!([
        {"op": "add", "path": "members", "value": [{"value": "no-such-user"}]},
        {"op": "remove", "path": "members[value eq \"no-such-user\"]"},
    ]);
    let res = app.patch(&path, &patch_op(ops)).await;
    assert_scim_error(res, 400, Some("invalidValue")).await;
    assert_eq!(app.get_ok(&path).await, first);
}
