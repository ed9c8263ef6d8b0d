//! Non-SCIM adapters against real downstreams: an app's user table in a
//! real SQLite file and a real PostgreSQL database, and change files in a
//! real directory, each checked directly (a SQL select, the files).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::{Nullable, Text};
use scim_gateway::adapters::Adapter;
use scim_gateway::adapters::sql::SqlAdapter;
use scim_gateway::config::{
    AdapterSettings, AppSettings, FileAdapterSettings, FileFormat, Settings, SqlAdapterSettings,
    SqlDisable,
};
use scim_gateway::domain::Kind;
use serde_json::{Value, json};

use crate::helpers::*;

// ---------------------------------------------------------------------------
// The app's database.

/// An application database: a SQLite file or a fresh PostgreSQL database.
enum AppDb {
    Sqlite {
        path: PathBuf,
        _dir: tempfile::TempDir,
    },
    Pg {
        server: String,
        name: String,
    },
}

impl AppDb {
    fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        Self::Sqlite {
            path: dir.path().join("app.db"),
            _dir: dir,
        }
    }

    /// A fresh database on the test PostgreSQL server, or `None` (with a
    /// message) when `SCIM_TEST_POSTGRES_URL` is unset.
    fn postgres() -> Option<Self> {
        let Some(server) = std::env::var(PG_ENV).ok().filter(|u| !u.is_empty()) else {
            eprintln!("SKIPPED: set {PG_ENV} to test the sql adapter on PostgreSQL");
            return None;
        };
        let server = server.trim_end_matches('/').to_string();
        let name = format!("scimgw_app_{}", uuid::Uuid::new_v4().simple());
        diesel::PgConnection::establish(&format!("{server}/postgres"))
            .expect("connect to PostgreSQL")
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .expect("create the app database");
        Some(Self::Pg { server, name })
    }

    fn url(&self) -> String {
        match self {
            Self::Sqlite { path, .. } => format!("sqlite://{}", path.display()),
            Self::Pg { server, name } => format!("{server}/{name}"),
        }
    }

    fn is_pg(&self) -> bool {
        matches!(self, Self::Pg { .. })
    }

    fn execute(&self, sql: &str) {
        match self {
            Self::Sqlite { path, .. } => {
                let mut c = diesel::SqliteConnection::establish(&path.display().to_string())
                    .expect("open the app database");
                c.batch_execute(&format!("PRAGMA busy_timeout = 10000; {sql}"))
                    .expect("app SQL");
            }
            Self::Pg { .. } => diesel::PgConnection::establish(&self.url())
                .expect("open the app database")
                .batch_execute(sql)
                .expect("app SQL"),
        }
    }

    /// Every row of `app_users`, as text (booleans as `true`/`false`), by id.
    fn users(&self) -> Vec<AppUser> {
        let sql = "SELECT CAST(id AS TEXT) AS id, external_id, login, given_name, title, \
                   CAST(is_active AS TEXT) AS is_active, status FROM app_users ORDER BY id";
        let mut rows: Vec<AppUser> = match self {
            Self::Sqlite { path, .. } => {
                let mut c = diesel::SqliteConnection::establish(&path.display().to_string())
                    .expect("open the app database");
                c.batch_execute("PRAGMA busy_timeout = 10000;").unwrap();
                diesel::sql_query(sql).load(&mut c).expect("select users")
            }
            Self::Pg { .. } => {
                let mut c = diesel::PgConnection::establish(&self.url()).expect("open");
                diesel::sql_query(sql).load(&mut c).expect("select users")
            }
        };
        for r in &mut rows {
            r.is_active = r.is_active.take().map(|v| match v.as_str() {
                "1" | "true" => "true".into(),
                "0" | "false" => "false".into(),
                other => other.into(),
            });
        }
        rows
    }

    fn create_table(&self) {
        let id = if self.is_pg() {
            "id BIGSERIAL PRIMARY KEY"
        } else {
            "id INTEGER PRIMARY KEY AUTOINCREMENT"
        };
        self.execute(&format!(
            "CREATE TABLE app_users ({id}, external_id TEXT NOT NULL UNIQUE, \
             login VARCHAR(64) NOT NULL UNIQUE, given_name TEXT, title TEXT, \
             is_active BOOLEAN NOT NULL DEFAULT TRUE, status TEXT)"
        ));
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

#[derive(Debug, Clone, PartialEq, QueryableByName)]
struct AppUser {
    #[diesel(sql_type = Text)]
    id: String,
    #[diesel(sql_type = Text)]
    external_id: String,
    #[diesel(sql_type = Text)]
    login: String,
    #[diesel(sql_type = Nullable<Text>)]
    given_name: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    title: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    is_active: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    status: Option<String>,
}

fn sql_settings(db: &AppDb) -> SqlAdapterSettings {
    SqlAdapterSettings {
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
    }
}

fn app_with(name: &str, adapter: AdapterSettings) -> AppSettings {
    AppSettings {
        name: name.into(),
        tenant: "acme".into(),
        adapter,
        timeout_secs: Some(5),
        ..AppSettings::default()
    }
}

/// Waits until `check` holds for the app's rows.
async fn await_rows(db: &AppDb, what: &str, check: impl Fn(&[AppUser]) -> bool) -> Vec<AppUser> {
    eventually(20, what, || async {
        let rows = db.users();
        if check(&rows) {
            Ok(rows)
        } else {
            Err(format!("{rows:?}"))
        }
    })
    .await
}

/// The app's account for an identity, once the engine has recorded it.
async fn await_account(up: &TestApp, app: &str, id: &str) -> Value {
    eventually(20, "the recorded account", || async {
        match up.admin_get(&format!("/apps/{app}/accounts/{id}")).await {
            (200, account) => Ok(account),
            (status, body) => Err(format!("{status} {body}")),
        }
    })
    .await
}

/// The audited delivery operations for an identity, once the last one
/// (the delete) is recorded.
async fn delivery_outcomes(app: &TestApp, id: &str) -> Vec<String> {
    eventually(20, "the delete's audit row", || async {
        let outcomes: Vec<String> = app
            .audit_rows()
            .into_iter()
            .filter(|r| r.resource_id.as_deref() == Some(id) && r.action.starts_with("delivery."))
            .map(|r| format!("{} {}", r.action, r.outcome))
            .collect();
        if outcomes
            .last()
            .is_some_and(|o| o.starts_with("delivery.delete"))
        {
            Ok(outcomes)
        } else {
            Err(format!("{outcomes:?}"))
        }
    })
    .await
}

/// Joiner, mover, leaver and delete through the engine into the table.
async fn sql_lifecycle(db: AppDb) {
    db.create_table();
    let settings = sql_settings(&db);
    let up = spawn_app_with(|s: &mut Settings| {
        s.apps.push(app_with(
            "legacy",
            AdapterSettings::Sql(Box::new(settings.clone())),
        ))
    })
    .await;

    // Joiner: a row with the mapped columns, the gateway id as key.
    let user = up
        .create_user_from(json!({
            "userName": "ada@example.com", "title": "Engineer", "active": true,
            "name": {"givenName": "Ada", "familyName": "Lovelace"}
        }))
        .await;
    let id = user["id"].as_str().unwrap().to_string();
    let rows = await_rows(&db, "the joiner's row", |r| r.len() == 1).await;
    let row = &rows[0];
    assert_eq!(row.external_id, id);
    assert_eq!(row.login, "ada@example.com");
    assert_eq!(row.given_name.as_deref(), Some("Ada"));
    assert_eq!(row.title.as_deref(), Some("Engineer"));
    assert_eq!(row.is_active.as_deref(), Some("true"));
    assert_eq!(row.status.as_deref(), Some("enabled"));
    let account = await_account(&up, "legacy", &id).await;
    assert_eq!(
        account["remote_id"], row.id,
        "the generated id is the remote id"
    );

    // Mover: the changed attribute is written to the same row.
    up.patch_ok(
        &format!("/Users/{id}"),
        json!([{"op": "replace", "path": "title", "value": "Manager"}]),
    )
    .await;
    await_rows(&db, "the title change", |r| {
        r.len() == 1 && r[0].title.as_deref() == Some("Manager")
    })
    .await;

    // Leaver: the mapped flag and the configured disable column.
    up.patch_ok(
        &format!("/Users/{id}"),
        json!([{"op": "replace", "path": "active", "value": false}]),
    )
    .await;
    let rows = await_rows(&db, "the disable", |r| {
        r.len() == 1 && r[0].status.as_deref() == Some("disabled")
    })
    .await;
    assert_eq!(rows[0].is_active.as_deref(), Some("false"));
    assert_eq!(rows[0].id, row.id, "the same row");

    // Delete.
    assert_eq!(up.delete(&format!("/Users/{id}")).await.status(), 204);
    await_rows(&db, "the row deleted", <[AppUser]>::is_empty).await;
    let outcomes = delivery_outcomes(&up, &id).await;
    assert_eq!(
        outcomes,
        vec![
            "delivery.create success",
            "delivery.update success",
            "delivery.disable success",
            "delivery.delete success"
        ],
        "one audited operation per change"
    );
}

#[tokio::test]
async fn sql_app_on_sqlite_follows_joiner_mover_leaver() {
    sql_lifecycle(AppDb::sqlite()).await;
}

#[tokio::test]
async fn sql_app_on_postgres_follows_joiner_mover_leaver() {
    if let Some(db) = AppDb::postgres() {
        sql_lifecycle(db).await;
    }
}

/// A create that finds the key already in the table (the row was written
/// but the gateway crashed before recording it) links that row.
async fn sql_adoption(db: AppDb) {
    db.create_table();
    let settings = sql_settings(&db);
    let up = spawn_app_with(|s: &mut Settings| {
        let mut app = app_with("legacy", AdapterSettings::Sql(Box::new(settings.clone())));
        app.scope = Some("title eq \"Engineer\"".into());
        s.apps.push(app);
    })
    .await;
    // Out of scope at first: no account.
    let user = up
        .create_user_from(json!({"userName": "grace@example.com", "active": true}))
        .await;
    let id = user["id"].as_str().unwrap().to_string();
    db.execute(&format!(
        "INSERT INTO app_users (external_id, login, title) VALUES ('{id}', 'grace.old', 'Stale')"
    ));
    let before = db.users();
    assert_eq!(before.len(), 1);

    // Into scope: the create finds the row by its key.
    up.patch_ok(
        &format!("/Users/{id}"),
        json!([{"op": "replace", "path": "title", "value": "Engineer"}]),
    )
    .await;
    let rows = await_rows(&db, "the adopted row converged", |r| {
        r.iter().any(|u| u.login == "grace@example.com")
    })
    .await;
    assert_eq!(rows.len(), 1, "adopted, not duplicated: {rows:?}");
    assert_eq!(rows[0].id, before[0].id);
    assert_eq!(rows[0].title.as_deref(), Some("Engineer"));
    let account = await_account(&up, "legacy", &id).await;
    assert_eq!(account["remote_id"], before[0].id);
    // The audit row says the account was adopted.
    eventually(20, "an audit row for the adoption", || async {
        let adopted = up.audit_rows().into_iter().any(|r| {
            r.action == "delivery.create"
                && r.detail
                    .as_deref()
                    .is_some_and(|d| d.contains("\"adopted\":true"))
        });
        adopted
            .then_some(())
            .ok_or_else(|| "no adopted create".to_string())
    })
    .await;
}

#[tokio::test]
async fn sql_create_adopts_an_existing_row_on_sqlite() {
    sql_adoption(AppDb::sqlite()).await;
}

#[tokio::test]
async fn sql_create_adopts_an_existing_row_on_postgres() {
    if let Some(db) = AppDb::postgres() {
        sql_adoption(db).await;
    }
}

/// Listing pages through the table in id order, in account terms.
async fn sql_listing(db: AppDb) {
    db.create_table();
    for i in 0..5 {
        db.execute(&format!(
            "INSERT INTO app_users (external_id, login, given_name, is_active, status) \
             VALUES ('ext-{i}', 'user{i}', 'Name{i}', {}, '{}')",
            if i == 3 { "FALSE" } else { "TRUE" },
            if i == 3 { "disabled" } else { "enabled" }
        ));
    }
    let app = app_with("legacy", AdapterSettings::None);
    let adapter = SqlAdapter::new(
        &app,
        &sql_settings(&db),
        std::time::Duration::from_secs(5),
        2,
    )
    .unwrap();
    assert!(adapter.can_list());
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = adapter.list(Kind::User, after.as_deref(), 2).await.unwrap();
        assert!(page.len() <= 2);
        let last = page.len() < 2;
        after = page.last().map(|a| a.remote_id.clone());
        seen.extend(page);
        if last {
            break;
        }
    }
    assert_eq!(seen.len(), 5, "{seen:?}");
    let keys: Vec<_> = seen.iter().filter_map(|a| a.key.clone()).collect();
    assert_eq!(keys, ["ext-0", "ext-1", "ext-2", "ext-3", "ext-4"]);
    assert_eq!(seen[1].attributes["userName"], "user1");
    assert_eq!(seen[1].attributes["name"]["givenName"], "Name1");
    assert_eq!(seen[1].attributes["active"], true);
    assert_eq!(seen[3].attributes["active"], false);
    let groups = adapter.list(Kind::Group, None, 10).await;
    assert!(groups.is_err(), "groups are not provisioned by sql apps");
}

#[tokio::test]
async fn sql_listing_pages_in_id_order_on_sqlite() {
    sql_listing(AppDb::sqlite()).await;
}

#[tokio::test]
async fn sql_listing_pages_in_id_order_on_postgres() {
    if let Some(db) = AppDb::postgres() {
        sql_listing(db).await;
    }
}

#[tokio::test]
async fn sql_errors_are_classified_for_the_engine() {
    use scim_gateway::adapters::{ErrorKind, OpContext};
    let db = AppDb::sqlite();
    db.create_table();
    let app = app_with("legacy", AdapterSettings::None);
    let adapter = SqlAdapter::new(
        &app,
        &sql_settings(&db),
        std::time::Duration::from_secs(5),
        2,
    )
    .unwrap();
    let ctx = OpContext {
        app: "legacy".into(),
        identity: "u-1".into(),
        kind: Kind::User,
        in_doubt: false,
        revision: 1,
    };
    // A NOT NULL column without a value: the app refuses it.
    let e = adapter
        .create(&ctx, &json!({"externalId": "u-1"}))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Rejected, "{e}");
    // An update of a row that is gone.
    let e = adapter
        .update(
            &ctx,
            "999",
            &json!({"userName": "a"}),
            &json!({"userName": "b"}),
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound, "{e}");
    // A delete of a row that is gone is success.
    adapter.delete(&ctx, "999", &json!({})).await.unwrap();
    // A database that cannot be reached is worth retrying.
    let mut down = sql_settings(&db);
    down.url = Some("postgres://postgres@127.0.0.1:1/nothing".into());
    let unreachable = SqlAdapter::new(&app, &down, std::time::Duration::from_secs(2), 1).unwrap();
    let e = unreachable
        .create(&ctx, &json!({"userName": "a"}))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Transient, "{e}");
    // Names that are not plain identifiers never reach SQL.
    let mut evil = sql_settings(&db);
    evil.table = "app_users; DROP TABLE app_users".into();
    assert!(SqlAdapter::new(&app, &evil, std::time::Duration::from_secs(1), 1).is_err());
    // Values are bound, not spliced.
    adapter
        .create(
            &ctx,
            &json!({"externalId": "u-1", "userName": "x'); DROP TABLE app_users; --"}),
        )
        .await
        .unwrap();
    assert_eq!(db.users()[0].login, "x'); DROP TABLE app_users; --");
}

// ---------------------------------------------------------------------------
// File drops.

/// The visible (non-hidden) files of a directory, sorted by name.
fn visible_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| e.path())
        .collect();
    files.sort();
    files
}

/// Splits one CSV record (no line end) into fields (RFC 4180 quoting).
fn csv_fields(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                fields.last_mut().unwrap().push('"');
            }
            '"' => quoted = !quoted,
            ',' if !quoted => fields.push(String::new()),
            c => fields.last_mut().unwrap().push(c),
        }
    }
    fields
}

/// Parses a whole change file into records; `Err` for anything partial.
fn parse_file(path: &Path, csv: bool) -> Result<Vec<Value>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let eol = if csv { "\r\n" } else { "\n" };
    if text.is_empty() || !text.ends_with(eol) {
        return Err(format!("{} is incomplete: {text:?}", path.display()));
    }
    let mut lines = text.trim_end_matches(eol).split(eol);
    if !csv {
        return lines
            .map(|l| serde_json::from_str(l).map_err(|e| format!("{l:?}: {e}")))
            .collect();
    }
    let header = csv_fields(lines.next().unwrap_or_default());
    lines
        .map(|l| {
            let f = csv_fields(l);
            if f.len() != header.len() {
                return Err(format!("{l:?} has {} fields", f.len()));
            }
            Ok(Value::Object(
                header
                    .iter()
                    .cloned()
                    .zip(f.into_iter().map(Value::String))
                    .collect(),
            ))
        })
        .collect()
}

/// Reads every visible file over and over until stopped; counts the files
/// read and records the first partial one.
fn spawn_reader(
    dir: PathBuf,
    csv: bool,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<(usize, Option<String>)> {
    std::thread::spawn(move || {
        let reads = AtomicUsize::new(0);
        while !stop.load(Ordering::Relaxed) {
            for f in visible_files(&dir) {
                match parse_file(&f, csv) {
                    Ok(_) => {
                        reads.fetch_add(1, Ordering::Relaxed);
                    }
                    // Files are never removed here, so any error is a partial file.
                    Err(e) => return (reads.into_inner(), Some(e)),
                }
            }
        }
        (reads.into_inner(), None)
    })
}

/// Every record in the directory, in file-name order.
fn all_records(dir: &Path, csv: bool) -> Vec<Value> {
    visible_files(dir)
        .iter()
        .flat_map(|f| parse_file(f, csv).unwrap())
        .collect()
}

async fn file_burst(format: FileFormat, batch: Option<usize>) {
    let csv = format == FileFormat::Csv;
    let dir = tempfile::tempdir().unwrap();
    let drop_dir = dir.path().join("out");
    let settings = FileAdapterSettings {
        directory: drop_dir.clone(),
        format,
        file_name: Some("{app}-{timestamp}-{seq}.{ext}".into()),
        batch_max_lines: batch,
        batch_max_wait_ms: Some(50),
        csv_columns: if csv {
            vec!["userName".into(), "active".into(), "title".into()]
        } else {
            Vec::new()
        },
    };
    let up = spawn_app_with(|s: &mut Settings| {
        s.apps
            .push(app_with("payroll", AdapterSettings::File(settings.clone())))
    })
    .await;
    let stop = Arc::new(AtomicBool::new(false));
    let reader = spawn_reader(drop_dir.clone(), csv, stop.clone());

    // A burst: joiners, a mover, a leaver and a delete.
    let mut ids = Vec::new();
    for i in 0..12 {
        let u = up
            .create_user_from(json!({"userName": format!("u{i}@example.com"), "active": true, "title": "Clerk, \"junior\""}))
            .await;
        ids.push(u["id"].as_str().unwrap().to_string());
    }
    let expected = |records: &[Value], id: &str| -> Vec<String> {
        records
            .iter()
            .filter(|r| r["id"] == id)
            .map(|r| r["op"].as_str().unwrap().to_string())
            .collect()
    };
    eventually(20, "every create in a file", || async {
        let recs = all_records(&drop_dir, csv);
        let n = ids
            .iter()
            .filter(|id| expected(&recs, id) == ["create"])
            .count();
        if n == ids.len() {
            Ok(())
        } else {
            Err(format!("{n} of {}", ids.len()))
        }
    })
    .await;
    let id = ids[0].clone();
    up.patch_ok(
        &format!("/Users/{id}"),
        json!([{"op": "replace", "path": "title", "value": "Manager"}]),
    )
    .await;
    eventually(20, "the update in a file", || async {
        let ops = expected(&all_records(&drop_dir, csv), &id);
        (ops == ["create", "update"])
            .then_some(())
            .ok_or(format!("{ops:?}"))
    })
    .await;
    up.patch_ok(
        &format!("/Users/{id}"),
        json!([{"op": "replace", "path": "active", "value": false}]),
    )
    .await;
    eventually(20, "the disable in a file", || async {
        let ops = expected(&all_records(&drop_dir, csv), &id);
        (ops == ["create", "update", "disable"])
            .then_some(())
            .ok_or(format!("{ops:?}"))
    })
    .await;
    assert_eq!(up.delete(&format!("/Users/{id}")).await.status(), 204);
    let records = eventually(20, "the delete in a file", || async {
        let recs = all_records(&drop_dir, csv);
        let ops = expected(&recs, &id);
        (ops == ["create", "update", "disable", "delete"])
            .then_some(recs)
            .ok_or(format!("{ops:?}"))
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    let (reads, partial) = reader.join().unwrap();
    assert_eq!(partial, None, "a reader saw a partial file");
    assert!(reads > 0, "the reader read files during the burst");

    // Each line says what happened, to whom, in which app, with an id.
    let mine: Vec<&Value> = records.iter().filter(|r| r["id"] == id.as_str()).collect();
    for r in &mine {
        assert_eq!(r["app"], "payroll");
        assert_eq!(r["type"], "user");
        assert!(r["operation_id"].as_str().unwrap().starts_with("op_"));
        assert!(r["timestamp"].as_str().unwrap().ends_with('Z'));
    }
    let op_ids: std::collections::BTreeSet<_> = records
        .iter()
        .map(|r| r["operation_id"].to_string())
        .collect();
    assert_eq!(op_ids.len(), records.len(), "operation ids are distinct");
    if csv {
        assert_eq!(mine[1]["title"], "Manager");
        assert_eq!(mine[0]["title"], "Clerk, \"junior\"");
        assert_eq!(mine[2]["active"], "false");
    } else {
        assert_eq!(mine[1]["account"]["title"], "Manager");
        assert_eq!(mine[2]["account"]["active"], false);
        assert_eq!(mine[0]["account"]["externalId"], id.as_str());
        assert_eq!(mine[0]["revision"], 1);
        assert_eq!(mine[3]["revision"], 4);
    }
    let files = visible_files(&drop_dir);
    assert!(
        files.iter().all(|f| {
            let n = f.file_name().unwrap().to_string_lossy().to_string();
            n.starts_with("payroll-") && n.ends_with(if csv { ".csv" } else { ".ndjson" })
        }),
        "{files:?}"
    );
    if batch.is_none() {
        assert_eq!(files.len(), records.len(), "one file per change");
    }
    let hidden = std::fs::read_dir(&drop_dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .count();
    assert_eq!(hidden, 0, "no temporary file is left behind");
}

#[tokio::test]
async fn file_app_drops_one_complete_ndjson_file_per_change() {
    file_burst(FileFormat::Ndjson, None).await;
}

#[tokio::test]
async fn file_app_batches_csv_changes_without_partial_files() {
    file_burst(FileFormat::Csv, Some(16)).await;
}

// ---------------------------------------------------------------------------
// LDAP: a real slapd (`scripts/slapd`), named by SCIM_TEST_LDAP_URL.

/// Names the test directory server.
const LDAP_ENV: &str = "SCIM_TEST_LDAP_URL";
const LDAP_ADMIN: &str = "cn=admin,dc=example,dc=com";
const LDAP_PASSWORD: &str = "secret";

/// A subtree of its own on the test directory: people, disabled, roles
/// (`groupOfNames` "Sales User" and "Admin").
pub(crate) struct Directory {
    url: String,
    base: String,
    _password: tempfile::NamedTempFile,
    password_file: PathBuf,
}

impl Directory {
    pub(crate) async fn new() -> Option<Self> {
        let Some(url) = std::env::var(LDAP_ENV).ok().filter(|u| !u.is_empty()) else {
            eprintln!(
                "SKIPPED: set {LDAP_ENV} (scripts/slapd starts a server) to test the ldap adapter"
            );
            return None;
        };
        let base = format!("ou=t{},dc=example,dc=com", uuid::Uuid::new_v4().simple());
        let mut password = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut password, LDAP_PASSWORD.as_bytes()).unwrap();
        let password_file = password.path().to_path_buf();
        let dir = Self {
            url,
            base,
            _password: password,
            password_file,
        };
        let mut ldap = dir.connect().await;
        for dn in [
            dir.base.clone(),
            dir.dn("ou=people"),
            dir.dn("ou=disabled"),
            dir.dn("ou=roles"),
        ] {
            let ou = dn.split(',').next().unwrap().trim_start_matches("ou=");
            ldap.add(
                &dn,
                vec![
                    ("objectClass", ["organizationalUnit"].into()),
                    ("ou", [ou].into()),
                ],
            )
            .await
            .unwrap()
            .success()
            .unwrap();
        }
        for role in ["Sales User", "Admin"] {
            // groupOfNames needs a member: a placeholder keeps it valid.
            ldap.add(
                &dir.dn(&format!("cn={role},ou=roles")),
                vec![
                    ("objectClass", ["groupOfNames"].into()),
                    ("cn", [role].into()),
                    ("member", ["cn=nobody"].into()),
                ],
            )
            .await
            .unwrap()
            .success()
            .unwrap();
        }
        Some(dir)
    }

    pub(crate) fn dn(&self, rdn: &str) -> String {
        format!("{rdn},{}", self.base)
    }

    pub(crate) async fn connect(&self) -> ldap3::Ldap {
        let (conn, mut ldap) = ldap3::LdapConnAsync::new(&self.url).await.unwrap();
        ldap3::drive!(conn);
        ldap.simple_bind(LDAP_ADMIN, LDAP_PASSWORD)
            .await
            .unwrap()
            .success()
            .unwrap();
        ldap
    }

    /// Every person under the test subtree: DN (lower-cased) → attributes.
    pub(crate) async fn people(
        &self,
    ) -> BTreeMap<String, std::collections::HashMap<String, Vec<String>>> {
        let (entries, _) = self
            .connect()
            .await
            .search(
                &self.base,
                ldap3::Scope::Subtree,
                "(objectClass=inetOrgPerson)",
                vec!["*"],
            )
            .await
            .unwrap()
            .success()
            .unwrap();
        entries
            .into_iter()
            .map(|e| {
                let e = ldap3::SearchEntry::construct(e);
                (e.dn.to_lowercase(), e.attrs)
            })
            .collect()
    }

    /// The members of a role group, lower-cased, without the placeholder.
    pub(crate) async fn members(&self, role: &str) -> Vec<String> {
        let (entries, _) = self
            .connect()
            .await
            .search(
                &self.dn(&format!("cn={role},ou=roles")),
                ldap3::Scope::Base,
                "(objectClass=*)",
                vec!["member"],
            )
            .await
            .unwrap()
            .success()
            .unwrap();
        let mut m: Vec<String> = entries
            .into_iter()
            .flat_map(|e| {
                ldap3::SearchEntry::construct(e)
                    .attrs
                    .remove("member")
                    .unwrap_or_default()
            })
            .map(|m| m.to_lowercase())
            .filter(|m| m != "cn=nobody")
            .collect();
        m.sort();
        m
    }

    /// Waits until a role group has exactly these members.
    pub(crate) async fn await_members(&self, role: &str, expected: &[String]) {
        eventually(20, &format!("the members of {role}"), || async {
            let m = self.members(role).await;
            if m == expected {
                Ok(())
            } else {
                Err(format!("{m:?}"))
            }
        })
        .await
    }

    pub(crate) fn settings(&self) -> scim_gateway::config::LdapAdapterSettings {
        scim_gateway::config::LdapAdapterSettings {
            url: self.url.clone(),
            starttls: false,
            bind_dn: Some(LDAP_ADMIN.into()),
            bind_password_env: None,
            bind_password_file: Some(self.password_file.clone()),
            base_dn: self.dn("ou=people"),
            rdn_attribute: Some("uid".into()),
            object_classes: Vec::new(),
            attributes: BTreeMap::from([
                ("uid".into(), "userName".into()),
                ("cn".into(), "userName".into()),
                ("sn".into(), "name.familyName".into()),
                ("givenName".into(), "name.givenName".into()),
                ("title".into(), "title".into()),
            ]),
            key_attribute: None,
            disable: Some(scim_gateway::config::LdapDisable::Move {
                base_dn: self.dn("ou=disabled"),
            }),
            entitlement_base_dn: Some(self.dn("ou=roles")),
        }
    }

    /// Waits until the people under the subtree satisfy `check`.
    pub(crate) async fn await_people(
        &self,
        what: &str,
        check: impl Fn(&BTreeMap<String, std::collections::HashMap<String, Vec<String>>>) -> bool,
    ) -> BTreeMap<String, std::collections::HashMap<String, Vec<String>>> {
        eventually(20, what, || async {
            let p = self.people().await;
            if check(&p) {
                Ok(p)
            } else {
                Err(format!("{p:?}"))
            }
        })
        .await
    }
}

#[tokio::test]
async fn ldap_app_follows_joiner_mover_rename_leaver() {
    let Some(dir) = Directory::new().await else {
        return;
    };
    let settings = dir.settings();
    let up = spawn_app_with(|s: &mut Settings| {
        s.apps.push(app_with(
            "directory",
            AdapterSettings::Ldap(Box::new(settings.clone())),
        ))
    })
    .await;
    let people_dn = |uid: &str| dir.dn(&format!("uid={uid},ou=people")).to_lowercase();

    // Joiner: an entry with the mapped attributes and the key; the role.
    let user = up
        .create_user_from(json!({
            "userName": "ada", "title": "Engineer", "active": true,
            "name": {"givenName": "Ada", "familyName": "Lovelace"},
            "entitlements": [{"value": "Sales User"}]
        }))
        .await;
    let id = user["id"].as_str().unwrap().to_string();
    let people = dir
        .await_people("the joiner's entry", |p| p.contains_key(&people_dn("ada")))
        .await;
    let entry = &people[&people_dn("ada")];
    assert_eq!(entry["employeeNumber"], vec![id.clone()]);
    assert_eq!(entry["sn"], ["Lovelace"]);
    assert_eq!(entry["title"], ["Engineer"]);
    dir.await_members("Sales User", &[people_dn("ada")]).await;

    // Mover: an attribute change, and a new role instead of the old one.
    up.patch_ok(
        &format!("/Users/{id}"),
        json!([
            {"op": "replace", "path": "title", "value": "Manager"},
            {"op": "replace", "path": "entitlements", "value": [{"value": "Admin"}]}
        ]),
    )
    .await;
    dir.await_people("the title change", |p| {
        p.get(&people_dn("ada"))
            .is_some_and(|e| e.get("title") == Some(&vec!["Manager".to_string()]))
    })
    .await;
    dir.await_members("Admin", &[people_dn("ada")]).await;
    dir.await_members("Sales User", &[]).await;

    // Rename: the RDN follows userName (modifyDN), memberships follow the DN.
    up.patch_ok(
        &format!("/Users/{id}"),
        json!([{"op": "replace", "path": "userName", "value": "ada.lovelace"}]),
    )
    .await;
    let people = dir
        .await_people("the rename", |p| {
            p.len() == 1 && p.contains_key(&people_dn("ada.lovelace"))
        })
        .await;
    assert_eq!(people[&people_dn("ada.lovelace")]["title"], ["Manager"]);
    dir.await_members("Admin", &[people_dn("ada.lovelace")])
        .await;

    // Leaver: moved to the disabled subtree.
    up.patch_ok(
        &format!("/Users/{id}"),
        json!([{"op": "replace", "path": "active", "value": false}]),
    )
    .await;
    let disabled_dn = dir.dn("uid=ada.lovelace,ou=disabled").to_lowercase();
    dir.await_people("the move to disabled", |p| {
        p.len() == 1 && p.contains_key(&disabled_dn)
    })
    .await;

    // Delete: the entry and its memberships go.
    assert_eq!(up.delete(&format!("/Users/{id}")).await.status(), 204);
    dir.await_people("the delete", BTreeMap::is_empty).await;
    dir.await_members("Admin", &[]).await;
    assert_eq!(
        delivery_outcomes(&up, &id).await,
        vec![
            "delivery.create success",
            "delivery.update success",
            "delivery.update success",
            "delivery.disable success",
            "delivery.delete success"
        ]
    );
}

#[tokio::test]
async fn ldap_create_adopts_an_existing_entry_and_listing_pages() {
    let Some(dir) = Directory::new().await else {
        return;
    };
    let settings = dir.settings();
    let up = spawn_app_with(|s: &mut Settings| {
        let mut app = app_with(
            "directory",
            AdapterSettings::Ldap(Box::new(settings.clone())),
        );
        app.scope = Some("title eq \"Engineer\"".into());
        s.apps.push(app);
    })
    .await;
    let user = up
        .create_user_from(json!({"userName": "grace", "name": {"familyName": "Hopper"}}))
        .await;
    let id = user["id"].as_str().unwrap().to_string();
    // The entry is already there under an old name, with the key.
    let mut ldap = dir.connect().await;
    ldap.add(
        &dir.dn("uid=ghopper,ou=people"),
        vec![
            (
                "objectClass",
                ["top", "person", "organizationalPerson", "inetOrgPerson"].into(),
            ),
            ("uid", ["ghopper"].into()),
            ("cn", ["ghopper"].into()),
            ("sn", ["Hopper"].into()),
            ("employeeNumber", [id.as_str()].into()),
        ],
    )
    .await
    .unwrap()
    .success()
    .unwrap();
    up.patch_ok(
        &format!("/Users/{id}"),
        json!([{"op": "replace", "path": "title", "value": "Engineer"}]),
    )
    .await;
    let people = dir
        .await_people("the adopted entry renamed", |p| {
            p.contains_key(&dir.dn("uid=grace,ou=people").to_lowercase())
        })
        .await;
    assert_eq!(people.len(), 1, "adopted, not duplicated: {people:?}");

    // Two more accounts, then a paged listing in key order.
    for name in ["alan", "edsger"] {
        up.create_user_from(
            json!({"userName": name, "title": "Engineer", "name": {"familyName": name}}),
        )
        .await;
    }
    dir.await_people("three entries", |p| p.len() == 3).await;
    let app = app_with("directory", AdapterSettings::None);
    let adapter = scim_gateway::adapters::ldap::LdapAdapter::new(
        &app,
        &settings,
        std::time::Duration::from_secs(5),
    )
    .unwrap();
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = adapter.list(Kind::User, after.as_deref(), 2).await.unwrap();
        let last = page.len() < 2;
        after = page.last().map(|a| a.remote_id.clone());
        seen.extend(page);
        if last {
            break;
        }
    }
    assert_eq!(seen.len(), 3, "{seen:?}");
    let ids: Vec<&str> = seen.iter().map(|a| a.remote_id.as_str()).collect();
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    assert_eq!(ids, sorted, "in remote-id order");
    let grace = seen.iter().find(|a| a.key.as_deref() == Some(&id)).unwrap();
    assert_eq!(grace.attributes["userName"], "grace");
    assert_eq!(grace.attributes["name"]["familyName"], "Hopper");
    assert_eq!(grace.attributes["active"], true);
}
