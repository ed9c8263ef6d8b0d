//! The tamper-evident audit trail as an auditor meets it: `audit verify`
//! finds an edited, a deleted and a reordered row (changed behind the
//! gateway's back with SQL), `GET /admin/audit` and `audit export` stream
//! the trail with its hashes, an export verifies offline, pruning leaves a
//! checkpoint the rest verifies from, and concurrent writers through two
//! gateways on one database keep the chain whole.

use std::process::Output;

use serde_json::{Value, json};

use crate::helpers::*;

/// Runs `scim-gateway <args>` against the app's database.
async fn cli(app: &TestApp, args: &[&str]) -> Output {
    cli_on(&app.database_url, args).await
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

/// `audit verify`: (exit code, stdout).
async fn verify(app: &TestApp, extra: &[&str]) -> (i32, String) {
    let mut args = vec!["audit", "verify"];
    args.extend_from_slice(extra);
    let o = cli(app, &args).await;
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    (
        o.status.code().unwrap_or(-1),
        format!("{}{err}", stdout(&o)),
    )
}

async fn assert_intact(app: &TestApp) -> String {
    let (code, out) = verify(app, &[]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("OK: audit chain verified"), "{out}");
    out
}

async fn assert_broken_at(app: &TestApp, position: i64, why: &str) -> String {
    let (code, out) = verify(app, &[]).await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("chain position {position}")),
        "expected a break at position {position}: {out}"
    );
    assert!(out.contains(why), "expected '{why}': {out}");
    out
}

/// A gateway with five users: five audit rows at positions 1..=5.
async fn app_with_five_rows() -> TestApp {
    let app = spawn_app().await;
    for i in 0..5 {
        app.create_user(&format!("audit.user{i}@example.com")).await;
    }
    assert_eq!(app.audit_count(None), 5);
    app
}

async fn admin_export(app: &TestApp, query: &str) -> reqwest::Response {
    app.client
        .get(format!("{}/admin/audit{query}", app.address))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
}

fn lines(body: &str) -> Vec<Value> {
    body.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test]
async fn every_write_extends_a_chain_that_verifies() {
    let app = app_with_five_rows().await;
    let id = app.create_user("mover@example.com").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    app.patch_ok(
        &format!("/Users/{id}"),
        json!([{"op": "replace", "path": "displayName", "value": "Mover"}]),
    )
    .await;
    assert_eq!(app.delete(&format!("/Users/{id}")).await.status(), 204);
    let out = assert_intact(&app).await;
    assert!(
        out.contains("8 rows (positions 1..=8), from the genesis"),
        "{out}"
    );
    assert!(out.contains("up to the head (position 8"), "{out}");

    let (code, out) = verify(&app, &["--from", "3", "--to", "5"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("3 rows (positions 3..=5)"), "{out}");
    assert!(out.contains("taken on trust"), "{out}");
}

#[tokio::test]
async fn an_edited_row_is_detected() {
    let app = app_with_five_rows().await;
    app.execute_sql("UPDATE audit_events SET outcome = 'failure' WHERE chain_pos = 3");
    assert_broken_at(&app, 3, "the row was altered").await;
}

#[tokio::test]
async fn a_deleted_row_is_detected() {
    let app = app_with_five_rows().await;
    app.execute_sql("DELETE FROM audit_events WHERE chain_pos = 2");
    assert_broken_at(&app, 3, "rows were deleted").await;
}

#[tokio::test]
async fn a_deleted_last_row_is_detected() {
    let app = app_with_five_rows().await;
    app.execute_sql("DELETE FROM audit_events WHERE chain_pos = 5");
    assert_broken_at(&app, 5, "rows were deleted").await;
}

#[tokio::test]
async fn swapped_rows_are_detected() {
    let app = app_with_five_rows().await;
    app.execute_sql(
        "UPDATE audit_events SET chain_pos = -1 WHERE chain_pos = 2;
         UPDATE audit_events SET chain_pos = 2 WHERE chain_pos = 4;
         UPDATE audit_events SET chain_pos = 4 WHERE chain_pos = -1;",
    );
    assert_broken_at(&app, 2, "does not link to the row before it").await;
}

#[tokio::test]
async fn a_row_taken_out_of_the_chain_is_detected() {
    let app = app_with_five_rows().await;
    app.execute_sql("UPDATE audit_events SET chain_pos = NULL WHERE chain_pos = 3");
    assert_broken_at(&app, 4, "positions 3..=3 are missing").await;
}

#[tokio::test]
async fn rows_written_without_a_chain_position_are_chained() {
    // Rows from before the chain existed (SQLite: chained by the next
    // write; PostgreSQL: by the migration, here by the commit trigger).
    let app = spawn_app().await;
    assert_eq!(app.audit_count(None), 0);
    app.execute_sql(
        "INSERT INTO audit_events (at, actor, action, outcome) \
         VALUES ('2026-01-01T00:00:00.000Z', 'acme/entra', 'scim.create', 'success');
         INSERT INTO audit_events (at, actor, action, outcome) \
         VALUES ('2026-01-01T00:00:01.000Z', 'acme/entra', 'scim.create', 'success');",
    );
    app.create_user("after.upgrade@example.com").await;
    let out = assert_intact(&app).await;
    assert!(out.contains("3 rows (positions 1..=3)"), "{out}");
}

#[tokio::test]
async fn the_admin_export_streams_the_chain_and_verifies_offline() {
    let app = app_with_five_rows().await;
    let unauthorised = app
        .client
        .get(format!("{}/admin/audit", app.address))
        .bearer_auth(ACME_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorised.status(), 401);

    let res = admin_export(&app, "").await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers()["content-type"].to_str().unwrap(),
        "application/x-ndjson"
    );
    let body = res.text().await.unwrap();
    let rows = lines(&body);
    assert_eq!(rows.len(), 5);
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r["chain_pos"], json!(i as i64 + 1));
        assert_eq!(r["action"], "scim.create");
        assert_eq!(r["hash"].as_str().unwrap().len(), 64);
    }
    assert_eq!(rows[0]["prev_hash"], "0".repeat(64));
    assert_eq!(rows[1]["prev_hash"], rows[0]["hash"]);

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("export.ndjson");
    std::fs::write(&file, &body).unwrap();
    let f = file.to_str().unwrap();
    let (code, out) = verify(&app, &["--file", f]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("5 rows, positions 1..=5"), "{out}");
    assert!(out.contains("starts at the genesis"), "{out}");
    assert!(out.contains(rows[4]["hash"].as_str().unwrap()), "{out}");

    // The file is evidence on its own: edit it and it no longer verifies.
    let edited: Vec<String> = body
        .lines()
        .enumerate()
        .map(|(i, l)| {
            if i == 1 {
                l.replace("success", "failure")
            } else {
                l.to_string()
            }
        })
        .collect();
    let edited = edited.join("\n");
    std::fs::write(&file, edited).unwrap();
    let (code, out) = verify(&app, &["--file", f]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("line 2"), "{out}");

    // Drop a line: the gap shows.
    let mut without: Vec<&str> = body.lines().collect();
    without.remove(2);
    std::fs::write(&file, without.join("\n")).unwrap();
    let (code, out) = verify(&app, &["--file", f]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("positions 3..=3 are missing"), "{out}");
}

#[tokio::test]
async fn filters_select_rows_and_a_filtered_export_verifies_partially() {
    let app = app_with_five_rows().await;
    app.with_token(GLOBEX_TOKEN)
        .create_user("other.tenant@example.com")
        .await;
    let mover = app.create_user("filtered@example.com").await;
    let id = mover["id"].as_str().unwrap();

    let body = admin_export(&app, "?tenant=acme")
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(lines(&body).len(), 6);
    let body = admin_export(&app, &format!("?identity={id}"))
        .await
        .text()
        .await
        .unwrap();
    let rows = lines(&body);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["chain_pos"], 7);
    let none = admin_export(&app, "?from=2999-01-01")
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(none, "");
    let all = admin_export(
        &app,
        "?from=2000-01-01T00:00:00Z&to=2999-01-01&action=scim.create&outcome=success",
    )
    .await
    .text()
    .await
    .unwrap();
    assert_eq!(lines(&all).len(), 7);

    let bad = admin_export(&app, "?from=yesterday").await;
    assert_eq!(bad.status(), 400);
    let bad = admin_export(&app, "?colour=blue").await;
    assert_eq!(bad.status(), 400);

    // Everything but the other tenant: one gap.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("acme.ndjson");
    let acme = admin_export(&app, "?tenant=acme")
        .await
        .text()
        .await
        .unwrap();
    std::fs::write(&file, acme).unwrap();
    let f = file.to_str().unwrap();
    let (code, out) = verify(&app, &["--file", f]).await;
    assert_eq!(code, 1, "a filtered export has gaps: {out}");
    let (code, out) = verify(&app, &["--file", f, "--partial"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("1 gaps"), "{out}");
    assert!(out.contains("5 links"), "{out}");
}

#[tokio::test]
async fn csv_export_has_a_header_and_one_line_per_row() {
    let app = app_with_five_rows().await;
    let res = admin_export(&app, "?format=csv").await;
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let body = res.text().await.unwrap();
    let mut it = body.lines();
    assert_eq!(
        it.next().unwrap(),
        "chain_pos,seq,at,tenant,actor,action,resource_type,resource_id,outcome,detail,app,prev_hash,hash"
    );
    assert_eq!(it.count(), 5);
}

#[tokio::test]
async fn the_cli_export_matches_the_admin_export() {
    let app = app_with_five_rows().await;
    let http = admin_export(&app, "").await.text().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cli.ndjson");
    let o = cli(&app, &["audit", "export", "--out", file.to_str().unwrap()]).await;
    assert!(o.status.success(), "{o:?}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), http);
    let o = cli(
        &app,
        &["audit", "export", "--format", "csv", "--tenant", "acme"],
    )
    .await;
    assert!(o.status.success(), "{o:?}");
    assert_eq!(stdout(&o).lines().count(), 6);
}

#[tokio::test]
async fn pruning_keeps_a_checkpoint_the_rest_verifies_from() {
    let app = app_with_five_rows().await;
    let rows = lines(&admin_export(&app, "").await.text().await.unwrap());
    let hash3 = rows[2]["hash"].as_str().unwrap().to_string();

    // The hash must be the one of the export held.
    let o = cli(
        &app,
        &[
            "audit",
            "prune",
            "--before",
            "2999-01-01",
            "--exported-through",
            "3",
            "--exported-hash",
            &"f".repeat(64),
        ],
    )
    .await;
    assert!(!o.status.success(), "{o:?}");
    assert_eq!(app.audit_count(None), 5);

    // Nothing newer than the cut-off goes, whatever was exported.
    let o = cli(
        &app,
        &[
            "audit",
            "prune",
            "--before",
            "2000-01-01",
            "--exported-through",
            "5",
        ],
    )
    .await;
    assert!(o.status.success(), "{o:?}");
    assert!(
        stdout(&o).starts_with("pruned 0 audit rows"),
        "{}",
        stdout(&o)
    );

    let o = cli(
        &app,
        &[
            "audit",
            "prune",
            "--before",
            "2999-01-01",
            "--exported-through",
            "3",
            "--exported-hash",
            &hash3,
        ],
    )
    .await;
    assert!(o.status.success(), "{o:?}");
    assert!(
        stdout(&o).starts_with("pruned 3 audit rows"),
        "{}",
        stdout(&o)
    );
    // Two rows left plus the audit row of the prune itself.
    assert_eq!(app.audit_count(None), 3);
    let out = assert_intact(&app).await;
    assert!(out.contains("pruning checkpoint at position 3"), "{out}");
    assert!(out.contains(&hash3), "{out}");

    app.create_user("after.prune@example.com").await;
    let out = assert_intact(&app).await;
    assert!(out.contains("4 rows (positions 4..=7)"), "{out}");

    // Deleting the first row after the checkpoint is still caught.
    app.execute_sql("DELETE FROM audit_events WHERE chain_pos = 4");
    assert_broken_at(&app, 5, "rows were deleted").await;
}

#[tokio::test]
async fn pruning_refuses_a_broken_chain() {
    let app = app_with_five_rows().await;
    app.execute_sql("UPDATE audit_events SET actor = 'someone else' WHERE chain_pos = 2");
    let o = cli(
        &app,
        &[
            "audit",
            "prune",
            "--before",
            "2999-01-01",
            "--exported-through",
            "4",
        ],
    )
    .await;
    assert!(!o.status.success(), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("broken"),
        "{o:?}"
    );
    assert_eq!(app.audit_count(None), 5);
}

#[tokio::test]
async fn concurrent_writers_on_two_gateways_keep_the_chain_whole() {
    let first = spawn_app().await;
    let url = first.database_url.clone();
    let second = spawn_app_with(|s| s.database.url = url).await;
    let writes = (0..60).map(|i| {
        let gw = if i % 2 == 0 { &first } else { &second };
        let body = json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": format!("concurrent{i}@example.com"),
        });
        async move { gw.post("/Users", &body).await.status().as_u16() }
    });
    let statuses = futures_util::future::join_all(writes).await;
    assert!(statuses.iter().all(|s| *s == 201), "{statuses:?}");
    let out = assert_intact(&first).await;
    assert!(out.contains("60 rows (positions 1..=60)"), "{out}");
    assert_eq!(first.audit_count(None), 60);
}
