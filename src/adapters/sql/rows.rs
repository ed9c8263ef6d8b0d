//! The `sql` adapter's row-level steps, each run on a connection of
//! either backend: find an account's row by its key, create one (or adopt
//! the row a lost answer left), run one statement.

use std::collections::HashMap;

use diesel::result::{DatabaseErrorKind, Error as DieselError};
use serde_json::Value;

use super::Inner;
use super::errors::classify;
use super::statement::{Builder, Db, Stmt};
use crate::adapters::{AdapterError, Applied};

pub(super) fn create_in<C: Db>(
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
pub(super) fn find_in<C: Db>(
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

pub(super) fn exec_one<C: Db>(c: &mut C, stmt: &Stmt) -> Result<usize, AdapterError> {
    c.exec(stmt).map_err(|e| classify(&e))
}
