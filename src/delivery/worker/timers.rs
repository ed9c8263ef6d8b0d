//! The engine's periodic loops: lifecycle timers turned into jobs, and
//! each app's scheduled reconciliation.

use std::sync::Arc;
use std::time::Duration;

use super::{AppRuntime, Shared};
use crate::delivery::Fanout;
use crate::format::now;
use crate::store::jobs;
use crate::store::{self, StoreError, Target};

/// Turns due lifecycle timers (grant expiries, grace periods, end dates)
/// into sync jobs. Taking a timer deletes it in the transaction that
/// enqueues its job, so across processes each timer fires once.
pub(super) async fn timer_loop(shared: Arc<Shared>, fanout: Fanout, poll: Duration) {
    while !shared.stopping() {
        let due = shared
            .db
            .write(|conn| {
                let now = now();
                let timers = store::grants::take_due_timers(conn, &now, 500)?;
                for t in &timers {
                    jobs::enqueue(
                        conn,
                        &t.tenant,
                        std::slice::from_ref(&t.app),
                        std::slice::from_ref(&t.resource_id),
                        &now,
                    )?;
                }
                Ok(timers)
            })
            .await;
        match due {
            Ok(timers) if !timers.is_empty() => {
                for t in &timers {
                    fanout.wake(&t.app);
                }
                if timers.len() == 500 {
                    continue;
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "firing lifecycle timers failed"),
        }
        let next = shared
            .db
            .run(store::grants::next_timer)
            .await
            .ok()
            .flatten();
        let wait = next
            .and_then(|n| chrono::DateTime::parse_from_rfc3339(&n).ok())
            .map(|at| {
                (at.with_timezone(&chrono::Utc) - chrono::Utc::now())
                    .to_std()
                    .unwrap_or(Duration::ZERO)
            })
            .unwrap_or(poll)
            .min(poll);
        if shared.sleep_or_stop(wait).await {
            return;
        }
    }
}

/// Scheduled reconciliation of one app. A run is due `every` after the
/// last one (any process's: the newest `reconcile.run` audit row), at once
/// when there was none, so restarts neither skip nor repeat it. On
/// PostgreSQL the run holds an advisory lock on the app's name and checks
/// again under it, so one process runs it and the others find it done.
pub(super) async fn reconcile_loop(
    rt: Arc<AppRuntime>,
    shared: Arc<Shared>,
    wake: Arc<tokio::sync::Notify>,
    every: Duration,
    remediate: bool,
) {
    let name = rt.policy.name.clone();
    let retry = every.min(Duration::from_secs(60));
    while !shared.stopping() {
        let wait = match reconcile_due_in(&shared, &name, every).await {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(app = %name, error = %e, "reading the last reconciliation failed");
                retry
            }
        };
        if !wait.is_zero() {
            shared.sleep_or_stop(wait).await;
            continue;
        }
        let lock = match shared.db.target() {
            Target::Postgres(url) => {
                let (url, key) = (url.clone(), format!("reconcile:{name}"));
                match tokio::task::spawn_blocking(move || jobs::try_app_lock(&url, &key)).await {
                    Ok(Ok(Some(lock))) => Some(lock),
                    Ok(Ok(None)) => {
                        // Another process is reconciling the app right now.
                        shared.sleep_or_stop(retry).await;
                        continue;
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(app = %name, error = %e, "taking the reconciliation lock failed");
                        shared.sleep_or_stop(retry).await;
                        continue;
                    }
                    Err(e) => {
                        tracing::error!(app = %name, error = %e, "reconciliation lock task failed");
                        shared.sleep_or_stop(retry).await;
                        continue;
                    }
                }
            }
            Target::Sqlite(_) => None,
        };
        if matches!(reconcile_due_in(&shared, &name, every).await, Ok(w) if w.is_zero()) {
            let run = crate::delivery::reconcile::reconcile(
                &shared.db,
                &shared.registry,
                &rt.policy,
                rt.adapter.as_ref(),
                remediate,
                "system/reconcile",
            )
            .await;
            match run {
                Ok(r) => {
                    tracing::info!(app = %name, orphans = r.counts.orphans, missing = r.counts.missing,
                        drifted = r.counts.drifted, remediated = r.counts.remediated, "reconciled");
                    if remediate {
                        wake.notify_one();
                    }
                }
                Err(e) => {
                    tracing::warn!(app = %name, error = %e, "scheduled reconciliation failed")
                }
            }
        }
        if let Some(lock) = lock {
            // Closing its session frees the lock; closing may block briefly.
            let _ = tokio::task::spawn_blocking(move || drop(lock)).await;
        }
    }
}

/// How long until the app's next reconciliation is due (zero: now).
async fn reconcile_due_in(
    shared: &Shared,
    app: &str,
    every: Duration,
) -> Result<Duration, StoreError> {
    let a = app.to_string();
    let last = shared
        .db
        .run(move |c| store::find_last_reconcile(c, &a))
        .await?;
    let Some(at) = last.and_then(|l| chrono::DateTime::parse_from_rfc3339(&l).ok()) else {
        return Ok(Duration::ZERO);
    };
    let since = (chrono::Utc::now() - at.with_timezone(&chrono::Utc))
        .to_std()
        .unwrap_or(Duration::ZERO);
    Ok(every.saturating_sub(since))
}
