//! The `sql` adapter: accounts as rows of an application's own user table
//! in its database (PostgreSQL, or SQLite for a file-based app).
//!
//! The table, key column, id column and column mapping come from
//! configuration only; they are checked at start-up to be plain identifiers
//! and always quoted. Every value travels as a bind parameter, never inside
//! the SQL text. On PostgreSQL each value is sent as text and cast to the
//! column's own type (read once from the catalogue), so one code path
//! serves boolean, integer, uuid, timestamp and JSON columns; SQLite takes
//! the JSON value's natural type.
//!
//! ```text
//! create ─▶ SELECT id WHERE key = $k ─ found ─▶ UPDATE … (adopted)
//!                                    └ none ──▶ INSERT … RETURNING id
//! update ─▶ UPDATE … WHERE id = $id  (0 rows → NotFound)
//! delete ─▶ DELETE … WHERE id = $id  (0 rows → fine)
//! ```
//!
//! The create runs in one transaction, so a create retried after a crash
//! (the row is there, the gateway never heard) links the row instead of
//! inserting a second one. Only users are provisioned: groups are refused
//! at start-up. Calls run on a small r2d2 pool in `spawn_blocking`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::r2d2::{ConnectionManager, CustomizeConnection, Pool, PooledConnection};
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel::sql_types::{BigInt, Bool, Double, Nullable, Text};
use diesel::{PgConnection, SqliteConnection};
use serde_json::{Map, Value};

use super::http::read_secret;
use super::paths::{set_at, value_at};
use super::{Adapter, AdapterError, Applied, ErrorKind, OpContext, RemoteAccount};
use crate::config::{AppSettings, SqlAdapterSettings, SqlDisable};
use crate::domain::Kind;

/// A bind parameter.
#[derive(Debug, Clone, PartialEq)]
enum SqlValue {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
}

impl SqlValue {
    fn from_json(v: Option<&Value>) -> Self {
        match v {
            None | Some(Value::Null) => SqlValue::Null,
            Some(Value::Bool(b)) => SqlValue::Bool(*b),
            Some(Value::Number(n)) => match n.as_i64() {
                Some(i) => SqlValue::Int(i),
                None => SqlValue::Float(n.as_f64().unwrap_or_default()),
            },
            Some(Value::String(s)) => SqlValue::Text(s.clone()),
            Some(other) => SqlValue::Text(other.to_string()),
        }
    }

    /// The text PostgreSQL casts to the column type.
    fn as_text(&self) -> Option<String> {
        match self {
            SqlValue::Null => None,
            SqlValue::Bool(b) => Some(b.to_string()),
            SqlValue::Int(i) => Some(i.to_string()),
            SqlValue::Float(f) => Some(f.to_string()),
            SqlValue::Text(s) => Some(s.clone()),
        }
    }
}

/// A statement and its binds.
#[derive(Debug, Default)]
struct Stmt {
    sql: String,
    binds: Vec<SqlValue>,
}

#[derive(QueryableByName)]
struct IdRow {
    #[diesel(sql_type = Nullable<Text>)]
    remote_id: Option<String>,
}

#[derive(QueryableByName)]
struct ListRow {
    #[diesel(sql_type = Nullable<Text>)]
    remote_id: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    key_value: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    doc: Option<String>,
}

#[derive(QueryableByName)]
struct TypeRow {
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Text)]
    ty: String,
}

/// What the adapter needs from a connection, per backend.
trait Db: Sized {
    fn exec(&mut self, s: &Stmt) -> QueryResult<usize>;
    fn ids(&mut self, s: &Stmt) -> QueryResult<Vec<IdRow>>;
    fn rows(&mut self, s: &Stmt) -> QueryResult<Vec<ListRow>>;
    fn tx<T>(&mut self, f: impl FnOnce(&mut Self) -> QueryResult<T>) -> QueryResult<T>;
}

macro_rules! pg_query {
    ($s:expr) => {{
        let mut q = diesel::sql_query($s.sql.as_str()).into_boxed::<diesel::pg::Pg>();
        for v in &$s.binds {
            q = q.bind::<Nullable<Text>, _>(v.as_text());
        }
        q
    }};
}

macro_rules! sqlite_query {
    ($s:expr) => {{
        let mut q = diesel::sql_query($s.sql.as_str()).into_boxed::<diesel::sqlite::Sqlite>();
        for v in &$s.binds {
            q = match v.clone() {
                SqlValue::Null => q.bind::<Nullable<Text>, _>(None::<String>),
                SqlValue::Bool(b) => q.bind::<Bool, _>(b),
                SqlValue::Int(i) => q.bind::<BigInt, _>(i),
                SqlValue::Float(f) => q.bind::<Double, _>(f),
                SqlValue::Text(t) => q.bind::<Text, _>(t),
            };
        }
        q
    }};
}

impl Db for PgConnection {
    fn exec(&mut self, s: &Stmt) -> QueryResult<usize> {
        pg_query!(s).execute(self)
    }
    fn ids(&mut self, s: &Stmt) -> QueryResult<Vec<IdRow>> {
        pg_query!(s).load(self)
    }
    fn rows(&mut self, s: &Stmt) -> QueryResult<Vec<ListRow>> {
        pg_query!(s).load(self)
    }
    fn tx<T>(&mut self, f: impl FnOnce(&mut Self) -> QueryResult<T>) -> QueryResult<T> {
        self.transaction(f)
    }
}

impl Db for SqliteConnection {
    fn exec(&mut self, s: &Stmt) -> QueryResult<usize> {
        sqlite_query!(s).execute(self)
    }
    fn ids(&mut self, s: &Stmt) -> QueryResult<Vec<IdRow>> {
        sqlite_query!(s).load(self)
    }
    fn rows(&mut self, s: &Stmt) -> QueryResult<Vec<ListRow>> {
        sqlite_query!(s).load(self)
    }
    fn tx<T>(&mut self, f: impl FnOnce(&mut Self) -> QueryResult<T>) -> QueryResult<T> {
        // IMMEDIATE: a deferred read-then-write fails with "locked" under
        // concurrent writers instead of waiting for the busy timeout.
        self.immediate_transaction(f)
    }
}

/// Per-connection options: a statement timeout, so a lock held by the app
/// cannot stall a delivery worker for ever.
#[derive(Debug)]
struct Options {
    timeout: Duration,
}

impl CustomizeConnection<PgConnection, diesel::r2d2::Error> for Options {
    fn on_acquire(&self, c: &mut PgConnection) -> Result<(), diesel::r2d2::Error> {
        c.batch_execute(&format!(
            "SET statement_timeout = {}",
            self.timeout.as_millis()
        ))
        .map_err(diesel::r2d2::Error::QueryError)
    }
}

impl CustomizeConnection<SqliteConnection, diesel::r2d2::Error> for Options {
    fn on_acquire(&self, c: &mut SqliteConnection) -> Result<(), diesel::r2d2::Error> {
        c.batch_execute(&format!(
            "PRAGMA busy_timeout = {}; PRAGMA foreign_keys = ON;",
            self.timeout.as_millis()
        ))
        .map_err(diesel::r2d2::Error::QueryError)
    }
}

enum Backend {
    Pg(Pool<ConnectionManager<PgConnection>>),
    Sqlite(Pool<ConnectionManager<SqliteConnection>>),
}

/// An app's user table.
pub struct SqlAdapter {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Backend,
    /// The table, quoted.
    table: String,
    key: String,
    id: String,
    /// (account path, column), the key column left out.
    columns: Vec<(String, String)>,
    disable: Option<SqlDisable>,
    /// PostgreSQL: column → its quoted type, read on first use.
    types: Mutex<Option<Arc<HashMap<String, String>>>>,
}

/// Whether `s` is a plain SQL identifier: a letter or `_`, then letters,
/// digits or `_`, at most 63 characters.
pub fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    s.len() <= 63
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn quote(ident: &str) -> String {
    format!("\"{ident}\"")
}

/// Quotes a configured table name (`table` or `schema.table`).
pub fn quote_table(table: &str) -> anyhow::Result<String> {
    let parts: Vec<&str> = table.split('.').collect();
    anyhow::ensure!(
        parts.len() <= 2 && parts.iter().all(|p| is_identifier(p)),
        "sql table {table:?} must be a plain identifier, optionally schema-qualified"
    );
    Ok(parts.iter().map(|p| quote(p)).collect::<Vec<_>>().join("."))
}

fn column(name: &str) -> anyhow::Result<String> {
    anyhow::ensure!(
        is_identifier(name),
        "sql column {name:?} must be a plain identifier (letters, digits, underscore)"
    );
    Ok(name.to_string())
}

fn is_active(v: &Value) -> bool {
    v.get("active").and_then(Value::as_bool).unwrap_or(true)
}

fn key_of(ctx: &OpContext, account: &Value) -> String {
    account
        .get("externalId")
        .and_then(Value::as_str)
        .map_or_else(|| ctx.identity.clone(), str::to_string)
}

/// The error class of a failed statement.
fn classify(e: &DieselError) -> AdapterError {
    let (kind, msg) = match e {
        DieselError::DatabaseError(kind, info) => {
            let msg = info.message().to_string();
            let kind = match kind {
                DatabaseErrorKind::UniqueViolation
                | DatabaseErrorKind::ForeignKeyViolation
                | DatabaseErrorKind::NotNullViolation
                | DatabaseErrorKind::CheckViolation => ErrorKind::Rejected,
                DatabaseErrorKind::SerializationFailure | DatabaseErrorKind::ClosedConnection => {
                    ErrorKind::Transient
                }
                _ => kind_of_message(&msg),
            };
            (kind, msg)
        }
        DieselError::NotFound => (ErrorKind::NotFound, e.to_string()),
        DieselError::DeserializationError(_) | DieselError::SerializationError(_) => {
            (ErrorKind::Rejected, e.to_string())
        }
        other => (ErrorKind::Transient, other.to_string()),
    };
    AdapterError {
        kind,
        status: None,
        message: format!("sql: {msg}"),
    }
}

/// Classifies a database message that carries no error code diesel knows.
fn kind_of_message(msg: &str) -> ErrorKind {
    let m = msg.to_ascii_lowercase();
    const AUTH: &[&str] = &[
        "permission denied",
        "password authentication failed",
        "no pg_hba.conf entry",
        "authentication",
        "readonly database",
        "read-only",
    ];
    const TRANSIENT: &[&str] = &[
        "deadlock",
        "could not serialize",
        "locked",
        "busy",
        "timeout",
        "canceling statement",
        "disk",
        "full",
        "i/o",
        "connection",
        "connect",
        "terminating",
        "shutting down",
        "starting up",
        "recovery",
        "too many",
        "out of memory",
        "lock",
    ];
    if AUTH.iter().any(|a| m.contains(a)) {
        ErrorKind::Unauthorized
    } else if TRANSIENT.iter().any(|t| m.contains(t)) {
        ErrorKind::Transient
    } else {
        ErrorKind::Rejected
    }
}

fn pool_error(e: &r2d2::Error) -> AdapterError {
    let msg = e.to_string();
    let kind = match kind_of_message(&msg) {
        ErrorKind::Unauthorized => ErrorKind::Unauthorized,
        _ => ErrorKind::Transient,
    };
    AdapterError {
        kind,
        status: None,
        message: format!("sql: no connection to the app's database: {msg}"),
    }
}

fn groups_unsupported() -> AdapterError {
    AdapterError::rejected("groups are not supported by this sql app")
}

impl SqlAdapter {
    /// Checks the settings and prepares the pool (connections open on use).
    pub fn new(
        app: &AppSettings,
        s: &SqlAdapterSettings,
        timeout: Duration,
        concurrency: usize,
    ) -> anyhow::Result<Self> {
        anyhow::ensure!(
            !app.groups,
            "app {}: the sql adapter provisions users only; set groups = false",
            app.name
        );
        let url = match (&s.url, &s.url_env) {
            (Some(u), None) => u.clone(),
            (None, Some(var)) => read_secret(Some(var), None, "sql url")?.unwrap_or_default(),
            _ => anyhow::bail!("app {}: set one of sql url or url_env", app.name),
        };
        let table = quote_table(&s.table)?;
        let key = column(&s.key_column)?;
        let id = column(s.id_column.as_deref().unwrap_or(&s.key_column))?;
        let mut columns = Vec::new();
        for (path, col) in &s.columns {
            let col = column(col)?;
            anyhow::ensure!(!path.trim().is_empty(), "sql columns: empty attribute path");
            if col != key {
                columns.push((path.clone(), col));
            }
        }
        if let Some(SqlDisable::Update { column: c, .. }) = &s.disable {
            column(c)?;
        }
        let size = s
            .pool_size
            .unwrap_or(u32::try_from(concurrency).unwrap_or(8))
            .clamp(1, 32);
        let options = Options { timeout };
        let backend = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Pg(
                Pool::builder()
                    .max_size(size)
                    .min_idle(Some(0))
                    .connection_timeout(timeout)
                    .connection_customizer(Box::new(options))
                    .build_unchecked(ConnectionManager::new(url)),
            )
        } else {
            let path = url
                .strip_prefix("sqlite://")
                .or_else(|| url.strip_prefix("sqlite:"))
                .unwrap_or(&url)
                .to_string();
            Backend::Sqlite(
                Pool::builder()
                    .max_size(size.min(4))
                    .min_idle(Some(0))
                    .connection_timeout(timeout)
                    .connection_customizer(Box::new(options))
                    .build_unchecked(ConnectionManager::new(path)),
            )
        };
        Ok(Self {
            inner: Arc::new(Inner {
                backend,
                table,
                key,
                id,
                columns,
                disable: s.disable.clone(),
                types: Mutex::new(None),
            }),
        })
    }

    /// Runs `f` on a pooled connection off the async executor.
    async fn with_conn<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Inner, Conn<'_>) -> Result<T, AdapterError> + Send + 'static,
    ) -> Result<T, AdapterError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || match &inner.backend {
            Backend::Pg(p) => {
                let mut c: PooledConnection<_> = p.get().map_err(|e| pool_error(&e))?;
                f(&inner, Conn::Pg(&mut c))
            }
            Backend::Sqlite(p) => {
                let mut c: PooledConnection<_> = p.get().map_err(|e| pool_error(&e))?;
                f(&inner, Conn::Sqlite(&mut c))
            }
        })
        .await
        .map_err(|e| AdapterError::transient(format!("sql task failed: {e}")))?
    }
}

/// A checked-out connection of either backend.
enum Conn<'a> {
    Pg(&'a mut PgConnection),
    Sqlite(&'a mut SqliteConnection),
}

/// Builds statements for one backend.
struct Builder<'a> {
    /// PostgreSQL: column → type to cast each bind to.
    pg: Option<&'a HashMap<String, String>>,
    stmt: Stmt,
}

impl<'a> Builder<'a> {
    fn new(pg: Option<&'a HashMap<String, String>>) -> Self {
        Self {
            pg,
            stmt: Stmt::default(),
        }
    }

    fn push(&mut self, sql: &str) -> &mut Self {
        self.stmt.sql.push_str(sql);
        self
    }

    /// A placeholder for a value of `col` (cast to its type on PostgreSQL).
    fn bind(&mut self, col: &str, v: SqlValue) -> Result<&mut Self, AdapterError> {
        self.stmt.binds.push(v);
        let n = self.stmt.binds.len();
        match self.pg {
            Some(types) => {
                let ty = types.get(col).ok_or_else(|| {
                    AdapterError::rejected(format!("sql: the table has no column {col:?}"))
                })?;
                self.stmt.sql.push_str(&format!("CAST(${n} AS {ty})"));
            }
            None => self.stmt.sql.push('?'),
        }
        Ok(self)
    }

    fn finish(self) -> Stmt {
        self.stmt
    }
}

impl Inner {
    /// PostgreSQL: the table's column types, read once.
    fn pg_types(&self, c: &mut PgConnection) -> Result<Arc<HashMap<String, String>>, AdapterError> {
        if let Ok(guard) = self.types.lock()
            && let Some(t) = guard.as_ref()
        {
            return Ok(t.clone());
        }
        let rows: Vec<TypeRow> = diesel::sql_query(
            "SELECT a.attname::text AS name, format('%I.%I', n.nspname, t.typname) AS ty \
             FROM pg_catalog.pg_attribute a \
             JOIN pg_catalog.pg_type t ON t.oid = a.atttypid \
             JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace \
             WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped",
        )
        .bind::<Text, _>(&self.table)
        .load(c)
        .map_err(|e| classify(&e))?;
        if rows.is_empty() {
            return Err(AdapterError::rejected(format!(
                "sql: table {} not found",
                self.table
            )));
        }
        let types: Arc<HashMap<String, String>> =
            Arc::new(rows.into_iter().map(|r| (r.name, r.ty)).collect());
        if let Ok(mut guard) = self.types.lock() {
            *guard = Some(types.clone());
        }
        Ok(types)
    }

    /// The columns to write for an account: its mapped attributes, the
    /// key, and the disable column.
    fn values(&self, account: &Value, key: Option<&str>) -> Vec<(String, SqlValue)> {
        let mut out: Vec<(String, SqlValue)> = Vec::new();
        if let Some(k) = key {
            out.push((self.key.clone(), SqlValue::Text(k.to_string())));
        }
        for (path, col) in &self.columns {
            if !out.iter().any(|(c, _)| c == col) {
                let v = match value_at(account, path) {
                    // SCIM's default for an absent `active`.
                    None if path == "active" => SqlValue::Bool(true),
                    v => SqlValue::from_json(v),
                };
                out.push((col.clone(), v));
            }
        }
        if let Some(SqlDisable::Update {
            column,
            value,
            enabled_value,
        }) = &self.disable
        {
            let v = if is_active(account) {
                enabled_value.as_ref()
            } else {
                Some(value)
            };
            if let Some(v) = v {
                out.retain(|(c, _)| c != column);
                out.push((column.clone(), SqlValue::from_json(Some(v))));
            }
        }
        out
    }

    fn select_by_key(&self, b: &mut Builder<'_>, key: &str) -> Result<(), AdapterError> {
        b.push(&format!(
            "SELECT CAST({} AS TEXT) AS remote_id FROM {} WHERE {} = ",
            quote(&self.id),
            self.table,
            quote(&self.key)
        ))
        .bind(&self.key, SqlValue::Text(key.to_string()))?;
        Ok(())
    }

    fn insert(&self, b: &mut Builder<'_>, row: &[(String, SqlValue)]) -> Result<(), AdapterError> {
        // Absent attributes are left to the column's default.
        let row: Vec<&(String, SqlValue)> =
            row.iter().filter(|(_, v)| *v != SqlValue::Null).collect();
        let cols: Vec<String> = row.iter().map(|(c, _)| quote(c)).collect();
        b.push(&format!(
            "INSERT INTO {} ({}) VALUES (",
            self.table,
            cols.join(", ")
        ));
        for (i, (c, v)) in row.iter().enumerate() {
            if i > 0 {
                b.push(", ");
            }
            b.bind(c, v.clone())?;
        }
        b.push(&format!(
            ") RETURNING CAST({} AS TEXT) AS remote_id",
            quote(&self.id)
        ));
        Ok(())
    }

    /// `UPDATE … SET … WHERE <where_col> = <value>`.
    fn update(
        &self,
        b: &mut Builder<'_>,
        row: &[(String, SqlValue)],
        where_col: &str,
        value: &str,
    ) -> Result<(), AdapterError> {
        b.push(&format!("UPDATE {} SET ", self.table));
        for (i, (c, v)) in row.iter().enumerate() {
            if i > 0 {
                b.push(", ");
            }
            b.push(&format!("{} = ", quote(c))).bind(c, v.clone())?;
        }
        b.push(&format!(" WHERE {} = ", quote(where_col)))
            .bind(where_col, SqlValue::Text(value.to_string()))?;
        Ok(())
    }

    fn delete(&self, b: &mut Builder<'_>, remote_id: &str) -> Result<(), AdapterError> {
        b.push(&format!(
            "DELETE FROM {} WHERE {} = ",
            self.table,
            quote(&self.id)
        ))
        .bind(&self.id, SqlValue::Text(remote_id.to_string()))?;
        Ok(())
    }

    fn list(
        &self,
        b: &mut Builder<'_>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(), AdapterError> {
        let mut cols: Vec<&str> = self.columns.iter().map(|(_, c)| c.as_str()).collect();
        if let Some(SqlDisable::Update { column, .. }) = &self.disable {
            cols.push(column);
        }
        cols.sort_unstable();
        cols.dedup();
        // Column names are checked identifiers, so they are safe as literals.
        let pairs: Vec<String> = cols
            .iter()
            .map(|c| format!("'{c}', {}", quote(c)))
            .collect();
        let doc = match (b.pg.is_some(), pairs.is_empty()) {
            (_, true) => "'{}'".to_string(),
            (true, false) => format!("CAST(json_build_object({}) AS TEXT)", pairs.join(", ")),
            (false, false) => format!("json_object({})", pairs.join(", ")),
        };
        b.push(&format!(
            "SELECT CAST({id} AS TEXT) AS remote_id, CAST({key} AS TEXT) AS key_value, \
             {doc} AS doc FROM {table}",
            id = quote(&self.id),
            key = quote(&self.key),
            table = self.table
        ));
        if let Some(a) = after {
            b.push(&format!(" WHERE {} > ", quote(&self.id)))
                .bind(&self.id, SqlValue::Text(a.to_string()))?;
        }
        b.push(&format!(" ORDER BY {} LIMIT {limit}", quote(&self.id)));
        Ok(())
    }

    /// Turns a listed row's columns back into account attributes.
    fn attributes(&self, doc: &str) -> Value {
        let cols: Map<String, Value> = serde_json::from_str(doc).unwrap_or_default();
        let mut out = Map::new();
        for (path, col) in &self.columns {
            let mut v = cols.get(col).cloned().unwrap_or(Value::Null);
            // SQLite has no boolean type: 0/1 back to false/true.
            if path == "active"
                && let Some(n) = v.as_i64()
            {
                v = Value::Bool(n != 0);
            }
            set_at(&mut out, path, v);
        }
        if let Some(SqlDisable::Update { column, value, .. }) = &self.disable
            && !out.contains_key("active")
        {
            let disabled = cols.get(column).is_some_and(|v| loosely_equal(v, value));
            out.insert("active".into(), Value::Bool(!disabled));
        }
        Value::Object(out)
    }
}

/// Equality across the type changes a database makes (`true` read back as
/// `1`, a number read back as text).
fn loosely_equal(a: &Value, b: &Value) -> bool {
    let norm = |v: &Value| match v {
        Value::Bool(b) => i64::from(*b).to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    a == b || norm(a) == norm(b)
}

fn create_in<C: Db>(
    inner: &Inner,
    c: &mut C,
    pg: Option<&HashMap<String, String>>,
    key: &str,
    account: &Value,
) -> Result<Applied, AdapterError> {
    let row = inner.values(account, Some(key));
    let mut find = Builder::new(pg);
    inner.select_by_key(&mut find, key)?;
    let find = find.finish();
    let mut ins = Builder::new(pg);
    inner.insert(&mut ins, &row)?;
    let ins = ins.finish();
    let mut upd = Builder::new(pg);
    inner.update(&mut upd, &row, &inner.key, key)?;
    let upd = upd.finish();
    let attempt = |c: &mut C| {
        c.tx(|c| {
            let existing = c.ids(&find)?;
            if let Some(found) = existing.into_iter().next() {
                // The row is there (a crash after the insert, or made by
                // hand): link it and bring it in line.
                c.exec(&upd)?;
                return Ok((found.remote_id, true));
            }
            let inserted = c.ids(&ins)?;
            Ok((inserted.into_iter().next().and_then(|r| r.remote_id), false))
        })
    };
    let (remote_id, adopted) = match attempt(c) {
        // Inserted by someone else between our look-up and insert.
        Err(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _)) => {
            attempt(c).map_err(|e| classify(&e))?
        }
        other => other.map_err(|e| classify(&e))?,
    };
    let remote_id =
        remote_id.ok_or_else(|| AdapterError::rejected("sql: the id column is NULL"))?;
    Ok(Applied {
        remote_id: Some(remote_id),
        adopted,
        status: None,
    })
}

/// The id of the row whose key is `key`, if there is one.
fn find_in<C: Db>(
    inner: &Inner,
    c: &mut C,
    pg: Option<&HashMap<String, String>>,
    key: &str,
) -> Result<Option<String>, AdapterError> {
    let mut find = Builder::new(pg);
    inner.select_by_key(&mut find, key)?;
    let found = c.ids(&find.finish()).map_err(|e| classify(&e))?;
    Ok(found.into_iter().next().and_then(|r| r.remote_id))
}

fn exec_one<C: Db>(c: &mut C, stmt: &Stmt) -> Result<usize, AdapterError> {
    c.exec(stmt).map_err(|e| classify(&e))
}

/// What an update does.
enum Change {
    Write(Value),
    Remove,
}

impl SqlAdapter {
    async fn change(&self, remote_id: &str, change: Change) -> Result<Applied, AdapterError> {
        let remote_id = remote_id.to_string();
        self.with_conn(move |inner, conn| {
            let build = |pg: Option<&HashMap<String, String>>| -> Result<Stmt, AdapterError> {
                let mut b = Builder::new(pg);
                match &change {
                    Change::Write(after) => {
                        // The key is the id when there is no id column: leave it.
                        let key = (inner.id != inner.key)
                            .then(|| after.get("externalId").and_then(Value::as_str))
                            .flatten();
                        inner.update(&mut b, &inner.values(after, key), &inner.id, &remote_id)?;
                    }
                    Change::Remove => inner.delete(&mut b, &remote_id)?,
                }
                Ok(b.finish())
            };
            let n = match conn {
                Conn::Pg(c) => {
                    let types = inner.pg_types(c)?;
                    exec_one(c, &build(Some(&types))?)?
                }
                Conn::Sqlite(c) => exec_one(c, &build(None)?)?,
            };
            if n == 0 && matches!(change, Change::Write(_)) {
                return Err(AdapterError {
                    kind: ErrorKind::NotFound,
                    status: None,
                    message: format!("sql: no row with id {remote_id:?}"),
                });
            }
            Ok(Applied::default())
        })
        .await
    }
}

#[async_trait::async_trait]
impl Adapter for SqlAdapter {
    async fn create(&self, ctx: &OpContext, account: &Value) -> Result<Applied, AdapterError> {
        if ctx.kind == Kind::Group {
            return Err(groups_unsupported());
        }
        let key = key_of(ctx, account);
        if matches!(self.inner.disable, Some(SqlDisable::Delete)) && !is_active(account) {
            // Disabled means no row: make sure there is none.
            self.change(&key, Change::Remove).await?;
            return Ok(Applied {
                remote_id: Some(key),
                adopted: false,
                status: None,
            });
        }
        let account = account.clone();
        self.with_conn(move |inner, conn| match conn {
            Conn::Pg(c) => {
                let types = inner.pg_types(c)?;
                create_in(inner, c, Some(&types), &key, &account)
            }
            Conn::Sqlite(c) => create_in(inner, c, None, &key, &account),
        })
        .await
    }

    async fn locate(
        &self,
        ctx: &OpContext,
        account: &Value,
    ) -> Result<Option<String>, AdapterError> {
        if ctx.kind == Kind::Group {
            return Ok(None);
        }
        let key = key_of(ctx, account);
        self.with_conn(move |inner, conn| match conn {
            Conn::Pg(c) => {
                let types = inner.pg_types(c)?;
                find_in(inner, c, Some(&types), &key)
            }
            Conn::Sqlite(c) => find_in(inner, c, None, &key),
        })
        .await
    }

    async fn update(
        &self,
        ctx: &OpContext,
        remote_id: &str,
        before: &Value,
        after: &Value,
    ) -> Result<Applied, AdapterError> {
        if ctx.kind == Kind::Group {
            return Err(groups_unsupported());
        }
        if matches!(self.inner.disable, Some(SqlDisable::Delete)) {
            if !is_active(after) {
                return self.change(remote_id, Change::Remove).await;
            }
            if !is_active(before) {
                // The row went when the account was disabled: let the
                // engine forget it and create it afresh (with a new id).
                return Err(AdapterError {
                    kind: ErrorKind::NotFound,
                    status: None,
                    message: "sql: re-enabled account was deleted on disable; creating it again"
                        .into(),
                });
            }
        }
        self.change(remote_id, Change::Write(after.clone())).await
    }

    async fn delete(
        &self,
        ctx: &OpContext,
        remote_id: &str,
        _last: &Value,
    ) -> Result<Applied, AdapterError> {
        if ctx.kind == Kind::Group {
            return Err(groups_unsupported());
        }
        self.change(remote_id, Change::Remove).await
    }

    fn can_list(&self) -> bool {
        true
    }

    async fn list(
        &self,
        kind: Kind,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<RemoteAccount>, AdapterError> {
        if kind == Kind::Group {
            return Err(groups_unsupported());
        }
        let after = after.map(str::to_string);
        let limit = limit.clamp(1, 10_000);
        self.with_conn(move |inner, conn| {
            let rows = match conn {
                Conn::Pg(c) => {
                    let types = inner.pg_types(c)?;
                    let mut b = Builder::new(Some(&types));
                    inner.list(&mut b, after.as_deref(), limit)?;
                    c.rows(&b.finish()).map_err(|e| classify(&e))?
                }
                Conn::Sqlite(c) => {
                    let mut b = Builder::new(None);
                    inner.list(&mut b, after.as_deref(), limit)?;
                    c.rows(&b.finish()).map_err(|e| classify(&e))?
                }
            };
            Ok(rows
                .into_iter()
                .filter_map(|r| {
                    Some(RemoteAccount {
                        remote_id: r.remote_id?,
                        key: r.key_value,
                        attributes: inner.attributes(r.doc.as_deref().unwrap_or("{}")),
                    })
                })
                .collect())
        })
        .await
    }

    fn listed_paths(&self) -> Option<Vec<String>> {
        let mut paths: Vec<String> = self.inner.columns.iter().map(|(p, _)| p.clone()).collect();
        if matches!(self.inner.disable, Some(SqlDisable::Update { .. })) {
            paths.push("active".into());
        }
        paths.sort();
        paths.dedup();
        Some(paths)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_plain_identifiers_are_accepted() {
        assert!(is_identifier("app_users"));
        assert!(is_identifier("_x1"));
        assert!(!is_identifier("1x"));
        assert!(!is_identifier("users; DROP TABLE x"));
        assert!(!is_identifier("a\"b"));
        assert!(!is_identifier(""));
        assert_eq!(quote_table("app.users").unwrap(), "\"app\".\"users\"");
        assert!(quote_table("a.b.c").is_err());
        assert!(quote_table("users--").is_err());
    }

    #[test]
    fn database_messages_map_to_engine_classes() {
        assert_eq!(kind_of_message("deadlock detected"), ErrorKind::Transient);
        assert_eq!(kind_of_message("database is locked"), ErrorKind::Transient);
        assert_eq!(
            kind_of_message("could not connect to server: Connection refused"),
            ErrorKind::Transient
        );
        assert_eq!(
            kind_of_message("permission denied for table users"),
            ErrorKind::Unauthorized
        );
        assert_eq!(
            kind_of_message("column \"x\" of relation \"users\" does not exist"),
            ErrorKind::Rejected
        );
        assert_eq!(
            kind_of_message("value too long for type character varying(5)"),
            ErrorKind::Rejected
        );
    }

    #[test]
    fn json_values_bind_with_their_type() {
        assert_eq!(
            SqlValue::from_json(Some(&json!(true))),
            SqlValue::Bool(true)
        );
        assert_eq!(SqlValue::from_json(Some(&json!(3))), SqlValue::Int(3));
        assert_eq!(SqlValue::from_json(None), SqlValue::Null);
        assert_eq!(
            SqlValue::from_json(Some(&json!([{"value": "a"}]))).as_text(),
            Some(r#"[{"value":"a"}]"#.to_string())
        );
        assert!(loosely_equal(&json!(1), &json!(true)));
        assert!(loosely_equal(&json!("disabled"), &json!("disabled")));
    }
}
