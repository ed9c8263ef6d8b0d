//! Claiming delivery jobs in batches: several processes (here, several
//! connection pools, each with several claimers) drain one queue together
//! and never claim the same job twice. On PostgreSQL this is `FOR UPDATE
//! SKIP LOCKED`; on SQLite, `BEGIN IMMEDIATE`.

use std::collections::HashSet;

use scim_gateway::config::DatabaseSettings;
use scim_gateway::format::timestamp;
use scim_gateway::store::Db;
use scim_gateway::store::jobs::{self, state};

use crate::process::database;

fn at(offset_secs: i64) -> String {
    timestamp(chrono::Utc::now() + chrono::Duration::seconds(offset_secs))
}

#[tokio::test]
async fn batches_claimed_by_two_processes_at_once_never_overlap() {
    let dir = tempfile::tempdir().unwrap();
    let (url, _pg) = database(dir.path());
    let settings = DatabaseSettings {
        url,
        ..DatabaseSettings::default()
    };
    let processes = [Db::open(&settings).unwrap(), Db::open(&settings).unwrap()];
    let ids: Vec<String> = (0..300).map(|i| format!("user-{i:04}")).collect();
    let all = ids.clone();
    processes[0]
        .write(move |c| jobs::enqueue(c, "acme", &["crm".to_string()], &all, &at(0)))
        .await
        .unwrap();

    // Three claimers per process, each taking batches of up to 7.
    let mut claimers = tokio::task::JoinSet::new();
    for (p, db) in processes.iter().enumerate() {
        for c in 0..3 {
            let (db, worker) = (db.clone(), format!("p{p}-c{c}"));
            claimers.spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let w = worker.clone();
                    let batch = db
                        .write(move |conn| jobs::claim(conn, "crm", &w, 7, &at(0), &at(120)))
                        .await
                        .unwrap();
                    if batch.is_empty() {
                        return (worker, mine);
                    }
                    assert!(batch.len() <= 7);
                    mine.extend(batch.into_iter().map(|j| j.resource_id));
                    tokio::task::yield_now().await;
                }
            });
        }
    }
    let mut seen = HashSet::new();
    let mut by_worker = Vec::new();
    while let Some(done) = claimers.join_next().await {
        let (worker, mine) = done.unwrap();
        for id in &mine {
            assert!(seen.insert(id.clone()), "{id} was claimed twice");
        }
        by_worker.push((worker, mine));
    }
    assert_eq!(seen.len(), ids.len(), "every job was claimed");
    // The rows agree: each is running, claimed by the worker that got it.
    let db = processes[0].clone();
    let rows = db
        .run(|c| jobs::list_jobs(c, "crm", None, None, 1000))
        .await
        .unwrap();
    assert_eq!(rows.len(), ids.len());
    for (worker, mine) in &by_worker {
        for id in mine {
            let row = rows.iter().find(|r| &r.resource_id == id).unwrap();
            assert_eq!(row.state, state::RUNNING);
            assert_eq!(row.claimed_by.as_deref(), Some(worker.as_str()));
            assert_eq!(row.attempts, 1);
        }
    }
}
