//! Group commit (`store::Db::write`) on the backend under test: writes
//! queued behind a slow one share its commit, each still succeeds or fails
//! on its own, and a write is visible to every other connection once its
//! caller has the answer.

use std::time::Duration;

use diesel::RunQueryDsl;
use diesel::connection::SimpleConnection;
use scim_gateway::config::DatabaseSettings;
use scim_gateway::store::{AnyConnection, Db, StoreError};

use crate::process::database;

/// A store on a fresh database, with a scratch table `probe (k)`.
async fn store(dir: &std::path::Path) -> (Db, Option<crate::helpers::PgDatabase>) {
    let (url, pg) = database(dir);
    let db = Db::open(&DatabaseSettings {
        url,
        ..DatabaseSettings::default()
    })
    .unwrap();
    db.write(|c| Ok(c.batch_execute("CREATE TABLE probe (k TEXT PRIMARY KEY NOT NULL)")?))
        .await
        .unwrap();
    (db, pg)
}

/// Inserts `k` (test-chosen keys only: the text is built, not bound).
fn insert(conn: &mut AnyConnection, k: &str) -> Result<(), StoreError> {
    diesel::sql_query(format!("INSERT INTO probe (k) VALUES ('{k}')")).execute(conn)?;
    Ok(())
}

#[derive(diesel::QueryableByName)]
struct Key {
    #[diesel(sql_type = diesel::sql_types::Text)]
    k: String,
}

/// The keys, read on a pooled connection (not the writer's).
async fn keys(db: &Db, filter: &str) -> Vec<String> {
    let sql = format!("SELECT k FROM probe {filter} ORDER BY k");
    db.run(move |c| Ok(diesel::sql_query(sql).load::<Key>(c)?))
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.k)
        .collect()
}

/// In the shared transaction a unique violation, an error after writing
/// and a panic each roll back only their own write and answer only their
/// own caller: on PostgreSQL a failed statement aborts the transaction
/// until its savepoint is rolled back, which is what lets the rest commit.
/// (On PostgreSQL, where several writers run batches side by side, the
/// writes that conflict with the slow one wait for its commit.)
#[tokio::test]
async fn queued_writes_share_commits_and_fail_alone() {
    let dir = tempfile::tempdir().unwrap();
    let (db, _pg) = store(dir.path()).await;
    let slow = {
        let db = db.clone();
        tokio::spawn(async move {
            db.write(|c| {
                insert(c, "slow")?;
                std::thread::sleep(Duration::from_millis(300));
                Ok(())
            })
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (commits_before, _) = db.group_commit();
    let mut calls = Vec::new();
    for i in 0..40 {
        let db = db.clone();
        calls.push(tokio::spawn(async move {
            let key = format!("k{i:02}");
            db.write(move |c| match i % 10 {
                3 => insert(c, "slow"), // conflicts with the slow write
                5 => {
                    insert(c, &key)?;
                    Err(StoreError::Conflict("refused after writing".into()))
                }
                7 => {
                    insert(c, &key)?;
                    panic!("write {i} panics");
                }
                _ => insert(c, &key),
            })
            .await
        }));
    }
    slow.await.unwrap().unwrap();
    let mut expected = vec!["slow".to_string()];
    for (i, call) in calls.into_iter().enumerate() {
        let result = call.await.unwrap();
        match i % 10 {
            3 | 5 => assert!(
                matches!(result, Err(StoreError::Conflict(_))),
                "{i}: {result:?}"
            ),
            7 => assert!(
                matches!(result, Err(StoreError::Internal(_))),
                "{i}: {result:?}"
            ),
            _ => {
                result.unwrap();
                expected.push(format!("k{i:02}"));
            }
        }
    }
    expected.sort();
    // The 40 writes queued while the slow one ran: far fewer commits (on
    // PostgreSQL, writers blocked behind the slow write's key each commit
    // what they hold when their batch time is up).
    let commits = db.group_commit().0 - commits_before;
    assert!(commits < 20, "40 queued writes took {commits} commits");
    assert_eq!(keys(&db, "").await, expected);
}

/// A write is answered only after its commit: another connection sees it
/// as soon as the caller has its answer.
#[tokio::test]
async fn an_answered_write_is_visible_to_other_connections() {
    let dir = tempfile::tempdir().unwrap();
    let (db, _pg) = store(dir.path()).await;
    for i in 0..20 {
        let key = format!("v{i:02}");
        let k = key.clone();
        db.write(move |c| insert(c, &k)).await.unwrap();
        let seen = keys(&db, &format!("WHERE k = '{key}'")).await;
        assert_eq!(seen, [key.as_str()], "{key} not visible after its answer");
    }
}

/// Adds one to `k`'s counter (on PostgreSQL, taking its row lock).
fn bump(conn: &mut AnyConnection, k: &str) -> Result<(), StoreError> {
    diesel::sql_query(format!("UPDATE probe SET n = n + 1 WHERE k = '{k}'")).execute(conn)?;
    Ok(())
}

/// Two gateways' writes that lock the same two rows in opposite orders:
/// on PostgreSQL one is chosen as the deadlock victim. Its client must not
/// see that: the victim is rolled back to its savepoint and runs again
/// once its batch has committed, so both succeed and each row is counted
/// twice, not three times. (On SQLite the two writers take turns.)
#[tokio::test]
async fn a_deadlock_victim_runs_again_and_both_writes_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let (first, _pg) = store(dir.path()).await;
    first
        .write(|c| {
            c.batch_execute(
                "ALTER TABLE probe ADD COLUMN n INTEGER NOT NULL DEFAULT 0; \
                 INSERT INTO probe (k) VALUES ('x'), ('y');",
            )?;
            Ok(())
        })
        .await
        .unwrap();
    // A second process on the same database: its own writer, its own batches.
    let second = Db::open(&DatabaseSettings {
        url: match &_pg {
            Some(pg) => pg.url(),
            None => format!("sqlite://{}", dir.path().join("gw.db").display()),
        },
        ..DatabaseSettings::default()
    })
    .unwrap();
    let crossing = |db: Db, a: &'static str, b: &'static str| {
        tokio::spawn(async move {
            db.write(move |c| {
                bump(c, a)?;
                std::thread::sleep(Duration::from_millis(300));
                bump(c, b)
            })
            .await
        })
    };
    let one = crossing(first.clone(), "x", "y");
    let two = crossing(second, "y", "x");
    one.await.unwrap().unwrap();
    two.await.unwrap().unwrap();
    #[derive(diesel::QueryableByName, Debug, PartialEq)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::Text)]
        k: String,
        #[diesel(sql_type = diesel::sql_types::Integer)]
        n: i32,
    }
    let counts = first
        .run(|c| Ok(diesel::sql_query("SELECT k, n FROM probe ORDER BY k").load::<Count>(c)?))
        .await
        .unwrap();
    let counts: Vec<(String, i32)> = counts.into_iter().map(|c| (c.k, c.n)).collect();
    assert_eq!(counts, [("x".to_string(), 2), ("y".to_string(), 2)]);
}

/// On SQLite every write goes through the writer, whose connection the
/// read cache watches: a pooled connection that tried to write would
/// change users unseen, so it cannot.
#[tokio::test]
async fn on_sqlite_only_the_writer_can_write() {
    let dir = tempfile::tempdir().unwrap();
    let (db, pg) = store(dir.path()).await;
    let off_the_writer = db.run(|c| insert(c, "pooled")).await;
    if pg.is_some() {
        off_the_writer.unwrap();
    } else {
        let e = off_the_writer.unwrap_err();
        assert!(e.to_string().contains("readonly"), "{e}");
        assert!(keys(&db, "").await.is_empty());
    }
    // Readiness reads the applied migrations without writing.
    db.is_ready().await.unwrap();
}

/// The read cache keeps watching after the writer had to replace its
/// connection: the new connection reports changes as the old one did.
#[tokio::test]
async fn the_read_cache_sees_writes_on_a_replaced_writer_connection() {
    use diesel::connection::SimpleConnection;
    let dir = tempfile::tempdir().unwrap();
    let (db, pg) = store(dir.path()).await;
    if pg.is_some() {
        return; // no read cache on PostgreSQL
    }
    let set = |data: &'static str| {
        move |c: &mut AnyConnection| -> Result<(), StoreError> {
            c.batch_execute(&format!(
                "INSERT INTO resources (id, tenant, resource_type, data, version, created, last_modified)
                 VALUES ('u1', 't', 'User', '{data}', 1, 'x', 'x')
                 ON CONFLICT (id) DO UPDATE SET data = excluded.data"
            ))?;
            Ok(())
        }
    };
    let read = || async {
        let (row, _) = db.find_user_with_groups("t", "User", "u1").await.unwrap();
        row.data.clone()
    };
    db.write(set("{\"v\":1}")).await.unwrap();
    assert_eq!(read().await, "{\"v\":1}");
    // Ends the batch's transaction behind the writer's back: the savepoint
    // cannot be released, the batch fails, the connection is replaced.
    let broken = db.write(|c| Ok(c.batch_execute("ROLLBACK")?)).await;
    assert!(broken.is_err(), "{broken:?}");
    db.write(|c| insert(c, "after")).await.unwrap();
    assert_eq!(read().await, "{\"v\":1}");
    assert_eq!(read().await, "{\"v\":1}");
    let ((hits, _), _) = db.read_cache().unwrap();
    assert!(hits >= 1, "the user is read from the cache again");
    db.write(set("{\"v\":2}")).await.unwrap();
    assert_eq!(read().await, "{\"v\":2}");
}
