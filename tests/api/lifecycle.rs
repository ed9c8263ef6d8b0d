//! Lifecycle policy: rules decide apps and entitlements; joiners, movers,
//! time-bound access, leavers with a grace period, the mass-deprovisioning
//! safety net, plan previews and the access report. Each app is a real
//! downstream gateway.

use scim_gateway::config::{LeaveAction, RuleSettings, Settings};
use serde_json::{Value, json};

use crate::delivery::{Downstream, downstream, scim_app};
use crate::helpers::*;

const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

pub(crate) fn rule(name: &str, app: &str, when: &str, ents: &[&str]) -> RuleSettings {
    RuleSettings {
        name: name.into(),
        when: when.into(),
        app: app.into(),
        entitlements: ents.iter().map(|e| e.to_string()).collect(),
        duration: None,
        expires_attribute: None,
    }
}

fn entitlements(user: &Value) -> Vec<String> {
    let mut e: Vec<String> = user["entitlements"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x["value"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    e.sort();
    e
}

fn audit_actions(app: &TestApp, id: &str) -> Vec<(String, Value)> {
    app.audit_rows()
        .into_iter()
        .filter(|r| r.resource_id.as_deref() == Some(id))
        .map(|r| {
            let d = r
                .detail
                .as_deref()
                .and_then(|d| serde_json::from_str(d).ok())
                .unwrap_or(Value::Null);
            (r.action, d)
        })
        .collect()
}

async fn gone(down: &Downstream, user_name: &str, what: &str) {
    eventually(20, what, || async {
        let n = down.users_named(user_name).await.len();
        if n == 0 {
            Ok(())
        } else {
            Err(format!("{n} accounts"))
        }
    })
    .await;
}

#[tokio::test]
async fn joiner_mover_contractor_expiry_and_leaver_across_three_apps() {
    let (crm, vpn, wiki) = (downstream().await, downstream().await, downstream().await);
    let apps = [
        ("crm", crm.base(), crm.token_file.clone()),
        ("vpn", vpn.base(), vpn.token_file.clone()),
        ("wiki", wiki.base(), wiki.token_file.clone()),
    ];
    let up = spawn_app_with(move |s: &mut Settings| {
        for (name, base, token) in &apps {
            let mut app = scim_app(name, base, token);
            match *name {
                "vpn" => app.on_leave = LeaveAction::Delete,
                "wiki" => app.delete_after = Some("2s".into()),
                _ => {}
            }
            s.apps.push(app);
        }
        s.rules = vec![
            rule(
                "sales-crm",
                "crm",
                &format!("{ENTERPRISE}:department eq \"Sales\" and active eq true"),
                &["Sales User"],
            ),
            RuleSettings {
                duration: Some("3s".into()),
                ..rule("contractor-vpn", "vpn", "userType eq \"Contractor\"", &[])
            },
            rule("staff-wiki", "wiki", "active eq true", &["Reader"]),
            rule(
                "engineering-wiki",
                "wiki",
                &format!("{ENTERPRISE}:department eq \"Engineering\""),
                &["Editor"],
            ),
        ];
    })
    .await;

    // Joiner: one convergence gives every account and entitlement the rules grant.
    let user = up
        .create_user_from(json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENTERPRISE],
            "userName": "jo@example.com", "active": true, "userType": "Contractor",
            ENTERPRISE: {"department": "Sales"}
        }))
        .await;
    let id = user["id"].as_str().unwrap().to_string();
    let in_crm = crm
        .await_user("jo@example.com", "the crm account", |u| u["active"] == true)
        .await;
    assert_eq!(entitlements(&in_crm), vec!["Sales User"]);
    vpn.await_user("jo@example.com", "the vpn account", |_| true)
        .await;
    let in_wiki = wiki
        .await_user("jo@example.com", "the wiki account", |_| true)
        .await;
    assert_eq!(entitlements(&in_wiki), vec!["Reader"]);

    // Mover: Sales → Engineering. The crm access no rule grants any more is
    // revoked (disabled, its entitlement gone); the wiki gains Editor.
    up.patch_ok(
        &format!("/Users/{id}"),
        json!([{"op": "replace", "path": format!("{ENTERPRISE}:department"), "value": "Engineering"}]),
    )
    .await;
    let in_crm = crm
        .await_user("jo@example.com", "crm revoked", |u| u["active"] == false)
        .await;
    assert!(entitlements(&in_crm).is_empty(), "{in_crm}");
    wiki.await_user("jo@example.com", "the new wiki entitlement", |u| {
        entitlements(u) == ["Editor", "Reader"]
    })
    .await;

    // Contractor expiry: the time-bound vpn grant ends by itself (no change
    // to the identity) and the vpn account is deleted (on_leave = delete).
    gone(&vpn, "jo@example.com", "the vpn expiry").await;

    // Leaver: disabled everywhere at once, then deleted after the wiki's grace.
    up.patch_ok(
        &format!("/Users/{id}"),
        json!([{"op": "replace", "path": "active", "value": false}]),
    )
    .await;
    let in_wiki = wiki
        .await_user("jo@example.com", "the wiki disable", |u| {
            u["active"] == false
        })
        .await;
    assert!(entitlements(&in_wiki).is_empty());
    gone(&wiki, "jo@example.com", "the wiki deletion after grace").await;
    // crm has no grace period: its account stays disabled.
    crm.await_user("jo@example.com", "crm still disabled", |u| {
        u["active"] == false
    })
    .await;

    // The audit trail explains every change with its rule or reason.
    let rows = audit_actions(&up, &id);
    let has = |action: &str, pred: &dyn Fn(&Value) -> bool| {
        rows.iter().any(|(a, d)| a == action && pred(d))
    };
    assert!(has("lifecycle.grant", &|d| d["rule"] == "sales-crm"
        && d["entitlement"] == "Sales User"));
    assert!(has("lifecycle.grant", &|d| d["rule"] == "contractor-vpn"
        && d["expires_at"].is_string()));
    assert!(has("lifecycle.revoke", &|d| d["rule"] == "sales-crm"
        && d["reason"] == "rule no longer matches"));
    assert!(has("lifecycle.grant", &|d| d["rule"] == "engineering-wiki"
        && d["entitlement"] == "Editor"));
    assert!(has("lifecycle.expire", &|d| d["rule"] == "contractor-vpn"));
    assert!(has("lifecycle.revoke", &|d| d["rule"] == "staff-wiki"
        && d["reason"] == "leaver"));
    assert!(has("delivery.delete", &|d| d["reason"]
        .as_str()
        .is_some_and(|r| r.contains("grace period over"))));
    assert!(has("delivery.disable", &|d| d["reason"]
        .as_str()
        .is_some_and(|r| r.starts_with("leaver"))));
}

#[tokio::test]
async fn reactivation_within_the_grace_period_restores_the_account() {
    let wiki = downstream().await;
    let (base, token) = (wiki.base(), wiki.token_file.clone());
    let up = spawn_app_with(move |s: &mut Settings| {
        let mut app = scim_app("wiki", &base, &token);
        app.delete_after = Some("1h".into());
        s.apps.push(app);
    })
    .await;
    let user = up.create_user("back@example.com").await;
    let id = user["id"].as_str().unwrap();
    let before = wiki
        .await_user("back@example.com", "the account", |_| true)
        .await;
    for (active, what) in [(false, "disabled"), (true, "restored")] {
        up.patch_ok(
            &format!("/Users/{id}"),
            json!([{"op": "replace", "path": "active", "value": active}]),
        )
        .await;
        let now = wiki
            .await_user("back@example.com", what, |u| u["active"] == active)
            .await;
        assert_eq!(now["id"], before["id"], "the same account, not a new one");
    }
}

#[tokio::test]
async fn a_mass_deprovisioning_is_quarantined_until_an_admin_decides() {
    let crm = downstream().await;
    let (base, token) = (crm.base(), crm.token_file.clone());
    let up = spawn_app_with(move |s: &mut Settings| {
        let mut app = scim_app("crm", &base, &token);
        app.concurrency = Some(1);
        app.safety.max_deprovisions = Some(2);
        s.apps.push(app);
    })
    .await;
    let mut ids = Vec::new();
    for i in 0..6 {
        let u = up.create_user(&format!("m{i}@example.com")).await;
        ids.push(u["id"].as_str().unwrap().to_string());
    }
    eventually(20, "six accounts", || async {
        let n = crm.app.user_count().await;
        if n == 6 { Ok(()) } else { Err(format!("{n}")) }
    })
    .await;
    // A misconfigured IdP deactivates everyone.
    for id in &ids {
        up.patch_ok(
            &format!("/Users/{id}"),
            json!([{"op": "replace", "path": "active", "value": false}]),
        )
        .await;
    }
    let summary = eventually(20, "the quarantine", || async {
        let (_, s) = up.admin_get("/apps/crm").await;
        if s["paused"] == true {
            Ok(s)
        } else {
            Err(s.to_string())
        }
    })
    .await;
    assert!(
        summary["pausedReason"]
            .as_str()
            .unwrap()
            .starts_with("quarantine"),
        "{summary}"
    );
    let disabled = |crm: &Downstream| {
        let app = crm.app.clone();
        async move {
            let list = app
                .list_ok("/Users", &[("filter", "active eq false")])
                .await;
            list["totalResults"].as_u64().unwrap()
        }
    };
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    assert_eq!(disabled(&crm).await, 2, "only the allowance went through");
    assert!(
        up.audit_rows()
            .iter()
            .any(|r| r.action == "lifecycle.quarantine")
    );
    // Discarding drops the held deprovisions; the accounts stay.
    let (status, body) = up.admin_post("/apps/crm/quarantine/discard").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["discarded"].as_array().unwrap().len(), 4, "{body}");
    assert_eq!(body["paused"], false);
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    assert_eq!(disabled(&crm).await, 2);

    // A second wave, released this time: everything goes through.
    for id in &ids {
        up.patch_ok(
            &format!("/Users/{id}"),
            json!([{"op": "replace", "path": "nickName", "value": "again"}]),
        )
        .await;
    }
    eventually(20, "the second quarantine", || async {
        let (_, s) = up.admin_get("/apps/crm").await;
        if s["paused"] == true {
            Ok(())
        } else {
            Err(s.to_string())
        }
    })
    .await;
    let (status, _) = up.admin_post("/apps/crm/quarantine/release").await;
    assert_eq!(status, 200);
    eventually(20, "all disabled after release", || async {
        let n = disabled(&crm).await;
        if n == 6 { Ok(()) } else { Err(format!("{n}")) }
    })
    .await;
}

#[tokio::test]
async fn plan_previews_a_configuration_and_the_access_report_explains_access() {
    let crm = downstream().await;
    let (base, token) = (crm.base(), crm.token_file.clone());
    let up = spawn_app_with(move |s: &mut Settings| {
        s.apps.push(scim_app("crm", &base, &token));
        s.rules = vec![rule("sales-crm", "crm", "title eq \"Sales\"", &["Seller"])];
    })
    .await;
    let seller = up
        .create_user_from(json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": "sal@example.com", "title": "Sales"
        }))
        .await;
    let eng = up
        .create_user_from(json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": "eng@example.com", "title": "Engineer"
        }))
        .await;
    crm.await_user("sal@example.com", "the seller's account", |_| true)
        .await;

    // The access report: who has what, why and since when. (Grants are
    // recorded in the transaction after the app answered, so wait for them.)
    let csv = eventually(20, "the seller's grants in the report", || async {
        let res = up
            .client
            .get(format!("{}/admin/reports/access?format=csv", up.address))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        let status = res.status();
        let text = res.text().await.unwrap();
        if status == 200 && text.lines().count() == 3 {
            Ok(text)
        } else {
            Err(format!("{status}: {text}"))
        }
    })
    .await;
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "app,identity,userName,entitlement,rule,granted_at,expires_at"
    );
    assert!(lines.iter().any(|l| l.starts_with(&format!(
        "crm,{},sal@example.com,Seller,sales-crm,",
        seller["id"].as_str().unwrap()
    ))));
    assert!(!csv.contains("eng@example.com"));

    // A candidate configuration: engineers instead of sellers.
    let candidate = format!(
        r#"
        [[apps]]
        name = "crm"
        tenant = "acme"
        [apps.adapter]
        kind = "scim"
        base_url = "{}"
        token_file = "{}"
        [[rules]]
        name = "eng-crm"
        when = 'title eq "Engineer"'
        app = "crm"
        entitlements = ["Builder"]
        "#,
        crm.base(),
        crm.token_file.display()
    );
    let res = up
        .client
        .post(format!("{}/admin/plan", up.address))
        .bearer_auth(ADMIN_TOKEN)
        .body(candidate.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let plan: Value = res.json().await.unwrap();
    let crm_plan = &plan["apps"]["crm"];
    assert_eq!(
        crm_plan["counts"],
        json!({"create": 1, "disable": 1}),
        "{plan}"
    );
    let ops = crm_plan["operations"].as_array().unwrap();
    let create = ops.iter().find(|o| o["op"] == "create").unwrap();
    assert_eq!(create["id"], eng["id"]);
    assert_eq!(
        create["grants_added"],
        json!(["eng-crm/", "eng-crm/Builder"])
    );
    let disable = ops.iter().find(|o| o["op"] == "disable").unwrap();
    assert_eq!(disable["id"], seller["id"]);
    assert_eq!(disable["reason"], "no rule grants access");
    // Nothing happened.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(crm.users_named("eng@example.com").await.is_empty());
    crm.await_user("sal@example.com", "the seller untouched", |u| {
        u["active"] != false
    })
    .await;
    // The same from the command line, on the gateway's database: the plan
    // of the candidate equals the admin API's, and the current
    // configuration (converged) plans nothing.
    let files = tempfile::tempdir().unwrap();
    let database = format!("[database]\nurl = \"{}\"\n", up.database_url);
    let candidate_file = write_file(&files, "candidate.toml", &candidate);
    let current = format!(
        "{database}{}",
        candidate
            .replace("eng-crm", "sales-crm")
            .replace("Engineer", "Sales")
            .replace("Builder", "Seller")
    );
    let (code, out, err) = run_cli(&current, &["plan", "--format", "json", &candidate_file]);
    assert_eq!(code, 0, "{err}");
    let cli_plan: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(cli_plan["apps"], plan["apps"]);
    assert_eq!(cli_plan["unmanaged"], json!([]));
    let (code, text, err) = run_cli(&current, &["plan", "--exit-code", &candidate_file]);
    assert_eq!(code, 2, "something would change: {text} {err}");
    let mut lines: Vec<&str> = text.lines().collect();
    lines[1..].sort();
    assert_eq!(
        lines,
        [
            "crm: 1 create, 1 disable".to_string(),
            format!(
                "  create   eng@example.com ({}): granted by eng-crm; +account (eng-crm); \
                 +Builder (eng-crm)",
                eng["id"].as_str().unwrap()
            ),
            format!(
                "  disable  sal@example.com ({}): no rule grants access; changes active, \
                 entitlements; -account (sales-crm); -Seller (sales-crm)",
                seller["id"].as_str().unwrap()
            ),
        ]
    );
    let (code, text, err) = run_cli(&current, &["plan", "--exit-code"]);
    assert_eq!(
        (code, text.as_str()),
        (0, "crm: no changes\nNothing would change.\n"),
        "{err}"
    );
    let (code, text, _) = run_cli(
        &current,
        &["plan", &write_file(&files, "no-apps.toml", &database)],
    );
    assert_eq!(code, 0);
    assert!(text.contains("crm: no longer configured"), "{text}");
    let (code, out, err) = run_cli(&current, &["access-report"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, csv, "the CLI writes the report the admin API serves");
    assert!(err.contains("2 grants in force"), "{err}");
    let (code, out, _) = run_cli(&current, &["access-report", "--format", "ndjson"]);
    assert_eq!(code, 0);
    let rows: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|r| r["userName"] == "sal@example.com"));
    let (code, out, _) = run_cli(&current, &["access-report", "--tenant", "globex"]);
    assert_eq!(
        (code, out.lines().count()),
        (0, 1),
        "only the header: {out}"
    );
    let (code, _, err) = run_cli(&current, &["access-report", "--format", "xlsx"]);
    assert_ne!(code, 0);
    assert!(err.contains("format must be csv or ndjson"), "{err}");
    let (code, _, err) = run_cli(
        &current,
        &[
            "plan",
            &write_file(&files, "broken.toml", "[[rules]]\nname = 1\n"),
        ],
    );
    assert_ne!(code, 0);
    assert!(
        err.contains("broken.toml") && err.contains("expected a string"),
        "{err}"
    );

    // A broken candidate is a clear 400.
    let res = up
        .client
        .post(format!("{}/admin/plan", up.address))
        .bearer_auth(ADMIN_TOKEN)
        .body("[[rules]]\nname = \"x\"\nwhen = \"title eq\"\napp = \"crm\"\n")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
}

/// Writes `text` to `dir/name` and returns the path.
fn write_file(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// One step of the random history.
#[derive(Debug, Clone)]
enum Step {
    Create(usize, bool),
    Department(usize, bool),
    Active(usize, bool),
    Delete(usize),
}

fn step() -> impl proptest::strategy::Strategy<Value = Step> {
    use proptest::prelude::*;
    prop_oneof![
        (0..4usize, any::<bool>()).prop_map(|(i, s)| Step::Create(i, s)),
        (0..4usize, any::<bool>()).prop_map(|(i, s)| Step::Department(i, s)),
        (0..4usize, any::<bool>()).prop_map(|(i, a)| Step::Active(i, a)),
        (0..4usize).prop_map(Step::Delete),
    ]
}

/// The model: per user slot, whether it exists, is in Sales, is active.
#[derive(Debug, Clone, Copy, Default)]
struct Model {
    id: Option<usize>,
    sales: bool,
    active: bool,
}

async fn run_history(steps: Vec<Step>) -> Result<(), String> {
    let (crm, wiki) = (downstream().await, downstream().await);
    let targets = [
        ("crm", crm.base(), crm.token_file.clone()),
        ("wiki", wiki.base(), wiki.token_file.clone()),
    ];
    let up = spawn_app_with(move |s: &mut Settings| {
        for (name, base, token) in &targets {
            let mut app = scim_app(name, base, token);
            if *name == "crm" {
                app.on_leave = LeaveAction::Delete;
            }
            s.apps.push(app);
        }
        s.rules = vec![
            rule("sales-crm", "crm", "title eq \"Sales\"", &["Seller"]),
            rule("staff-wiki", "wiki", "active eq true", &["Reader"]),
        ];
    })
    .await;
    let mut ids: [Option<String>; 4] = Default::default();
    let mut model = [Model::default(); 4];
    let title = |sales: bool| if sales { "Sales" } else { "Engineer" };
    for (n, s) in steps.iter().enumerate() {
        match *s {
            Step::Create(i, sales) if ids[i].is_none() => {
                let u = up
                    .create_user_from(json!({
                        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                        "userName": format!("p{i}-{n}@example.com"), "active": true,
                        "title": title(sales)
                    }))
                    .await;
                ids[i] = Some(u["id"].as_str().unwrap().to_string());
                model[i] = Model {
                    id: Some(i),
                    sales,
                    active: true,
                };
            }
            Step::Department(i, sales) if ids[i].is_some() => {
                let id = ids[i].clone().unwrap();
                up.patch_ok(
                    &format!("/Users/{id}"),
                    json!([{"op": "replace", "path": "title", "value": title(sales)}]),
                )
                .await;
                model[i].sales = sales;
            }
            Step::Active(i, active) if ids[i].is_some() => {
                let id = ids[i].clone().unwrap();
                up.patch_ok(
                    &format!("/Users/{id}"),
                    json!([{"op": "replace", "path": "active", "value": active}]),
                )
                .await;
                model[i].active = active;
            }
            Step::Delete(i) if ids[i].is_some() => {
                let id = ids[i].take().unwrap();
                assert_eq!(up.delete(&format!("/Users/{id}")).await.status(), 204);
                model[i] = Model::default();
            }
            _ => {}
        }
    }
    // Drain.
    up.drain(&["crm", "wiki"]).await;
    // Compare each app with what the rules say.
    for (app, down) in [("crm", &crm), ("wiki", &wiki)] {
        let list = down.app.list_ok("/Users", &[("count", "200")]).await;
        let accounts = list["Resources"].as_array().cloned().unwrap_or_default();
        for slot in 0..4 {
            let id = ids[slot].clone();
            let m = model[slot];
            let mine: Vec<&Value> = accounts
                .iter()
                .filter(|a| id.is_some() && a["externalId"].as_str() == id.as_deref())
                .collect();
            let granted = m.id.is_some()
                && m.active
                && match app {
                    "crm" => m.sales,
                    _ => true,
                };
            let want_ent = if app == "crm" { "Seller" } else { "Reader" };
            match (granted, mine.as_slice()) {
                (true, [a]) if a["active"] != false && entitlements(a) == [want_ent] => {}
                (true, other) => {
                    return Err(format!(
                        "{app}: slot {slot} {m:?} wants an account with {want_ent}, found {other:?}"
                    ));
                }
                (false, []) => {}
                // A leaver keeps a disabled account without entitlements.
                (false, [a])
                    if !m.active
                        && m.id.is_some()
                        && a["active"] == false
                        && entitlements(a).is_empty() => {}
                (false, other) => {
                    return Err(format!(
                        "{app}: slot {slot} {m:?} wants no access, found {other:?}"
                    ));
                }
            }
        }
        // No orphans: every account belongs to a live identity.
        for a in &accounts {
            let ext = a["externalId"].as_str().unwrap_or("");
            if !ids.iter().flatten().any(|id| id == ext) {
                return Err(format!("{app}: orphaned account {a}"));
            }
        }
    }
    Ok(())
}

#[test]
fn any_history_converges_to_exactly_what_the_rules_say() {
    use proptest::test_runner::{Config, TestCaseError, TestRunner};
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(8);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&proptest::collection::vec(step(), 1..12), |steps| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(run_history(steps)).map_err(TestCaseError::fail)
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}
