//! GET of a user by id, which on SQLite the read cache answers once it has
//! read the user: every write that changes what that GET shows (the user's
//! own attributes, a group it joins or leaves, a group's rename or
//! deletion, a bulk request, its deletion) is seen by the next GET, also
//! while other clients keep reading the same user. On PostgreSQL, which
//! has no cache, the same requests check the same answers.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::{Value, json};

use crate::helpers::*;

/// GETs of users the cache answered, and the ones it did not; `None` when
/// the gateway has no cache (PostgreSQL).
async fn cache_reads(app: &TestApp) -> Option<(u64, u64)> {
    let text = app
        .client
        .get(format!("{}/metrics", app.address))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let count = |result: &str| {
        let prefix = format!("scim_gateway_read_cache_reads_total{{result=\"{result}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .map(|v| v.parse::<u64>().unwrap())
    };
    Some((count("hit")?, count("miss")?))
}

/// The display names of a user's `groups`, sorted (none when absent).
fn group_names(user: &Value) -> Vec<String> {
    let mut names: Vec<String> = user["groups"]
        .as_array()
        .map(|gs| {
            gs.iter()
                .map(|g| g["display"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn sqlite(app: &TestApp) -> bool {
    !app.database_url.starts_with("postgres")
}

#[tokio::test]
async fn a_read_user_shows_every_write_that_changes_it() {
    let app = spawn_app_with(|s| s.metrics.public = true).await;
    let ada = app.create_user("ada").await;
    let id = ada["id"].as_str().unwrap().to_string();
    let path = format!("/Users/{id}");
    // Read twice: the second is the cache's on SQLite.
    assert!(group_names(&app.get_ok(&path).await).is_empty());
    assert!(group_names(&app.get_ok(&path).await).is_empty());
    if sqlite(&app) {
        let (hits, _) = cache_reads(&app).await.expect("SQLite has a read cache");
        assert!(hits >= 1, "the second GET was not served from the cache");
    }

    app.patch_ok(
        &path,
        json!([{"op": "replace", "path": "title", "value": "Engineer"}]),
    )
    .await;
    assert_eq!(app.get_ok(&path).await["title"], "Engineer");

    let mut replaced = app.get_ok(&path).await;
    replaced["displayName"] = json!("Ada Lovelace");
    let res = app.put(&path, &replaced).await;
    assert_eq!(res.status(), 200);
    assert_eq!(app.get_ok(&path).await["displayName"], "Ada Lovelace");

    // A group created with her in it.
    let group = app.create_group("staff", &[&id]).await;
    let gpath = format!("/Groups/{}", group["id"].as_str().unwrap());
    assert_eq!(group_names(&app.get_ok(&path).await), ["staff"]);

    // The group renamed: her groups[].display follows.
    app.patch_ok(
        &gpath,
        json!([{"op": "replace", "path": "displayName", "value": "everyone"}]),
    )
    .await;
    assert_eq!(group_names(&app.get_ok(&path).await), ["everyone"]);

    // Removed from it, added again.
    app.patch_ok(
        &gpath,
        json!([{"op": "remove", "path": format!("members[value eq \"{id}\"]")}]),
    )
    .await;
    assert!(group_names(&app.get_ok(&path).await).is_empty());
    app.patch_ok(
        &gpath,
        json!([{"op": "add", "path": "members", "value": [{"value": id}]}]),
    )
    .await;
    assert_eq!(group_names(&app.get_ok(&path).await), ["everyone"]);

    // The group replaced without her.
    let res = app
        .put(
            &gpath,
            &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                    "displayName": "everyone", "members": []}),
        )
        .await;
    assert_eq!(res.status(), 200);
    assert!(group_names(&app.get_ok(&path).await).is_empty());

    // A second group with her, then deleted.
    let other = app.create_group("ops", &[&id]).await;
    assert_eq!(group_names(&app.get_ok(&path).await), ["ops"]);
    let res = app
        .delete(&format!("/Groups/{}", other["id"].as_str().unwrap()))
        .await;
    assert_eq!(res.status(), 204);
    assert!(group_names(&app.get_ok(&path).await).is_empty());

    // A bulk request changing her.
    let res = app
        .post(
            "/Bulk",
            &json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
                    "Operations": [{"method": "PATCH", "path": path,
                        "data": {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                                 "Operations": [{"op": "replace", "path": "title", "value": "Fellow"}]}}]}),
        )
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(app.get_ok(&path).await["title"], "Fellow");

    // Deleted.
    assert_eq!(app.delete(&path).await.status(), 204);
    assert_scim_error(app.get(&path).await, 404, None).await;

    if sqlite(&app) {
        let (hits, misses) = cache_reads(&app).await.unwrap();
        // 2 GETs served from the cache, at least, and one read of the
        // database after each of the 10 writes.
        assert!(hits >= 2 && misses >= 11, "{hits} hits, {misses} misses");
    }
}

#[tokio::test]
async fn a_read_user_is_still_unknown_to_another_tenant() {
    let app = spawn_app().await;
    let ada = app.create_user("ada").await;
    let path = format!("/Users/{}", ada["id"].as_str().unwrap());
    app.get_ok(&path).await;
    app.get_ok(&path).await;
    let globex = app.with_token(GLOBEX_TOKEN);
    assert_scim_error(globex.get(&path).await, 404, None).await;
    // Nor is a user a group (a read the cache never answers).
    let as_group = path.replace("/Users/", "/Groups/");
    assert_scim_error(app.get(&as_group).await, 404, None).await;
    app.get_ok(&path).await;
}

/// A GET that missed races the writes: it may read a user just before a
/// write commits and try to keep that row after the write is done. Four
/// clients read one user without pause while two others change it 300
/// times each; the GET after each acknowledged change must show that
/// version or a later one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_acknowledged_write_is_seen_by_the_next_get_while_others_read() {
    let app = spawn_app_with(|s| s.server.workers = 2).await;
    let ada = app.create_user("ada").await;
    let path = format!("/Users/{}", ada["id"].as_str().unwrap());
    let version = |v: &Value| -> u64 {
        let tag = v["meta"]["version"].as_str().unwrap();
        tag.trim_start_matches("W/\"")
            .trim_end_matches('"')
            .parse()
            .unwrap()
    };
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let (app, path, stop) = (app.clone(), path.clone(), stop.clone());
            tokio::spawn(async move {
                let mut reads = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    assert_eq!(app.get(&path).await.status(), 200);
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let (app, path) = (app.clone(), path.clone());
            tokio::spawn(async move {
                for i in 0..300 {
                    let title = format!("writer {w} write {i}");
                    let written = app
                        .patch_ok(
                            &path,
                            json!([{"op": "replace", "path": "title", "value": title}]),
                        )
                        .await;
                    let seen = app.get_ok(&path).await;
                    assert!(
                        version(&seen) >= version(&written),
                        "writer {w} wrote version {} and then read {}",
                        version(&written),
                        version(&seen)
                    );
                    if version(&seen) == version(&written) {
                        assert_eq!(seen["title"], title);
                    }
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    let mut reads = 0;
    for r in readers {
        reads += r.await.unwrap();
    }
    assert!(reads > 600, "the readers ran alongside: {reads} reads");
    assert_eq!(version(&app.get_ok(&path).await), 601);
}
