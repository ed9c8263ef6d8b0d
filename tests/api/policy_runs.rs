//! Seeded random runs of joiners, movers and leavers against rules on
//! department and on group membership, with a downstream SCIM app, a SQL
//! app table and (when a directory is there) an LDAP app. Every write is one
//! a real IdP sends (Entra's and Okta's PATCH shapes, PUT of a group); after
//! each run delivery drains, and then every app's accounts and entitlements,
//! the access report and each app's reconciliation must agree with what the
//! rules give the store's identities. Runs on both backends (the API suite
//! runs again on PostgreSQL). `SCIM_TEST_SEED` replays one seed.

use std::collections::{BTreeMap, BTreeSet};

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::{Nullable, Text};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use scim_gateway::config::{AdapterSettings, AppSettings, Settings, SqlAdapterSettings};
use serde_json::{Value, json};

use crate::adapters::Directory;
use crate::delivery::{Downstream, downstream, scim_app};
use crate::helpers::*;
use crate::lifecycle::rule;

const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const DEPARTMENTS: [&str; 3] = ["Engineering", "Sales", "Support"];
const VPN: &str = "vpn-users";

/// (app, identity, entitlement): `""` is the account itself.
type Grant = (String, String, String);

/// One identity as the rules see it.
#[derive(Debug, Clone)]
struct Person {
    active: bool,
    department: String,
    groups: BTreeSet<String>,
}

/// What the rules give each identity, per app.
fn expected(people: &BTreeMap<String, Person>, ldap: bool) -> BTreeSet<Grant> {
    let mut out = BTreeSet::new();
    for (id, p) in people.iter().filter(|(_, p)| p.active) {
        let mut give = |app: &str, ents: &[&str]| {
            out.insert((app.to_string(), id.clone(), String::new()));
            for e in ents {
                out.insert((app.to_string(), id.clone(), e.to_string()));
            }
        };
        if p.department == "Engineering" {
            give("crm", &["eng"]);
            give("engdb", &["eng"]);
        }
        if p.groups.contains(VPN) {
            give("crm", &["vpn-group"]);
        }
        if ldap && p.department == "Sales" {
            give("directory", &["Sales User"]);
        }
    }
    out
}

/// The store's users, with their departments and groups.
async fn people(up: &TestApp) -> BTreeMap<String, Person> {
    let list = up
        .list_ok(
            "/Users",
            &[
                ("count", "1000"),
                (
                    "attributes",
                    &format!("active,groups,{ENTERPRISE}:department"),
                ),
            ],
        )
        .await;
    list["Resources"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|u| {
            let groups = u["groups"]
                .as_array()
                .map(|g| {
                    g.iter()
                        .filter_map(|x| x["display"].as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            (
                u["id"].as_str().unwrap().to_string(),
                Person {
                    active: u["active"].as_bool().unwrap_or(true),
                    department: u[ENTERPRISE]["department"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    groups,
                },
            )
        })
        .collect()
}

/// A table the `engdb` app writes, in a SQLite file of its own.
struct AppTable {
    path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

#[derive(QueryableByName, Debug)]
struct Row {
    #[diesel(sql_type = Nullable<Text>)]
    external_id: Option<String>,
    #[diesel(sql_type = Text)]
    is_active: String,
    #[diesel(sql_type = Nullable<Text>)]
    ents: Option<String>,
}

impl AppTable {
    fn create() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("engdb.db");
        let t = Self { path, _dir: dir };
        t.conn()
            .batch_execute(
                "CREATE TABLE app_users (id INTEGER PRIMARY KEY AUTOINCREMENT, \
                 external_id TEXT UNIQUE, login TEXT NOT NULL, \
                 is_active BOOLEAN NOT NULL DEFAULT TRUE, ents TEXT)",
            )
            .unwrap();
        t
    }

    fn conn(&self) -> diesel::SqliteConnection {
        let mut c = diesel::SqliteConnection::establish(&self.path.display().to_string()).unwrap();
        c.batch_execute("PRAGMA busy_timeout = 10000;").unwrap();
        c
    }

    fn settings(&self) -> SqlAdapterSettings {
        SqlAdapterSettings {
            url: Some(format!("sqlite://{}", self.path.display())),
            url_env: None,
            table: "app_users".into(),
            key_column: "external_id".into(),
            id_column: Some("id".into()),
            columns: BTreeMap::from([
                ("userName".into(), "login".into()),
                ("active".into(), "is_active".into()),
                ("entitlements".into(), "ents".into()),
            ]),
            disable: None,
            pool_size: Some(2),
        }
    }

    /// What the table grants: the account of every active row, and the
    /// entitlements its JSON column lists.
    fn grants(&self) -> BTreeSet<Grant> {
        let rows: Vec<Row> = diesel::sql_query(
            "SELECT external_id, CAST(is_active AS TEXT) AS is_active, ents FROM app_users",
        )
        .load(&mut self.conn())
        .unwrap();
        let mut out = BTreeSet::new();
        for r in rows.iter().filter(|r| r.is_active == "1") {
            let id = r.external_id.clone().unwrap_or_default();
            out.insert(("engdb".into(), id.clone(), String::new()));
            let ents: Value = r
                .ents
                .as_deref()
                .and_then(|e| serde_json::from_str(e).ok())
                .unwrap_or(Value::Null);
            for e in ents.as_array().into_iter().flatten() {
                out.insert(("engdb".into(), id.clone(), value_of(e)));
            }
        }
        out
    }
}

fn value_of(v: &Value) -> String {
    v["value"].as_str().unwrap_or_default().to_string()
}

/// What the downstream SCIM app grants: every active account, and its
/// entitlements, by the gateway id it carries as externalId.
async fn scim_grants(down: &Downstream) -> BTreeSet<Grant> {
    let list = down.app.list_ok("/Users", &[("count", "1000")]).await;
    let mut out = BTreeSet::new();
    for u in list["Resources"].as_array().into_iter().flatten() {
        if u["active"] == false {
            assert!(
                u["entitlements"].as_array().is_none_or(Vec::is_empty),
                "a disabled account keeps entitlements: {u}"
            );
            continue;
        }
        let id = u["externalId"].as_str().unwrap_or("<no externalId>");
        out.insert(("crm".into(), id.to_string(), String::new()));
        for e in u["entitlements"].as_array().into_iter().flatten() {
            out.insert(("crm".into(), id.to_string(), value_of(e)));
        }
    }
    out
}

/// The access report as grants.
async fn reported(up: &TestApp) -> BTreeSet<Grant> {
    let res = up
        .client
        .get(format!("{}/admin/reports/access?format=ndjson", up.address))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.text()
        .await
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (
                v["app"].as_str().unwrap().to_string(),
                v["identity"].as_str().unwrap().to_string(),
                v["entitlement"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn only(grants: &BTreeSet<Grant>, app: &str) -> BTreeSet<Grant> {
    grants.iter().filter(|g| g.0 == app).cloned().collect()
}

/// The writes of one run, as an IdP sends them.
struct Run<'a> {
    up: &'a TestApp,
    rng: StdRng,
    users: Vec<String>,
    /// Group id → current displayName.
    groups: Vec<(String, String)>,
    n: usize,
}

impl Run<'_> {
    fn pick_user(&mut self) -> Option<String> {
        (!self.users.is_empty())
            .then(|| self.users[self.rng.random_range(0..self.users.len())].clone())
    }

    /// About a third of the users, at random.
    fn some_users(&mut self) -> Vec<String> {
        let users = self.users.clone();
        users
            .into_iter()
            .filter(|_| self.rng.random_bool(0.3))
            .collect()
    }

    fn department(&mut self) -> &'static str {
        DEPARTMENTS[self.rng.random_range(0..DEPARTMENTS.len())]
    }

    async fn create(&mut self) {
        self.n += 1;
        let department = self.department();
        let res = self
            .up
            .post(
                "/Users",
                &json!({
                    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENTERPRISE],
                    "userName": format!("p{}", self.n),
                    "name": {"givenName": "P", "familyName": format!("Person {}", self.n)},
                    "active": true,
                    ENTERPRISE: {"department": department}
                }),
            )
            .await;
        assert_eq!(res.status(), 201);
        let u: Value = res.json().await.unwrap();
        self.users.push(u["id"].as_str().unwrap().to_string());
    }

    async fn patch_user(&mut self, id: &str, ops: Value) {
        self.up.patch_ok(&format!("/Users/{id}"), ops).await;
    }

    async fn patch_group(&mut self, g: usize, ops: Value) {
        let id = self.groups[g].0.clone();
        self.up.patch_ok(&format!("/Groups/{id}"), ops).await;
    }

    /// Renames the VPN group away (the rule no longer matches), or back.
    async fn rename_vpn(&mut self) {
        let name = if self.groups[0].1 == VPN {
            format!("{VPN}-old")
        } else {
            VPN.to_string()
        };
        self.patch_group(
            0,
            json!([{"op": "replace", "value": {"displayName": name}}]),
        )
        .await;
        self.groups[0].1 = name;
    }

    async fn step(&mut self) {
        let Some(user) = self.pick_user() else {
            return self.create().await;
        };
        let g = self.rng.random_range(0..self.groups.len());
        match self.rng.random_range(0..100) {
            0..15 => self.create().await,
            // Mover, Entra's shape: the extension attribute by path.
            15..25 => {
                let d = self.department();
                self.patch_user(
                    &user,
                    json!([{"op": "Replace", "path": format!("{ENTERPRISE}:department"), "value": d}]),
                )
                .await
            }
            // Mover, Okta's shape: no path, the extension as an object.
            25..32 => {
                let d = self.department();
                self.patch_user(
                    &user,
                    json!([{"op": "replace", "value": {ENTERPRISE: {"department": d}}}]),
                )
                .await
            }
            // Joiner to a group, Entra's shape.
            32..47 => {
                self.patch_group(
                    g,
                    json!([{"op": "Add", "path": "members", "value": [{"value": user}]}]),
                )
                .await
            }
            // Leaving a group, Entra's shape (the value names the member).
            47..55 => {
                self.patch_group(
                    g,
                    json!([{"op": "Remove", "path": "members", "value": [{"value": user}]}]),
                )
                .await
            }
            // Leaving a group, Okta's shape (a filter).
            55..60 => {
                self.patch_group(
                    g,
                    json!([{"op": "remove", "path": format!("members[value eq \"{user}\"]")}]),
                )
                .await
            }
            // Okta replaces the whole member list.
            60..65 => {
                let members: Vec<Value> = self
                    .some_users()
                    .into_iter()
                    .map(|id| json!({"value": id}))
                    .collect();
                self.patch_group(
                    g,
                    json!([{"op": "replace", "path": "members", "value": members}]),
                )
                .await
            }
            // A PUT of the group with a new member list.
            65..69 => {
                let (id, name) = self.groups[g].clone();
                let members: Vec<Value> = self
                    .some_users()
                    .into_iter()
                    .map(|id| json!({"value": id}))
                    .collect();
                let res = self
                    .up
                    .put(
                        &format!("/Groups/{id}"),
                        &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                                "displayName": name, "members": members}),
                    )
                    .await;
                assert_eq!(res.status(), 200);
            }
            // The VPN group renamed away and back (the rule names it).
            69..71 => self.rename_vpn().await,
            // Leaver and rehire, as Entra sends them (a string boolean).
            73..83 => {
                let value = if self.rng.random_bool(0.5) {
                    "False"
                } else {
                    "True"
                };
                self.patch_user(
                    &user,
                    json!([{"op": "Replace", "path": "active", "value": value}]),
                )
                .await
            }
            // A group deleted and made again (its members lose it, then
            // some get it back).
            88..91 => {
                let (id, name) = self.groups[g].clone();
                let res = self.up.delete(&format!("/Groups/{id}")).await;
                assert_eq!(res.status(), 204);
                let members = self.some_users();
                let refs: Vec<&str> = members.iter().map(String::as_str).collect();
                let again = self.up.create_group(&name, &refs).await;
                self.groups[g].0 = again["id"].as_str().unwrap().to_string();
            }
            // Deleted.
            83..88 => {
                let res = self.up.delete(&format!("/Users/{user}")).await;
                assert_eq!(res.status(), 204);
                self.users.retain(|u| *u != user);
            }
            _ => {}
        }
    }
}

async fn policy_run(seed: u64) {
    let ldap = Directory::new().await;
    let down = downstream().await;
    let table = AppTable::create();
    let mut apps = vec!["crm", "engdb"];
    let (base, token) = (down.base(), down.token_file.clone());
    let sql = table.settings();
    let ldap_settings = ldap.as_ref().map(Directory::settings);
    if ldap.is_some() {
        apps.push("directory");
    }
    let up = spawn_app_with(|s: &mut Settings| {
        s.apps.push(scim_app("crm", &base, &token));
        s.apps.push(AppSettings {
            name: "engdb".into(),
            tenant: "acme".into(),
            adapter: AdapterSettings::Sql(Box::new(sql.clone())),
            timeout_secs: Some(5),
            ..AppSettings::default()
        });
        let department = format!("{ENTERPRISE}:department");
        s.rules.push(rule(
            "eng",
            "crm",
            &format!("{department} eq \"Engineering\""),
            &["eng"],
        ));
        s.rules.push(rule(
            "group-vpn",
            "crm",
            &format!("groups.display eq \"{VPN}\""),
            &["vpn-group"],
        ));
        s.rules.push(rule(
            "eng-db",
            "engdb",
            &format!("{department} eq \"Engineering\""),
            &["eng"],
        ));
        if let Some(l) = &ldap_settings {
            s.apps.push(AppSettings {
                name: "directory".into(),
                tenant: "acme".into(),
                adapter: AdapterSettings::Ldap(Box::new(l.clone())),
                timeout_secs: Some(5),
                ..AppSettings::default()
            });
            s.rules.push(rule(
                "sales-dir",
                "directory",
                &format!("{department} eq \"Sales\""),
                &["Sales User"],
            ));
        }
    })
    .await;
    let mut groups = Vec::new();
    for name in [VPN, "finance"] {
        let g = up.create_group(name, &[]).await;
        groups.push((g["id"].as_str().unwrap().to_string(), name.to_string()));
    }
    let mut run = Run {
        up: &up,
        rng: StdRng::seed_from_u64(seed),
        users: Vec::new(),
        groups,
        n: 0,
    };
    for _ in 0..12 {
        run.create().await;
    }
    let mut through_groups = 0;
    for round in 0..3 {
        for _ in 0..40 {
            run.step().await;
        }
        if run.groups[0].1 != VPN && run.rng.random_bool(0.7) {
            run.rename_vpn().await;
        }
        up.drain(&apps).await;
        let people = people(&up).await;
        let want = expected(&people, ldap.is_some());
        let context = format!("seed {seed}, round {round}");
        let vpn = want.iter().filter(|g| g.2 == "vpn-group").count();
        eprintln!(
            "{context}: {} identities, {} grants ({vpn} through the group rule)",
            people.len(),
            want.len()
        );
        through_groups += vpn;
        assert_eq!(
            scim_grants(&down).await,
            only(&want, "crm"),
            "crm, {context}"
        );
        assert_eq!(table.grants(), only(&want, "engdb"), "engdb, {context}");
        assert_eq!(reported(&up).await, want, "access report, {context}");
        for app in &apps {
            let (status, report) = up.admin_post(&format!("/apps/{app}/reconcile")).await;
            assert_eq!(status, 200, "{report}");
            let c = &report["counts"];
            assert!(
                c["orphans"] == 0 && c["drifted"] == 0 && c["missing"] == 0,
                "reconciling {app}, {context}: {report:#}"
            );
        }
    }
    assert!(
        through_groups > 0,
        "seed {seed}: no grant ever came through the group rule"
    );
}

/// The seeds to run: `SCIM_TEST_SEED` alone when set.
fn seeds() -> Vec<u64> {
    match std::env::var("SCIM_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        Some(s) => vec![s],
        None => vec![7, 2026],
    }
}

#[tokio::test]
async fn rules_on_departments_and_groups_hold_in_every_app_through_random_runs() {
    for seed in seeds() {
        policy_run(seed).await;
    }
}
