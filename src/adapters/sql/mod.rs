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
//!
//! Here: the adapter and its calls. `statement` builds and runs the SQL
//! text, `rows` holds the row-level steps, `errors` says what a database
//! error means for delivery.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use diesel::prelude::*;
use diesel::r2d2::{ConnectionManager, Pool, PooledConnection};
use diesel::sql_types::Text;
use diesel::{PgConnection, SqliteConnection};
use serde_json::{Map, Value};

use super::http::read_secret;
use super::paths::{set_at, value_at};
use super::{Adapter, AdapterError, Applied, ErrorKind, OpContext, RemoteAccount};
use crate::config::{AppSettings, SqlAdapterSettings, SqlDisable};
use crate::domain::Kind;
use errors::{classify, groups_unsupported, pool_error};
use rows::{create_in, exec_one, find_in};
use statement::{Builder, Conn, Db, Options, SqlValue, Stmt, TypeRow, column, quote};
pub use statement::{is_identifier, quote_table};

mod errors;
mod rows;
mod statement;
#[cfg(test)]
mod tests;

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

fn is_active(v: &Value) -> bool {
    v.get("active").and_then(Value::as_bool).unwrap_or(true)
}

fn key_of(ctx: &OpContext, account: &Value) -> String {
    account
        .get("externalId")
        .and_then(Value::as_str)
        .map_or_else(|| ctx.identity.clone(), str::to_string)
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
