//! The tamper-evident audit trail: a hash chain over `audit_events`, its
//! export for auditors, its verification and its retention.
//!
//! Every write appends its row in the same transaction as the change
//! (`store::insert_audit`). Each row carries its place in the chain
//! (`chain_pos`), the hash of the row before it (`prev_hash`; 64 zeros for
//! the first) and its own hash, SHA-256 over a length-prefixed encoding of
//! every column plus `prev_hash` ([`crate::store::chain`]: the store writes
//! and seals rows, so the hash lives there and this module only reads it).
//! Editing a row breaks its hash; deleting, inserting or reordering rows
//! breaks a link or leaves a gap in
//! the positions; deleting the newest rows leaves the chain short of its
//! head. `audit verify` ([`verify`]) names the first such place.
//!
//! ## Several gateways on one PostgreSQL database
//!
//! ```text
//!  node 1, tx A: … change … INSERT audit (txid A, no position) … COMMIT ─ answered
//!  node 2, tx B: … change … INSERT audit (txid B, no position) … COMMIT ─ answered
//!  sealer (whichever node holds the advisory lock, every ≤ 200 ms and after writes):
//!        committed rows without a position, by (txid, seq) ─▶ positions n+1, n+2, …
//! ```
//! `seq` comes from a sequence, allocated before commit, so `seq` order is
//! not commit order, and "read the last row's hash, then insert" would let
//! two transactions chain onto the same predecessor. Until 2026-12 every
//! audited commit therefore took the one-row chain head's lock at commit
//! and held it through its WAL flush, which made all writes of all nodes
//! serial (measured: 1.4–2.2k writes/s however many nodes). Now a writer
//! only inserts its rows, with its transaction's id and no position, and
//! touches nothing another writer touches. A sealer, one pass at a time
//! across all nodes (`store::seal`), gives the committed rows that have no
//! position yet their positions after the head, a transaction's rows
//! together, computes their hashes in Rust and moves the head, all in one
//! transaction: a node killed mid-pass leaves nothing half-done. A row
//! without a position is found by the next pass whenever it commits, so
//! none is skipped; the chain's order is the order the sealer saw commits.
//! Verification walks `chain_pos`, never `seq`. Rows wait for a pass for a
//! fraction of a second (`scim_gateway_audit_seal_lag_seconds`); `audit
//! verify` and the export seal everything committed before they read. On
//! SQLite every write transaction is `BEGIN IMMEDIATE`, already serial, so
//! `insert_audit` chains the row at once in Rust with the same head table.
//!
//! ## What the chain does and does not prove
//! It proves the rows were not changed after they were written, by anyone
//! who did not also rewrite every later row and the head. Someone with
//! write access to the database can recompute the whole chain; keep the
//! head hash (printed by `audit verify`) or export files outside the
//! database to anchor it. Secrets never enter audit rows: callers record
//! ids, actions and outcomes only.
//!
//! ## Retention
//! [`prune`] deletes the oldest stretch once exported and keeps a
//! checkpoint (last pruned position and hash) from which the rest verifies.

pub mod export;
pub mod prune;
pub mod verify;

pub use crate::store::{AuditEvent, AuditFilter, AuditRecord, count_audit_events};
pub use export::{Format, export_db, parse_time};
pub use prune::{PruneReport, prune};
pub use verify::{DbReport, FileReport, verify_db, verify_file};
