//! Test harness: `spawn_app()` starts the gateway on port 0 with a fresh
//! SQLite file and two tenants, and offers a small SCIM client.

use reqwest::{Method, Response};
use scim_gateway::config::{Settings, TokenHash, hash_token};
use scim_gateway::startup::Application;
use serde_json::{Value, json};

/// Token of tenant `acme`.
pub const ACME_TOKEN: &str = "acme-test-token";
/// Token of tenant `globex`.
pub const GLOBEX_TOKEN: &str = "globex-test-token";
/// The admin API token of every test gateway.
pub const ADMIN_TOKEN: &str = "admin-test-token";
/// The SCIM media type.
pub const SCIM_JSON: &str = "application/scim+json";

#[derive(Clone)]
pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub token: String,
    pub db_path: std::path::PathBuf,
    /// The database the gateway uses (a SQLite file or a fresh PostgreSQL database).
    pub database_url: String,
    _dir: std::sync::Arc<tempfile::TempDir>,
    _pg: std::sync::Arc<Option<PgDatabase>>,
}

/// Environment variable naming a PostgreSQL server (e.g.
/// `postgres://postgres@127.0.0.1:5432`); when set, every test gets a fresh
/// database on it instead of a SQLite file.
pub const PG_ENV: &str = "SCIM_TEST_POSTGRES_URL";

/// A throw-away PostgreSQL database, dropped with the test.
pub struct PgDatabase {
    server: String,
    name: String,
}

impl PgDatabase {
    /// Creates a database with a fresh name on `server`.
    pub fn create(server: &str) -> Self {
        use diesel::Connection;
        use diesel::connection::SimpleConnection;
        let server = server.trim_end_matches('/').to_string();
        let name = format!("scimgw_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = diesel::PgConnection::establish(&format!("{server}/postgres"))
            .expect("connect to the PostgreSQL test server");
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .expect("create test database");
        Self { server, name }
    }

    /// The database's URL, without TLS. A test's gateway runs on threads
    /// of its own that may still be closing their connections when the
    /// test process exits; with TLS, libpq's close calls into OpenSSL while
    /// OpenSSL's exit handler frees its state, which crashed the process
    /// after its test had passed (a core showed `PQfinish` against
    /// `OPENSSL_cleanup`). Loopback needs no TLS.
    pub fn url(&self) -> String {
        format!("{}/{}?sslmode=disable", self.server, self.name)
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        use diesel::Connection;
        use diesel::connection::SimpleConnection;
        if let Ok(mut admin) = diesel::PgConnection::establish(&format!("{}/postgres", self.server))
        {
            let _ = admin.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}

/// Settings for a test gateway on a fresh SQLite file in `dir`.
pub fn test_settings(dir: &std::path::Path) -> Settings {
    let mut settings = Settings::default();
    settings.server.listen = "127.0.0.1:0".into();
    settings.server.workers = 1;
    settings.server.max_body_bytes = 64 * 1024;
    settings.database.url = format!("sqlite://{}", dir.join("gw.db").display());
    settings.database.pool_size = 4;
    settings.scim.default_page_size = 50;
    settings.scim.max_page_size = 200;
    settings
        .admin
        .tokens
        .push(scim_gateway::config::TokenSettings {
            id: "test-admin".into(),
            sha256: Some(hex::encode(hash_token(ADMIN_TOKEN))),
            secret_env: None,
        });
    // Fast retries, so failure tests finish quickly.
    settings.delivery.backoff_base_ms = 100;
    settings.delivery.backoff_max_secs = 2;
    settings.delivery.poll_ms = 200;
    settings
}

fn test_tokens() -> Vec<TokenHash> {
    vec![
        TokenHash {
            tenant: "acme".into(),
            token_id: "entra".into(),
            hash: hash_token(ACME_TOKEN),
            app: None,
        },
        TokenHash {
            tenant: "globex".into(),
            token_id: "okta".into(),
            hash: hash_token(GLOBEX_TOKEN),
            app: None,
        },
    ]
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(customise: impl FnOnce(&mut Settings)) -> TestApp {
    if std::env::var("TEST_LOG").is_ok() {
        scim_gateway::telemetry::init("text", "debug");
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let mut settings = test_settings(dir.path());
    let pg = std::env::var(PG_ENV)
        .ok()
        .filter(|u| !u.is_empty())
        .map(|u| PgDatabase::create(&u));
    if let Some(pg) = &pg {
        settings.database.url = pg.url();
    }
    customise(&mut settings);
    let database_url = settings.database.url.clone();
    let mut tokens = test_tokens();
    tokens.extend(settings.token_hashes().expect("configured tokens"));
    let app = Application::build(&settings, tokens).expect("build app");
    // A TLS test's certificate names `localhost`; its client trusts it.
    let origin = match settings.server.tls {
        Some(_) => "https://localhost",
        None => "http://127.0.0.1",
    };
    let address = format!("{origin}:{}", app.port());
    app.start_delivery().await.expect("start delivery");
    tokio::spawn(app.run_until_stopped());
    TestApp {
        address,
        client: reqwest::Client::new(),
        token: ACME_TOKEN.into(),
        db_path: dir.path().join("gw.db"),
        database_url,
        _dir: std::sync::Arc::new(dir),
        _pg: std::sync::Arc::new(pg),
    }
}

impl TestApp {
    /// The same gateway, called with another bearer token.
    pub fn with_token(&self, token: &str) -> TestApp {
        TestApp {
            token: token.into(),
            ..self.clone()
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}/scim/v2{}", self.address, path)
    }

    /// A request with this app's token and, when given, a JSON body.
    pub fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> reqwest::RequestBuilder {
        let mut rb = self
            .client
            .request(method, self.url(path))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            rb = rb.header("Content-Type", SCIM_JSON).body(b.to_string());
        }
        rb
    }

    pub async fn get(&self, path: &str) -> Response {
        self.request(Method::GET, path, None)
            .send()
            .await
            .expect("GET")
    }

    pub async fn post(&self, path: &str, body: &Value) -> Response {
        self.request(Method::POST, path, Some(body))
            .send()
            .await
            .expect("POST")
    }

    pub async fn put(&self, path: &str, body: &Value) -> Response {
        self.request(Method::PUT, path, Some(body))
            .send()
            .await
            .expect("PUT")
    }

    pub async fn patch(&self, path: &str, body: &Value) -> Response {
        self.request(Method::PATCH, path, Some(body))
            .send()
            .await
            .expect("PATCH")
    }

    pub async fn delete(&self, path: &str) -> Response {
        self.request(Method::DELETE, path, None)
            .send()
            .await
            .expect("DELETE")
    }

    /// Creates a user and returns its representation.
    pub async fn create_user(&self, user_name: &str) -> Value {
        let res = self
            .post(
                "/Users",
                &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": user_name, "active": true}),
            )
            .await;
        assert_eq!(res.status(), 201, "creating {user_name}");
        res.json().await.expect("json")
    }

    /// Creates a group with the given member ids and returns its representation.
    pub async fn create_group(&self, name: &str, members: &[&str]) -> Value {
        let members: Vec<Value> = members.iter().map(|m| json!({"value": m})).collect();
        let res = self
            .post(
                "/Groups",
                &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": name, "members": members}),
            )
            .await;
        assert_eq!(res.status(), 201, "creating group {name}");
        res.json().await.expect("json")
    }

    /// Number of users the tenant has, by listing.
    pub async fn user_count(&self) -> u64 {
        let body: Value = self.get("/Users?count=0").await.json().await.expect("json");
        body["totalResults"].as_u64().expect("totalResults")
    }
}

/// A PatchOp body.
pub fn patch_op(ops: Value) -> Value {
    json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": ops})
}

/// Asserts a SCIM error response and returns its body.
pub async fn assert_scim_error(res: Response, status: u16, scim_type: Option<&str>) -> Value {
    assert_eq!(res.status().as_u16(), status, "status");
    let ct = res
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap_or("").to_string());
    assert_eq!(ct.as_deref(), Some(SCIM_JSON), "content type");
    let body: Value = res.json().await.expect("error body is JSON");
    assert_eq!(
        body["schemas"],
        json!(["urn:ietf:params:scim:api:messages:2.0:Error"])
    );
    assert_eq!(body["status"], json!(status.to_string()));
    assert_eq!(
        body.get("scimType").and_then(Value::as_str),
        scim_type,
        "scimType in {body}"
    );
    assert!(body["detail"].is_string());
    body
}

// -- patch/filter helpers --

/// URN of the enterprise User extension.
pub const ENTERPRISE_USER: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

impl TestApp {
    /// Creates a user from a full body (`schemas` is added) and returns its representation.
    pub async fn create_user_from(&self, mut body: Value) -> Value {
        body["schemas"] = json!(["urn:ietf:params:scim:schemas:core:2.0:User"]);
        let res = self.post("/Users", &body).await;
        assert_eq!(res.status(), 201, "creating user {body}");
        res.json().await.expect("json")
    }

    /// GETs a resource or list path, asserts 200 and returns the body.
    pub async fn fetch_json(&self, path: &str) -> Value {
        let res = self.get(path).await;
        assert_eq!(res.status(), 200, "GET {path}");
        res.json().await.expect("json")
    }

    /// PATCHes `path` with these operations, asserts 200 and returns the body.
    pub async fn patch_ok(&self, path: &str, ops: Value) -> Value {
        let res = self.patch(path, &patch_op(ops)).await;
        let status = res.status();
        let body: Value = res.json().await.expect("json");
        assert_eq!(status, 200, "PATCH {path}: {body}");
        body
    }

    /// GETs a list endpoint with (unencoded) query parameters.
    pub async fn list_with(&self, path: &str, query: &[(&str, &str)]) -> Response {
        self.request(Method::GET, path, None)
            .query(query)
            .send()
            .await
            .expect("GET list")
    }

    /// GETs a list endpoint with query parameters, asserts 200 and returns the ListResponse.
    pub async fn list_ok(&self, path: &str, query: &[(&str, &str)]) -> Value {
        let res = self.list_with(path, query).await;
        let status = res.status();
        let body: Value = res.json().await.expect("json");
        assert_eq!(status, 200, "GET {path} {query:?}: {body}");
        body
    }
}

/// The `field` of each resource in a ListResponse, as strings.
pub fn resource_field(list: &Value, field: &str) -> Vec<String> {
    list["Resources"]
        .as_array()
        .expect("Resources")
        .iter()
        .map(|r| r[field].as_str().expect("string field").to_string())
        .collect()
}

// ---------------------------------------------------------------------------
// Helpers for resources.rs, errors.rs and discovery.rs.

/// A response read off a raw socket (see [`TestApp::send_raw`]).
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl RawResponse {
    /// The first value of a header, by lower-case name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).expect("raw body is JSON")
    }
}

impl TestApp {
    /// GETs `path`, asserts 200 and returns the JSON body.
    pub async fn get_ok(&self, path: &str) -> Value {
        let res = self.get(path).await;
        assert_eq!(res.status(), 200, "GET {path}");
        res.json().await.expect("json")
    }

    /// Number of groups the tenant has, by listing.
    pub async fn group_count(&self) -> u64 {
        let body = self.get_ok("/Groups?count=0").await;
        body["totalResults"].as_u64().expect("totalResults")
    }

    fn open_db(&self) -> scim_gateway::store::AnyConnection {
        use diesel::Connection;
        use diesel::connection::SimpleConnection;
        if self.database_url.starts_with("postgres") {
            let conn = diesel::PgConnection::establish(&self.database_url)
                .expect("open the test database");
            return scim_gateway::store::AnyConnection::Postgresql(conn);
        }
        let path = self.database_url.trim_start_matches("sqlite://");
        let mut conn = diesel::SqliteConnection::establish(path).expect("open the test database");
        conn.batch_execute("PRAGMA busy_timeout = 10000;")
            .expect("busy timeout");
        scim_gateway::store::AnyConnection::Sqlite(conn)
    }

    /// Number of rows in `audit_events` about `resource_id` (all rows when `None`).
    pub fn audit_count(&self, resource_id: Option<&str>) -> i64 {
        scim_gateway::store::count_audit_events(&mut self.open_db(), resource_id)
            .expect("count audit events")
    }

    /// Runs SQL against the gateway's database behind its back (to break it
    /// on purpose), once every committed audit row is in the chain (on
    /// PostgreSQL the sealer chains rows shortly after commit), so the SQL
    /// meets the chain as the writes so far left it.
    pub fn execute_sql(&self, sql: &str) {
        use diesel::connection::SimpleConnection;
        let mut conn = self.open_db();
        scim_gateway::store::seal_all(&mut conn).expect("seal the audit chain");
        conn.batch_execute(sql).expect("execute SQL");
    }

    /// Sends `{method} /scim/v2{path}` over a plain socket with this app's
    /// token, the given extra header lines and a body sent with
    /// `Transfer-Encoding: chunked` (so without Content-Length), one chunk
    /// per element of `chunks`.
    pub async fn send_chunked(
        &self,
        method: &str,
        path: &str,
        extra_headers: &[(&str, &str)],
        chunks: Vec<Vec<u8>>,
    ) -> RawResponse {
        use std::io::{Read, Write};
        let host = self.address.trim_start_matches("http://").to_string();
        let mut head = format!(
            "{method} /scim/v2{path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {}\r\n\
             Transfer-Encoding: chunked\r\nConnection: close\r\n",
            self.token
        );
        for (k, v) in extra_headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        tokio::task::spawn_blocking(move || {
            let mut stream = std::net::TcpStream::connect(&host).expect("connect");
            stream
                .set_read_timeout(Some(std::time::Duration::from_secs(30)))
                .expect("read timeout");
            let mut writer = stream.try_clone().expect("clone socket");
            // Write in the background: the server may answer (and stop
            // reading) before the body ends.
            let sender = std::thread::spawn(move || {
                if writer.write_all(head.as_bytes()).is_err() {
                    return;
                }
                for chunk in chunks {
                    let mut framed = format!("{:x}\r\n", chunk.len()).into_bytes();
                    framed.extend_from_slice(&chunk);
                    framed.extend_from_slice(b"\r\n");
                    if writer.write_all(&framed).is_err() {
                        return;
                    }
                }
                let _ = writer.write_all(b"0\r\n\r\n");
            });
            let mut raw = Vec::new();
            let mut buf = [0u8; 8192];
            let response = loop {
                if let Some(r) = parse_raw_response(&raw) {
                    break r;
                }
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => {
                        break parse_raw_response(&raw).unwrap_or_else(|| {
                            panic!("incomplete response: {:?}", String::from_utf8_lossy(&raw))
                        });
                    }
                    Ok(n) => raw.extend_from_slice(&buf[..n]),
                }
            };
            let _ = sender.join();
            response
        })
        .await
        .expect("raw request task")
    }
}

/// Parses a complete HTTP/1.1 response with a Content-Length body, or `None`
/// when more bytes are needed.
fn parse_raw_response(raw: &[u8]) -> Option<RawResponse> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&raw[..end]).to_string();
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let body = raw.get(end + 4..end + 4 + len)?;
    Some(RawResponse {
        status,
        headers,
        body: String::from_utf8_lossy(body).to_string(),
    })
}

/// One row of `audit_events`, as stored.
#[derive(Debug, Clone)]
pub struct AuditRow {
    pub tenant: Option<String>,
    pub actor: String,
    pub action: String,
    pub resource_type: Option<String>,
    pub resource_id: Option<String>,
    pub outcome: String,
    pub detail: Option<String>,
}

impl TestApp {
    /// Every audit row, oldest first, read from the database file.
    pub fn audit_rows(&self) -> Vec<AuditRow> {
        use diesel::prelude::*;
        use scim_gateway::store::schema::audit_events as a;
        type Row = (
            Option<String>,
            String,
            String,
            Option<String>,
            Option<String>,
            String,
            Option<String>,
        );
        let rows: Vec<Row> = a::table
            .order(a::seq.asc())
            .select((
                a::tenant,
                a::actor,
                a::action,
                a::resource_type,
                a::resource_id,
                a::outcome,
                a::detail,
            ))
            .load(&mut self.open_db())
            .expect("read audit rows");
        rows.into_iter()
            .map(
                |(tenant, actor, action, resource_type, resource_id, outcome, detail)| AuditRow {
                    tenant,
                    actor,
                    action,
                    resource_type,
                    resource_id,
                    outcome,
                    detail,
                },
            )
            .collect()
    }
}

// -- admin API and waiting --
impl TestApp {
    /// GET on the admin API; returns status and JSON body.
    pub async fn admin_get(&self, path: &str) -> (u16, Value) {
        let res = self
            .client
            .get(format!("{}/admin{path}", self.address))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("admin GET");
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    /// Waits until delivery has drained: no job of any of `apps` is
    /// pending or running, so every outcome is committed (a job row goes
    /// only with its outcome's transaction). A dead letter fails at once.
    pub async fn drain(&self, apps: &[&str]) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let mut busy = Vec::new();
            for app in apps {
                let (status, s) = self.admin_get(&format!("/apps/{app}")).await;
                assert_eq!(status, 200, "app {app}: {s}");
                let j = &s["jobs"];
                assert_eq!(j["dead"], 0, "a dead letter in {app}: {s}");
                if j["pending"] != 0 || j["running"] != 0 {
                    busy.push(format!("{app}: {j}"));
                }
            }
            if busy.is_empty() {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "delivery did not drain: {busy:?}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// POST on the admin API; returns status and JSON body.
    pub async fn admin_post(&self, path: &str) -> (u16, Value) {
        let res = self
            .client
            .post(format!("{}/admin{path}", self.address))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("admin POST");
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }
}

/// Polls `check` until it yields a value, or panics after `secs` seconds
/// with `what` and the last observation.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        match check().await {
            Ok(v) => return v,
            Err(last) if std::time::Instant::now() > deadline => {
                panic!("timed out waiting for {what}; last seen: {last}")
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
        }
    }
}

// -- query plan helpers --
impl TestApp {
    /// The database's plan for the page query a User filter compiles to,
    /// and whether the filter compiled exactly.
    pub fn explain_user_filter(&self, filter: &str) -> (String, bool) {
        use scim_gateway::scim::{filter as scim_filter, plan, schema::Registry};
        let registry =
            Registry::load(&scim_gateway::config::ScimSettings::default()).expect("registry");
        let parsed = scim_filter::parse(filter).expect("filter");
        let compiled = plan::compile(&registry.user, &parsed);
        let plan = scim_gateway::store::query::explain_matching(
            &mut self.open_db(),
            "acme",
            "User",
            &compiled.over,
        )
        .expect("explain");
        (plan, compiled.is_exact())
    }
}

/// Runs the real `scim-gateway` binary with `config` as its configuration
/// file and `args` after it (none of the `SCIM_GATEWAY_*` or `DATABASE_URL`
/// variables of the test's environment leak in). Returns the exit code,
/// standard output and standard error.
pub fn run_cli(config: &str, args: &[&str]) -> (i32, String, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, config).expect("writing the configuration");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_scim-gateway"));
    cmd.arg("--config").arg(&path).args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("SCIM_GATEWAY_") || k == "DATABASE_URL" {
            cmd.env_remove(k);
        }
    }
    let out = cmd
        .current_dir(dir.path())
        .output()
        .expect("running scim-gateway");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `scim-gateway <args>` (the CLI) against the database at `url`.
pub async fn cli_on(url: &str, args: &[&str]) -> std::process::Output {
    let url = url.to_string();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_scim-gateway"))
            .args(&args)
            .env("DATABASE_URL", url)
            .env_remove("SCIM_GATEWAY_CONFIG")
            .env("RUST_LOG", "warn")
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}
