//! The admin service: every admin use case, once. The admin API
//! (`crate::http::admin`) and the CLI (`crate::commands`) are thin faces of
//! it: they parse their input, call one function here and render what it
//! returns, so the two cannot drift apart.
//!
//! ```text
//!  http::admin  (JSON over HTTP) ─┐
//!                                 ├─▶ AdminService ─▶ store · delivery · lifecycle
//!  commands     (CLI, text/files) ┘        │
//!                                          └─▶ one audit row per action (record)
//! ```
//!
//! A [`Caller`] says who acts (the audit rows' actor) and which tenant it
//! is limited to: an app of another tenant is as absent as one that does
//! not exist. Results are domain values ([`AppSummary`], [`JobPage`],
//! [`PlanOutcome`], a reconciliation `Report`, …); failures are
//! [`AdminError`], which `crate::error` turns into the wire error.
//!
//! This module may use the layers below it (store, delivery, lifecycle,
//! scim, audit, config) and never `http` or `commands`.

mod apps;
mod error;
mod jobs;
mod plan;
mod quarantine;
mod reconcile;
mod reports;

use std::sync::Arc;

use serde_json::Value;

use crate::delivery::{AppAdapters, Fanout};
use crate::format::now;
use crate::lifecycle::AppPolicy;
use crate::scim::schema::Registry;
use crate::store::{self, AnyConnection, AuditEvent, Db, StoreError};

pub use apps::{AppSummary, JobCounts};
pub use error::AdminError;
pub use jobs::{JobFilter, JobPage};
pub use plan::{PlanOutcome, compile_candidate, plan};
pub use reports::{AccessReport, write_access_report};

/// Who asks for an admin action.
#[derive(Debug, Clone)]
pub struct Caller {
    /// How audit rows name the caller (`admin/<token>`, `cli/<user>`, …).
    pub actor: String,
    /// When set, the caller sees and acts on this tenant's apps and data only.
    pub tenant: Option<String>,
}

impl Caller {
    /// A caller that may act on every tenant (the command line).
    pub fn unrestricted(actor: impl Into<String>) -> Self {
        Self {
            actor: actor.into(),
            tenant: None,
        }
    }

    /// Whether the caller may see data of `tenant`.
    pub fn sees_tenant(&self, tenant: &str) -> bool {
        self.tenant.as_deref().is_none_or(|t| t == tenant)
    }

    /// The tenant filter to apply: the caller's own for a tenant-scoped
    /// caller (refused when the request asks for another), else the request's.
    pub fn tenant_filter(&self, requested: Option<String>) -> Result<Option<String>, AdminError> {
        match (&self.tenant, requested) {
            (None, requested) => Ok(requested),
            (Some(own), Some(requested)) if *own != requested => {
                Err(AdminError::OtherTenant(own.clone()))
            }
            (Some(own), _) => Ok(Some(own.clone())),
        }
    }

    /// Refused unless the caller may act on every tenant.
    pub fn require_all_tenants(&self) -> Result<(), AdminError> {
        match &self.tenant {
            None => Ok(()),
            Some(own) => Err(AdminError::AllTenants(own.clone())),
        }
    }
}

/// What the admin use cases work on: the store, the schemas, the configured
/// apps (with their workers' wake-ups) and the apps' adapters.
#[derive(Clone)]
pub struct AdminService {
    db: Db,
    registry: Arc<Registry>,
    fanout: Fanout,
    adapters: AppAdapters,
}

impl AdminService {
    /// The service over a gateway's parts.
    pub fn new(db: Db, registry: Arc<Registry>, fanout: Fanout, adapters: AppAdapters) -> Self {
        Self {
            db,
            registry,
            fanout,
            adapters,
        }
    }

    /// The app, if the caller may see it.
    fn known_app(&self, caller: &Caller, app: &str) -> Result<Arc<AppPolicy>, AdminError> {
        self.fanout
            .apps()
            .get(app)
            .filter(|policy| caller.sees_tenant(&policy.tenant))
            .cloned()
            .ok_or_else(|| AdminError::UnknownApp(app.to_string()))
    }
}

/// Writes the audit row of an admin action on an app, in the caller's
/// transaction. The row carries the app's tenant, so an auditor limited to
/// that tenant sees it.
fn record(
    conn: &mut AnyConnection,
    caller: &Caller,
    action: &str,
    app: &AppPolicy,
    id: Option<&str>,
    detail: Value,
) -> Result<(), StoreError> {
    store::insert_audit(
        conn,
        &AuditEvent {
            at: now(),
            tenant: Some(app.tenant.clone()),
            actor: caller.actor.clone(),
            action: action.to_string(),
            resource_type: None,
            resource_id: id.map(str::to_string),
            outcome: "success".into(),
            detail: Some(detail.to_string()),
            app: Some(app.name.clone()),
        },
    )
}
