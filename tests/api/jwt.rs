//! JSON Web Tokens on the admin and SCIM APIs: RS256, ES256 and HS256 keys
//! generated here, tokens minted here, and every way a token must fail:
//! expired, wrong issuer or audience, unknown key, `alg: none`, algorithm
//! confusion, a role that is not allowed, a tenant that is not its own.

use std::sync::LazyLock;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::Method;
use scim_gateway::config::{
    AdapterSettings, AppSettings, FileAdapterSettings, FileFormat, JwtAlgorithm, JwtKeySettings,
    RuleSettings, Settings,
};
use serde_json::{Value, json};

use crate::helpers::*;

const ISSUER: &str = "https://idp.test";
const AUDIENCE: &str = "scim-gateway";
const HS_SECRET: &str = "a shared HS256 secret of more than thirty-two bytes";

/// Key pairs made once per test binary (RSA generation is slow).
struct TestKeys {
    rsa_private_pkcs1_der: Vec<u8>,
    rsa_public_pem: String,
    ec_private_pkcs8_der: Vec<u8>,
    ec_public_pem: String,
}

static KEYS: LazyLock<TestKeys> = LazyLock::new(|| {
    use p256::pkcs8::EncodePrivateKey;
    use rsa::pkcs1::EncodeRsaPrivateKey;
    use rsa::pkcs8::{EncodePublicKey, LineEnding};
    let mut rng = rsa::rand_core::OsRng;
    let rsa_key = rsa::RsaPrivateKey::new(&mut rng, 2048).expect("RSA key");
    let ec_key = p256::SecretKey::random(&mut rng);
    TestKeys {
        rsa_private_pkcs1_der: rsa_key.to_pkcs1_der().unwrap().as_bytes().to_vec(),
        rsa_public_pem: rsa_key
            .to_public_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap(),
        ec_private_pkcs8_der: ec_key.to_pkcs8_der().unwrap().as_bytes().to_vec(),
        ec_public_pem: ec_key
            .public_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap(),
    }
});

/// How a test token is signed.
#[derive(Clone, Copy)]
enum Signer {
    Rs,
    Es,
    Hs,
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Claims of a valid token for `sub` with `roles`; tests change what they test.
fn claims(sub: &str, roles: &[&str]) -> Value {
    json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": sub, "roles": roles,
        "iat": now(), "exp": now() + 300,
    })
}

fn mint(signer: Signer, claims: &Value) -> String {
    let (alg, kid, key) = match signer {
        Signer::Rs => (
            Algorithm::RS256,
            "rs",
            EncodingKey::from_rsa_der(&KEYS.rsa_private_pkcs1_der),
        ),
        Signer::Es => (
            Algorithm::ES256,
            "es",
            EncodingKey::from_ec_der(&KEYS.ec_private_pkcs8_der),
        ),
        Signer::Hs => (
            Algorithm::HS256,
            "hs",
            EncodingKey::from_secret(HS_SECRET.as_bytes()),
        ),
    };
    let mut header = Header::new(alg);
    header.kid = Some(kid.into());
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

/// A token with a hand-written header and signature part.
fn raw_token(header: &Value, claims: &Value, signature: &str) -> String {
    format!(
        "{}.{}.{signature}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

fn key(kid: &str, algorithm: JwtAlgorithm) -> JwtKeySettings {
    JwtKeySettings {
        kid: Some(kid.into()),
        algorithm,
        issuer: ISSUER.into(),
        audience: AUDIENCE.into(),
        leeway_secs: 30,
        tenants: Vec::new(),
        public_key: None,
        public_key_file: None,
        public_key_env: None,
        secret_env: None,
        secret_file: None,
    }
}

fn file_app(name: &str, tenant: &str, dir: &std::path::Path) -> AppSettings {
    AppSettings {
        name: name.into(),
        tenant: tenant.into(),
        adapter: AdapterSettings::File(FileAdapterSettings {
            directory: dir.join(name),
            format: FileFormat::Ndjson,
            file_name: None,
            batch_max_lines: None,
            batch_max_wait_ms: None,
            csv_columns: Vec::new(),
        }),
        ..AppSettings::default()
    }
}

fn reader_rule(app: &str) -> RuleSettings {
    RuleSettings {
        name: format!("{app}-readers"),
        when: "active eq true".into(),
        app: app.into(),
        entitlements: vec!["Reader".into()],
        duration: None,
        expires_attribute: None,
    }
}

/// A gateway trusting the three test keys (the RSA one from a PEM file,
/// the EC one inline, the HMAC secret from a file), plus a fourth key that
/// may only sign for tenant `acme`, and a file app per tenant.
struct JwtApp {
    app: TestApp,
    _dir: tempfile::TempDir,
}

async fn spawn_jwt_app() -> JwtApp {
    let dir = tempfile::tempdir().unwrap();
    let rsa_pem = dir.path().join("idp-rs.pem");
    std::fs::write(&rsa_pem, &KEYS.rsa_public_pem).unwrap();
    let hs_file = dir.path().join("hs.secret");
    std::fs::write(&hs_file, format!("{HS_SECRET}\n")).unwrap();
    let root = dir.path().to_path_buf();
    let app = spawn_app_with(move |s: &mut Settings| {
        let mut rs = key("rs", JwtAlgorithm::RS256);
        rs.public_key_file = Some(rsa_pem);
        let mut es = key("es", JwtAlgorithm::ES256);
        es.public_key = Some(KEYS.ec_public_pem.clone());
        let mut hs = key("hs", JwtAlgorithm::HS256);
        hs.secret_file = Some(hs_file);
        let mut acme_only = key("acme-idp", JwtAlgorithm::ES256);
        acme_only.public_key = Some(KEYS.ec_public_pem.clone());
        acme_only.tenants = vec!["acme".into()];
        s.auth.jwt = vec![rs, es, hs, acme_only];
        s.apps = vec![
            file_app("acme-files", "acme", &root),
            file_app("globex-files", "globex", &root),
        ];
        s.rules = vec![reader_rule("acme-files"), reader_rule("globex-files")];
    })
    .await;
    JwtApp { app, _dir: dir }
}

impl JwtApp {
    async fn call(&self, method: Method, path: &str, token: &str) -> reqwest::Response {
        self.app
            .client
            .request(method, format!("{}{path}", self.app.address))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    async fn admin_status(&self, method: Method, path: &str, token: &str) -> u16 {
        self.call(method, path, token).await.status().as_u16()
    }

    /// The audit export as parsed NDJSON lines, with the static admin token.
    async fn audit_rows(&self, query: &str) -> Vec<Value> {
        let res = self
            .call(Method::GET, &format!("/admin/audit?{query}"), ADMIN_TOKEN)
            .await;
        assert_eq!(res.status(), 200);
        ndjson(&res.text().await.unwrap())
    }
}

fn ndjson(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test]
async fn admin_tokens_signed_with_each_algorithm_open_the_admin_api() {
    let gw = spawn_jwt_app().await;
    for signer in [Signer::Rs, Signer::Es, Signer::Hs] {
        let token = mint(signer, &claims("ann", &["admin"]));
        let res = gw.call(Method::GET, "/admin/apps", &token).await;
        assert_eq!(res.status(), 200);
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["apps"].as_array().unwrap().len(), 2, "{body}");
    }
    // The action is audited under the token's subject, never the token.
    let token = mint(Signer::Rs, &claims("ann", &["admin"]));
    let status = gw
        .admin_status(Method::POST, "/admin/apps/acme-files/pause", &token)
        .await;
    assert_eq!(status, 200);
    let rows = gw.audit_rows("action=admin.app.pause").await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["actor"], "admin/jwt:ann");
    assert_eq!(rows[0]["tenant"], "acme");
    let everything = gw.audit_rows("").await;
    assert!(
        !everything
            .iter()
            .any(|r| r.to_string().contains(token.as_str())),
        "the token must not be stored"
    );
    // Static admin tokens keep working beside JWTs.
    assert_eq!(
        gw.admin_status(Method::GET, "/admin/apps", ADMIN_TOKEN)
            .await,
        200
    );
}

#[tokio::test]
async fn expiry_is_enforced_with_a_small_leeway() {
    let gw = spawn_jwt_app().await;
    let mut expired = claims("ann", &["admin"]);
    expired["exp"] = json!(now() - 600);
    let res = gw
        .call(Method::GET, "/admin/apps", &mint(Signer::Rs, &expired))
        .await;
    let body = assert_scim_error(res, 401, None).await;
    assert!(!body.to_string().contains("ann"));
    // Ten seconds late is within the configured 30 s of clock skew.
    let mut skewed = claims("ann", &["admin"]);
    skewed["exp"] = json!(now() - 10);
    let status = gw
        .admin_status(Method::GET, "/admin/apps", &mint(Signer::Rs, &skewed))
        .await;
    assert_eq!(status, 200);
    // Not yet valid, and no expiry at all.
    let mut early = claims("ann", &["admin"]);
    early["nbf"] = json!(now() + 600);
    let mut endless = claims("ann", &["admin"]);
    endless.as_object_mut().unwrap().remove("exp");
    for c in [early, endless] {
        let status = gw
            .admin_status(Method::GET, "/admin/apps", &mint(Signer::Es, &c))
            .await;
        assert_eq!(status, 401, "{c}");
    }
}

#[tokio::test]
async fn wrong_issuer_audience_subject_or_key_id_is_unauthorized() {
    let gw = spawn_jwt_app().await;
    let mut cases = Vec::new();
    let mut c = claims("ann", &["admin"]);
    c["iss"] = json!("https://evil.test");
    cases.push(("wrong issuer", mint(Signer::Rs, &c)));
    let mut c = claims("ann", &["admin"]);
    c["aud"] = json!("another-service");
    cases.push(("wrong audience", mint(Signer::Rs, &c)));
    let mut c = claims("ann", &["admin"]);
    c.as_object_mut().unwrap().remove("aud");
    cases.push(("no audience", mint(Signer::Hs, &c)));
    let mut c = claims("ann", &["admin"]);
    c.as_object_mut().unwrap().remove("sub");
    cases.push(("no subject", mint(Signer::Es, &c)));
    // Right key, unknown kid; no kid at all (every test key has one).
    let unknown = jsonwebtoken::encode(
        &Header {
            kid: Some("rotated-away".into()),
            ..Header::new(Algorithm::HS256)
        },
        &claims("ann", &["admin"]),
        &EncodingKey::from_secret(HS_SECRET.as_bytes()),
    )
    .unwrap();
    cases.push(("unknown kid", unknown));
    let no_kid = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims("ann", &["admin"]),
        &EncodingKey::from_secret(HS_SECRET.as_bytes()),
    )
    .unwrap();
    cases.push(("no kid", no_kid));
    // A valid signature over altered claims.
    let good = mint(Signer::Rs, &claims("ann", &["auditor"]));
    let parts: Vec<&str> = good.split('.').collect();
    let promoted = URL_SAFE_NO_PAD.encode(claims("ann", &["admin"]).to_string());
    cases.push((
        "tampered claims",
        format!("{}.{promoted}.{}", parts[0], parts[2]),
    ));
    cases.push(("not a JWT", "abc.def".to_string()));
    for (what, token) in cases {
        let res = gw.call(Method::GET, "/admin/apps", &token).await;
        assert_eq!(res.status(), 401, "{what}");
        assert!(res.headers().contains_key("www-authenticate"), "{what}");
    }
}

#[tokio::test]
async fn alg_none_and_algorithm_confusion_are_refused() {
    let gw = spawn_jwt_app().await;
    let admin = claims("mallory", &["admin", "scim"]);
    let mut tokens = Vec::new();
    for alg in ["none", "None", "NONE"] {
        tokens.push(raw_token(
            &json!({"alg": alg, "typ": "JWT", "kid": "rs"}),
            &admin,
            "",
        ));
    }
    tokens.push(raw_token(&json!({"alg": "none", "typ": "JWT"}), &admin, ""));
    // HS256 "signed" with the RSA key's public PEM as the HMAC secret: the
    // classic confusion, under the RSA key's kid and without one.
    let pem_as_secret = EncodingKey::from_secret(KEYS.rsa_public_pem.as_bytes());
    for kid in [Some("rs"), None] {
        let header = Header {
            kid: kid.map(str::to_string),
            ..Header::new(Algorithm::HS256)
        };
        tokens.push(jsonwebtoken::encode(&header, &admin, &pem_as_secret).unwrap());
    }
    // ES256 signature presented under the RS256 key's kid, and a token
    // claiming RS512 for the RS256 key (a different algorithm of its family).
    let es_under_rs = jsonwebtoken::encode(
        &Header {
            kid: Some("rs".into()),
            ..Header::new(Algorithm::ES256)
        },
        &admin,
        &EncodingKey::from_ec_der(&KEYS.ec_private_pkcs8_der),
    )
    .unwrap();
    tokens.push(es_under_rs);
    let rs512 = jsonwebtoken::encode(
        &Header {
            kid: Some("rs".into()),
            ..Header::new(Algorithm::RS512)
        },
        &admin,
        &EncodingKey::from_rsa_der(&KEYS.rsa_private_pkcs1_der),
    )
    .unwrap();
    tokens.push(rs512);
    // A header demanding an extension nobody here understands.
    let crit = raw_token(
        &json!({"alg": "HS256", "kid": "hs", "crit": ["exp"]}),
        &admin,
        "x",
    );
    tokens.push(crit);
    for token in &tokens {
        let status = gw.admin_status(Method::GET, "/admin/apps", token).await;
        assert_eq!(status, 401, "admin API took {token}");
        let status = gw.admin_status(Method::GET, "/scim/v2/Users", token).await;
        assert_eq!(status, 401, "SCIM API took {token}");
    }
}

#[tokio::test]
async fn an_auditor_reads_the_audit_trail_and_reports_and_nothing_else() {
    let gw = spawn_jwt_app().await;
    let auditor = mint(Signer::Es, &claims("aud-it", &["auditor"]));
    assert_eq!(
        gw.admin_status(Method::GET, "/admin/audit", &auditor).await,
        200
    );
    assert_eq!(
        gw.admin_status(Method::GET, "/admin/reports/access", &auditor)
            .await,
        200
    );
    for (method, path) in [
        (Method::POST, "/admin/apps/acme-files/pause"),
        (Method::POST, "/admin/plan"),
        (Method::GET, "/admin/apps"),
        (Method::GET, "/admin/apps/acme-files/jobs"),
        (Method::POST, "/admin/apps/acme-files/reconcile"),
    ] {
        let res = gw.call(method.clone(), path, &auditor).await;
        let body = assert_scim_error(res, 403, None).await;
        assert!(
            body["detail"].as_str().unwrap().contains("auditor"),
            "{method} {path}: {body}"
        );
    }
    // Nothing was paused.
    let (_, app) = gw.app.admin_get("/apps/acme-files").await;
    assert_eq!(app["paused"], false);
    // A token with neither role gets nothing from the admin API.
    let nobody = mint(Signer::Es, &claims("bob", &["viewer"]));
    let res = gw.call(Method::GET, "/admin/audit", &nobody).await;
    assert_scim_error(res, 403, None).await;
}

#[tokio::test]
async fn a_tenant_claim_limits_admins_and_auditors_to_their_tenant() {
    let gw = spawn_jwt_app().await;
    gw.app.create_user("ann@acme.test").await;
    gw.app
        .with_token(GLOBEX_TOKEN)
        .create_user("gus@globex.test")
        .await;
    let mut c = claims("acme-auditor", &["auditor"]);
    c["tenant"] = json!("acme");
    let auditor = mint(Signer::Rs, &c);

    // Audit export: only acme's rows, whatever the query asks for.
    let res = gw.call(Method::GET, "/admin/audit", &auditor).await;
    assert_eq!(res.status(), 200);
    let rows = ndjson(&res.text().await.unwrap());
    assert!(
        rows.iter().any(|r| r["action"] == "scim.create"),
        "{rows:?}"
    );
    assert!(rows.iter().all(|r| r["tenant"] == "acme"), "{rows:?}");
    assert!(
        gw.audit_rows("tenant=globex")
            .await
            .iter()
            .any(|r| r["action"] == "scim.create"),
        "globex has rows the scoped auditor did not see"
    );
    let res = gw
        .call(Method::GET, "/admin/audit?tenant=globex", &auditor)
        .await;
    assert_scim_error(res, 403, None).await;

    // Access report: only acme's grants (once both apps have granted).
    let full = eventually(20, "grants of both tenants", || async {
        let res = gw
            .call(Method::GET, "/admin/reports/access", ADMIN_TOKEN)
            .await;
        let rows = ndjson(&res.text().await.unwrap());
        if rows.len() == 4 {
            Ok(rows)
        } else {
            Err(format!("{rows:?}"))
        }
    })
    .await;
    assert!(full.iter().any(|r| r["app"] == "globex-files"));
    let res = gw
        .call(Method::GET, "/admin/reports/access", &auditor)
        .await;
    assert_eq!(res.status(), 200);
    let scoped = ndjson(&res.text().await.unwrap());
    assert_eq!(scoped.len(), 2, "{scoped:?}");
    assert!(
        scoped.iter().all(|r| r["app"] == "acme-files"),
        "{scoped:?}"
    );
    let res = gw
        .call(Method::GET, "/admin/reports/access?tenant=globex", &auditor)
        .await;
    assert_scim_error(res, 403, None).await;

    // A scoped admin sees and acts on its tenant's apps only.
    let mut c = claims("acme-admin", &["admin"]);
    c["tenant"] = json!("acme");
    let admin = mint(Signer::Hs, &c);
    let res = gw.call(Method::GET, "/admin/apps", &admin).await;
    let body: Value = res.json().await.unwrap();
    let names: Vec<&str> = body["apps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["acme-files"]);
    let res = gw
        .call(Method::POST, "/admin/apps/globex-files/pause", &admin)
        .await;
    assert_scim_error(res, 404, None).await;
    let (_, globex) = gw.app.admin_get("/apps/globex-files").await;
    assert_eq!(globex["paused"], false);
    assert_eq!(
        gw.admin_status(Method::POST, "/admin/apps/acme-files/pause", &admin)
            .await,
        200
    );
    // The whole-configuration preview concerns every tenant.
    let res = gw.call(Method::POST, "/admin/plan", &admin).await;
    assert_scim_error(res, 403, None).await;
    // The pause is in acme's trail, which the scoped auditor reads.
    let res = gw
        .call(Method::GET, "/admin/audit?action=admin.app.pause", &auditor)
        .await;
    let rows = ndjson(&res.text().await.unwrap());
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["actor"], "admin/jwt:acme-admin");
}

#[tokio::test]
async fn a_scim_token_works_for_its_own_tenant_only() {
    let gw = spawn_jwt_app().await;
    gw.app
        .with_token(GLOBEX_TOKEN)
        .create_user("gus@globex.test")
        .await;
    let mut c = claims("entra-sync", &["scim"]);
    c["tenant"] = json!("acme");
    let acme = gw.app.with_token(&mint(Signer::Rs, &c));
    let created = acme.create_user("ann@acme.test").await;
    let id = created["id"].as_str().unwrap();
    let list = acme.list_ok("/Users", &[]).await;
    assert_eq!(resource_field(&list, "userName"), ["ann@acme.test"]);
    // The opaque token of acme sees the same user.
    assert_eq!(gw.app.user_count().await, 1);
    // globex's user is invisible, by list and by id.
    let globex_list = gw.app.with_token(GLOBEX_TOKEN).list_ok("/Users", &[]).await;
    let gus = globex_list["Resources"][0]["id"].as_str().unwrap();
    assert_eq!(acme.get(&format!("/Users/{gus}")).await.status(), 404);

    // The same subject for globex sees globex's user, not acme's.
    let mut c = claims("entra-sync", &["scim"]);
    c["tenant"] = json!("globex");
    let globex = gw.app.with_token(&mint(Signer::Es, &c));
    let list = globex.list_ok("/Users", &[]).await;
    assert_eq!(resource_field(&list, "userName"), ["gus@globex.test"]);
    assert_eq!(globex.get(&format!("/Users/{id}")).await.status(), 404);

    // The audit trail names the subject.
    let rows = gw
        .audit_rows(&format!("identity={id}&action=scim.create"))
        .await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["actor"], "acme/jwt:entra-sync");
    assert_eq!(rows[0]["tenant"], "acme");

    // Without a tenant claim a SCIM token cannot act.
    let no_tenant = gw
        .app
        .with_token(&mint(Signer::Rs, &claims("entra-sync", &["scim"])));
    assert_scim_error(no_tenant.get("/Users").await, 403, None).await;
}

#[tokio::test]
async fn roles_keep_the_scim_and_admin_planes_apart() {
    let gw = spawn_jwt_app().await;
    let mut c = claims("entra-sync", &["scim"]);
    c["tenant"] = json!("acme");
    let scim = mint(Signer::Rs, &c);
    for path in ["/admin/apps", "/admin/audit", "/admin/reports/access"] {
        let res = gw.call(Method::GET, path, &scim).await;
        assert_scim_error(res, 403, None).await;
    }
    // An admin (even one naming a tenant) may not read or write SCIM.
    let mut c = claims("ann", &["admin", "auditor"]);
    c["tenant"] = json!("acme");
    let admin = gw.app.with_token(&mint(Signer::Rs, &c));
    let res = admin
        .post(
            "/Users",
            &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "x@acme.test"}),
        )
        .await;
    let body = assert_scim_error(res, 403, None).await;
    assert!(body["detail"].as_str().unwrap().contains("scim role"));
    assert_scim_error(admin.get("/Users").await, 403, None).await;
    assert_eq!(gw.app.user_count().await, 0);
    // A token carrying both roles works on both planes.
    let mut c = claims("ops", &["admin", "scim"]);
    c["tenant"] = json!("acme");
    let both = mint(Signer::Hs, &c);
    assert_eq!(gw.app.with_token(&both).user_count().await, 0);
    assert_eq!(
        gw.admin_status(Method::GET, "/admin/apps", &both).await,
        200
    );
    // Opaque tokens stay on their plane: admin on SCIM and SCIM on admin are 401.
    assert_eq!(
        gw.admin_status(Method::GET, "/scim/v2/Users", ADMIN_TOKEN)
            .await,
        401
    );
    assert_eq!(
        gw.admin_status(Method::GET, "/admin/apps", ACME_TOKEN)
            .await,
        401
    );
}

#[tokio::test]
async fn a_key_limited_to_tenants_cannot_sign_for_others() {
    let gw = spawn_jwt_app().await;
    let sign = |claims: &Value| {
        let header = Header {
            kid: Some("acme-idp".into()),
            ..Header::new(Algorithm::ES256)
        };
        jsonwebtoken::encode(
            &header,
            claims,
            &EncodingKey::from_ec_der(&KEYS.ec_private_pkcs8_der),
        )
        .unwrap()
    };
    let mut own = claims("entra-sync", &["scim"]);
    own["tenant"] = json!("acme");
    assert_eq!(gw.app.with_token(&sign(&own)).user_count().await, 0);
    let mut other = claims("entra-sync", &["scim"]);
    other["tenant"] = json!("globex");
    let res = gw.app.with_token(&sign(&other)).get("/Users").await;
    assert_scim_error(res, 401, None).await;
    // Nor an unscoped admin token.
    let admin = sign(&claims("ann", &["admin"]));
    assert_eq!(
        gw.admin_status(Method::GET, "/admin/apps", &admin).await,
        401
    );
}
