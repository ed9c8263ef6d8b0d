//! A claimed batch, from decision to adapter call.
//!
//! ```text
//! claimed jobs ─▶ prepare: one read decides them all (decide_batch),
//!                 each plan adjusted for its job's doubt (doubt.rs)
//!              ─▶ safety net: one transaction for the batch's deprovisions
//!              ─▶ one transaction writes what each call may leave (inflight)
//!              ─▶ call (one task per job, concurrently, rate-limited)
//!              ─▶ Outcome ─▶ recorder (record.rs)
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::mpsc::UnboundedSender;

use super::record::Outcome;
use super::{AppRuntime, Shared, Slot};
use crate::adapters::{AdapterError, Applied, ErrorKind, OpContext};
use crate::delivery::converge::Plan;
use crate::delivery::decide::{Decision, decide_batch};
use crate::delivery::doubt::{self, Doubt, Resolved};
use crate::domain::Kind;
use crate::format::{now, timestamp as fmt_time};
use crate::store::jobs::{self, JobRow};
use crate::store::{self, AnyConnection, AuditEvent, StoreError};

/// A claimed job with its decision, ready for its adapter call.
pub(super) struct Prepared {
    job: JobRow,
    decision: Decision,
    /// Whether the app's state is not exactly the recorded one.
    in_doubt: bool,
    /// No account is recorded but a create may have made one: the call
    /// asks the app first (the target and the states a create may have left).
    locate: Option<(Option<serde_json::Value>, Vec<serde_json::Value>)>,
    /// Held while an approved deprovision is not yet recorded.
    ticket: Option<Slot>,
}

impl Prepared {
    fn new(job: JobRow, mut decision: Decision) -> Self {
        let prior = Doubt::parse(job.inflight.as_deref());
        let plan = std::mem::replace(&mut decision.plan, Plan::Noop);
        let (in_doubt, locate) =
            match doubt::resolve(plan, decision.account.as_ref(), prior.as_ref()) {
                Resolved::Plan { plan, in_doubt } => {
                    decision.plan = plan;
                    (in_doubt, None)
                }
                Resolved::Locate {
                    kind,
                    target,
                    states,
                } => {
                    // Until the app answers: what the call may do.
                    decision.plan = match &target {
                        Some(account) => Plan::Create {
                            kind,
                            account: account.clone(),
                        },
                        None => Plan::Noop,
                    };
                    decision.kind = Some(kind);
                    (true, Some((target, states)))
                }
            };
        Self {
            job,
            decision,
            in_doubt,
            locate,
            ticket: None,
        }
    }

    /// What the job's doubt is while its call runs, when the call may act.
    fn inflight(&self) -> Option<String> {
        let prior = Doubt::parse(self.job.inflight.as_deref());
        let acts = self.locate.is_some() || !matches!(self.decision.plan, Plan::Noop);
        let next = Doubt::before_call(prior.as_ref(), &self.decision.plan)?;
        (acts && Some(&next) != prior.as_ref()).then(|| next.to_json())
    }
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
    let prepared: Vec<Prepared> = batch
        .into_iter()
        .zip(decisions)
        .map(|(job, decision)| Prepared::new(job, decision))
        .collect();
    let prepared = safety_net(rt, shared, prepared).await;
    mark_inflight(rt, shared, prepared).await
}

/// Writes, in one transaction, what each call of the batch may leave in
/// the app, before any call is made; a job whose claim was taken over
/// meanwhile is dropped. When the write fails no call is made (the claims'
/// lease brings the jobs back).
async fn mark_inflight(
    rt: &Arc<AppRuntime>,
    shared: &Arc<Shared>,
    prepared: Vec<Prepared>,
) -> Vec<Prepared> {
    let marks: Vec<(usize, JobRow, String)> = prepared
        .iter()
        .enumerate()
        .filter_map(|(i, p)| Some((i, p.job.clone(), p.inflight()?)))
        .collect();
    if marks.is_empty() {
        return prepared;
    }
    let worker = shared.worker.clone();
    let kept = shared
        .db
        .write(move |conn| {
            let mut lost = Vec::new();
            for (i, job, inflight) in &marks {
                if !jobs::mark_inflight(conn, job, &worker, inflight)? {
                    lost.push(*i);
                }
            }
            Ok(lost)
        })
        .await;
    match kept {
        Ok(lost) => prepared
            .into_iter()
            .enumerate()
            .filter(|(i, _)| !lost.contains(i))
            .map(|(_, p)| p)
            .collect(),
        Err(e) => {
            tracing::warn!(app = %rt.policy.name, error = %e, "recording calls under way failed; the jobs will run again");
            Vec::new()
        }
    }
}

/// The mass-deprovisioning safety net for a prepared batch: the jobs it
/// lets through (deprovisions it approved carry their ticket).
async fn safety_net(
    rt: &Arc<AppRuntime>,
    shared: &Arc<Shared>,
    mut prepared: Vec<Prepared>,
) -> Vec<Prepared> {
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

/// How a job's call ended, for the app's circuit breaker (`app_loop`).
pub(super) enum Health {
    Fine,
    Failing,
    Throttled(Duration),
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
        mut decision,
        mut in_doubt,
        locate,
        ticket,
    } = prepared;
    let revision = decision.account.as_ref().map_or(0, |a| a.revision) + 1;
    let started = Instant::now();
    let mut failed = None;
    let mut linked = false;
    if let Some((target, states)) = locate {
        let kind = decision.kind.unwrap_or(Kind::User);
        let ctx = OpContext {
            app: rt.policy.name.clone(),
            identity: job.resource_id.clone(),
            kind,
            revision,
            in_doubt: true,
        };
        match find_any(&*rt.adapter, &ctx, &states).await {
            Ok(found) => {
                linked = found.is_some();
                (decision.plan, in_doubt) = doubt::located(kind, found, target, &states);
            }
            Err(e) => failed = Some(e),
        }
    }
    let result: Option<Result<Applied, AdapterError>> = match &decision.plan {
        _ if failed.is_some() => failed.map(Err),
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
                in_doubt,
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
    let result = result.map(|r| {
        r.map(|mut applied| {
            // An account a create in doubt made, found and brought in line.
            applied.adopted |= linked;
            applied
        })
    });
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

/// Asks the app for an account that one of `states` (newest first) may
/// have made: the first found.
async fn find_any(
    adapter: &dyn crate::adapters::Adapter,
    ctx: &OpContext,
    states: &[serde_json::Value],
) -> Result<Option<String>, AdapterError> {
    for state in states.iter().rev() {
        if let Some(id) = adapter.locate(ctx, state).await? {
            return Ok(Some(id));
        }
    }
    Ok(None)
}
