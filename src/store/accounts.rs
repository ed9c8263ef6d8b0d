//! The `app_accounts` table: for each (app, identity), the account as last
//! applied to the app and the app's own id for it. Convergence diffs the
//! desired account against this row, so only what changed is sent.

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Text};

use super::StoreError;
use super::connection::AnyConnection;
use super::prepared::prepared;
use super::schema::{app_accounts, audit_events};

/// Account statuses.
pub mod status {
    /// Provisioned and enabled.
    pub const ACTIVE: &str = "active";
    /// Provisioned and disabled (`active` false).
    pub const DISABLED: &str = "disabled";
}

/// One applied account.
#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset, serde::Serialize)]
#[diesel(table_name = app_accounts)]
pub struct AccountRow {
    /// The app.
    pub app: String,
    /// The identity.
    pub resource_id: String,
    /// The identity's tenant.
    pub tenant: String,
    /// `User` or `Group`.
    pub resource_type: String,
    /// The app's id for the account, when it has one.
    pub remote_id: Option<String>,
    /// `active` or `disabled`.
    pub status: String,
    /// The account as last applied (JSON).
    pub applied: String,
    /// Number of operations applied to this account.
    pub revision: i64,
    /// When the account was created in the app.
    pub created_at: String,
    /// When it last changed.
    pub updated_at: String,
    /// Since when it has been disabled (start of a leaver's grace period).
    pub disabled_at: Option<String>,
}

/// The applied account of an identity in an app.
pub fn find_account(
    conn: &mut AnyConnection,
    app: &str,
    resource_id: &str,
) -> Result<Option<AccountRow>, StoreError> {
    Ok(on_backend!(conn, c => app_accounts::table
        .filter(app_accounts::app.eq(app))
        .filter(app_accounts::resource_id.eq(resource_id))
        .select(AccountRow::as_select())
        .first(c)
        .optional()?))
}

/// The applied accounts of many identities in an app (a claimed batch of
/// delivery jobs), in no particular order.
pub fn find_accounts(
    conn: &mut AnyConnection,
    app: &str,
    resource_ids: &[String],
) -> Result<Vec<AccountRow>, StoreError> {
    let mut out = Vec::with_capacity(resource_ids.len());
    for chunk in resource_ids.chunks(500) {
        out.extend(
            app_accounts::table
                .filter(app_accounts::app.eq(app))
                .filter(app_accounts::resource_id.eq_any(chunk))
                .select(AccountRow::as_select())
                .load(conn)?,
        );
    }
    Ok(out)
}

/// Remote ids in an app of the given identities: `(resource_id, remote_id)`.
pub fn find_remote_ids(
    conn: &mut AnyConnection,
    app: &str,
    ids: &[String],
) -> Result<Vec<(String, String)>, StoreError> {
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(500) {
        let rows: Vec<(String, Option<String>)> = app_accounts::table
            .filter(app_accounts::app.eq(app))
            .filter(app_accounts::resource_id.eq_any(chunk))
            .select((app_accounts::resource_id, app_accounts::remote_id))
            .load(conn)?;
        out.extend(rows.into_iter().filter_map(|(id, r)| Some((id, r?))));
    }
    Ok(out)
}

/// The applied accounts of an app that have one of these remote ids
/// (reconciliation matches a listing page to identities with it).
pub fn find_accounts_by_remote_ids(
    conn: &mut AnyConnection,
    app: &str,
    remote_ids: &[String],
) -> Result<Vec<AccountRow>, StoreError> {
    let mut out = Vec::with_capacity(remote_ids.len());
    for chunk in remote_ids.chunks(500) {
        out.extend(
            app_accounts::table
                .filter(app_accounts::app.eq(app))
                .filter(app_accounts::remote_id.eq_any(chunk))
                .select(AccountRow::as_select())
                .load(conn)?,
        );
    }
    Ok(out)
}

/// Writes an account (insert or replace): one prepared upsert, every
/// column written (an active account's `disabled_at` becomes NULL).
pub fn save_account(conn: &mut AnyConnection, row: &AccountRow) -> Result<(), StoreError> {
    on_backend!(conn, c => prepared!(
        "INSERT INTO app_accounts (app, resource_id, tenant, resource_type, remote_id, status, \
           applied, revision, created_at, updated_at, disabled_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
         ON CONFLICT (app, resource_id) DO UPDATE SET tenant = excluded.tenant, \
           resource_type = excluded.resource_type, remote_id = excluded.remote_id, \
           status = excluded.status, applied = excluded.applied, revision = excluded.revision, \
           created_at = excluded.created_at, updated_at = excluded.updated_at, \
           disabled_at = excluded.disabled_at",
    )
    .bind::<Text, _>(&row.app)
    .bind::<Text, _>(&row.resource_id)
    .bind::<Text, _>(&row.tenant)
    .bind::<Text, _>(&row.resource_type)
    .bind::<Nullable<Text>, _>(row.remote_id.as_deref())
    .bind::<Text, _>(&row.status)
    .bind::<Text, _>(&row.applied)
    .bind::<BigInt, _>(row.revision)
    .bind::<Text, _>(&row.created_at)
    .bind::<Text, _>(&row.updated_at)
    .bind::<Nullable<Text>, _>(row.disabled_at.as_deref())
    .execute(c)?);
    Ok(())
}

/// Forgets an account (after it was deleted in the app, or vanished there).
pub fn delete_account(
    conn: &mut AnyConnection,
    app: &str,
    resource_id: &str,
) -> Result<(), StoreError> {
    diesel::delete(
        app_accounts::table
            .filter(app_accounts::app.eq(app))
            .filter(app_accounts::resource_id.eq(resource_id)),
    )
    .execute(conn)?;
    Ok(())
}

/// Accounts of an app in identity-id order after `after`.
pub fn list_accounts(
    conn: &mut AnyConnection,
    app: &str,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<AccountRow>, StoreError> {
    let mut q = app_accounts::table
        .filter(app_accounts::app.eq(app))
        .select(AccountRow::as_select())
        .order(app_accounts::resource_id)
        .limit(limit)
        .into_boxed();
    if let Some(a) = after {
        q = q.filter(app_accounts::resource_id.gt(a.to_string()));
    }
    Ok(q.load(conn)?)
}

/// Number of accounts an app has (active or disabled).
pub fn count_accounts(conn: &mut AnyConnection, app: &str) -> Result<i64, StoreError> {
    Ok(app_accounts::table
        .filter(app_accounts::app.eq(app))
        .count()
        .get_result(conn)?)
}

/// Disables and deletes an app has had since `since` (RFC 3339), from the
/// audit trail: what the mass-deprovisioning safety net counts.
pub fn count_deprovisions(
    conn: &mut AnyConnection,
    app: &str,
    since: &str,
) -> Result<i64, StoreError> {
    Ok(audit_events::table
        .filter(audit_events::app.eq(app))
        .filter(audit_events::action.eq_any(["delivery.disable", "delivery.delete"]))
        .filter(audit_events::outcome.eq("success"))
        .filter(audit_events::at.ge(since))
        .count()
        .get_result(conn)?)
}

/// When the app was last reconciled (the newest `reconcile.run` audit row,
/// whatever its outcome), so a schedule survives restarts and is shared by
/// every gateway process.
pub fn find_last_reconcile(
    conn: &mut AnyConnection,
    app: &str,
) -> Result<Option<String>, StoreError> {
    Ok(audit_events::table
        .filter(audit_events::app.eq(app))
        .filter(audit_events::action.eq("reconcile.run"))
        .select(audit_events::at)
        .order(audit_events::seq.desc())
        .first(conn)
        .optional()?)
}
