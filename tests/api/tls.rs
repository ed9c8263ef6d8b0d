//! HTTPS end to end: a certificate generated here, the gateway serving it
//! from PEM files, clients that trust it (or not), HTTP/2 by ALPN, and the
//! start-up error for a certificate that is not there.

use std::process::Command;

use reqwest::Version;
use scim_gateway::config::TlsSettings;
use serde_json::json;

use crate::helpers::*;

/// A self-signed certificate for `localhost`, written as PEM files; the
/// certificate's PEM text is returned for clients to trust.
fn certificate(dir: &std::path::Path) -> (TlsSettings, String) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    (TlsSettings { cert, key }, ck.cert.pem())
}

fn trusting(pem: &str) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes()).unwrap())
}

#[tokio::test]
async fn scim_over_https_negotiates_http2() {
    let dir = tempfile::tempdir().unwrap();
    let (tls, pem) = certificate(dir.path());
    let mut app = spawn_app_with(|s| s.server.tls = Some(tls)).await;
    assert!(
        app.address.starts_with("https://localhost:"),
        "{}",
        app.address
    );
    app.client = trusting(&pem).build().unwrap();

    let user = app.create_user("tls@example.com").await;
    let id = user["id"].as_str().unwrap();
    assert!(
        user["meta"]["location"]
            .as_str()
            .unwrap()
            .starts_with("https://localhost:"),
        "links name the scheme the client used: {user}"
    );
    let res = app.get(&format!("/Users/{id}")).await;
    assert_eq!(res.version(), Version::HTTP_2, "ALPN chose h2");
    assert_eq!(res.status(), 200);
    let got: serde_json::Value = res.json().await.unwrap();
    assert_eq!(got["userName"], "tls@example.com");
    let res = app
        .patch(
            &format!("/Users/{id}"),
            &patch_op(json!([{"op": "replace", "path": "title", "value": "Courier"}])),
        )
        .await;
    assert_eq!(res.version(), Version::HTTP_2);
    assert_eq!(res.status(), 200);

    // A client that offers only HTTP/1.1 gets it.
    let h1 = trusting(&pem).http1_only().build().unwrap();
    let res = h1
        .get(app.url("/Users"))
        .bearer_auth(ACME_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(res.version(), Version::HTTP_11);
    assert_eq!(res.status(), 200);

    // The certificate is really checked: a client that does not trust it
    // gets no answer, and neither does cleartext HTTP on the TLS port.
    let untrusting = reqwest::Client::builder().use_rustls_tls().build().unwrap();
    assert!(untrusting.get(app.url("/Users")).send().await.is_err());
    let plain = app.address.replace("https://", "http://");
    assert!(
        reqwest::Client::new()
            .get(format!("{plain}/healthz"))
            .send()
            .await
            .is_err()
    );
}

#[tokio::test]
async fn serve_refuses_to_start_with_a_missing_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gw.toml");
    let missing = dir.path().join("no-such-cert.pem");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[server.tls]\ncert = {:?}\nkey = {:?}\n",
            missing.display().to_string(),
            dir.path().join("key.pem").display().to_string()
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_scim-gateway"))
        .arg("--config")
        .arg(&config)
        .arg("serve")
        .env("SCIM_GATEWAY_TOKEN", "t")
        .env(
            "DATABASE_URL",
            format!("sqlite://{}", dir.path().join("gw.db").display()),
        )
        .env_remove("SCIM_GATEWAY_LISTEN")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("reading the TLS certificate") && stderr.contains("no-such-cert.pem"),
        "{stderr}"
    );
}
