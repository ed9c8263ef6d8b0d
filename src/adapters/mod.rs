//! Adapters: how the gateway reaches a downstream app. Each implements
//! [`Adapter`] and reports failures in the engine's terms
//! ([`ErrorKind`]); the engine decides what to retry. Adding an adapter never
//! touches the engine.

pub mod file;
pub mod http;
pub mod ldap;
pub mod paths;
pub mod scim;
pub mod sql;
pub mod webhook;

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::config::{AdapterSettings, AppSettings, DeliverySettings};
use crate::domain::Kind;

/// What an operation is about, for adapters that need it (event ids, logs).
#[derive(Debug, Clone)]
pub struct OpContext {
    /// The app.
    pub app: String,
    /// The identity's id in the gateway.
    pub identity: String,
    /// User or Group.
    pub kind: Kind,
    /// The account revision this operation produces (1 for a create).
    pub revision: i64,
    /// The app's state is not exactly the one last recorded (a call whose
    /// outcome is unknown may have changed it): send whole values.
    pub in_doubt: bool,
}

/// How an operation failed.
#[derive(Debug, Clone, PartialEq)]
pub enum ErrorKind {
    /// Worth retrying later: timeouts, connection failures, 5xx, garbage.
    Transient,
    /// The app asks to slow down; retry after the given delay if it said.
    RateLimited(Option<Duration>),
    /// The app refused the operation (a 4xx): retrying the same will not help.
    Rejected,
    /// The app refused the gateway's credentials.
    Unauthorized,
    /// The account is gone from the app (an update or delete found nothing).
    NotFound,
}

/// A failed operation.
#[derive(Debug, Clone)]
pub struct AdapterError {
    /// The class of failure.
    pub kind: ErrorKind,
    /// HTTP status, where there was one.
    pub status: Option<u16>,
    /// What happened (never a secret).
    pub message: String,
}

impl AdapterError {
    /// A transient failure.
    pub fn transient(message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::Transient,
            status: None,
            message: message.into(),
        }
    }

    /// A rejected operation.
    pub fn rejected(message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::Rejected,
            status: None,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for AdapterError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.status {
            Some(s) => write!(f, "HTTP {s}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// A successful operation.
#[derive(Debug, Clone, Default)]
pub struct Applied {
    /// The app's id for the account (set by `create`).
    pub remote_id: Option<String>,
    /// Whether `create` linked an account that already existed.
    pub adopted: bool,
    /// The HTTP status of the (last) call, where there was one.
    pub status: Option<u16>,
}

/// One account as the app has it, from a listing (for reconciliation).
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteAccount {
    /// The app's id for the account; listings are ordered by it.
    pub remote_id: String,
    /// The correlation key (the gateway id / `externalId`, or what the
    /// app's key column or attribute holds), when the account has one.
    pub key: Option<String>,
    /// The account's attributes, in the mapping's (account) names.
    pub attributes: Value,
}

/// One downstream app's protocol.
#[async_trait::async_trait]
pub trait Adapter: Send + Sync {
    /// Creates the account; returns the app's id for it. An adapter whose
    /// app already has the account (e.g. a 409) links it and converges it.
    async fn create(&self, ctx: &OpContext, account: &Value) -> Result<Applied, AdapterError>;

    /// Finds the account a create of `account` may have made although its
    /// outcome was never recorded (the process died during the call, or it
    /// timed out): its remote id, or `None` when the app has no such
    /// account. An app that cannot be asked answers as if it had one, under
    /// the id its create would have given.
    async fn locate(
        &self,
        ctx: &OpContext,
        account: &Value,
    ) -> Result<Option<String>, AdapterError>;

    /// Changes an account from `before` (as last applied) to `after`.
    async fn update(
        &self,
        ctx: &OpContext,
        remote_id: &str,
        before: &Value,
        after: &Value,
    ) -> Result<Applied, AdapterError>;

    /// Deletes the account. An account that is already gone is success.
    async fn delete(
        &self,
        ctx: &OpContext,
        remote_id: &str,
        last: &Value,
    ) -> Result<Applied, AdapterError>;

    /// Whether [`Adapter::list`] is supported.
    fn can_list(&self) -> bool {
        false
    }

    /// One page of the app's accounts of `kind`, in ascending remote-id
    /// order, starting after the remote id `after` (from the start when
    /// `None`); at most `limit`. A page shorter than `limit` is the last.
    async fn list(
        &self,
        kind: Kind,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<RemoteAccount>, AdapterError> {
        let _ = (kind, after, limit);
        Err(AdapterError::rejected(
            "listing accounts is not supported by this adapter",
        ))
    }

    /// The `after` that continues a listing past `page` (which was listed
    /// with `after`): by default the page's last remote id. Adapters whose
    /// app pages by position instead (SCIM `startIndex`) use an opaque cursor.
    fn next_cursor(&self, after: Option<&str>, page: &[RemoteAccount]) -> Option<String> {
        let _ = after;
        page.last().map(|a| a.remote_id.clone())
    }

    /// The account attribute paths a listing reports, when the app keeps
    /// only some of an account (columns, directory attributes): drift is
    /// looked for in those alone. `None` when the listing carries whole
    /// accounts (an attribute the app does not return is then absent there).
    fn listed_paths(&self) -> Option<Vec<String>> {
        None
    }
}

/// Builds the adapter an app is configured with; `None` for pull-only apps.
pub fn build(
    app: &AppSettings,
    defaults: &DeliverySettings,
) -> anyhow::Result<Option<Arc<dyn Adapter>>> {
    let timeout = Duration::from_secs(app.timeout_secs.unwrap_or(defaults.timeout_secs).max(1));
    Ok(match &app.adapter {
        AdapterSettings::None => None,
        AdapterSettings::Scim(s) => Some(Arc::new(scim::ScimAdapter::new(s, timeout)?)),
        AdapterSettings::Webhook(w) => Some(Arc::new(webhook::WebhookAdapter::new(w, timeout)?)),
        AdapterSettings::Sql(s) => Some(Arc::new(sql::SqlAdapter::new(
            app,
            s,
            timeout,
            app.concurrency.unwrap_or(defaults.concurrency),
        )?)),
        AdapterSettings::File(f) => Some(Arc::new(file::FileAdapter::new(app, f)?)),
        AdapterSettings::Ldap(l) => Some(Arc::new(ldap::LdapAdapter::new(app, l, timeout)?)),
    })
}
