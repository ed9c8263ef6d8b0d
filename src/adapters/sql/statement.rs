//! The `sql` adapter's statements: values as bind parameters, statement
//! text built from quoted identifiers, and how each backend runs it (on
//! PostgreSQL every value is text cast to the column's own type).

use std::collections::HashMap;
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::r2d2::CustomizeConnection;
use diesel::sql_types::{BigInt, Bool, Double, Nullable, Text};
use diesel::{PgConnection, SqliteConnection};
use serde_json::Value;

use super::super::AdapterError;

/// A bind parameter.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum SqlValue {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
}

impl SqlValue {
    pub(super) fn from_json(v: Option<&Value>) -> Self {
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
    pub(super) fn as_text(&self) -> Option<String> {
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
pub(super) struct Stmt {
    pub(super) sql: String,
    pub(super) binds: Vec<SqlValue>,
}

#[derive(QueryableByName)]
pub(super) struct IdRow {
    #[diesel(sql_type = Nullable<Text>)]
    pub(super) remote_id: Option<String>,
}

#[derive(QueryableByName)]
pub(super) struct ListRow {
    #[diesel(sql_type = Nullable<Text>)]
    pub(super) remote_id: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub(super) key_value: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub(super) doc: Option<String>,
}

#[derive(QueryableByName)]
pub(super) struct TypeRow {
    #[diesel(sql_type = Text)]
    pub(super) name: String,
    #[diesel(sql_type = Text)]
    pub(super) ty: String,
}

/// What the adapter needs from a connection, per backend.
pub(super) trait Db: Sized {
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
pub(super) struct Options {
    pub(super) timeout: Duration,
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

pub(super) fn quote(ident: &str) -> String {
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

pub(super) fn column(name: &str) -> anyhow::Result<String> {
    anyhow::ensure!(
        is_identifier(name),
        "sql column {name:?} must be a plain identifier (letters, digits, underscore)"
    );
    Ok(name.to_string())
}

/// A checked-out connection of either backend.
pub(super) enum Conn<'a> {
    Pg(&'a mut PgConnection),
    Sqlite(&'a mut SqliteConnection),
}

/// Builds statements for one backend.
pub(super) struct Builder<'a> {
    /// PostgreSQL: column → type to cast each bind to.
    pub(super) pg: Option<&'a HashMap<String, String>>,
    pub(super) stmt: Stmt,
}

impl<'a> Builder<'a> {
    pub(super) fn new(pg: Option<&'a HashMap<String, String>>) -> Self {
        Self {
            pg,
            stmt: Stmt::default(),
        }
    }

    pub(super) fn push(&mut self, sql: &str) -> &mut Self {
        self.stmt.sql.push_str(sql);
        self
    }

    /// A placeholder for a value of `col` (cast to its type on PostgreSQL).
    pub(super) fn bind(&mut self, col: &str, v: SqlValue) -> Result<&mut Self, AdapterError> {
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

    pub(super) fn finish(self) -> Stmt {
        self.stmt
    }
}
