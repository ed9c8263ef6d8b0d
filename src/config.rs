//! Configuration: one TOML file, environment overrides, and defaults that let
//! `serve` start with no file at all.
//!
//! Precedence, lowest first: built-in defaults → `--config` file →
//! environment (`SCIM_GATEWAY_LISTEN`, `DATABASE_URL`, `SCIM_GATEWAY_TOKEN`,
//! `SCIM_GATEWAY_BASE_URL`, `SCIM_GATEWAY_LOG_FORMAT`,
//! `SCIM_GATEWAY_METRICS_TOKEN`) → command-line flags.
//! Token secrets never live in the file in clear: a token is configured by
//! its SHA-256 hash, or read from an environment variable and hashed at load.
//! JSON Web Token keys (`[[auth.jwt]]`) live in the `jwt` submodule.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;
use sha2::{Digest, Sha256};

mod jwt;

pub use jwt::{AuthSettings, JwtAlgorithm, JwtKeySettings, KeyMaterial};

/// Tenant used for tokens that come from the environment or the development token.
pub const DEFAULT_TENANT: &str = "default";

/// The whole configuration.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// HTTP listener settings.
    pub server: ServerSettings,
    /// Where the identity store lives.
    pub database: DatabaseSettings,
    /// SCIM protocol settings.
    pub scim: ScimSettings,
    /// Upstream IdP connections, each with its own namespace and tokens.
    pub tenants: Vec<TenantSettings>,
    /// Logging.
    pub log: LogSettings,
    /// Downstream applications the gateway provisions (or that pull).
    pub apps: Vec<AppSettings>,
    /// Delivery engine defaults.
    pub delivery: DeliverySettings,
    /// The admin API.
    pub admin: AdminSettings,
    /// JSON Web Token keys (admin, auditor and SCIM access).
    pub auth: AuthSettings,
    /// Access rules: which identities get which apps and entitlements.
    pub rules: Vec<RuleSettings>,
    /// Identity-wide lifecycle settings.
    pub lifecycle: LifecycleSettings,
    /// Audit trail retention.
    pub audit: AuditSettings,
    /// The Prometheus `/metrics` endpoint.
    pub metrics: MetricsSettings,
    /// Request budgets of SCIM clients.
    pub rate_limit: RateLimitSettings,
}

/// Who may scrape `/metrics`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsSettings {
    /// Bearer tokens a scraper presents (distinct from SCIM and admin
    /// tokens). `SCIM_GATEWAY_METRICS_TOKEN` adds one more.
    pub tokens: Vec<TokenSettings>,
    /// Serve `/metrics` without a token: only where the path cannot be
    /// reached from outside (a private network, or an ingress that blocks it).
    pub public: bool,
}

/// Request budgets of SCIM clients: token buckets kept in each gateway
/// process (with several processes the budget is per process). A request
/// over budget gets 429 with `Retry-After`. Unset budgets do not limit.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitSettings {
    /// Budget of each SCIM bearer token (an IdP's token or an app's pull token).
    pub per_token: Option<Budget>,
    /// Budget shared by all IdP tokens of one tenant; the pull tokens of each
    /// app share a budget of this size of their own, so a pulling app cannot
    /// use up its tenant's.
    pub per_tenant: Option<Budget>,
}

/// A token bucket: `burst` requests at once, refilled at `requests_per_sec`.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    /// Sustained rate, in requests per second (fractions allowed).
    pub requests_per_sec: f64,
    /// Bucket size: requests that may arrive at once after a quiet spell.
    pub burst: u32,
}

/// Audit trail retention (see `scim-gateway audit prune`).
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct AuditSettings {
    /// Rows older than this many days may be pruned once exported; unset
    /// keeps everything (and `audit prune` then needs `--before`).
    pub retention_days: Option<u32>,
}

/// Admin API access.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct AdminSettings {
    /// Admin bearer tokens (distinct from SCIM tokens). `SCIM_GATEWAY_ADMIN_TOKEN`
    /// adds one more.
    pub tokens: Vec<TokenSettings>,
}

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

/// Parses a duration such as `90d`, `12h`, `30m`, `45s` or `2w`.
pub fn parse_duration(text: &str) -> anyhow::Result<std::time::Duration> {
    let t = text.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| anyhow::anyhow!("duration {t:?} needs a unit (s, m, h, d, w)"))?;
    let (n, unit) = t.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| anyhow::anyhow!("duration {t:?} must start with a number"))?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => anyhow::bail!("duration {t:?}: unit must be s, m, h, d or w"),
    };
    Ok(std::time::Duration::from_secs(n.saturating_mul(secs)))
}

fn default_tenant() -> String {
    DEFAULT_TENANT.into()
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

/// HTTP listener settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSettings {
    /// Address to bind, such as `127.0.0.1:8080`.
    pub listen: String,
    /// Public base URL used in `meta.location` (e.g. `https://gw.example.com`);
    /// when unset, built from the request's scheme and Host.
    pub base_url: Option<String>,
    /// Largest accepted request body in bytes; larger bodies get 413.
    pub max_body_bytes: usize,
    /// Deepest accepted JSON nesting in a request body.
    pub max_json_depth: usize,
    /// Number of HTTP worker threads (0 = one per core).
    pub workers: usize,
    /// Serve HTTPS (HTTP/2 and HTTP/1.1) with this certificate and key.
    pub tls: Option<TlsSettings>,
    /// On SIGTERM or Ctrl-C, how long in-flight requests and adapter calls
    /// may take to finish before they are cut off, in seconds.
    pub shutdown_timeout_secs: u64,
    /// Milliseconds a new connection has to send its request head; slower
    /// clients get 408 and are disconnected (0 disables the timeout).
    pub header_timeout_ms: u64,
    /// Seconds a client has to send a whole request body once the handler
    /// reads it; a stalled upload gets 408 and frees the connection.
    pub body_timeout_secs: u64,
    /// Milliseconds a closing connection may take to shut down before it is
    /// dropped (0 disables the timeout).
    pub disconnect_timeout_ms: u64,
}

/// The server certificate: PEM files, as issued by any CA or cert-manager.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// The certificate chain (leaf first), PEM.
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1), PEM.
    pub key: PathBuf,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            base_url: None,
            max_body_bytes: 1024 * 1024,
            max_json_depth: 32,
            workers: 0,
            tls: None,
            // Below the 30 s after which Kubernetes (and systemd) send SIGKILL.
            shutdown_timeout_secs: 25,
            header_timeout_ms: 5000,
            body_timeout_secs: 30,
            disconnect_timeout_ms: 1000,
        }
    }
}

/// Database settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseSettings {
    /// `sqlite://path`, a bare file path, or `postgres://…`.
    pub url: String,
    /// Maximum pooled connections.
    pub pool_size: u32,
    /// PostgreSQL: writer threads, each with a connection of its own
    /// besides the pool's; 0 (the default) means half of `pool_size`, at
    /// least one. A write is a series of round trips, so more writers keep
    /// more of them in flight (SQLite always has one writer).
    pub writers: u32,
    /// Seconds to wait for a pooled connection before answering 503.
    pub connect_timeout_secs: u64,
    /// Memory, in MiB, for users that GET by id has read, served again
    /// without asking the database until a write changes them (SQLite
    /// only; 0 turns it off). It assumes this process is the only one
    /// that changes users and groups in the database file.
    pub read_cache_mib: u64,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: "sqlite://data/scim-gateway.db".into(),
            pool_size: 8,
            writers: 0,
            connect_timeout_secs: 5,
            read_cache_mib: 32,
        }
    }
}

/// SCIM protocol settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScimSettings {
    /// Page size when a list request gives no `count`.
    pub default_page_size: usize,
    /// Largest page size served; larger `count` values are clamped.
    pub max_page_size: usize,
    /// Most operations accepted in one `/Bulk` request.
    pub bulk_max_operations: usize,
    /// Largest `/Bulk` request body in bytes.
    pub bulk_max_payload_bytes: usize,
    /// Most operations in one PATCH request.
    pub max_patch_operations: usize,
    /// Most group member references in one request (a POST/PUT `members`
    /// array, or all member values of one PATCH together).
    pub max_members_per_request: usize,
    /// Longest filter text, in bytes.
    pub max_filter_length: usize,
    /// Deepest nesting of parentheses and value-path brackets in a filter.
    pub max_filter_depth: usize,
    /// Most attribute values (simple values, counted through complex and
    /// multi-valued attributes; group members excluded) in one resource.
    pub max_attributes: usize,
    /// Longest string value of any attribute, in characters.
    pub max_string_length: usize,
    /// Directory of extra schema files (custom extensions), RFC 7643 §7 format.
    pub schemas_dir: Option<PathBuf>,
    /// Which resource type each extension schema extends.
    pub extensions: Vec<ExtensionSettings>,
}

impl Default for ScimSettings {
    fn default() -> Self {
        Self {
            default_page_size: 100,
            max_page_size: 1000,
            bulk_max_operations: 1000,
            bulk_max_payload_bytes: 4 * 1024 * 1024,
            max_patch_operations: 1000,
            max_members_per_request: 10_000,
            max_filter_length: 4096,
            max_filter_depth: 16,
            max_attributes: 2000,
            max_string_length: 16 * 1024,
            schemas_dir: None,
            extensions: Vec::new(),
        }
    }
}

/// Attaches an extension schema to a resource type.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtensionSettings {
    /// The extension schema's URN.
    pub schema: String,
    /// `User` or `Group`.
    #[serde(default = "default_resource_type")]
    pub resource_type: String,
    /// Whether every resource of that type must carry the extension.
    #[serde(default)]
    pub required: bool,
}

fn default_resource_type() -> String {
    "User".into()
}

/// One upstream IdP connection.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantSettings {
    /// The tenant's id: its namespace in the store and its name in the audit trail.
    pub id: String,
    /// Bearer tokens that act for this tenant.
    #[serde(default)]
    pub tokens: Vec<TokenSettings>,
}

/// A bearer token, configured by hash or by an environment variable holding it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSettings {
    /// Name of the token in logs and audit rows (never the secret).
    pub id: String,
    /// Hex SHA-256 of the token.
    pub sha256: Option<String>,
    /// Environment variable that holds the token in clear.
    pub secret_env: Option<String>,
}

/// Logging settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    /// `text` or `json`.
    pub format: String,
    /// `tracing` filter directive, e.g. `info` or `scim_gateway=debug`.
    pub level: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            format: "text".into(),
            level: "info".into(),
        }
    }
}

/// A token ready for authentication: its tenant, its name and its hash.
#[derive(Debug, Clone)]
pub struct TokenHash {
    /// Tenant the token acts for.
    pub tenant: String,
    /// Name of the token.
    pub token_id: String,
    /// SHA-256 of the secret.
    pub hash: [u8; 32],
    /// For an app's pull token: the app, whose view the token reads.
    pub app: Option<String>,
}

/// SHA-256 of a token secret.
pub fn hash_token(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

impl Settings {
    /// Reads the file (if any), then applies environment overrides.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Self> {
        let mut settings = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("reading configuration {}", p.display()))?;
                Self::parse(&text).with_context(|| format!("in {}", p.display()))?
            }
            None => Settings::default(),
        };
        settings.apply_env(|k| std::env::var(k).ok());
        settings.validate()?;
        Ok(settings)
    }

    /// Parses TOML text.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        Ok(toml::from_str(text)?)
    }

    /// Refuses limits that would turn every request away (a zero) and
    /// budgets that cannot refill.
    pub fn validate(&self) -> anyhow::Result<()> {
        let (server, scim) = (&self.server, &self.scim);
        for (name, value) in [
            ("server.max_body_bytes", server.max_body_bytes),
            ("server.max_json_depth", server.max_json_depth),
            (
                "server.body_timeout_secs",
                server.body_timeout_secs as usize,
            ),
            ("scim.max_page_size", scim.max_page_size),
            ("scim.bulk_max_operations", scim.bulk_max_operations),
            ("scim.bulk_max_payload_bytes", scim.bulk_max_payload_bytes),
            ("scim.max_patch_operations", scim.max_patch_operations),
            ("scim.max_members_per_request", scim.max_members_per_request),
            ("scim.max_filter_length", scim.max_filter_length),
            ("scim.max_filter_depth", scim.max_filter_depth),
            ("scim.max_attributes", scim.max_attributes),
            ("scim.max_string_length", scim.max_string_length),
        ] {
            anyhow::ensure!(value > 0, "{name} must be at least 1");
        }
        for (name, budget) in [
            ("rate_limit.per_token", self.rate_limit.per_token),
            ("rate_limit.per_tenant", self.rate_limit.per_tenant),
        ] {
            if let Some(b) = budget {
                anyhow::ensure!(
                    b.requests_per_sec.is_finite() && b.requests_per_sec > 0.0,
                    "{name}.requests_per_sec must be a positive number"
                );
                anyhow::ensure!(b.burst > 0, "{name}.burst must be at least 1");
            }
        }
        Ok(())
    }

    /// Applies environment overrides read through `get`.
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) {
        if let Some(v) = get("SCIM_GATEWAY_LISTEN") {
            self.server.listen = v;
        }
        if let Some(v) = get("SCIM_GATEWAY_BASE_URL") {
            self.server.base_url = Some(v);
        }
        if let Some(v) = get("DATABASE_URL") {
            self.database.url = v;
        }
        if let Some(v) = get("SCIM_GATEWAY_READ_CACHE_MIB").and_then(|v| v.trim().parse().ok()) {
            self.database.read_cache_mib = v;
        }
        if let Some(v) = get("SCIM_GATEWAY_POOL_SIZE").and_then(|v| v.trim().parse().ok()) {
            self.database.pool_size = v;
        }
        if let Some(v) = get("SCIM_GATEWAY_DB_WRITERS").and_then(|v| v.trim().parse().ok()) {
            self.database.writers = v;
        }
        if let Some(v) = get("SCIM_GATEWAY_LOG_FORMAT") {
            self.log.format = v;
        }
        if let Some(secret) = get("SCIM_GATEWAY_METRICS_TOKEN").filter(|s| !s.is_empty()) {
            self.metrics.tokens.push(TokenSettings {
                id: "env".into(),
                sha256: Some(hex::encode(hash_token(&secret))),
                secret_env: None,
            });
        }
        if let Some(secret) = get("SCIM_GATEWAY_ADMIN_TOKEN").filter(|s| !s.is_empty()) {
            self.admin.tokens.push(TokenSettings {
                id: "env".into(),
                sha256: Some(hex::encode(hash_token(&secret))),
                secret_env: None,
            });
        }
        if let Some(secret) = get("SCIM_GATEWAY_TOKEN").filter(|s| !s.is_empty()) {
            let token = TokenSettings {
                id: "env".into(),
                sha256: Some(hex::encode(hash_token(&secret))),
                secret_env: None,
            };
            match self.tenants.iter_mut().find(|t| t.id == DEFAULT_TENANT) {
                Some(t) => t.tokens.push(token),
                None => self.tenants.push(TenantSettings {
                    id: DEFAULT_TENANT.into(),
                    tokens: vec![token],
                }),
            }
        }
    }

    /// Resolves every configured SCIM token (tenant tokens and apps' pull
    /// tokens) to its hash, reading `secret_env` now.
    pub fn token_hashes(&self) -> anyhow::Result<Vec<TokenHash>> {
        let mut out = Vec::new();
        for tenant in &self.tenants {
            anyhow::ensure!(!tenant.id.is_empty(), "a tenant has an empty id");
            for token in &tenant.tokens {
                out.push(TokenHash {
                    tenant: tenant.id.clone(),
                    token_id: token.id.clone(),
                    hash: token.resolve()?,
                    app: None,
                });
            }
        }
        for app in &self.apps {
            for token in &app.pull_tokens {
                out.push(TokenHash {
                    tenant: app.tenant.clone(),
                    token_id: token.id.clone(),
                    hash: token.resolve()?,
                    app: Some(app.name.clone()),
                });
            }
        }
        Ok(out)
    }

    /// Resolves the metrics tokens to `(name, hash)`.
    pub fn metrics_token_hashes(&self) -> anyhow::Result<Vec<(String, [u8; 32])>> {
        self.metrics
            .tokens
            .iter()
            .map(|t| Ok((t.id.clone(), t.resolve()?)))
            .collect()
    }

    /// Resolves the admin tokens to `(name, hash)`.
    pub fn admin_token_hashes(&self) -> anyhow::Result<Vec<(String, [u8; 32])>> {
        self.admin
            .tokens
            .iter()
            .map(|t| Ok((t.id.clone(), t.resolve()?)))
            .collect()
    }
}

impl TokenSettings {
    /// The token's SHA-256, from `sha256` or by hashing `secret_env`'s value.
    pub fn resolve(&self) -> anyhow::Result<[u8; 32]> {
        match (&self.sha256, &self.secret_env) {
            (Some(h), None) => {
                let bytes = hex::decode(h.trim())
                    .with_context(|| format!("token {}: sha256 is not hex", self.id))?;
                <[u8; 32]>::try_from(bytes.as_slice())
                    .map_err(|_| anyhow::anyhow!("token {}: sha256 must be 32 bytes", self.id))
            }
            (None, Some(var)) => {
                let secret = std::env::var(var).with_context(|| {
                    format!("token {}: environment variable {var} is not set", self.id)
                })?;
                Ok(hash_token(&secret))
            }
            _ => anyhow::bail!("token {}: set exactly one of sha256 or secret_env", self.id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_need_no_file() {
        let s = Settings::parse("").unwrap();
        assert_eq!(s.server.listen, "127.0.0.1:8080");
        assert_eq!(s.server.max_body_bytes, 1024 * 1024);
        assert!(s.database.url.starts_with("sqlite://data/"));
    }

    #[test]
    fn environment_overrides_file() {
        let mut s = Settings::parse("[server]\nlisten = \"0.0.0.0:1\"\n").unwrap();
        s.apply_env(|k| match k {
            "SCIM_GATEWAY_LISTEN" => Some("127.0.0.1:9".into()),
            "SCIM_GATEWAY_TOKEN" => Some("s3cret".into()),
            "SCIM_GATEWAY_READ_CACHE_MIB" => Some("0".into()),
            _ => None,
        });
        assert_eq!(s.server.listen, "127.0.0.1:9");
        assert_eq!(s.database.read_cache_mib, 0);
        let tokens = s.token_hashes().unwrap();
        assert_eq!(tokens.len(), 1);
        assert_eq!(tokens[0].tenant, DEFAULT_TENANT);
        assert_eq!(tokens[0].hash, hash_token("s3cret"));
    }

    #[test]
    fn apps_parse_as_documented() {
        let s = Settings::parse(
            r#"
            [[apps]]
            name = "crm"
            tenant = "entra-prod"
            scope = 'active eq true'
            groups = true
            on_leave = "delete"
            rate_limit_per_sec = 20
            [apps.adapter]
            kind = "scim"
            base_url = "https://crm.example.com/scim/v2"
            token_file = "/run/secrets/crm"
            update = "put"
            [apps.mapping]
            userName = { from = "userName", transform = "lower" }
            title = "title"
            [[apps.pull_tokens]]
            id = "crm-pull"
            sha256 = "00"

            [[apps]]
            name = "hooks"
            [apps.adapter]
            kind = "webhook"
            url = "https://hooks.example.com/x"
            secrets_env = ["A", "B"]

            [delivery]
            concurrency = 4
            "#,
        )
        .unwrap();
        assert_eq!(s.apps.len(), 2);
        assert_eq!(s.apps[0].on_leave, LeaveAction::Delete);
        assert!(
            matches!(&s.apps[0].adapter, AdapterSettings::Scim(a) if a.update == UpdateMethod::Put)
        );
        assert!(
            matches!(&s.apps[1].adapter, AdapterSettings::Webhook(w) if w.secrets_env.len() == 2)
        );
        assert_eq!(s.apps[1].tenant, DEFAULT_TENANT);
        assert_eq!(s.delivery.concurrency, 4);
        // A misspelt adapter key is an error, not a silent default.
        assert!(
            Settings::parse(
                "[[apps]]\nname = \"x\"\n[apps.adapter]\nkind = \"scim\"\nbase_ur = \"y\"\n"
            )
            .is_err()
        );
    }

    #[test]
    fn limits_and_budgets_parse_and_zeros_are_refused() {
        let s = Settings::parse(
            r#"
            [server]
            header_timeout_ms = 2000
            body_timeout_secs = 10
            [scim]
            max_patch_operations = 50
            max_members_per_request = 500
            max_filter_depth = 4
            [rate_limit]
            per_token = { requests_per_sec = 20, burst = 40 }
            per_tenant = { requests_per_sec = 0.5, burst = 1 }
            "#,
        )
        .unwrap();
        s.validate().unwrap();
        assert_eq!(s.scim.max_patch_operations, 50);
        assert_eq!(s.scim.max_string_length, 16 * 1024);
        assert_eq!(
            s.rate_limit.per_tenant,
            Some(Budget {
                requests_per_sec: 0.5,
                burst: 1
            })
        );
        for bad in [
            "[scim]\nmax_attributes = 0\n",
            "[server]\nbody_timeout_secs = 0\n",
            "[rate_limit]\nper_token = { requests_per_sec = 0, burst = 1 }\n",
            "[rate_limit]\nper_token = { requests_per_sec = 1, burst = 0 }\n",
            "[rate_limit]\nper_token = { requests_per_sec = nan, burst = 1 }\n",
        ] {
            assert!(Settings::parse(bad).unwrap().validate().is_err(), "{bad}");
        }
        assert!(Settings::parse("[rate_limit]\nper_token = { rps = 1, burst = 1 }\n").is_err());
    }

    #[test]
    fn unknown_keys_are_rejected() {
        assert!(Settings::parse("[server]\nlisten_addr = \"x\"\n").is_err());
    }

    #[test]
    fn token_needs_exactly_one_source() {
        let s =
            Settings::parse("[[tenants]]\nid = \"a\"\n[[tenants.tokens]]\nid = \"t\"\n").unwrap();
        assert!(s.token_hashes().is_err());
        let s = Settings::parse(
            "[[tenants]]\nid = \"a\"\n[[tenants.tokens]]\nid = \"t\"\nsha256 = \"zz\"\n",
        )
        .unwrap();
        assert!(s.token_hashes().is_err());
    }
}
