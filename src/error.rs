//! The one wire error: RFC 7644 §3.12. Every failure a client can see is a
//! [`ScimError`]; every conversion from a lower layer's error into it lives
//! here, so the mapping from cause to status and `scimType` is in one place.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;

use crate::store::StoreError;

/// The SCIM error media type, used on every SCIM response.
pub const SCIM_JSON: &str = "application/scim+json";

/// The `scimType` keywords of RFC 7644 §3.12 table 9 (plus `tooMany`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScimType {
    InvalidFilter,
    TooMany,
    Uniqueness,
    Mutability,
    InvalidSyntax,
    InvalidPath,
    NoTarget,
    InvalidValue,
    InvalidVers,
    Sensitive,
    /// RFC 9865: the cursor is malformed or belongs to another query.
    InvalidCursor,
}

impl ScimType {
    /// The keyword as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ScimType::InvalidFilter => "invalidFilter",
            ScimType::TooMany => "tooMany",
            ScimType::Uniqueness => "uniqueness",
            ScimType::Mutability => "mutability",
            ScimType::InvalidSyntax => "invalidSyntax",
            ScimType::InvalidPath => "invalidPath",
            ScimType::NoTarget => "noTarget",
            ScimType::InvalidValue => "invalidValue",
            ScimType::InvalidVers => "invalidVers",
            ScimType::Sensitive => "sensitive",
            ScimType::InvalidCursor => "invalidCursor",
        }
    }
}

/// An RFC 7644 §3.12 error response.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{status} {detail}")]
pub struct ScimError {
    status: StatusCode,
    scim_type: Option<ScimType>,
    detail: String,
    /// Seconds for `Retry-After` on a 429.
    retry_after: Option<u64>,
}

impl ScimError {
    /// An error with a status and a human-readable detail, without `scimType`.
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self {
            status,
            scim_type: None,
            detail: detail.into(),
            retry_after: None,
        }
    }

    /// A 400 with the given `scimType`.
    pub fn bad_request(scim_type: ScimType, detail: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            scim_type: Some(scim_type),
            detail: detail.into(),
            retry_after: None,
        }
    }

    /// A 400 `invalidValue`.
    pub fn invalid_value(detail: impl Into<String>) -> Self {
        Self::bad_request(ScimType::InvalidValue, detail)
    }

    /// A 400 `invalidSyntax`.
    pub fn invalid_syntax(detail: impl Into<String>) -> Self {
        Self::bad_request(ScimType::InvalidSyntax, detail)
    }

    /// A 400 `invalidPath`.
    pub fn invalid_path(detail: impl Into<String>) -> Self {
        Self::bad_request(ScimType::InvalidPath, detail)
    }

    /// A 400 `invalidFilter`.
    pub fn invalid_filter(detail: impl Into<String>) -> Self {
        Self::bad_request(ScimType::InvalidFilter, detail)
    }

    /// A 400 `noTarget`.
    pub fn no_target(detail: impl Into<String>) -> Self {
        Self::bad_request(ScimType::NoTarget, detail)
    }

    /// A 400 `mutability`.
    pub fn mutability(detail: impl Into<String>) -> Self {
        Self::bad_request(ScimType::Mutability, detail)
    }

    /// A 409 `uniqueness`.
    pub fn uniqueness(detail: impl Into<String>) -> Self {
        Self {
            status: StatusCode::CONFLICT,
            scim_type: Some(ScimType::Uniqueness),
            detail: detail.into(),
            retry_after: None,
        }
    }

    /// A 404 for a resource or endpoint that does not exist.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, detail)
    }

    /// A 403: the token is valid but may not do this.
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, detail)
    }

    /// A 401; the response carries `WWW-Authenticate: Bearer`.
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "A valid bearer token is required.",
        )
    }

    /// A 500 whose body says nothing internal; the cause is logged here, once.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error.")
    }

    /// A 429: the client's request budget is spent; it may retry after
    /// `retry_after_secs` (sent as `Retry-After`).
    pub fn too_many_requests(retry_after_secs: u64) -> Self {
        Self {
            retry_after: Some(retry_after_secs),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!("Too many requests; retry after {retry_after_secs} seconds."),
            )
        }
    }

    /// A 503: the store cannot be reached right now; clients should retry.
    pub fn unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "The service is temporarily unavailable; retry later.",
        )
    }

    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The `scimType` keyword, if any.
    pub fn scim_type(&self) -> Option<ScimType> {
        self.scim_type
    }

    /// The human-readable detail.
    pub fn detail(&self) -> &str {
        &self.detail
    }

    /// The §3.12 body.
    pub fn body(&self) -> serde_json::Value {
        let mut body = json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
            "status": self.status.as_u16().to_string(),
            "detail": self.detail,
        });
        if let (Some(t), Some(map)) = (self.scim_type, body.as_object_mut()) {
            map.insert("scimType".into(), t.as_str().into());
        }
        body
    }
}

impl ResponseError for ScimError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status);
        res.insert_header((header::CONTENT_TYPE, HeaderValue::from_static(SCIM_JSON)));
        if self.status == StatusCode::UNAUTHORIZED {
            res.insert_header((header::WWW_AUTHENTICATE, "Bearer realm=\"scim\""));
        }
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            res.insert_header((header::RETRY_AFTER, "1"));
        }
        if let Some(secs) = self.retry_after {
            res.insert_header((header::RETRY_AFTER, secs.to_string()));
        }
        res.body(self.body().to_string())
    }
}

impl From<StoreError> for ScimError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => ScimError::not_found("Resource not found."),
            StoreError::Conflict(detail) => ScimError::uniqueness(detail),
            StoreError::Unavailable(cause)
            | StoreError::LockCycle(cause)
            | StoreError::Lost(cause) => {
                tracing::warn!(error = %cause, "store unavailable");
                ScimError::unavailable()
            }
            StoreError::Dangling(cause) => {
                tracing::debug!(error = %cause, "dangling reference");
                ScimError::invalid_value("A referenced resource does not exist (any more).")
            }
            StoreError::Rejected(e) => match e.downcast::<ScimError>() {
                Ok(e) => *e,
                Err(other) => ScimError::internal(&other),
            },
            other => ScimError::internal(&other),
        }
    }
}

/// A SCIM error found inside a store transaction rolls it back and comes
/// out of the store as it went in.
impl From<ScimError> for StoreError {
    fn from(e: ScimError) -> Self {
        StoreError::Rejected(Box::new(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_body_has_rfc_shape() {
        let e = ScimError::uniqueness("userName taken");
        assert_eq!(
            e.body(),
            json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
                "status": "409",
                "detail": "userName taken",
                "scimType": "uniqueness",
            })
        );
    }

    #[test]
    fn every_scim_type_has_its_rfc_keyword() {
        let all = [
            (ScimType::InvalidFilter, "invalidFilter"),
            (ScimType::TooMany, "tooMany"),
            (ScimType::Uniqueness, "uniqueness"),
            (ScimType::Mutability, "mutability"),
            (ScimType::InvalidSyntax, "invalidSyntax"),
            (ScimType::InvalidPath, "invalidPath"),
            (ScimType::NoTarget, "noTarget"),
            (ScimType::InvalidValue, "invalidValue"),
            (ScimType::InvalidVers, "invalidVers"),
            (ScimType::Sensitive, "sensitive"),
            (ScimType::InvalidCursor, "invalidCursor"),
        ];
        for (t, s) in all {
            assert_eq!(ScimError::bad_request(t, "x").body()["scimType"], s);
            assert_eq!(ScimError::bad_request(t, "x").body()["status"], "400");
        }
    }

    #[test]
    fn a_scim_error_comes_out_of_the_store_as_it_went_in() {
        let rejected = StoreError::from(ScimError::mutability("id is read-only"));
        let back = ScimError::from(rejected);
        assert_eq!(back.status(), StatusCode::BAD_REQUEST);
        assert_eq!(back.scim_type(), Some(ScimType::Mutability));
        assert_eq!(back.body()["detail"], "id is read-only");

        let dangling = ScimError::from(StoreError::Dangling("fk_members".into()));
        assert_eq!(dangling.scim_type(), Some(ScimType::InvalidValue));
        assert!(!dangling.body().to_string().contains("fk_members"));
    }

    #[test]
    fn internal_error_hides_the_cause() {
        let e = ScimError::internal(&"secret table name");
        assert_eq!(e.body()["status"], "500");
        assert!(!e.body().to_string().contains("secret"));
    }

    #[test]
    fn too_many_requests_carries_retry_after() {
        let e = ScimError::too_many_requests(7);
        assert_eq!(
            e.body(),
            json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
                "status": "429",
                "detail": "Too many requests; retry after 7 seconds.",
            })
        );
        let res = e.error_response();
        assert_eq!(res.status(), 429);
        assert_eq!(
            res.headers().get(header::RETRY_AFTER).map(|v| v.as_bytes()),
            Some(&b"7"[..])
        );
    }

    #[test]
    fn unauthorized_carries_bearer_challenge() {
        let res = ScimError::unauthorized().error_response();
        assert_eq!(res.status(), 401);
        assert!(res.headers().get(header::WWW_AUTHENTICATE).is_some());
        assert_eq!(
            res.headers()
                .get(header::CONTENT_TYPE)
                .map(|v| v.as_bytes()),
            Some(SCIM_JSON.as_bytes())
        );
    }
}
