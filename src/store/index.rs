//! Side tables that make look-ups cheap: `attr_index` (attribute path →
//! normalised value → resource) and `unique_keys` (server-enforced
//! uniqueness, case-folded). Both are rewritten in the resource's write
//! transaction, so they never disagree with the document.

use diesel::prelude::*;
use diesel::sql_types::Text;

use super::StoreError;
use super::connection::AnyConnection;
use super::prepared::prepared;
use super::schema::{attr_index, unique_keys};

/// One indexed (attribute, value) pair of a resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    /// Lower-cased attribute path, e.g. `username`, `emails.value`.
    pub attr: String,
    /// Normalised value (lower-cased unless the attribute is caseExact).
    pub value: String,
}

/// Replaces a resource's index rows.
pub fn replace_index(
    conn: &mut AnyConnection,
    tenant: &str,
    resource_type: &str,
    resource_id: &str,
    entries: &[IndexEntry],
) -> Result<(), StoreError> {
    // Each statement runs on the backend's own connection, where diesel
    // keys its cache by the query's type and builds no SQL text.
    let mut old: Vec<(String, String)> = on_backend!(conn, c => attr_index::table
        .filter(attr_index::resource_id.eq(resource_id))
        .select((attr_index::attr, attr_index::value))
        .load(c)?);
    if same_entries(&mut old, entries) {
        return Ok(()); // a change to attributes that are not indexed
    }
    on_backend!(conn, c => diesel::delete(
        attr_index::table.filter(attr_index::resource_id.eq(resource_id))
    )
    .execute(c)?);
    insert_index(conn, tenant, resource_type, resource_id, entries)
}

/// Writes the index rows of a resource that has none yet (one just
/// created): no read of old rows, no delete, which on PostgreSQL are two
/// round trips each.
pub fn insert_index(
    conn: &mut AnyConnection,
    tenant: &str,
    resource_type: &str,
    resource_id: &str,
    entries: &[IndexEntry],
) -> Result<(), StoreError> {
    // One prepared single-row insert per entry: a multi-row insert has a
    // different text for every row count, and is prepared anew each time.
    for e in entries {
        on_backend!(conn, c => prepared!(
            "INSERT INTO attr_index (tenant, resource_type, attr, value, resource_id) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind::<Text, _>(tenant)
        .bind::<Text, _>(resource_type)
        .bind::<Text, _>(&e.attr)
        .bind::<Text, _>(&e.value)
        .bind::<Text, _>(resource_id)
        .execute(c)?);
    }
    Ok(())
}

/// Whether stored `(attr, value)` rows are exactly `entries`, counting
/// repeats: then a replace has nothing to write.
fn same_entries(old: &mut [(String, String)], entries: &[IndexEntry]) -> bool {
    if old.len() != entries.len() {
        return false;
    }
    let mut new: Vec<(&str, &str)> = entries
        .iter()
        .map(|e| (e.attr.as_str(), e.value.as_str()))
        .collect();
    old.sort_unstable();
    new.sort_unstable();
    old.iter()
        .zip(&new)
        .all(|((a, v), (na, nv))| a == na && v == nv)
}

/// Replaces a resource's unique keys; `Conflict` names the attribute taken.
pub fn replace_unique_keys(
    conn: &mut AnyConnection,
    tenant: &str,
    resource_type: &str,
    resource_id: &str,
    keys: &[IndexEntry],
) -> Result<(), StoreError> {
    let mut old: Vec<(String, String)> = on_backend!(conn, c => unique_keys::table
        .filter(unique_keys::resource_id.eq(resource_id))
        .select((unique_keys::attr, unique_keys::value))
        .load(c)?);
    if same_entries(&mut old, keys) {
        return Ok(());
    }
    on_backend!(conn, c => diesel::delete(
        unique_keys::table.filter(unique_keys::resource_id.eq(resource_id))
    )
    .execute(c)?);
    insert_unique_keys(conn, tenant, resource_type, resource_id, keys)
}

/// Writes the unique keys of a resource that has none yet (one just
/// created); `Conflict` names the attribute another resource holds.
pub fn insert_unique_keys(
    conn: &mut AnyConnection,
    tenant: &str,
    resource_type: &str,
    resource_id: &str,
    keys: &[IndexEntry],
) -> Result<(), StoreError> {
    let taken = |key: &IndexEntry| {
        StoreError::Conflict(format!(
            "Another {resource_type} already has this {}.",
            key.attr
        ))
    };
    for key in keys {
        if find_by_unique_key(conn, tenant, resource_type, key)?.is_some() {
            return Err(taken(key));
        }
        // Prepared once per connection (diesel's insert DSL is parsed and
        // planned by PostgreSQL on every call).
        on_backend!(conn, c => prepared!(
            "INSERT INTO unique_keys (tenant, resource_type, attr, value, resource_id) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind::<Text, _>(tenant)
        .bind::<Text, _>(resource_type)
        .bind::<Text, _>(&key.attr)
        .bind::<Text, _>(&key.value)
        .bind::<Text, _>(resource_id)
        .execute(c))
        .map_err(|e| match StoreError::from(e) {
            StoreError::Conflict(_) => taken(key),
            other => other,
        })?;
    }
    Ok(())
}

/// The resource holding a unique key, if any: one primary-key probe.
pub fn find_by_unique_key(
    conn: &mut AnyConnection,
    tenant: &str,
    resource_type: &str,
    key: &IndexEntry,
) -> Result<Option<String>, StoreError> {
    if key.value.contains('\0') {
        return Ok(None); // no key has one; PostgreSQL would refuse the text
    }
    Ok(on_backend!(conn, c => unique_keys::table
        .filter(unique_keys::tenant.eq(tenant))
        .filter(unique_keys::resource_type.eq(resource_type))
        .filter(unique_keys::attr.eq(&key.attr))
        .filter(unique_keys::value.eq(&key.value))
        .select(unique_keys::resource_id)
        .first(c)
        .optional()?))
}
