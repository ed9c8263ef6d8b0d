//! The audit trail. Every write appends its row in the same transaction as
//! the change (see `store::insert_audit`); the hash chain, export and
//! verification build on those rows.

pub use crate::store::{AuditEvent, count_audit_events};
