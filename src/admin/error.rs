//! Why an admin action was refused or failed. Each face renders it its own
//! way: the admin API through the one conversion into [`ScimError`] in
//! `crate::error` (status, `scimType`, detail), the CLI as a message.
//!
//! [`ScimError`]: crate::error::ScimError

use crate::delivery::ReconcileError;
use crate::store::StoreError;

/// An admin action that could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// No app of that name, or one of a tenant the caller may not see.
    #[error("No app is named '{0}'.")]
    UnknownApp(String),
    /// The identity has no job in the app.
    #[error("No job for this identity in this app (none pending, running or dead).")]
    NoJob,
    /// The identity has no account in the app.
    #[error("This identity has no account in this app.")]
    NoAccount,
    /// A job filter named a state jobs are never in.
    #[error("state must be pending, running or dead.")]
    JobState,
    /// The app has no push adapter, so nothing can list its accounts.
    #[error("App '{0}' has no adapter: there is nothing to list.")]
    NoAdapter(String),
    /// A tenant-scoped caller asked for another tenant's data.
    #[error("This token is limited to tenant '{0}'.")]
    OtherTenant(String),
    /// A tenant-scoped caller asked for something that concerns every tenant.
    #[error("This token is limited to tenant '{0}'; this endpoint concerns every tenant.")]
    AllTenants(String),
    /// A candidate configuration that is not UTF-8.
    #[error("The configuration must be UTF-8 TOML.")]
    ConfigEncoding,
    /// A candidate configuration that does not parse.
    #[error("The configuration is invalid: {0}")]
    ConfigSyntax(anyhow::Error),
    /// A candidate configuration whose apps or rules do not compile.
    #[error("The configuration is invalid: {0:#}")]
    Candidate(anyhow::Error),
    /// A reconciliation could not run.
    #[error(transparent)]
    Reconcile(#[from] ReconcileError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}
