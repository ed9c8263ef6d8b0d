//! One claimed job: decide, check the safety net, call the adapter, and
//! hand the outcome to [`record`](super::record).

use std::sync::Arc;
use std::time::Instant;

use serde_json::json;

use super::app_loop::Health;
use super::record::{observe, record};
use super::{AppRuntime, Shared};
use crate::adapters::{AdapterError, Applied, ErrorKind, OpContext};
use crate::delivery::converge::Plan;
use crate::delivery::decide::decide;
use crate::format::{now, timestamp as fmt_time};
use crate::scim::service::Kind;
use crate::store::jobs::{self, JobRow};
use crate::store::{self, AnyConnection, AuditEvent, StoreError};

pub(super) async fn run_job(rt: Arc<AppRuntime>, shared: Arc<Shared>, job: JobRow) -> Health {
    let policy = rt.policy.clone();
    let reg = shared.registry.clone();
    let j = job.clone();
    let decision = match shared
        .db
        .run(move |conn| {
            decide(
                conn,
                &reg,
                &policy,
                &j.tenant,
                &j.resource_id,
                chrono::Utc::now(),
            )
        })
        .await
    {
        Ok(d) => d,
        Err(e) => {
            // The claim's lease brings the job back.
            tracing::warn!(app = %rt.policy.name, id = %job.resource_id, error = %e, "reading the identity failed");
            return Health::Fine;
        }
    };
    if rt.policy.safety.armed() && decision.plan.deprovisions() {
        let rt2 = rt.clone();
        let worker = shared.worker.clone();
        let j = job.clone();
        match shared
            .db
            .write(move |conn| safety_check(conn, &rt2, &worker, &j))
            .await
        {
            Ok(true) => {}
            Ok(false) => return Health::Fine, // quarantined: the job waits
            Err(e) => {
                tracing::warn!(app = %rt.policy.name, error = %e, "safety check failed; the job will run again");
                return Health::Fine;
            }
        }
    }
    let op = decision.plan.clone();
    let revision = decision.account.as_ref().map_or(0, |a| a.revision) + 1;
    let ctx = OpContext {
        app: rt.policy.name.clone(),
        identity: job.resource_id.clone(),
        kind: decision.kind.unwrap_or(Kind::User),
        revision,
    };
    let started = Instant::now();
    let result: Option<Result<Applied, AdapterError>> = match &op {
        Plan::Noop => None,
        _ => {
            if let Some(l) = &rt.limiter {
                l.acquire().await;
            }
            let ctx = OpContext {
                kind: match &op {
                    Plan::Create { kind, .. }
                    | Plan::Update { kind, .. }
                    | Plan::Delete { kind, .. } => *kind,
                    Plan::Noop => ctx.kind,
                },
                ..ctx
            };
            Some(match &op {
                Plan::Create { account, .. } => rt.adapter.create(&ctx, account).await,
                Plan::Update {
                    remote_id,
                    before,
                    after,
                    ..
                } => rt.adapter.update(&ctx, remote_id, before, after).await,
                Plan::Delete {
                    remote_id, before, ..
                } => rt.adapter.delete(&ctx, remote_id, before).await,
                Plan::Noop => unreachable!("handled above"),
            })
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
    let rt2 = rt.clone();
    let worker = shared.worker.clone();
    let created_at = job.created_at.clone();
    let recorded = shared
        .db
        .write(move |conn| {
            record(
                conn, &rt2, &worker, &job, &decision, result, revision, latency_ms,
            )
        })
        .await;
    match recorded {
        Ok(r) => observe(&shared.metrics, &rt.policy.name, &r, &created_at),
        Err(e) => {
            tracing::warn!(app = %rt.policy.name, error = %e, "recording a delivery outcome failed; the job will run again");
        }
    }
    health
}

/// The mass-deprovisioning safety net: counts the app's disables and
/// deletes within the window (since the last release), and quarantines the
/// app instead of going over the limit. Returns whether the job may proceed;
/// when it may not, the job is handed back untouched.
fn safety_check(
    conn: &mut AnyConnection,
    rt: &AppRuntime,
    worker: &str,
    job: &JobRow,
) -> Result<bool, StoreError> {
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
    if (done as u64) < limit {
        return Ok(true);
    }
    let at = now();
    let reason = format!(
        "{} {done} disables/deletes since {since} reached the limit of {limit} \
         ({accounts} accounts); release or discard through the admin API",
        jobs::QUARANTINE
    );
    tracing::warn!(app, %reason, "app quarantined");
    jobs::set_paused(conn, app, true, Some(&reason), &at)?;
    jobs::hand_back(conn, job, worker, &at)?;
    store::insert_audit(
        conn,
        &AuditEvent {
            at,
            tenant: Some(job.tenant.clone()),
            actor: "system/delivery".into(),
            action: "lifecycle.quarantine".into(),
            resource_type: None,
            resource_id: Some(job.resource_id.clone()),
            outcome: "held".into(),
            detail: Some(json!({ "reason": reason, "count": done, "limit": limit }).to_string()),
            app: Some(app.to_string()),
        },
    )?;
    Ok(false)
}
