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
    sql: &'f str,
    /// Whether diesel may keep the statement prepared: always for the
    /// `&'static str` texts of [`prepared`] and [`prepared!`], never for
    /// [`uncached`] ones (text built at run time, which could grow the
    /// cache without bound).
    cached: bool,
    /// The parameters of `sql` in text order, when found at compile time
    /// ([`prepared!`]); otherwise `sql` is searched on every execution.
    params: Option<&'static [Param]>,
    binds: Vec<Box<dyn QueryFragment<DB> + Send + 'f>>,
    key: PhantomData<fn() -> (K, ST)>,
}

/// One occurrence of a parameter in a statement's text: bytes
/// `start..end` are `$n`. `n` is 0 for a `$` without a number, which no
/// bind can fill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Param {
    start: usize,
    end: usize,
    n: usize,
}

/// The first parameter in `sql` at or after byte `from`.
const fn next_param(sql: &[u8], from: usize) -> Option<Param> {
    let mut start = from;
    while start < sql.len() && sql[start] != b'$' {
        start += 1;
    }
    if start == sql.len() {
        return None;
    }
    let mut end = start + 1;
    let mut n = 0;
    while end < sql.len() && sql[end].is_ascii_digit() {
        n = n * 10 + (sql[end] - b'0') as usize;
        end += 1;
    }
    Some(Param { start, end, n })
}

/// How many parameters `sql` holds (occurrences, not distinct numbers).
pub const fn param_count(sql: &str) -> usize {
    let mut count = 0;
    let mut from = 0;
    while let Some(p) = next_param(sql.as_bytes(), from) {
        count += 1;
        from = p.end;
    }
    count
}

/// The `N` parameters of `sql` in text order; evaluated at compile time by
/// [`prepared!`], where a `$` without a number fails the build.
pub const fn params<const N: usize>(sql: &str) -> [Param; N] {
    let mut out = [Param {
        start: 0,
        end: 0,
        n: 0,
    }; N];
    let mut from = 0;
    let mut i = 0;
    while let Some(p) = next_param(sql.as_bytes(), from) {
        assert!(
            p.n > 0,
            "a `$` in a prepared statement is not followed by a number"
        );
        out[i] = p;
        i += 1;
        from = p.end;
    }
    out
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

/// The statement `sql`, built at run time, as [`prepared`] but prepared
/// anew on every execution and never kept in diesel's statement cache.
pub fn uncached<'f, DB: Backend>(sql: &'f str) -> Prepared<'f, DB> {
    Prepared::new(sql, false)
}

/// The constant statement `$sql` as [`prepared`], cached under a type of
/// this call site's own, so that a call neither builds nor hashes its text,
/// and with its parameters found at compile time, so that binding a call's
/// values does not search the text either (diesel walks a query twice per
/// execution). `$sql` must be a constant expression (a literal, `concat!`,
/// a `const`).
macro_rules! prepared_const {
    ($sql:expr $(,)?) => {{
        const SQL: &str = $sql;
        const N: usize = $crate::store::prepared::param_count(SQL);
        static PARAMS: [$crate::store::prepared::Param; N] =
            $crate::store::prepared::params::<N>(SQL);
        enum Site {}
        impl $crate::store::prepared::CacheKey for Site {
            const BY_TYPE: bool = true;
        }
        $crate::store::prepared::Prepared::<_, Site>::keyed(SQL).with_params(&PARAMS)
    }};
}
pub(crate) use prepared_const as prepared;

impl<'f, DB: Backend, K: CacheKey> Prepared<'f, DB, K> {
    /// The statement `sql` under cache key `K`; see [`prepared!`].
    pub fn keyed(sql: &'static str) -> Self {
        Prepared::new(sql, true)
    }

    fn new(sql: &'f str, cached: bool) -> Self {
        Prepared {
            sql,
            cached,
            params: None,
            binds: Vec::new(),
            key: PhantomData,
        }
    }

    /// The same statement with its parameters already found: `params` must
    /// be what [`params`] finds in its text.
    pub fn with_params(self, params: &'static [Param]) -> Self {
        debug_assert_eq!(params.len(), param_count(self.sql));
        Prepared {
            params: Some(params),
            ..self
        }
    }

    /// The same statement, its rows of SQL types `ST` in column order.
    pub fn returning<ST>(self) -> Prepared<'f, DB, K, ST> {
        Prepared {
            sql: self.sql,
            cached: self.cached,
            params: self.params,
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
    /// Marks itself unsafe to cache (what `sql_query` does) only when
    /// [`uncached`]: a `&'static str` text keeps the cache bounded by the
    /// statements compiled into the binary (or admitted by the caller).
    fn walk_ast<'b>(&'b self, mut pass: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        if !self.cached {
            pass.unsafe_to_cache_prepared();
        }
        let mut from = 0;
        for i in 0.. {
            let param = match self.params {
                Some(list) => list.get(i).copied(),
                None => next_param(self.sql.as_bytes(), from),
            };
            let Some(param) = param else { break };
            pass.push_sql(&self.sql[from..param.start]);
            let bind = param
                .n
                .checked_sub(1)
                .and_then(|i| self.binds.get(i))
                .ok_or_else(|| unbound(self.sql))?;
            bind.walk_ast(pass.reborrow())?;
            from = param.end;
        }
        pass.push_sql(&self.sql[from..]);
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

    #[test]
    fn parameters_found_at_compile_time_bind_as_those_found_at_run_time() -> anyhow::Result<()> {
        const STATEMENT: &str = "SELECT $2 - $1 + $2 + $10 AS n";
        assert_eq!(
            super::params::<4>(STATEMENT).map(|p| (&STATEMENT[p.start..p.end], p.n)),
            [("$2", 2), ("$1", 1), ("$2", 2), ("$10", 10)]
        );
        let mut c = SqliteConnection::establish(":memory:")?;
        let mut fixed = crate::store::prepared::prepared!(STATEMENT);
        let mut searched = prepared(STATEMENT);
        for v in 1..=10i64 {
            fixed = fixed.bind::<BigInt, _>(v);
            searched = searched.bind::<BigInt, _>(v);
        }
        let (fixed, searched): (Vec<Row>, Vec<Row>) = (fixed.load(&mut c)?, searched.load(&mut c)?);
        assert_eq!(
            fixed.iter().map(|r| r.n).collect::<Vec<_>>(),
            [2 - 1 + 2 + 10]
        );
        assert_eq!(searched.iter().map(|r| r.n).collect::<Vec<_>>(), [13]);
        Ok(())
    }
}
