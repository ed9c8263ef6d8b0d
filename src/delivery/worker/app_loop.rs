//! One app's loop: claim due jobs while the app has free slots, run each,
//! and let the outcomes steer the app's circuit breaker.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use super::run::run_job;
use super::{AppRuntime, EngineSettings, Shared, later};
use crate::format::now;
use crate::store::jobs;

/// How a job ended, for the app's circuit breaker.
pub(super) enum Health {
    Fine,
    Failing,
    Throttled(Duration),
}

/// The app's circuit breaker: after a transient failure the app's loop
/// claims nothing for a growing pause (at most 30 s), after a 429 for the
/// time the app asked; a success closes it again.
#[derive(Default)]
struct Breaker {
    failures: i64,
    blocked_until: Option<Instant>,
}

impl Breaker {
    fn observe(
        &mut self,
        done: Result<Health, tokio::task::JoinError>,
        settings: &EngineSettings,
        app: &str,
    ) {
        match done {
            Ok(Health::Fine) => self.failures = 0,
            Ok(Health::Failing) => {
                self.failures += 1;
                let pause = settings.backoff(self.failures).min(Duration::from_secs(30));
                self.blocked_until = Some(Instant::now() + pause);
            }
            Ok(Health::Throttled(d)) => self.blocked_until = Instant::now().checked_add(d),
            Err(e) => tracing::error!(app, error = %e, "delivery task failed"),
        }
    }
}

pub(super) async fn app_loop(
    rt: Arc<AppRuntime>,
    shared: Arc<Shared>,
    wake: Arc<tokio::sync::Notify>,
) {
    let name = rt.policy.name.clone();
    let mut running: JoinSet<Health> = JoinSet::new();
    let mut breaker = Breaker::default();
    let mut stop = shared.stop.subscribe();
    while !shared.stopping() {
        // Collect what finished and let it steer the breaker.
        while let Some(done) = running.try_join_next() {
            breaker.observe(done, &rt.settings, &name);
        }
        let blocked_until = breaker.blocked_until;
        let blocked = blocked_until.is_some_and(|b| b > Instant::now());
        let free = rt.settings.concurrency.saturating_sub(running.len());
        let mut claimed = 0;
        if !blocked && free > 0 {
            let app = name.clone();
            let worker = shared.worker.clone();
            let lease = rt.settings.lease;
            let result = shared
                .db
                .write(move |conn| {
                    let now = now();
                    jobs::claim(conn, &app, &worker, free as i64, &now, &later(lease))
                })
                .await;
            match result {
                Ok(batch) => {
                    claimed = batch.len();
                    for job in batch {
                        running.spawn(run_job(rt.clone(), shared.clone(), job));
                    }
                }
                Err(e) => {
                    tracing::warn!(app = %name, error = %e, "claiming delivery jobs failed");
                    shared.sleep_or_stop(rt.settings.poll).await;
                    continue;
                }
            }
        }
        if claimed > 0 && running.len() < rt.settings.concurrency {
            continue;
        }
        // Wait for a finished job, a wake-up, the breaker, or the next due job.
        let mut wait = rt.settings.poll;
        if let Some(b) = blocked_until {
            wait = wait.min(b.saturating_duration_since(Instant::now()));
        } else if running.is_empty() {
            let app = name.clone();
            if let Ok(Some(due)) = shared.db.run(move |c| jobs::next_due(c, &app)).await
                && let Ok(at) = chrono::DateTime::parse_from_rfc3339(&due)
            {
                let d = (at.with_timezone(&chrono::Utc) - chrono::Utc::now())
                    .to_std()
                    .unwrap_or(Duration::ZERO);
                wait = wait.min(d);
            }
        }
        if running.is_empty() || blocked || free == 0 || claimed == 0 {
            tokio::select! {
                _ = wake.notified(), if !blocked => {}
                _ = tokio::time::sleep(wait) => {}
                _ = stop.wait_for(|s| *s) => {}
                Some(done) = running.join_next(), if !running.is_empty() => {
                    breaker.observe(done, &rt.settings, &name);
                }
            }
        }
    }
    // Shutting down: claim nothing more, let what runs finish (the engine
    // abandons it at its deadline).
    if !running.is_empty() {
        tracing::info!(app = %name, in_flight = running.len(), "waiting for in-flight deliveries");
    }
    while let Some(done) = running.join_next().await {
        breaker.observe(done, &rt.settings, &name);
    }
}
