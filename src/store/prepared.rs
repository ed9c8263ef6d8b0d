//! Hand-written SQL that diesel keeps prepared.
//!
//! diesel never caches a [`diesel::sql_query`]: its text may be built at run
//! time, and a cache keyed by arbitrary text would grow without bound. So
//! every call prepares the statement again, which on SQLite costs more than
//! running a one-row insert. (Wrapping a `sql_query` does not help: diesel
//! asks every layer of a query whether it may be cached, and a
//! `sql_query` inside always says no.) The hot statements on the write path (the
//! audit chain append, the job upsert) are fixed text, so [`prepared`]
//! takes only a `&'static str`: the cache then holds at most one entry per
//! statement in the binary, and each connection prepares each one once.
//!
//! diesel finds a statement in its cache by the statement's text unless the
//! query's type names it. Building that text (and hashing it) cost a GET by
//! id about a twentieth of its time, so a statement whose text is a
//! constant is written [`prepared!`]: each call site gets a type of its own
//! that keys the cache, and the text is built only when first prepared.
//! [`prepared`] keys by text, for call sites that pick one of several fixed
//! statements at run time.

use std::marker::PhantomData;

use diesel::backend::Backend;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::result::Error as DieselError;
use diesel::serialize::ToSql;
use diesel::sql_types::{HasSqlType, Untyped};
use diesel::{QueryResult, RunQueryDsl};

/// A raw statement of fixed text with its bind values; run it with
/// `execute` or `load` like any diesel query.
///
/// The text names its parameters `$1`, `$2`, … (a number may appear more
/// than once); `$n` is the n-th value bound. Each occurrence becomes the
/// backend's own placeholder, so SQLite and PostgreSQL read it alike.
///
/// Rows load by column name ([`diesel::QueryableByName`]) unless
/// [`Prepared::returning`] gives their SQL types: then they load by
/// position ([`diesel::Queryable`]), which spares a search of the column
/// names for every field of every row.
#[must_use = "a query runs only when executed or loaded"]
pub struct Prepared<'f, DB: Backend, K = ByText, ST = Untyped> {
    sql: &'static str,
    binds: Vec<Box<dyn QueryFragment<DB> + Send + 'f>>,
    key: PhantomData<fn() -> (K, ST)>,
}

/// How diesel's statement cache finds a [`Prepared`] statement.
pub trait CacheKey: 'static {
    /// Whether the type itself is the key (else the statement's text is).
    const BY_TYPE: bool;
}

/// The statement's text is its cache key.
pub enum ByText {}

impl CacheKey for ByText {
    const BY_TYPE: bool = false;
}

/// The statement `sql`, to be bound in the order of its parameters' numbers;
/// cached by its text.
pub fn prepared<'f, DB: Backend>(sql: &'static str) -> Prepared<'f, DB> {
    Prepared::keyed(sql)
}

/// The constant statement `$sql` as [`prepared`], cached under a type of
/// this call site's own, so that a call neither builds nor hashes its text.
/// `$sql` must be a constant expression (a literal, `concat!`, a `const`).
macro_rules! prepared_const {
    ($sql:expr $(,)?) => {{
        const SQL: &str = $sql;
        enum Site {}
        impl $crate::store::prepared::CacheKey for Site {
            const BY_TYPE: bool = true;
        }
        $crate::store::prepared::Prepared::<_, Site>::keyed(SQL)
    }};
}
pub(crate) use prepared_const as prepared;

impl<'f, DB: Backend, K: CacheKey> Prepared<'f, DB, K> {
    /// The statement `sql` under cache key `K`; see [`prepared!`].
    pub fn keyed(sql: &'static str) -> Self {
        Prepared {
            sql,
            binds: Vec::new(),
            key: PhantomData,
        }
    }

    /// The same statement, its rows of SQL types `ST` in column order.
    pub fn returning<ST>(self) -> Prepared<'f, DB, K, ST> {
        Prepared {
            sql: self.sql,
            binds: self.binds,
            key: PhantomData,
        }
    }
}

impl<'f, DB: Backend, K, R> Prepared<'f, DB, K, R> {
    /// Binds the next parameter.
    pub fn bind<ST, V>(mut self, value: V) -> Self
    where
        DB: HasSqlType<ST>,
        V: ToSql<ST, DB> + Send + 'f,
        ST: 'f,
    {
        self.binds.push(Box::new(Bound {
            value,
            sql_type: PhantomData::<fn() -> ST>,
        }));
        self
    }
}

/// One bound value.
struct Bound<ST, V> {
    value: V,
    sql_type: PhantomData<fn() -> ST>,
}

impl<ST, V, DB> QueryFragment<DB> for Bound<ST, V>
where
    DB: Backend + HasSqlType<ST>,
    V: ToSql<ST, DB>,
{
    fn walk_ast<'b>(&'b self, mut pass: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        pass.push_bind_param::<ST, V>(&self.value)
    }
}

impl<DB: Backend, K, ST> QueryFragment<DB> for Prepared<'_, DB, K, ST> {
    /// Never marks itself unsafe to cache (what `sql_query` does): the text
    /// is a `&'static str`, so the cache stays bounded by the statements
    /// compiled into the binary.
    fn walk_ast<'b>(&'b self, mut pass: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        let mut rest = self.sql;
        while let Some(at) = rest.find('$') {
            pass.push_sql(&rest[..at]);
            let digits = rest[at + 1..]
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len() - at - 1);
            let n: usize = rest[at + 1..at + 1 + digits]
                .parse()
                .map_err(|_| unbound(self.sql))?;
            let bind = n
                .checked_sub(1)
                .and_then(|i| self.binds.get(i))
                .ok_or_else(|| unbound(self.sql))?;
            bind.walk_ast(pass.reborrow())?;
            rest = &rest[at + 1 + digits..];
        }
        pass.push_sql(rest);
        Ok(())
    }
}

fn unbound(sql: &str) -> DieselError {
    DieselError::QueryBuilderError(format!("a parameter of `{sql}` is not bound").into())
}

impl<DB: Backend, K: CacheKey, ST> QueryId for Prepared<'_, DB, K, ST> {
    type QueryId = K;
    const HAS_STATIC_QUERY_ID: bool = K::BY_TYPE;
}

impl<DB: Backend, K, ST> Query for Prepared<'_, DB, K, ST> {
    type SqlType = ST;
}

impl<DB: Backend, K, ST, Conn> RunQueryDsl<Conn> for Prepared<'_, DB, K, ST> {}

#[cfg(test)]
mod tests {
    use diesel::connection::{Connection, Instrumentation, InstrumentationEvent};
    use diesel::sql_types::{BigInt, Text};
    use diesel::{QueryableByName, RunQueryDsl, SqliteConnection};
    use std::sync::{Arc, Mutex};

    use super::prepared;

    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }

    /// Counts the statements the connection prepares.
    struct Prepares(Arc<Mutex<usize>>);

    impl Instrumentation for Prepares {
        fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
            if let InstrumentationEvent::CacheQuery { .. } = event
                && let Ok(mut n) = self.0.lock()
            {
                *n += 1;
            }
        }
    }

    #[test]
    fn a_fixed_statement_is_prepared_once_and_still_binds_each_call() -> anyhow::Result<()> {
        let mut c = SqliteConnection::establish(":memory:")?;
        let prepares = Arc::new(Mutex::new(0));
        c.set_instrumentation(Prepares(prepares.clone()));
        diesel::sql_query("CREATE TABLE t (k TEXT PRIMARY KEY, n INTEGER)").execute(&mut c)?;
        for (i, k) in ["a", "b", "c"].iter().enumerate() {
            prepared("INSERT INTO t (k, n) VALUES ($1, $2)")
                .bind::<Text, _>(*k)
                .bind::<BigInt, _>(i as i64 * 10)
                .execute(&mut c)?;
        }
        let rows: Vec<Row> = prepared("SELECT n FROM t WHERE k = $1")
            .bind::<Text, _>("c")
            .load(&mut c)?;
        assert_eq!(rows.iter().map(|r| r.n).collect::<Vec<_>>(), [20]);
        let rows: Vec<Row> = prepared("SELECT n FROM t WHERE k = $1")
            .bind::<Text, _>("b")
            .load(&mut c)?;
        assert_eq!(rows.iter().map(|r| r.n).collect::<Vec<_>>(), [10]);
        // One cache entry for the INSERT, one for the SELECT.
        assert_eq!(*prepares.lock().map_err(|e| anyhow::anyhow!("{e}"))?, 2);
        Ok(())
    }

    #[test]
    fn a_constant_statement_is_keyed_by_its_call_site() -> anyhow::Result<()> {
        let mut c = SqliteConnection::establish(":memory:")?;
        diesel::sql_query("CREATE TABLE t (k TEXT PRIMARY KEY, n INTEGER)").execute(&mut c)?;
        for (k, n) in [("a", 1i64), ("b", 2)] {
            prepared!("INSERT INTO t (k, n) VALUES ($1, $2)")
                .bind::<Text, _>(k)
                .bind::<BigInt, _>(n)
                .execute(&mut c)?;
        }
        let prepares = Arc::new(Mutex::new(0));
        c.set_instrumentation(Prepares(prepares.clone()));
        let mut seen = Vec::new();
        for k in ["b", "a", "b"] {
            let rows: Vec<Row> = prepared!("SELECT n FROM t WHERE k = $1")
                .bind::<Text, _>(k)
                .load(&mut c)?;
            seen.extend(rows.iter().map(|r| r.n));
        }
        assert_eq!(seen, [2, 1, 2], "each call runs with its own binds");
        assert_eq!(*prepares.lock().map_err(|e| anyhow::anyhow!("{e}"))?, 1);
        // The same text at another call site is another cache entry: the
        // site, not the text, is the key.
        let rows: Vec<Row> = prepared!("SELECT n FROM t WHERE k = $1")
            .bind::<Text, _>("a")
            .load(&mut c)?;
        assert_eq!(rows.iter().map(|r| r.n).collect::<Vec<_>>(), [1]);
        assert_eq!(*prepares.lock().map_err(|e| anyhow::anyhow!("{e}"))?, 2);
        Ok(())
    }

    #[test]
    fn parameters_are_numbered_may_repeat_and_must_be_bound() -> anyhow::Result<()> {
        let mut c = SqliteConnection::establish(":memory:")?;
        let rows: Vec<Row> = prepared("SELECT $2 - $1 + $2 AS n")
            .bind::<BigInt, _>(1i64)
            .bind::<BigInt, _>(10i64)
            .load(&mut c)?;
        assert_eq!(rows.iter().map(|r| r.n).collect::<Vec<_>>(), [19]);
        for sql in ["SELECT $2 AS n", "SELECT $0 AS n", "SELECT $ AS n"] {
            let err = prepared(sql).bind::<BigInt, _>(1i64).load::<Row>(&mut c);
            assert!(err.is_err(), "{sql}");
        }
        Ok(())
    }
}
