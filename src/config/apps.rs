//! What the configuration says about the apps behind the gateway: each
//! app's adapter and its settings, the rules that grant it accounts and
//! entitlements, the attribute mapping, and the delivery engine's defaults
//! that an app may override.

use std::path::PathBuf;

use serde::Deserialize;

use super::{TokenSettings, default_tenant};

/// Delivery engine defaults; each app may override the per-app ones.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeliverySettings {
    /// Whether `serve` runs delivery workers (a process may serve SCIM only).
    pub enabled: bool,
    /// Concurrent adapter calls per app.
    pub concurrency: usize,
    /// Attempts before a job becomes a dead letter.
    pub max_attempts: u32,
    /// First retry delay in milliseconds; doubles per attempt, with jitter.
    pub backoff_base_ms: u64,
    /// Longest retry delay in seconds.
    pub backoff_max_secs: u64,
    /// Timeout of one adapter call in seconds.
    pub timeout_secs: u64,
    /// How long a claimed job stays with its worker before another may take
    /// it (a worker that died), in seconds.
    pub lease_secs: u64,
    /// How often workers look for jobs written by other processes, in ms.
    pub poll_ms: u64,
}

impl Default for DeliverySettings {
    fn default() -> Self {
        Self {
            enabled: true,
            concurrency: 8,
            max_attempts: 12,
            backoff_base_ms: 1000,
            backoff_max_secs: 900,
            timeout_secs: 10,
            lease_secs: 120,
            poll_ms: 1000,
        }
    }
}

/// One downstream application.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppSettings {
    /// Unique name, used in job rows, audit rows and the admin API.
    pub name: String,
    /// Tenant whose identities the app receives.
    #[serde(default = "default_tenant")]
    pub tenant: String,
    /// How the gateway reaches the app.
    #[serde(default)]
    pub adapter: AdapterSettings,
    /// Which users get an account: a SCIM filter (all users when unset).
    pub scope: Option<String>,
    /// Whether groups are provisioned too (with members that have accounts).
    #[serde(default)]
    pub groups: bool,
    /// Which groups are provisioned: a SCIM filter (all when unset).
    pub group_scope: Option<String>,
    /// What happens to an account whose user leaves the scope.
    #[serde(default)]
    pub on_leave: LeaveAction,
    /// Account attribute (SCIM path) → where its value comes from. When
    /// empty, the user's attributes are passed through.
    #[serde(default)]
    pub mapping: std::collections::BTreeMap<String, MappingSpec>,
    /// Read-only tokens with which the app pulls its identities.
    #[serde(default)]
    pub pull_tokens: Vec<TokenSettings>,
    /// Overrides `delivery.concurrency`.
    pub concurrency: Option<usize>,
    /// Overrides `delivery.max_attempts`.
    pub max_attempts: Option<u32>,
    /// Overrides `delivery.timeout_secs`.
    pub timeout_secs: Option<u64>,
    /// Most adapter calls per second (unlimited when unset).
    pub rate_limit_per_sec: Option<f64>,
    /// Account attribute that carries the granted entitlements
    /// (`entitlements` by default; `roles` for apps that model them so).
    #[serde(default)]
    pub entitlements_attribute: Option<String>,
    /// Grace period after which a leaver's disabled account is deleted
    /// (e.g. `30d`); never when unset. Reactivation within it restores the account.
    #[serde(default)]
    pub delete_after: Option<String>,
    /// Safety net against mass deprovisioning.
    #[serde(default)]
    pub safety: SafetySettings,
    /// Reconcile the app on this schedule (e.g. `24h`); never when unset.
    pub reconcile_every: Option<String>,
    /// Whether scheduled reconciliations remediate (default: report only).
    #[serde(default)]
    pub reconcile_remediate: bool,
}

/// When an app is quarantined instead of losing many accounts at once.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SafetySettings {
    /// Most disables and deletes within `window`; beyond it the app is quarantined.
    pub max_deprovisions: Option<u64>,
    /// Most disables and deletes within `window` as a share (0–1) of the app's accounts.
    pub max_deprovision_share: Option<f64>,
    /// The window, e.g. `1h` (default one hour).
    pub window: Option<String>,
}

/// A policy rule: identities matching `when` get an account in `app`,
/// with `entitlements`, for `duration` (or until the date in `expires_attribute`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSettings {
    /// Unique name: it appears in the audit trail and the access report.
    pub name: String,
    /// A SCIM filter over the user.
    pub when: String,
    /// The app the rule grants.
    pub app: String,
    /// Entitlements (roles) granted in the app.
    #[serde(default)]
    pub entitlements: Vec<String>,
    /// How long the grant lasts from when it was first made, e.g. `90d`.
    pub duration: Option<String>,
    /// A user attribute holding the grant's end date (RFC 3339).
    pub expires_attribute: Option<String>,
}

/// Identity-wide lifecycle settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LifecycleSettings {
    /// A user attribute holding an HR end date (RFC 3339): once it has
    /// passed, the user is treated as a leaver although `active` is still true.
    pub end_date_attribute: Option<String>,
}

/// What to do with an account whose user no longer matches the app's scope.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LeaveAction {
    /// Set `active` false and keep the account.
    #[default]
    Disable,
    /// Delete the account.
    Delete,
}

/// Adapter kind and its settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum AdapterSettings {
    /// No push: the app only pulls with its tokens.
    #[default]
    None,
    /// A downstream SCIM 2.0 service provider.
    Scim(ScimAdapterSettings),
    /// Signed JSON events to an HTTPS endpoint.
    Webhook(WebhookSettings),
    /// Rows in an application's own user table (PostgreSQL or SQLite).
    Sql(Box<SqlAdapterSettings>),
    /// NDJSON or CSV change files dropped into a directory.
    File(FileAdapterSettings),
    /// Entries in an LDAP directory.
    Ldap(Box<LdapAdapterSettings>),
}

/// An LDAP directory (OpenLDAP, 389-DS, …).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LdapAdapterSettings {
    /// `ldap://host:389` or `ldaps://host:636`.
    pub url: String,
    /// Upgrade an `ldap://` connection with StartTLS.
    #[serde(default)]
    pub starttls: bool,
    /// The DN to bind as (anonymous when unset).
    pub bind_dn: Option<String>,
    /// Bind password: the name of an environment variable holding it.
    pub bind_password_env: Option<String>,
    /// Bind password: a file holding it.
    pub bind_password_file: Option<PathBuf>,
    /// Where account entries are created (`ou=people,dc=example,dc=com`).
    pub base_dn: String,
    /// The naming attribute (default `uid`); it must be in `attributes`.
    pub rdn_attribute: Option<String>,
    /// Object classes of new entries (default `top`, `person`,
    /// `organizationalPerson`, `inetOrgPerson`).
    #[serde(default)]
    pub object_classes: Vec<String>,
    /// LDAP attribute → account attribute path (`uid = "userName"`,
    /// `sn = "name.familyName"`); one account attribute may feed several.
    pub attributes: std::collections::BTreeMap<String, String>,
    /// The attribute holding the correlation key, the account's
    /// `externalId` (default `employeeNumber`).
    pub key_attribute: Option<String>,
    /// What disabling does (attributes mapped from `active` change anyway).
    pub disable: Option<LdapDisable>,
    /// Entitlements as `groupOfNames` membership: the group for entitlement
    /// `E` is `cn=E,<entitlement_base_dn>` and must exist.
    pub entitlement_base_dn: Option<String>,
}

/// How an LDAP account is disabled.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "action", rename_all = "lowercase", deny_unknown_fields)]
pub enum LdapDisable {
    /// Set `attribute` to `value` (and to `enabled_value` while enabled,
    /// or remove it when that is unset).
    Attribute {
        /// The attribute.
        attribute: String,
        /// Its value while disabled.
        value: String,
        /// Its value while enabled.
        enabled_value: Option<String>,
    },
    /// Move the entry under another DN (e.g. `ou=disabled,…`) while disabled.
    Move {
        /// Where disabled entries live.
        base_dn: String,
    },
    /// Delete the entry (a re-enable creates it again).
    Delete,
}

/// An application's own user table in an external database.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlAdapterSettings {
    /// `postgres://…` or `sqlite://path` (a bare path is SQLite too).
    pub url: Option<String>,
    /// The name of an environment variable holding the URL (with a password).
    pub url_env: Option<String>,
    /// The table, optionally schema-qualified (`app.users`).
    pub table: String,
    /// The column holding the correlation key: the account's `externalId`
    /// (the gateway's id unless the mapping sets it).
    pub key_column: String,
    /// The column holding the app's id for a row (generated by the app,
    /// e.g. a serial); the key column when unset.
    pub id_column: Option<String>,
    /// Account attribute path (`userName`, `name.givenName`, `active`) → column.
    #[serde(default)]
    pub columns: std::collections::BTreeMap<String, String>,
    /// What disabling an account does besides updating its mapped columns.
    pub disable: Option<SqlDisable>,
    /// Most connections to the app's database (the app's concurrency when unset).
    pub pool_size: Option<u32>,
}

/// How a SQL app's account is disabled.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "action", rename_all = "lowercase", deny_unknown_fields)]
pub enum SqlDisable {
    /// Set `column` to `value` (and back to `enabled_value` on re-enable).
    Update {
        /// The column.
        column: String,
        /// Its value while disabled.
        value: serde_json::Value,
        /// Its value while enabled (left alone when unset).
        enabled_value: Option<serde_json::Value>,
    },
    /// Delete the row (a re-enable inserts it again).
    Delete,
}

/// A directory that batch systems pick change files up from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileAdapterSettings {
    /// Where files are dropped (created if missing).
    pub directory: PathBuf,
    /// `ndjson` (default) or `csv`.
    #[serde(default)]
    pub format: FileFormat,
    /// File name pattern: `{app}`, `{timestamp}` (UTC, `20260102T030405.123456Z`),
    /// `{seq}`, `{uuid}`, `{ext}`; default `changes-{timestamp}-{seq}.{ext}`.
    pub file_name: Option<String>,
    /// Most changes per file (1 by default: one file per change).
    pub batch_max_lines: Option<usize>,
    /// Longest a change waits for others to share its file, in ms (default 200).
    pub batch_max_wait_ms: Option<u64>,
    /// CSV only: account attribute paths written as columns; when empty,
    /// one `account` column holds the account as JSON.
    #[serde(default)]
    pub csv_columns: Vec<String>,
}

/// The format of dropped change files.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum FileFormat {
    /// One JSON object per line.
    #[default]
    Ndjson,
    /// RFC 4180 CSV with a header row in every file.
    Csv,
}

/// A downstream SCIM service provider.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScimAdapterSettings {
    /// Its SCIM base URL (the one ending in `/scim/v2` or similar).
    pub base_url: String,
    /// Bearer token: the name of an environment variable holding it.
    pub token_env: Option<String>,
    /// Bearer token: a file holding it (e.g. a mounted secret).
    pub token_file: Option<PathBuf>,
    /// `patch` (default) or `put` for updates.
    #[serde(default)]
    pub update: UpdateMethod,
}

/// How a downstream SCIM app is updated.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum UpdateMethod {
    /// PATCH with the attributes that changed.
    #[default]
    Patch,
    /// PUT of the whole account.
    Put,
}

/// A webhook endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    /// Where events are POSTed. `http://` is accepted only for loopback hosts.
    pub url: String,
    /// Environment variables holding the signing secrets (`whsec_…` or raw);
    /// two during a rotation, every event is signed with each.
    #[serde(default)]
    pub secrets_env: Vec<String>,
    /// Files holding signing secrets, as `secrets_env`.
    #[serde(default)]
    pub secret_files: Vec<PathBuf>,
}

/// Where one account attribute comes from.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum MappingSpec {
    /// A source attribute path, e.g. `emails[type eq "work"].value`.
    Path(String),
    /// The full form.
    Rule(Box<MappingRule>),
}

/// The full form of a mapping entry.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MappingRule {
    /// A source attribute path.
    pub from: Option<String>,
    /// Several source paths joined with `separator`.
    pub join: Option<Vec<String>>,
    /// Separator for `join` (a space by default).
    pub separator: Option<String>,
    /// A constant.
    pub value: Option<serde_json::Value>,
    /// Used when the source has no value.
    pub default: Option<serde_json::Value>,
    /// `lower`, `upper` or `trim`, applied to string values.
    pub transform: Option<String>,
}
