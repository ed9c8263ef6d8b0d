//! Group commit: writer threads run the process's write transactions,
//! several to a commit (one thread on SQLite, several on PostgreSQL).
//!
//! ```text
//!  request ─┐                       ┌─ BEGIN (IMMEDIATE on SQLite) ──────────┐
//!  request ─┼─▶ queue ─▶ writer ───▶│ SAVEPOINT; write 1; RELEASE            │─▶ COMMIT ─▶ answer 1..n
//!  request ─┘ (channel)  thread     │ SAVEPOINT; write 2; ROLLBACK TO (err)  │
//!                                   └─ … while queued and the batch is young ┘
//! ```
//!
//! What costs in a write is its commit, on both backends. SQLite has one
//! write lock per file, so its writers run one after the other whatever we
//! do, and each commit appends WAL frames. On PostgreSQL each commit waits
//! for its WAL flush. The writer takes a write from the queue and, while
//! more are queued and the batch is younger than [`BATCH_TIME`], runs them
//! in the same transaction, each in a savepoint of its own: a write that
//! fails rolls back only itself, and answers with its own error. Every
//! caller is answered after the commit that made its write durable, so an
//! acknowledged write is never one a crash can take back. Under light load
//! a batch is one write and the commit happens at once; under heavy load
//! one commit (one flush) carries many writes, and on SQLite the pages
//! they share are written once.
//!
//! On PostgreSQL each gateway process has several writer threads, whose
//! batches run and flush side by side; nothing every write touches is
//! shared between them or with other processes (the audit chain is sealed
//! after commit, [`super::seal`]). A row one batch holds (a job claimed
//! `FOR UPDATE SKIP LOCKED`, a resource) is held until that batch commits.
//!
//! SQLite's checkpoints (copying the WAL back into the database file) run
//! on a thread of their own, after commits and at most every
//! [`CHECKPOINT_PAUSE`] (see [`checkpoint`]): left to SQLite's automatic
//! checkpoint, the commit that crosses the WAL threshold copies it on the
//! writer thread, which a profile of creates showed was a sixth of the
//! writer's time. The connections keep an automatic checkpoint at a much
//! larger WAL ([`super::connection`]) in case this thread falls behind.
//!
//! A write that panics is rolled back to its savepoint and answered with an
//! internal error; the others in its batch are unaffected. If the commit
//! itself fails (disk full, I/O error, a lost server), every write of the
//! batch is answered with that error and the next batch starts on a new
//! connection. On SQLite nothing of the batch is kept then. On PostgreSQL a
//! connection lost during COMMIT leaves its outcome unknown to the client
//! (the server may have committed), as it would for a single write.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crossbeam_channel as channel;
use diesel::Connection;
use diesel::connection::{AnsiTransactionManager, TransactionManager};
use tokio::sync::oneshot;

use super::StoreError;
use super::connection::{AnyConnection, Manager, Target, connection_lost};
use super::read_cache::ReadCache;

/// How long a batch keeps taking queued writes before it commits.
const BATCH_TIME: Duration = Duration::from_millis(10);

/// Most writes in one commit.
const BATCH_MAX: usize = 256;

/// Shortest time between two checkpoints: each copies what the commits
/// since the last one wrote, so a page changed by many commits is copied
/// once.
const CHECKPOINT_PAUSE: Duration = Duration::from_millis(250);

/// Most times a write chosen as a deadlock victim runs again.
const MAX_AGAIN: u32 = 3;

/// What running a write inside a batch came to.
#[derive(PartialEq)]
enum Ran {
    /// It succeeded: its changes stay.
    Kept,
    /// It failed: its changes are rolled back, its error is its answer.
    Failed,
    /// PostgreSQL chose it to break a lock cycle with another transaction
    /// (another writer's batch, or another gateway's): rolled back, to run
    /// again in the next batch, once this one has committed and let the
    /// other go on.
    Again,
}

/// One queued write, type-erased so that writes returning different types
/// share the queue.
trait Write: Send {
    /// Runs the write inside the batch's transaction.
    fn run(&mut self, conn: &mut AnyConnection) -> Ran;

    /// Answers the caller once the batch's fate is known (`Err` carries
    /// why the batch did not commit).
    fn answer(self: Box<Self>, batch: Result<(), &str>);
}

struct Pending<T, F> {
    f: Option<F>,
    /// Times it was a deadlock victim.
    again: u32,
    result: Option<Result<T, StoreError>>,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

impl<T, F> Write for Pending<T, F>
where
    T: Send,
    F: FnOnce(&mut AnyConnection) -> Result<T, StoreError> + Clone + Send,
{
    fn run(&mut self, conn: &mut AnyConnection) -> Ran {
        let Some(f) = self.f.take() else {
            return Ran::Failed;
        };
        // Only PostgreSQL's writers can meet in a lock cycle.
        let spare = (self.again < MAX_AGAIN && matches!(conn, AnyConnection::Postgresql(_)))
            .then(|| f.clone());
        let result = catch_unwind(AssertUnwindSafe(|| f(conn))).unwrap_or_else(|panic| {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a write panicked".into());
            tracing::error!(panic = %what, "write panicked; rolled back");
            Err(StoreError::Internal("the write failed unexpectedly".into()))
        });
        if let (Err(e), Some(spare)) = (&result, spare)
            && e.is_lock_cycle()
        {
            tracing::debug!(error = %e, "a write broke a lock cycle; it runs again");
            self.f = Some(spare);
            self.again += 1;
            return Ran::Again;
        }
        let ran = if result.is_ok() {
            Ran::Kept
        } else {
            Ran::Failed
        };
        self.result = Some(result);
        ran
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
    queue: channel::Sender<Box<dyn Write>>,
    counts: Arc<Counts>,
}

/// What the writer thread has committed.
#[derive(Default)]
struct Counts {
    commits: AtomicU64,
    writes: AtomicU64,
}

impl Writer {
    /// Starts the writer threads: one on SQLite (and its checkpoint
    /// thread), `postgres_writers` on PostgreSQL. Each batch reports what
    /// it changed to `cache`, if any, before its writes are answered.
    pub fn start(
        manager: Manager,
        postgres_writers: usize,
        cache: Option<Arc<ReadCache>>,
    ) -> Result<Self, StoreError> {
        let (queue, rx) = channel::unbounded::<Box<dyn Write>>();
        let counts = Arc::new(Counts::default());
        let restart = Arc::new(AtomicBool::new(false));
        let poke = match manager.target() {
            Target::Sqlite(_) => {
                // One poke waiting is enough: a checkpoint copies every commit before it.
                let (poke, pokes) = mpsc::sync_channel::<()>(1);
                let checkpoints = manager.clone();
                let wanted = restart.clone();
                std::thread::Builder::new()
                    .name("sqlite-checkpoint".into())
                    .spawn(move || checkpoint(&checkpoints, &pokes, &wanted))
                    .map_err(|e| {
                        StoreError::Internal(format!("starting the checkpoint thread: {e}"))
                    })?;
                Some(poke)
            }
            Target::Postgres(_) => None,
        };
        let threads = if poke.is_some() {
            1
        } else {
            postgres_writers.max(1)
        };
        for _ in 0..threads {
            let (manager, rx, counts) = (manager.clone(), rx.clone(), counts.clone());
            let (poke, restart, cache) = (poke.clone(), restart.clone(), cache.clone());
            std::thread::Builder::new()
                .name("db-writer".into())
                .spawn(move || {
                    run(
                        &manager,
                        &rx,
                        &counts,
                        (poke.as_ref(), &restart),
                        cache.as_deref(),
                    );
                })
                .map_err(|e| StoreError::Internal(format!("starting a writer thread: {e}")))?;
        }
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
        F: FnOnce(&mut AnyConnection) -> Result<T, StoreError> + Clone + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let pending = Pending {
            f: Some(f),
            again: 0,
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
/// checkpoint thread, if any, ends too, its poke dropped).
fn run(
    manager: &Manager,
    rx: &channel::Receiver<Box<dyn Write>>,
    counts: &Counts,
    (poke, restart): (Option<&mpsc::SyncSender<()>>, &AtomicBool),
    cache: Option<&ReadCache>,
) {
    let mut conn: Option<AnyConnection> = None;
    // Deadlock victims, to run before anything else is taken.
    let mut again: VecDeque<Box<dyn Write>> = VecDeque::new();
    loop {
        let first = match (again.pop_front(), cache) {
            (Some(first), _) => first,
            (None, None) => match rx.recv() {
                Ok(first) => first,
                Err(_) => return,
            },
            // Idle, the writer still notices what other processes commit.
            (None, Some(cache)) => match rx.recv_timeout(OTHERS_EVERY) {
                Ok(first) => first,
                Err(channel::RecvTimeoutError::Timeout) => {
                    if let Err(e) = others_while_idle(manager, &mut conn, cache) {
                        tracing::warn!(error = %e, "the writer cannot read the database's version");
                        conn = None;
                    }
                    continue;
                }
                Err(channel::RecvTimeoutError::Disconnected) => return,
            },
        };
        let reused = conn.is_some();
        let mut begun = begin(manager, &mut conn, restart, cache);
        if let Err(e) = &begun
            && reused
        {
            // A connection kept from an earlier batch may have lost its
            // server (a restart); nothing has run yet, so try a new one.
            tracing::info!(error = %e, "the writer's connection failed; reconnecting");
            report_lost(&conn);
            conn = None;
            begun = begin(manager, &mut conn, restart, cache);
        }
        let c = match (begun, conn.as_mut()) {
            (Ok(()), Some(c)) => c,
            (Err(e), _) => {
                tracing::error!(error = %e, "the writer cannot begin a transaction");
                first.answer(Err(&e.to_string()));
                conn = None;
                continue;
            }
            (Ok(()), None) => {
                first.answer(Err("the writer has no connection"));
                continue;
            }
        };
        match batch(c, first, rx, &mut again, (cache, counts)) {
            Ok(()) => {
                // Full means one is pending already; gone means it died
                // (logged there) and the automatic checkpoint takes over.
                if let Some(poke) = poke {
                    let _ = poke.try_send(());
                }
            }
            Err(e) => {
                // Whatever broke, the next batch starts on a fresh connection.
                tracing::warn!(error = %e, "write batch failed");
                report_lost(&conn);
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

/// Records a failure of the writer's PostgreSQL connection, so that the
/// pool checks its own connections too.
fn report_lost(conn: &Option<AnyConnection>) {
    if matches!(conn, Some(AnyConnection::Postgresql(_))) {
        connection_lost();
    }
}

/// Opens the writer's connection when it has none (letting the read cache
/// watch it), runs a checkpoint the checkpoint thread asked for (SQLite,
/// outside any transaction), and begins the batch's transaction.
fn begin(
    manager: &Manager,
    conn: &mut Option<AnyConnection>,
    restart: &AtomicBool,
    cache: Option<&ReadCache>,
) -> Result<(), StoreError> {
    let c = connected(manager, conn, cache)?;
    if restart.swap(false, Ordering::Relaxed)
        && let Err(e) = passive_checkpoint(c)
    {
        tracing::warn!(error = %e, "WAL checkpoint on the writer failed");
    }
    // SQLite: take the write lock now, not at the first write (a deferred
    // transaction that must upgrade fails with "database is locked").
    match c {
        AnyConnection::Sqlite(c) => {
            AnsiTransactionManager::begin_transaction_sql(c, "BEGIN IMMEDIATE")?;
            // Holding the write lock, nothing else commits until this
            // batch is done: what others committed before is all there is.
            if let Some(cache) = cache {
                cache.others(c)?;
            }
            Ok(())
        }
        AnyConnection::Postgresql(c) => {
            AnsiTransactionManager::begin_transaction(c).map_err(StoreError::from)
        }
    }
}

/// The writer's connection, opened (and watched by the read cache) when
/// it has none.
fn connected<'c>(
    manager: &Manager,
    conn: &'c mut Option<AnyConnection>,
    cache: Option<&ReadCache>,
) -> Result<&'c mut AnyConnection, StoreError> {
    Ok(match conn {
        Some(c) => c,
        None => {
            let mut c = manager.open()?;
            if let (Some(cache), AnyConnection::Sqlite(s)) = (cache, &mut c) {
                cache.watch(s)?;
            }
            conn.insert(c)
        }
    })
}

/// How often an idle writer asks SQLite whether another process
/// committed, for the read cache (a busy one asks at every batch).
const OTHERS_EVERY: Duration = Duration::from_secs(1);

/// An idle writer's check for commits of other processes.
fn others_while_idle(
    manager: &Manager,
    conn: &mut Option<AnyConnection>,
    cache: &ReadCache,
) -> Result<(), StoreError> {
    match connected(manager, conn, Some(cache))? {
        AnyConnection::Sqlite(c) => cache.others(c),
        AnyConnection::Postgresql(_) => Ok(()),
    }
}

/// Runs one batch starting with `first`, in the transaction [`begin`]
/// opened: `Err` when the batch as a whole failed (every write in it was
/// answered with the error). Before any write is answered, the read
/// cache drops what the batch changed and the counters count it.
fn batch(
    conn: &mut AnyConnection,
    first: Box<dyn Write>,
    rx: &channel::Receiver<Box<dyn Write>>,
    again: &mut VecDeque<Box<dyn Write>>,
    (cache, counts): (Option<&ReadCache>, &Counts),
) -> Result<(), StoreError> {
    let started = Instant::now();
    let mut done: Vec<Box<dyn Write>> = Vec::new();
    let mut next = Some(first);
    let mut broken = None;
    while let Some(mut write) = next.take() {
        match in_savepoint(conn, write.as_mut()) {
            Err(e) => {
                done.push(write);
                broken = Some(e);
                break;
            }
            // Commit what the batch has: the other side of the cycle waits
            // for its locks.
            Ok(Ran::Again) => {
                again.push_back(write);
                break;
            }
            Ok(_) => done.push(write),
        }
        if done.len() < BATCH_MAX && started.elapsed() < BATCH_TIME {
            next = again.pop_front().or_else(|| rx.try_recv().ok());
        }
    }
    let outcome = match broken {
        Some(e) => Err(e),
        None => on_backend!(&mut *conn, c => AnsiTransactionManager::commit_transaction(c))
            .map_err(StoreError::from),
    };
    if outcome.is_err() {
        on_backend!(&mut *conn, c => rollback(c));
    }
    if let Some(cache) = cache {
        cache.settle();
    }
    match outcome {
        Ok(()) => {
            counts.commits.fetch_add(1, Ordering::Relaxed);
            counts
                .writes
                .fetch_add(done.len() as u64, Ordering::Relaxed);
            for write in done {
                write.answer(Ok(()));
            }
            Ok(())
        }
        Err(e) => {
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
fn in_savepoint(conn: &mut AnyConnection, write: &mut dyn Write) -> Result<Ran, StoreError> {
    on_backend!(&mut *conn, c => AnsiTransactionManager::begin_transaction(c))?;
    let ran = write.run(conn);
    on_backend!(conn, c => if ran == Ran::Kept {
        AnsiTransactionManager::commit_transaction(c)
    } else {
        AnsiTransactionManager::rollback_transaction(c)
    })?;
    Ok(ran)
}

/// Rolls back whatever is left of the batch's transaction.
fn rollback<C: Connection<TransactionManager = AnsiTransactionManager>>(conn: &mut C) {
    // A savepoint that failed may leave levels open: unwind them all.
    while AnsiTransactionManager::transaction_manager_status_mut(conn)
        .transaction_depth()
        .is_ok_and(|d| d.is_some())
    {
        if let Err(e) = AnsiTransactionManager::rollback_transaction(conn) {
            tracing::warn!(error = %e, "rollback of a failed batch failed");
            return;
        }
    }
}
