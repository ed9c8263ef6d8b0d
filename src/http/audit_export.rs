//! `GET /admin/audit`: the audit trail for auditors, streamed as NDJSON or
//! CSV in chain order, one database page at a time, so a year of events
//! goes out in constant memory.
//!
//! Query: `format=ndjson|csv` (default ndjson), `from` / `to` (RFC 3339 or
//! `YYYY-MM-DD`; `from` inclusive, `to` exclusive), `tenant`, `actor`,
//! `identity` (resource id), `app`, `action`, `outcome`. Every line carries
//! `chain_pos`, `prev_hash` and `hash`: an unfiltered NDJSON export verifies
//! offline with `scim-gateway audit verify --file`, a filtered one with
//! `--partial` (rows whose predecessor is in the file).
//!
//! Admins and auditors may export; a caller limited to one tenant gets that
//! tenant's rows only (rows with no tenant, such as `audit.prune`, are not
//! among them).

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use super::auth::AuditReader;
use crate::audit::export::{Format, PAGE, parse_time};
use crate::error::ScimError;
use crate::scim::service::Service;
use crate::store::{self, AuditFilter};

/// The query string of `GET /admin/audit`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    format: Option<String>,
    from: Option<String>,
    to: Option<String>,
    tenant: Option<String>,
    actor: Option<String>,
    identity: Option<String>,
    app: Option<String>,
    action: Option<String>,
    outcome: Option<String>,
}

fn parse_query(req: &HttpRequest) -> Result<(Format, AuditFilter), ScimError> {
    let q = web::Query::<AuditQuery>::from_query(req.query_string())
        .map_err(|e| ScimError::invalid_value(format!("Bad audit query: {e}")))?
        .into_inner();
    let format = match q.format.as_deref() {
        None => Format::Ndjson,
        Some(f) => f.parse().map_err(ScimError::invalid_value)?,
    };
    let time = |t: Option<String>| {
        t.map(|t| parse_time(&t))
            .transpose()
            .map_err(ScimError::invalid_value)
    };
    let filter = AuditFilter {
        from: time(q.from)?,
        to: time(q.to)?,
        tenant: q.tenant,
        actor: q.actor,
        resource_id: q.identity,
        app: q.app,
        action: q.action,
        outcome: q.outcome,
    };
    Ok((format, filter))
}

/// `GET /admin/audit`.
pub async fn export_audit(
    reader: AuditReader,
    req: HttpRequest,
    svc: web::Data<Service>,
) -> Result<HttpResponse, ScimError> {
    let (format, mut filter) = parse_query(&req)?;
    filter.tenant = reader.tenant_filter(filter.tenant)?;
    let db = svc.db.clone();
    // Every row committed before the request is in the export (PostgreSQL:
    // rows are chained by the sealer shortly after commit).
    db.run(|conn| store::seal_all(conn).map(drop)).await?;
    let header = web::Bytes::from_static(format.header().as_bytes());
    let first = futures_util::stream::once(async move { Ok::<_, actix_web::Error>(header) });
    // State: the last chain position sent, or `None` once the end was reached.
    let pages = futures_util::stream::unfold(Some(0i64), move |after| {
        let db = db.clone();
        let filter = filter.clone();
        async move {
            let after = after?;
            match db
                .run(move |conn| store::find_audit_page(conn, &filter, after, None, PAGE))
                .await
            {
                Ok(rows) => {
                    let next = match rows.last() {
                        Some(r) if rows.len() as i64 == PAGE => Some(r.chain_pos),
                        _ => None,
                    };
                    let mut out = String::new();
                    for r in &rows {
                        format.write_row(&mut out, r);
                    }
                    Some((Ok(web::Bytes::from(out)), next))
                }
                Err(e) => {
                    // Headers are gone: abort the body so the client sees a
                    // truncated transfer, not a short but complete file.
                    tracing::error!(error = %e, "audit export page failed");
                    Some((
                        Err(actix_web::error::ErrorInternalServerError(
                            "audit export failed",
                        )),
                        None,
                    ))
                }
            }
        }
    });
    use futures_util::StreamExt;
    let ext = match format {
        Format::Ndjson => "ndjson",
        Format::Csv => "csv",
    };
    Ok(HttpResponse::Ok()
        .content_type(format.content_type())
        .insert_header((
            "Content-Disposition",
            format!("attachment; filename=\"audit.{ext}\""),
        ))
        .streaming(first.chain(pages)))
}

/// Registers `GET /admin/audit` (before the `/admin` scope, which would
/// otherwise answer it with its 404).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/admin/audit")
            .route(web::get().to(export_audit))
            .default_service(super::method_not_allowed("GET")),
    );
}
