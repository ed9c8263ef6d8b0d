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
/// The SCIM media type.
pub const SCIM_JSON: &str = "application/scim+json";

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub token: String,
    pub db_path: std::path::PathBuf,
    _dir: tempfile::TempDir,
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
}

fn test_tokens() -> Vec<TokenHash> {
    vec![
        TokenHash {
            tenant: "acme".into(),
            token_id: "entra".into(),
            hash: hash_token(ACME_TOKEN),
        },
        TokenHash {
            tenant: "globex".into(),
            token_id: "okta".into(),
            hash: hash_token(GLOBEX_TOKEN),
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
    customise(&mut settings);
    let app = Application::build(&settings, test_tokens()).expect("build app");
    let address = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    TestApp {
        address,
        client: reqwest::Client::new(),
        token: ACME_TOKEN.into(),
        db_path: dir.path().join("gw.db"),
        _dir: dir,
    }
}

impl TestApp {
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
