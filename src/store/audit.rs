//! The `audit_events` table: append-only, one row per operation, written in
//! the same transaction as the change it records.

use diesel::prelude::*;

use super::StoreError;
use super::connection::AnyConnection;
use super::schema::audit_events;

/// One audit event. Never carries a secret: callers pass ids and outcomes only.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = audit_events)]
pub struct AuditEvent {
    /// RFC 3339 UTC time.
    pub at: String,
    /// Tenant acted on.
    pub tenant: Option<String>,
    /// Who acted: `tenant/token-id`, `admin`, `system`, …
    pub actor: String,
    /// What was done, e.g. `scim.create`.
    pub action: String,
    /// `User` or `Group`.
    pub resource_type: Option<String>,
    /// The resource's id.
    pub resource_id: Option<String>,
    /// `success` or a failure description.
    pub outcome: String,
    /// Extra JSON detail (no secrets).
    pub detail: Option<String>,
    /// The downstream app an adapter operation or admin action concerns.
    pub app: Option<String>,
}

/// Appends an audit event.
pub fn insert_audit(conn: &mut AnyConnection, event: &AuditEvent) -> Result<(), StoreError> {
    diesel::insert_into(audit_events::table)
        .values(event)
        .execute(conn)?;
    Ok(())
}

/// Number of audit events about a resource (all when `resource_id` is `None`).
pub fn count_audit_events(
    conn: &mut AnyConnection,
    resource_id: Option<&str>,
) -> Result<i64, StoreError> {
    let mut q = audit_events::table.into_boxed();
    if let Some(id) = resource_id {
        q = q.filter(audit_events::resource_id.eq(id));
    }
    Ok(q.count().get_result(conn)?)
}
