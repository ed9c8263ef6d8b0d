//! Delivery: converging every downstream app with the identity store.
//!
//! ```text
//!  SCIM write ─(same transaction)─▶ sync_jobs (app, identity) ─▶ app loop claims
//!     ─▶ converge: desired account (lifecycle) vs. last applied (app_accounts)
//!     ─▶ adapter create / update / delete ─▶ one transaction: applied state,
//!        audit row, job done (or retry at a backoff, or dead letter)
//! ```
//!
//! Each app has its own loop with its own concurrency, rate limit and
//! circuit breaker, so a slow or failing app never holds up the others.
//! Jobs are level-triggered: a retry recomputes the diff from the current
//! identity, so retries are idempotent and changes coalesce.

mod converge;
mod decide;
mod doubt;
pub mod preview;
pub mod reconcile;
mod worker;

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::Notify;

use crate::lifecycle::Apps;

pub use converge::{Plan, Want, plan};
pub use decide::{Decision, decide};
pub use reconcile::{AppAdapters, ReconcileError, Report, reconcile};
pub use worker::{Engine, EngineSettings};

/// What the write path needs from delivery: which apps a tenant's changes
/// feed, and a way to wake their workers after commit.
#[derive(Clone, Default)]
pub struct Fanout {
    apps: Arc<Apps>,
    wakers: Arc<HashMap<String, Arc<Notify>>>,
}

impl Fanout {
    /// Fan-out for the configured apps.
    pub fn new(apps: Arc<Apps>) -> Self {
        let wakers = apps
            .all()
            .map(|a| (a.name.clone(), Arc::new(Notify::new())))
            .collect();
        Self {
            apps,
            wakers: Arc::new(wakers),
        }
    }

    /// The configured apps.
    pub fn apps(&self) -> &Arc<Apps> {
        &self.apps
    }

    /// Apps that must converge after a change in `tenant`.
    pub fn pushing(&self, tenant: &str) -> &[String] {
        self.apps.pushing(tenant)
    }

    /// Wakes the workers of every app fed by `tenant` (after a commit).
    pub fn wake_tenant(&self, tenant: &str) {
        for app in self.apps.pushing(tenant) {
            self.wake(app);
        }
    }

    /// Wakes one app's workers.
    pub fn wake(&self, app: &str) {
        if let Some(n) = self.wakers.get(app) {
            n.notify_one();
        }
    }

    fn waker(&self, app: &str) -> Arc<Notify> {
        self.wakers.get(app).cloned().unwrap_or_default()
    }
}
