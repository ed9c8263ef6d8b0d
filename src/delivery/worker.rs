//! The app loops: claim due jobs, converge each, record the outcome.
//!
//! Shutdown ([`Engine::shutdown`]): every loop stops claiming, the app
//! loops wait for their in-flight jobs, and whatever is still claimed when
//! the deadline passes is handed back, due at once, for the next process.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use serde_json::{Value, json};
use tokio::sync::Mutex;
use tokio::task::JoinSet;

use super::Fanout;
use super::converge::{Plan, is_active};
use super::decide::{Decision, decide};
use crate::adapters::{Adapter, AdapterError, Applied, ErrorKind, OpContext};
use crate::config::{AppSettings, DeliverySettings};
use crate::format::{now, timestamp as fmt_time};
use crate::lifecycle::AppPolicy;
use crate::lifecycle::grants::Revocation;
use crate::metrics::Metrics;
use crate::scim::schema::Registry;
use crate::scim::service::Kind;
use crate::store::grants::GrantRow;
use crate::store::jobs::{self, JobRow, Retry};
use crate::store::{
    self, AccountRow, AnyConnection, AuditEvent, Db, StoreError, Target, account_status,
};

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
        Self {
            concurrency: app.concurrency.unwrap_or(d.concurrency).max(1),
            max_attempts: i64::from(app.max_attempts.unwrap_or(d.max_attempts).max(1)),
            backoff_base: Duration::from_millis(d.backoff_base_ms.max(1)),
            backoff_max: Duration::from_secs(d.backoff_max_secs.max(1)),
            lease: Duration::from_secs(d.lease_secs.max(1)),
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
            tasks.push(tokio::spawn(app_loop(rt, shared.clone(), wake)));
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

/// Turns due lifecycle timers (grant expiries, grace periods, end dates)
/// into sync jobs. Taking a timer deletes it in the transaction that
/// enqueues its job, so across processes each timer fires once.
async fn timer_loop(shared: Arc<Shared>, fanout: Fanout, poll: Duration) {
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
async fn reconcile_loop(
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
            let run = super::reconcile::reconcile(
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

/// How a job ended, for the app's circuit breaker.
enum Health {
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

async fn app_loop(rt: Arc<AppRuntime>, shared: Arc<Shared>, wake: Arc<tokio::sync::Notify>) {
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

async fn run_job(rt: Arc<AppRuntime>, shared: Arc<Shared>, job: JobRow) -> Health {
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

#[expect(clippy::too_many_arguments, reason = "one outcome, many parts")]
fn record(
    conn: &mut AnyConnection,
    rt: &AppRuntime,
    worker: &str,
    job: &JobRow,
    decision: &Decision,
    result: Option<Result<Applied, AdapterError>>,
    revision: i64,
    latency_ms: u64,
) -> Result<Recorded, StoreError> {
    let at = now();
    let app = rt.policy.name.as_str();
    let op = &decision.plan;
    let Some(result) = result else {
        // Already converged: the grant bookkeeping may still move on.
        settle(conn, rt, job, decision, &at)?;
        jobs::complete(conn, job, worker, &at)?;
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
    let outcome = match &result {
        Ok(applied) => {
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
            jobs::complete(conn, job, worker, &at)?;
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
                ErrorKind::NotFound => {
                    // The account vanished from the app: forget it, so the
                    // next attempt creates it again (or finds nothing to delete).
                    store::delete_account(conn, app, &job.resource_id)?;
                    Retry::At(at.clone())
                }
                ErrorKind::Rejected | ErrorKind::Unauthorized => Retry::Dead,
            };
            let dead = matches!(retry, Retry::Dead);
            if dead {
                detail["dead_letter"] = json!(true);
                tracing::warn!(app, id = %job.resource_id, op = name, error = %e, "delivery failed for good: dead letter");
            } else {
                tracing::info!(app, id = %job.resource_id, op = name, error = %e, attempt = job.attempts, "delivery failed; will retry");
            }
            jobs::fail(
                conn,
                job,
                worker,
                &retry,
                &e.to_string(),
                e.status.map(i64::from),
                &at,
            )?;
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
