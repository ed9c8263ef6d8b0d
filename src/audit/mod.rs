//! The tamper-evident audit trail: a hash chain over `audit_events`, its
//! export for auditors, its verification and its retention.
//!
//! Every write appends its row in the same transaction as the change
//! (`store::insert_audit`). Each row carries its place in the chain
//! (`chain_pos`), the hash of the row before it (`prev_hash`; 64 zeros for
//! the first) and its own hash, SHA-256 over a length-prefixed encoding of
//! every column plus `prev_hash` ([`hash`]). Editing a row breaks its hash;
//! deleting, inserting or reordering rows breaks a link or leaves a gap in
//! the positions; deleting the newest rows leaves the chain short of its
//! head. `audit verify` ([`verify`]) names the first such place.
//!
//! ## Commit order with several gateways on one PostgreSQL database
//!
//! ```text
//!  tx A: … change … INSERT audit (no position yet) … COMMIT ─▶ trigger: lock head, pos n   ─ done
//!  tx B: … change … INSERT audit … COMMIT ─▶ trigger: lock head ··· waits for A ··· pos n+1 ─ done
//! ```
//! `seq` comes from a sequence, allocated before commit, so `seq` order is
//! not commit order, and "read the last row's hash, then insert" would let
//! two transactions chain onto the same predecessor. Instead the chain has
//! a one-row head (`audit_chain`: last position and hash), and a row gets
//! its position only under the head's row lock, held until its transaction
//! ends: positions are handed out gap-free in commit order, and
//! verification walks `chain_pos`, never `seq`.
//!
//! On PostgreSQL the row is inserted without a position, and a deferred
//! constraint trigger (`audit_chain_seal`, in the migration) chains it as
//! the last step before commit: `UPDATE audit_chain … RETURNING` takes the
//! lock (a concurrent committer blocks on it and, under READ COMMITTED,
//! re-reads the head once the first commits), then the row's position,
//! `prev_hash` and hash are set. Taking the lock at commit rather than at
//! insert matters twice: the serial stretch is only the commit itself (a
//! few statements and one WAL flush), and the head is always the last lock
//! a transaction takes, so it can never close a deadlock cycle with row
//! locks (a job row, a resource) that another transaction holds while
//! waiting for the head. The trigger computes the same hash in SQL
//! (`sha256`, PostgreSQL 11+); `audit verify` recomputes it in Rust, and
//! the tests run both backends. On SQLite every write transaction is
//! `BEGIN IMMEDIATE`, already serial, so `insert_audit` chains the row at
//! once in Rust with the same head table.
//!
//! The cost: audited commits serialise across all gateways on one
//! database for the duration of their commit, which bounds them to roughly
//! one commit (WAL flush) latency each; PostgreSQL's own group commit
//! cannot merge their flushes. The gateway's writer threads therefore put
//! many writes into one transaction ([`crate::store`]'s writer: group
//! commit), so one flush carries them all. Everything before the commit
//! (validation, resource, index and job writes) still runs in parallel
//! across writer threads and gateways.
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
pub mod hash;
pub mod prune;
pub mod verify;

pub use crate::store::{AuditEvent, AuditFilter, AuditRecord, count_audit_events};
pub use export::{Format, export_db, parse_time};
pub use prune::{PruneReport, prune};
pub use verify::{DbReport, FileReport, verify_db, verify_file};
