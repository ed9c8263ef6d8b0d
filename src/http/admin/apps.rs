//! `/admin/apps`, `/admin/apps/{app}` and pausing or resuming an app.

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use serde_json::json;

use super::json_ok;
use crate::admin::AdminService;
use crate::error::ScimError;
use crate::http::auth::Admin;

/// `GET /admin/apps`.
pub async fn list_apps(
    admin: Admin,
    svc: web::Data<AdminService>,
) -> Result<HttpResponse, ScimError> {
    let apps = svc.list_apps(&admin.scope()).await?;
    Ok(json_ok(&json!({ "apps": apps })))
}

/// `GET /admin/apps/{app}`.
pub async fn get_app(
    admin: Admin,
    app: web::Path<String>,
    svc: web::Data<AdminService>,
) -> Result<HttpResponse, ScimError> {
    Ok(json_ok(&svc.get_app(&admin.scope(), &app).await?))
}

/// The optional body of `POST /admin/apps/{app}/pause`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PauseBody {
    reason: Option<String>,
}

/// `POST /admin/apps/{app}/pause` with an optional `{"reason": "…"}`.
pub async fn pause_app(
    admin: Admin,
    app: web::Path<String>,
    body: Option<web::Json<PauseBody>>,
    svc: web::Data<AdminService>,
) -> Result<HttpResponse, ScimError> {
    let reason = body.and_then(|b| b.into_inner().reason);
    Ok(json_ok(&svc.pause_app(&admin.scope(), &app, reason).await?))
}

/// `POST /admin/apps/{app}/resume`.
pub async fn resume_app(
    admin: Admin,
    app: web::Path<String>,
    svc: web::Data<AdminService>,
) -> Result<HttpResponse, ScimError> {
    Ok(json_ok(&svc.resume_app(&admin.scope(), &app).await?))
}
