//! Configuration: one TOML file, environment overrides, and defaults that let
//! `serve` start with no file at all.
//!
//! Precedence, lowest first: built-in defaults → `--config` file →
//! environment (`SCIM_GATEWAY_LISTEN`, `DATABASE_URL`, `SCIM_GATEWAY_TOKEN`,
//! `SCIM_GATEWAY_BASE_URL`, `SCIM_GATEWAY_LOG_FORMAT`) → command-line flags.
//! Token secrets never live in the file in clear: a token is configured by
//! its SHA-256 hash, or read from an environment variable and hashed at load.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;
use sha2::{Digest, Sha256};

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
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            base_url: None,
            max_body_bytes: 1024 * 1024,
            max_json_depth: 32,
            workers: 0,
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
    /// Seconds to wait for a pooled connection before answering 503.
    pub connect_timeout_secs: u64,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: "sqlite://data/scim-gateway.db".into(),
            pool_size: 8,
            connect_timeout_secs: 5,
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
        Ok(settings)
    }

    /// Parses TOML text.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        Ok(toml::from_str(text)?)
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
        if let Some(v) = get("SCIM_GATEWAY_LOG_FORMAT") {
            self.log.format = v;
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

    /// Resolves every configured token to its hash, reading `secret_env` now.
    pub fn token_hashes(&self) -> anyhow::Result<Vec<TokenHash>> {
        let mut out = Vec::new();
        for tenant in &self.tenants {
            anyhow::ensure!(!tenant.id.is_empty(), "a tenant has an empty id");
            for token in &tenant.tokens {
                let hash = match (&token.sha256, &token.secret_env) {
                    (Some(h), None) => {
                        let bytes = hex::decode(h.trim())
                            .with_context(|| format!("token {}: sha256 is not hex", token.id))?;
                        <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
                            anyhow::anyhow!("token {}: sha256 must be 32 bytes", token.id)
                        })?
                    }
                    (None, Some(var)) => {
                        let secret = std::env::var(var).with_context(|| {
                            format!("token {}: environment variable {var} is not set", token.id)
                        })?;
                        hash_token(&secret)
                    }
                    _ => anyhow::bail!(
                        "token {}: set exactly one of sha256 or secret_env",
                        token.id
                    ),
                };
                out.push(TokenHash {
                    tenant: tenant.id.clone(),
                    token_id: token.id.clone(),
                    hash,
                });
            }
        }
        Ok(out)
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
            _ => None,
        });
        assert_eq!(s.server.listen, "127.0.0.1:9");
        let tokens = s.token_hashes().unwrap();
        assert_eq!(tokens.len(), 1);
        assert_eq!(tokens[0].tenant, DEFAULT_TENANT);
        assert_eq!(tokens[0].hash, hash_token("s3cret"));
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
