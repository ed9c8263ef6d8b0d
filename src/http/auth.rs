//! Bearer-token authentication. The token decides the tenant. Secrets are
//! kept only as SHA-256 hashes and compared in constant time against every
//! configured token, so neither timing nor early exit reveals which
//! (or whether any) token is close.

use std::future::{Ready, ready};
use std::sync::Arc;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, web};
use subtle::ConstantTimeEq;

use crate::config::{TokenHash, hash_token};
use crate::error::ScimError;
use crate::scim::service::Actor;

/// The configured tokens.
#[derive(Debug, Clone)]
pub struct TokenStore {
    tokens: Arc<Vec<TokenHash>>,
}

impl TokenStore {
    /// Wraps resolved token hashes.
    pub fn new(tokens: Vec<TokenHash>) -> Self {
        Self {
            tokens: Arc::new(tokens),
        }
    }

    /// Finds the token a presented secret belongs to.
    pub fn authenticate(&self, secret: &str) -> Option<Actor> {
        let presented = hash_token(secret);
        let mut found = None;
        for t in self.tokens.iter() {
            if bool::from(t.hash.ct_eq(&presented)) && found.is_none() {
                found = Some(Actor {
                    tenant: t.tenant.clone(),
                    token_id: t.token_id.clone(),
                    app: t.app.clone(),
                });
            }
        }
        found
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

impl FromRequest for Actor {
    type Error = ScimError;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let result = (|| {
            let store = req.app_data::<web::Data<TokenStore>>()?;
            store.authenticate(bearer(req)?)
        })()
        .ok_or_else(ScimError::unauthorized)
        .and_then(|actor| super::rate_limit::check(req, actor));
        ready(result)
    }
}
