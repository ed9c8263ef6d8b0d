//! The delivery engine: a loop per pushing app, the lifecycle timer loop
//! and scheduled reconciliations.
//!
//! ```text
//!  Engine::start ─┬─ app_loop (per app): claim a batch ─▶ prepare ─▶ call × n ─┐
//!                 ├─ recorder (one): outcomes waiting together, one commit ◀──┘
//!                 ├─ reconcile_loop (per app with a schedule)
//!                 └─ timer_loop (grant expiries, grace periods → jobs)
//! ```
//!
//! An app has at most `concurrency` adapter calls in flight, and at most
//! twice that many claimed jobs whose outcome is not yet recorded.
//!
//! Shutdown ([`Engine::shutdown`]): every loop stops claiming, the app
//! loops wait for their in-flight jobs, and whatever is still claimed when
//! the deadline passes is handed back, due at once, for the next process.

mod app_loop;
mod record;
mod run;
mod timers;

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use tokio::sync::{Mutex, watch};

use super::Fanout;
use crate::adapters::Adapter;
use crate::config::{AppSettings, DeliverySettings};
use crate::format::{now, timestamp as fmt_time};
use crate::lifecycle::AppPolicy;
use crate::metrics::Metrics;
use crate::scim::schema::Registry;
use crate::store::jobs;
use crate::store::{Db, StoreError};
use app_loop::app_loop;
use record::recorder;
use timers::{reconcile_loop, timer_loop};

/// Per-app delivery settings after defaults are applied.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// Concurrent adapter calls.
    pub concurrency: usize,
    /// Attempts before a dead letter.
    pub max_attempts: i64,
    /// First retry delay.
    pub backoff_base: Duration,
    /// Longest retry delay.
    pub backoff_max: Duration,
    /// Claim lease.
    pub lease: Duration,
    /// Poll interval for jobs from other processes.
    pub poll: Duration,
    /// Most adapter calls per second.
    pub rate_limit: Option<f64>,
}

impl EngineSettings {
    fn for_app(app: &AppSettings, d: &DeliverySettings) -> Self {
        let timeout = app.timeout_secs.unwrap_or(d.timeout_secs).max(1);
        // A claim must outlast the job's calls (a create that meets a 409
        // makes three, after a look-up when a create was in doubt), or a
        // second worker takes the job over while the first still calls.
        let lease = d.lease_secs.max(1).max(timeout.saturating_mul(4));
        if lease > d.lease_secs {
            tracing::info!(app = %app.name, lease_secs = lease,
                "delivery lease raised to four times the app's timeout");
        }
        Self {
            concurrency: app.concurrency.unwrap_or(d.concurrency).max(1),
            max_attempts: i64::from(app.max_attempts.unwrap_or(d.max_attempts).max(1)),
            backoff_base: Duration::from_millis(d.backoff_base_ms.max(1)),
            backoff_max: Duration::from_secs(d.backoff_max_secs.max(1)),
            lease: Duration::from_secs(lease),
            poll: Duration::from_millis(d.poll_ms.max(10)),
            rate_limit: app.rate_limit_per_sec.filter(|r| *r > 0.0),
        }
    }

    /// How long a 429 holds the app back: its `Retry-After`, or the
    /// backoff when it gave none, never longer than the longest backoff, so
    /// a hostile or broken header cannot stall an app.
    pub fn throttle(&self, retry_after: Option<Duration>, attempts: i64) -> Duration {
        retry_after
            .unwrap_or_else(|| self.backoff(attempts))
            .min(self.backoff_max)
    }

    /// The delay before attempt `attempts + 1`: exponential with jitter
    /// (between half and all of the doubled delay), capped.
    pub fn backoff(&self, attempts: i64) -> Duration {
        let exp = attempts.clamp(1, 30) as u32 - 1;
        let full = self
            .backoff_base
            .saturating_mul(2u32.saturating_pow(exp))
            .min(self.backoff_max);
        let jitter: f64 = rand::rng().random_range(0.5..=1.0);
        full.mul_f64(jitter)
    }
}

/// Spaces adapter calls to at most `rate` per second.
struct RateLimiter {
    interval: Duration,
    next: Mutex<Instant>,
}

impl RateLimiter {
    async fn acquire(&self) {
        let slot = {
            let mut next = self.next.lock().await;
            let now = Instant::now();
            let slot = (*next).max(now);
            *next = slot + self.interval;
            slot
        };
        tokio::time::sleep_until(slot.into()).await;
    }
}

struct AppRuntime {
    policy: Arc<AppPolicy>,
    adapter: Arc<dyn Adapter>,
    settings: EngineSettings,
    limiter: Option<RateLimiter>,
    /// Scheduled reconciliation: how often, and whether it remediates.
    reconcile: Option<(Duration, bool)>,
    /// Claimed jobs whose outcome is not recorded yet.
    unrecorded: Arc<watch::Sender<usize>>,
    /// Deprovisions the safety net let through that are not recorded yet.
    deprovisions: Arc<watch::Sender<usize>>,
}

/// One unit of a per-app count, given back when dropped: it travels with a
/// job until its outcome is recorded (or the job is dropped on the way).
struct Slot(Arc<watch::Sender<usize>>);

impl Slot {
    fn take(count: &Arc<watch::Sender<usize>>) -> Self {
        count.send_modify(|n| *n += 1);
        Slot(count.clone())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

struct Shared {
    db: Db,
    registry: Arc<Registry>,
    worker: String,
    metrics: Metrics,
    /// Turns true when the engine shuts down. Kept here, not in [`Engine`],
    /// so a caller that drops its `Engine` leaves the loops running.
    stop: tokio::sync::watch::Sender<bool>,
}

impl Shared {
    /// Sleeps for `d`, or less when shutdown begins; true when it has.
    async fn sleep_or_stop(&self, d: Duration) -> bool {
        let mut stop = self.stop.subscribe();
        tokio::select! {
            _ = stop.wait_for(|s| *s) => true,
            _ = tokio::time::sleep(d) => false,
        }
    }

    fn stopping(&self) -> bool {
        *self.stop.borrow()
    }
}

/// The delivery engine: one loop per pushing app.
pub struct Engine {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    shared: Arc<Shared>,
}

/// Now plus `d`, as stored; saturates far in the future instead of overflowing.
fn later(d: Duration) -> String {
    let now = chrono::Utc::now();
    let at = chrono::Duration::from_std(d)
        .ok()
        .and_then(|d| now.checked_add_signed(d))
        .unwrap_or_else(|| now + chrono::Duration::days(365 * 100));
    fmt_time(at)
}

impl Engine {
    /// Starts a loop for every app that pushes. On SQLite, where only this
    /// process uses the database, claims left by a previous run (a crash)
    /// are released first so their jobs run again at once.
    pub async fn start(
        db: Db,
        registry: Arc<Registry>,
        fanout: Fanout,
        apps: &[AppSettings],
        defaults: &DeliverySettings,
        metrics: Metrics,
    ) -> anyhow::Result<Self> {
        let mut runtimes = Vec::new();
        for app in apps {
            let Some(adapter) = crate::adapters::build(app, defaults)? else {
                continue;
            };
            let Some(policy) = fanout.apps().get(&app.name).cloned() else {
                continue;
            };
            let settings = EngineSettings::for_app(app, defaults);
            let reconcile = match &app.reconcile_every {
                Some(every) => Some((
                    crate::config::parse_duration(every)
                        .map_err(|e| anyhow::anyhow!("app {}: reconcile_every: {e}", app.name))?
                        .max(Duration::from_secs(1)),
                    app.reconcile_remediate,
                )),
                None => None,
            };
            let limiter = settings.rate_limit.map(|r| RateLimiter {
                interval: Duration::from_secs_f64(1.0 / r),
                next: Mutex::new(Instant::now()),
            });
            runtimes.push(AppRuntime {
                policy,
                adapter,
                settings,
                limiter,
                reconcile,
                unrecorded: Arc::new(watch::Sender::new(0)),
                deprovisions: Arc::new(watch::Sender::new(0)),
            });
        }
        if !db.target().is_postgres() {
            let released = db
                .write(|conn| jobs::release_all_claims(conn, &now()))
                .await?;
            if released > 0 {
                tracing::info!(released, "released delivery claims left by a previous run");
            }
        }
        let shared = Arc::new(Shared {
            db,
            registry,
            worker: format!(
                "{}-{}",
                std::process::id(),
                &uuid::Uuid::new_v4().simple().to_string()[..8]
            ),
            metrics,
            stop: tokio::sync::watch::Sender::new(false),
        });
        let poll = Duration::from_millis(defaults.poll_ms.max(10));
        let mut tasks = Vec::new();
        // The recorder ends once the app loops and their calls, which hold
        // the senders, are done: shutdown then waits for it too.
        let (outcomes, queue) = tokio::sync::mpsc::unbounded_channel();
        tasks.push(tokio::spawn(recorder(shared.clone(), queue)));
        for rt in runtimes {
            let wake = fanout.waker(&rt.policy.name);
            let rt = Arc::new(rt);
            if let Some((every, remediate)) = rt.reconcile {
                tasks.push(tokio::spawn(reconcile_loop(
                    rt.clone(),
                    shared.clone(),
                    wake.clone(),
                    every,
                    remediate,
                )));
            }
            tasks.push(tokio::spawn(app_loop(
                rt,
                shared.clone(),
                wake,
                outcomes.clone(),
            )));
        }
        tasks.push(tokio::spawn(timer_loop(shared.clone(), fanout, poll)));
        Ok(Self { tasks, shared })
    }

    /// Stops every loop (in-flight calls are abandoned; their claims expire).
    pub fn abort(&self) {
        for t in &self.tasks {
            t.abort();
        }
    }

    /// Shuts delivery down: no loop claims anything more, in-flight jobs
    /// (adapter calls and their recording) get until `deadline` to finish,
    /// then the rest are abandoned and every claim this process still holds
    /// is handed back, due at once. Returns how many were handed back.
    pub async fn shutdown(self, deadline: Duration) -> Result<usize, StoreError> {
        self.shared.stop.send_replace(true);
        let mut tasks = self.tasks;
        let finished =
            tokio::time::timeout(deadline, futures_util::future::join_all(tasks.iter_mut())).await;
        if finished.is_err() {
            tracing::warn!(
                deadline_secs = deadline.as_secs_f64(),
                "delivery did not finish within the shutdown deadline; abandoning in-flight jobs"
            );
            // Those the join already finished have given up their output.
            let left: Vec<_> = tasks.into_iter().filter(|t| !t.is_finished()).collect();
            for t in &left {
                t.abort();
            }
            for t in left {
                let _ = t.await;
            }
        }
        let worker = self.shared.worker.clone();
        let released = self
            .shared
            .db
            .write(move |conn| jobs::release_claims(conn, &worker, &now()))
            .await?;
        tracing::info!(released, "delivery stopped");
        Ok(released)
    }
}
