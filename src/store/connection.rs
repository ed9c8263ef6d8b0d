//! Connections: one diesel code base over SQLite (embedded default) and
//! PostgreSQL (scale-out), an r2d2 pool, embedded migrations, and the write
//! transaction that every change goes through.
//!
//! SQLite runs in WAL mode with `synchronous=NORMAL`, a busy timeout and
//! foreign keys on, temporary files in memory (group commit gives every
//! write a savepoint, and a savepoint's journal in a temporary file cost a
//! file open, writes and a close per write), and every write transaction starts with
//! `BEGIN IMMEDIATE`: a deferred transaction that later tries to write fails
//! with "database is locked" under concurrent writers instead of waiting.
//! The automatic checkpoint waits for a 64 MiB WAL: the writer's own
//! checkpoint thread copies the WAL long before that (see `writer`).
//!
//! Memory-mapped I/O is off (`mmap_size = 0`): every connection maps the
//! file on its own, and each mapping counts in the resident set, so with a
//! 1 GiB map the gateway held 5.6 GB resident at 1M users (5.4 GB of it the
//! same database pages, mapped a dozen times). Reads through SQLite's page
//! cache and the OS page cache measured the same at 10,000 users and kept
//! the peak at 213 MiB at 1M users (`scim-bench --users 1000000`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};
use diesel::prelude::*;
use diesel::{PgConnection, SqliteConnection};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use super::StoreError;
use crate::config::DatabaseSettings;

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// A connection to either backend.
#[derive(diesel::MultiConnection)]
pub enum AnyConnection {
    /// PostgreSQL.
    Postgresql(PgConnection),
    /// SQLite.
    Sqlite(SqliteConnection),
}

/// Which backend a database URL selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A SQLite file path (or `:memory:`).
    Sqlite(String),
    /// A PostgreSQL connection URL.
    Postgres(String),
}

impl Target {
    /// `postgres://` / `postgresql://` select PostgreSQL; `sqlite://path`,
    /// `sqlite:path` or a bare path select SQLite.
    pub fn parse(url: &str) -> Self {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Target::Postgres(url.to_string());
        }
        let path = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .unwrap_or(url);
        Target::Sqlite(path.to_string())
    }

    /// Whether this is PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        matches!(self, Target::Postgres(_))
    }
}

/// A pooled connection that remembers whether it lost its server, so the
/// pool discards it instead of handing it out again (a PostgreSQL restart
/// would otherwise leave every pooled connection failing forever).
pub struct Conn {
    /// The connection.
    pub inner: AnyConnection,
    /// Set when an operation found the connection unusable.
    pub broken: bool,
    /// [`LOST`] when it was opened or last checked.
    checked: u64,
}

/// Counts the times a PostgreSQL connection was found lost (the server
/// restarted, the network failed). A pooled connection older than the
/// last such time is checked before its next use ([`Conn::still_usable`]):
/// a restart kills every connection at once, and without the check each
/// idle one in the pool would fail one request after the server is back.
/// (Connections are not checked on every checkout: a `SELECT 1` per
/// request costs up to a quarter of read throughput.)
static LOST: AtomicU64 = AtomicU64::new(0);

/// Records that a PostgreSQL connection was found lost.
pub fn connection_lost() {
    LOST.fetch_add(1, Ordering::Relaxed);
}

impl Conn {
    /// Whether the connection can be used: always on SQLite, and on
    /// PostgreSQL unless a connection was found lost since this one was
    /// opened or last checked and a `SELECT 1` now fails (it is then marked
    /// broken, for the pool to discard).
    pub fn still_usable(&mut self) -> bool {
        let lost = LOST.load(Ordering::Relaxed);
        if self.checked >= lost || !matches!(self.inner, AnyConnection::Postgresql(_)) {
            return true;
        }
        if self.inner.batch_execute("SELECT 1").is_ok() {
            self.checked = lost;
            return true;
        }
        self.broken = true;
        false
    }
}

/// Opens connections for the pool and sets per-connection options.
#[derive(Debug, Clone)]
pub struct Manager {
    target: Target,
    /// SQLite connections that may only read (`PRAGMA query_only`): the
    /// pool's and the point readers'. Every write goes through the writer
    /// thread, whose connection the read cache watches
    /// ([`super::read_cache`]); a write on any other connection would
    /// change what the cache holds unseen, so it fails instead.
    reads_only: bool,
}

impl r2d2::ManageConnection for Manager {
    type Connection = Conn;
    type Error = StoreError;

    fn connect(&self) -> Result<Conn, StoreError> {
        let checked = LOST.load(Ordering::Relaxed);
        self.open().map(|inner| Conn {
            inner,
            broken: false,
            checked,
        })
    }

    fn is_valid(&self, conn: &mut Conn) -> Result<(), StoreError> {
        conn.inner
            .batch_execute("SELECT 1")
            .map_err(StoreError::from)
    }

    fn has_broken(&self, conn: &mut Conn) -> bool {
        conn.broken
    }
}

impl Manager {
    /// A manager for the given backend.
    pub fn new(target: Target) -> Self {
        Self {
            target,
            reads_only: false,
        }
    }

    /// A manager whose SQLite connections may only read.
    pub fn reader(target: Target) -> Self {
        Self {
            target,
            reads_only: true,
        }
    }

    /// The backend this manager connects to.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// Opens one connection with the per-connection options set.
    pub fn open(&self) -> Result<AnyConnection, StoreError> {
        match &self.target {
            Target::Sqlite(path) => {
                let mut conn = SqliteConnection::establish(path)
                    .map_err(|e| StoreError::Unavailable(e.to_string()))?;
                conn.batch_execute(
                    "PRAGMA busy_timeout = 10000;
                     PRAGMA journal_mode = WAL;
                     PRAGMA synchronous = NORMAL;
                     PRAGMA foreign_keys = ON;
                     PRAGMA mmap_size = 0;
                     PRAGMA cache_size = -16000;
                     PRAGMA temp_store = MEMORY;
                     PRAGMA wal_autocheckpoint = 16384;",
                )?;
                if self.reads_only {
                    conn.batch_execute("PRAGMA query_only = 1")?;
                }
                Ok(AnyConnection::Sqlite(conn))
            }
            Target::Postgres(url) => {
                let conn = PgConnection::establish(url)
                    .map_err(|e| StoreError::Unavailable(e.to_string()))?;
                Ok(AnyConnection::Postgresql(conn))
            }
        }
    }
}

/// The connection pool.
pub type Pool = r2d2::Pool<Manager>;

/// A PostgreSQL URL whose connection attempts give up after `secs` (libpq's
/// `connect_timeout`), unless the URL sets its own or `PGCONNECT_TIMEOUT`
/// is set. Without it, libpq waits as long as the kernel does for a server
/// that does not answer (minutes): the pool's own timeout stops a request
/// from waiting that long, but not a writer thread, and every write queued
/// behind it would wait too.
fn with_connect_timeout(url: &str, secs: u64) -> String {
    let query = url.split_once('?').map_or("", |(_, q)| q);
    if std::env::var_os("PGCONNECT_TIMEOUT").is_some()
        || query
            .split('&')
            .any(|p| p.split('=').next() == Some("connect_timeout"))
    {
        return url.to_string();
    }
    // libpq refuses an empty parameter (`?&…`, `&&…`).
    let base = url.trim_end_matches(['?', '&']);
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}connect_timeout={secs}")
}

/// The database the settings name, ready to connect to: a PostgreSQL URL
/// with its connect timeout, a SQLite file's directory created.
pub fn target_of(settings: &DatabaseSettings) -> Result<Target, StoreError> {
    let target = match Target::parse(&settings.url) {
        Target::Postgres(url) => Target::Postgres(with_connect_timeout(
            &url,
            settings.connect_timeout_secs.max(1),
        )),
        sqlite => sqlite,
    };
    if let Target::Sqlite(path) = &target
        && let Some(parent) = std::path::Path::new(path).parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent)
            .map_err(|e| StoreError::Unavailable(format!("creating {}: {e}", parent.display())))?;
    }
    Ok(target)
}

/// Builds the pool of connections that read (on SQLite they cannot
/// write). The pool does not test connections on checkout (a
/// `SELECT 1` per request costs up to a quarter of read throughput); a
/// broken connection surfaces as an error on use and is replaced. It
/// starts opening connections at once.
pub fn build_pool(settings: &DatabaseSettings, target: &Target) -> Pool {
    r2d2::Pool::builder()
        .max_size(settings.pool_size.max(1))
        .min_idle(Some(1))
        .test_on_check_out(false)
        .connection_timeout(Duration::from_secs(settings.connect_timeout_secs.max(1)))
        .build_unchecked(Manager::reader(target.clone()))
}

/// Runs `f` in a savepoint of the transaction `conn` is in: what `f`
/// wrote stays when it succeeds and is undone when it fails, and the rest
/// of the transaction goes on either way.
pub fn savepoint<T>(
    conn: &mut AnyConnection,
    f: impl FnOnce(&mut AnyConnection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    conn.transaction(f)
}

/// Applies pending migrations; a no-op when the schema is current. On
/// PostgreSQL an advisory lock keeps two processes starting at once from racing.
pub fn run_migrations(conn: &mut AnyConnection) -> Result<usize, StoreError> {
    let applied = match conn {
        AnyConnection::Sqlite(c) => c
            .run_pending_migrations(SQLITE_MIGRATIONS)
            .map_err(|e| StoreError::Migration(e.to_string()))?
            .len(),
        AnyConnection::Postgresql(c) => {
            c.batch_execute("SELECT pg_advisory_lock(7243550118)")?;
            let result = c
                .run_pending_migrations(POSTGRES_MIGRATIONS)
                .map(|v| v.len())
                .map_err(|e| StoreError::Migration(e.to_string()));
            c.batch_execute("SELECT pg_advisory_unlock(7243550118)")?;
            result?
        }
    };
    Ok(applied)
}

/// Whether migrations embedded in this binary are not yet applied (a
/// database restored from an older backup, or another process mid-upgrade).
///
/// Read from diesel's table directly: its `has_pending_migration` first
/// creates that table if missing, which a read-only connection (the pool's,
/// on SQLite) may not do.
pub fn has_pending_migrations(conn: &mut AnyConnection) -> Result<bool, StoreError> {
    use diesel::migration::MigrationSource;
    #[derive(QueryableByName)]
    struct Applied {
        #[diesel(sql_type = diesel::sql_types::Text)]
        version: String,
    }
    let applied: Vec<Applied> =
        match diesel::sql_query("SELECT version FROM __diesel_schema_migrations").load(conn) {
            Ok(rows) => rows,
            // A database never migrated has no such table.
            Err(diesel::result::Error::DatabaseError(_, info))
                if info.message().contains("__diesel_schema_migrations") =>
            {
                return Ok(true);
            }
            Err(e) => return Err(e.into()),
        };
    let embedded: Vec<String> = match conn {
        AnyConnection::Sqlite(_) => {
            MigrationSource::<diesel::sqlite::Sqlite>::migrations(&SQLITE_MIGRATIONS)
                .map(|ms| ms.iter().map(|m| m.name().version().to_string()).collect())
        }
        AnyConnection::Postgresql(_) => {
            MigrationSource::<diesel::pg::Pg>::migrations(&POSTGRES_MIGRATIONS)
                .map(|ms| ms.iter().map(|m| m.name().version().to_string()).collect())
        }
    }
    .map_err(|e| StoreError::Migration(e.to_string()))?;
    Ok(embedded
        .iter()
        .any(|v| !applied.iter().any(|a| a.version == *v)))
}

/// Runs `f` in one write transaction: `BEGIN IMMEDIATE` on SQLite (takes the
/// write lock up front), `BEGIN` on PostgreSQL. Commits on `Ok`, rolls back on
/// `Err` or panic. The transaction goes through diesel's transaction manager,
/// so diesel's own nested transactions (savepoints) inside `f` stay correct.
pub fn write_tx<T>(
    conn: &mut AnyConnection,
    f: impl FnOnce(&mut AnyConnection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    match conn {
        AnyConnection::Sqlite(c) => {
            AnsiTransactionManager::begin_transaction_sql(c, "BEGIN IMMEDIATE")?
        }
        AnyConnection::Postgresql(c) => AnsiTransactionManager::begin_transaction(c)?,
    }
    let mut guard = RollbackGuard { conn, done: false };
    let out = f(guard.conn)?;
    guard.done = true;
    match guard.conn {
        AnyConnection::Sqlite(c) => AnsiTransactionManager::commit_transaction(c)?,
        AnyConnection::Postgresql(c) => AnsiTransactionManager::commit_transaction(c)?,
    }
    Ok(out)
}

/// Rolls back an open transaction when dropped before commit, so that a
/// connection never goes back to the pool inside a transaction.
struct RollbackGuard<'a> {
    conn: &'a mut AnyConnection,
    done: bool,
}

impl Drop for RollbackGuard<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let result = match self.conn {
            AnyConnection::Sqlite(c) => AnsiTransactionManager::rollback_transaction(c),
            AnyConnection::Postgresql(c) => AnsiTransactionManager::rollback_transaction(c),
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "rollback failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_select_backends() {
        assert_eq!(
            Target::parse("sqlite://data/x.db"),
            Target::Sqlite("data/x.db".into())
        );
        assert_eq!(
            Target::parse("/tmp/x.db"),
            Target::Sqlite("/tmp/x.db".into())
        );
        assert!(Target::parse("postgres://u@h/db").is_postgres());
        assert!(Target::parse("postgresql://u@h/db").is_postgres());
    }

    #[test]
    fn postgres_urls_get_a_connect_timeout_unless_they_set_one() {
        assert_eq!(
            with_connect_timeout("postgres://u@h/db", 5),
            "postgres://u@h/db?connect_timeout=5"
        );
        assert_eq!(
            with_connect_timeout("postgres://u@h/db?sslmode=disable", 7),
            "postgres://u@h/db?sslmode=disable&connect_timeout=7"
        );
        assert_eq!(
            with_connect_timeout("postgres://u@h/db?", 5),
            "postgres://u@h/db?connect_timeout=5"
        );
        assert_eq!(
            with_connect_timeout("postgres://u@h/db?sslmode=disable&", 5),
            "postgres://u@h/db?sslmode=disable&connect_timeout=5"
        );
        for own in [
            "postgres://u@h/db?connect_timeout=30",
            "postgres://u@h/db?sslmode=require&connect_timeout=30",
        ] {
            assert_eq!(with_connect_timeout(own, 5), own);
        }
    }
}
