//! `POST /Bulk`: reads the request under its own size limit (413 above it)
//! and hands it to the Bulk runner.

use actix_web::{HttpRequest, HttpResponse, web};

use super::body::{BodyLimits, read_json};
use super::{HttpSettings, base_url, json_bytes};
use crate::domain::Actor;
use crate::error::{SCIM_JSON, ScimError};
use crate::scim::bulk;
use crate::scim::service::Service;

/// `POST /Bulk`.
pub async fn post_bulk(
    req: HttpRequest,
    actor: Actor,
    payload: web::Payload,
    svc: web::Data<Service>,
    settings: web::Data<HttpSettings>,
) -> Result<HttpResponse, ScimError> {
    if actor.app.is_some() {
        return Err(ScimError::forbidden(
            "This token belongs to an app and may only read.",
        ));
    }
    let limits = BodyLimits {
        max_bytes: settings.bulk_max_payload_bytes,
        ..settings.limits
    };
    let body = read_json(&req, payload, limits).await?;
    let response = bulk::run(&svc, &actor, &body, &base_url(&req, &settings)).await?;
    Ok(HttpResponse::Ok()
        .content_type(SCIM_JSON)
        .body(json_bytes(&response)))
}
