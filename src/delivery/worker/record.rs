//! Recording outcomes. Each outcome (the applied account, the grant
//! bookkeeping, the job row: done, retry or dead letter, and the audit row
//! of the adapter operation) commits as one unit; the recorder commits the
//! outcomes that are waiting together in one transaction, one savepoint
//! each, so a failure of one leaves the others recorded.
//!
//! ```text
//! call ─┐                     ┌─ SAVEPOINT record(o1) RELEASE ─┐
//! call ─┼─▶ channel ─▶ batch ─┼─ SAVEPOINT record(o2) RELEASE ─┼─ COMMIT ─▶ metrics, slots freed
//! call ─┘   (what is waiting) └─ …                             ┘
//! ```
//!
//! Nothing waits for a batch to fill: the recorder takes whatever is queued
//! the moment the previous transaction commits, so under light load every
//! outcome is its own transaction, and under heavy load commits are shared.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::mpsc::UnboundedReceiver;

use super::{AppRuntime, Shared, Slot, later};
use crate::adapters::{AdapterError, Applied, ErrorKind};
use crate::delivery::converge::{Plan, is_active};
use crate::delivery::decide::Decision;
use crate::delivery::doubt::Doubt;
use crate::domain::Kind;
use crate::format::{now, timestamp as fmt_time};
use crate::lifecycle::grants::Revocation;
use crate::metrics::Metrics;
use crate::store::grants::GrantRow;
use crate::store::jobs::{self, JobRow, Retry};
use crate::store::{self, AccountRow, AnyConnection, AuditEvent, StoreError, account_status};

/// Most outcomes one transaction records.
const MAX_BATCH: usize = 256;

/// The outcome of a job whose claim had passed to another worker.
const SUPERSEDED: &str = "superseded";

/// What one job's run came to, waiting to be recorded.
pub(super) struct Outcome {
    pub(super) rt: std::sync::Arc<AppRuntime>,
    pub(super) job: JobRow,
    pub(super) decision: Decision,
    /// The adapter's answer; `None` when nothing had to be done.
    pub(super) result: Option<Result<Applied, AdapterError>>,
    /// The account revision the operation makes.
    pub(super) revision: i64,
    pub(super) latency_ms: u64,
    /// The job's place among the app's unrecorded jobs, and for an approved
    /// deprovision its place among those: both freed once recorded.
    pub(super) _slots: (Slot, Option<Slot>),
}

/// Records outcomes as they come, until every sender is gone (the app
/// loops and their calls have finished).
pub(super) async fn recorder(shared: std::sync::Arc<Shared>, mut rx: UnboundedReceiver<Outcome>) {
    let mut waiting = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut waiting, MAX_BATCH).await > 0 {
        record_batch(&shared, std::mem::take(&mut waiting)).await;
    }
}

/// Records a batch of outcomes in one transaction, then counts them.
async fn record_batch(shared: &Shared, outcomes: Vec<Outcome>) {
    let worker = shared.worker.clone();
    let n = outcomes.len();
    // Shared, not moved: a write may run again (see `store::Db::write`).
    let outcomes = std::sync::Arc::new(outcomes);
    let recorded = shared
        .db
        .write(move |conn| {
            let results: Vec<Result<Recorded, StoreError>> = outcomes
                .iter()
                .map(|o| store::savepoint(conn, |c| record(c, &worker, o)))
                .collect();
            // A deadlock victim fails the whole write, so that the writer
            // runs it again instead of the job being delivered again.
            if let Some(Err(StoreError::LockCycle(why))) = results
                .iter()
                .find(|r| r.as_ref().is_err_and(StoreError::is_lock_cycle))
            {
                return Err(StoreError::LockCycle(why.clone()));
            }
            Ok((outcomes, results))
        })
        .await;
    match recorded {
        Ok((outcomes, results)) => {
            for (o, r) in outcomes.iter().zip(results) {
                match r {
                    Ok(r) => observe(&shared.metrics, &o.rt.policy.name, &r, &o.job.created_at),
                    Err(e) => {
                        tracing::warn!(app = %o.rt.policy.name, id = %o.job.resource_id, error = %e,
                        "recording a delivery outcome failed; the job will run again")
                    }
                }
            }
        }
        Err(e) => tracing::warn!(outcomes = n, error = %e,
            "recording delivery outcomes failed; the jobs will run again"),
    }
}

/// What a recorded job amounted to, for the metrics.
struct Recorded {
    /// The adapter operation, when one was made.
    op: Option<&'static str>,
    /// `success`, `retry` or `dead_letter`.
    outcome: &'static str,
}

/// Counts a committed outcome; a success ends the wait that began when
/// the job's oldest change was recorded.
fn observe(metrics: &Metrics, app: &str, r: &Recorded, created_at: &str) {
    if let Some(op) = r.op {
        metrics.observe_operation(app, op, r.outcome);
    }
    if r.outcome == "success"
        && let Ok(t) = chrono::DateTime::parse_from_rfc3339(created_at)
    {
        let waited = (chrono::Utc::now() - t.with_timezone(&chrono::Utc))
            .to_std()
            .unwrap_or(Duration::ZERO);
        metrics.observe_converged(app, waited);
    }
}
fn op_name(op: &Plan, before_active: bool, after_active: bool) -> &'static str {
    match op {
        Plan::Noop => "noop",
        Plan::Create { .. } => "create",
        Plan::Update { .. } if before_active && !after_active => "disable",
        Plan::Update { .. } if !before_active && after_active => "enable",
        Plan::Update { .. } => "update",
        Plan::Delete { .. } => "delete",
    }
}

/// Writes what a converged identity now holds: grants recorded, revoked
/// or expired (each with an audit row naming the rule and the reason), and
/// the timer for its next change of access.
fn settle(
    conn: &mut AnyConnection,
    rt: &AppRuntime,
    job: &JobRow,
    decision: &Decision,
    at: &str,
) -> Result<(), StoreError> {
    let app = rt.policy.name.as_str();
    let row = |action: &str, _: &GrantRow, detail: Value| AuditEvent {
        at: at.to_string(),
        tenant: Some(job.tenant.clone()),
        actor: "system/lifecycle".into(),
        action: action.to_string(),
        resource_type: Some("User".into()),
        resource_id: Some(job.resource_id.clone()),
        outcome: "success".into(),
        detail: Some(detail.to_string()),
        app: Some(app.to_string()),
    };
    let g = &decision.grants;
    for grant in &g.added {
        store::grants::insert_grant(conn, grant)?;
        store::insert_audit(
            conn,
            &row(
                "lifecycle.grant",
                grant,
                json!({ "rule": grant.rule, "entitlement": grant.entitlement, "expires_at": grant.expires_at }),
            ),
        )?;
    }
    for (grant, why) in &g.revoked {
        store::grants::delete_grant(conn, grant)?;
        if *why != Revocation::Cleanup {
            store::insert_audit(
                conn,
                &row(
                    "lifecycle.revoke",
                    grant,
                    json!({
                        "rule": grant.rule, "entitlement": grant.entitlement,
                        "granted_at": grant.granted_at, "reason": why.as_str(),
                        "detail": decision.reason,
                    }),
                ),
            )?;
        }
    }
    for grant in &g.expired {
        store::grants::mark_expired(conn, grant, at)?;
        store::insert_audit(
            conn,
            &row(
                "lifecycle.expire",
                grant,
                json!({ "rule": grant.rule, "entitlement": grant.entitlement,
                        "granted_at": grant.granted_at, "expires_at": grant.expires_at }),
            ),
        )?;
    }
    let due = decision.next_due.map(fmt_time);
    store::grants::set_timer(conn, app, &job.resource_id, &job.tenant, due.as_deref())
}

/// Records one outcome (inside the recorder's transaction).
fn record(conn: &mut AnyConnection, worker: &str, o: &Outcome) -> Result<Recorded, StoreError> {
    let Outcome {
        rt,
        job,
        decision,
        result,
        revision,
        latency_ms,
        ..
    } = o;
    let (revision, latency_ms) = (*revision, *latency_ms);
    let at = now();
    let app = rt.policy.name.as_str();
    let op = &decision.plan;
    let Some(result) = result else {
        // Already converged: the grant bookkeeping may still move on.
        if !jobs::complete(conn, job, worker, &at)? {
            // Taken over, and no call was made: the new holder decides.
            return Ok(Recorded {
                op: None,
                outcome: SUPERSEDED,
            });
        }
        settle(conn, rt, job, decision, &at)?;
        return Ok(Recorded {
            op: None,
            outcome: "success",
        });
    };
    let (kind, before_active, after_active) = match op {
        Plan::Create { kind, account } => (*kind, false, is_active(account)),
        Plan::Update {
            kind,
            before,
            after,
            ..
        } => (*kind, is_active(before), is_active(after)),
        Plan::Delete { kind, before, .. } => (*kind, is_active(before), false),
        Plan::Noop => (Kind::User, true, true),
    };
    let name = op_name(op, before_active, after_active);
    let mut detail = json!({
        "op": name,
        "attempt": job.attempts,
        "latency_ms": latency_ms,
        "generation": job.claimed_generation.unwrap_or(job.generation),
        "worker": worker,
        "reason": decision.reason,
    });
    let outcome = match result {
        Ok(applied) => {
            if !jobs::complete(conn, job, worker, &at)? {
                return late(conn, o, name, detail, &at);
            }
            let remote_id = match op {
                Plan::Create { .. } => applied.remote_id.clone(),
                Plan::Update { remote_id, .. } | Plan::Delete { remote_id, .. } => {
                    Some(remote_id.clone())
                }
                Plan::Noop => None,
            };
            detail["remote_id"] = json!(remote_id);
            detail["status"] = json!(applied.status);
            if applied.adopted {
                detail["adopted"] = json!(true);
            }
            match op {
                Plan::Create { account, .. } | Plan::Update { after: account, .. } => {
                    let existing = store::find_account(conn, app, &job.resource_id)?;
                    let disabled_at = match &existing {
                        _ if after_active => None,
                        Some(e) if e.status == account_status::DISABLED => e.disabled_at.clone(),
                        _ => Some(at.clone()),
                    };
                    store::save_account(
                        conn,
                        &AccountRow {
                            app: app.to_string(),
                            resource_id: job.resource_id.clone(),
                            tenant: job.tenant.clone(),
                            resource_type: kind.name().to_string(),
                            remote_id,
                            status: if after_active {
                                account_status::ACTIVE
                            } else {
                                account_status::DISABLED
                            }
                            .to_string(),
                            applied: account.to_string(),
                            revision,
                            created_at: existing
                                .map(|e| e.created_at)
                                .unwrap_or_else(|| at.clone()),
                            updated_at: at.clone(),
                            disabled_at,
                        },
                    )?;
                }
                Plan::Delete { .. } => store::delete_account(conn, app, &job.resource_id)?,
                Plan::Noop => {}
            }
            // A user's account appearing or going changes the member lists
            // this app's groups should have.
            if kind == Kind::User
                && rt.policy.groups
                && matches!(op, Plan::Create { .. } | Plan::Delete { .. })
            {
                let groups: Vec<String> =
                    store::find_groups_of(conn, std::slice::from_ref(&job.resource_id))?
                        .into_iter()
                        .map(|g| g.group_id)
                        .collect();
                jobs::enqueue(conn, &job.tenant, &[app.to_string()], &groups, &at)?;
            }
            settle(conn, rt, job, decision, &at)?;
            ("success".to_string(), "success")
        }
        Err(e) => {
            detail["status"] = json!(e.status);
            detail["error"] = json!(e.message);
            detail["error_kind"] = json!(format!("{:?}", e.kind));
            let retry = match &e.kind {
                _ if job.attempts >= rt.settings.max_attempts => Retry::Dead,
                ErrorKind::Transient => Retry::At(later(rt.settings.backoff(job.attempts))),
                ErrorKind::RateLimited(after) => {
                    Retry::At(later(rt.settings.throttle(*after, job.attempts)))
                }
                // A 404 on create means the endpoint is wrong, not that an
                // account vanished: retrying at once would only spin.
                ErrorKind::NotFound if matches!(op, Plan::Create { .. }) => Retry::Dead,
                // The account vanished from the app: forget it (below), so
                // the next attempt creates it again (or finds nothing to delete).
                ErrorKind::NotFound => Retry::At(at.clone()),
                ErrorKind::Rejected | ErrorKind::Unauthorized => Retry::Dead,
            };
            // What the app may hold now: after a timeout or a 5xx it may
            // have acted, so the doubt written before the call stays; after
            // a refusal it did not, so the doubt is what it was before; an
            // account found gone leaves nothing to doubt.
            let inflight = match &e.kind {
                ErrorKind::Transient => None,
                ErrorKind::NotFound if !matches!(op, Plan::Create { .. }) => Some(None),
                _ => Some(job.inflight.as_deref()),
            };
            let dead = matches!(retry, Retry::Dead);
            if dead {
                detail["dead_letter"] = json!(true);
                tracing::warn!(app, id = %job.resource_id, op = name, error = %e, "delivery failed for good: dead letter");
            } else {
                tracing::info!(app, id = %job.resource_id, op = name, error = %e, attempt = job.attempts, "delivery failed; will retry");
            }
            let held = jobs::fail(
                conn,
                job,
                worker,
                &retry,
                &e.to_string(),
                e.status.map(i64::from),
                inflight,
                &at,
            )?;
            if !held {
                return late(conn, o, name, detail, &at);
            }
            if e.kind == ErrorKind::NotFound && !matches!(op, Plan::Create { .. }) {
                store::delete_account(conn, app, &job.resource_id)?;
            }
            let counted = if dead { "dead_letter" } else { "retry" };
            (format!("failure: {}", e.message), counted)
        }
    };
    let (outcome, counted) = outcome;
    store::insert_audit(
        conn,
        &AuditEvent {
            at,
            tenant: Some(job.tenant.clone()),
            actor: "system/delivery".into(),
            action: format!("delivery.{name}"),
            resource_type: Some(kind.name().to_string()),
            resource_id: Some(job.resource_id.clone()),
            outcome,
            detail: Some(detail.to_string()),
            app: Some(app.to_string()),
        },
    )?;
    Ok(Recorded {
        op: Some(name),
        outcome: counted,
    })
}

/// Records an outcome that came after the job's claim passed to another
/// worker (this one's lease ran out during the call). The app may now hold
/// what the call applied, which the new holder cannot know: nothing of it
/// is recorded as applied, the call joins the job's doubt, and the job is
/// due again, so whoever holds it converges from every state the app may be
/// in (see `delivery::doubt`).
fn late(
    conn: &mut AnyConnection,
    o: &Outcome,
    name: &'static str,
    mut detail: Value,
    at: &str,
) -> Result<Recorded, StoreError> {
    let app = o.rt.policy.name.as_str();
    let id = std::slice::from_ref(&o.job.resource_id);
    let prior = jobs::find_job(conn, app, &o.job.resource_id)?
        .and_then(|j| Doubt::parse(j.inflight.as_deref()));
    jobs::enqueue(conn, &o.job.tenant, &[app.to_string()], id, at)?;
    if let Some(d) = Doubt::before_call(prior.as_ref(), &o.decision.plan) {
        jobs::set_inflight(conn, app, &o.job.resource_id, &d.to_json())?;
    }
    tracing::warn!(app, id = %o.job.resource_id, op = name,
        "a delivery finished after its claim had passed to another worker; converging again");
    detail["superseded"] = json!(true);
    store::insert_audit(
        conn,
        &AuditEvent {
            at: at.to_string(),
            tenant: Some(o.job.tenant.clone()),
            actor: "system/delivery".into(),
            action: format!("delivery.{name}"),
            resource_type: o.decision.kind.map(|k| k.name().to_string()),
            resource_id: Some(o.job.resource_id.clone()),
            outcome: SUPERSEDED.into(),
            detail: Some(detail.to_string()),
            app: Some(app.to_string()),
        },
    )?;
    Ok(Recorded {
        op: Some(name),
        outcome: SUPERSEDED,
    })
}
