//! `/metrics` as Prometheus scrapes it, parsed by a small text-format
//! parser; `/readyz` when the schema is behind the binary.

use std::collections::BTreeMap;

use scim_gateway::config::{Settings, TokenSettings, hash_token};
use serde_json::json;

use crate::delivery::{downstream, scim_app};
use crate::helpers::*;

const METRICS_TOKEN: &str = "metrics-test-token";

/// One sample line.
#[derive(Debug, Clone)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Parses the text exposition format (0.0.4) strictly enough to catch a
/// malformed line: every sample belongs to a family declared by `# TYPE`.
pub fn parse_exposition(text: &str) -> Vec<Sample> {
    let mut families: Vec<String> = Vec::new();
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{line}"
            );
            families.push(name.to_string());
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let sample = parse_sample(line);
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| sample.name.strip_suffix(suffix))
            .filter(|base| families.iter().any(|f| f == base))
            .unwrap_or(&sample.name)
            .to_string();
        assert!(
            families.contains(&family),
            "sample before its # TYPE: {line}"
        );
        out.push(sample);
    }
    out
}

fn parse_sample(line: &str) -> Sample {
    let name_end = line.find(['{', ' ']).expect("sample name");
    let name = line[..name_end].to_string();
    assert!(
        name.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
        "{line}"
    );
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(body) = rest.strip_prefix('{') {
        let mut chars = body.char_indices();
        let mut key = String::new();
        let end = loop {
            let (i, c) = chars.next().expect("unterminated labels");
            match c {
                '}' => break i,
                ',' => {}
                '=' => {
                    assert_eq!(chars.next().map(|x| x.1), Some('"'), "{line}");
                    let mut value = String::new();
                    loop {
                        match chars.next().expect("unterminated label value").1 {
                            '"' => break,
                            '\\' => match chars.next().expect("escape").1 {
                                'n' => value.push('\n'),
                                c => value.push(c),
                            },
                            c => value.push(c),
                        }
                    }
                    labels.insert(std::mem::take(&mut key), value);
                }
                c => key.push(c),
            }
        };
        rest = &body[end + 1..];
    }
    let value = rest
        .split_whitespace()
        .next()
        .expect("sample value")
        .parse::<f64>()
        .unwrap_or_else(|_| panic!("bad value: {line}"));
    Sample {
        name,
        labels,
        value,
    }
}

/// The value of the one sample named `name` with exactly these labels.
pub fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let want: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let found: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.name == name && s.labels == want)
        .collect();
    assert!(found.len() <= 1, "{name} {labels:?} twice");
    found.first().map(|s| s.value)
}

fn allow_scrapes(s: &mut Settings) {
    s.metrics.tokens.push(TokenSettings {
        id: "prometheus".into(),
        sha256: Some(hex::encode(hash_token(METRICS_TOKEN))),
        secret_env: None,
    });
}

/// Scrapes as Prometheus does and parses the answer.
pub async fn scrape(app: &TestApp, token: &str) -> Vec<Sample> {
    let res = app
        .client
        .get(format!("{}/metrics", app.address))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let ct = res.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    parse_exposition(&res.text().await.unwrap())
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_deliveries_by_app() {
    let down = downstream().await;
    let (base, token) = (down.base(), down.token_file.clone());
    // `void` points at a path the downstream does not serve: every create
    // there is a 404, a dead letter.
    let void = format!("{}/nowhere/scim/v2", down.app.address);
    let up = spawn_app_with(move |s: &mut Settings| {
        allow_scrapes(s);
        s.apps.push(scim_app("crm", &base, &token));
        s.apps.push(scim_app("void", &void, &token));
    })
    .await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let u = up.create_user(&format!("metric{i}@example.com")).await;
        ids.push(u["id"].as_str().unwrap().to_string());
    }
    let res = up
        .post("/Users", &json!({"userName": "metric0@example.com"}))
        .await;
    assert_eq!(res.status(), 409);
    assert_eq!(up.get(&format!("/Users/{}", ids[0])).await.status(), 200);
    assert_eq!(up.get("/Users/no-such-user").await.status(), 404);

    let samples = eventually(30, "every delivery settled", || async {
        let s = scrape(&up, METRICS_TOKEN).await;
        let ops = |app, outcome| {
            value(
                &s,
                "scim_gateway_delivery_operations_total",
                &[("app", app), ("op", "create"), ("outcome", outcome)],
            )
        };
        // A scrape reads the queue gauges from the database before it
        // renders the counters, so an outcome committed in between shows
        // in the counter but not yet in the gauge: wait for both.
        let crm_queued: f64 = ["pending", "running"]
            .iter()
            .filter_map(|st| value(&s, "scim_gateway_jobs", &[("app", "crm"), ("state", st)]))
            .sum();
        let void_dead = value(
            &s,
            "scim_gateway_jobs",
            &[("app", "void"), ("state", "dead")],
        );
        if ops("crm", "success") == Some(3.0)
            && ops("void", "dead_letter") == Some(3.0)
            && crm_queued == 0.0
            && void_dead == Some(3.0)
        {
            Ok(s)
        } else {
            Err(format!(
                "{:?} {:?} {crm_queued}",
                ops("crm", "success"),
                ops("void", "dead_letter")
            ))
        }
    })
    .await;
    let v = |name: &str, labels: &[(&str, &str)]| value(&samples, name, labels);
    let requests = "scim_gateway_http_requests_total";
    let post = [("route", "/scim/v2/Users"), ("method", "POST")];
    assert_eq!(
        v(requests, &[post[0], post[1], ("status", "201")]),
        Some(3.0)
    );
    assert_eq!(
        v(requests, &[post[0], post[1], ("status", "409")]),
        Some(1.0)
    );
    let by_id = [("route", "/scim/v2/Users/{id}"), ("method", "GET")];
    assert_eq!(
        v(requests, &[by_id[0], by_id[1], ("status", "200")]),
        Some(1.0)
    );
    assert_eq!(
        v(requests, &[by_id[0], by_id[1], ("status", "404")]),
        Some(1.0)
    );
    // The latency histogram: one observation per request, buckets cumulative.
    let duration = "scim_gateway_http_request_duration_seconds";
    assert_eq!(v(&format!("{duration}_count"), &post), Some(4.0));
    let mut buckets: Vec<(f64, f64)> = samples
        .iter()
        .filter(|s| {
            s.name == format!("{duration}_bucket")
                && s.labels["route"] == "/scim/v2/Users"
                && s.labels["method"] == "POST"
        })
        .map(|s| (s.labels["le"].parse::<f64>().unwrap(), s.value))
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert!(buckets.windows(2).all(|w| w[0].1 <= w[1].1), "{buckets:?}");
    assert_eq!(buckets.last(), Some(&(f64::INFINITY, 4.0)));
    // No label carries an id or a user name.
    for s in &samples {
        for l in s.labels.values() {
            assert!(
                !ids.iter().any(|id| l.contains(id.as_str())) && !l.contains("example.com"),
                "{s:?}"
            );
        }
    }

    // Delivery, from the database at scrape time.
    let jobs = "scim_gateway_jobs";
    for state in ["pending", "running", "dead"] {
        assert_eq!(v(jobs, &[("app", "crm"), ("state", state)]), Some(0.0));
    }
    assert_eq!(v(jobs, &[("app", "void"), ("state", "dead")]), Some(3.0));
    assert_eq!(
        v("scim_gateway_dead_letters", &[("app", "void")]),
        Some(3.0)
    );
    assert_eq!(v("scim_gateway_dead_letters", &[("app", "crm")]), Some(0.0));
    for app in ["crm", "void"] {
        let age = v("scim_gateway_delivery_queue_age_seconds", &[("app", app)]);
        assert_eq!(age, Some(0.0), "{app}: nothing waits (dead letters do not)");
        assert_eq!(v("scim_gateway_app_paused", &[("app", app)]), Some(0.0));
        assert_eq!(
            v("scim_gateway_app_quarantined", &[("app", app)]),
            Some(0.0)
        );
    }
    let latency = "scim_gateway_delivery_latency_seconds";
    assert_eq!(v(&format!("{latency}_count"), &[("app", "crm")]), Some(3.0));
    assert!(v(&format!("{latency}_sum"), &[("app", "crm")]).unwrap() > 0.0);
    assert_eq!(v(&format!("{latency}_count"), &[("app", "void")]), None);

    // An admin retry of the dead letters shows as waiting jobs again.
    let (status, _) = up.admin_post("/apps/void/pause").await;
    assert_eq!(status, 200);
    let (status, _) = up.admin_post("/apps/void/retry").await;
    assert_eq!(status, 200);
    let s = scrape(&up, METRICS_TOKEN).await;
    assert_eq!(
        value(&s, jobs, &[("app", "void"), ("state", "pending")]),
        Some(3.0)
    );
    assert_eq!(
        value(&s, "scim_gateway_dead_letters", &[("app", "void")]),
        Some(0.0)
    );
    assert_eq!(
        value(&s, "scim_gateway_app_paused", &[("app", "void")]),
        Some(1.0)
    );
    let age = value(
        &s,
        "scim_gateway_delivery_queue_age_seconds",
        &[("app", "void")],
    );
    assert!(age.unwrap() > 0.0, "{age:?}");
}

#[tokio::test]
async fn a_quarantined_app_shows_in_the_metrics() {
    let crm = downstream().await;
    let (base, token) = (crm.base(), crm.token_file.clone());
    let up = spawn_app_with(move |s: &mut Settings| {
        allow_scrapes(s);
        let mut app = scim_app("crm", &base, &token);
        app.concurrency = Some(1);
        app.safety.max_deprovisions = Some(1);
        s.apps.push(app);
    })
    .await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let u = up.create_user(&format!("q{i}@example.com")).await;
        ids.push(u["id"].as_str().unwrap().to_string());
    }
    eventually(20, "three accounts", || async {
        let n = crm.app.user_count().await;
        if n == 3 { Ok(()) } else { Err(format!("{n}")) }
    })
    .await;
    for id in &ids {
        up.patch_ok(
            &format!("/Users/{id}"),
            json!([{"op": "replace", "path": "active", "value": false}]),
        )
        .await;
    }
    let s = eventually(20, "the quarantine in the metrics", || async {
        let s = scrape(&up, METRICS_TOKEN).await;
        match value(&s, "scim_gateway_app_quarantined", &[("app", "crm")]) {
            Some(1.0) => Ok(s),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert_eq!(
        value(&s, "scim_gateway_app_paused", &[("app", "crm")]),
        Some(1.0)
    );
    let held = value(
        &s,
        "scim_gateway_jobs",
        &[("app", "crm"), ("state", "pending")],
    )
    .unwrap();
    assert!(held >= 1.0, "the held deprovisions wait: {held}");
}

/// Scrapes a gateway whose `/metrics` is public.
async fn scrape_public(app: &TestApp) -> Vec<Sample> {
    let res = app
        .client
        .get(format!("{}/metrics", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    parse_exposition(&res.text().await.unwrap())
}

#[tokio::test]
async fn metrics_need_a_metrics_token_unless_public() {
    let app = spawn_app_with(allow_scrapes).await;
    let get = |token: Option<&'static str>| {
        let app = app.clone();
        async move {
            let mut rb = app.client.get(format!("{}/metrics", app.address));
            if let Some(t) = token {
                rb = rb.bearer_auth(t);
            }
            rb.send().await.unwrap()
        }
    };
    // Neither anonymous scrapers nor SCIM or admin tokens: each role has its own.
    for token in [None, Some(ACME_TOKEN), Some(ADMIN_TOKEN), Some("wrong")] {
        let res = get(token).await;
        assert_scim_error(res, 401, None).await;
    }
    assert_eq!(get(Some(METRICS_TOKEN)).await.status(), 200);
    // A metrics token opens nothing else.
    let res = app.with_token(METRICS_TOKEN).get("/Users").await;
    assert_eq!(res.status(), 401);
    let res = app
        .client
        .get(format!("{}/admin/apps", app.address))
        .bearer_auth(METRICS_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    // 405 for anything but GET.
    let res = app
        .client
        .post(format!("{}/metrics", app.address))
        .bearer_auth(METRICS_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 405);

    let public = spawn_app_with(|s| s.metrics.public = true).await;
    let samples = scrape_public(&public).await;
    // Only the group-commit counters: nothing else has counted yet
    // (the delivery engine's start-up write may already have committed);
    // SQLite's read cache and PostgreSQL's audit sealer report themselves
    // empty.
    let db_counter = |s: &Sample| {
        s.name.starts_with("scim_gateway_db_")
            || ((s.name.starts_with("scim_gateway_read_cache_")
                || s.name.starts_with("scim_gateway_audit_"))
                && s.value == 0.0)
    };
    assert!(
        samples.iter().all(db_counter),
        "a fresh gateway has counted nothing yet: {:?}",
        samples.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    let value =
        |samples: &[Sample], name: &str| samples.iter().find(|s| s.name == name).map(|s| s.value);
    let writes_before = value(&samples, "scim_gateway_db_writes_total");

    // Writes show in the group-commit counters, on both backends.
    for i in 0..5 {
        public.create_user(&format!("counted{i}")).await;
    }
    let samples = scrape_public(&public).await;
    let commits = value(&samples, "scim_gateway_db_commits_total").unwrap();
    let writes = value(&samples, "scim_gateway_db_writes_total").unwrap();
    assert!(
        commits >= 1.0 && writes >= writes_before.unwrap_or(0.0) + 5.0 && writes >= commits,
        "{commits} {writes}"
    );
}

#[tokio::test]
async fn readyz_fails_while_a_migration_is_missing() {
    let app = spawn_app().await;
    let readyz = || async {
        let res = app
            .client
            .get(format!("{}/readyz", app.address))
            .send()
            .await
            .unwrap();
        (res.status().as_u16(), res.text().await.unwrap())
    };
    assert_eq!(readyz().await, (200, "ready".to_string()));
    // As if the database were restored from before the latest migration.
    app.execute_sql(
        "DELETE FROM __diesel_schema_migrations WHERE version = \
         (SELECT MAX(version) FROM __diesel_schema_migrations)",
    );
    assert_eq!(
        readyz().await,
        (503, "database migrations not applied".to_string())
    );
    let res = app
        .client
        .get(format!("{}/healthz", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "the process itself is up");
}
