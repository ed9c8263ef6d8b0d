//! The `group_members` table: one row per membership. Adding a member to a
//! group of any size writes one row; reading a group without its members
//! reads none.

use diesel::prelude::*;

use super::StoreError;
use super::connection::AnyConnection;
use super::prepared::prepared;
use super::schema::{group_members, resources};

/// A member as stored, with its display name joined from the member resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRow {
    /// The member's id.
    pub member_id: String,
    /// `User` or `Group`.
    pub member_type: String,
    /// The member's display name.
    pub display: Option<String>,
}

/// A group a resource belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRef {
    /// The member's id.
    pub member_id: String,
    /// The group's id.
    pub group_id: String,
    /// The group's displayName.
    pub display: Option<String>,
}

#[derive(Insertable)]
#[diesel(table_name = group_members)]
struct NewMember<'a> {
    group_id: &'a str,
    member_id: &'a str,
    member_type: &'a str,
}

/// Adds members (id, type) that are not members yet; returns how many were new.
pub fn add_members(
    conn: &mut AnyConnection,
    group_id: &str,
    members: &[(String, String)],
) -> Result<usize, StoreError> {
    let mut added = 0;
    for chunk in members.chunks(500) {
        let ids: Vec<&String> = chunk.iter().map(|(id, _)| id).collect();
        let existing: Vec<String> = group_members::table
            .filter(group_members::group_id.eq(group_id))
            .filter(group_members::member_id.eq_any(ids))
            .select(group_members::member_id)
            .load(conn)?;
        let fresh: Vec<(String, String)> = chunk
            .iter()
            .filter(|(id, _)| !existing.contains(id))
            .cloned()
            .collect();
        added += insert_members(conn, group_id, &fresh)?;
    }
    Ok(added)
}

/// Inserts members the caller knows are not members yet (it read the
/// group's membership under the group's row lock); returns how many.
pub fn insert_members(
    conn: &mut AnyConnection,
    group_id: &str,
    members: &[(String, String)],
) -> Result<usize, StoreError> {
    let rows: Vec<NewMember<'_>> = members
        .iter()
        .map(|(id, kind)| NewMember {
            group_id,
            member_id: id,
            member_type: kind,
        })
        .collect();
    // One member (what IdPs send most): a statement kept prepared; a
    // multi-row insert's text depends on its row count and PostgreSQL
    // parses and plans it every time.
    if let [one] = rows.as_slice() {
        return Ok(on_backend!(conn, c => prepared!(
            "INSERT INTO group_members (group_id, member_id, member_type) VALUES ($1, $2, $3)",
        )
        .bind::<diesel::sql_types::Text, _>(one.group_id)
        .bind::<diesel::sql_types::Text, _>(one.member_id)
        .bind::<diesel::sql_types::Text, _>(one.member_type)
        .execute(c)?));
    }
    let mut added = 0;
    for rows in rows.chunks(100) {
        added += batch_insert!(conn, group_members::table, rows);
    }
    Ok(added)
}

/// Removes the listed members; returns how many were removed.
pub fn delete_members(
    conn: &mut AnyConnection,
    group_id: &str,
    ids: &[String],
) -> Result<usize, StoreError> {
    let mut removed = 0;
    for chunk in ids.chunks(500) {
        removed += diesel::delete(
            group_members::table
                .filter(group_members::group_id.eq(group_id))
                .filter(group_members::member_id.eq_any(chunk)),
        )
        .execute(conn)?;
    }
    Ok(removed)
}

/// Every member of a group with display names, in a stable order.
pub fn find_members(
    conn: &mut AnyConnection,
    group_id: &str,
) -> Result<Vec<MemberRow>, StoreError> {
    let rows: Vec<(String, String, Option<String>)> = group_members::table
        .inner_join(resources::table.on(resources::id.eq(group_members::member_id)))
        .filter(group_members::group_id.eq(group_id))
        .order(group_members::member_id.asc())
        .select((
            group_members::member_id,
            group_members::member_type,
            resources::display,
        ))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(member_id, member_type, display)| MemberRow {
            member_id,
            member_type,
            display,
        })
        .collect())
}

/// Which of `ids` are members of the group.
pub fn find_member_ids(
    conn: &mut AnyConnection,
    group_id: &str,
    ids: &[String],
) -> Result<Vec<String>, StoreError> {
    let mut out = Vec::new();
    for chunk in ids.chunks(500) {
        out.extend(
            group_members::table
                .filter(group_members::group_id.eq(group_id))
                .filter(group_members::member_id.eq_any(chunk))
                .select(group_members::member_id)
                .load::<String>(conn)?,
        );
    }
    Ok(out)
}

/// The groups each of `member_ids` belongs to directly.
pub fn find_groups_of(
    conn: &mut AnyConnection,
    member_ids: &[String],
) -> Result<Vec<GroupRef>, StoreError> {
    let mut out = Vec::new();
    for chunk in member_ids.chunks(500) {
        let query = group_members::table
            .inner_join(resources::table.on(resources::id.eq(group_members::group_id)))
            .order((
                group_members::member_id.asc(),
                group_members::group_id.asc(),
            ))
            .select((
                group_members::member_id,
                group_members::group_id,
                resources::display,
            ));
        // One member (a user on a list page, a delivery's user) as `=`:
        // diesel caches that statement, while an `IN (…)` list is prepared
        // afresh each time. (A GET of a user reads its groups with the user:
        // `find_resource_with_groups`.)
        let rows: Vec<(String, String, Option<String>)> = match chunk {
            // On the backend's connection, keyed by type: no SQL text built.
            [one] => {
                on_backend!(conn, c => query.filter(group_members::member_id.eq(one)).load(c)?)
            }
            _ => query
                .filter(group_members::member_id.eq_any(chunk))
                .load(conn)?,
        };
        out.extend(
            rows.into_iter()
                .map(|(member_id, group_id, display)| GroupRef {
                    member_id,
                    group_id,
                    display,
                }),
        );
    }
    Ok(out)
}
