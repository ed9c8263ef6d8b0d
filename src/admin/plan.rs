//! Plan preview: what a candidate configuration (its `[[apps]]`,
//! `[[rules]]` and `[lifecycle]`) would do to every app, against the
//! current identities and the state last applied to each app, performing
//! nothing. `POST /admin/plan` and `scim-gateway plan` both answer it.
//!
//! ```text
//!  candidate TOML ─▶ Settings ─▶ compile_candidate ─▶ Apps
//!      ─▶ plan: delivery::preview (the workers' own decision) per app
//!             + the current apps the candidate no longer has (unmanaged)
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{AdminError, AdminService, Caller};
use crate::config::Settings;
use crate::delivery::preview::{AppPreview, preview};
use crate::lifecycle::Apps;
use crate::scim::schema::Registry;
use crate::store::{AnyConnection, StoreError};

/// What a candidate would do: the operations per app, and the current apps
/// it no longer has.
#[derive(Debug)]
pub struct PlanOutcome {
    /// The operations per app of the candidate.
    pub apps: BTreeMap<String, AppPreview>,
    /// Apps the candidate drops: the gateway would stop managing them and
    /// leave their accounts as they are.
    pub unmanaged: Vec<String>,
}

impl PlanOutcome {
    /// Whether the candidate would change anything downstream.
    pub fn changes(&self) -> bool {
        self.apps.values().any(|a| !a.operations.is_empty())
    }
}

/// Compiles the candidate's apps and rules against `registry`.
pub fn compile_candidate(registry: &Registry, candidate: &Settings) -> Result<Apps, AdminError> {
    Apps::compile(
        registry,
        &candidate.apps,
        &candidate.rules,
        &candidate.lifecycle,
    )
    .map_err(AdminError::Candidate)
}

/// The plan of the compiled `candidate` against the database, given the
/// names of the apps configured now.
pub fn plan(
    conn: &mut AnyConnection,
    registry: &Registry,
    candidate: &Apps,
    current: &[String],
) -> Result<PlanOutcome, StoreError> {
    let apps = preview(conn, registry, candidate)?;
    let unmanaged = current
        .iter()
        .filter(|name| candidate.get(name).is_none())
        .cloned()
        .collect();
    Ok(PlanOutcome { apps, unmanaged })
}

impl AdminService {
    /// The plan of a candidate configuration given as TOML text. It concerns
    /// every tenant, so a tenant-scoped caller is refused.
    pub async fn plan(&self, caller: &Caller, toml: &[u8]) -> Result<PlanOutcome, AdminError> {
        caller.require_all_tenants()?;
        let text = std::str::from_utf8(toml).map_err(|_| AdminError::ConfigEncoding)?;
        let candidate = Settings::parse(text).map_err(AdminError::ConfigSyntax)?;
        let apps = Arc::new(compile_candidate(&self.registry, &candidate)?);
        let current: Vec<String> = self.fanout.apps().all().map(|a| a.name.clone()).collect();
        let reg = self.registry.clone();
        Ok(self
            .db
            .run(move |conn| plan(conn, &reg, &apps, &current))
            .await?)
    }
}
