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
    let down = downstream().await;
    let proxy = ChaosProxy::start(&down.app.address, script);
    let base = proxy.base();
    let token = down.token_file.clone();
    let up = spawn_app_with(|s: &mut Settings| {
        let mut app = scim_app("crm", &base, &token);
        app.timeout_secs = Some(timeout_secs);
        s.apps.push(app);
    })
    .await;
    Rig { down, proxy, up }
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
