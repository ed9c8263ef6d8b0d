//! What the admin reads rather than changes: reconciliation reports
//! (`/admin/apps/{app}/reconcile`), the access report
//! (`/admin/reports/access`, streamed) and plan previews (`/admin/plan`).

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use serde_json::json;

use super::json_ok;
use crate::admin::AdminService;
use crate::error::ScimError;
use crate::http::auth::{Admin, AuditReader};
use crate::lifecycle::report::{Cursor, Format};

/// The query of `POST /admin/apps/{app}/reconcile`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReconcileQuery {
    remediate: Option<bool>,
    format: Option<String>,
}

/// `POST /admin/apps/{app}/reconcile`: lists the app's accounts and reports
/// orphans, missing and drifted accounts (JSON, or CSV with one line per
/// finding); with `remediate=true` also repairs them.
pub async fn reconcile_app(
    admin: Admin,
    app: web::Path<String>,
    query: web::Query<ReconcileQuery>,
    svc: web::Data<AdminService>,
) -> Result<HttpResponse, ScimError> {
    let q = query.into_inner();
    let csv = match q.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(_) => return Err(ScimError::invalid_value("format must be json or csv.")),
    };
    let remediate = q.remediate.unwrap_or(false);
    let report = svc.reconcile_app(&admin.scope(), &app, remediate).await?;
    Ok(if csv {
        HttpResponse::Ok()
            .content_type("text/csv")
            .body(report.to_csv())
    } else {
        json_ok(&report)
    })
}

/// The query of `GET /admin/reports/access`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportQuery {
    format: Option<String>,
    tenant: Option<String>,
}

/// `GET /admin/reports/access`: every grant in force — identity, app,
/// entitlement (empty for the account itself), the rule that grants it,
/// since when and until when — as CSV or NDJSON, streamed page by page.
pub async fn access_report(
    reader: AuditReader,
    query: web::Query<ReportQuery>,
    svc: web::Data<AdminService>,
) -> Result<HttpResponse, ScimError> {
    let q = query.into_inner();
    // The tenant is checked before the format: a 403 wins over a 400.
    let tenant = reader.tenant_filter(q.tenant)?;
    let format = match q.format.as_deref() {
        None => Format::Ndjson,
        Some(f) => f.parse::<Format>().map_err(ScimError::invalid_value)?,
    };
    let report = svc.access_report(&reader.scope(), tenant, format)?;
    let header = report
        .header()
        .map(|h| web::Bytes::from_static(h.as_bytes()));
    // The state is the cursor of the next page: `Some(None)` is the first,
    // `None` means the last page has been sent.
    let pages = futures_util::stream::unfold(Some(None::<Cursor>), move |state| {
        let report = report.clone();
        async move {
            let after = state?;
            match report.page(after).await {
                Ok(p) if p.grants == 0 => None,
                Ok(p) => Some((
                    Ok::<_, actix_web::Error>(web::Bytes::from(p.text)),
                    p.next.map(Some),
                )),
                Err(e) => {
                    tracing::error!(error = %e, "access report page failed");
                    Some((
                        Err(actix_web::error::ErrorInternalServerError("report failed")),
                        None,
                    ))
                }
            }
        }
    });
    let head = futures_util::stream::iter(header.map(Ok::<_, actix_web::Error>));
    let body = futures_util::StreamExt::chain(head, pages);
    Ok(HttpResponse::Ok()
        .content_type(format.content_type())
        .streaming(body))
}

/// `POST /admin/plan`: the body is a candidate configuration (TOML, the
/// same format as the configuration file; its `[[apps]]`, `[[rules]]` and
/// `[lifecycle]` are used). Answers what it would do to every app — per app,
/// counts and the operations with their reasons — without doing any of it.
pub async fn plan_preview(
    admin: Admin,
    body: web::Bytes,
    svc: web::Data<AdminService>,
) -> Result<HttpResponse, ScimError> {
    let plan = svc.plan(&admin.scope(), &body).await?;
    Ok(json_ok(&json!({ "apps": plan.apps })))
}
