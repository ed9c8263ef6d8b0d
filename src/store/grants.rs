//! Access grants and lifecycle timers.
//!
//! `access_grants` answers "who has access to what, since when, and why":
//! one row per (app, identity, entitlement, rule), written when the grant
//! reached the app and removed when it was revoked there. A time-bound
//! grant keeps its row after expiry (`expired_at`), so the rule does not
//! grant it again while it still matches.
//!
//! `lifecycle_timers` holds, per (app, identity), the next time its access
//! changes without any change to the identity. Due timers become sync jobs;
//! claiming them deletes them in the same transaction (with `SKIP LOCKED` on
//! PostgreSQL), so each fires on exactly one node.

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};

use super::StoreError;
use super::connection::AnyConnection;
use super::schema::{access_grants, lifecycle_timers};

/// One grant.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable, serde::Serialize)]
#[diesel(table_name = access_grants)]
pub struct GrantRow {
    /// The app.
    pub app: String,
    /// The identity.
    pub resource_id: String,
    /// Its tenant.
    pub tenant: String,
    /// The entitlement, or `""` for the account itself.
    pub entitlement: String,
    /// The rule that grants it.
    pub rule: String,
    /// When the grant reached the app.
    pub granted_at: String,
    /// When it ends, if it is time-bound.
    pub expires_at: Option<String>,
    /// When its expiry was acted on.
    pub expired_at: Option<String>,
}

/// Grants of an identity in an app.
pub fn find_grants(
    conn: &mut AnyConnection,
    app: &str,
    resource_id: &str,
) -> Result<Vec<GrantRow>, StoreError> {
    Ok(on_backend!(conn, c => access_grants::table
        .filter(access_grants::app.eq(app))
        .filter(access_grants::resource_id.eq(resource_id))
        .select(GrantRow::as_select())
        .order((access_grants::entitlement, access_grants::rule))
        .load(c)?))
}

/// Grants of many identities in an app (a claimed batch of delivery jobs),
/// ordered by identity and then as [`find_grants`] orders them.
pub fn find_grants_of(
    conn: &mut AnyConnection,
    app: &str,
    resource_ids: &[String],
) -> Result<Vec<GrantRow>, StoreError> {
    let mut out = Vec::new();
    for chunk in resource_ids.chunks(500) {
        out.extend(
            access_grants::table
                .filter(access_grants::app.eq(app))
                .filter(access_grants::resource_id.eq_any(chunk))
                .select(GrantRow::as_select())
                .order((
                    access_grants::resource_id,
                    access_grants::entitlement,
                    access_grants::rule,
                ))
                .load(conn)?,
        );
    }
    Ok(out)
}

/// Records a new grant.
pub fn insert_grant(conn: &mut AnyConnection, g: &GrantRow) -> Result<(), StoreError> {
    diesel::insert_into(access_grants::table)
        .values(g)
        .execute(conn)?;
    Ok(())
}

/// Removes a grant (revoked in the app).
pub fn delete_grant(conn: &mut AnyConnection, g: &GrantRow) -> Result<(), StoreError> {
    diesel::delete(
        access_grants::table
            .filter(access_grants::app.eq(&g.app))
            .filter(access_grants::resource_id.eq(&g.resource_id))
            .filter(access_grants::entitlement.eq(&g.entitlement))
            .filter(access_grants::rule.eq(&g.rule)),
    )
    .execute(conn)?;
    Ok(())
}

/// Marks a grant's expiry as acted on.
pub fn mark_expired(conn: &mut AnyConnection, g: &GrantRow, at: &str) -> Result<(), StoreError> {
    diesel::update(
        access_grants::table
            .filter(access_grants::app.eq(&g.app))
            .filter(access_grants::resource_id.eq(&g.resource_id))
            .filter(access_grants::entitlement.eq(&g.entitlement))
            .filter(access_grants::rule.eq(&g.rule)),
    )
    .set(access_grants::expired_at.eq(Some(at)))
    .execute(conn)?;
    Ok(())
}

/// Grants in (app, identity, entitlement, rule) order after `after`, for
/// the access report; only live ones (not expired).
pub fn list_grants(
    conn: &mut AnyConnection,
    tenant: Option<&str>,
    after: Option<&(String, String, String, String)>,
    limit: i64,
) -> Result<Vec<GrantRow>, StoreError> {
    let mut q = access_grants::table
        .filter(access_grants::expired_at.is_null())
        .select(GrantRow::as_select())
        .order((
            access_grants::app,
            access_grants::resource_id,
            access_grants::entitlement,
            access_grants::rule,
        ))
        .limit(limit)
        .into_boxed();
    if let Some(t) = tenant {
        q = q.filter(access_grants::tenant.eq(t.to_string()));
    }
    if let Some((app, id, ent, rule)) = after {
        let (app, id, ent, rule) = (app.clone(), id.clone(), ent.clone(), rule.clone());
        q = q.filter(
            access_grants::app
                .gt(app.clone())
                .or(access_grants::app.eq(app.clone()).and(
                    access_grants::resource_id
                        .gt(id.clone())
                        .or(access_grants::resource_id.eq(id.clone()).and(
                            access_grants::entitlement.gt(ent.clone()).or(
                                access_grants::entitlement
                                    .eq(ent)
                                    .and(access_grants::rule.gt(rule)),
                            ),
                        )),
                )),
        );
    }
    Ok(q.load(conn)?)
}

/// Sets (or clears, with `None`) the identity's next timer in an app.
pub fn set_timer(
    conn: &mut AnyConnection,
    app: &str,
    resource_id: &str,
    tenant: &str,
    due_at: Option<&str>,
) -> Result<(), StoreError> {
    let target = lifecycle_timers::table
        .filter(lifecycle_timers::app.eq(app))
        .filter(lifecycle_timers::resource_id.eq(resource_id));
    match due_at {
        None => {
            on_backend!(conn, c => diesel::delete(target).execute(c)?);
        }
        Some(due) => {
            let n = diesel::update(target)
                .set(lifecycle_timers::due_at.eq(due))
                .execute(conn)?;
            if n == 0 {
                diesel::insert_into(lifecycle_timers::table)
                    .values((
                        lifecycle_timers::app.eq(app),
                        lifecycle_timers::resource_id.eq(resource_id),
                        lifecycle_timers::tenant.eq(tenant),
                        lifecycle_timers::due_at.eq(due),
                    ))
                    .execute(conn)?;
            }
        }
    }
    Ok(())
}

/// A due timer.
#[derive(Debug, Clone, QueryableByName)]
#[diesel(table_name = lifecycle_timers)]
pub struct Timer {
    /// The app.
    pub app: String,
    /// The identity.
    pub resource_id: String,
    /// Its tenant.
    pub tenant: String,
}

/// Takes up to `limit` due timers (deleting them); the caller enqueues
/// their jobs in the same transaction.
pub fn take_due_timers(
    conn: &mut AnyConnection,
    now: &str,
    limit: i64,
) -> Result<Vec<Timer>, StoreError> {
    let postgres = matches!(conn, AnyConnection::Postgresql(_));
    let sql = format!(
        "DELETE FROM lifecycle_timers WHERE (app, resource_id) IN ( \
           SELECT app, resource_id FROM lifecycle_timers WHERE due_at <= $1 \
           ORDER BY due_at LIMIT $2{}) \
         RETURNING app, resource_id, tenant",
        if postgres {
            " FOR UPDATE SKIP LOCKED"
        } else {
            ""
        }
    );
    Ok(match conn {
        AnyConnection::Sqlite(c) => diesel::sql_query(&sql)
            .bind::<Text, _>(now)
            .bind::<BigInt, _>(limit)
            .load::<Timer>(c)?,
        AnyConnection::Postgresql(c) => diesel::sql_query(&sql)
            .bind::<Text, _>(now)
            .bind::<BigInt, _>(limit)
            .load::<Timer>(c)?,
    })
}

/// The earliest timer, if any (for sleeping until it).
pub fn next_timer(conn: &mut AnyConnection) -> Result<Option<String>, StoreError> {
    Ok(lifecycle_timers::table
        .select(diesel::dsl::min(lifecycle_timers::due_at))
        .first(conn)?)
}
