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
#[must_use = "a query runs only when executed or loaded"]
pub struct Prepared<'f, DB: Backend> {
    sql: &'static str,
    binds: Vec<Box<dyn QueryFragment<DB> + Send + 'f>>,
}

/// The statement `sql`, to be bound in the order of its parameters' numbers.
pub fn prepared<'f, DB: Backend>(sql: &'static str) -> Prepared<'f, DB> {
    Prepared {
        sql,
        binds: Vec::new(),
    }
}

impl<'f, DB: Backend> Prepared<'f, DB> {
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

impl<DB: Backend> QueryFragment<DB> for Prepared<'_, DB> {
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

impl<DB: Backend> QueryId for Prepared<'_, DB> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<DB: Backend> Query for Prepared<'_, DB> {
    type SqlType = Untyped;
}

impl<DB: Backend, Conn> RunQueryDsl<Conn> for Prepared<'_, DB> {}

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
