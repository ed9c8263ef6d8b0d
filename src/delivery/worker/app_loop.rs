//! One app's loop: claim due jobs in batches while the app has room, start
//! their adapter calls, and let the calls' outcomes steer the app's
//! circuit breaker.
//!
//! Room is the smaller of the free call slots (`concurrency` minus calls
//! in flight) and the room among unrecorded jobs (twice `concurrency`),
//! so a slow recorder holds claiming back instead of piling up claims.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use tokio::sync::mpsc::UnboundedSender;

use super::record::Outcome;
use super::run::{Health, call, prepare};
use super::{AppRuntime, EngineSettings, Shared, Slot, later};
use crate::format::now;
use crate::store::jobs;

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
    recorder: UnboundedSender<Outcome>,
) {
    let name = rt.policy.name.clone();
    let concurrency = rt.settings.concurrency;
    let most_unrecorded = 2 * concurrency;
    let mut running: JoinSet<Health> = JoinSet::new();
    let mut breaker = Breaker::default();
    let mut stop = shared.stop.subscribe();
    let mut unrecorded = rt.unrecorded.subscribe();
    while !shared.stopping() {
        // Collect what finished and let it steer the breaker.
        while let Some(done) = running.try_join_next() {
            breaker.observe(done, &rt.settings, &name);
        }
        let blocked_until = breaker.blocked_until;
        let blocked = blocked_until.is_some_and(|b| b > Instant::now());
        let room = most_unrecorded.saturating_sub(*unrecorded.borrow_and_update());
        let full = room == 0;
        let mut free = concurrency.saturating_sub(running.len()).min(room);
        if let Some(rate) = rt.settings.rate_limit {
            // No more than the rate limit lets through in half a lease: a
            // job waiting for its turn must not outlive its claim.
            let within = (rate * rt.settings.lease.as_secs_f64() / 2.0).floor() as usize;
            free = free.min(within.max(1));
        }
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
                    if claimed > 0 {
                        for p in prepare(&rt, &shared, batch).await {
                            let slot = Slot::take(&rt.unrecorded);
                            running.spawn(call(rt.clone(), p, slot, recorder.clone()));
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(app = %name, error = %e, "claiming delivery jobs failed");
                    shared.sleep_or_stop(rt.settings.poll).await;
                    continue;
                }
            }
        }
        // A full batch: more may be due, claim again while there is room.
        if claimed > 0 && claimed == free {
            continue;
        }
        // Wait for a finished call, a recorded outcome when the unrecorded
        // jobs are what holds claiming back, a wake-up, the breaker, or the
        // next due job.
        let mut wait = rt.settings.poll;
        if let Some(b) = blocked_until {
            wait = wait.min(b.saturating_duration_since(Instant::now()));
        } else if running.is_empty() && !full {
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
        tokio::select! {
            _ = wake.notified(), if !blocked => {}
            _ = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|s| *s) => {}
            _ = unrecorded.changed(), if full => {}
            Some(done) = running.join_next(), if !running.is_empty() => {
                breaker.observe(done, &rt.settings, &name);
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
