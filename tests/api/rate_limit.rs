//! Request budgets: a token or tenant over its budget gets 429 with
//! `Retry-After` and nothing is stored, while other tenants (and the admin
//! API) are still served; the budget refills with time.

use scim_gateway::config::{
    AppSettings, Budget, Settings, TenantSettings, TokenSettings, hash_token,
};
use serde_json::{Value, json};

use crate::helpers::*;

/// A second token of tenant `acme`.
const ACME_OTHER_TOKEN: &str = "acme-other-token";
/// The pull token of acme's app `crm`.
const CRM_PULL_TOKEN: &str = "crm-pull-token";

fn token(id: &str, secret: &str) -> TokenSettings {
    TokenSettings {
        id: id.into(),
        sha256: Some(hex::encode(hash_token(secret))),
        secret_env: None,
    }
}

/// A second acme token and a pulling app of acme.
fn more_acme_clients(s: &mut Settings) {
    s.tenants.push(TenantSettings {
        id: "acme".into(),
        tokens: vec![token("second", ACME_OTHER_TOKEN)],
    });
    s.apps.push(AppSettings {
        name: "crm".into(),
        tenant: "acme".into(),
        pull_tokens: vec![token("crm-pull", CRM_PULL_TOKEN)],
        ..AppSettings::default()
    });
}

fn new_user(name: &str) -> Value {
    json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": name})
}

/// Sends requests until one is refused; returns how many were served
/// before it and the refusal's `Retry-After` seconds.
async fn spend(app: &TestApp, limit: usize) -> (usize, u64) {
    for served in 0..limit {
        let res = app.get("/Users").await;
        if res.status() == 429 {
            let retry: u64 = res
                .headers()
                .get("retry-after")
                .expect("429 carries Retry-After")
                .to_str()
                .unwrap()
                .parse()
                .expect("Retry-After in seconds");
            assert_scim_error(res, 429, None).await;
            return (served, retry);
        }
        assert_eq!(res.status(), 200);
    }
    panic!("{limit} requests in a row were all served");
}

#[tokio::test]
async fn a_token_over_its_budget_gets_429_with_retry_after_until_it_refills() {
    let app = spawn_app_with(|s| {
        s.rate_limit.per_token = Some(Budget {
            requests_per_sec: 1.0,
            burst: 3,
        });
    })
    .await;
    let (served, retry) = spend(&app, 50).await;
    assert!(served >= 3, "the burst is served first, got {served}");
    assert!((1..=2).contains(&retry), "Retry-After {retry}");
    // Another tenant's token is untouched, and so is the admin API.
    let globex = app.with_token(GLOBEX_TOKEN);
    assert_eq!(globex.get("/Users").await.status(), 200);
    assert_eq!(app.admin_get("/apps").await.0, 200);
    // The budget refills.
    eventually(15, "acme's budget to refill", || async {
        match app.get("/Users").await.status().as_u16() {
            200 => Ok(()),
            s => Err(format!("status {s}")),
        }
    })
    .await;
}

#[tokio::test]
async fn a_tenant_over_its_budget_is_refused_for_all_its_tokens_and_nothing_is_stored() {
    let app = spawn_app_with(|s| {
        more_acme_clients(s);
        // Refills once in 100 s: no refill can happen during the test.
        s.rate_limit.per_tenant = Some(Budget {
            requests_per_sec: 0.01,
            burst: 2,
        });
    })
    .await;
    for name in ["a", "b"] {
        assert_eq!(app.post("/Users", &new_user(name)).await.status(), 201);
    }
    let res = app.post("/Users", &new_user("c")).await;
    let retry = res.headers().get("retry-after").cloned();
    assert_scim_error(res, 429, None).await;
    let retry: u64 = retry.unwrap().to_str().unwrap().parse().unwrap();
    assert!((90..=100).contains(&retry), "Retry-After {retry}");
    // The tenant's other token shares the budget; nothing was stored.
    let other = app.with_token(ACME_OTHER_TOKEN);
    let res = other.post("/Users", &new_user("d")).await;
    assert_scim_error(res, 429, None).await;
    let creates = app
        .audit_rows()
        .iter()
        .filter(|r| r.action == "scim.create")
        .count();
    assert_eq!(creates, 2);
    // Another tenant and acme's pulling app have budgets of their own.
    let globex = app.with_token(GLOBEX_TOKEN);
    assert_eq!(globex.post("/Users", &new_user("a")).await.status(), 201);
    assert_eq!(
        app.with_token(CRM_PULL_TOKEN).get("/Users").await.status(),
        200
    );
}

#[tokio::test]
async fn bad_tokens_are_401_not_429_and_spend_no_budget() {
    let app = spawn_app_with(|s| {
        s.rate_limit.per_token = Some(Budget {
            requests_per_sec: 0.01,
            burst: 1,
        });
    })
    .await;
    for _ in 0..5 {
        let res = app.with_token("not-a-token").get("/Users").await;
        assert_scim_error(res, 401, None).await;
    }
    assert_eq!(app.get("/Users").await.status(), 200);
    assert_scim_error(app.get("/Users").await, 429, None).await;
}
