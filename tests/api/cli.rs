//! The binary as a newcomer and an operator run it: `serve` with no
//! configuration, the development token, `--listen`, `migrate`, and a
//! custom schema extension loaded from a directory.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::*;

const BIN: &str = env!("CARGO_BIN_EXE_scim-gateway");

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn wait_healthy(port: u16) {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if client
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .send()
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("gateway did not become healthy");
}

/// Starts `serve` in `dir` with no configuration and returns the printed token.
fn serve_in(dir: &std::path::Path, port: u16) -> (Running, Vec<String>) {
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .current_dir(dir)
        .env_remove("SCIM_GATEWAY_TOKEN")
        .env_remove("DATABASE_URL")
        .env_remove("SCIM_GATEWAY_CONFIG")
        .env_remove("SCIM_GATEWAY_LISTEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = Vec::new();
    // The banner is printed before the server starts; read until the hint line.
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        let done = line.starts_with("Try:");
        lines.push(line);
        if done || lines.len() > 20 {
            break;
        }
    }
    (Running(child), lines)
}

#[tokio::test]
async fn serve_without_configuration_prints_a_development_token_once() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let (server, lines) = serve_in(dir.path(), port);
    let token = lines
        .iter()
        .map(|l| l.trim())
        .find(|l| l.len() == 40 && l.chars().all(|c| c.is_ascii_alphanumeric()))
        .expect("token line")
        .to_string();
    wait_healthy(port).await;
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/scim/v2/Users");
    let res = client
        .post(&url)
        .bearer_auth(&token)
        .json(&json!({"userName": "first"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    assert!(dir.path().join("data/scim-gateway.db").exists());
    let hash = std::fs::read_to_string(dir.path().join("data/dev-token.sha256")).unwrap();
    assert!(!hash.contains(&token), "only the hash is stored");
    drop(server);

    // A restart keeps the token and the data, and prints no token.
    let port = free_port();
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .current_dir(dir.path())
        .env_remove("SCIM_GATEWAY_TOKEN")
        .env_remove("DATABASE_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _server = Running(child);
    wait_healthy(port).await;
    let url = format!("http://127.0.0.1:{port}/scim/v2/Users");
    let body: Value = client
        .get(&url)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["totalResults"], 1);
    drop(_server);
    let printed: Vec<String> = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .collect();
    assert!(
        !printed.iter().any(|l| l.contains(&token)),
        "token printed again: {printed:?}"
    );
}

#[tokio::test]
async fn serve_takes_token_listen_and_database_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let db = dir.path().join("elsewhere/gw.db");
    let mut child = Command::new(BIN)
        .arg("serve")
        .current_dir(dir.path())
        .env("SCIM_GATEWAY_TOKEN", "env-token")
        .env("SCIM_GATEWAY_LISTEN", format!("127.0.0.1:{port}"))
        .env("DATABASE_URL", format!("sqlite://{}", db.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let server = Running(child);
    wait_healthy(port).await;
    let client = reqwest::Client::new();
    let res = client
        .get(format!("http://127.0.0.1:{port}/scim/v2/Users"))
        .bearer_auth("env-token")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(db.exists());
    assert!(!dir.path().join("data").exists());
    drop(server);
    let printed: Vec<String> = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .collect();
    assert!(printed.iter().all(|l| !l.contains("token")), "{printed:?}");
}

#[tokio::test]
async fn migrate_applies_migrations_and_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    for run in 0..2 {
        let out = Command::new(BIN)
            .arg("migrate")
            .env(
                "DATABASE_URL",
                format!("sqlite://{}/m.db", dir.path().display()),
            )
            .env_remove("RUST_LOG")
            .env_remove("NO_COLOR")
            .output()
            .unwrap();
        let log = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{log}");
        if run == 0 {
            assert!(log.contains("database migrations applied"), "{log}");
            // A pipe is not a terminal: the text log carries no colour codes.
            assert!(!log.contains('\u{1b}'), "{log:?}");
        }
    }
    assert!(dir.path().join("m.db").exists());
}

#[tokio::test]
async fn configuration_file_with_a_custom_extension_schema() {
    let dir = tempfile::tempdir().unwrap();
    let schemas = dir.path().join("schemas");
    std::fs::create_dir(&schemas).unwrap();
    std::fs::write(
        schemas.join("acme.json"),
        json!({"id": "urn:acme:scim:schemas:extension:2.0:User", "name": "AcmeUser", "description": "Acme",
               "attributes": [{"name": "badgeNumber", "type": "integer", "multiValued": false, "required": false,
                               "mutability": "readWrite", "returned": "default"},
                              {"name": "onCall", "type": "boolean"}]})
        .to_string(),
    )
    .unwrap();
    let app = spawn_app_with(|s| s.scim.schemas_dir = Some(schemas.clone())).await;
    let urn = "urn:acme:scim:schemas:extension:2.0:User";
    let res = app
        .post(
            "/Users",
            &json!({"userName": "ext", urn: {"badgeNumber": "42", "ONCALL": "True"}}),
        )
        .await;
    assert_eq!(res.status(), 201);
    let user: Value = res.json().await.unwrap();
    assert_eq!(user[urn], json!({"badgeNumber": 42, "onCall": true}));
    assert!(user["schemas"].as_array().unwrap().contains(&json!(urn)));
    let res = app
        .post("/Users", &json!({"userName": "ext2", urn: {"shoe": 1}}))
        .await;
    assert_scim_error(res, 400, Some("invalidValue")).await;
    let schema: Value = app
        .get(&format!("/Schemas/{urn}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(schema["attributes"][0]["name"], "badgeNumber");
    let rt: Value = app.get("/ResourceTypes/User").await.json().await.unwrap();
    assert!(
        rt["schemaExtensions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["schema"] == urn)
    );
    let found: Value = app
        .get(&format!(
            "/Users?filter={}",
            "urn%3Aacme%3Ascim%3Aschemas%3Aextension%3A2.0%3AUser%3AbadgeNumber%20gt%2040"
        ))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(found["totalResults"], 1);
}
