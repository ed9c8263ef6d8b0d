//! Apps: their summary (adapter, paused, job counts by state), and pausing
//! and resuming their deliveries.

use serde::Serialize;
use serde::ser::SerializeMap;
use serde_json::json;

use super::{AdminError, AdminService, Caller, record};
use crate::format::now;
use crate::lifecycle::AppPolicy;
use crate::store::jobs::{self, state};

/// An app as the admin sees it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AppSummary {
    /// The app's name.
    pub name: String,
    /// The tenant it draws identities from.
    pub tenant: String,
    /// Whether it has a push adapter.
    pub pushes: bool,
    /// Whether groups are provisioned.
    pub groups: bool,
    /// Whether its deliveries are paused.
    pub paused: bool,
    /// Why (an admin's reason, the safety net's, or `released`).
    pub paused_reason: Option<String>,
    /// Its jobs by state.
    pub jobs: JobCounts,
}

/// Job counts by state: pending, running and dead always (0 when none),
/// then any other state the store holds.
#[derive(Debug, Clone, Default)]
pub struct JobCounts(Vec<(String, i64)>);

impl JobCounts {
    fn from_store(counts: Vec<(String, i64)>) -> Self {
        let mut out: Vec<(String, i64)> = [state::PENDING, state::RUNNING, state::DEAD]
            .iter()
            .map(|s| (s.to_string(), 0))
            .collect();
        for (s, n) in counts {
            match out.iter_mut().find(|(k, _)| *k == s) {
                Some(slot) => slot.1 = n,
                None => out.push((s, n)),
            }
        }
        Self(out)
    }
}

impl Serialize for JobCounts {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (state, n) in &self.0 {
            map.serialize_entry(state, n)?;
        }
        map.end()
    }
}

impl AdminService {
    pub(super) async fn summary(&self, policy: &AppPolicy) -> Result<AppSummary, AdminError> {
        let app = policy.name.clone();
        let (counts, paused) = self
            .db
            .run(move |conn| Ok((jobs::count_by_state(conn, &app)?, jobs::paused(conn, &app)?)))
            .await?;
        let (paused, paused_reason) = paused.unwrap_or((false, None));
        Ok(AppSummary {
            name: policy.name.clone(),
            tenant: policy.tenant.clone(),
            pushes: policy.pushes,
            groups: policy.groups,
            paused,
            paused_reason,
            jobs: JobCounts::from_store(counts),
        })
    }

    /// Every app the caller may see, in configuration order.
    pub async fn list_apps(&self, caller: &Caller) -> Result<Vec<AppSummary>, AdminError> {
        let mut out = Vec::new();
        let apps: Vec<_> = self
            .fanout
            .apps()
            .all()
            .filter(|a| caller.sees_tenant(&a.tenant))
            .cloned()
            .collect();
        for policy in apps {
            out.push(self.summary(&policy).await?);
        }
        Ok(out)
    }

    /// One app.
    pub async fn get_app(&self, caller: &Caller, app: &str) -> Result<AppSummary, AdminError> {
        let policy = self.known_app(caller, app)?;
        self.summary(&policy).await
    }

    /// Stops the app's deliveries (`admin.app.pause`); jobs queue up.
    pub async fn pause_app(
        &self,
        caller: &Caller,
        app: &str,
        reason: Option<String>,
    ) -> Result<AppSummary, AdminError> {
        self.set_paused(caller, app, true, reason).await
    }

    /// Restarts the app's deliveries (`admin.app.resume`) and wakes its workers.
    pub async fn resume_app(&self, caller: &Caller, app: &str) -> Result<AppSummary, AdminError> {
        self.set_paused(caller, app, false, None).await
    }

    async fn set_paused(
        &self,
        caller: &Caller,
        app: &str,
        paused: bool,
        reason: Option<String>,
    ) -> Result<AppSummary, AdminError> {
        let policy = self.known_app(caller, app)?;
        let (c, p) = (caller.clone(), policy.clone());
        self.db
            .write(move |conn| {
                jobs::set_paused(conn, &p.name, paused, reason.as_deref(), &now())?;
                let action = if paused {
                    "admin.app.pause"
                } else {
                    "admin.app.resume"
                };
                record(conn, &c, action, &p, None, json!({ "reason": reason }))
            })
            .await?;
        if !paused {
            self.fanout.wake(app);
        }
        self.summary(&policy).await
    }
}
