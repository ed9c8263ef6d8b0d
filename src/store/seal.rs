//! Sealing the audit chain on PostgreSQL: giving committed audit rows their
//! chain position and hash after commit, in an order every gateway agrees
//! on, without any writer touching a shared row.
//!
//! ```text
//!  writers (any node):  INSERT audit_events (txid = own transaction id, no position) … COMMIT
//!                                  │                       (nothing shared, no lock)
//!                                  ▼
//!  sealer (one pass at a time across all nodes, advisory lock):
//!      rows := committed rows without a position, ORDER BY txid, seq
//!      chain them after the head (hash in Rust), move the head   ─ one transaction
//! ```
//!
//! Why no committed row can be skipped: a row has no position until a pass
//! gives it one, and a pass reads every committed row that has none (a
//! partial index holds exactly those), so a row committed after one pass
//! read is found by the next; only one pass runs at a time, so no two give
//! out the same position. The chain's order is therefore the order in
//! which the sealer saw commits, and a transaction's rows (a group-commit
//! batch) stay together, by `seq`. No watermark over `seq` or transaction
//! ids is kept: one would have to wait for the oldest running transaction
//! of the whole server, which a single long transaction (in any database
//! of it) would hold back.
//!
//! Rows wait at most one pass interval after their commit.
//! `/metrics` shows the rows waiting and the age of the oldest
//! (`scim_gateway_audit_unsealed_rows`, `…_audit_seal_lag_seconds`); `audit
//! verify` and the export seal everything committed before they read.
//!
//! A pass is one transaction: a node killed mid-pass leaves nothing
//! half-sealed, and the next pass (on any node) starts from the head again.
//! SQLite does not need any of this: its write transactions are already
//! serial, so each row is chained when it is written ([`super::audit`]).

use std::time::{Duration, Instant};

use crossbeam_channel as channel;
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Bool, Nullable, Text};

use super::StoreError;
use super::chain::{ChainFields, chain_hash};
use super::connection::{AnyConnection, Manager, write_tx};

/// The advisory lock that makes one pass at a time seal, across all nodes.
const SEAL_LOCK: i64 = 7_243_550_119;

/// Most rows one pass seals (one transaction; then the next pass).
const PASS_ROWS: i64 = 5_000;

/// How often an idle sealer looks for rows: the upper bound of the lag
/// when the writes' own nudges are lost or come from another node.
const IDLE_PAUSE: Duration = Duration::from_millis(200);

/// Shortest time between two passes under load: rows then gather into
/// larger passes instead of one pass per commit.
const BUSY_PAUSE: Duration = Duration::from_millis(20);

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Sealed {
    /// Rows given a position.
    rows: usize,
    /// Whether another pass should follow at once (the pass was full).
    more: bool,
}

#[derive(QueryableByName)]
struct Locked {
    #[diesel(sql_type = Bool)]
    locked: bool,
}

#[derive(QueryableByName)]
struct Head {
    #[diesel(sql_type = BigInt)]
    head_pos: i64,
    #[diesel(sql_type = Text)]
    head_hash: String,
}

#[derive(QueryableByName)]
struct Unsealed {
    #[diesel(sql_type = BigInt)]
    seq: i64,
    #[diesel(sql_type = Text)]
    at: String,
    #[diesel(sql_type = Nullable<Text>)]
    tenant: Option<String>,
    #[diesel(sql_type = Text)]
    actor: String,
    #[diesel(sql_type = Text)]
    action: String,
    #[diesel(sql_type = Nullable<Text>)]
    resource_type: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    resource_id: Option<String>,
    #[diesel(sql_type = Text)]
    outcome: String,
    #[diesel(sql_type = Nullable<Text>)]
    detail: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    app: Option<String>,
}

/// Seals committed rows that have no position yet, at most [`PASS_ROWS`],
/// in one transaction. With `wait`, waits for another node's pass to end
/// instead of leaving it to that node (what `audit verify` and the export
/// want: every committed row in the chain before they read it).
/// A no-op on SQLite, where rows are chained as they are written.
fn seal_pass(conn: &mut AnyConnection, wait: bool) -> Result<Sealed, StoreError> {
    if !matches!(conn, AnyConnection::Postgresql(_)) {
        return Ok(Sealed::default());
    }
    write_tx(conn, |conn| {
        let AnyConnection::Postgresql(c) = conn else {
            return Ok(Sealed::default());
        };
        if wait {
            diesel::sql_query("SELECT pg_advisory_xact_lock($1)")
                .bind::<BigInt, _>(SEAL_LOCK)
                .execute(c)?;
        } else {
            let got: Locked = diesel::sql_query("SELECT pg_try_advisory_xact_lock($1) AS locked")
                .bind::<BigInt, _>(SEAL_LOCK)
                .get_result(c)?;
            if !got.locked {
                // Another node's pass runs; it (or the next) takes these rows.
                return Ok(Sealed::default());
            }
        }
        let rows: Vec<Unsealed> = diesel::sql_query(
            "SELECT seq, at, tenant, actor, action, resource_type, resource_id, outcome, \
             detail, app FROM audit_events \
             WHERE chain_pos IS NULL AND hash IS NULL \
             ORDER BY txid, seq LIMIT $1",
        )
        .bind::<BigInt, _>(PASS_ROWS)
        .load(c)?;
        if rows.is_empty() {
            return Ok(Sealed::default());
        }
        // Pruning takes the head's row lock too: it and a pass take turns.
        let head: Head = diesel::sql_query(
            "SELECT head_pos, head_hash FROM audit_chain WHERE id = 1 FOR UPDATE",
        )
        .get_result(c)
        .optional()?
        .ok_or_else(|| {
            StoreError::Internal("the audit chain head (table audit_chain) is missing".into())
        })?;
        let (mut pos, mut prev) = (head.head_pos, head.head_hash);
        let (mut seqs, mut positions, mut prevs, mut hashes) = (
            Vec::with_capacity(rows.len()),
            Vec::with_capacity(rows.len()),
            Vec::with_capacity(rows.len()),
            Vec::with_capacity(rows.len()),
        );
        for r in &rows {
            pos += 1;
            let hash = chain_hash(&ChainFields {
                chain_pos: pos,
                seq: r.seq,
                at: &r.at,
                tenant: r.tenant.as_deref(),
                actor: &r.actor,
                action: &r.action,
                resource_type: r.resource_type.as_deref(),
                resource_id: r.resource_id.as_deref(),
                outcome: &r.outcome,
                detail: r.detail.as_deref(),
                app: r.app.as_deref(),
                prev_hash: &prev,
            });
            seqs.push(r.seq);
            positions.push(pos);
            prevs.push(std::mem::replace(&mut prev, hash.clone()));
            hashes.push(hash);
        }
        diesel::sql_query(
            "UPDATE audit_events AS a SET chain_pos = v.pos, prev_hash = v.prev, hash = v.hash \
             FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[]) \
                  AS v(seq, pos, prev, hash) \
             WHERE a.seq = v.seq",
        )
        .bind::<Array<BigInt>, _>(&seqs)
        .bind::<Array<BigInt>, _>(&positions)
        .bind::<Array<Text>, _>(&prevs)
        .bind::<Array<Text>, _>(&hashes)
        .execute(c)?;
        diesel::sql_query("UPDATE audit_chain SET head_pos = $1, head_hash = $2 WHERE id = 1")
            .bind::<BigInt, _>(pos)
            .bind::<Text, _>(&prev)
            .execute(c)?;
        Ok(Sealed {
            rows: rows.len(),
            more: rows.len() as i64 == PASS_ROWS,
        })
    })
}

/// Seals every row committed before the call (waiting for another node's
/// pass where one runs); the rows sealed.
pub fn seal_all(conn: &mut AnyConnection) -> Result<usize, StoreError> {
    let mut total = 0;
    loop {
        let pass = seal_pass(conn, true)?;
        total += pass.rows;
        if !pass.more {
            return Ok(total);
        }
    }
}

/// Committed rows waiting to be sealed, and the `at` of the oldest.
#[derive(Debug, Clone, Default, PartialEq, Eq, QueryableByName)]
pub struct Backlog {
    /// Committed rows without a position yet.
    #[diesel(sql_type = BigInt)]
    pub rows: i64,
    /// The oldest one's time (RFC 3339), when there is one.
    #[diesel(sql_type = Nullable<Text>)]
    pub oldest_at: Option<String>,
}

/// The rows waiting to be sealed (always none on SQLite).
pub fn find_seal_backlog(conn: &mut AnyConnection) -> Result<Backlog, StoreError> {
    let AnyConnection::Postgresql(c) = conn else {
        return Ok(Backlog::default());
    };
    Ok(diesel::sql_query(
        "SELECT count(*) AS rows, min(at) AS oldest_at FROM audit_events \
         WHERE chain_pos IS NULL AND hash IS NULL",
    )
    .get_result(c)?)
}

/// Wakes the sealer early (after a commit that wrote audit rows); cheap,
/// never blocks. The sealer ends when every nudge sender is dropped.
#[derive(Clone)]
pub struct Nudge(channel::Sender<()>);

impl Nudge {
    /// Asks for a pass soon.
    pub fn nudge(&self) {
        let _ = self.0.try_send(());
    }
}

/// Starts this process's sealer thread (PostgreSQL), which seals every
/// [`IDLE_PAUSE`] and soon after each nudge, until the returned nudge and
/// its clones are all dropped.
pub fn start(manager: Manager) -> Result<Nudge, StoreError> {
    let (tx, rx) = channel::bounded::<()>(1);
    std::thread::Builder::new()
        .name("audit-sealer".into())
        .spawn(move || run(&manager, &rx))
        .map_err(|e| StoreError::Internal(format!("starting the audit sealer: {e}")))?;
    Ok(Nudge(tx))
}

fn run(manager: &Manager, nudges: &channel::Receiver<()>) {
    let mut conn: Option<AnyConnection> = None;
    let mut last_pass = Instant::now();
    loop {
        match nudges.recv_timeout(IDLE_PAUSE) {
            Ok(()) | Err(channel::RecvTimeoutError::Timeout) => {}
            Err(channel::RecvTimeoutError::Disconnected) => return,
        }
        loop {
            let since = last_pass.elapsed();
            if since < BUSY_PAUSE {
                std::thread::sleep(BUSY_PAUSE - since);
            }
            last_pass = Instant::now();
            let c = match conn.take().map_or_else(|| manager.open(), Ok) {
                Ok(c) => conn.insert(c),
                Err(e) => {
                    tracing::warn!(error = %e, "the audit sealer cannot connect; retrying");
                    break;
                }
            };
            match seal_pass(c, false) {
                Ok(pass) if pass.more => continue,
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "sealing audit rows failed; retrying");
                    conn = None;
                    break;
                }
            }
        }
    }
}
