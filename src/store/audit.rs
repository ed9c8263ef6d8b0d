//! The `audit_events` table and its one-row chain head `audit_chain`:
//! append-only, one row per operation, written in the same transaction as
//! the change it records and hash-chained to the row before it. How and
//! when a row gets its place in the chain is in [`crate::audit`].
//!
//! ```text
//! PostgreSQL: INSERT audit_events (chain_pos NULL, txid = this transaction) … COMMIT
//!             later, one sealer across all nodes (super::seal):
//!                 rows below the running-transaction horizon, by (txid, seq)
//!                 ─▶ chain_pos, prev_hash, hash; UPDATE audit_chain
//! SQLite:     SELECT head, last seq ─▶ hash ─▶ INSERT audit_events (complete row)
//!             UPDATE audit_chain SET head_pos, head_hash
//!             (the write transaction is BEGIN IMMEDIATE: already serial)
//! ```

use diesel::connection::{AnsiTransactionManager, TransactionManager};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Text};

use super::StoreError;
use super::chain::{ChainFields, GENESIS, chain_hash};
use super::connection::{AnyConnection, write_tx};
use super::prepared::prepared;
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

/// One chained audit row as stored (and as exported, one NDJSON line each).
#[derive(Debug, Clone, PartialEq, Eq, Queryable, serde::Serialize, serde::Deserialize)]
pub struct AuditRecord {
    /// Place in the chain: commit order, 1 for the first row ever.
    pub chain_pos: i64,
    /// Primary key (allocation order, not commit order).
    pub seq: i64,
    /// RFC 3339 UTC time.
    pub at: String,
    /// Tenant acted on.
    pub tenant: Option<String>,
    /// Who acted.
    pub actor: String,
    /// What was done.
    pub action: String,
    /// `User` or `Group`.
    pub resource_type: Option<String>,
    /// The resource's id.
    pub resource_id: Option<String>,
    /// `success` or a failure description.
    pub outcome: String,
    /// Extra JSON detail, exactly as stored (it is hashed as text).
    pub detail: Option<String>,
    /// The downstream app concerned.
    pub app: Option<String>,
    /// Hash of the row at `chain_pos - 1` (genesis: 64 zeros).
    pub prev_hash: Option<String>,
    /// This row's hash.
    pub hash: Option<String>,
}

impl AuditRecord {
    /// The hashed fields (an absent `prev_hash` hashes as empty and fails).
    pub fn fields(&self) -> ChainFields<'_> {
        ChainFields {
            chain_pos: self.chain_pos,
            seq: self.seq,
            at: &self.at,
            tenant: self.tenant.as_deref(),
            actor: &self.actor,
            action: &self.action,
            resource_type: self.resource_type.as_deref(),
            resource_id: self.resource_id.as_deref(),
            outcome: &self.outcome,
            detail: self.detail.as_deref(),
            app: self.app.as_deref(),
            prev_hash: self.prev_hash.as_deref().unwrap_or(""),
        }
    }
}

/// Which rows an export wants; `None` matches everything. Times are
/// compared as stored text, so pass them normalised (see `audit::export`).
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// `at >= from`.
    pub from: Option<String>,
    /// `at < to`.
    pub to: Option<String>,
    /// Tenant.
    pub tenant: Option<String>,
    /// Actor.
    pub actor: Option<String>,
    /// Resource (identity) id.
    pub resource_id: Option<String>,
    /// Downstream app.
    pub app: Option<String>,
    /// Action, e.g. `scim.create`.
    pub action: Option<String>,
    /// Outcome, e.g. `success`.
    pub outcome: Option<String>,
}

impl AuditFilter {
    /// Whether no filter is set (an export of it is a contiguous chain).
    pub fn is_empty(&self) -> bool {
        [
            &self.from,
            &self.to,
            &self.tenant,
            &self.actor,
            &self.resource_id,
            &self.app,
            &self.action,
            &self.outcome,
        ]
        .iter()
        .all(|f| f.is_none())
    }
}

/// The chain head: last position and hash, and the pruning checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub struct ChainHead {
    /// Position of the last chained row (0 when none was ever written).
    #[diesel(sql_type = BigInt)]
    pub head_pos: i64,
    /// Its hash ([`GENESIS`] when none).
    #[diesel(sql_type = Text)]
    pub head_hash: String,
    /// Position of the last pruned row (0 when nothing was pruned).
    #[diesel(sql_type = BigInt)]
    pub checkpoint_pos: i64,
    /// Its hash: the `prev_hash` the first remaining row must carry.
    #[diesel(sql_type = Text)]
    pub checkpoint_hash: String,
    /// When the last prune ran.
    #[diesel(sql_type = Nullable<Text>)]
    pub checkpoint_at: Option<String>,
}

/// What an append needs to know before it writes its row.
#[derive(QueryableByName)]
struct Next {
    #[diesel(sql_type = BigInt)]
    head_pos: i64,
    #[diesel(sql_type = Text)]
    head_hash: String,
    #[diesel(sql_type = BigInt)]
    last_seq: i64,
}

const HEAD_COLUMNS: &str = "head_pos, head_hash, checkpoint_pos, checkpoint_hash, checkpoint_at";

/// The head, and the last `seq` handed out: what `AUTOINCREMENT` would
/// give the row is one more than the larger of its counter and the
/// largest `seq` present.
const NEXT: &str = "SELECT head_pos, head_hash, MAX( \
      COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'audit_events'), 0), \
      COALESCE((SELECT MAX(seq) FROM audit_events), 0)) AS last_seq \
    FROM audit_chain WHERE id = 1";

const INSERT: &str = "INSERT INTO audit_events \
    (seq, at, tenant, actor, action, resource_type, resource_id, outcome, detail, app, \
     chain_pos, prev_hash, hash) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)";

fn head_missing() -> StoreError {
    StoreError::Internal("the audit chain head (table audit_chain) is missing".into())
}

fn in_transaction(conn: &mut AnyConnection) -> bool {
    on_backend!(conn, c => matches!(
        AnsiTransactionManager::transaction_manager_status_mut(c).transaction_depth(),
        Ok(Some(_))
    ))
}

/// Appends an audit event to the chain. Called inside the write transaction
/// of the change it records (outside one, it opens its own): the event then
/// commits, or rolls back, with the change. On PostgreSQL the row is
/// written without a chain position, and with its transaction's id (the
/// column's default); the sealer chains it after commit ([`super::seal`]).
pub fn insert_audit(conn: &mut AnyConnection, event: &AuditEvent) -> Result<(), StoreError> {
    if let AnyConnection::Postgresql(c) = conn {
        // Prepared once per connection: diesel's insert DSL was parsed and
        // planned by PostgreSQL on every write.
        prepared!(
            "INSERT INTO audit_events \
             (at, tenant, actor, action, resource_type, resource_id, outcome, detail, app) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind::<Text, _>(&event.at)
        .bind::<Nullable<Text>, _>(event.tenant.as_deref())
        .bind::<Text, _>(&event.actor)
        .bind::<Text, _>(&event.action)
        .bind::<Nullable<Text>, _>(event.resource_type.as_deref())
        .bind::<Nullable<Text>, _>(event.resource_id.as_deref())
        .bind::<Text, _>(&event.outcome)
        .bind::<Nullable<Text>, _>(event.detail.as_deref())
        .bind::<Nullable<Text>, _>(event.app.as_deref())
        .execute(c)?;
        return Ok(());
    }
    if !in_transaction(conn) {
        return write_tx(conn, |c| append(c, event));
    }
    append(conn, event)
}

/// The SQLite append: its write transaction (`BEGIN IMMEDIATE`) already
/// excludes every other writer, so the row's `seq`, place and hash are all
/// known before it is written, and it is written once, complete.
fn append(conn: &mut AnyConnection, e: &AuditEvent) -> Result<(), StoreError> {
    if !matches!(conn, AnyConnection::Sqlite(_)) {
        return Err(StoreError::Internal(
            "the in-process audit chain is SQLite's".into(),
        ));
    }
    let next = on_backend!(conn, c => prepared!(NEXT).load::<Next>(c)?)
        .into_iter()
        .next()
        .ok_or_else(head_missing)?;
    let (mut pos, mut prev) = (next.head_pos + 1, next.head_hash);
    if pos == 1 {
        (pos, prev) = seal_unchained(conn)?;
    }
    let seq = next.last_seq + 1;
    let hash = chain_hash(&ChainFields {
        chain_pos: pos,
        seq,
        at: &e.at,
        tenant: e.tenant.as_deref(),
        actor: &e.actor,
        action: &e.action,
        resource_type: e.resource_type.as_deref(),
        resource_id: e.resource_id.as_deref(),
        outcome: &e.outcome,
        detail: e.detail.as_deref(),
        app: e.app.as_deref(),
        prev_hash: &prev,
    });
    on_backend!(conn, c => prepared!(INSERT)
        .bind::<BigInt, _>(seq)
        .bind::<Text, _>(&e.at)
        .bind::<Nullable<Text>, _>(e.tenant.as_deref())
        .bind::<Text, _>(&e.actor)
        .bind::<Text, _>(&e.action)
        .bind::<Nullable<Text>, _>(e.resource_type.as_deref())
        .bind::<Nullable<Text>, _>(e.resource_id.as_deref())
        .bind::<Text, _>(&e.outcome)
        .bind::<Nullable<Text>, _>(e.detail.as_deref())
        .bind::<Nullable<Text>, _>(e.app.as_deref())
        .bind::<BigInt, _>(pos)
        .bind::<Text, _>(&prev)
        .bind::<Text, _>(&hash)
        .execute(c)?);
    set_head(conn, pos, &hash)
}

fn set_head(conn: &mut AnyConnection, pos: i64, hash: &str) -> Result<(), StoreError> {
    on_backend!(conn, c => prepared!(
        "UPDATE audit_chain SET head_pos = $1, head_hash = $2 WHERE id = 1",
    )
    .bind::<BigInt, _>(pos)
    .bind::<Text, _>(hash)
    .execute(c)?);
    Ok(())
}

type LegacyRow = (
    i64,
    String,
    Option<String>,
    String,
    String,
    Option<String>,
    Option<String>,
    String,
    Option<String>,
    Option<String>,
);

/// On the first append ever, chains the rows written before the chain
/// existed (in `seq` order) and returns the position and `prev_hash` for
/// the new row. A no-op query on a database that started with the chain.
fn seal_unchained(conn: &mut AnyConnection) -> Result<(i64, String), StoreError> {
    let (mut pos, mut prev) = (0i64, GENESIS.to_string());
    loop {
        let rows: Vec<LegacyRow> = audit_events::table
            .filter(audit_events::chain_pos.is_null())
            .order(audit_events::seq.asc())
            .limit(500)
            .select((
                audit_events::seq,
                audit_events::at,
                audit_events::tenant,
                audit_events::actor,
                audit_events::action,
                audit_events::resource_type,
                audit_events::resource_id,
                audit_events::outcome,
                audit_events::detail,
                audit_events::app,
            ))
            .load(conn)?;
        if rows.is_empty() {
            break;
        }
        for (seq, at, tenant, actor, action, rtype, rid, outcome, detail, app) in rows {
            pos += 1;
            let hash = chain_hash(&ChainFields {
                chain_pos: pos,
                seq,
                at: &at,
                tenant: tenant.as_deref(),
                actor: &actor,
                action: &action,
                resource_type: rtype.as_deref(),
                resource_id: rid.as_deref(),
                outcome: &outcome,
                detail: detail.as_deref(),
                app: app.as_deref(),
                prev_hash: &prev,
            });
            diesel::update(audit_events::table.find(seq))
                .set((
                    audit_events::chain_pos.eq(pos),
                    audit_events::prev_hash.eq(&prev),
                    audit_events::hash.eq(&hash),
                ))
                .execute(conn)?;
            prev = hash;
        }
    }
    if pos > 0 {
        tracing::info!(
            rows = pos,
            "audit rows written before the hash chain are now chained"
        );
    }
    Ok((pos + 1, prev))
}

/// The chain head, read without a lock.
pub fn find_chain_head(conn: &mut AnyConnection) -> Result<ChainHead, StoreError> {
    let sql = format!("SELECT {HEAD_COLUMNS} FROM audit_chain WHERE id = 1");
    on_backend!(conn, c => diesel::sql_query(&sql).load::<ChainHead>(c)?)
        .into_iter()
        .next()
        .ok_or_else(head_missing)
}

/// The chain head, locked until the transaction ends (PostgreSQL; SQLite's
/// write transaction is already exclusive): no append runs meanwhile.
pub fn lock_chain_head(conn: &mut AnyConnection) -> Result<ChainHead, StoreError> {
    let lock = if matches!(conn, AnyConnection::Postgresql(_)) {
        " FOR UPDATE"
    } else {
        ""
    };
    let sql = format!("SELECT {HEAD_COLUMNS} FROM audit_chain WHERE id = 1{lock}");
    on_backend!(conn, c => diesel::sql_query(&sql).load::<ChainHead>(c)?)
        .into_iter()
        .next()
        .ok_or_else(head_missing)
}

/// Up to `limit` chained rows after position `after` (and at most
/// `through`) that match `filter`, in chain order: one keyset page.
pub fn find_audit_page(
    conn: &mut AnyConnection,
    filter: &AuditFilter,
    after: i64,
    through: Option<i64>,
    limit: i64,
) -> Result<Vec<AuditRecord>, StoreError> {
    use audit_events as a;
    let mut q = a::table.filter(a::chain_pos.gt(after)).into_boxed();
    if let Some(t) = through {
        q = q.filter(a::chain_pos.le(t));
    }
    if let Some(v) = &filter.from {
        q = q.filter(a::at.ge(v.clone()));
    }
    if let Some(v) = &filter.to {
        q = q.filter(a::at.lt(v.clone()));
    }
    if let Some(v) = &filter.tenant {
        q = q.filter(a::tenant.eq(v.clone()));
    }
    if let Some(v) = &filter.actor {
        q = q.filter(a::actor.eq(v.clone()));
    }
    if let Some(v) = &filter.resource_id {
        q = q.filter(a::resource_id.eq(v.clone()));
    }
    if let Some(v) = &filter.app {
        q = q.filter(a::app.eq(v.clone()));
    }
    if let Some(v) = &filter.action {
        q = q.filter(a::action.eq(v.clone()));
    }
    if let Some(v) = &filter.outcome {
        q = q.filter(a::outcome.eq(v.clone()));
    }
    Ok(q.order(a::chain_pos.asc())
        .limit(limit)
        .select((
            a::chain_pos.assume_not_null(),
            a::seq,
            a::at,
            a::tenant,
            a::actor,
            a::action,
            a::resource_type,
            a::resource_id,
            a::outcome,
            a::detail,
            a::app,
            a::prev_hash,
            a::hash,
        ))
        .load(conn)?)
}

/// The hash stored at a chain position, if that row exists.
pub fn find_audit_hash(conn: &mut AnyConnection, pos: i64) -> Result<Option<String>, StoreError> {
    Ok(audit_events::table
        .filter(audit_events::chain_pos.eq(pos))
        .select(audit_events::hash)
        .first::<Option<String>>(conn)
        .optional()?
        .flatten())
}

/// The first chain position whose row is at or after `at` (for pruning).
pub fn find_first_pos_since(conn: &mut AnyConnection, at: &str) -> Result<Option<i64>, StoreError> {
    Ok(audit_events::table
        .filter(audit_events::at.ge(at))
        .select(diesel::dsl::min(audit_events::chain_pos))
        .first::<Option<i64>>(conn)?)
}

/// Rows outside the chain (`chain_pos` NULL): their number and `seq`
/// range. On PostgreSQL rows still waiting for the sealer (no hash yet)
/// are not among them ([`super::find_seal_backlog`] counts those).
pub fn find_unchained(
    conn: &mut AnyConnection,
) -> Result<(i64, Option<i64>, Option<i64>), StoreError> {
    use audit_events as a;
    let mut q = a::table.filter(a::chain_pos.is_null()).into_boxed();
    if matches!(conn, AnyConnection::Postgresql(_)) {
        q = q.filter(a::hash.is_not_null());
    }
    let (n, lo, hi) = q
        .select((
            diesel::dsl::count_star(),
            diesel::dsl::min(a::seq),
            diesel::dsl::max(a::seq),
        ))
        .first::<(i64, Option<i64>, Option<i64>)>(conn)?;
    Ok((n, lo, hi))
}

/// Deletes the chained rows after `after` up to and including `through`
/// and moves the checkpoint to `through` with its `hash`. The caller holds
/// the head lock ([`lock_chain_head`]) and checked the rows first.
pub fn prune_audit_through(
    conn: &mut AnyConnection,
    after: i64,
    through: i64,
    hash: &str,
    at: &str,
) -> Result<usize, StoreError> {
    let n = diesel::delete(
        audit_events::table
            .filter(audit_events::chain_pos.gt(after))
            .filter(audit_events::chain_pos.le(through)),
    )
    .execute(conn)?;
    on_backend!(conn, c => diesel::sql_query(
        "UPDATE audit_chain SET checkpoint_pos = $1, checkpoint_hash = $2, checkpoint_at = $3 \
         WHERE id = 1",
    )
    .bind::<BigInt, _>(through)
    .bind::<Text, _>(hash)
    .bind::<Text, _>(at)
    .execute(c)?);
    Ok(n)
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
