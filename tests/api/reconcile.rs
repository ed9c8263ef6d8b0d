//! Reconciliation against real downstreams: a downstream SCIM gateway, an
//! app table in SQLite and PostgreSQL, and an OpenLDAP directory. Each test
//! provisions three users through the engine, then plants an orphan (made
//! by hand), a drifted attribute and a missing account straight in the
//! downstream; the dry run must report exactly those and change nothing,
//! and remediation must repair them, each action audited.

use std::collections::BTreeMap;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::{Nullable, Text};
use scim_gateway::config::{
    AdapterSettings, AppSettings, LeaveAction, Settings, SqlAdapterSettings, SqlDisable,
};
use serde_json::{Value, json};

use crate::adapters::Directory;
use crate::delivery::{downstream, scim_app};
use crate::helpers::*;

/// The three provisioned users: (userName, gateway id).
struct Provisioned {
    keep: String,
    drift: String,
    gone: String,
}

/// Creates alice (left alone), bob (to drift) and carol (to go missing).
async fn provision(up: &TestApp) -> Provisioned {
    let mut ids = Vec::new();
    for (user, given) in [("alice", "Alice"), ("bob", "Bob"), ("carol", "Carol")] {
        let u = up
            .create_user_from(json!({
                "userName": user, "title": "Engineer", "active": true,
                "name": {"givenName": given, "familyName": "Example"}
            }))
            .await;
        ids.push(u["id"].as_str().unwrap().to_string());
    }
    Provisioned {
        keep: ids[0].clone(),
        drift: ids[1].clone(),
        gone: ids[2].clone(),
    }
}

/// `POST /admin/apps/{app}/reconcile?{query}`: status and body text.
async fn reconcile_raw(up: &TestApp, app: &str, query: &str) -> (u16, String) {
    let res = up
        .client
        .post(format!("{}/admin/apps/{app}/reconcile?{query}", up.address))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

async fn reconcile(up: &TestApp, app: &str, remediate: bool) -> Value {
    let (status, body) = reconcile_raw(up, app, &format!("remediate={remediate}")).await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// The report holds exactly the planted orphan, drift and missing account.
fn assert_planted(report: &Value, p: &Provisioned, orphan_name: &str) {
    assert_eq!(report["counts"]["orphans"], 1, "{report:#}");
    assert_eq!(report["counts"]["missing"], 1, "{report:#}");
    assert_eq!(report["counts"]["drifted"], 1, "{report:#}");
    assert_eq!(report["orphans"][0]["name"], orphan_name, "{report:#}");
    assert_eq!(report["orphans"][0]["active"], true);
    assert_eq!(report["missing"][0]["identity"], p.gone.as_str());
    assert_eq!(report["missing"][0]["stale_record"], true);
    let drifted = &report["drifted"][0];
    assert_eq!(drifted["identity"], p.drift.as_str());
    assert_eq!(
        drifted["attributes"],
        json!([{"attribute": "title", "desired": "Engineer", "actual": "Hacker"}]),
        "only the changed attribute: {report:#}"
    );
}

/// Checks the CSV form of a dry run: a header and one line per finding.
async fn assert_csv(up: &TestApp, app: &str, p: &Provisioned) {
    let (status, csv) = reconcile_raw(up, app, "format=csv").await;
    assert_eq!(status, 200, "{csv}");
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "kind,identity,remote_id,attribute,desired,actual,reason,action"
    );
    assert_eq!(lines.len(), 4, "{csv}");
    assert!(lines.iter().any(|l| l.starts_with("orphan,")), "{csv}");
    let missing = format!("missing,{},,,,,", p.gone);
    assert!(lines.iter().any(|l| l.starts_with(&missing)), "{csv}");
    assert!(
        lines.iter().any(|l| l.starts_with("drifted,")
            && l.contains(&p.drift)
            && l.contains(",title,Engineer,Hacker,")),
        "{csv}"
    );
}

/// The audit trail of a dry run and a remediation: the runs with their
/// counts, the orphan's `op`, and a re-convergence of each identity.
fn assert_audit(up: &TestApp, p: &Provisioned, orphan_op: &str, orphan_remote_id: &str) {
    let rows: Vec<AuditRow> = up
        .audit_rows()
        .into_iter()
        .filter(|r| r.action.starts_with("reconcile."))
        .collect();
    let runs: Vec<&AuditRow> = rows
        .iter()
        .filter(|r| r.action == "reconcile.run")
        .collect();
    // The clean run, the dry run, its CSV form and the remediation.
    assert_eq!(runs.len(), 4, "{rows:?}");
    for (run, remediate) in runs[1..].iter().zip([false, false, true]) {
        assert_eq!(run.outcome, "success");
        let d: Value = serde_json::from_str(run.detail.as_deref().unwrap()).unwrap();
        assert_eq!(d["counts"]["orphans"], 1, "{d}");
        assert_eq!(d["counts"]["missing"], 1, "{d}");
        assert_eq!(d["counts"]["drifted"], 1, "{d}");
        assert_eq!(d["remediate"], remediate, "{d}");
    }
    let orphan: Vec<&AuditRow> = rows
        .iter()
        .filter(|r| r.action == format!("reconcile.{orphan_op}"))
        .collect();
    assert_eq!(orphan.len(), 1, "{rows:?}");
    assert_eq!(orphan[0].outcome, "success");
    let d: Value = serde_json::from_str(orphan[0].detail.as_deref().unwrap()).unwrap();
    assert_eq!(d["remote_id"], orphan_remote_id);
    for (id, finding) in [(&p.drift, "drift"), (&p.gone, "missing")] {
        let r: Vec<&AuditRow> = rows
            .iter()
            .filter(|r| {
                r.action == "reconcile.reconverge" && r.resource_id.as_deref() == Some(id.as_str())
            })
            .collect();
        assert_eq!(r.len(), 1, "{rows:?}");
        assert!(r[0].detail.as_deref().unwrap().contains(finding));
    }
    assert!(
        !rows
            .iter()
            .any(|r| r.resource_id.as_deref() == Some(p.keep.as_str())),
        "nothing done to the untouched account: {rows:?}"
    );
}

/// After remediation only a disabled orphan (disable policy) may remain.
async fn assert_clean(up: &TestApp, app: &str, orphans: usize) {
    let after = reconcile(up, app, false).await;
    assert_eq!(after["counts"]["missing"], 0, "{after:#}");
    assert_eq!(after["counts"]["drifted"], 0, "{after:#}");
    assert_eq!(after["counts"]["orphans"], orphans, "{after:#}");
    if orphans > 0 {
        assert_eq!(after["orphans"][0]["active"], false, "{after:#}");
    }
}

// ---------------------------------------------------------------------------
// A downstream SCIM gateway.

#[tokio::test]
async fn reconciliation_finds_and_repairs_a_scim_app() {
    let down = downstream().await;
    let base = down.base();
    let token = down.token_file.clone();
    let up = spawn_app_with(|s: &mut Settings| s.apps.push(scim_app("crm", &base, &token))).await;
    let p = provision(&up).await;
    for name in ["alice", "bob", "carol"] {
        down.await_user(name, "provisioned", |_| true).await;
    }
    eventually(20, "the accounts recorded", || async {
        match up
            .admin_get(&format!("/apps/crm/accounts/{}", p.gone))
            .await
        {
            (200, _) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let clean = reconcile(&up, "crm", false).await;
    assert_eq!(clean["counts"]["listed"], 3, "{clean:#}");
    assert_eq!(clean["orphans"], json!([]), "{clean:#}");
    assert_eq!(clean["missing"], json!([]));
    assert_eq!(clean["drifted"], json!([]));

    // Plant: a hand-made account, a changed title, a deleted account.
    let mallory = down.app.create_user("mallory").await;
    let mallory_id = mallory["id"].as_str().unwrap().to_string();
    let bob = &down.users_named("bob").await[0];
    down.app
        .patch_ok(
            &format!("/Users/{}", bob["id"].as_str().unwrap()),
            json!([{"op": "replace", "path": "title", "value": "Hacker"}]),
        )
        .await;
    let carol = &down.users_named("carol").await[0];
    let carol_path = format!("/Users/{}", carol["id"].as_str().unwrap());
    assert_eq!(down.app.delete(&carol_path).await.status(), 204);

    let report = reconcile(&up, "crm", false).await;
    assert_planted(&report, &p, "mallory");
    assert_eq!(report["orphans"][0]["remote_id"], mallory_id.as_str());
    assert_csv(&up, "crm", &p).await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    // The dry run changed nothing downstream.
    assert_eq!(down.users_named("mallory").await[0]["active"], true);
    assert_eq!(down.users_named("bob").await[0]["title"], "Hacker");
    assert!(down.users_named("carol").await.is_empty());

    let fixed = reconcile(&up, "crm", true).await;
    assert_planted(&fixed, &p, "mallory");
    assert_eq!(fixed["counts"]["remediated"], 3, "{fixed:#}");
    assert_eq!(fixed["orphans"][0]["action"], "disabled");
    down.await_user("mallory", "the orphan disabled", |u| u["active"] == false)
        .await;
    down.await_user("bob", "the drift reverted", |u| u["title"] == "Engineer")
        .await;
    down.await_user("carol", "the missing account re-created", |u| {
        u["externalId"] == p.gone.as_str()
    })
    .await;
    assert_audit(&up, &p, "disable", &mallory_id);
    assert_clean(&up, "crm", 1).await;
}

// ---------------------------------------------------------------------------
// An app table in SQLite or PostgreSQL.

enum AppDb {
    Sqlite {
        path: std::path::PathBuf,
        _dir: tempfile::TempDir,
    },
    Pg {
        server: String,
        name: String,
    },
}

#[derive(Debug, Clone, QueryableByName)]
struct Row {
    #[diesel(sql_type = Text)]
    id: String,
    #[diesel(sql_type = Text)]
    login: String,
    #[diesel(sql_type = Nullable<Text>)]
    external_id: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    title: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    status: Option<String>,
}

impl AppDb {
    fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        Self::Sqlite {
            path: dir.path().join("app.db"),
            _dir: dir,
        }
    }

    fn postgres() -> Option<Self> {
        let Some(server) = std::env::var(PG_ENV).ok().filter(|u| !u.is_empty()) else {
            eprintln!("SKIPPED: set {PG_ENV} to reconcile a sql app on PostgreSQL");
            return None;
        };
        let server = server.trim_end_matches('/').to_string();
        let name = format!("scimgw_rec_{}", uuid::Uuid::new_v4().simple());
        diesel::PgConnection::establish(&format!("{server}/postgres"))
            .unwrap()
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap();
        Some(Self::Pg { server, name })
    }

    fn url(&self) -> String {
        match self {
            Self::Sqlite { path, .. } => format!("sqlite://{}", path.display()),
            Self::Pg { server, name } => format!("{server}/{name}"),
        }
    }

    fn execute(&self, sql: &str) {
        match self {
            Self::Sqlite { path, .. } => {
                diesel::SqliteConnection::establish(&path.display().to_string())
                    .unwrap()
                    .batch_execute(&format!("PRAGMA busy_timeout = 10000; {sql}"))
                    .unwrap()
            }
            Self::Pg { .. } => diesel::PgConnection::establish(&self.url())
                .unwrap()
                .batch_execute(sql)
                .unwrap(),
        }
    }

    /// Every row, by login.
    fn rows(&self) -> BTreeMap<String, Row> {
        let sql = "SELECT CAST(id AS TEXT) AS id, login, external_id, title, status FROM app_users";
        let rows: Vec<Row> = match self {
            Self::Sqlite { path, .. } => {
                let mut c =
                    diesel::SqliteConnection::establish(&path.display().to_string()).unwrap();
                c.batch_execute("PRAGMA busy_timeout = 10000;").unwrap();
                diesel::sql_query(sql).load(&mut c).unwrap()
            }
            Self::Pg { .. } => {
                let mut c = diesel::PgConnection::establish(&self.url()).unwrap();
                diesel::sql_query(sql).load(&mut c).unwrap()
            }
        };
        rows.into_iter().map(|r| (r.login.clone(), r)).collect()
    }

    async fn await_rows(&self, what: &str, check: impl Fn(&BTreeMap<String, Row>) -> bool) {
        eventually(20, what, || async {
            let rows = self.rows();
            if check(&rows) {
                Ok(())
            } else {
                Err(format!("{rows:?}"))
            }
        })
        .await;
    }
}

impl Drop for AppDb {
    fn drop(&mut self) {
        if let Self::Pg { server, name } = self
            && let Ok(mut c) = diesel::PgConnection::establish(&format!("{server}/postgres"))
        {
            let _ = c.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
        }
    }
}

async fn sql_reconciliation(db: AppDb) {
    let id = if matches!(db, AppDb::Pg { .. }) {
        "id BIGSERIAL PRIMARY KEY"
    } else {
        "id INTEGER PRIMARY KEY AUTOINCREMENT"
    };
    db.execute(&format!(
        "CREATE TABLE app_users ({id}, external_id TEXT UNIQUE, login TEXT NOT NULL UNIQUE, \
         given_name TEXT, title TEXT, is_active BOOLEAN NOT NULL DEFAULT TRUE, status TEXT)"
    ));
    let settings = SqlAdapterSettings {
        url: Some(db.url()),
        url_env: None,
        table: "app_users".into(),
        key_column: "external_id".into(),
        id_column: Some("id".into()),
        columns: BTreeMap::from([
            ("userName".into(), "login".into()),
            ("name.givenName".into(), "given_name".into()),
            ("title".into(), "title".into()),
            ("active".into(), "is_active".into()),
        ]),
        disable: Some(SqlDisable::Update {
            column: "status".into(),
            value: json!("disabled"),
            enabled_value: Some(json!("enabled")),
        }),
        pool_size: Some(2),
    };
    let up = spawn_app_with(|s: &mut Settings| {
        s.apps.push(AppSettings {
            name: "legacy".into(),
            tenant: "acme".into(),
            adapter: AdapterSettings::Sql(Box::new(settings.clone())),
            on_leave: LeaveAction::Delete,
            timeout_secs: Some(5),
            ..AppSettings::default()
        })
    })
    .await;
    let p = provision(&up).await;
    db.await_rows("three rows", |r| r.len() == 3).await;
    eventually(20, "the accounts recorded", || async {
        match up
            .admin_get(&format!("/apps/legacy/accounts/{}", p.gone))
            .await
        {
            (200, _) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let clean = reconcile(&up, "legacy", false).await;
    assert_eq!(clean["counts"]["listed"], 3, "{clean:#}");
    assert_eq!(clean["counts"]["orphans"], 0, "{clean:#}");
    assert_eq!(clean["counts"]["drifted"], 0, "{clean:#}");
    assert_eq!(clean["counts"]["missing"], 0, "{clean:#}");

    db.execute(
        "INSERT INTO app_users (external_id, login, title, status) \
         VALUES ('hand-made-1', 'mallory', 'Admin', 'enabled'); \
         UPDATE app_users SET title = 'Hacker' WHERE login = 'bob'; \
         DELETE FROM app_users WHERE login = 'carol';",
    );
    let before = db.rows();
    let mallory_id = before["mallory"].id.clone();

    let report = reconcile(&up, "legacy", false).await;
    assert_planted(&report, &p, "mallory");
    assert_eq!(report["orphans"][0]["key"], "hand-made-1");
    assert_eq!(report["orphans"][0]["reason"], "no identity has this key");
    assert_csv(&up, "legacy", &p).await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let unchanged = db.rows();
    assert_eq!(
        format!("{unchanged:?}"),
        format!("{before:?}"),
        "a dry run changes nothing"
    );

    let fixed = reconcile(&up, "legacy", true).await;
    assert_planted(&fixed, &p, "mallory");
    assert_eq!(fixed["orphans"][0]["action"], "deleted");
    db.await_rows("orphan deleted, drift reverted, carol back", |r| {
        !r.contains_key("mallory")
            && r.get("bob").and_then(|b| b.title.as_deref()) == Some("Engineer")
            && r.get("carol").and_then(|c| c.external_id.as_deref()) == Some(p.gone.as_str())
    })
    .await;
    let rows = db.rows();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows["carol"].status.as_deref(), Some("enabled"));
    assert_eq!(
        rows["alice"].id, before["alice"].id,
        "alice's row untouched"
    );
    assert_eq!(
        rows["bob"].id, before["bob"].id,
        "bob's row corrected in place"
    );
    assert_audit(&up, &p, "delete", &mallory_id);
    assert_clean(&up, "legacy", 0).await;

    // The same from the command line: `scim-gateway reconcile legacy`.
    db.execute(
        "INSERT INTO app_users (external_id, login, title, status) \
         VALUES ('hand-made-2', 'trudy', 'Admin', 'enabled')",
    );
    let config = format!(
        r#"
        [database]
        url = "{}"
        [[apps]]
        name = "legacy"
        tenant = "acme"
        on_leave = "delete"
        [apps.adapter]
        kind = "sql"
        url = "{}"
        table = "app_users"
        key_column = "external_id"
        id_column = "id"
        [apps.adapter.columns]
        userName = "login"
        "name.givenName" = "given_name"
        title = "title"
        active = "is_active"
        "#,
        up.database_url,
        db.url()
    );
    let (code, out, err) = run_cli(&config, &["reconcile", "legacy"]);
    assert_eq!(code, 0, "{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["counts"]["orphans"], 1, "{report:#}");
    assert_eq!(report["counts"]["missing"], 0, "{report:#}");
    assert_eq!(report["counts"]["drifted"], 0, "{report:#}");
    assert_eq!(report["orphans"][0]["key"], "hand-made-2");
    assert!(
        err.contains("legacy: 4 accounts listed, 1 orphans, 0 missing, 0 drifted (dry run"),
        "{err}"
    );
    assert!(db.rows().contains_key("trudy"), "a dry run changes nothing");
    let (code, out, err) = run_cli(&config, &["reconcile", "legacy", "--format", "csv"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(out.lines().nth(1).unwrap().starts_with("orphan,"), "{out}");
    let (code, out, err) = run_cli(&config, &["reconcile", "legacy", "--remediate"]);
    assert_eq!(code, 0, "{err}");
    let fixed: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(fixed["orphans"][0]["action"], "deleted", "{fixed:#}");
    assert!(!db.rows().contains_key("trudy"));
    let cli_rows: Vec<AuditRow> = up
        .audit_rows()
        .into_iter()
        .filter(|r| r.action == "reconcile.delete" && r.actor.starts_with("cli/"))
        .collect();
    assert_eq!(
        cli_rows.len(),
        1,
        "the CLI's remediation is audited with its actor"
    );
    let (code, _, err) = run_cli(&config, &["reconcile", "nope"]);
    assert_ne!(code, 0);
    assert!(
        err.contains("no app is named 'nope' (configured: legacy)"),
        "{err}"
    );
}

#[tokio::test]
async fn reconciliation_finds_and_repairs_a_sql_app_on_sqlite() {
    sql_reconciliation(AppDb::sqlite()).await;
}

#[tokio::test]
async fn reconciliation_finds_and_repairs_a_sql_app_on_postgres() {
    if let Some(db) = AppDb::postgres() {
        sql_reconciliation(db).await;
    }
}

// ---------------------------------------------------------------------------
// An OpenLDAP directory.

#[tokio::test]
async fn reconciliation_finds_and_repairs_an_ldap_app() {
    let Some(dir) = Directory::new().await else {
        return;
    };
    let settings = dir.settings();
    let up = spawn_app_with(|s: &mut Settings| {
        s.apps.push(AppSettings {
            name: "directory".into(),
            tenant: "acme".into(),
            adapter: AdapterSettings::Ldap(Box::new(settings.clone())),
            timeout_secs: Some(5),
            ..AppSettings::default()
        })
    })
    .await;
    let p = provision(&up).await;
    let person = |uid: &str| dir.dn(&format!("uid={uid},ou=people")).to_lowercase();
    let mut ldap = dir.connect().await;
    eventually(20, "three entries and their records", || async {
        let n = dir.people().await.len();
        let recorded = up
            .admin_get(&format!("/apps/directory/accounts/{}", p.gone))
            .await
            .0;
        if n == 3 && recorded == 200 {
            Ok(())
        } else {
            Err(format!("{n} entries, {recorded}"))
        }
    })
    .await;
    let clean = reconcile(&up, "directory", false).await;
    assert_eq!(clean["counts"]["listed"], 3, "{clean:#}");
    assert_eq!(clean["counts"]["orphans"], 0, "{clean:#}");
    assert_eq!(clean["counts"]["drifted"], 0, "{clean:#}");

    // Plant: an entry made by hand, a changed title, a deleted entry.
    ldap.add(
        &person("mallory"),
        vec![
            (
                "objectClass",
                ["top", "person", "organizationalPerson", "inetOrgPerson"].into(),
            ),
            ("uid", ["mallory"].into()),
            ("cn", ["mallory"].into()),
            ("sn", ["Hand"].into()),
            ("employeeNumber", ["hand-made-1"].into()),
        ],
    )
    .await
    .unwrap()
    .success()
    .unwrap();
    ldap.modify(
        &person("bob"),
        vec![ldap3::Mod::Replace("title", ["Hacker"].into())],
    )
    .await
    .unwrap()
    .success()
    .unwrap();
    ldap.delete(&person("carol"))
        .await
        .unwrap()
        .success()
        .unwrap();
    let before = dir.people().await;

    let report = reconcile(&up, "directory", false).await;
    assert_planted(&report, &p, "mallory");
    assert_eq!(report["orphans"][0]["remote_id"], "hand-made-1");
    assert_csv(&up, "directory", &p).await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(dir.people().await, before, "a dry run changes nothing");

    let fixed = reconcile(&up, "directory", true).await;
    assert_planted(&fixed, &p, "mallory");
    assert_eq!(fixed["orphans"][0]["action"], "disabled");
    let disabled = dir.dn("uid=mallory,ou=disabled").to_lowercase();
    eventually(20, "orphan moved, drift reverted, carol back", || async {
        let now = dir.people().await;
        let ok = now.contains_key(&disabled)
            && !now.contains_key(&person("mallory"))
            && now.get(&person("bob")).and_then(|b| b.get("title"))
                == Some(&vec!["Engineer".to_string()])
            && now
                .get(&person("carol"))
                .and_then(|c| c.get("employeeNumber"))
                == Some(&vec![p.gone.clone()]);
        if ok { Ok(()) } else { Err(format!("{now:?}")) }
    })
    .await;
    assert_audit(&up, &p, "disable", "hand-made-1");
    assert_clean(&up, "directory", 1).await;
}

/// Entitlements in a directory are `groupOfNames` memberships: a membership
/// added by hand is surplus, one removed by hand is missing, and
/// remediation restores exactly what the rules grant.
#[tokio::test]
async fn ldap_reconciliation_finds_surplus_and_missing_entitlements() {
    let Some(dir) = Directory::new().await else {
        return;
    };
    let settings = dir.settings();
    let up = spawn_app_with(|s: &mut Settings| {
        s.apps.push(AppSettings {
            name: "directory".into(),
            tenant: "acme".into(),
            adapter: AdapterSettings::Ldap(Box::new(settings.clone())),
            timeout_secs: Some(5),
            ..AppSettings::default()
        })
    })
    .await;
    let user = up
        .create_user_from(json!({
            "userName": "ada", "title": "Engineer",
            "name": {"givenName": "Ada", "familyName": "Lovelace"},
            "entitlements": [{"value": "Sales User"}]
        }))
        .await;
    let id = user["id"].as_str().unwrap().to_string();
    let ada = dir.dn("uid=ada,ou=people").to_lowercase();
    dir.await_members("Sales User", std::slice::from_ref(&ada))
        .await;
    eventually(20, "the account recorded", || async {
        match up
            .admin_get(&format!("/apps/directory/accounts/{id}"))
            .await
        {
            (200, _) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let clean = reconcile(&up, "directory", false).await;
    assert_eq!(clean["counts"]["drifted"], 0, "{clean:#}");

    // By hand: Admin granted, Sales User taken away.
    let mut ldap = dir.connect().await;
    for (role, m) in [
        ("Admin", ldap3::Mod::Add("member", [ada.as_str()].into())),
        (
            "Sales User",
            ldap3::Mod::Delete("member", [ada.as_str()].into()),
        ),
    ] {
        ldap.modify(&dir.dn(&format!("cn={role},ou=roles")), vec![m])
            .await
            .unwrap()
            .success()
            .unwrap();
    }
    let report = reconcile(&up, "directory", false).await;
    assert_eq!(report["counts"]["drifted"], 1, "{report:#}");
    assert_eq!(report["counts"]["orphans"], 0, "{report:#}");
    let drift = &report["drifted"][0];
    assert_eq!(drift["identity"], id.as_str());
    assert_eq!(
        drift["attributes"].as_array().unwrap().len(),
        1,
        "{drift:#}"
    );
    let ents = &drift["attributes"][0];
    assert_eq!(ents["attribute"], "entitlements");
    assert_eq!(ents["missing"], json!(["Sales User"]), "{ents:#}");
    assert_eq!(ents["surplus"], json!(["Admin"]), "{ents:#}");
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(
        dir.members("Admin").await,
        vec![ada.clone()],
        "a dry run changes nothing"
    );

    let fixed = reconcile(&up, "directory", true).await;
    assert_eq!(fixed["counts"]["drifted"], 1, "{fixed:#}");
    dir.await_members("Admin", &[]).await;
    dir.await_members("Sales User", std::slice::from_ref(&ada))
        .await;
    assert_clean(&up, "directory", 0).await;
}

// ---------------------------------------------------------------------------
// The schedule.

#[tokio::test]
async fn scheduled_reconciliation_runs_and_is_audited() {
    let down = downstream().await;
    let base = down.base();
    let token = down.token_file.clone();
    let up = spawn_app_with(|s: &mut Settings| {
        let mut app = scim_app("crm", &base, &token);
        app.reconcile_every = Some("1h".into());
        s.apps.push(app);
    })
    .await;
    // Never reconciled: the first run starts at once, a dry run by the system.
    let run = eventually(20, "the scheduled run", || async {
        up.audit_rows()
            .into_iter()
            .find(|r| r.action == "reconcile.run")
            .ok_or_else(|| "no run yet".to_string())
    })
    .await;
    assert_eq!(run.actor, "system/reconcile");
    assert_eq!(run.outcome, "success");
    let d: Value = serde_json::from_str(run.detail.as_deref().unwrap()).unwrap();
    assert_eq!(d["remediate"], false);
    // Not again within the hour.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let runs = up
        .audit_rows()
        .into_iter()
        .filter(|r| r.action == "reconcile.run")
        .count();
    assert_eq!(runs, 1);
}

#[tokio::test]
async fn reconcile_refuses_unknown_apps_bad_formats_and_other_tokens() {
    let down = downstream().await;
    let base = down.base();
    let token = down.token_file.clone();
    let up = spawn_app_with(|s: &mut Settings| s.apps.push(scim_app("crm", &base, &token))).await;
    assert_eq!(reconcile_raw(&up, "nope", "").await.0, 404);
    assert_eq!(reconcile_raw(&up, "crm", "format=xml").await.0, 400);
    let res = up
        .client
        .post(format!("{}/admin/apps/crm/reconcile", up.address))
        .bearer_auth(ACME_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401, "a SCIM token is no admin token");
    assert_eq!(
        up.audit_rows()
            .iter()
            .filter(|r| r.action == "reconcile.run")
            .count(),
        0
    );
}
