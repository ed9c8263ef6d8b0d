//! A claimed batch, from decision to adapter call.
//!
//! ```text
//! claimed jobs ─▶ prepare: one read decides them all (decide_batch)
//!              ─▶ safety net: one transaction for the batch's deprovisions
//!              ─▶ call (one task per job, concurrently, rate-limited)
//!              ─▶ Outcome ─▶ recorder (record.rs)
//! ```

use std::sync::Arc;
use std::time::Instant;

use serde_json::json;
use tokio::sync::mpsc::UnboundedSender;

use super::app_loop::Health;
use super::record::Outcome;
use super::{AppRuntime, Shared, Slot};
use crate::adapters::{AdapterError, Applied, ErrorKind, OpContext};
use crate::delivery::converge::Plan;
use crate::delivery::decide::{Decision, decide_batch};
use crate::format::{now, timestamp as fmt_time};
use crate::scim::service::Kind;
use crate::store::jobs::{self, JobRow};
use crate::store::{self, AnyConnection, AuditEvent, StoreError};

/// A claimed job with its decision, ready for its adapter call.
pub(super) struct Prepared {
    job: JobRow,
    decision: Decision,
    /// Held while an approved deprovision is not yet recorded.
    ticket: Option<Slot>,
}

/// Decides every job of a claimed batch with one read, then lets the
/// safety net look at the batch's deprovisions in one transaction. Jobs it
/// holds back are handed back in that transaction; jobs whose decision
/// could not be read stay claimed, and their lease brings them back.
pub(super) async fn prepare(
    rt: &Arc<AppRuntime>,
    shared: &Arc<Shared>,
    batch: Vec<JobRow>,
) -> Vec<Prepared> {
    let policy = rt.policy.clone();
    let reg = shared.registry.clone();
    let items: Vec<(String, String)> = batch
        .iter()
        .map(|j| (j.tenant.clone(), j.resource_id.clone()))
        .collect();
    let decisions = shared
        .db
        .run(move |conn| decide_batch(conn, &reg, &policy, &items, chrono::Utc::now()))
        .await;
    let decisions = match decisions {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(app = %rt.policy.name, jobs = batch.len(), error = %e, "reading the identities failed");
            return Vec::new();
        }
    };
    let mut prepared: Vec<Prepared> = batch
        .into_iter()
        .zip(decisions)
        .map(|(job, decision)| Prepared {
            job,
            decision,
            ticket: None,
        })
        .collect();
    if !rt.policy.safety.armed() || !prepared.iter().any(|p| p.decision.plan.deprovisions()) {
        return prepared;
    }
    // Deprovisions already approved count once recorded; until then the
    // audit trail does not show them, so wait for them first.
    let mut unrecorded = rt.deprovisions.subscribe();
    let mut stop = shared.stop.subscribe();
    tokio::select! {
        _ = unrecorded.wait_for(|n| *n == 0) => {}
        // Shutting down: the claims are handed back.
        _ = stop.wait_for(|s| *s) => return Vec::new(),
    }
    let held: Vec<JobRow> = prepared
        .iter()
        .filter(|p| p.decision.plan.deprovisions())
        .map(|p| p.job.clone())
        .collect();
    let (rt2, worker) = (rt.clone(), shared.worker.clone());
    let verdict = shared
        .db
        .write(move |conn| safety_check(conn, &rt2, &worker, &held))
        .await;
    let allowed = match verdict {
        Ok(allowed) => allowed,
        Err(e) => {
            tracing::warn!(app = %rt.policy.name, error = %e, "safety check failed; the jobs will run again");
            // Only what the check did not concern goes ahead.
            return prepared
                .into_iter()
                .filter(|p| !p.decision.plan.deprovisions())
                .collect();
        }
    };
    let mut verdicts = allowed.into_iter();
    prepared.retain_mut(|p| {
        if !p.decision.plan.deprovisions() {
            return true;
        }
        let ok = verdicts.next().unwrap_or(false);
        if ok {
            p.ticket = Some(Slot::take(&rt.deprovisions));
        }
        ok
    });
    prepared
}

/// The mass-deprovisioning safety net for the deprovisions of a batch:
/// counts the app's disables and deletes within the window (since the last
/// release), lets through as many as the limit leaves room for, and
/// quarantines the app instead of going over it. Returns, per job, whether
/// it may proceed; a job that may not is handed back untouched.
fn safety_check(
    conn: &mut AnyConnection,
    rt: &AppRuntime,
    worker: &str,
    jobs: &[JobRow],
) -> Result<Vec<bool>, StoreError> {
    let app = rt.policy.name.as_str();
    let safety = &rt.policy.safety;
    let window_start = fmt_time(
        chrono::Utc::now()
            - chrono::Duration::from_std(safety.window).unwrap_or(chrono::Duration::hours(1)),
    );
    let since = match jobs::released_at(conn, app)? {
        Some(r) if r > window_start => r,
        _ => window_start,
    };
    let done = store::count_deprovisions(conn, app, &since)?;
    let accounts = store::count_accounts(conn, app)?;
    let limit = safety.limit(accounts as u64);
    let room = limit.saturating_sub(done as u64) as usize;
    let verdicts: Vec<bool> = (0..jobs.len()).map(|i| i < room).collect();
    if room >= jobs.len() {
        return Ok(verdicts);
    }
    let at = now();
    let reason = format!(
        "{} {done} disables/deletes since {since} reached the limit of {limit} \
         ({accounts} accounts); release or discard through the admin API",
        jobs::QUARANTINE
    );
    tracing::warn!(app, %reason, "app quarantined");
    jobs::set_paused(conn, app, true, Some(&reason), &at)?;
    for job in &jobs[room..] {
        jobs::hand_back(conn, job, worker, &at)?;
        store::insert_audit(
            conn,
            &AuditEvent {
                at: at.clone(),
                tenant: Some(job.tenant.clone()),
                actor: "system/delivery".into(),
                action: "lifecycle.quarantine".into(),
                resource_type: None,
                resource_id: Some(job.resource_id.clone()),
                outcome: "held".into(),
                detail: Some(
                    json!({ "reason": reason, "count": done, "limit": limit }).to_string(),
                ),
                app: Some(app.to_string()),
            },
        )?;
    }
    Ok(verdicts)
}

/// Carries out one prepared job's operation (waiting for the app's rate
/// limit first) and hands the outcome to the recorder. Returns how the app
/// fared, for its circuit breaker; `slot` travels with the outcome until
/// it is recorded.
pub(super) async fn call(
    rt: Arc<AppRuntime>,
    prepared: Prepared,
    slot: Slot,
    recorder: UnboundedSender<Outcome>,
) -> Health {
    let Prepared {
        job,
        decision,
        ticket,
    } = prepared;
    let revision = decision.account.as_ref().map_or(0, |a| a.revision) + 1;
    let started = Instant::now();
    let result: Option<Result<Applied, AdapterError>> = match &decision.plan {
        Plan::Noop => None,
        op => {
            if let Some(l) = &rt.limiter {
                l.acquire().await;
            }
            let kind = match op {
                Plan::Create { kind, .. }
                | Plan::Update { kind, .. }
                | Plan::Delete { kind, .. } => *kind,
                Plan::Noop => decision.kind.unwrap_or(Kind::User),
            };
            let ctx = OpContext {
                app: rt.policy.name.clone(),
                identity: job.resource_id.clone(),
                kind,
                revision,
            };
            match op {
                Plan::Create { account, .. } => Some(rt.adapter.create(&ctx, account).await),
                Plan::Update {
                    remote_id,
                    before,
                    after,
                    ..
                } => Some(rt.adapter.update(&ctx, remote_id, before, after).await),
                Plan::Delete {
                    remote_id, before, ..
                } => Some(rt.adapter.delete(&ctx, remote_id, before).await),
                Plan::Noop => None,
            }
        }
    };
    let latency_ms = started.elapsed().as_millis() as u64;
    let health = match &result {
        None | Some(Ok(_)) => Health::Fine,
        Some(Err(e)) => match &e.kind {
            ErrorKind::Transient => Health::Failing,
            ErrorKind::RateLimited(after) => {
                Health::Throttled(rt.settings.throttle(*after, job.attempts))
            }
            _ => Health::Fine,
        },
    };
    let outcome = Outcome {
        rt: rt.clone(),
        job,
        decision,
        result,
        revision,
        latency_ms,
        _slots: (slot, ticket),
    };
    if recorder.send(outcome).is_err() {
        // The engine was aborted: the claim's lease brings the job back.
        tracing::warn!(app = %rt.policy.name, "delivery recorder gone; the job will run again");
    }
    health
}
