//! Loading, environment overrides and validation of the settings.

use super::*;

#[test]
fn defaults_need_no_file() {
    let s = Settings::parse("").unwrap();
    assert_eq!(s.server.listen, "127.0.0.1:8080");
    assert_eq!(s.server.max_body_bytes, 1024 * 1024);
    assert!(s.database.url.starts_with("sqlite://data/"));
}

#[test]
fn environment_overrides_file() {
    let mut s = Settings::parse("[server]\nlisten = \"0.0.0.0:1\"\n").unwrap();
    s.apply_env(|k| match k {
        "SCIM_GATEWAY_LISTEN" => Some("127.0.0.1:9".into()),
        "SCIM_GATEWAY_TOKEN" => Some("s3cret".into()),
        "SCIM_GATEWAY_READ_CACHE_MIB" => Some("0".into()),
        _ => None,
    });
    assert_eq!(s.server.listen, "127.0.0.1:9");
    assert_eq!(s.database.read_cache_mib, 0);
    let tokens = s.token_hashes().unwrap();
    assert_eq!(tokens.len(), 1);
    assert_eq!(tokens[0].tenant, DEFAULT_TENANT);
    assert_eq!(tokens[0].hash, hash_token("s3cret"));
}

#[test]
fn apps_parse_as_documented() {
    let s = Settings::parse(
        r#"
        [[apps]]
        name = "crm"
        tenant = "entra-prod"
        scope = 'active eq true'
        groups = true
        on_leave = "delete"
        rate_limit_per_sec = 20
        [apps.adapter]
        kind = "scim"
        base_url = "https://crm.example.com/scim/v2"
        token_file = "/run/secrets/crm"
        update = "put"
        [apps.mapping]
        userName = { from = "userName", transform = "lower" }
        title = "title"
        [[apps.pull_tokens]]
        id = "crm-pull"
        sha256 = "00"

        [[apps]]
        name = "hooks"
        [apps.adapter]
        kind = "webhook"
        url = "https://hooks.example.com/x"
        secrets_env = ["A", "B"]

        [delivery]
        concurrency = 4
        "#,
    )
    .unwrap();
    assert_eq!(s.apps.len(), 2);
    assert_eq!(s.apps[0].on_leave, LeaveAction::Delete);
    assert!(
        matches!(&s.apps[0].adapter, AdapterSettings::Scim(a) if a.update == UpdateMethod::Put)
    );
    assert!(matches!(&s.apps[1].adapter, AdapterSettings::Webhook(w) if w.secrets_env.len() == 2));
    assert_eq!(s.apps[1].tenant, DEFAULT_TENANT);
    assert_eq!(s.delivery.concurrency, 4);
    // A misspelt adapter key is an error, not a silent default.
    assert!(
        Settings::parse(
            "[[apps]]\nname = \"x\"\n[apps.adapter]\nkind = \"scim\"\nbase_ur = \"y\"\n"
        )
        .is_err()
    );
}

#[test]
fn limits_and_budgets_parse_and_zeros_are_refused() {
    let s = Settings::parse(
        r#"
        [server]
        header_timeout_ms = 2000
        body_timeout_secs = 10
        [scim]
        max_patch_operations = 50
        max_members_per_request = 500
        max_filter_depth = 4
        [rate_limit]
        per_token = { requests_per_sec = 20, burst = 40 }
        per_tenant = { requests_per_sec = 0.5, burst = 1 }
        "#,
    )
    .unwrap();
    s.validate().unwrap();
    assert_eq!(s.scim.max_patch_operations, 50);
    assert_eq!(s.scim.max_string_length, 16 * 1024);
    assert_eq!(
        s.rate_limit.per_tenant,
        Some(Budget {
            requests_per_sec: 0.5,
            burst: 1
        })
    );
    for bad in [
        "[scim]\nmax_attributes = 0\n",
        "[server]\nbody_timeout_secs = 0\n",
        "[rate_limit]\nper_token = { requests_per_sec = 0, burst = 1 }\n",
        "[rate_limit]\nper_token = { requests_per_sec = 1, burst = 0 }\n",
        "[rate_limit]\nper_token = { requests_per_sec = nan, burst = 1 }\n",
    ] {
        assert!(Settings::parse(bad).unwrap().validate().is_err(), "{bad}");
    }
    assert!(Settings::parse("[rate_limit]\nper_token = { rps = 1, burst = 1 }\n").is_err());
}

#[test]
fn unknown_keys_are_rejected() {
    assert!(Settings::parse("[server]\nlisten_addr = \"x\"\n").is_err());
}

#[test]
fn token_needs_exactly_one_source() {
    let s = Settings::parse("[[tenants]]\nid = \"a\"\n[[tenants.tokens]]\nid = \"t\"\n").unwrap();
    assert!(s.token_hashes().is_err());
    let s = Settings::parse(
        "[[tenants]]\nid = \"a\"\n[[tenants.tokens]]\nid = \"t\"\nsha256 = \"zz\"\n",
    )
    .unwrap();
    assert!(s.token_hashes().is_err());
}
