//! Configuration: one TOML file, environment overrides, and defaults that let
//! `serve` start with no file at all.
//!
//! Precedence, lowest first: built-in defaults → `--config` file →
//! environment (`SCIM_GATEWAY_LISTEN`, `DATABASE_URL`, `SCIM_GATEWAY_TOKEN`,
//! `SCIM_GATEWAY_BASE_URL`, `SCIM_GATEWAY_LOG_FORMAT`,
//! `SCIM_GATEWAY_METRICS_TOKEN`) → command-line flags.
//! Token secrets never live in the file in clear: a token is configured by
//! its SHA-256 hash, or read from an environment variable and hashed at load.
//! JSON Web Token keys (`[[auth.jwt]]`) live in the `jwt` submodule, the
//! apps behind the gateway (adapters, rules, mapping, delivery) in `apps`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;
use sha2::{Digest, Sha256};

mod apps;
mod jwt;

pub use apps::{
    AdapterSettings, AppSettings, DeliverySettings, FileAdapterSettings, FileFormat,
    LdapAdapterSettings, LdapDisable, LeaveAction, LifecycleSettings, MappingRule, MappingSpec,
    RuleSettings, SafetySettings, ScimAdapterSettings, SqlAdapterSettings, SqlDisable,
    UpdateMethod, WebhookSettings,
};
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
mod tests;
