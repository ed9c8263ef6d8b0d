//! The identity store: diesel over SQLite or PostgreSQL. The HTTP layer never
//! sees diesel; it calls the `find_*` / `insert_*` / `update_*` / `delete_*`
//! functions here inside [`write_tx`] or [`Db::run`].

/// Multi-row INSERT: `MultiConnection` cannot batch, so dispatch to the
/// backend's own connection (one statement per chunk on both backends).
macro_rules! batch_insert {
    ($conn:expr, $table:expr, $rows:expr) => {
        match $conn {
            $crate::store::AnyConnection::Sqlite(c) => {
                diesel::insert_into($table).values($rows).execute(c)?
            }
            $crate::store::AnyConnection::Postgresql(c) => {
                diesel::insert_into($table).values($rows).execute(c)?
            }
        }
    };
}

/// Runs `$body` with `$c` bound to the backend's own connection: what a
/// statement that is not diesel's DSL (see `prepared`) needs, and what
/// keeps a hot DSL query cheap. Through `AnyConnection` diesel builds the
/// SQL text of every query on every call to look up its prepared
/// statement; on the backend's connection a query of fixed shape is
/// looked up by its type, and no text is built (a GET by id served 15 %
/// more requests per second with its two reads moved here).
macro_rules! on_backend {
    ($conn:expr, $c:ident => $body:expr) => {
        match $conn {
            $crate::store::AnyConnection::Sqlite($c) => $body,
            $crate::store::AnyConnection::Postgresql($c) => $body,
        }
    };
}

mod accounts;
mod audit;
pub mod chain;
mod connection;
pub mod grants;
mod index;
pub mod jobs;
mod members;
mod prepared;
pub mod query;
mod read_cache;
mod resources;
pub mod schema;
mod seal;
mod writer;

use std::sync::Arc;

use diesel::result::{DatabaseErrorKind, Error as DieselError};

pub use accounts::{
    AccountRow, count_accounts, count_deprovisions, delete_account, find_account, find_accounts,
    find_accounts_by_remote_ids, find_last_reconcile, find_remote_ids, list_accounts, save_account,
    status as account_status,
};
pub use audit::{
    AuditEvent, AuditFilter, AuditRecord, ChainHead, count_audit_events, find_audit_hash,
    find_audit_page, find_chain_head, find_first_pos_since, find_unchained, insert_audit,
    lock_chain_head, prune_audit_through,
};
use connection::connection_lost;
pub use connection::{
    AnyConnection, Conn, Pool, Target, build_pool, has_pending_migrations, run_migrations,
    savepoint, target_of, write_tx,
};
pub use index::{
    IndexEntry, find_by_unique_key, insert_index, insert_unique_keys, replace_index,
    replace_unique_keys,
};
pub use members::{
    GroupRef, MemberRow, add_members, delete_members, find_groups_of, find_member_ids,
    find_members, insert_members,
};
pub use resources::{
    ResourceRow, delete_resource, find_by_unique_key_with_groups, find_displays, find_kinds,
    find_resource, find_resource_any, find_resource_with_groups, find_resources_by_ids,
    find_resources_keyset, find_resources_page, insert_resource, lock_resource, touch_resources,
    update_resource,
};
pub use seal::{Backlog as SealBacklog, find_seal_backlog, seal_all};

use crate::config::DatabaseSettings;
use connection::Manager;

/// Errors from the store layer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The row does not exist (in this tenant).
    #[error("not found")]
    NotFound,
    /// A uniqueness constraint was violated.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The database cannot be reached or is busy; retry later.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// PostgreSQL aborted the statement to break a lock cycle with another
    /// transaction (a deadlock, a serialization failure): the same work,
    /// run again once the other has gone on, can succeed. A client that
    /// meets it gets 503, as for [`StoreError::Unavailable`].
    #[error("database lock cycle: {0}")]
    LockCycle(String),
    /// The connection to the database server was lost (a restart, the
    /// network): a read can run again on another connection. A client that
    /// meets it gets 503.
    #[error("database connection lost: {0}")]
    Lost(String),
    /// Applying migrations failed.
    #[error("migration failed: {0}")]
    Migration(String),
    /// A row names another that does not exist (any more): a member or a
    /// group deleted meanwhile.
    #[error("dangling reference: {0}")]
    Dangling(String),
    /// The caller's own work refused the change inside the transaction
    /// (a failed `If-Match`, an invalid value found under the row lock).
    /// The store rolls back and hands the caller's error back untouched;
    /// it never looks inside (`error.rs` turns it back into what it was).
    #[error("{0}")]
    Rejected(Box<dyn std::error::Error + Send + Sync>),
    /// Any other database error.
    #[error("database error: {0}")]
    Database(DieselError),
    /// The blocking task failed.
    #[error("internal: {0}")]
    Internal(String),
}

impl StoreError {
    /// Whether PostgreSQL refused the statement to break a lock cycle
    /// ([`StoreError::LockCycle`]).
    pub fn is_lock_cycle(&self) -> bool {
        matches!(self, StoreError::LockCycle(_))
    }
}

impl From<DieselError> for StoreError {
    fn from(e: DieselError) -> Self {
        match e {
            DieselError::NotFound => StoreError::NotFound,
            // Database messages never reach clients: they name tables and constraints.
            DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => {
                StoreError::Conflict("A resource with this value already exists.".into())
            }
            DieselError::DatabaseError(DatabaseErrorKind::ForeignKeyViolation, info) => {
                StoreError::Dangling(info.message().to_string())
            }
            DieselError::DatabaseError(DatabaseErrorKind::SerializationFailure, info) => {
                StoreError::LockCycle(info.message().to_string())
            }
            DieselError::DatabaseError(DatabaseErrorKind::ClosedConnection, info) => {
                StoreError::Lost(info.message().to_string())
            }
            // PostgreSQL's deadlock_detected (40P01) has no kind of its own in diesel.
            DieselError::DatabaseError(_, ref info)
                if info.message().contains("deadlock detected") =>
            {
                StoreError::LockCycle(info.message().to_string())
            }
            DieselError::DatabaseError(_, ref info)
                if info.message().contains("terminating connection")
                    || info.message().contains("server closed the connection")
                    || info.message().contains("no connection to the server")
                    || info.message().contains("connection to server") =>
            {
                StoreError::Lost(info.message().to_string())
            }
            DieselError::DatabaseError(_, ref info)
                if info.message().contains("database is locked") =>
            {
                StoreError::Unavailable(info.message().to_string())
            }
            other => StoreError::Database(other),
        }
    }
}

impl From<r2d2::Error> for StoreError {
    fn from(e: r2d2::Error) -> Self {
        StoreError::Unavailable(e.to_string())
    }
}

/// Handle to the store: a pool and the backend it talks to.
#[derive(Clone)]
pub struct Db {
    pool: Pool,
    target: Arc<Target>,
    /// The writer threads that group-commit the process's writes
    /// ([`writer`]). On SQLite commits are serial (one write lock per
    /// file), so writes queue anyway; queued in-process, each starts the
    /// moment the previous one is done and shares its commit with the
    /// writes queued behind it. On PostgreSQL several writer threads
    /// overlap their batches, and nothing every write touches is shared
    /// (the audit chain is sealed after commit, [`seal`]): one flush
    /// carries a batch, and batches of all gateways flush side by side.
    writer: writer::Writer,
    /// Wakes this process's audit sealer after a write (PostgreSQL,
    /// [`seal`]); the sealer thread ends with the last clone.
    sealer: Option<seal::Nudge>,
    /// Users that GET by id read, on SQLite ([`read_cache`]).
    cache: Option<Arc<read_cache::ReadCache>>,
    /// Names this store's connections in the worker threads' point-read
    /// caches ([`Db::point`]).
    id: u64,
}

/// Source of [`Db::id`].
static NEXT_DB: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

thread_local! {
    /// SQLite connections of this worker thread for point reads, one per store.
    static POINT_READERS: std::cell::RefCell<std::collections::HashMap<u64, AnyConnection>> =
        std::cell::RefCell::default();
}

/// Runs `f` on a pooled connection ([`note_lost`] when it failed).
fn read_on<T>(
    pool: &Pool,
    f: impl FnOnce(&mut AnyConnection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let mut conn = pool.get()?;
    // After a lost server, skip the pooled connections it took along.
    // (Each is given back, to be discarded, before the next is asked for:
    // holding them, pool_size readers at once would wait for each other
    // until the pool's timeout.)
    for _ in 0..pool.max_size() {
        if conn.still_usable() {
            break;
        }
        drop(conn);
        conn = pool.get()?;
    }
    let result = f(&mut conn.inner);
    note_lost(&mut conn, &result);
    result
}

/// Marks a PostgreSQL connection on which `result` failed as lost: the
/// pool drops it, and the loss is recorded, so the pool's other
/// connections are checked before their next use.
fn note_lost<T>(conn: &mut Conn, result: &Result<T, StoreError>) {
    if let Err(StoreError::Lost(_) | StoreError::Unavailable(_)) = result
        && matches!(conn.inner, AnyConnection::Postgresql(_))
    {
        conn.broken = true;
        connection_lost();
    }
}

impl Db {
    /// Builds the pool and applies migrations.
    pub fn open(settings: &DatabaseSettings) -> Result<Self, StoreError> {
        let target = target_of(settings)?;
        // Before anything else opens the file: migrations (on a connection
        // of their own, as the pool's only read), and on a new SQLite file
        // the switch to WAL, which another connection opening at the same
        // moment would make fail with "database is locked".
        let applied = run_migrations(&mut Manager::new(target.clone()).open()?)?;
        if applied > 0 {
            tracing::info!(applied, "database migrations applied");
        }
        let pool = build_pool(settings, &target);
        // PostgreSQL: pool_size / 2 writer threads, each with a connection
        // of its own besides the pool's (a batch's statements are round
        // trips, so several batches overlap).
        let writers = match settings.writers {
            0 => (settings.pool_size as usize / 2).max(1),
            n => n as usize,
        };
        let cache =
            (matches!(target, Target::Sqlite(_)) && settings.read_cache_mib > 0).then(|| {
                let bytes = settings.read_cache_mib.saturating_mul(1 << 20);
                Arc::new(read_cache::ReadCache::new(bytes))
            });
        let writer = writer::Writer::start(Manager::new(target.clone()), writers, cache.clone())?;
        let db = Db {
            pool,
            sealer: None,
            target: Arc::new(target),
            writer,
            cache,
            id: NEXT_DB.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        };
        Ok(db)
    }

    /// Starts this process's audit sealer (PostgreSQL; a no-op on
    /// SQLite), which chains committed audit rows shortly after their
    /// commit ([`seal`]); it stops when this store and its clones are
    /// dropped. `serve` starts one in every gateway process; a short-lived
    /// command does not (one cut off at exit would abort the process inside
    /// libpq) and seals what it needs itself ([`seal_all`]).
    pub fn start_sealer(&mut self) -> Result<(), StoreError> {
        if self.target.is_postgres() && self.sealer.is_none() {
            self.sealer = Some(seal::start(Manager::new(self.target.as_ref().clone()))?);
        }
        Ok(())
    }

    /// The backend this store uses.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// Runs blocking store work off the async executor: reads (writes go
    /// through [`Db::write`]; on SQLite these connections cannot write).
    ///
    /// On PostgreSQL a read whose connection turns out lost (the server
    /// restarted while the connection sat in the pool) runs once more, on
    /// a connection opened for it: nothing tells an idle pooled connection
    /// that its server went away, and without that each of them would fail
    /// one request after the server is back. (Not on one from the pool,
    /// which waits for a connection up to its timeout: while the server is
    /// down, a read should fail at once.) That needs `f` again, hence
    /// `Clone`.
    pub async fn run<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut AnyConnection) -> Result<T, StoreError> + Clone + Send + 'static,
    {
        let pool = self.pool.clone();
        let target = self.target.clone();
        tokio::task::spawn_blocking(move || {
            let spare = target.is_postgres().then(|| f.clone());
            match read_on(&pool, f) {
                Err(StoreError::Lost(why)) => match spare {
                    Some(f) => {
                        tracing::info!(error = %why, "a pooled connection was lost; reading again");
                        f(&mut Manager::reader(target.as_ref().clone()).open()?)
                    }
                    None => Err(StoreError::Lost(why)),
                },
                other => other,
            }
        })
        .await
        .map_err(|e| StoreError::Internal(e.to_string()))?
    }

    /// Runs a point read — a handful of index look-ups, nothing that can
    /// scan — where it is cheapest. On SQLite that is inline, on a
    /// connection the calling worker thread keeps for this store: a hop to
    /// the blocking pool and a pool checkout cost more than such a read
    /// itself (DESIGN.md). WAL readers never wait for the writer, so the
    /// worker is not held up. On PostgreSQL (a network round trip) it is
    /// [`Db::run`]. `f` must not scan: it blocks the worker thread.
    pub async fn point<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut AnyConnection) -> Result<T, StoreError> + Clone + Send + 'static,
    {
        let Target::Sqlite(_) = self.target.as_ref() else {
            return self.run(f).await;
        };
        // Taken out while in use, so a nested point read opens its own.
        let cached = POINT_READERS.with(|m| m.borrow_mut().remove(&self.id));
        let mut conn = match cached {
            Some(c) => c,
            None => Manager::reader(self.target.as_ref().clone()).open()?,
        };
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&mut conn)))
            .unwrap_or_else(|_| Err(StoreError::Internal("a read panicked".into())));
        let keep = !matches!(
            result,
            Err(StoreError::Unavailable(_) | StoreError::Lost(_) | StoreError::Internal(_))
        );
        if keep {
            POINT_READERS.with(|m| m.borrow_mut().insert(self.id, conn));
        }
        result
    }

    /// A user of a tenant with the groups it is a direct member of, as
    /// [`find_resource_with_groups`] reads it: from the read cache when it
    /// holds it, else a point read (which the cache then keeps).
    pub async fn find_user_with_groups(
        &self,
        tenant: &str,
        resource_type: &'static str,
        id: &str,
    ) -> Result<(Arc<ResourceRow>, Vec<GroupRef>), StoreError> {
        let Some(cache) = &self.cache else {
            let (tenant, id) = (tenant.to_string(), id.to_string());
            let (row, groups) = self
                .point(move |c| find_resource_with_groups(c, &tenant, resource_type, &id))
                .await?;
            return Ok((Arc::new(row), groups));
        };
        if let Some(hit) = cache.get(id) {
            // The database would not find it either: its query asks for
            // the tenant and the type too.
            if hit.row.tenant != tenant || hit.row.resource_type != resource_type {
                return Err(StoreError::NotFound);
            }
            return Ok((hit.row.clone(), hit.groups.clone()));
        }
        let ticket = cache.ticket(id);
        let (tenant, id) = (tenant.to_string(), id.to_string());
        let (row, groups) = self
            .point(move |c| find_resource_with_groups(c, &tenant, resource_type, &id))
            .await?;
        let found = Arc::new(read_cache::Cached::new(row, groups));
        cache.put(ticket, found.clone());
        Ok((found.row.clone(), found.groups.clone()))
    }

    /// The read cache's hits and misses, users kept and their bytes;
    /// `None` without a cache.
    pub fn read_cache(&self) -> Option<((u64, u64), (usize, u64))> {
        self.cache.as_ref().map(|c| (c.hits_and_misses(), c.size()))
    }

    /// Runs `f` in a write transaction, off the async executor, and
    /// answers once it is committed. `f` may run in a transaction shared
    /// with other writes (group commit), inside a savepoint of its own: an
    /// `Err` from `f` rolls back exactly what `f` did. On PostgreSQL `f`
    /// may run more than once: a write the server aborts to break a
    /// deadlock is rolled back and run again from a clone, and only its
    /// last run's changes stay; so `f` must do nothing outside the
    /// transaction.
    pub async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut AnyConnection) -> Result<T, StoreError> + Clone + Send + 'static,
    {
        let result = self.writer.write(f).await;
        if let Some(sealer) = &self.sealer {
            sealer.nudge();
        }
        result
    }

    /// Transactions the writer thread committed and the writes they
    /// carried, since start.
    pub fn group_commit(&self) -> (u64, u64) {
        (self.writer.commits(), self.writer.writes())
    }

    /// Whether the database answers with every migration applied; the
    /// error says what is missing.
    ///
    /// Asked on an idle pooled connection, or else on one opened for it
    /// (one attempt), never by waiting for the pool: with the server down
    /// the pool waits for a connection up to its timeout (5 s by default),
    /// longer than a readiness probe waits for its answer.
    pub async fn is_ready(&self) -> Result<(), StoreError> {
        use diesel::connection::SimpleConnection;
        let (pool, target) = (self.pool.clone(), self.target.clone());
        let pending = tokio::task::spawn_blocking(move || {
            let check = |conn: &mut AnyConnection| {
                conn.batch_execute("SELECT 1")?;
                has_pending_migrations(conn)
            };
            if let Some(mut conn) = pool.try_get()
                && conn.still_usable()
            {
                let result = check(&mut conn.inner);
                note_lost(&mut conn, &result);
                return result;
            }
            check(&mut Manager::reader(target.as_ref().clone()).open()?)
        })
        .await
        .map_err(|e| StoreError::Internal(e.to_string()))??;
        if pending {
            return Err(StoreError::Migration(
                "the database schema is older than this binary".into(),
            ));
        }
        Ok(())
    }
}
