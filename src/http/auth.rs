//! Bearer-token authentication for the SCIM API and the admin API.
//!
//! ```text
//! Authorization: Bearer <token>
//!   │
//!   ├─ opaque token ─ SHA-256, compared in constant time with every
//!   │                 configured hash ─▶ SCIM: tenant (or app pull) token
//!   │                                    admin API: admin token (role admin)
//!   └─ JWT ─ crate::http::jwt ─▶ roles claim
//!              scim          ─▶ SCIM actor of the `tenant` claim, "jwt:<sub>"
//!              admin/auditor ─▶ admin API, limited to `tenant` when present
//! ```
//!
//! Opaque secrets are kept only as SHA-256 hashes and compared against every
//! configured hash, so neither timing nor early exit reveals which (or
//! whether any) token is close. The two planes never mix: a SCIM token does
//! not open `/admin/`, an admin token does not open `/scim/`, and a JWT
//! needs the role of the plane it calls (403 otherwise). A token that is
//! not valid at all is a 401; the reason is logged at debug level, the token
//! never.

use std::future::{Ready, ready};
use std::ops::Deref;
use std::sync::Arc;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, web};
use subtle::{ConditionallySelectable, ConstantTimeEq};

use super::jwt::{JwtKeys, Principal};
use crate::admin::Caller;
use crate::config::{TokenHash, hash_token};
use crate::domain::Actor;
use crate::error::ScimError;

/// Secrets kept as SHA-256 hashes, each with what it stands for.
#[derive(Debug)]
struct HashedSecrets<T> {
    entries: Vec<([u8; 32], T)>,
}

impl<T> HashedSecrets<T> {
    /// What the presented secret stands for. Every entry is compared, and
    /// the match is selected without a data-dependent branch.
    fn find(&self, secret: &str) -> Option<&T> {
        let presented = hash_token(secret);
        let mut found = subtle::Choice::from(0);
        let mut index = 0u64;
        for (i, (hash, _)) in self.entries.iter().enumerate() {
            let hit = hash.ct_eq(&presented) & !found;
            index = u64::conditional_select(&index, &(i as u64), hit);
            found |= hit;
        }
        let index = usize::try_from(index).ok()?;
        bool::from(found)
            .then(|| self.entries.get(index).map(|(_, v)| v))
            .flatten()
    }
}

/// The configured SCIM tokens (tenant tokens and apps' pull tokens).
#[derive(Debug, Clone)]
pub struct TokenStore {
    tokens: Arc<HashedSecrets<Actor>>,
}

impl TokenStore {
    /// Wraps resolved token hashes.
    pub fn new(tokens: Vec<TokenHash>) -> Self {
        let entries = tokens
            .into_iter()
            .map(|t| {
                let actor = Actor {
                    tenant: t.tenant,
                    token_id: t.token_id,
                    app: t.app,
                };
                (t.hash, actor)
            })
            .collect();
        Self {
            tokens: Arc::new(HashedSecrets { entries }),
        }
    }

    /// Finds the token a presented secret belongs to.
    pub fn authenticate(&self, secret: &str) -> Option<Actor> {
        self.tokens.find(secret).cloned()
    }
}

/// The configured admin tokens, by name. Each has the `admin` role over
/// every tenant.
#[derive(Debug, Clone)]
pub struct AdminTokens {
    tokens: Arc<HashedSecrets<String>>,
}

impl AdminTokens {
    /// Wraps resolved `(name, SHA-256)` pairs.
    pub fn new(tokens: Vec<(String, [u8; 32])>) -> Self {
        let entries = tokens
            .into_iter()
            .map(|(name, hash)| (hash, name))
            .collect();
        Self {
            tokens: Arc::new(HashedSecrets { entries }),
        }
    }

    /// The name of the admin token a presented secret is.
    pub fn authenticate(&self, secret: &str) -> Option<String> {
        self.tokens.find(secret).cloned()
    }
}

/// Reads the bearer token from an `Authorization` header value.
pub fn bearer(req: &HttpRequest) -> Option<&str> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Verifies `token` as a JWT with the configured keys: 401 when there are
/// none or the token does not verify.
fn verify_jwt(req: &HttpRequest, token: &str) -> Result<Principal, ScimError> {
    let keys = req
        .app_data::<web::Data<JwtKeys>>()
        .filter(|k| !k.is_empty())
        .ok_or_else(ScimError::unauthorized)?;
    keys.verify(token).map_err(|e| {
        tracing::debug!(reason = %e, "bearer JWT refused");
        ScimError::unauthorized()
    })
}

fn scim_actor(req: &HttpRequest) -> Result<Actor, ScimError> {
    let token = bearer(req).ok_or_else(ScimError::unauthorized)?;
    if let Some(actor) = req
        .app_data::<web::Data<TokenStore>>()
        .and_then(|s| s.authenticate(token))
    {
        return Ok(actor);
    }
    let principal = verify_jwt(req, token)?;
    if !principal.roles.scim {
        return Err(ScimError::forbidden(
            "This token does not carry the scim role.",
        ));
    }
    let tenant = principal.tenant.ok_or_else(|| {
        ScimError::forbidden("A SCIM token must name its tenant in the tenant claim.")
    })?;
    Ok(Actor {
        tenant,
        token_id: format!("jwt:{}", principal.subject),
        app: None,
    })
}

impl FromRequest for Actor {
    type Error = ScimError;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(scim_actor(req).and_then(|actor| super::rate_limit::check(req, actor)))
    }
}

/// What an admin-API caller may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminRole {
    /// Everything.
    Admin,
    /// Read the audit trail and reports; nothing else.
    Auditor,
}

/// An authenticated caller of the admin API.
#[derive(Debug, Clone)]
pub struct AdminCaller {
    /// How audit rows name the caller: `admin/<token name>` or `admin/jwt:<sub>`.
    pub actor: String,
    /// What the caller may do.
    pub role: AdminRole,
    /// When set, the caller sees and acts on this tenant's data and apps only.
    pub tenant: Option<String>,
}

impl AdminCaller {
    /// The caller as the admin service sees it: who acts, on which tenant.
    pub fn scope(&self) -> Caller {
        Caller {
            actor: self.actor.clone(),
            tenant: self.tenant.clone(),
        }
    }

    /// Whether the caller may see data of `tenant`.
    pub fn sees_tenant(&self, tenant: &str) -> bool {
        self.scope().sees_tenant(tenant)
    }

    /// The tenant filter to apply: the caller's own for a tenant-scoped
    /// caller (403 when the request asks for another), else the request's.
    pub fn tenant_filter(&self, requested: Option<String>) -> Result<Option<String>, ScimError> {
        Ok(self.scope().tenant_filter(requested)?)
    }

    /// 403 unless the caller may act on every tenant.
    pub fn require_all_tenants(&self) -> Result<(), ScimError> {
        Ok(self.scope().require_all_tenants()?)
    }
}

fn admin_caller(req: &HttpRequest) -> Result<AdminCaller, ScimError> {
    let token = bearer(req).ok_or_else(ScimError::unauthorized)?;
    if let Some(name) = req
        .app_data::<web::Data<AdminTokens>>()
        .and_then(|t| t.authenticate(token))
    {
        return Ok(AdminCaller {
            actor: format!("admin/{name}"),
            role: AdminRole::Admin,
            tenant: None,
        });
    }
    let principal = verify_jwt(req, token)?;
    let role = if principal.roles.admin {
        AdminRole::Admin
    } else if principal.roles.auditor {
        AdminRole::Auditor
    } else {
        return Err(ScimError::forbidden(
            "This token carries neither the admin nor the auditor role.",
        ));
    };
    Ok(AdminCaller {
        actor: format!("admin/jwt:{}", principal.subject),
        role,
        tenant: principal.tenant,
    })
}

/// A caller with the `admin` role: every admin endpoint.
#[derive(Debug, Clone)]
pub struct Admin(pub AdminCaller);

impl Deref for Admin {
    type Target = AdminCaller;

    fn deref(&self) -> &AdminCaller {
        &self.0
    }
}

impl FromRequest for Admin {
    type Error = ScimError;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(admin_caller(req).and_then(|caller| match caller.role {
            AdminRole::Admin => Ok(Admin(caller)),
            AdminRole::Auditor => Err(ScimError::forbidden(
                "The auditor role may only read the audit trail and reports.",
            )),
        }))
    }
}

/// A caller with the `admin` or the `auditor` role: the read-only audit
/// export and reports.
#[derive(Debug, Clone)]
pub struct AuditReader(pub AdminCaller);

impl Deref for AuditReader {
    type Target = AdminCaller;

    fn deref(&self) -> &AdminCaller {
        &self.0
    }
}

impl FromRequest for AuditReader {
    type Error = ScimError;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(admin_caller(req).map(AuditReader))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashed_secrets_find_the_matching_entry_only() {
        let secrets = HashedSecrets {
            entries: vec![
                (hash_token("one"), "first"),
                (hash_token("two"), "second"),
                (hash_token("two"), "duplicate"),
            ],
        };
        assert_eq!(secrets.find("one"), Some(&"first"));
        // The first of equal hashes wins, as before the refactoring.
        assert_eq!(secrets.find("two"), Some(&"second"));
        assert_eq!(secrets.find("three"), None);
        assert_eq!(secrets.find(""), None);
        let empty: HashedSecrets<()> = HashedSecrets { entries: vec![] };
        assert_eq!(empty.find("one"), None);
    }

    #[test]
    fn tenant_scoped_callers_get_their_tenant_forced() {
        let scoped = AdminCaller {
            actor: "admin/jwt:ann".into(),
            role: AdminRole::Auditor,
            tenant: Some("acme".into()),
        };
        assert_eq!(scoped.tenant_filter(None).unwrap().as_deref(), Some("acme"));
        assert_eq!(
            scoped
                .tenant_filter(Some("acme".into()))
                .unwrap()
                .as_deref(),
            Some("acme")
        );
        let err = scoped.tenant_filter(Some("globex".into())).unwrap_err();
        assert_eq!(err.status().as_u16(), 403);
        assert!(scoped.sees_tenant("acme") && !scoped.sees_tenant("globex"));
        assert!(scoped.require_all_tenants().is_err());
        let global = AdminCaller {
            tenant: None,
            ..scoped
        };
        assert_eq!(global.tenant_filter(None).unwrap(), None);
        assert_eq!(
            global
                .tenant_filter(Some("globex".into()))
                .unwrap()
                .as_deref(),
            Some("globex")
        );
        assert!(global.sees_tenant("globex"));
        assert!(global.require_all_tenants().is_ok());
    }
}
