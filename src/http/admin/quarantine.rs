//! `/admin/apps/{app}/quarantine/release` and `/discard`: an app the
//! mass-deprovisioning safety net paused.

use actix_web::{HttpResponse, web};
use serde_json::json;

use super::json_ok;
use crate::admin::AdminService;
use crate::error::ScimError;
use crate::http::auth::Admin;

/// `POST /admin/apps/{app}/quarantine/release`: lets the held jobs run,
/// deprovisions included; the safety net counts afresh from now.
pub async fn release_quarantine(
    admin: Admin,
    app: web::Path<String>,
    svc: web::Data<AdminService>,
) -> Result<HttpResponse, ScimError> {
    Ok(json_ok(
        &svc.release_quarantine(&admin.scope(), &app).await?,
    ))
}

/// `POST /admin/apps/{app}/quarantine/discard`: drops every held job that
/// would disable or delete an account, then resumes the app; answers the
/// app's summary with the identities dropped under `discarded`.
pub async fn discard_quarantine(
    admin: Admin,
    app: web::Path<String>,
    svc: web::Data<AdminService>,
) -> Result<HttpResponse, ScimError> {
    let (summary, dropped) = svc.discard_quarantine(&admin.scope(), &app).await?;
    let mut v = json!(summary);
    v["discarded"] = json!(dropped);
    Ok(json_ok(&v))
}
