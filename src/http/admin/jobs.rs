//! An app's jobs and accounts: `/admin/apps/{app}/jobs…`,
//! `/admin/apps/{app}/retry` and `/admin/apps/{app}/accounts/{id}`.

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use serde_json::{Value, json};

use super::json_ok;
use crate::admin::{AdminService, JobFilter};
use crate::error::ScimError;
use crate::http::auth::Admin;

/// The query of `GET /admin/apps/{app}/jobs`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobQuery {
    state: Option<String>,
    after: Option<String>,
    limit: Option<i64>,
}

/// `GET /admin/apps/{app}/jobs`.
pub async fn list_jobs(
    admin: Admin,
    app: web::Path<String>,
    query: web::Query<JobQuery>,
    svc: web::Data<AdminService>,
) -> Result<HttpResponse, ScimError> {
    let q = query.into_inner();
    let filter = JobFilter {
        state: q.state,
        after: q.after,
        limit: q.limit,
    };
    let page = svc.list_jobs(&admin.scope(), &app, filter).await?;
    Ok(json_ok(&json!({ "jobs": page.jobs, "next": page.next })))
}

/// `GET /admin/apps/{app}/jobs/{id}`.
pub async fn get_job(
    admin: Admin,
    path: web::Path<(String, String)>,
    svc: web::Data<AdminService>,
) -> Result<HttpResponse, ScimError> {
    let (app, id) = path.into_inner();
    Ok(json_ok(&svc.get_job(&admin.scope(), &app, &id).await?))
}

/// `GET /admin/apps/{app}/accounts/{id}`: the applied state as JSON, not
/// as the text it is stored as.
pub async fn get_account(
    admin: Admin,
    path: web::Path<(String, String)>,
    svc: web::Data<AdminService>,
) -> Result<HttpResponse, ScimError> {
    let (app, id) = path.into_inner();
    let account = svc.get_account(&admin.scope(), &app, &id).await?;
    let mut v = json!(account);
    if let Ok(applied) = serde_json::from_str::<Value>(&account.applied) {
        v["applied"] = applied;
    }
    Ok(json_ok(&v))
}

/// `POST /admin/apps/{app}/jobs/{id}/retry`.
pub async fn retry_job(
    admin: Admin,
    path: web::Path<(String, String)>,
    svc: web::Data<AdminService>,
) -> Result<HttpResponse, ScimError> {
    let (app, id) = path.into_inner();
    let n = svc.retry_jobs(&admin.scope(), &app, Some(id)).await?;
    Ok(json_ok(&json!({ "retried": n })))
}

/// `POST /admin/apps/{app}/retry`: every dead letter of the app.
pub async fn retry_all(
    admin: Admin,
    app: web::Path<String>,
    svc: web::Data<AdminService>,
) -> Result<HttpResponse, ScimError> {
    let n = svc.retry_jobs(&admin.scope(), &app, None).await?;
    Ok(json_ok(&json!({ "retried": n })))
}
