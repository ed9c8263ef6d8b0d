//! Retention: deletes the oldest stretch of the chain once it has been
//! exported, and leaves a checkpoint (position and hash of the last pruned
//! row) from which the rest of the chain still verifies.
//!
//! Only a prefix of the chain can go, so pruning stops at the first of:
//! the last exported position (an explicit promise by the operator), the
//! first row at or after the cut-off time, and the head. The stretch is
//! verified before anything is deleted (pruning must not launder a broken
//! chain), then deleted in chunks, each in its own short transaction under
//! the head lock, each moving the checkpoint forward, so appends (SQLite)
//! and sealing passes (PostgreSQL) wait at most one chunk. The prune itself is recorded as an `audit.prune` row.

use serde_json::json;

use super::verify::{Anchor, ChainCheck};
use crate::format::now;
use crate::store::{self, AnyConnection, AuditEvent, AuditFilter, StoreError, write_tx};

/// Positions deleted per transaction.
const CHUNK: i64 = 5000;

/// What a prune did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PruneReport {
    /// Rows deleted.
    pub pruned: u64,
    /// The checkpoint now: the last pruned position.
    pub checkpoint_pos: i64,
    /// Its hash.
    pub checkpoint_hash: String,
}

/// Why a prune refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum PruneError {
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Pruning would lose evidence or disagree with the export held.
    #[error("{0}")]
    Refused(String),
}

/// Prunes rows older than `before` (stored time form) up to chain position
/// `exported_through`. With `exported_hash`, the row at that position must
/// carry that hash (the last line of the export held), or nothing happens.
pub fn prune(
    conn: &mut AnyConnection,
    before: &str,
    exported_through: i64,
    exported_hash: Option<&str>,
) -> Result<PruneReport, PruneError> {
    let head = store::find_chain_head(conn)?;
    let mut through = exported_through.min(head.head_pos);
    if let Some(first_recent) = store::find_first_pos_since(conn, before)? {
        through = through.min(first_recent - 1);
    }
    let unchanged = PruneReport {
        pruned: 0,
        checkpoint_pos: head.checkpoint_pos,
        checkpoint_hash: head.checkpoint_hash.clone(),
    };
    if let Some(want) = exported_hash {
        let stored = store::find_audit_hash(conn, exported_through)?;
        if stored.as_deref() != Some(want) {
            return Err(PruneError::Refused(format!(
                "the row at chain position {exported_through} does not carry hash {want}: \
                 that is not the export you hold (or the row was pruned already)"
            )));
        }
    }
    if through <= head.checkpoint_pos {
        return Ok(unchanged);
    }
    // Verify the stretch first, outside any write transaction.
    let mut check = ChainCheck::new(
        Anchor::Known {
            pos: head.checkpoint_pos,
            hash: head.checkpoint_hash.clone(),
        },
        false,
    );
    let all = AuditFilter::default();
    let mut after = head.checkpoint_pos;
    while after < through {
        let page = store::find_audit_page(conn, &all, after, Some(through), 1000)?;
        for r in &page {
            check
                .push(r)
                .map_err(|b| PruneError::Refused(format!("the chain to prune is broken at {b}")))?;
        }
        match page.last() {
            Some(r) => after = r.chain_pos,
            None => break,
        }
    }
    if after != through {
        return Err(PruneError::Refused(format!(
            "the chain to prune ends at position {after} instead of {through}: rows were deleted"
        )));
    }
    let mut pruned = 0u64;
    let mut cp = head.checkpoint_pos;
    let mut cp_hash = head.checkpoint_hash.clone();
    while cp < through {
        let upto = (cp + CHUNK).min(through);
        let last = upto == through;
        let (n, hash) = write_tx(conn, |c| {
            let h = store::lock_chain_head(c)?;
            if h.checkpoint_pos != cp {
                return Err(StoreError::Conflict(
                    "another prune ran at the same time".into(),
                ));
            }
            let hash = store::find_audit_hash(c, upto)?.unwrap_or_default();
            let at = now();
            let n = store::prune_audit_through(c, cp, upto, &hash, &at)?;
            if last {
                store::insert_audit(
                    c,
                    &AuditEvent {
                        at,
                        tenant: None,
                        actor: "operator/cli".into(),
                        action: "audit.prune".into(),
                        resource_type: None,
                        resource_id: None,
                        outcome: "success".into(),
                        detail: Some(
                            json!({
                                "checkpoint_pos": upto, "checkpoint_hash": hash,
                                "before": before, "exported_through": exported_through,
                            })
                            .to_string(),
                        ),
                        app: None,
                    },
                )?;
            }
            Ok((n, hash))
        })?;
        pruned += n as u64;
        cp = upto;
        cp_hash = hash;
    }
    Ok(PruneReport {
        pruned,
        checkpoint_pos: cp,
        checkpoint_hash: cp_hash,
    })
}
