//! Reconciliation on request: lists an app's accounts through its adapter
//! and reports orphans, missing and drifted accounts, repairing them with
//! `remediate` (`crate::delivery::reconcile` does the work and audits it).
//! The admin API and `scim-gateway reconcile` both start it here.

use super::{AdminError, AdminService, Caller};
use crate::delivery::{Report, reconcile};

impl AdminService {
    /// Reconciles `app`, audited as the caller. With `remediate`, wakes the
    /// app's workers to converge what was queued at once.
    pub async fn reconcile_app(
        &self,
        caller: &Caller,
        app: &str,
        remediate: bool,
    ) -> Result<Report, AdminError> {
        let policy = self.known_app(caller, app)?;
        let adapter = self
            .adapters
            .get(app)
            .ok_or_else(|| AdminError::NoAdapter(app.to_string()))?;
        let report = reconcile(
            &self.db,
            &self.registry,
            &policy,
            adapter.as_ref(),
            remediate,
            &caller.actor,
        )
        .await?;
        if remediate {
            self.fanout.wake(app);
        }
        Ok(report)
    }
}
