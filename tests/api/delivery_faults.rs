//! Fan-out under failure: downstream apps that are down, slow, throttling
//! or answering garbage, and a gateway killed mid-delivery.
//!
//! The misbehaving app is a "chaos proxy" in front of a real downstream
//! gateway: it answers from a script of faults, one per request, and
//! forwards everything else. A downstream that is down is a port where
//! nothing listens until a gateway is started on it. The crash test runs the
//! real binary and kills it with SIGKILL while it delivers.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use scim_gateway::config::Settings;
use serde_json::{Value, json};

use crate::delivery::{Downstream, downstream, scim_app};
use crate::helpers::*;

// ---------------------------------------------------------------------------
// The chaos proxy.

/// What the proxy does with one request instead of forwarding it.
#[derive(Debug, Clone, PartialEq)]
enum Fault {
    /// Answer with this status (and a body that is not SCIM).
    Status(u16),
    /// Answer 429 with a `Retry-After` in seconds.
    TooMany { retry_after_secs: u64 },
    /// Forward the request, then answer 201 with a body that is not JSON:
    /// the operation happened, but its answer was lost.
    Garbage,
    /// Answer only after this long (past the app's timeout); nothing is forwarded.
    Hang(Duration),
    /// Forward the request, then answer with this status: the app acted,
    /// but the gateway is told it failed (a proxy's 504 after the backend
    /// did the work).
    ActedThenFailed(u16),
}

/// One request the proxy received.
#[derive(Debug, Clone)]
struct Hit {
    at: Instant,
    method: String,
    path: String,
    fault: Option<Fault>,
    /// The real downstream's status, when the request was forwarded.
    answered: Option<u16>,
}

#[derive(Clone)]
struct ChaosState {
    target: String,
    script: Arc<Mutex<VecDeque<Fault>>>,
    hits: Arc<Mutex<Vec<Hit>>>,
    client: reqwest::Client,
    /// How long a forwarded request's answer is held back.
    latency: Duration,
}

struct ChaosProxy {
    port: u16,
    state: ChaosState,
    server: actix_web::dev::ServerHandle,
}

impl Drop for ChaosProxy {
    fn drop(&mut self) {
        // The stop command is sent at once; nobody needs to wait for it.
        drop(self.server.stop(false));
    }
}

impl ChaosProxy {
    /// Starts a proxy to `target` (a gateway address, `http://host:port`).
    fn start(target: &str, script: Vec<Fault>) -> Self {
        Self::start_with_latency(target, script, Duration::ZERO)
    }

    /// Starts a proxy that holds back every forwarded answer for `latency`
    /// (after the downstream has acted on the request).
    fn start_with_latency(target: &str, script: Vec<Fault>, latency: Duration) -> Self {
        let state = ChaosState {
            target: target.trim_end_matches('/').to_string(),
            script: Arc::new(Mutex::new(script.into())),
            hits: Arc::default(),
            client: reqwest::Client::builder()
                // The handlers run on the server's own runtime: no pooled
                // connections shared across runtimes.
                .pool_max_idle_per_host(0)
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
            latency,
        };
        let data = web::Data::new(state.clone());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = actix_web::HttpServer::new(move || {
            actix_web::App::new()
                .app_data(data.clone())
                .app_data(web::PayloadConfig::new(1024 * 1024))
                .default_service(web::to(chaos))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .unwrap()
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Self {
            port,
            state,
            server: handle,
        }
    }

    /// The SCIM base URL an app should use to go through the proxy.
    fn base(&self) -> String {
        format!("http://127.0.0.1:{}/scim/v2", self.port)
    }

    /// Queues one more fault, for the next request not yet scripted.
    fn push(&self, fault: Fault) {
        self.state.script.lock().unwrap().push_back(fault);
    }

    fn hits(&self) -> Vec<Hit> {
        self.state.hits.lock().unwrap().clone()
    }

    fn script_left(&self) -> usize {
        self.state.script.lock().unwrap().len()
    }
}

async fn chaos(req: HttpRequest, body: web::Bytes, state: web::Data<ChaosState>) -> HttpResponse {
    let fault = state.script.lock().unwrap().pop_front();
    let path = req
        .uri()
        .path_and_query()
        .map_or_else(|| req.path().to_string(), |p| p.as_str().to_string());
    let index = {
        let mut hits = state.hits.lock().unwrap();
        hits.push(Hit {
            at: Instant::now(),
            method: req.method().to_string(),
            path: path.clone(),
            fault: fault.clone(),
            answered: None,
        });
        hits.len() - 1
    };
    match fault {
        Some(Fault::Status(s)) => HttpResponse::build(StatusCode::from_u16(s).unwrap())
            .content_type("text/plain")
            .body("chaos: injected failure"),
        Some(Fault::TooMany { retry_after_secs }) => HttpResponse::TooManyRequests()
            .insert_header(("Retry-After", retry_after_secs.to_string()))
            .content_type("text/plain")
            .body("slow down"),
        Some(Fault::Hang(d)) => {
            tokio::time::sleep(d).await;
            HttpResponse::ServiceUnavailable().finish()
        }
        Some(Fault::ActedThenFailed(s)) => {
            let _ = forward(&state, &req, &path, body, index).await;
            HttpResponse::build(StatusCode::from_u16(s).unwrap())
                .content_type("text/plain")
                .body("chaos: the answer was lost")
        }
        Some(Fault::Garbage) => {
            let _ = forward(&state, &req, &path, body, index).await;
            HttpResponse::Created()
                .content_type("text/html")
                .body("<html><body>502 Bad Gateway (but 201)</body>")
        }
        None => match forward(&state, &req, &path, body, index).await {
            Ok((status, content_type, body)) => {
                let mut res = HttpResponse::build(StatusCode::from_u16(status).unwrap());
                if let Some(ct) = content_type {
                    res.content_type(ct);
                }
                res.body(body)
            }
            Err(e) => HttpResponse::BadGateway().body(e),
        },
    }
}

/// Sends the request on to the real downstream, notes its status in hit
/// `index`, holds the answer back for the proxy's latency, and returns its
/// status, content type and body.
async fn forward(
    state: &ChaosState,
    req: &HttpRequest,
    path: &str,
    body: web::Bytes,
    index: usize,
) -> Result<(u16, Option<String>, Vec<u8>), String> {
    let method =
        reqwest::Method::from_bytes(req.method().as_str().as_bytes()).map_err(|e| e.to_string())?;
    let mut rb = state
        .client
        .request(method, format!("{}{path}", state.target));
    for name in ["authorization", "content-type", "accept"] {
        if let Some(v) = req.headers().get(name).and_then(|v| v.to_str().ok()) {
            rb = rb.header(name, v);
        }
    }
    if !body.is_empty() {
        rb = rb.body(body.to_vec());
    }
    let res = rb.send().await.map_err(|e| e.to_string())?;
    let status = res.status().as_u16();
    let content_type = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let bytes = res.bytes().await.map_err(|e| e.to_string())?;
    state.hits.lock().unwrap()[index].answered = Some(status);
    if !state.latency.is_zero() {
        tokio::time::sleep(state.latency).await;
    }
    Ok((status, content_type, bytes.to_vec()))
}

// ---------------------------------------------------------------------------
// Shared helpers.

/// A downstream gateway behind a chaos proxy, and the gateway pushing to it
/// (app `crm`, tenant `acme`).
struct Rig {
    down: Downstream,
    proxy: ChaosProxy,
    up: TestApp,
}

async fn rig(script: Vec<Fault>, timeout_secs: u64) -> Rig {
    rig_with(script, |app, _| app.timeout_secs = Some(timeout_secs)).await
}

/// A rig whose app and settings `customise` adjusts.
async fn rig_with(
    script: Vec<Fault>,
    customise: impl FnOnce(&mut scim_gateway::config::AppSettings, &mut Settings),
) -> Rig {
    let down = downstream().await;
    let proxy = ChaosProxy::start(&down.app.address, script);
    let base = proxy.base();
    let token = down.token_file.clone();
    let up = spawn_app_with(|s: &mut Settings| {
        let mut app = scim_app("crm", &base, &token);
        customise(&mut app, s);
        s.apps.push(app);
    })
    .await;
    Rig { down, proxy, up }
}

/// A rig whose retries wait seconds, so a test can change the identity
/// between a failed attempt and the next.
async fn slow_retry_rig() -> Rig {
    rig_with(Vec::new(), |app, s| {
        app.timeout_secs = Some(3);
        s.delivery.backoff_base_ms = 3000;
        s.delivery.backoff_max_secs = 5;
    })
    .await
}

/// Waits until the proxy has forwarded a request it then answered as failed.
async fn await_acted_then_failed(proxy: &ChaosProxy) -> Hit {
    eventually(
        20,
        "a request the app acted on but answered as failed",
        || async {
            proxy
                .hits()
                .into_iter()
                .find(|h| {
                    matches!(h.fault, Some(Fault::ActedThenFailed(_))) && h.answered.is_some()
                })
                .ok_or_else(|| format!("{:?}", proxy.hits()))
        },
    )
    .await
}

/// `(action, outcome, detail)` of the delivery audit rows about `id`, oldest first.
fn delivery_rows(app: &TestApp, id: &str) -> Vec<(String, String, Value)> {
    app.audit_rows()
        .into_iter()
        .filter(|r| r.resource_id.as_deref() == Some(id) && r.action.starts_with("delivery."))
        .map(|r| {
            let detail = r
                .detail
                .as_deref()
                .and_then(|d| serde_json::from_str(d).ok())
                .unwrap_or(Value::Null);
            (r.action, r.outcome, detail)
        })
        .collect()
}

/// Waits until the delivery audit trail of `id` ends in a success and returns it.
async fn await_delivered(app: &TestApp, id: &str) -> Vec<(String, String, Value)> {
    eventually(20, "a successful delivery in the audit trail", || async {
        let rows = delivery_rows(app, id);
        if rows.last().is_some_and(|r| r.1 == "success") {
            Ok(rows)
        } else {
            Err(format!("{rows:?}"))
        }
    })
    .await
}

/// GET on the admin API of the gateway at `address`.
async fn admin_get_at(address: &str, path: &str) -> (u16, Value) {
    let res = reqwest::Client::new()
        .get(format!("{address}/admin{path}"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("admin GET");
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// Waits until the app of the gateway at `address` has no pending, running
/// or dead job.
async fn await_empty_queue(address: &str, name: &str) {
    eventually(20, "an empty delivery queue", || async {
        let (_, s) = admin_get_at(address, &format!("/apps/{name}")).await;
        let j = &s["jobs"];
        if j["pending"] == 0 && j["running"] == 0 && j["dead"] == 0 {
            Ok(())
        } else {
            Err(s.to_string())
        }
    })
    .await;
}

/// Users of `app`'s tenant named `user_name`.
async fn users_named(app: &TestApp, user_name: &str) -> Vec<Value> {
    let list = app
        .list_ok(
            "/Users",
            &[("filter", &format!("userName eq \"{user_name}\""))],
        )
        .await;
    list["Resources"].as_array().cloned().unwrap_or_default()
}

// ---------------------------------------------------------------------------
// 1. A misbehaving app.

#[tokio::test]
async fn server_errors_are_retried_until_the_account_exists_once() {
    let rig = rig(vec![Fault::Status(500), Fault::Status(503)], 3).await;
    let user = rig.up.create_user("retry@example.com").await;
    let id = user["id"].as_str().unwrap();

    let remote = rig
        .down
        .await_user("retry@example.com", "the user downstream", |_| true)
        .await;
    assert_eq!(remote["externalId"], id);
    let rows = await_delivered(&rig.up, id).await;
    let summary: Vec<(&str, &str, Value)> = rows
        .iter()
        .map(|(a, o, d)| {
            (
                a.as_str(),
                o.split(':').next().unwrap(),
                d["status"].clone(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("delivery.create", "failure", json!(500)),
            ("delivery.create", "failure", json!(503)),
            ("delivery.create", "success", json!(201)),
        ],
        "{rows:?}"
    );
    assert_eq!(rows[2].2["remote_id"], remote["id"]);
    await_empty_queue(&rig.up.address, "crm").await;
    // Three POSTs in all: the failed two and the one that landed.
    let posts: Vec<Hit> = rig
        .proxy
        .hits()
        .into_iter()
        .filter(|h| h.method == "POST")
        .collect();
    assert_eq!(posts.len(), 3, "{posts:?}");
    assert_eq!(posts[2].answered, Some(201));
    assert_eq!(rig.down.users_named("retry@example.com").await.len(), 1);
    assert_eq!(rig.down.app.user_count().await, 1);
}

#[tokio::test]
async fn a_batch_where_one_call_is_rejected_records_each_outcome_on_its_own() {
    // The first call to reach the app is rejected; the rest go through.
    let rig = rig(vec![Fault::Status(400)], 3).await;
    let (status, body) = rig.up.admin_post("/apps/crm/pause").await;
    assert_eq!(status, 200, "{body}");
    let mut ids = Vec::new();
    for i in 0..6 {
        let user = rig.up.create_user(&format!("batch{i}@example.com")).await;
        ids.push(user["id"].as_str().unwrap().to_string());
    }
    // Resumed, the app claims all six as one batch and calls concurrently.
    let (status, body) = rig.up.admin_post("/apps/crm/resume").await;
    assert_eq!(status, 200, "{body}");
    let summary = eventually(20, "five delivered and one dead letter", || async {
        let (_, s) = rig.up.admin_get("/apps/crm").await;
        let j = &s["jobs"];
        if j["pending"] == 0 && j["running"] == 0 && j["dead"] == 1 {
            Ok(s)
        } else {
            Err(s.to_string())
        }
    })
    .await;
    assert_eq!(rig.down.app.user_count().await, 5, "{summary}");
    let mut rejected = Vec::new();
    for id in &ids {
        let rows = delivery_rows(&rig.up, id);
        let [(action, outcome, detail)] = rows.as_slice() else {
            panic!("{id}: one delivery row each: {rows:?}")
        };
        assert_eq!(action, "delivery.create");
        if outcome == "success" {
            assert!(detail["remote_id"].is_string(), "{detail}");
        } else {
            assert_eq!(detail["status"], 400, "{detail}");
            assert_eq!(detail["dead_letter"], true, "{detail}");
            rejected.push(id.clone());
        }
    }
    let [dead] = rejected.as_slice() else {
        panic!("exactly one rejected: {rejected:?}")
    };
    let (_, jobs) = rig.up.admin_get("/apps/crm/jobs?state=dead").await;
    let listed: Vec<&str> = jobs["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|j| j["resource_id"].as_str())
        .collect();
    assert_eq!(listed, [dead.as_str()], "{jobs}");
    assert_eq!(rig.proxy.hits().len(), 6, "one call per job");
}

#[tokio::test]
async fn a_429_with_retry_after_holds_the_whole_app_back() {
    let rig = rig(
        vec![Fault::TooMany {
            retry_after_secs: 2,
        }],
        3,
    )
    .await;
    let first = rig.up.create_user("first@example.com").await;
    let fid = first["id"].as_str().unwrap().to_string();
    // Once the 429 is recorded, a second identity changes...
    // (The audit row is written with the job's retry time.)
    eventually(10, "the throttled attempt", || async {
        let rows = delivery_rows(&rig.up, &fid);
        if rows.first().is_some_and(|r| r.2["status"] == 429) {
            Ok(())
        } else {
            Err(format!("{rows:?}"))
        }
    })
    .await;
    let second = rig.up.create_user("second@example.com").await;
    let sid = second["id"].as_str().unwrap().to_string();

    // ...and both converge, but nothing reaches the app before Retry-After.
    rig.down
        .await_user("first@example.com", "the throttled user", |_| true)
        .await;
    rig.down
        .await_user("second@example.com", "the user created meanwhile", |_| true)
        .await;
    let hits = rig.proxy.hits();
    let throttled = hits
        .iter()
        .position(|h| h.fault.is_some())
        .expect("the 429 was served");
    assert_eq!(throttled, 0, "{hits:?}");
    let after: Vec<&Hit> = hits[1..].iter().collect();
    assert!(after.len() >= 2, "{hits:?}");
    for h in &after {
        let gap = h.at.duration_since(hits[0].at);
        assert!(
            gap >= Duration::from_millis(1900),
            "{} {} came {gap:?} after the 429 with Retry-After: 2",
            h.method,
            h.path
        );
    }
    let rows = await_delivered(&rig.up, &fid).await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0].2["status"], 429);
    assert_eq!(rows[0].2["error_kind"], json!("RateLimited(Some(2s))"));
    let rows = await_delivered(&rig.up, &sid).await;
    assert_eq!(
        rows.len(),
        1,
        "the second user was never throttled: {rows:?}"
    );
    await_empty_queue(&rig.up.address, "crm").await;
}

#[tokio::test]
async fn a_create_whose_answer_is_lost_is_adopted_not_duplicated() {
    let rig = rig(vec![Fault::Garbage], 3).await;
    let user = rig
        .up
        .create_user_from(json!({"userName": "lost@example.com", "title": "Courier"}))
        .await;
    let id = user["id"].as_str().unwrap();
    let rows = await_delivered(&rig.up, id).await;
    await_empty_queue(&rig.up.address, "crm").await;

    let hits = rig.proxy.hits();
    // The garbled create really happened; the retry met the account.
    assert_eq!(hits[0].method, "POST");
    assert_eq!(hits[0].fault, Some(Fault::Garbage));
    assert_eq!(hits[0].answered, Some(201), "{hits:?}");
    assert_eq!(hits[1].method, "POST");
    assert_eq!(hits[1].answered, Some(409), "{hits:?}");
    assert!(
        hits.iter()
            .any(|h| h.method == "GET" && h.path.contains("filter=")),
        "the account was looked up by userName: {hits:?}"
    );

    let remote = rig.down.users_named("lost@example.com").await;
    assert_eq!(remote.len(), 1, "{remote:?}");
    assert_eq!(rig.down.app.user_count().await, 1);
    let remote_id = remote[0]["id"].as_str().unwrap();
    let (status, account) = rig.up.admin_get(&format!("/apps/crm/accounts/{id}")).await;
    assert_eq!(status, 200, "{account}");
    assert_eq!(account["remote_id"], remote_id, "{account}");
    assert_eq!(remote[0]["title"], "Courier");
    assert_eq!(remote[0]["externalId"], id);

    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0].0, "delivery.create");
    assert!(rows[0].1.starts_with("failure"), "{rows:?}");
    assert_eq!(rows[0].2["status"], 201, "{rows:?}");
    assert_eq!(rows[1].1, "success");
    assert_eq!(rows[1].2["adopted"], true, "{rows:?}");
    assert_eq!(rows[1].2["remote_id"], remote_id);
}

#[tokio::test]
async fn a_disable_the_app_made_but_answered_as_failed_is_undone_by_a_re_enable() {
    let rig = slow_retry_rig().await;
    let user = rig.up.create_user("flip@example.com").await;
    let id = user["id"].as_str().unwrap();
    await_delivered(&rig.up, id).await;
    await_empty_queue(&rig.up.address, "crm").await;

    // The disable reaches the app, but its answer says it failed.
    rig.proxy.push(Fault::ActedThenFailed(504));
    rig.up
        .patch_ok(
            &format!("/Users/{id}"),
            json!([{"op": "replace", "path": "active", "value": false}]),
        )
        .await;
    let hit = await_acted_then_failed(&rig.proxy).await;
    assert_eq!(hit.method, "PATCH");
    let remote = rig.down.users_named("flip@example.com").await;
    assert_eq!(remote[0]["active"], false, "the app acted: {remote:?}");

    // Enabled again before the retry: what was last recorded is what is
    // wanted, yet the app holds the disable.
    rig.up
        .patch_ok(
            &format!("/Users/{id}"),
            json!([{"op": "replace", "path": "active", "value": true}]),
        )
        .await;
    eventually(20, "the account enabled again downstream", || async {
        let remote = rig.down.users_named("flip@example.com").await;
        if remote[0]["active"] == true {
            Ok(())
        } else {
            Err(format!("{remote:?}"))
        }
    })
    .await;
    await_empty_queue(&rig.up.address, "crm").await;
    let rows = delivery_rows(&rig.up, id);
    assert_eq!(
        rows.last().map(|r| r.1.as_str()),
        Some("success"),
        "{rows:?}"
    );
}

#[tokio::test]
async fn a_create_the_app_made_but_answered_as_failed_is_removed_when_the_user_goes() {
    let rig = slow_retry_rig().await;
    rig.proxy.push(Fault::ActedThenFailed(504));
    let user = rig.up.create_user("ghost@example.com").await;
    let id = user["id"].as_str().unwrap().to_string();
    let hit = await_acted_then_failed(&rig.proxy).await;
    assert_eq!(hit.method, "POST");
    assert_eq!(rig.down.users_named("ghost@example.com").await.len(), 1);

    // Deleted before the retry: no account was ever recorded.
    let res = rig.up.delete(&format!("/Users/{id}")).await;
    assert_eq!(res.status(), 204);
    eventually(20, "the account the create made to be deleted", || async {
        match rig.down.app.user_count().await {
            0 => Ok(()),
            n => Err(format!("{n} users downstream")),
        }
    })
    .await;
    await_empty_queue(&rig.up.address, "crm").await;
    let hits = rig.proxy.hits();
    assert!(
        hits.iter()
            .any(|h| h.method == "GET" && h.path.contains("externalId")),
        "the account was looked up by the gateway id: {hits:?}"
    );
    let (status, _) = rig.up.admin_get(&format!("/apps/crm/accounts/{id}")).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn a_create_in_doubt_of_a_renamed_user_renames_the_account_it_made() {
    let rig = slow_retry_rig().await;
    rig.proxy.push(Fault::ActedThenFailed(504));
    let user = rig.up.create_user("before@example.com").await;
    let id = user["id"].as_str().unwrap().to_string();
    await_acted_then_failed(&rig.proxy).await;
    rig.up
        .patch_ok(
            &format!("/Users/{id}"),
            json!([{"op": "replace", "path": "userName", "value": "after@example.com"}]),
        )
        .await;
    eventually(20, "the account renamed downstream", || async {
        let after = rig.down.users_named("after@example.com").await;
        let count = rig.down.app.user_count().await;
        if after.len() == 1 && count == 1 {
            Ok(())
        } else {
            Err(format!("{count} users downstream: {after:?}"))
        }
    })
    .await;
    await_empty_queue(&rig.up.address, "crm").await;
    let remote = rig.down.users_named("after@example.com").await;
    let (status, account) = rig.up.admin_get(&format!("/apps/crm/accounts/{id}")).await;
    assert_eq!(status, 200, "{account}");
    assert_eq!(account["remote_id"], remote[0]["id"], "{account}");
    assert_eq!(rig.down.app.user_count().await, 1);
}

#[tokio::test]
async fn a_hanging_app_times_out_and_is_retried_without_a_hot_loop() {
    let rig = rig(vec![Fault::Hang(Duration::from_secs(5))], 1).await;
    let user = rig.up.create_user("slow@example.com").await;
    let id = user["id"].as_str().unwrap();
    rig.down
        .await_user("slow@example.com", "the user after the timeout", |_| true)
        .await;
    let rows = await_delivered(&rig.up, id).await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(
        rows[0].1.contains("timed out"),
        "the first attempt timed out: {rows:?}"
    );
    assert_eq!(rows[1].1, "success");
    await_empty_queue(&rig.up.address, "crm").await;

    // Quiet once converged: no request after the one that worked.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let hits = rig.proxy.hits();
    assert_eq!(rig.proxy.script_left(), 0);
    assert_eq!(hits.len(), 2, "{hits:?}");
    assert_eq!(hits[0].fault, Some(Fault::Hang(Duration::from_secs(5))));
    assert_eq!(hits[1].answered, Some(201));
    // The retry waited for the timeout (1 s) rather than racing the hung call.
    let gap = hits[1].at.duration_since(hits[0].at);
    assert!(gap >= Duration::from_millis(900), "retry after {gap:?}");
    assert_eq!(rig.down.users_named("slow@example.com").await.len(), 1);
}

// ---------------------------------------------------------------------------
// 2. An app that is down for a while.

#[tokio::test]
async fn an_app_that_was_down_gets_everything_once_it_is_back() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let healthy = downstream().await;
    let healthy_base = healthy.base();
    let token = healthy.token_file.clone();
    let dead_base = format!("http://127.0.0.1:{port}/scim/v2");
    let up = spawn_app_with(|s: &mut Settings| {
        s.apps.push(scim_app("up", &healthy_base, &token));
        s.apps.push(scim_app("down", &dead_base, &token));
    })
    .await;
    let mut ids = BTreeMap::new();
    for i in 0..5 {
        let name = format!("user{i}@example.com");
        let user = up.create_user(&name).await;
        ids.insert(name, user["id"].as_str().unwrap().to_string());
    }

    // The healthy app is not held up by the other one.
    for name in ids.keys() {
        healthy
            .await_user(name, "delivery to the healthy app", |_| true)
            .await;
    }
    await_empty_queue(&up.address, "up").await;
    let (_, summary) = eventually(10, "failed attempts on the app that is down", || async {
        let (_, s) = up.admin_get("/apps/down").await;
        let first = ids.values().next().unwrap();
        let (_, job) = up.admin_get(&format!("/apps/down/jobs/{first}")).await;
        if s["jobs"]["pending"].as_i64().unwrap_or(0) > 0
            && job["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("connect"))
        {
            Ok((job, s))
        } else {
            Err(format!("{s} {job}"))
        }
    })
    .await;
    let jobs = &summary["jobs"];
    assert_eq!(jobs["dead"], 0, "{summary}");
    assert_eq!(
        jobs["pending"].as_i64().unwrap() + jobs["running"].as_i64().unwrap(),
        5,
        "{summary}"
    );

    // The app comes back on the same address.
    let late =
        spawn_app_with(|s: &mut Settings| s.server.listen = format!("127.0.0.1:{port}")).await;
    for (name, id) in &ids {
        let remote = eventually(20, "delivery to the app that came back", || async {
            match users_named(&late, name).await.as_slice() {
                [one] => Ok(one.clone()),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
        assert_eq!(remote["externalId"], json!(id));
    }
    await_empty_queue(&up.address, "down").await;
    assert_eq!(late.user_count().await, 5);
    assert_eq!(healthy.app.user_count().await, 5);
    for id in ids.values() {
        let (status, account) = up.admin_get(&format!("/apps/down/accounts/{id}")).await;
        assert_eq!(status, 200, "{account}");
        let rows = delivery_rows(&up, id);
        // One success per app; the failures all belong to "down".
        // (The circuit breaker may have spared later jobs any failed attempt.)
        let successes = rows.iter().filter(|r| r.1 == "success").count();
        assert_eq!(successes, 2, "{rows:?}");
    }
}

// ---------------------------------------------------------------------------
// 3. SIGKILL while delivering.

const BIN: &str = env!("CARGO_BIN_EXE_scim-gateway");
const CRASH_TOKEN: &str = "crash-test-token";

/// The real binary, killed when dropped.
struct Process {
    child: Child,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fresh PostgreSQL database for the binary, dropped afterwards.
struct PgDb {
    server: String,
    name: String,
}

impl PgDb {
    fn create(server: &str) -> Self {
        use diesel::Connection;
        use diesel::connection::SimpleConnection;
        let server = server.trim_end_matches('/').to_string();
        let name = format!("scimgw_crash_{}", uuid::Uuid::new_v4().simple());
        diesel::PgConnection::establish(&format!("{server}/postgres"))
            .unwrap()
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap();
        Self { server, name }
    }

    fn url(&self) -> String {
        format!("{}/{}", self.server, self.name)
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        use diesel::Connection;
        use diesel::connection::SimpleConnection;
        if let Ok(mut c) = diesel::PgConnection::establish(&format!("{}/postgres", self.server)) {
            let _ = c.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}

/// Starts the binary on `port` and waits until it is ready.
async fn start_binary(config: &Path, database_url: &str, port: u16, log: &Path) -> Process {
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let child = Command::new(BIN)
        .arg("--config")
        .arg(config)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("SCIM_GATEWAY_TOKEN", CRASH_TOKEN)
        .env("SCIM_GATEWAY_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("DATABASE_URL", database_url)
        .env_remove("SCIM_GATEWAY_CONFIG")
        .env_remove("SCIM_GATEWAY_LISTEN")
        .env_remove("SCIM_GATEWAY_BASE_URL")
        .stdout(Stdio::from(log_file.try_clone().unwrap()))
        .stderr(Stdio::from(log_file))
        .spawn()
        .unwrap();
    let mut process = Process { child };
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(r) = client
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await
            && r.status() == 200
        {
            return process;
        }
        let exited = process.child.try_wait().unwrap();
        if exited.is_some() || Instant::now() > deadline {
            panic!(
                "the gateway did not become ready ({exited:?}):\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every user of a SCIM endpoint, page by page.
async fn list_all(client: &reqwest::Client, base: &str, token: &str) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    loop {
        let page: Value = client
            .get(format!("{base}/Users"))
            .query(&[
                ("startIndex", (out.len() + 1).to_string()),
                ("count", "100".to_string()),
            ])
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let resources = page["Resources"].as_array().cloned().unwrap_or_default();
        let total = page["totalResults"].as_u64().unwrap() as usize;
        let empty = resources.is_empty();
        out.extend(resources);
        if empty || out.len() >= total {
            return out;
        }
    }
}

fn user_names(users: &[Value]) -> Vec<String> {
    let mut names: Vec<String> = users
        .iter()
        .map(|u| u["userName"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn kill_9_during_delivery_loses_and_duplicates_nothing() {
    const USERS: usize = 150;
    const KILL_AFTER: usize = 60;
    let down = downstream().await;
    // Every answer is held back a while after the app acted, so the kill
    // lands while creates have happened downstream but are not yet recorded.
    let proxy =
        ChaosProxy::start_with_latency(&down.app.address, Vec::new(), Duration::from_millis(300));
    let dir = tempfile::tempdir().unwrap();
    let pg = std::env::var(PG_ENV)
        .ok()
        .filter(|u| !u.is_empty())
        .map(|u| PgDb::create(&u));
    let database_url = match &pg {
        Some(pg) => pg.url(),
        None => format!("sqlite://{}", dir.path().join("crash.db").display()),
    };
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[log]
level = "info"

[delivery]
lease_secs = 3
backoff_base_ms = 100
backoff_max_secs = 2
poll_ms = 200

[[apps]]
name = "crm"
tenant = "default"
timeout_secs = 3

[apps.adapter]
kind = "scim"
base_url = {}
token_file = {}
"#,
            toml_str(&proxy.base()),
            toml_str(&down.token_file.display().to_string()),
        ),
    )
    .unwrap();
    let log: PathBuf = dir.path().join("gateway.log");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let mut gateway = start_binary(&config, &database_url, port, &log).await;

    // A steady stream of creates; a create that got no answer is not acknowledged.
    let acked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let writer = {
        let acked = acked.clone();
        let client = client.clone();
        let base = base.clone();
        tokio::spawn(async move {
            let mut unanswered = 0;
            for i in 0..USERS {
                let name = format!("stream{i:03}@example.com");
                let res = client
                    .post(format!("{base}/scim/v2/Users"))
                    .bearer_auth(CRASH_TOKEN)
                    .json(&json!({
                        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                        "userName": name, "title": format!("Employee {i}")
                    }))
                    .send()
                    .await;
                match res {
                    Ok(r) if r.status() == 201 => {
                        let v: Value = r.json().await.unwrap();
                        let id = v["id"].as_str().unwrap().to_string();
                        acked.lock().unwrap().push((name, id));
                    }
                    Ok(r) => panic!("creating {name}: HTTP {}", r.status()),
                    Err(_) => {
                        unanswered += 1;
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
            unanswered
        })
    };

    // Kill mid-stream, with deliveries under way.
    eventually(30, "acknowledged creates before the kill", || async {
        let n = acked.lock().unwrap().len();
        if n >= KILL_AFTER {
            Ok(())
        } else {
            Err(format!("{n}"))
        }
    })
    .await;
    gateway.child.kill().unwrap();
    gateway.child.wait().unwrap();
    let delivered_at_kill = list_all(&client, &down.base(), ACME_TOKEN).await.len();
    let acked_at_kill = acked.lock().unwrap().len();
    drop(gateway);

    let _gateway = start_binary(&config, &database_url, port, &log).await;
    let unanswered = writer.await.unwrap();
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > KILL_AFTER && acked.len() + unanswered == USERS,
        "{} acknowledged, {unanswered} unanswered",
        acked.len()
    );

    // Everything the gateway holds reaches the app, once; nothing else does.
    let upstream = eventually(40, "the app to converge after the restart", || async {
        let upstream = list_all(&client, &format!("{base}/scim/v2"), CRASH_TOKEN).await;
        let remote = list_all(&client, &down.base(), ACME_TOKEN).await;
        let (up_names, remote_names) = (user_names(&upstream), user_names(&remote));
        if up_names == remote_names {
            Ok(upstream)
        } else {
            Err(format!(
                "{} upstream, {} downstream",
                up_names.len(),
                remote_names.len()
            ))
        }
    })
    .await;
    await_empty_queue(&base, "crm").await;

    let upstream_ids: BTreeMap<String, String> = upstream
        .iter()
        .map(|u| {
            (
                u["userName"].as_str().unwrap().to_string(),
                u["id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for (name, id) in &acked {
        assert_eq!(
            upstream_ids.get(name),
            Some(id),
            "acknowledged user {name} is missing upstream"
        );
    }
    let remote = list_all(&client, &down.base(), ACME_TOKEN).await;
    let remote_names: Vec<String> = user_names(&remote);
    let distinct: BTreeSet<&String> = remote_names.iter().collect();
    assert_eq!(distinct.len(), remote_names.len(), "duplicates downstream");
    assert_eq!(remote.len(), upstream.len());
    // Each account is linked to the right downstream user.
    for r in &remote {
        let name = r["userName"].as_str().unwrap();
        let id = &upstream_ids[name];
        assert_eq!(r["externalId"], json!(id), "{r}");
        let (status, account) = admin_get_at(&base, &format!("/apps/crm/accounts/{id}")).await;
        assert_eq!(status, 200, "{name}: {account}");
        assert_eq!(account["remote_id"], r["id"], "{name}: {account}");
    }
    // Creates whose answers died with the process were adopted on retry.
    let adopted = proxy
        .hits()
        .iter()
        .filter(|h| h.method == "POST" && h.answered == Some(409))
        .count();
    assert!(adopted >= 1, "no create was caught in flight by the kill");
    eprintln!(
        "adopted {adopted}; killed after {acked_at_kill} acknowledged creates with {delivered_at_kill} delivered; \
         {} acknowledged, {unanswered} unanswered, {} upstream",
        acked.len(),
        upstream.len()
    );
}

/// A TOML basic string.
fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

#[tokio::test]
async fn an_absurd_retry_after_is_capped_and_the_app_keeps_delivering() {
    // Regression: u64::MAX seconds overflowed the retry time and killed the app's loop.
    let rig = rig(
        vec![Fault::TooMany {
            retry_after_secs: u64::MAX,
        }],
        3,
    )
    .await;
    let first = rig.up.create_user("capped@example.com").await;
    let fid = first["id"].as_str().unwrap().to_string();
    rig.down
        .await_user("capped@example.com", "the throttled user", |_| true)
        .await;
    rig.up.create_user("later@example.com").await;
    rig.down
        .await_user("later@example.com", "a user after the throttle", |_| true)
        .await;
    let rows = await_delivered(&rig.up, &fid).await;
    assert_eq!(rows[0].2["status"], 429, "{rows:?}");
    await_empty_queue(&rig.up.address, "crm").await;
}

#[tokio::test]
async fn a_404_on_create_is_a_dead_letter_not_a_hot_loop() {
    // Regression: a wrong endpoint answered 404 to every create, and the job
    // was retried at once until its attempts ran out.
    let rig = rig(vec![Fault::Status(404)], 3).await;
    let user = rig.up.create_user("lost@example.com").await;
    let id = user["id"].as_str().unwrap().to_string();
    let job = eventually(20, "a dead letter", || async {
        let (_, j) = rig.up.admin_get(&format!("/apps/crm/jobs/{id}")).await;
        if j["state"] == "dead" {
            Ok(j)
        } else {
            Err(j.to_string())
        }
    })
    .await;
    assert_eq!(job["last_status"], 404);
    assert_eq!(job["attempts"], 1, "{job}");
    assert_eq!(rig.proxy.hits().len(), 1, "{:?}", rig.proxy.hits());
}

// ---------------------------------------------------------------------------
// 4. Two PostgreSQL nodes, killed in turn under mixed write load.

/// A webhook receiver that keeps each identity as its events left it, in
/// the order they arrived (as a simple receiver does), and answers after a
/// delay, so a kill lands while events are in flight.
#[derive(Clone, Default)]
struct StateSink {
    /// Identity id → its account as the last event gave it.
    state: Arc<Mutex<BTreeMap<String, Value>>>,
    latency: Duration,
}

async fn sink(body: web::Bytes, sink: web::Data<StateSink>) -> HttpResponse {
    let Ok(event) = serde_json::from_slice::<Value>(&body) else {
        return HttpResponse::BadRequest().finish();
    };
    let kind = event["type"].as_str().unwrap_or_default();
    let id = event["data"]["id"].as_str().unwrap_or_default().to_string();
    {
        let mut state = sink.state.lock().unwrap();
        if kind.ends_with(".deleted") {
            state.remove(&id);
        } else {
            state.insert(id, event["data"]["account"].clone());
        }
    }
    tokio::time::sleep(sink.latency).await;
    HttpResponse::NoContent().finish()
}

impl StateSink {
    fn start(latency: Duration) -> (Self, String, actix_web::dev::ServerHandle) {
        let sink_state = StateSink {
            latency,
            ..StateSink::default()
        };
        let data = web::Data::new(sink_state.clone());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = actix_web::HttpServer::new(move || {
            actix_web::App::new()
                .app_data(data.clone())
                .route("/hook", web::post().to(sink))
        })
        .workers(2)
        .listen(listener)
        .unwrap()
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        (sink_state, format!("http://127.0.0.1:{port}/hook"), handle)
    }
}

/// What an app must hold of a user: userName, title and active.
fn user_facts(u: &Value) -> (String, String, bool) {
    (
        u["userName"].as_str().unwrap_or_default().to_string(),
        u["title"].as_str().unwrap_or_default().to_string(),
        u["active"].as_bool().unwrap_or(true),
    )
}

/// Every group of a SCIM endpoint: displayName → member values.
async fn groups_of(
    client: &reqwest::Client,
    base: &str,
    token: &str,
) -> BTreeMap<String, BTreeSet<String>> {
    let page: Value = client
        .get(format!("{base}/Groups"))
        .query(&[("count", "1000"), ("attributes", "displayName,members")])
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    page["Resources"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|g| {
            let members = g["members"]
                .as_array()
                .map(|m| {
                    m.iter()
                        .filter_map(|v| v["value"].as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            (g["displayName"].as_str().unwrap().to_string(), members)
        })
        .collect()
}

/// One client's random stream of writes against both nodes; a node that
/// is down just fails the request.
async fn mixed_writes(
    seed: u64,
    bases: [String; 2],
    groups: Vec<String>,
    live: Arc<Mutex<Vec<String>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> usize {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let mut acked = 0;
    let mut n = 0;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        n += 1;
        let base = &bases[rng.random_range(0..2)];
        // Mostly the newest users: their deliveries are the ones in flight.
        let recent = {
            let live = live.lock().unwrap();
            let from = live.len().saturating_sub(8);
            (!live.is_empty()).then(|| live[rng.random_range(from..live.len())].clone())
        };
        let roll = rng.random_range(0..100);
        let req = match (&recent, roll) {
            (None, _) | (_, 0..30) => client.post(format!("{base}/scim/v2/Users")).json(&json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": format!("mixed{seed}-{n}@example.com"), "title": "Joiner"
            })),
            (Some(id), 30..55) => client
                .patch(format!("{base}/scim/v2/Users/{id}"))
                .json(&patch_op(json!([{"op": "replace", "path": "title",
                    "value": format!("Title {}", rng.random_range(0..5))}]))),
            (Some(id), 55..70) => client
                .patch(format!("{base}/scim/v2/Users/{id}"))
                .json(&patch_op(json!([{"op": "replace", "path": "active",
                    "value": rng.random_bool(0.5)}]))),
            (Some(id), 70..85) => {
                let group = &groups[rng.random_range(0..groups.len())];
                let op = if rng.random_bool(0.6) {
                    json!({"op": "add", "path": "members", "value": [{"value": id}]})
                } else {
                    json!({"op": "remove", "path": format!("members[value eq \"{id}\"]")})
                };
                client
                    .patch(format!("{base}/scim/v2/Groups/{group}"))
                    .json(&patch_op(json!([op])))
            }
            (Some(id), _) => client.delete(format!("{base}/scim/v2/Users/{id}")),
        };
        let Ok(res) = req.bearer_auth(CRASH_TOKEN).send().await else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let status = res.status().as_u16();
        if status < 300 {
            acked += 1;
        }
        match (roll, status) {
            (_, 201) => {
                if let Ok(v) = res.json::<Value>().await
                    && let Some(id) = v["id"].as_str()
                {
                    live.lock().unwrap().push(id.to_string());
                }
            }
            (85.., 204) => {
                if let Some(id) = &recent {
                    live.lock().unwrap().retain(|l| l != id);
                }
            }
            _ => {}
        }
    }
    acked
}

/// Waits until neither node has a pending, running or dead job in `apps`.
async fn await_drained(bases: &[String], apps: &[&str]) {
    eventually(60, "every delivery queue empty on both nodes", || async {
        for base in bases {
            for app in apps {
                let (_, s) = admin_get_at(base, &format!("/apps/{app}")).await;
                let j = &s["jobs"];
                if !(j["pending"] == 0 && j["running"] == 0 && j["dead"] == 0) {
                    return Err(format!("{base} {app}: {s}"));
                }
            }
        }
        Ok(())
    })
    .await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL; run by scripts/test in its PostgreSQL pass"]
async fn two_nodes_killed_in_turn_under_mixed_writes_leave_every_app_exactly_right() {
    let server = std::env::var(PG_ENV).expect("needs PostgreSQL");
    let pg = PgDb::create(&server);
    let down = downstream().await;
    // Answers held back after the app acted: kills land between an app's
    // change and its record.
    let proxy =
        ChaosProxy::start_with_latency(&down.app.address, Vec::new(), Duration::from_millis(150));
    let (hook, hook_url, _hook_server) = StateSink::start(Duration::from_millis(150));
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("hook-secret");
    std::fs::write(&secret, "kill-test-secret-0123456789").unwrap();
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[log]
level = "info"

[delivery]
lease_secs = 5
backoff_base_ms = 100
backoff_max_secs = 1
poll_ms = 200

[[apps]]
name = "crm"
tenant = "default"
groups = true
timeout_secs = 2

[apps.adapter]
kind = "scim"
base_url = {}
token_file = {}

[[apps]]
name = "hook"
tenant = "default"
groups = true
timeout_secs = 2

[apps.adapter]
kind = "webhook"
url = {}
secret_files = [{}]
"#,
            toml_str(&proxy.base()),
            toml_str(&down.token_file.display().to_string()),
            toml_str(&hook_url),
            toml_str(&secret.display().to_string()),
        ),
    )
    .unwrap();
    let ports: Vec<u16> = (0..2)
        .map(|_| {
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        })
        .collect();
    let bases: [String; 2] = [0, 1].map(|i| format!("http://127.0.0.1:{}", ports[i]));
    let logs: Vec<PathBuf> = (0..2)
        .map(|i| dir.path().join(format!("node{i}.log")))
        .collect();
    let mut nodes = Vec::new();
    for i in 0..2 {
        nodes.push(start_binary(&config, &pg.url(), ports[i], &logs[i]).await);
    }

    let client = reqwest::Client::new();
    let mut groups = Vec::new();
    for name in ["vpn-users", "finance", "engineering"] {
        let res = client
            .post(format!("{}/scim/v2/Groups", bases[0]))
            .bearer_auth(CRASH_TOKEN)
            .json(&json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": name}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201);
        groups.push(
            res.json::<Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }

    let live: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..6)
        .map(|seed| {
            tokio::spawn(mixed_writes(
                seed,
                bases.clone(),
                groups.clone(),
                live.clone(),
                stop.clone(),
            ))
        })
        .collect();
    // Kill each node in turn, twice, while the other keeps taking writes
    // (among them changes to the identities the dead node was delivering).
    for round in 0..4 {
        let victim = round % 2;
        tokio::time::sleep(Duration::from_millis(2500)).await;
        nodes[victim].child.kill().unwrap();
        nodes[victim].child.wait().unwrap();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        nodes[victim] = start_binary(&config, &pg.url(), ports[victim], &logs[victim]).await;
    }
    // Freeze one node past its lease (a paused VM): the other takes its jobs
    // over, and what the frozen one then records comes too late.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let frozen = nodes[0].child.id().to_string();
    let signal = |sig: &str| {
        let ok = Command::new("kill")
            .args([sig, &frozen])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig} {frozen}");
    };
    signal("-STOP");
    tokio::time::sleep(Duration::from_secs(10)).await;
    signal("-CONT");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut acked = 0;
    for w in writers {
        acked += w.await.unwrap();
    }
    await_drained(&bases, &["crm", "hook"]).await;

    // The store, as either node serves it.
    let store = list_all(&client, &format!("{}/scim/v2", bases[1]), CRASH_TOKEN).await;
    let want: BTreeMap<String, (String, String, bool)> = store
        .iter()
        .map(|u| (u["id"].as_str().unwrap().to_string(), user_facts(u)))
        .collect();
    // The SCIM app: one account per user, linked by externalId, no orphans.
    let remote = list_all(&client, &down.base(), ACME_TOKEN).await;
    let remote_ids: BTreeMap<String, String> = remote
        .iter()
        .map(|u| {
            (
                u["id"].as_str().unwrap().to_string(),
                u["externalId"].as_str().unwrap_or("<none>").to_string(),
            )
        })
        .collect();
    let have: BTreeMap<String, (String, String, bool)> = remote
        .iter()
        .map(|u| {
            (
                u["externalId"].as_str().unwrap_or("<none>").to_string(),
                user_facts(u),
            )
        })
        .collect();
    assert_eq!(
        remote.len(),
        have.len(),
        "duplicate accounts in the SCIM app"
    );
    // An active user's account is exactly the user; a leaver's is disabled
    // (frozen as it was) or was never made; nothing else exists.
    let diff = |want: &BTreeMap<String, (String, String, bool)>,
                have: &BTreeMap<String, (String, String, bool)>| {
        let mut out = Vec::new();
        for (id, w) in want {
            match (have.get(id), w.2) {
                (None, true) => out.push(format!("missing {id} {w:?}")),
                (Some(h), true) if h != w => out.push(format!("wrong {id}: {h:?}, want {w:?}")),
                (Some(h), false) if h.2 || h.0 != w.0 => {
                    out.push(format!("not disabled {id}: {h:?}, want {w:?}"))
                }
                _ => {}
            }
        }
        out.extend(
            have.iter()
                .filter(|(id, _)| !want.contains_key(*id))
                .map(|(id, h)| format!("orphan {id} {h:?}")),
        );
        out
    };
    let scim_diff = diff(&want, &have);
    // The webhook receiver: the latest event of every user says what the store says.
    let sink_state = hook.state.lock().unwrap().clone();
    let hooked: BTreeMap<String, (String, String, bool)> = sink_state
        .iter()
        .filter(|(_, a)| a.get("userName").is_some())
        .map(|(id, a)| (id.clone(), user_facts(a)))
        .collect();
    let hook_diff = diff(&want, &hooked);
    // Groups: the members each app holds are the store's.
    let store_groups = groups_of(&client, &format!("{}/scim/v2", bases[0]), CRASH_TOKEN).await;
    let remote_groups: BTreeMap<String, BTreeSet<String>> =
        groups_of(&client, &down.base(), ACME_TOKEN)
            .await
            .into_iter()
            .map(|(name, members)| {
                let ids = members
                    .iter()
                    .map(|m| {
                        remote_ids
                            .get(m)
                            .cloned()
                            .unwrap_or_else(|| format!("?{m}"))
                    })
                    .collect();
                (name, ids)
            })
            .collect();
    let hook_groups: BTreeMap<String, BTreeSet<String>> = sink_state
        .values()
        .filter_map(|a| {
            let name = a.get("displayName")?.as_str()?.to_string();
            let members = a["members"]
                .as_array()
                .map(|m| {
                    m.iter()
                        .filter_map(|v| v["value"].as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            Some((name, members))
        })
        .collect();
    let audit = client
        .get(format!("{}/admin/audit", bases[0]))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let superseded = audit
        .lines()
        .filter(|l| l.contains("\"outcome\":\"superseded\""))
        .count();
    eprintln!(
        "{acked} acknowledged writes, {} users, {} SCIM accounts, {} webhook identities, \
         {superseded} mentions of superseded outcomes in the audit trail",
        want.len(),
        remote.len(),
        sink_state.len()
    );
    assert!(acked > 200, "too little load: {acked} acknowledged writes");
    assert!(
        scim_diff.is_empty() && hook_diff.is_empty(),
        "SCIM app: {scim_diff:#?}\nwebhook: {hook_diff:#?}"
    );
    // A group's members in an app: its members that have an account there.
    let expected = |accounts: &BTreeMap<String, (String, String, bool)>| {
        store_groups
            .iter()
            .map(|(name, members)| {
                let m: BTreeSet<String> = members
                    .iter()
                    .filter(|id| accounts.contains_key(*id))
                    .cloned()
                    .collect();
                (name.clone(), m)
            })
            .collect::<BTreeMap<_, _>>()
    };
    let members: usize = remote_groups.values().map(BTreeSet::len).sum();
    assert!(members > 0, "no group members to compare");
    eprintln!("{members} group memberships in the SCIM app");
    assert_eq!(
        remote_groups,
        expected(&have),
        "group members in the SCIM app"
    );
    assert_eq!(
        hook_groups,
        expected(&hooked),
        "group members at the webhook"
    );
}
