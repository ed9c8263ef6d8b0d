//! Group commit for SQLite: one writer thread runs the process's write
//! transactions, several to a commit.
//!
//! ```text
//!  request ─┐                       ┌─ BEGIN IMMEDIATE ──────────────────────┐
//!  request ─┼─▶ queue ─▶ writer ───▶│ SAVEPOINT; write 1; RELEASE            │─▶ COMMIT ─▶ answer 1..n
//!  request ─┘   (mpsc)   thread     │ SAVEPOINT; write 2; ROLLBACK TO (err)  │
//!                                   └─ … while queued and the batch is young ┘
//! ```
//!
//! SQLite has one write lock per file, so its writers run one after the
//! other whatever we do; what costs is the commit (WAL frames, and now and
//! then a checkpoint). The writer takes a write from the queue and, while
//! more are queued and the batch is younger than [`BATCH_TIME`], runs them in
//! the same transaction, each in a savepoint of its own: a write that fails
//! rolls back only itself, and answers with its own error. Every caller is
//! answered after the commit that made its write durable, so an
//! acknowledged write is never one a crash can take back. Under light load
//! a batch is one write and the commit happens at once; under heavy load
//! one commit carries many writes and the pages they share are written once.
//!
//! Checkpoints (copying the WAL back into the database file) run on a
//! thread of their own, after commits and at most every
//! [`CHECKPOINT_PAUSE`] (see [`checkpoint`]): left to SQLite's automatic
//! checkpoint, the commit that crosses the WAL threshold copies it on the
//! writer thread, which a profile of creates showed was a sixth of the
//! writer's time. The connections keep an automatic checkpoint at a much
//! larger WAL ([`super::connection`]) in case this thread falls behind.
//!
//! A write that panics is rolled back to its savepoint and answered with an
//! internal error; the others in its batch are unaffected. If the commit
//! itself fails (disk full, I/O error), every write of the batch is answered
//! with that error and nothing of the batch is kept.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use diesel::SqliteConnection;
use diesel::connection::{AnsiTransactionManager, TransactionManager};
use tokio::sync::oneshot;

use super::StoreError;
use super::connection::{AnyConnection, Manager};

/// How long a batch keeps taking queued writes before it commits.
const BATCH_TIME: Duration = Duration::from_millis(10);

/// Most writes in one commit.
const BATCH_MAX: usize = 256;

/// Shortest time between two checkpoints: each copies what the commits
/// since the last one wrote, so a page changed by many commits is copied
/// once.
const CHECKPOINT_PAUSE: Duration = Duration::from_millis(250);

/// One queued write, type-erased so that writes returning different types
/// share the queue.
trait Write: Send {
    /// Runs the write inside the batch's transaction; `true` when it
    /// succeeded and its changes stay.
    fn run(&mut self, conn: &mut AnyConnection) -> bool;

    /// Answers the caller once the batch's fate is known (`Err` carries
    /// why the batch did not commit).
    fn answer(self: Box<Self>, batch: Result<(), &str>);
}

struct Pending<T, F> {
    f: Option<F>,
    result: Option<Result<T, StoreError>>,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

impl<T, F> Write for Pending<T, F>
where
    T: Send,
    F: FnOnce(&mut AnyConnection) -> Result<T, StoreError> + Send,
{
    fn run(&mut self, conn: &mut AnyConnection) -> bool {
        let Some(f) = self.f.take() else {
            return false;
        };
        let result = catch_unwind(AssertUnwindSafe(|| f(conn))).unwrap_or_else(|panic| {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a write panicked".into());
            tracing::error!(panic = %what, "write panicked; rolled back");
            Err(StoreError::Internal("the write failed unexpectedly".into()))
        });
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn answer(self: Box<Self>, batch: Result<(), &str>) {
        let result = match (self.result, batch) {
            (Some(Ok(_)), Err(why)) => Err(StoreError::Unavailable(why.to_string())),
            (Some(r), _) => r,
            (None, Err(why)) => Err(StoreError::Unavailable(why.to_string())),
            (None, Ok(())) => Err(StoreError::Internal("the write never ran".into())),
        };
        // The caller may have gone away (client disconnected): its write
        // stands or falls with the batch all the same.
        let _ = self.reply.send(result);
    }
}

/// The queue to the writer thread. Cloning shares the thread; it ends
/// when the last clone is dropped.
#[derive(Clone)]
pub struct Writer {
    queue: mpsc::Sender<Box<dyn Write>>,
    counts: Arc<Counts>,
}

/// What the writer thread has committed.
#[derive(Default)]
struct Counts {
    commits: AtomicU64,
    writes: AtomicU64,
}

impl Writer {
    /// Starts the writer thread for a SQLite database.
    pub fn start(manager: Manager) -> Result<Self, StoreError> {
        let (queue, rx) = mpsc::channel::<Box<dyn Write>>();
        let counts = Arc::new(Counts::default());
        let shared = counts.clone();
        // One poke waiting is enough: a checkpoint copies every commit before it.
        let (poke, pokes) = mpsc::sync_channel::<()>(1);
        let checkpoints = manager.clone();
        let restart = Arc::new(AtomicBool::new(false));
        let wanted = restart.clone();
        std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || checkpoint(&checkpoints, &pokes, &wanted))
            .map_err(|e| StoreError::Internal(format!("starting the checkpoint thread: {e}")))?;
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || run(&manager, &rx, &shared, (&poke, &restart)))
            .map_err(|e| StoreError::Internal(format!("starting the writer thread: {e}")))?;
        Ok(Self { queue, counts })
    }

    /// Transactions committed so far (each carrying one or more writes).
    pub fn commits(&self) -> u64 {
        self.counts.commits.load(Ordering::Relaxed)
    }

    /// Writes those transactions carried (successful or rolled back to
    /// their savepoint).
    pub fn writes(&self) -> u64 {
        self.counts.writes.load(Ordering::Relaxed)
    }

    /// Queues `f` and waits for the commit that carries it.
    pub async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut AnyConnection) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let pending = Pending {
            f: Some(f),
            result: None,
            reply,
        };
        self.queue
            .send(Box::new(pending))
            .map_err(|_| StoreError::Internal("the writer thread has stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Internal("the writer thread has stopped".into()))?
    }
}

/// The writer thread: batches until every sender is gone (and then the
/// checkpoint thread ends too, its poke dropped).
fn run(
    manager: &Manager,
    rx: &mpsc::Receiver<Box<dyn Write>>,
    counts: &Counts,
    (poke, restart): (&mpsc::SyncSender<()>, &AtomicBool),
) {
    let mut conn: Option<AnyConnection> = None;
    while let Ok(first) = rx.recv() {
        let c = match conn.take().map_or_else(|| manager.open(), Ok) {
            Ok(c) => conn.insert(c),
            Err(e) => {
                tracing::error!(error = %e, "the writer cannot open the database");
                first.answer(Err(&e.to_string()));
                continue;
            }
        };
        if restart.swap(false, Ordering::Relaxed)
            && let Err(e) = passive_checkpoint(c)
        {
            tracing::warn!(error = %e, "WAL checkpoint on the writer failed");
        }
        match batch(c, first, rx) {
            Ok(writes) => {
                counts.commits.fetch_add(1, Ordering::Relaxed);
                counts.writes.fetch_add(writes, Ordering::Relaxed);
                // Full means one is pending already; gone means it died
                // (logged there) and the automatic checkpoint takes over.
                let _ = poke.try_send(());
            }
            Err(e) => {
                // Whatever broke, the next batch starts on a fresh connection.
                tracing::warn!(error = %e, "write batch failed");
                conn = None;
            }
        }
    }
}

/// The checkpoint thread: after commits, a passive checkpoint (it waits
/// for neither the writer nor readers; what they still need is copied the
/// next time), then a pause.
///
/// A checkpoint on another connection never lets the WAL start over while
/// commits keep coming (the writer restarts the WAL only when it begins a
/// transaction on a fully copied WAL), and a long WAL makes every read
/// search a longer index. So once the WAL holds [`RESTART_FRAMES`], this
/// thread asks the writer to run one passive checkpoint itself between two
/// batches: it copies only the frames committed since this one, and the
/// writer's next transaction then starts the WAL over, unless a reader is
/// still on an old snapshot (then it asks again later).
fn checkpoint(manager: &Manager, pokes: &mpsc::Receiver<()>, restart: &AtomicBool) {
    let mut conn: Option<AnyConnection> = None;
    while pokes.recv().is_ok() {
        let c = match conn.take().map_or_else(|| manager.open(), Ok) {
            Ok(c) => conn.insert(c),
            Err(e) => {
                tracing::warn!(error = %e, "the checkpoint thread cannot open the database");
                std::thread::sleep(CHECKPOINT_PAUSE);
                continue;
            }
        };
        match passive_checkpoint(c) {
            Ok(frames) if frames >= RESTART_FRAMES => restart.store(true, Ordering::Relaxed),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "WAL checkpoint failed; retried after the next commit");
                conn = None;
            }
        }
        std::thread::sleep(CHECKPOINT_PAUSE);
    }
}

/// Frames (4 KiB pages) in the WAL from which the writer is asked to let it
/// start over.
const RESTART_FRAMES: i32 = 8192;

/// What `PRAGMA wal_checkpoint` reports.
#[derive(diesel::QueryableByName)]
struct Checkpointed {
    /// Frames in the WAL (-1 when the checkpoint could not run).
    #[diesel(sql_type = diesel::sql_types::Integer)]
    log: i32,
}

/// Copies what it can of the WAL without waiting; the WAL's length in frames.
fn passive_checkpoint(conn: &mut AnyConnection) -> Result<i32, StoreError> {
    use diesel::RunQueryDsl;
    let AnyConnection::Sqlite(c) = conn else {
        return Err(StoreError::Internal("not SQLite".into()));
    };
    let report: Vec<Checkpointed> = diesel::sql_query("PRAGMA wal_checkpoint(PASSIVE)").load(c)?;
    Ok(report.first().map_or(0, |r| r.log))
}

/// Runs one batch starting with `first`: the number of writes it
/// committed, or `Err` when the batch as a whole failed (every write in it
/// was answered with the error).
fn batch(
    conn: &mut AnyConnection,
    first: Box<dyn Write>,
    rx: &mpsc::Receiver<Box<dyn Write>>,
) -> Result<u64, StoreError> {
    if let Err(e) = with_sqlite(conn, |c| {
        AnsiTransactionManager::begin_transaction_sql(c, "BEGIN IMMEDIATE")
    }) {
        first.answer(Err(&e.to_string()));
        return Err(e);
    }
    let started = Instant::now();
    let mut done: Vec<Box<dyn Write>> = Vec::new();
    let mut next = Some(first);
    let mut broken = None;
    while let Some(mut write) = next.take() {
        if let Err(e) = in_savepoint(conn, write.as_mut()) {
            done.push(write);
            broken = Some(e);
            break;
        }
        done.push(write);
        if done.len() < BATCH_MAX && started.elapsed() < BATCH_TIME {
            next = rx.try_recv().ok();
        }
    }
    let outcome = match broken {
        Some(e) => Err(e),
        None => with_sqlite(conn, AnsiTransactionManager::commit_transaction),
    };
    match outcome {
        Ok(()) => {
            let n = done.len() as u64;
            for write in done {
                write.answer(Ok(()));
            }
            Ok(n)
        }
        Err(e) => {
            if let AnyConnection::Sqlite(sqlite) = conn {
                rollback(sqlite);
            }
            let why = e.to_string();
            for write in done {
                write.answer(Err(&why));
            }
            Err(e)
        }
    }
}

/// Runs one write in a savepoint: released when it succeeded, rolled back
/// when it failed. `Err` only when the savepoint itself could not be
/// handled, which leaves the transaction unusable.
fn in_savepoint(conn: &mut AnyConnection, write: &mut dyn Write) -> Result<(), StoreError> {
    with_sqlite(conn, AnsiTransactionManager::begin_transaction)?;
    if write.run(conn) {
        with_sqlite(conn, AnsiTransactionManager::commit_transaction)
    } else {
        with_sqlite(conn, AnsiTransactionManager::rollback_transaction)
    }
}

fn with_sqlite(
    conn: &mut AnyConnection,
    op: fn(&mut SqliteConnection) -> diesel::QueryResult<()>,
) -> Result<(), StoreError> {
    match conn {
        AnyConnection::Sqlite(c) => op(c).map_err(StoreError::from),
        AnyConnection::Postgresql(_) => Err(StoreError::Internal("not SQLite".into())),
    }
}

/// Rolls back whatever is left of the batch's transaction.
fn rollback(sqlite: &mut SqliteConnection) {
    // A savepoint that failed may leave levels open: unwind them all.
    while AnsiTransactionManager::transaction_manager_status_mut(sqlite)
        .transaction_depth()
        .is_ok_and(|d| d.is_some())
    {
        if let Err(e) = AnsiTransactionManager::rollback_transaction(sqlite) {
            tracing::warn!(error = %e, "rollback of a failed batch failed");
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use diesel::connection::SimpleConnection;
    use diesel::prelude::*;
    use diesel::sql_types::Text;

    use super::*;
    use crate::store::Target;

    fn writer(dir: &tempfile::TempDir) -> Writer {
        let path = dir.path().join("w.db").display().to_string();
        let manager = Manager::new(Target::Sqlite(path));
        let mut conn = manager.open().unwrap();
        conn.batch_execute("CREATE TABLE t (k TEXT PRIMARY KEY NOT NULL)")
            .unwrap();
        Writer::start(manager).unwrap()
    }

    fn insert(conn: &mut AnyConnection, k: &str) -> Result<(), StoreError> {
        diesel::sql_query("INSERT INTO t (k) VALUES (?)")
            .bind::<Text, _>(k)
            .execute(conn)?;
        Ok(())
    }

    #[derive(QueryableByName)]
    struct Key {
        #[diesel(sql_type = Text)]
        k: String,
    }

    async fn keys(w: &Writer) -> Vec<String> {
        let mut keys: Vec<String> = w
            .write(|c| Ok(diesel::sql_query("SELECT k FROM t").load::<Key>(c)?))
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.k)
            .collect();
        keys.sort();
        keys
    }

    /// Writes queued behind a slow one share commits; in the shared
    /// transaction a conflict, an error and a panic each roll back only
    /// their own write and answer only their own caller.
    #[tokio::test]
    async fn queued_writes_share_commits_and_fail_alone() {
        let dir = tempfile::tempdir().unwrap();
        let w = writer(&dir);
        let slow = {
            let w = w.clone();
            tokio::spawn(async move {
                w.write(|c| {
                    std::thread::sleep(Duration::from_millis(300));
                    insert(c, "slow")
                })
                .await
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        let before = w.commits();
        let mut calls = Vec::new();
        for i in 0..40 {
            let w = w.clone();
            calls.push(tokio::spawn(async move {
                let key = format!("k{i:02}");
                w.write(move |c| match i % 10 {
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
                3 | 5 => assert!(matches!(result, Err(StoreError::Conflict(_))), "{i}"),
                7 => assert!(matches!(result, Err(StoreError::Internal(_))), "{i}"),
                _ => {
                    result.unwrap();
                    expected.push(format!("k{i:02}"));
                }
            }
        }
        expected.sort();
        // The 40 writes queued while the slow one ran: far fewer commits.
        let commits = w.commits() - before;
        assert!(commits < 10, "40 queued writes took {commits} commits");
        assert_eq!(keys(&w).await, expected);
    }

    /// A write is answered only after its commit: another connection sees
    /// it as soon as the caller has its answer.
    #[tokio::test]
    async fn an_answered_write_is_visible_to_other_connections() {
        let dir = tempfile::tempdir().unwrap();
        let w = writer(&dir);
        let path = dir.path().join("w.db").display().to_string();
        let mut reader = Manager::new(Target::Sqlite(path)).open().unwrap();
        for i in 0..20 {
            let key = format!("v{i}");
            let k2 = key.clone();
            w.write(move |c| insert(c, &k2)).await.unwrap();
            let n = diesel::sql_query("SELECT k FROM t WHERE k = ?")
                .bind::<Text, _>(&key)
                .load::<Key>(&mut reader)
                .unwrap()
                .len();
            assert_eq!(n, 1, "{key} not visible after its answer");
        }
    }
}
