//! No secret ever leaves the gateway: the real binary runs with JSON logs
//! at debug level, a SCIM token, an admin token, a metrics token, a
//! webhook secret, an LDAP bind password and a SQL URL with a password,
//! and is sent a wrong token and users with passwords. None of those
//! values may appear in its logs, its database, its audit export, any
//! response body or the metrics.

use base64::Engine;
use reqwest::{Client, Method};
use serde_json::{Value, json};

use crate::helpers::*;
use crate::process::{Gateway, Hook, free_port};

const SCIM_TOKEN: &str = "scim-secret-7f3a9c1e5b";
const ADMIN: &str = "admin-secret-2b8d4e6f0a";
const METRICS: &str = "metrics-secret-9c5e1a3b7d";
const WEBHOOK: &str = "whsec-secret-4d7f2a8c6e";
const LDAP_PASSWORD: &str = "ldap-secret-6a1c3e5g7i";
const SQL_PASSWORD: &str = "sqlpw-secret-8e2b4d6h0j";
const WRONG_TOKEN: &str = "wrong-secret-1f3h5j7k9m";
const PASSWORDS: [&str; 3] = [
    "P4ss-secret-0a2c4e6g",
    "P4ss-secret-second-1b3d",
    "P4ss-secret-patched-5f7h",
];

fn secrets() -> Vec<&'static str> {
    let mut all = vec![
        SCIM_TOKEN,
        ADMIN,
        METRICS,
        WEBHOOK,
        LDAP_PASSWORD,
        SQL_PASSWORD,
        WRONG_TOKEN,
    ];
    all.extend(PASSWORDS);
    all
}

/// Panics naming the first secret found in `text`.
fn assert_clean(what: &str, text: &str) {
    for s in secrets() {
        assert!(
            !text.contains(s),
            "{what} contains the secret {s:?}:\n{text}"
        );
    }
}

fn config(dir: &std::path::Path, hook: &Hook) -> std::path::PathBuf {
    let closed = free_port();
    let path = dir.join("gw.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[server]
workers = 1
shutdown_timeout_secs = 5

[log]
format = "json"
level = "debug"

[delivery]
backoff_base_ms = 50
backoff_max_secs = 1
max_attempts = 2
poll_ms = 100

[[tenants]]
id = "acme"
[[tenants.tokens]]
id = "entra"
secret_env = "TEST_SCIM_TOKEN"

[[apps]]
name = "hooks"
tenant = "acme"
[apps.adapter]
kind = "webhook"
url = "{hook}"
secrets_env = ["TEST_WEBHOOK_SECRET"]

[[apps]]
name = "directory"
tenant = "acme"
timeout_secs = 2
[apps.adapter]
kind = "ldap"
url = "ldap://127.0.0.1:{closed}"
bind_dn = "cn=admin,dc=example,dc=com"
bind_password_env = "TEST_LDAP_PASSWORD"
base_dn = "ou=people,dc=example,dc=com"
[apps.adapter.attributes]
uid = "userName"
cn = "userName"
sn = "userName"

[[apps]]
name = "hrdb"
tenant = "acme"
timeout_secs = 2
[apps.adapter]
kind = "sql"
url_env = "TEST_SQL_URL"
table = "accounts"
key_column = "external_id"
[apps.adapter.columns]
userName = "login"
"#,
            hook = hook.url
        ),
    )
    .unwrap();
    path
}

/// Every response body seen, for the final check.
struct Recorder {
    http: Client,
    base: String,
    bodies: Vec<String>,
}

impl Recorder {
    async fn send(
        &mut self,
        method: Method,
        path: &str,
        auth: Option<String>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut rb = self.http.request(method, format!("{}{path}", self.base));
        if let Some(a) = auth {
            rb = rb.header("Authorization", a);
        }
        if let Some(b) = body {
            rb = rb.header("Content-Type", SCIM_JSON).body(b.to_string());
        }
        let res = rb.send().await.unwrap();
        let status = res.status().as_u16();
        let request_id = res.headers().get("x-request-id").cloned();
        assert!(request_id.is_some(), "every response has a request id");
        let text = res.text().await.unwrap();
        self.bodies.push(text.clone());
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn scim(&mut self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let auth = Some(format!("Bearer {SCIM_TOKEN}"));
        self.send(method, &format!("/scim/v2{path}"), auth, body)
            .await
    }
}

#[tokio::test]
async fn no_token_password_or_secret_reaches_logs_audit_bodies_or_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let hook = Hook::start(false);
    let config = config(dir.path(), &hook);
    let db = dir.path().join("gw.db");
    let sql_url = format!("postgres://hr:{SQL_PASSWORD}@127.0.0.1:{}/hr", free_port());
    let mut gw = Gateway::start(
        &config,
        &format!("sqlite://{}", db.display()),
        &dir.path().join("gw.log"),
        &[
            ("TEST_SCIM_TOKEN", SCIM_TOKEN),
            ("SCIM_GATEWAY_ADMIN_TOKEN", ADMIN),
            ("SCIM_GATEWAY_METRICS_TOKEN", METRICS),
            ("TEST_WEBHOOK_SECRET", WEBHOOK),
            ("TEST_LDAP_PASSWORD", LDAP_PASSWORD),
            ("TEST_SQL_URL", &sql_url),
        ],
    )
    .await;
    let mut c = Recorder {
        http: Client::new(),
        base: gw.address(),
        bodies: Vec::new(),
    };
    let user_schema = "urn:ietf:params:scim:schemas:core:2.0:User";

    // Wrong credentials, in the places clients put them.
    let (status, _) = c
        .send(
            Method::GET,
            "/scim/v2/Users",
            Some(format!("Bearer {WRONG_TOKEN}")),
            None,
        )
        .await;
    assert_eq!(status, 401);
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("entra:{SCIM_TOKEN}"));
    let (status, _) = c
        .send(
            Method::GET,
            "/scim/v2/Users",
            Some(format!("Basic {basic}")),
            None,
        )
        .await;
    assert_eq!(status, 401);
    let (status, _) = c
        .send(
            Method::GET,
            &format!("/scim/v2/Users?access_token={SCIM_TOKEN}"),
            None,
            None,
        )
        .await;
    assert_eq!(status, 401);
    let (status, _) = c
        .send(
            Method::GET,
            "/admin/apps",
            Some(format!("Bearer {SCIM_TOKEN}")),
            None,
        )
        .await;
    assert_eq!(status, 401);

    // Passwords on create, replace, PATCH and Bulk; never returned.
    let (status, user) = c
        .scim(
            Method::POST,
            "/Users",
            Some(
                json!({"schemas": [user_schema], "userName": "pat@example.com",
                        "password": PASSWORDS[0], "active": true}),
            ),
        )
        .await;
    assert_eq!(status, 201, "{user}");
    let id = user["id"].as_str().unwrap().to_string();
    let (status, _) = c
        .scim(
            Method::PUT,
            &format!("/Users/{id}"),
            Some(
                json!({"schemas": [user_schema], "userName": "pat@example.com",
                        "password": PASSWORDS[1], "active": true}),
            ),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = c
        .scim(
            Method::PATCH,
            &format!("/Users/{id}"),
            Some(patch_op(
                json!([{"op": "replace", "path": "password", "value": PASSWORDS[2]}]),
            )),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = c
        .scim(
            Method::POST,
            "/Bulk",
            Some(
                json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
                "Operations": [{"method": "POST", "path": "/Users", "bulkId": "b1",
                    "data": {"schemas": [user_schema], "userName": "bulk@example.com",
                             "password": PASSWORDS[0]}}]}),
            ),
        )
        .await;
    assert_eq!(status, 200);
    // Requests that fail with a password in them: wrong types, a filter on it.
    let (status, _) = c
        .scim(
            Method::PATCH,
            &format!("/Users/{id}"),
            Some(patch_op(json!([{"op": "replace", "path": "password",
                                  "value": {"nested": PASSWORDS[0]}}]))),
        )
        .await;
    assert_eq!(status, 400);
    let (status, _) = c
        .scim(
            Method::POST,
            "/Users",
            Some(json!({"schemas": [user_schema], "password": PASSWORDS[1]})),
        )
        .await;
    assert_eq!(status, 400);
    let (status, _) = c
        .scim(
            Method::POST,
            "/Users",
            Some(
                json!({"schemas": [user_schema], "userName": "arr@example.com",
                        "password": {"value": PASSWORDS[2]}}),
            ),
        )
        .await;
    assert_eq!(status, 400);
    let (status, _) = c
        .scim(
            Method::GET,
            &format!("/Users?filter=password%20eq%20%22{}%22", PASSWORDS[0]),
            None,
        )
        .await;
    assert!(status == 200 || status == 400, "{status}");
    let (_, got) = c.scim(Method::GET, &format!("/Users/{id}"), None).await;
    assert!(got.get("password").is_none(), "{got}");
    let (_, got) = c
        .scim(
            Method::GET,
            &format!("/Users/{id}?attributes=password"),
            None,
        )
        .await;
    assert!(got.get("password").is_none(), "{got}");

    // Deliveries: the webhook signs with its secret; LDAP and SQL fail to
    // connect (with the password and URL in hand) until they dead-letter.
    hook.arrived(2).await;
    for app in ["directory", "hrdb"] {
        let http = c.http.clone();
        let url = format!("{}/admin/apps/{app}", gw.address());
        eventually(30, "dead letters", || async {
            let s: Value = http
                .get(&url)
                .bearer_auth(ADMIN)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if s["jobs"]["dead"] == 2 {
                Ok(())
            } else {
                Err(s.to_string())
            }
        })
        .await;
    }
    let auth = |t: &str| Some(format!("Bearer {t}"));
    let (status, _) = c
        .send(
            Method::GET,
            "/admin/apps/hrdb/jobs?state=dead",
            auth(ADMIN),
            None,
        )
        .await;
    assert_eq!(status, 200);

    // What an auditor and a scraper see.
    let audit = c
        .http
        .get(format!("{}/admin/audit", gw.address()))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(audit.status(), 200);
    let audit = audit.text().await.unwrap();
    assert!(audit.contains("\"scim.create\""), "{audit}");
    assert!(audit.contains("delivery.create"), "{audit}");
    assert_clean("the audit export", &audit);
    let metrics = c
        .http
        .get(format!("{}/metrics", gw.address()))
        .bearer_auth(METRICS)
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), 200);
    let metrics = metrics.text().await.unwrap();
    assert!(metrics.contains("scim_gateway_http_requests_total"));
    assert_clean("the metrics", &metrics);
    for body in &c.bodies {
        assert_clean("a response body", body);
    }
    for body in hook.bodies() {
        assert_clean("a webhook event", &body);
    }

    gw.terminate();
    assert!(gw.exited(30).await.success());
    // The logs: JSON lines, each request's with its request id.
    let log = gw.log_text();
    let mut requests = 0;
    for line in log.lines() {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        if v["message"] == "request" {
            requests += 1;
            assert!(
                v["span"]["request_id"].is_string() || v["request_id"].is_string(),
                "{line}"
            );
        }
    }
    assert!(
        requests >= c.bodies.len(),
        "{requests} request lines:\n{log}"
    );
    assert!(
        log.contains("delivery failed"),
        "the failures were logged:\n{log}"
    );
    assert_clean("the log", &log);
    // Nor does any byte of the database hold one (hashes only).
    for file in ["gw.db", "gw.db-wal"] {
        if let Ok(bytes) = std::fs::read(dir.path().join(file)) {
            assert_clean(file, &String::from_utf8_lossy(&bytes));
        }
    }
}
