//! JSON Web Token verification against the keys of `[[auth.jwt]]`.
//!
//! ```text
//! token ─▶ header: alg, kid (crit refused; `none` is no algorithm here)
//!            │
//!            ▼
//!          keys whose kid equals the header's ── none ──▶ unknown key
//!            │
//!            ▼
//!          … whose pinned algorithm equals alg ── none ──▶ algorithm mismatch
//!            │                                            (HS256 signed with an
//!            ▼                                             RSA key's PEM ends here)
//!          signature, then iss, aud, exp and nbf (with the key's leeway), sub
//!            │
//!            ▼
//!          Principal { subject, roles, tenant }
//! ```
//!
//! The key decides the algorithm, never the token: a token can only be
//! checked with the one algorithm its key was configured for. Keys are
//! parsed and checked when the gateway starts (RSA at least 2048 bits,
//! ES256 on P-256, no private keys), so a bad key stops start-up instead of
//! failing requests.
//!
//! Claims: `sub` (required, non-empty), `exp` (required), `nbf` (honoured
//! when present), `iss` and `aud` (required, must match the key), `roles`
//! (an array of strings; `admin`, `auditor` and `scim` mean something here,
//! other values are ignored) and `tenant` (optional: limits the token to one
//! tenant).

use std::sync::Arc;

use anyhow::Context;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::config::{JwtAlgorithm, JwtKeySettings, KeyMaterial};

/// Smallest RSA modulus accepted for RS256, in bits.
const MIN_RSA_BITS: usize = 2048;

/// What a verified token may do. A token may carry several roles.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Roles {
    /// `admin`: the whole admin API.
    pub admin: bool,
    /// `auditor`: the audit export and reports, read-only.
    pub auditor: bool,
    /// `scim`: the SCIM API of the token's tenant.
    pub scim: bool,
}

impl Roles {
    fn from_claim(values: &[String]) -> Self {
        let has = |role: &str| values.iter().any(|v| v == role);
        Self {
            admin: has("admin"),
            auditor: has("auditor"),
            scim: has("scim"),
        }
    }
}

/// The caller a verified token names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The `sub` claim.
    pub subject: String,
    /// The recognised values of the `roles` claim.
    pub roles: Roles,
    /// The `tenant` claim: when present, the token acts for that tenant only.
    pub tenant: Option<String>,
}

/// Why a token was refused. Logged (never the token), answered as 401.
#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    /// Not three base64url parts, an unknown or `none` algorithm, bad JSON.
    #[error("malformed token or header: {0}")]
    Malformed(jsonwebtoken::errors::Error),
    /// The header lists critical extensions, none of which are understood.
    #[error("the header has critical extensions (crit)")]
    Critical,
    /// No configured key has the header's `kid`.
    #[error("no configured key has kid {0:?}")]
    UnknownKey(Option<String>),
    /// The header's algorithm is not the one pinned for the key.
    #[error("algorithm {0:?} is not the one configured for this key")]
    AlgorithmMismatch(Algorithm),
    /// Signature, expiry, not-before, issuer, audience or claim format.
    #[error("rejected: {0}")]
    Rejected(jsonwebtoken::errors::Error),
    /// The claims verified but do not name a usable caller.
    #[error("claims: {0}")]
    Claims(&'static str),
}

#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    #[serde(default)]
    roles: Vec<String>,
    tenant: Option<String>,
}

struct TrustedKey {
    kid: Option<String>,
    algorithm: Algorithm,
    key: DecodingKey,
    validation: Validation,
    /// When not empty, the only tenants this key's tokens may name.
    tenants: Vec<String>,
}

/// The trusted keys, ready to verify tokens.
#[derive(Clone, Default)]
pub struct JwtKeys {
    keys: Arc<Vec<TrustedKey>>,
}

impl std::fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtKeys")
            .field("keys", &self.keys.len())
            .finish()
    }
}

impl JwtKeys {
    /// Reads and checks every configured key (environment from the process).
    pub fn from_settings(settings: &[JwtKeySettings]) -> anyhow::Result<Self> {
        Self::from_settings_with_env(settings, |k| std::env::var(k).ok())
    }

    /// As [`JwtKeys::from_settings`], looking environment variables up through `env`.
    pub fn from_settings_with_env(
        settings: &[JwtKeySettings],
        env: impl Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Self> {
        let mut keys = Vec::with_capacity(settings.len());
        for s in settings {
            let material = s.material(&env)?;
            let key = decoding_key(s.algorithm, material).with_context(|| s.label())?;
            let algorithm = match s.algorithm {
                JwtAlgorithm::RS256 => Algorithm::RS256,
                JwtAlgorithm::ES256 => Algorithm::ES256,
                JwtAlgorithm::HS256 => Algorithm::HS256,
            };
            let mut validation = Validation::new(algorithm);
            validation.leeway = s.leeway_secs;
            validation.validate_exp = true;
            validation.validate_nbf = true;
            validation.validate_aud = true;
            validation.set_issuer(&[&s.issuer]);
            validation.set_audience(&[&s.audience]);
            validation.set_required_spec_claims(&["exp", "sub", "iss", "aud"]);
            keys.push(TrustedKey {
                kid: s.kid.clone(),
                algorithm,
                key,
                validation,
                tenants: s.tenants.clone(),
            });
        }
        Ok(Self {
            keys: Arc::new(keys),
        })
    }

    /// Whether no key is configured (then no token is a JWT here).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Verifies a token and returns the caller it names.
    pub fn verify(&self, token: &str) -> Result<Principal, JwtError> {
        let header = jsonwebtoken::decode_header(token).map_err(JwtError::Malformed)?;
        if header.crit.is_some() {
            return Err(JwtError::Critical);
        }
        let mut same_kid = self.keys.iter().filter(|k| k.kid == header.kid).peekable();
        if same_kid.peek().is_none() {
            return Err(JwtError::UnknownKey(header.kid));
        }
        let mut refusal = JwtError::AlgorithmMismatch(header.alg);
        // Several keys may share a kid (or have none) during a rotation:
        // the first that verifies wins.
        for key in same_kid.filter(|k| k.algorithm == header.alg) {
            match jsonwebtoken::decode::<Claims>(token, &key.key, &key.validation) {
                Ok(data) => return principal(data.claims, &key.tenants),
                Err(e) => refusal = JwtError::Rejected(e),
            }
        }
        Err(refusal)
    }
}

fn principal(claims: Claims, allowed_tenants: &[String]) -> Result<Principal, JwtError> {
    if claims.sub.trim().is_empty() {
        return Err(JwtError::Claims("sub is empty"));
    }
    if claims
        .tenant
        .as_deref()
        .is_some_and(|t| t.trim().is_empty())
    {
        return Err(JwtError::Claims("tenant is empty"));
    }
    if !allowed_tenants.is_empty()
        && !claims
            .tenant
            .as_ref()
            .is_some_and(|t| allowed_tenants.contains(t))
    {
        return Err(JwtError::Claims(
            "this key may only sign tokens naming one of its tenants",
        ));
    }
    Ok(Principal {
        subject: claims.sub,
        roles: Roles::from_claim(&claims.roles),
        tenant: claims.tenant,
    })
}

fn decoding_key(algorithm: JwtAlgorithm, material: KeyMaterial) -> anyhow::Result<DecodingKey> {
    match (algorithm, material) {
        (JwtAlgorithm::RS256, KeyMaterial::PublicPem(pem)) => {
            use rsa::traits::PublicKeyParts;
            let key = rsa_public_key(pem.trim())?;
            let bits = key.n().bits();
            anyhow::ensure!(
                bits >= MIN_RSA_BITS,
                "the RSA key has {bits} bits; RS256 needs at least {MIN_RSA_BITS}"
            );
            Ok(DecodingKey::from_rsa_raw_components(
                &key.n().to_bytes_be(),
                &key.e().to_bytes_be(),
            ))
        }
        (JwtAlgorithm::ES256, KeyMaterial::PublicPem(pem)) => {
            use p256::elliptic_curve::sec1::ToEncodedPoint;
            use p256::pkcs8::DecodePublicKey;
            refuse_private(&pem)?;
            let key = p256::PublicKey::from_public_key_pem(pem.trim()).map_err(|_| {
                anyhow::anyhow!("ES256 needs a P-256 public key as PEM (\"BEGIN PUBLIC KEY\")")
            })?;
            Ok(DecodingKey::from_ec_der(
                key.to_encoded_point(false).as_bytes(),
            ))
        }
        (JwtAlgorithm::HS256, KeyMaterial::Secret(secret)) => Ok(DecodingKey::from_secret(&secret)),
        (alg, _) => anyhow::bail!("{alg:?}: key material of the wrong kind"),
    }
}

fn rsa_public_key(pem: &str) -> anyhow::Result<rsa::RsaPublicKey> {
    use rsa::pkcs1::DecodeRsaPublicKey;
    use rsa::pkcs8::DecodePublicKey;
    refuse_private(pem)?;
    rsa::RsaPublicKey::from_public_key_pem(pem)
        .or_else(|_| rsa::RsaPublicKey::from_pkcs1_pem(pem))
        .map_err(|_| {
            anyhow::anyhow!(
                "RS256 needs an RSA public key as PEM (\"BEGIN PUBLIC KEY\" or \"BEGIN RSA PUBLIC KEY\")"
            )
        })
}

/// A private key has no business on the gateway: say so rather than
/// "not a public key".
fn refuse_private(pem: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        !pem.contains("PRIVATE KEY"),
        "this is a private key: configure the issuer's public key, and keep the private key with the issuer"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::{Value, json};

    use super::*;

    const SECRET_A: &str = "secret A, long enough for HS256 keys!";
    const SECRET_B: &str = "secret B, long enough for HS256 keys!";

    fn settings(kid: Option<&str>, algorithm: JwtAlgorithm) -> JwtKeySettings {
        JwtKeySettings {
            kid: kid.map(str::to_string),
            algorithm,
            issuer: "iss".into(),
            audience: "aud".into(),
            leeway_secs: 30,
            tenants: Vec::new(),
            public_key: None,
            public_key_file: None,
            public_key_env: None,
            secret_env: None,
            secret_file: None,
        }
    }

    fn pem_key(algorithm: JwtAlgorithm, pem: &str) -> anyhow::Result<JwtKeys> {
        let mut s = settings(None, algorithm);
        s.public_key = Some(pem.to_string());
        JwtKeys::from_settings_with_env(&[s], |_| None)
    }

    /// HS256 keys whose secret is in the variable named by their kid (or `NOKID`).
    fn hs_keys(keys: &[(Option<&str>, &str)]) -> JwtKeys {
        let settings: Vec<JwtKeySettings> = keys
            .iter()
            .map(|(kid, var)| {
                let mut s = settings(*kid, JwtAlgorithm::HS256);
                s.secret_env = Some(var.to_string());
                s
            })
            .collect();
        JwtKeys::from_settings_with_env(&settings, |var| match var {
            "A" => Some(SECRET_A.into()),
            "B" => Some(SECRET_B.into()),
            _ => None,
        })
        .unwrap()
    }

    fn claims(extra: Value) -> Value {
        let mut c = json!({
            "iss": "iss", "aud": "aud", "sub": "ann",
            "exp": chrono::Utc::now().timestamp() + 300,
        });
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    }

    fn hs_token(kid: Option<&str>, secret: &str, claims: &Value) -> String {
        let header = Header {
            kid: kid.map(str::to_string),
            ..Header::new(Algorithm::HS256)
        };
        jsonwebtoken::encode(
            &header,
            claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    #[test]
    fn rsa_keys_must_be_public_and_at_least_2048_bits() {
        use rsa::pkcs1::{EncodeRsaPrivateKey, EncodeRsaPublicKey};
        use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
        let mut rng = rsa::rand_core::OsRng;
        let short = rsa::RsaPrivateKey::new(&mut rng, 1024).unwrap();
        let pem = short
            .to_public_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap();
        let err = pem_key(JwtAlgorithm::RS256, &pem).unwrap_err();
        assert!(format!("{err:#}").contains("1024 bits"), "{err:#}");
        // Private keys are refused, with a reason that says so.
        let pkcs8 = short.to_pkcs8_pem(LineEnding::LF).unwrap();
        let pkcs1 = short.to_pkcs1_pem(LineEnding::LF).unwrap();
        for private in [pkcs8.as_str(), pkcs1.as_str()] {
            let err = pem_key(JwtAlgorithm::RS256, private).unwrap_err();
            assert!(format!("{err:#}").contains("private key"), "{err:#}");
        }
        // A PKCS#1 public key ("BEGIN RSA PUBLIC KEY") is read too; its
        // size is checked all the same.
        let pkcs1_public = short.to_public_key().to_pkcs1_pem(LineEnding::LF).unwrap();
        let err = pem_key(JwtAlgorithm::RS256, &pkcs1_public).unwrap_err();
        assert!(format!("{err:#}").contains("1024 bits"), "{err:#}");
        // An RSA key is no ES256 key.
        assert!(pem_key(JwtAlgorithm::ES256, &pem).is_err());
    }

    #[test]
    fn es256_needs_a_p256_public_key() {
        use p256::pkcs8::{EncodePublicKey, LineEnding};
        let secret = p256::SecretKey::random(&mut rsa::rand_core::OsRng);
        let pem = secret
            .public_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap();
        assert!(pem_key(JwtAlgorithm::ES256, &pem).is_ok());
        let err = pem_key(JwtAlgorithm::RS256, &pem).unwrap_err();
        assert!(format!("{err:#}").contains("RSA public key"), "{err:#}");
        assert!(pem_key(JwtAlgorithm::ES256, "not a key").is_err());
    }

    #[test]
    fn the_key_id_and_pinned_algorithm_choose_the_key() {
        let keys = hs_keys(&[(None, "A"), (Some("b"), "B")]);
        let c = claims(json!({}));
        assert!(keys.verify(&hs_token(None, SECRET_A, &c)).is_ok());
        assert!(keys.verify(&hs_token(Some("b"), SECRET_B, &c)).is_ok());
        // A kid selects its key only: secret A under kid b fails, and a
        // kid-less token is not tried against key b.
        assert!(matches!(
            keys.verify(&hs_token(Some("b"), SECRET_A, &c)),
            Err(JwtError::Rejected(_))
        ));
        assert!(matches!(
            keys.verify(&hs_token(None, SECRET_B, &c)),
            Err(JwtError::Rejected(_))
        ));
        assert!(matches!(
            keys.verify(&hs_token(Some("c"), SECRET_A, &c)),
            Err(JwtError::UnknownKey(Some(k))) if k == "c"
        ));
        // The algorithm is the key's, whatever the token says.
        let hs512 = jsonwebtoken::encode(
            &Header::new(Algorithm::HS512),
            &c,
            &EncodingKey::from_secret(SECRET_A.as_bytes()),
        )
        .unwrap();
        assert!(matches!(
            keys.verify(&hs512),
            Err(JwtError::AlgorithmMismatch(Algorithm::HS512))
        ));
    }

    #[test]
    fn keys_sharing_a_kid_are_all_tried_during_a_rotation() {
        let keys = hs_keys(&[(Some("r"), "A"), (Some("r"), "B")]);
        let c = claims(json!({}));
        assert!(keys.verify(&hs_token(Some("r"), SECRET_A, &c)).is_ok());
        assert!(keys.verify(&hs_token(Some("r"), SECRET_B, &c)).is_ok());
        assert!(
            keys.verify(&hs_token(Some("r"), "a third secret, also long enough", &c))
                .is_err()
        );
    }

    #[test]
    fn claims_become_a_principal() {
        let keys = hs_keys(&[(None, "A")]);
        let c = claims(json!({"roles": ["auditor", "scim", "Admin", "other"], "tenant": "acme"}));
        let p = keys.verify(&hs_token(None, SECRET_A, &c)).unwrap();
        assert_eq!(p.subject, "ann");
        assert_eq!(p.tenant.as_deref(), Some("acme"));
        // Role names are exact: "Admin" is not "admin".
        assert_eq!(
            p.roles,
            Roles {
                admin: false,
                auditor: true,
                scim: true
            }
        );
        let none = keys
            .verify(&hs_token(None, SECRET_A, &claims(json!({}))))
            .unwrap();
        assert_eq!(none.roles, Roles::default());
        for bad in [
            json!({"sub": ""}),
            json!({"tenant": " "}),
            json!({"roles": "admin"}),
            json!({"exp": "tomorrow"}),
        ] {
            let token = hs_token(None, SECRET_A, &claims(bad.clone()));
            assert!(keys.verify(&token).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_key_limited_to_tenants_needs_one_of_them() {
        let mut s = settings(None, JwtAlgorithm::HS256);
        s.secret_env = Some("A".into());
        s.tenants = vec!["acme".into()];
        let keys = JwtKeys::from_settings_with_env(&[s], |_| Some(SECRET_A.into())).unwrap();
        let token = |extra| hs_token(None, SECRET_A, &claims(extra));
        assert!(keys.verify(&token(json!({"tenant": "acme"}))).is_ok());
        assert!(matches!(
            keys.verify(&token(json!({"tenant": "globex"}))),
            Err(JwtError::Claims(_))
        ));
        assert!(matches!(
            keys.verify(&token(json!({}))),
            Err(JwtError::Claims(_))
        ));
    }
}
