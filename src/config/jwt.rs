//! `[[auth.jwt]]`: the keys trusted to sign JSON Web Tokens, one table per
//! key. Each key pins one algorithm and names the issuer and audience its
//! tokens must carry. Public keys may be written inline (they are not
//! secret) or read from a file or an environment variable; an HS256 secret
//! only ever comes from a file or an environment variable.
//!
//! ```toml
//! [[auth.jwt]]
//! kid = "idp-2026"                      # must equal the token header's `kid`
//! algorithm = "RS256"                   # RS256 | ES256 | HS256
//! public_key_file = "/etc/scim-gateway/idp.pem"
//! issuer = "https://idp.example.com"
//! audience = "scim-gateway"
//! leeway_secs = 30
//! ```
//!
//! This module checks the table and reads the key material; turning it into
//! a verification key (and refusing weak or mismatched keys) is
//! `crate::http::jwt`'s job.

use std::path::PathBuf;

use anyhow::Context;
use serde::Deserialize;

/// Default clock-skew allowance for `exp` and `nbf`, in seconds.
pub const DEFAULT_LEEWAY_SECS: u64 = 30;
/// Largest accepted `leeway_secs`: beyond it an expired token lives on too long.
pub const MAX_LEEWAY_SECS: u64 = 300;
/// Shortest accepted HS256 secret (RFC 7518 §3.2: at least the hash size).
pub const MIN_HMAC_SECRET_BYTES: usize = 32;

/// Authentication settings beyond opaque tokens.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// Keys whose JSON Web Tokens are accepted (admin API and SCIM).
    pub jwt: Vec<JwtKeySettings>,
}

/// The algorithms a key may be pinned to. Anything else, `none` included,
/// is refused when the configuration is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum JwtAlgorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256: an RSA public key (2048 bits or more).
    RS256,
    /// ECDSA on P-256 with SHA-256: a P-256 public key.
    ES256,
    /// HMAC with SHA-256: a shared secret of at least 32 bytes.
    HS256,
}

/// One trusted signing key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtKeySettings {
    /// The key id: tokens must carry it in their header (`kid`). When unset,
    /// only tokens without a `kid` are checked against this key.
    pub kid: Option<String>,
    /// The one algorithm this key verifies.
    pub algorithm: JwtAlgorithm,
    /// Required `iss` claim.
    pub issuer: String,
    /// Required `aud` claim (or one of its values when it is an array).
    pub audience: String,
    /// Clock skew allowed on `exp` and `nbf`, in seconds.
    #[serde(default = "default_leeway")]
    pub leeway_secs: u64,
    /// When set, every token this key signs must name one of these tenants
    /// in its `tenant` claim (an IdP trusted for one tenant cannot mint
    /// tokens for another, nor unscoped admin tokens).
    #[serde(default)]
    pub tenants: Vec<String>,
    /// RS256 / ES256: the public key as PEM text, inline.
    pub public_key: Option<String>,
    /// RS256 / ES256: a PEM file holding the public key.
    pub public_key_file: Option<PathBuf>,
    /// RS256 / ES256: an environment variable holding the PEM text.
    pub public_key_env: Option<String>,
    /// HS256: an environment variable holding the shared secret.
    pub secret_env: Option<String>,
    /// HS256: a file holding the shared secret (surrounding whitespace is trimmed).
    pub secret_file: Option<PathBuf>,
}

fn default_leeway() -> u64 {
    DEFAULT_LEEWAY_SECS
}

/// Key material as read, before it is parsed.
pub enum KeyMaterial {
    /// A public key in PEM form (RS256, ES256).
    PublicPem(String),
    /// A shared secret (HS256).
    Secret(Vec<u8>),
}

impl std::fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::PublicPem(pem) => f.debug_tuple("PublicPem").field(pem).finish(),
            Self::Secret(_) => f.write_str("Secret([redacted])"),
        }
    }
}

impl JwtKeySettings {
    /// How the key is named in error messages: its `kid`, else its issuer.
    pub fn label(&self) -> String {
        match &self.kid {
            Some(kid) => format!("key {kid:?}"),
            None => format!("key for issuer {:?}", self.issuer),
        }
    }

    /// Checks the table and reads the key material, looking environment
    /// variables up through `env`.
    pub fn material(&self, env: impl Fn(&str) -> Option<String>) -> anyhow::Result<KeyMaterial> {
        let label = self.label();
        anyhow::ensure!(
            !self.issuer.trim().is_empty(),
            "{label}: issuer must not be empty"
        );
        anyhow::ensure!(
            !self.audience.trim().is_empty(),
            "{label}: audience must not be empty"
        );
        anyhow::ensure!(
            self.kid.as_deref().is_none_or(|k| !k.is_empty()),
            "{label}: kid must not be empty (leave it out instead)"
        );
        anyhow::ensure!(
            self.tenants.iter().all(|t| !t.trim().is_empty()),
            "{label}: tenants must not contain an empty name"
        );
        anyhow::ensure!(
            self.leeway_secs <= MAX_LEEWAY_SECS,
            "{label}: leeway_secs must be at most {MAX_LEEWAY_SECS}"
        );
        let public = [
            self.public_key.is_some(),
            self.public_key_file.is_some(),
            self.public_key_env.is_some(),
        ]
        .into_iter()
        .filter(|set| *set)
        .count();
        let secret = [self.secret_env.is_some(), self.secret_file.is_some()]
            .into_iter()
            .filter(|set| *set)
            .count();
        match self.algorithm {
            JwtAlgorithm::RS256 | JwtAlgorithm::ES256 => {
                anyhow::ensure!(
                    secret == 0,
                    "{label}: {:?} verifies with a public key; secret_env and secret_file are for HS256",
                    self.algorithm
                );
                anyhow::ensure!(
                    public == 1,
                    "{label}: set exactly one of public_key, public_key_file or public_key_env"
                );
                self.read_public(&label, env).map(KeyMaterial::PublicPem)
            }
            JwtAlgorithm::HS256 => {
                anyhow::ensure!(
                    public == 0,
                    "{label}: HS256 verifies with a shared secret; public_key* are for RS256 and ES256"
                );
                anyhow::ensure!(
                    secret == 1,
                    "{label}: set exactly one of secret_env or secret_file"
                );
                let secret = self.read_secret(&label, env)?;
                anyhow::ensure!(
                    secret.len() >= MIN_HMAC_SECRET_BYTES,
                    "{label}: the HS256 secret must be at least {MIN_HMAC_SECRET_BYTES} bytes"
                );
                Ok(KeyMaterial::Secret(secret))
            }
        }
    }

    fn read_public(
        &self,
        label: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> anyhow::Result<String> {
        if let Some(pem) = &self.public_key {
            return Ok(pem.clone());
        }
        if let Some(path) = &self.public_key_file {
            return std::fs::read_to_string(path)
                .with_context(|| format!("{label}: reading {}", path.display()));
        }
        let var = self.public_key_env.as_deref().unwrap_or_default();
        env(var).with_context(|| format!("{label}: environment variable {var} is not set"))
    }

    fn read_secret(
        &self,
        label: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Vec<u8>> {
        let text = match (&self.secret_env, &self.secret_file) {
            (Some(var), _) => env(var)
                .with_context(|| format!("{label}: environment variable {var} is not set"))?,
            (None, Some(path)) => std::fs::read_to_string(path)
                .with_context(|| format!("{label}: reading {}", path.display()))?,
            (None, None) => anyhow::bail!("{label}: no secret configured"),
        };
        Ok(text.trim().as_bytes().to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;

    const PEM: &str = "-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----\n";

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn one_key(table: &str) -> anyhow::Result<JwtKeySettings> {
        let mut s = Settings::parse(&format!("[[auth.jwt]]\n{table}"))?;
        Ok(s.auth.jwt.remove(0))
    }

    #[test]
    fn keys_parse_as_documented() {
        let s = Settings::parse(
            r#"
            [[auth.jwt]]
            kid = "idp-2026"
            algorithm = "RS256"
            public_key_file = "/etc/scim-gateway/idp.pem"
            issuer = "https://idp.example.com"
            audience = "scim-gateway"

            [[auth.jwt]]
            algorithm = "HS256"
            secret_env = "JWT_SECRET"
            issuer = "ci"
            audience = "scim-gateway"
            leeway_secs = 5
            "#,
        )
        .unwrap();
        assert_eq!(s.auth.jwt.len(), 2);
        let rs = &s.auth.jwt[0];
        assert_eq!(rs.kid.as_deref(), Some("idp-2026"));
        assert_eq!(rs.algorithm, JwtAlgorithm::RS256);
        assert_eq!(rs.leeway_secs, DEFAULT_LEEWAY_SECS);
        let hs = &s.auth.jwt[1];
        assert_eq!(hs.algorithm, JwtAlgorithm::HS256);
        assert_eq!(hs.leeway_secs, 5);
        let secret = "x".repeat(40);
        let material = hs
            .material(|k| (k == "JWT_SECRET").then(|| format!("{secret}\n")))
            .unwrap();
        assert!(matches!(material, KeyMaterial::Secret(s) if s == secret.as_bytes()));
        assert!(Settings::parse("").unwrap().auth.jwt.is_empty());
    }

    #[test]
    fn only_pinned_safe_algorithms_are_accepted() {
        for alg in ["none", "None", "HS512", "RS512", "PS256", "EdDSA", "rs256"] {
            let err = one_key(&format!(
                "algorithm = \"{alg}\"\npublic_key = \"x\"\nissuer = \"i\"\naudience = \"a\"\n"
            ))
            .unwrap_err();
            assert!(err.to_string().contains("unknown variant"), "{alg}: {err}");
        }
    }

    #[test]
    fn issuer_and_audience_are_required() {
        assert!(one_key("algorithm = \"ES256\"\npublic_key = \"x\"\naudience = \"a\"\n").is_err());
        assert!(one_key("algorithm = \"ES256\"\npublic_key = \"x\"\nissuer = \"i\"\n").is_err());
        let blank = one_key(
            "algorithm = \"ES256\"\npublic_key = \"x\"\nissuer = \" \"\naudience = \"a\"\n",
        )
        .unwrap();
        assert!(blank.material(no_env).is_err());
    }

    #[test]
    fn key_material_must_fit_the_algorithm() {
        let base = "issuer = \"i\"\naudience = \"a\"\n";
        // A public key for HMAC, a secret for RSA: both refused.
        let hs_with_pem = one_key(&format!(
            "algorithm = \"HS256\"\npublic_key_file = \"k.pem\"\n{base}"
        ))
        .unwrap();
        assert!(hs_with_pem.material(no_env).is_err());
        let rs_with_secret = one_key(&format!(
            "algorithm = \"RS256\"\nsecret_env = \"S\"\n{base}"
        ))
        .unwrap();
        assert!(rs_with_secret.material(no_env).is_err());
        // Two sources, or none.
        let two = one_key(&format!(
            "algorithm = \"RS256\"\npublic_key = \"x\"\npublic_key_env = \"K\"\n{base}"
        ))
        .unwrap();
        assert!(two.material(no_env).is_err());
        let none = one_key(&format!("algorithm = \"ES256\"\n{base}")).unwrap();
        assert!(none.material(no_env).is_err());
        // Inline PEM and environment PEM are read as they are.
        let inline = one_key(&format!(
            "algorithm = \"ES256\"\npublic_key = '''{PEM}'''\n{base}"
        ))
        .unwrap();
        assert!(matches!(inline.material(no_env).unwrap(), KeyMaterial::PublicPem(p) if p == PEM));
        let from_env = one_key(&format!(
            "algorithm = \"RS256\"\npublic_key_env = \"K\"\n{base}"
        ))
        .unwrap();
        assert!(from_env.material(no_env).is_err(), "unset variable");
        let pem = from_env.material(|_| Some(PEM.to_string())).unwrap();
        assert!(matches!(pem, KeyMaterial::PublicPem(p) if p == PEM));
    }

    #[test]
    fn short_hmac_secrets_are_refused() {
        let key = one_key(
            "algorithm = \"HS256\"\nsecret_env = \"S\"\nissuer = \"i\"\naudience = \"a\"\n",
        )
        .unwrap();
        let short = "s".repeat(MIN_HMAC_SECRET_BYTES - 1);
        let err = key.material(|_| Some(short.clone())).unwrap_err();
        assert!(err.to_string().contains("at least 32 bytes"), "{err}");
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), format!("{}\n", "s".repeat(32))).unwrap();
        let from_file = one_key(&format!(
            "algorithm = \"HS256\"\nsecret_file = {:?}\nissuer = \"i\"\naudience = \"a\"\n",
            file.path()
        ))
        .unwrap();
        assert!(
            matches!(from_file.material(no_env).unwrap(), KeyMaterial::Secret(s) if s.len() == 32)
        );
    }

    #[test]
    fn leeway_is_bounded_and_kid_not_blank() {
        let base = "algorithm = \"ES256\"\npublic_key = \"x\"\nissuer = \"i\"\naudience = \"a\"\n";
        let long = one_key(&format!("{base}leeway_secs = 301\n")).unwrap();
        assert!(long.material(no_env).is_err());
        let blank_kid = one_key(&format!("{base}kid = \"\"\n")).unwrap();
        assert!(blank_kid.material(no_env).is_err());
        // A misspelt key is an error, not a silent default.
        assert!(one_key(&format!("{base}audiences = \"b\"\n")).is_err());
    }
}
