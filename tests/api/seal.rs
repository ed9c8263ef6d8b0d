//! The audit chain on PostgreSQL, sealed after commit by one sealer at a
//! time across every gateway process (`src/store/seal.rs`): two processes
//! writing at once end with one chain without gaps, sealed by the gateways
//! themselves, and a process killed with SIGKILL again and again (so also
//! in the middle of a sealing pass) loses no audit row of an acknowledged
//! write and leaves a chain that verifies. These need PostgreSQL
//! (`SCIM_TEST_POSTGRES_URL`); `scripts/test` runs them in its PostgreSQL pass.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use diesel::sql_types::BigInt;
use diesel::{Connection, PgConnection, QueryableByName, RunQueryDsl};
use serde_json::json;

use crate::helpers::cli_on;
use crate::multi_process::{Database, Gateway, TOKEN, post_user, start};

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// `SELECT count(*) AS n …` on the test database.
fn count(url: &str, sql: &str) -> i64 {
    let mut c = PgConnection::establish(url).unwrap();
    diesel::sql_query(sql)
        .get_result::<Count>(&mut c)
        .unwrap()
        .n
}

/// Rows the sealer has not chained yet.
fn unsealed(url: &str) -> i64 {
    count(
        url,
        "SELECT count(*) AS n FROM audit_events WHERE chain_pos IS NULL",
    )
}

/// Waits until the gateways' own sealers have chained every row (the
/// deadline only ends a test that would otherwise hang).
async fn wait_sealed(url: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while unsealed(url) > 0 {
        assert!(
            Instant::now() < deadline,
            "{} audit rows still unsealed after 30 s",
            unsealed(url)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `scim-gateway audit verify` on the database: (exit code, output).
async fn verify(url: &str) -> (i32, String) {
    let out = cli_on(url, &["audit", "verify"]).await;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[tokio::test]
#[ignore = "needs PostgreSQL; run by scripts/test in its PostgreSQL pass"]
async fn two_gateways_writing_at_once_make_one_chain_without_gaps() {
    let db = Database::create();
    let nodes = Arc::new([start(&db.url()).await, start(&db.url()).await]);
    let client = reqwest::Client::new();
    let tasks = (0..16).map(|t| {
        let (nodes, client) = (nodes.clone(), client.clone());
        tokio::spawn(async move {
            let mut acked = 0;
            for i in 0..20 {
                // Created on one node, changed on the other.
                let (here, there) = (&nodes[(t + i) % 2], &nodes[(t + i + 1) % 2]);
                let res = post_user(&client, here, &format!("seal.{t}.{i}@example.com"))
                    .await
                    .unwrap();
                assert_eq!(res.status(), 201);
                let id = res.json::<serde_json::Value>().await.unwrap()["id"]
                    .as_str()
                    .unwrap()
                    .to_string();
                let res = client
                    .patch(format!("{}/scim/v2/Users/{id}", there.base))
                    .bearer_auth(TOKEN)
                    .json(&json!({
                        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                        "Operations": [{"op": "replace", "path": "title", "value": "Sealed"}],
                    }))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(res.status(), 200);
                acked += 2;
            }
            acked
        })
    });
    let mut acked = 0;
    for t in tasks {
        acked += t.await.unwrap();
    }
    assert_eq!(acked, 640);
    wait_sealed(&db.url()).await;
    let (code, out) = verify(&db.url()).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!(
            "{acked} rows (positions 1..={acked}), from the genesis"
        )),
        "{out}"
    );
    assert!(!out.contains("not sealed yet"), "{out}");
}

#[tokio::test]
#[ignore = "needs PostgreSQL; run by scripts/test in its PostgreSQL pass"]
async fn a_gateway_killed_while_sealing_loses_no_audit_row() {
    let db = Database::create();
    let survivor = Arc::new(start(&db.url()).await);
    let victim: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
    let first = start(&db.url()).await;
    *victim.lock().unwrap() = Some(first.base.clone());
    let mut current: Option<Gateway> = Some(first);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    // Writers alternate between the two nodes; what the killed node did
    // not answer does not count, what either answered 201 must be audited.
    let writers: Vec<_> = (0..8)
        .map(|t| {
            let (survivor, victim, stop, client) = (
                survivor.clone(),
                victim.clone(),
                stop.clone(),
                client.clone(),
            );
            tokio::spawn(async move {
                let mut acked = Vec::new();
                let mut i = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    i += 1;
                    let base = match victim.lock().unwrap().clone() {
                        Some(b) if i % 2 == 0 => b,
                        _ => survivor.base.clone(),
                    };
                    let res = client
                        .post(format!("{base}/scim/v2/Users"))
                        .bearer_auth(TOKEN)
                        .json(&json!({"userName": format!("kill.{t}.{i}@example.com")}))
                        .send()
                        .await;
                    if let Ok(r) = res
                        && r.status() == 201
                    {
                        let body: serde_json::Value = r.json().await.unwrap();
                        acked.push(body["id"].as_str().unwrap().to_string());
                    }
                }
                acked
            })
        })
        .collect();
    for round in 0..5u64 {
        tokio::time::sleep(Duration::from_millis(150 + 70 * round)).await;
        // SIGKILL: no shutdown, a sealing pass in flight is cut off.
        *victim.lock().unwrap() = None;
        if let Some(mut gw) = current.take() {
            gw.child.kill().unwrap();
            gw.child.wait().unwrap();
        }
        let next = start(&db.url()).await;
        *victim.lock().unwrap() = Some(next.base.clone());
        current = Some(next);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut acked = Vec::new();
    for w in writers {
        acked.extend(w.await.unwrap());
    }
    assert!(
        acked.len() > 100,
        "too few writes to mean anything: {}",
        acked.len()
    );
    wait_sealed(&db.url()).await;
    let (code, out) = verify(&db.url()).await;
    assert_eq!(code, 0, "{out}");
    let created = count(
        &db.url(),
        "SELECT count(DISTINCT resource_id) AS n FROM audit_events \
         WHERE action = 'scim.create' AND chain_pos IS NOT NULL",
    );
    let users = count(&db.url(), "SELECT count(*) AS n FROM resources");
    // Every acknowledged create is stored and audited in the chain; a
    // create the killed node committed but could not answer is both too.
    assert!(users >= acked.len() as i64, "{users} < {}", acked.len());
    assert_eq!(created, users, "every stored user has its sealed audit row");
    let mut conn = PgConnection::establish(&db.url()).unwrap();
    for id in &acked {
        let n = diesel::sql_query(
            "SELECT count(*) AS n FROM audit_events \
             WHERE resource_id = $1 AND action = 'scim.create' AND chain_pos IS NOT NULL",
        )
        .bind::<diesel::sql_types::Text, _>(id)
        .get_result::<Count>(&mut conn)
        .unwrap()
        .n;
        assert_eq!(n, 1, "user {id}");
    }
    drop(current);
}
