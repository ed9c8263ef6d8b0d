//! The mass-deprovisioning safety net's quarantine: an app it paused holds
//! its jobs until an admin releases them all, or discards the held
//! deprovisions first.
//!
//! ```text
//!  release ─▶ resume (reason `released`: the net counts afresh from now)
//!  discard ─▶ every pending job, 500 at a time ─▶ decide() ─▶ would it
//!             disable or delete? ─▶ drop the job ─▶ resume as release does
//! ```

use serde_json::json;

use super::{AdminError, AdminService, AppSummary, Caller, record};
use crate::delivery::decide;
use crate::format::now;
use crate::store::jobs::{self, state};

impl AdminService {
    /// Lets the app's held jobs run, deprovisions included
    /// (`admin.quarantine.release`).
    pub async fn release_quarantine(
        &self,
        caller: &Caller,
        app: &str,
    ) -> Result<AppSummary, AdminError> {
        let policy = self.known_app(caller, app)?;
        let (c, p) = (caller.clone(), policy.clone());
        self.db
            .write(move |conn| {
                jobs::set_paused(conn, &p.name, false, Some(jobs::RELEASED), &now())?;
                record(conn, &c, "admin.quarantine.release", &p, None, json!({}))
            })
            .await?;
        self.fanout.wake(app);
        self.summary(&policy).await
    }

    /// Drops every held job that would disable or delete an account, then
    /// resumes the app (`admin.quarantine.discard`). Those accounts stay as
    /// they are until their identity changes again. Returns the summary and
    /// the identities whose jobs were dropped.
    pub async fn discard_quarantine(
        &self,
        caller: &Caller,
        app: &str,
    ) -> Result<(AppSummary, Vec<String>), AdminError> {
        let policy = self.known_app(caller, app)?;
        let (c, p) = (caller.clone(), policy.clone());
        let reg = self.registry.clone();
        let dropped = self
            .db
            .write(move |conn| {
                let now = chrono::Utc::now();
                let mut dropped = Vec::new();
                let mut after: Option<String> = None;
                loop {
                    let page = jobs::list_jobs(
                        conn,
                        &p.name,
                        Some(state::PENDING),
                        after.as_deref(),
                        500,
                    )?;
                    let Some(last) = page.last() else { break };
                    after = Some(last.resource_id.clone());
                    for job in &page {
                        let d = decide(conn, &reg, &p, &job.tenant, &job.resource_id, now)?;
                        if d.plan.deprovisions() {
                            jobs::delete_pending(conn, &p.name, &job.resource_id)?;
                            dropped.push(job.resource_id.clone());
                        }
                    }
                }
                jobs::set_paused(
                    conn,
                    &p.name,
                    false,
                    Some(jobs::RELEASED),
                    &now.to_rfc3339(),
                )?;
                let detail = json!({ "discarded": dropped.len(), "identities": dropped });
                record(conn, &c, "admin.quarantine.discard", &p, None, detail)?;
                Ok(dropped)
            })
            .await?;
        self.fanout.wake(app);
        Ok((self.summary(&policy).await?, dropped))
    }
}
