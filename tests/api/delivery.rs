//! Fan-out: changes pushed by the IdP reach downstream apps. The downstream
//! SCIM app is a second gateway (a real SCIM server); the webhook receiver
//! is a real HTTP server that checks signatures.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use scim_gateway::config::{
    AdapterSettings, AppSettings, LeaveAction, MappingSpec, ScimAdapterSettings, Settings,
    TokenSettings, UpdateMethod, WebhookSettings,
};
use serde_json::{Value, json};

use crate::helpers::*;

/// A downstream gateway and a file holding its token.
pub struct Downstream {
    pub app: TestApp,
    pub token_file: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

pub async fn downstream() -> Downstream {
    let app = spawn_app().await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, ACME_TOKEN).unwrap();
    Downstream {
        app,
        token_file,
        _dir: dir,
    }
}

/// An app pushing tenant `acme`'s identities to a SCIM base URL.
pub fn scim_app(name: &str, base_url: &str, token_file: &std::path::Path) -> AppSettings {
    AppSettings {
        name: name.into(),
        tenant: "acme".into(),
        adapter: AdapterSettings::Scim(ScimAdapterSettings {
            base_url: base_url.into(),
            token_env: None,
            token_file: Some(token_file.to_path_buf()),
            update: UpdateMethod::Patch,
        }),
        scope: None,
        groups: false,
        group_scope: None,
        on_leave: LeaveAction::Disable,
        mapping: BTreeMap::new(),
        pull_tokens: Vec::new(),
        timeout_secs: Some(3),
        ..AppSettings::default()
    }
}

impl Downstream {
    pub fn base(&self) -> String {
        format!("{}/scim/v2", self.app.address)
    }

    /// The downstream users with this userName.
    pub async fn users_named(&self, user_name: &str) -> Vec<Value> {
        let list = self
            .app
            .list_ok(
                "/Users",
                &[("filter", &format!("userName eq \"{user_name}\""))],
            )
            .await;
        list["Resources"].as_array().cloned().unwrap_or_default()
    }

    /// Waits until exactly one downstream user has `user_name` and `check` holds for it.
    pub async fn await_user(
        &self,
        user_name: &str,
        what: &str,
        check: impl Fn(&Value) -> bool,
    ) -> Value {
        eventually(20, what, || async {
            let users = self.users_named(user_name).await;
            match users.as_slice() {
                [one] if check(one) => Ok(one.clone()),
                other => Err(format!("{other:?}")),
            }
        })
        .await
    }
}

fn delivery_actions(app: &TestApp, id: &str) -> Vec<String> {
    app.audit_rows()
        .into_iter()
        .filter(|r| r.resource_id.as_deref() == Some(id) && r.action.starts_with("delivery."))
        .map(|r| format!("{} {}", r.action, r.outcome))
        .collect()
}

#[tokio::test]
async fn joiner_mover_leaver_converge_a_downstream_scim_app() {
    let down = downstream().await;
    let base = down.base();
    let token = down.token_file.clone();
    let up = spawn_app_with(|s: &mut Settings| {
        let mut app = scim_app("crm", &base, &token);
        app.groups = true;
        s.apps.push(app);
    })
    .await;

    // Joiner.
    let user = up
        .create_user_from(json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": "ada@example.com", "title": "Engineer", "active": true,
            "name": {"givenName": "Ada", "familyName": "Lovelace"}
        }))
        .await;
    let id = user["id"].as_str().unwrap().to_string();
    let remote = down
        .await_user("ada@example.com", "the joiner downstream", |u| {
            u["title"] == "Engineer"
        })
        .await;
    assert_eq!(remote["externalId"], id, "externalId is the gateway's id");
    assert_eq!(remote["name"]["familyName"], "Lovelace");
    let remote_id = remote["id"].as_str().unwrap().to_string();

    // Mover: an attribute change is sent as a PATCH of what changed.
    up.patch_ok(
        &format!("/Users/{id}"),
        json!([{"op": "replace", "path": "title", "value": "Manager"}]),
    )
    .await;
    down.await_user("ada@example.com", "the title change", |u| {
        u["title"] == "Manager"
    })
    .await;

    // Group membership follows, with the downstream ids.
    let group = up.create_group("Engineering", &[&id]).await;
    let gid = group["id"].as_str().unwrap().to_string();
    let remote_group = eventually(20, "the group downstream", || async {
        let list = down
            .app
            .list_ok(
                "/Groups",
                &[
                    ("filter", "displayName eq \"Engineering\""),
                    ("attributes", "displayName,externalId,members"),
                ],
            )
            .await;
        match list["Resources"].as_array().map(Vec::as_slice) {
            Some([g]) if g["members"].as_array().is_some_and(|m| m.len() == 1) => Ok(g.clone()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert_eq!(remote_group["members"][0]["value"], remote_id);
    assert_eq!(remote_group["externalId"], gid);

    // Leaver: deactivation disables, deletion deletes.
    up.patch_ok(
        &format!("/Users/{id}"),
        json!([{"op": "replace", "path": "active", "value": false}]),
    )
    .await;
    down.await_user("ada@example.com", "the disable", |u| u["active"] == false)
        .await;
    assert_eq!(up.delete(&format!("/Users/{id}")).await.status(), 204);
    up.drain(&["crm"]).await;
    assert!(down.users_named("ada@example.com").await.is_empty());

    // The audit trail has one row per adapter operation, in order.
    let actions = delivery_actions(&up, &id);
    assert!(
        actions
            .last()
            .is_some_and(|l| l.starts_with("delivery.delete")),
        "{actions:?}"
    );
    assert_eq!(
        actions.first().map(String::as_str),
        Some("delivery.create success")
    );
    assert!(
        actions.contains(&"delivery.update success".to_string()),
        "{actions:?}"
    );
    assert!(
        actions.contains(&"delivery.disable success".to_string()),
        "{actions:?}"
    );
    // Nothing is left pending once converged.
    let (status, summary) = up.admin_get("/apps/crm").await;
    assert_eq!(status, 200);
    up.drain(&["crm"]).await;
    assert_eq!(summary["name"], "crm");
}

#[tokio::test]
async fn an_existing_downstream_account_is_adopted_not_duplicated() {
    let down = downstream().await;
    let existing = down.app.create_user("grace@example.com").await;
    let base = down.base();
    let token = down.token_file.clone();
    let up = spawn_app_with(|s: &mut Settings| s.apps.push(scim_app("crm", &base, &token))).await;
    let user = up
        .create_user_from(json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": "grace@example.com", "title": "Admiral"
        }))
        .await;
    let id = user["id"].as_str().unwrap();
    let linked = down
        .await_user("grace@example.com", "the adopted account converged", |u| {
            u["title"] == "Admiral"
        })
        .await;
    assert_eq!(
        linked["id"], existing["id"],
        "the existing account was linked"
    );
    let (status, account) = up.admin_get(&format!("/apps/crm/accounts/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(account["remote_id"], existing["id"]);
    assert_eq!(down.app.user_count().await, 1);
}

#[tokio::test]
async fn scope_and_mapping_decide_who_gets_which_account() {
    let down = downstream().await;
    let base = down.base();
    let token = down.token_file.clone();
    let up = spawn_app_with(|s: &mut Settings| {
        let mut app = scim_app("crm", &base, &token);
        app.scope = Some("title eq \"Sales\"".into());
        app.on_leave = LeaveAction::Delete;
        app.mapping = toml::from_str::<BTreeMap<String, MappingSpec>>(
            r#"
            userName = { from = "userName", transform = "lower" }
            displayName = { join = ["name.givenName", "name.familyName"] }
            title = "title"
            "#,
        )
        .unwrap();
        s.apps.push(app);
    })
    .await;
    let seller = up
        .create_user_from(json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": "Sam@Example.com", "title": "Sales",
            "name": {"givenName": "Sam", "familyName": "Seller"}, "nickName": "not mapped"
        }))
        .await;
    let builder = up
        .create_user_from(json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": "bob@example.com", "title": "Engineer"
        }))
        .await;
    let remote = down
        .await_user("sam@example.com", "the in-scope user", |_| true)
        .await;
    assert_eq!(remote["userName"], "sam@example.com");
    assert_eq!(remote["displayName"], "Sam Seller");
    assert!(
        remote.get("nickName").is_none(),
        "unmapped attributes stay home"
    );
    // The out-of-scope user converges to "no account" without any call.
    let bid = builder["id"].as_str().unwrap();
    eventually(10, "the out-of-scope job to finish", || async {
        let (s, _) = up.admin_get(&format!("/apps/crm/jobs/{bid}")).await;
        if s == 404 {
            Ok(())
        } else {
            Err(format!("{s}"))
        }
    })
    .await;
    assert!(down.users_named("bob@example.com").await.is_empty());
    // Leaving the scope deletes (on_leave = delete).
    let sid = seller["id"].as_str().unwrap();
    up.patch_ok(
        &format!("/Users/{sid}"),
        json!([{"op": "replace", "path": "title", "value": "Marketing"}]),
    )
    .await;
    eventually(20, "the leaver's deletion", || async {
        let n = down.users_named("sam@example.com").await.len();
        if n == 0 { Ok(()) } else { Err(format!("{n}")) }
    })
    .await;
}

#[tokio::test]
async fn rejected_operations_become_dead_letters_an_admin_can_retry() {
    let down = downstream().await;
    let base = down.base();
    let token = down.token_file.clone();
    let up = spawn_app_with(|s: &mut Settings| {
        let mut app = scim_app("crm", &base, &token);
        // No userName in the account: the downstream refuses it with 400.
        app.mapping =
            toml::from_str::<BTreeMap<String, MappingSpec>>(r#"title = "title""#).unwrap();
        s.apps.push(app);
    })
    .await;
    let user = up.create_user("dora@example.com").await;
    let id = user["id"].as_str().unwrap().to_string();
    let job = eventually(20, "a dead letter", || async {
        let (_, j) = up.admin_get(&format!("/apps/crm/jobs/{id}")).await;
        if j["state"] == "dead" {
            Ok(j)
        } else {
            Err(j.to_string())
        }
    })
    .await;
    assert_eq!(job["last_status"], 400);
    assert!(
        job["last_error"].as_str().unwrap().contains("HTTP 400"),
        "{job}"
    );
    assert_eq!(job["attempts"], 1, "a permanent error is not retried");
    let (_, dead) = up.admin_get("/apps/crm/jobs?state=dead").await;
    assert_eq!(dead["jobs"].as_array().unwrap().len(), 1);
    let audit = delivery_actions(&up, &id);
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert!(audit[0].starts_with("delivery.create failure"), "{audit:?}");

    // Retrying all dead letters runs the job again (and it fails again).
    let (status, body) = up.admin_post("/apps/crm/retry").await;
    assert_eq!((status, body["retried"].clone()), (200, json!(1)));
    eventually(20, "the retried job to fail again", || async {
        let (_, j) = up.admin_get(&format!("/apps/crm/jobs/{id}")).await;
        if j["state"] == "dead" && delivery_actions(&up, &id).len() == 2 {
            Ok(())
        } else {
            Err(j.to_string())
        }
    })
    .await;
    // A SCIM token does not open the admin API, and unknown apps are 404.
    let res = up
        .client
        .get(format!("{}/admin/apps", up.address))
        .bearer_auth(ACME_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(up.admin_get("/apps/nope").await.0, 404);
}

#[tokio::test]
async fn a_paused_app_holds_its_jobs_until_resumed() {
    let down = downstream().await;
    let base = down.base();
    let token = down.token_file.clone();
    let up = spawn_app_with(|s: &mut Settings| s.apps.push(scim_app("crm", &base, &token))).await;
    let (status, summary) = up.admin_post("/apps/crm/pause").await;
    assert_eq!((status, summary["paused"].clone()), (200, json!(true)));
    up.create_user("paula@example.com").await;
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    assert!(
        down.users_named("paula@example.com").await.is_empty(),
        "paused apps get nothing"
    );
    let (_, summary) = up.admin_get("/apps/crm").await;
    assert_eq!(summary["jobs"]["pending"], 1);
    up.admin_post("/apps/crm/resume").await;
    down.await_user("paula@example.com", "delivery after resume", |_| true)
        .await;
    let actions: Vec<String> = up.audit_rows().into_iter().map(|r| r.action).collect();
    assert!(actions.contains(&"admin.app.pause".to_string()));
    assert!(actions.contains(&"admin.app.resume".to_string()));
}

#[tokio::test]
async fn app_pull_tokens_see_only_their_scope_and_cannot_write() {
    let up = spawn_app_with(|s: &mut Settings| {
        s.apps.push(AppSettings {
            name: "wiki".into(),
            tenant: "acme".into(),
            adapter: AdapterSettings::None,
            scope: Some("title eq \"Engineer\"".into()),
            groups: true,
            group_scope: None,
            on_leave: LeaveAction::Disable,
            mapping: toml::from_str::<BTreeMap<String, MappingSpec>>(
                r#"
                userName = "userName"
                mail = 'emails[type eq "work"].value'
                "#,
            )
            .unwrap(),
            pull_tokens: vec![TokenSettings {
                id: "wiki-pull".into(),
                sha256: Some(hex::encode(scim_gateway::config::hash_token(
                    "wiki-pull-token",
                ))),
                secret_env: None,
            }],
            ..AppSettings::default()
        });
    })
    .await;
    let eng = up
        .create_user_from(json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": "eve", "title": "Engineer", "nickName": "secret-ish",
            "emails": [{"value": "eve@corp.com", "type": "work"}]
        }))
        .await;
    let other = up
        .create_user_from(json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": "mallory", "title": "Sales"
        }))
        .await;
    let group = up
        .create_group(
            "all",
            &[eng["id"].as_str().unwrap(), other["id"].as_str().unwrap()],
        )
        .await;
    let pull = up.with_token("wiki-pull-token");
    let list = pull.list_ok("/Users", &[]).await;
    assert_eq!(list["totalResults"], 1);
    let seen = &list["Resources"][0];
    assert_eq!(seen["userName"], "eve");
    assert_eq!(seen["mail"], "eve@corp.com");
    assert!(
        seen.get("nickName").is_none(),
        "the mapping decides what the app sees"
    );
    assert_eq!(seen["id"], eng["id"]);
    // Filters combine with the scope.
    let filtered = pull
        .list_ok("/Users", &[("filter", "userName eq \"mallory\"")])
        .await;
    assert_eq!(filtered["totalResults"], 0);
    assert_eq!(
        pull.get(&format!("/Users/{}", other["id"].as_str().unwrap()))
            .await
            .status(),
        404
    );
    // Group members are limited to the scope too.
    let g = pull
        .get_ok(&format!("/Groups/{}", group["id"].as_str().unwrap()))
        .await;
    let members = g["members"].as_array().unwrap();
    assert_eq!(members.len(), 1);
    assert_eq!(members[0]["value"], eng["id"]);
    // Every write is 403 and changes nothing.
    let res = pull
        .post(
            "/Users",
            &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "x"}),
        )
        .await;
    assert_scim_error(res, 403, None).await;
    let res = pull
        .patch(
            &format!("/Users/{}", eng["id"].as_str().unwrap()),
            &patch_op(json!([{"op": "replace", "path": "title", "value": "x"}])),
        )
        .await;
    assert_scim_error(res, 403, None).await;
    let res = pull
        .delete(&format!("/Users/{}", eng["id"].as_str().unwrap()))
        .await;
    assert_scim_error(res, 403, None).await;
    let res = pull
        .post(
            "/Bulk",
            &json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"], "Operations": []}),
        )
        .await;
    assert_scim_error(res, 403, None).await;
    assert_eq!(up.user_count().await, 2);
}

/// One received event: id, type, whether both signatures verified, payload.
type Event = (String, String, String, Value);

/// A webhook receiver that records events and answers from a script.
#[derive(Clone, Default)]
struct Receiver {
    events: Arc<Mutex<Vec<Event>>>,
    failures_left: Arc<Mutex<u32>>,
}

async fn receive(
    req: actix_web::HttpRequest,
    body: actix_web::web::Bytes,
    state: actix_web::web::Data<Receiver>,
) -> actix_web::HttpResponse {
    let h = |n: &str| {
        req.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let body = String::from_utf8_lossy(&body).to_string();
    let payload: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    // Verify the signature the way a receiver would.
    let expected = |secret: &[u8]| {
        scim_gateway::adapters::webhook::sign(
            &[secret.to_vec()],
            &h("webhook-id"),
            h("webhook-timestamp").parse().unwrap_or(0),
            &body,
        )
    };
    let sigs: Vec<String> = h("webhook-signature")
        .split(' ')
        .map(str::to_string)
        .collect();
    let ok = sigs.contains(&expected(b"old-secret-0123456789"))
        && sigs.contains(&expected(b"new-secret-0123456789"));
    state.events.lock().unwrap().push((
        h("webhook-id"),
        payload["type"].as_str().unwrap_or("").to_string(),
        ok.to_string(),
        payload,
    ));
    let mut left = state.failures_left.lock().unwrap();
    if *left > 0 {
        *left -= 1;
        return actix_web::HttpResponse::ServiceUnavailable().finish();
    }
    actix_web::HttpResponse::NoContent().finish()
}

#[tokio::test]
async fn webhook_events_are_signed_with_both_secrets_and_retried_with_the_same_id() {
    let receiver = Receiver::default();
    *receiver.failures_left.lock().unwrap() = 2;
    let data = actix_web::web::Data::new(receiver.clone());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = actix_web::HttpServer::new(move || {
        actix_web::App::new()
            .app_data(data.clone())
            .route("/hook", actix_web::web::post().to(receive))
    })
    .workers(1)
    .listen(listener)
    .unwrap()
    .run();
    tokio::spawn(server);
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("old");
    let new = dir.path().join("new");
    std::fs::write(&old, "old-secret-0123456789").unwrap();
    std::fs::write(&new, "new-secret-0123456789\n").unwrap();
    let url = format!("http://127.0.0.1:{port}/hook");
    let up = spawn_app_with(|s: &mut Settings| {
        let mut app = scim_app("hr-bot", "http://unused", &old);
        app.adapter = AdapterSettings::Webhook(WebhookSettings {
            url,
            secrets_env: Vec::new(),
            secret_files: vec![old.clone(), new.clone()],
        });
        s.apps.push(app);
    })
    .await;
    let user = up.create_user("wes@example.com").await;
    let id = user["id"].as_str().unwrap().to_string();
    let types = |n: usize| {
        let receiver = receiver.clone();
        move || {
            let receiver = receiver.clone();
            async move {
                let ev = receiver.events.lock().unwrap().clone();
                if ev.len() >= n {
                    Ok(ev)
                } else {
                    Err(format!(
                        "{:?}",
                        ev.iter().map(|e| e.1.clone()).collect::<Vec<_>>()
                    ))
                }
            }
        }
    };
    // Two 503s, then the create lands: three deliveries of one event.
    let events = eventually(30, "the created event", types(3)).await;
    assert!(events.iter().all(|e| e.1 == "user.created"), "{events:?}");
    assert!(
        events.iter().all(|e| e.0 == events[0].0),
        "retries keep the event id"
    );
    assert!(events[0].0.starts_with("evt_"));
    assert_eq!(events[2].3["data"]["id"], id);
    assert_eq!(
        events[2].3["data"]["account"]["userName"],
        "wes@example.com"
    );
    up.patch_ok(
        &format!("/Users/{id}"),
        json!([{"op": "replace", "path": "active", "value": false}]),
    )
    .await;
    let events = eventually(30, "the disabled event", types(4)).await;
    assert_eq!(events[3].1, "user.disabled");
    assert_eq!(events[3].3["data"]["changed"], json!(["active"]));
    assert_eq!(up.delete(&format!("/Users/{id}")).await.status(), 204);
    let events = eventually(30, "the deleted event", types(5)).await;
    assert_eq!(events[4].1, "user.deleted");
    assert!(
        events.iter().all(|e| e.2 == "true"),
        "every event carries both signatures"
    );
    let mut ids: Vec<&str> = events.iter().skip(2).map(|e| e.0.as_str()).collect();
    ids.dedup();
    assert_eq!(ids.len(), 3, "distinct operations have distinct ids");
}

#[tokio::test]
#[ignore = "needs PostgreSQL (SCIM_TEST_POSTGRES_URL); scripts/test runs it in its PostgreSQL pass"]
async fn two_processes_on_one_postgres_database_deliver_each_change_once() {
    assert!(
        std::env::var(PG_ENV).is_ok(),
        "several gateways share a database only on PostgreSQL: set {PG_ENV}"
    );
    let down = downstream().await;
    let base = down.base();
    let token = down.token_file.clone();
    let first = spawn_app_with(|s: &mut Settings| {
        let mut app = scim_app("crm", &base, &token);
        app.concurrency = Some(4);
        s.apps.push(app);
    })
    .await;
    let url = first.database_url.clone();
    let (base2, token2) = (down.base(), down.token_file.clone());
    let second = spawn_app_with(move |s: &mut Settings| {
        s.database.url = url;
        let mut app = scim_app("crm", &base2, &token2);
        app.concurrency = Some(4);
        s.apps.push(app);
    })
    .await;
    // Writes arrive at both processes; both run workers for the same app.
    let mut ids = Vec::new();
    for i in 0..40 {
        let gw = if i % 2 == 0 { &first } else { &second };
        let user = gw.create_user(&format!("twin{i}@example.com")).await;
        ids.push(user["id"].as_str().unwrap().to_string());
    }
    first.drain(&["crm"]).await;
    assert_eq!(down.app.user_count().await, 40);
    // Each identity was created downstream by exactly one worker: one
    // successful create, never an adoption (which would mean a second POST).
    let rows = first.audit_rows();
    for id in &ids {
        let creates: Vec<_> = rows
            .iter()
            .filter(|r| r.resource_id.as_deref() == Some(id.as_str()))
            .filter(|r| r.action == "delivery.create")
            .collect();
        assert_eq!(creates.len(), 1, "{id}: {creates:?}");
        assert_eq!(creates[0].outcome, "success");
        assert!(
            !creates[0]
                .detail
                .as_deref()
                .unwrap_or("")
                .contains("adopted")
        );
    }
    // Both processes took part (each is woken by its own writes).
    let workers: std::collections::HashSet<String> = rows
        .iter()
        .filter(|r| r.action == "delivery.create")
        .filter_map(|r| {
            let d: Value = serde_json::from_str(r.detail.as_deref()?).ok()?;
            d["worker"].as_str().map(str::to_string)
        })
        .collect();
    assert_eq!(workers.len(), 2, "{workers:?}");
}
