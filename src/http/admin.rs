//! The admin API under `/admin/`: apps and their delivery jobs.
//!
//! Callers authenticate with an admin token or a JWT (`super::auth`). The
//! `admin` role may call everything here; the `auditor` role only the
//! read-only reports (and `GET /admin/audit`). A caller limited to one
//! tenant sees and acts on that tenant's apps only (other apps are 404),
//! gets its tenant forced on reports, and cannot preview a configuration
//! for every tenant (`/admin/plan`).
//!
//! | method | path | what |
//! |---|---|---|
//! | GET  | `/admin/apps` | every app: adapter, paused, job counts by state |
//! | GET  | `/admin/apps/{app}` | one app |
//! | POST | `/admin/apps/{app}/pause`, `/resume` | stop / restart its deliveries |
//! | GET  | `/admin/apps/{app}/jobs?state=&after=&limit=` | its jobs, by identity id |
//! | GET  | `/admin/apps/{app}/jobs/{id}` | one job, with its last error |
//! | POST | `/admin/apps/{app}/jobs/{id}/retry` | retry one dead letter now |
//! | POST | `/admin/apps/{app}/retry` | retry every dead letter of the app |
//! | GET  | `/admin/apps/{app}/accounts/{id}` | the account as last applied |
//! | POST | `/admin/apps/{app}/quarantine/release` | resume a quarantined app, deprovisions included |
//! | POST | `/admin/apps/{app}/quarantine/discard` | drop its held deprovisions, then resume |
//! | POST | `/admin/apps/{app}/reconcile?remediate=&format=json\|csv` | orphans, missing and drifted accounts; repair with `remediate=true` |
//! | GET  | `/admin/reports/access?format=csv\|ndjson&tenant=` | who holds what, why and since when |
//! | POST | `/admin/plan` (body: candidate TOML configuration) | what it would change, per app |

use std::sync::Arc;

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::{Admin, AdminCaller, AuditReader};
use crate::delivery::{AppAdapters, ReconcileError, decide, reconcile};
use crate::error::ScimError;
use crate::format::now;
use crate::lifecycle::AppPolicy;
use crate::scim::service::Service;
use crate::store::jobs::{self, state};
use crate::store::{self, AuditEvent};

fn json_ok(v: Value) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(super::json_bytes(&v))
}

/// The app, if the caller may see it: an app of another tenant is as
/// absent to a tenant-scoped caller as one that does not exist (404).
fn known_app(svc: &Service, caller: &AdminCaller, app: &str) -> Result<Arc<AppPolicy>, ScimError> {
    svc.fanout
        .apps()
        .get(app)
        .filter(|policy| caller.sees_tenant(&policy.tenant))
        .cloned()
        .ok_or_else(|| ScimError::not_found(format!("No app is named '{app}'.")))
}

async fn app_summary(svc: &Service, policy: &AppPolicy) -> Result<Value, ScimError> {
    let app = policy.name.clone();
    let (counts, paused) = svc
        .db
        .run(move |conn| Ok((jobs::count_by_state(conn, &app)?, jobs::paused(conn, &app)?)))
        .await?;
    let mut by_state = json!({ state::PENDING: 0, state::RUNNING: 0, state::DEAD: 0 });
    for (s, n) in counts {
        by_state[s] = json!(n);
    }
    let (paused, reason) = paused.unwrap_or((false, None));
    Ok(json!({
        "name": policy.name,
        "tenant": policy.tenant,
        "pushes": policy.pushes,
        "groups": policy.groups,
        "paused": paused,
        "pausedReason": reason,
        "jobs": by_state,
    }))
}

/// `GET /admin/apps`.
pub async fn list_apps(admin: Admin, svc: web::Data<Service>) -> Result<HttpResponse, ScimError> {
    let mut out = Vec::new();
    let apps: Vec<Arc<AppPolicy>> = svc
        .fanout
        .apps()
        .all()
        .filter(|a| admin.sees_tenant(&a.tenant))
        .cloned()
        .collect();
    for policy in apps {
        out.push(app_summary(&svc, &policy).await?);
    }
    Ok(json_ok(json!({ "apps": out })))
}

/// `GET /admin/apps/{app}`.
pub async fn get_app(
    admin: Admin,
    app: web::Path<String>,
    svc: web::Data<Service>,
) -> Result<HttpResponse, ScimError> {
    let policy = known_app(&svc, &admin, &app)?;
    Ok(json_ok(app_summary(&svc, &policy).await?))
}

/// The audit row of an admin action on an app; it carries the app's tenant,
/// so an auditor limited to that tenant sees it.
fn admin_audit(
    admin: &Admin,
    action: &str,
    app: &AppPolicy,
    id: Option<&str>,
    detail: Value,
) -> AuditEvent {
    AuditEvent {
        at: now(),
        tenant: Some(app.tenant.clone()),
        actor: admin.actor.clone(),
        action: action.to_string(),
        resource_type: None,
        resource_id: id.map(str::to_string),
        outcome: "success".into(),
        detail: Some(detail.to_string()),
        app: Some(app.name.clone()),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PauseBody {
    reason: Option<String>,
}

async fn set_paused(
    admin: Admin,
    app: String,
    svc: web::Data<Service>,
    paused: bool,
    reason: Option<String>,
) -> Result<HttpResponse, ScimError> {
    let policy = known_app(&svc, &admin, &app)?;
    let a = app.clone();
    let p = policy.clone();
    svc.db
        .write(move |conn| {
            let at = now();
            jobs::set_paused(conn, &a, paused, reason.as_deref(), &at)?;
            let action = if paused {
                "admin.app.pause"
            } else {
                "admin.app.resume"
            };
            store::insert_audit(
                conn,
                &admin_audit(&admin, action, &p, None, json!({ "reason": reason })),
            )
        })
        .await?;
    if !paused {
        svc.fanout.wake(&app);
    }
    Ok(json_ok(app_summary(&svc, &policy).await?))
}

/// `POST /admin/apps/{app}/pause` with an optional `{"reason": "…"}`.
pub async fn pause_app(
    admin: Admin,
    app: web::Path<String>,
    body: Option<web::Json<PauseBody>>,
    svc: web::Data<Service>,
) -> Result<HttpResponse, ScimError> {
    let reason = body.and_then(|b| b.into_inner().reason);
    set_paused(admin, app.into_inner(), svc, true, reason).await
}

/// `POST /admin/apps/{app}/resume`.
pub async fn resume_app(
    admin: Admin,
    app: web::Path<String>,
    svc: web::Data<Service>,
) -> Result<HttpResponse, ScimError> {
    set_paused(admin, app.into_inner(), svc, false, None).await
}

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
    svc: web::Data<Service>,
) -> Result<HttpResponse, ScimError> {
    let app = app.into_inner();
    known_app(&svc, &admin, &app)?;
    let q = query.into_inner();
    if let Some(s) = &q.state
        && ![state::PENDING, state::RUNNING, state::DEAD].contains(&s.as_str())
    {
        return Err(ScimError::invalid_value(
            "state must be pending, running or dead.",
        ));
    }
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let rows = svc
        .db
        .run(move |conn| jobs::list_jobs(conn, &app, q.state.as_deref(), q.after.as_deref(), limit))
        .await?;
    let next = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|r| r.resource_id.clone()))
        .flatten();
    Ok(json_ok(json!({ "jobs": rows, "next": next })))
}

/// `GET /admin/apps/{app}/jobs/{id}`.
pub async fn get_job(
    admin: Admin,
    path: web::Path<(String, String)>,
    svc: web::Data<Service>,
) -> Result<HttpResponse, ScimError> {
    let (app, id) = path.into_inner();
    known_app(&svc, &admin, &app)?;
    let job = svc
        .db
        .run(move |conn| jobs::find_job(conn, &app, &id))
        .await?
        .ok_or_else(|| {
            ScimError::not_found(
                "No job for this identity in this app (none pending, running or dead).",
            )
        })?;
    Ok(json_ok(json!(job)))
}

/// `GET /admin/apps/{app}/accounts/{id}`.
pub async fn get_account(
    admin: Admin,
    path: web::Path<(String, String)>,
    svc: web::Data<Service>,
) -> Result<HttpResponse, ScimError> {
    let (app, id) = path.into_inner();
    known_app(&svc, &admin, &app)?;
    let account = svc
        .db
        .run(move |conn| store::find_account(conn, &app, &id))
        .await?
        .ok_or_else(|| ScimError::not_found("This identity has no account in this app."))?;
    let mut v = json!(account);
    if let Ok(applied) = serde_json::from_str::<Value>(&account.applied) {
        v["applied"] = applied;
    }
    Ok(json_ok(v))
}

async fn retry(
    admin: Admin,
    app: String,
    id: Option<String>,
    svc: web::Data<Service>,
) -> Result<HttpResponse, ScimError> {
    let policy = known_app(&svc, &admin, &app)?;
    let a = app.clone();
    let n = svc
        .db
        .write(move |conn| {
            let n = jobs::retry_dead(conn, &a, id.as_deref(), &now())?;
            store::insert_audit(
                conn,
                &admin_audit(
                    &admin,
                    "admin.jobs.retry",
                    &policy,
                    id.as_deref(),
                    json!({ "retried": n }),
                ),
            )?;
            Ok(n)
        })
        .await?;
    svc.fanout.wake(&app);
    Ok(json_ok(json!({ "retried": n })))
}

/// `POST /admin/apps/{app}/jobs/{id}/retry`.
pub async fn retry_job(
    admin: Admin,
    path: web::Path<(String, String)>,
    svc: web::Data<Service>,
) -> Result<HttpResponse, ScimError> {
    let (app, id) = path.into_inner();
    retry(admin, app, Some(id), svc).await
}

/// `POST /admin/apps/{app}/retry`: every dead letter of the app.
pub async fn retry_all(
    admin: Admin,
    app: web::Path<String>,
    svc: web::Data<Service>,
) -> Result<HttpResponse, ScimError> {
    retry(admin, app.into_inner(), None, svc).await
}

/// `POST /admin/apps/{app}/quarantine/release`: lets the held jobs run,
/// deprovisions included; the safety net counts afresh from now.
pub async fn release_quarantine(
    admin: Admin,
    app: web::Path<String>,
    svc: web::Data<Service>,
) -> Result<HttpResponse, ScimError> {
    let app = app.into_inner();
    let policy = known_app(&svc, &admin, &app)?;
    let a = app.clone();
    let p = policy.clone();
    svc.db
        .write(move |conn| {
            jobs::set_paused(conn, &a, false, Some(jobs::RELEASED), &now())?;
            store::insert_audit(
                conn,
                &admin_audit(&admin, "admin.quarantine.release", &p, None, json!({})),
            )
        })
        .await?;
    svc.fanout.wake(&app);
    Ok(json_ok(app_summary(&svc, &policy).await?))
}

/// `POST /admin/apps/{app}/quarantine/discard`: drops every held job that
/// would disable or delete an account, then resumes the app. Those
/// accounts stay as they are until their identity changes again.
pub async fn discard_quarantine(
    admin: Admin,
    app: web::Path<String>,
    svc: web::Data<Service>,
) -> Result<HttpResponse, ScimError> {
    let app = app.into_inner();
    let policy = known_app(&svc, &admin, &app)?;
    let p = policy.clone();
    let reg = svc.registry.clone();
    let a = app.clone();
    let dropped = svc
        .db
        .write(move |conn| {
            let now = chrono::Utc::now();
            let mut dropped = Vec::new();
            let mut after: Option<String> = None;
            loop {
                let page = jobs::list_jobs(conn, &a, Some(state::PENDING), after.as_deref(), 500)?;
                let Some(last) = page.last() else { break };
                after = Some(last.resource_id.clone());
                for job in &page {
                    let d = decide(conn, &reg, &p, &job.tenant, &job.resource_id, now)?;
                    if d.plan.deprovisions() {
                        jobs::delete_pending(conn, &a, &job.resource_id)?;
                        dropped.push(job.resource_id.clone());
                    }
                }
            }
            jobs::set_paused(conn, &a, false, Some(jobs::RELEASED), &now.to_rfc3339())?;
            store::insert_audit(
                conn,
                &admin_audit(
                    &admin,
                    "admin.quarantine.discard",
                    &p,
                    None,
                    json!({ "discarded": dropped.len(), "identities": dropped }),
                ),
            )?;
            Ok(dropped)
        })
        .await?;
    svc.fanout.wake(&app);
    let mut summary = app_summary(&svc, &policy).await?;
    summary["discarded"] = json!(dropped);
    Ok(json_ok(summary))
}

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
    svc: web::Data<Service>,
    adapters: web::Data<AppAdapters>,
) -> Result<HttpResponse, ScimError> {
    let app = app.into_inner();
    let q = query.into_inner();
    let csv = match q.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(_) => return Err(ScimError::invalid_value("format must be json or csv.")),
    };
    let policy = known_app(&svc, &admin, &app)?;
    let adapter = adapters.get(&app).ok_or_else(|| {
        ScimError::invalid_value(format!(
            "App '{app}' has no adapter: there is nothing to list."
        ))
    })?;
    let actor = admin.actor.clone();
    let remediate = q.remediate.unwrap_or(false);
    let report = reconcile(
        &svc.db,
        &svc.registry,
        &policy,
        adapter.as_ref(),
        remediate,
        &actor,
    )
    .await
    .map_err(|e| match e {
        ReconcileError::Unsupported(_) => ScimError::invalid_value(e.to_string()),
        ReconcileError::Adapter(a) => ScimError::new(
            actix_web::http::StatusCode::BAD_GATEWAY,
            format!("Listing the app's accounts failed: {a}"),
        ),
        ReconcileError::Store(s) => s.into(),
    })?;
    if remediate {
        svc.fanout.wake(&app);
    }
    Ok(if csv {
        HttpResponse::Ok()
            .content_type("text/csv")
            .body(report.to_csv())
    } else {
        json_ok(json!(report))
    })
}

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
    svc: web::Data<Service>,
) -> Result<HttpResponse, ScimError> {
    use crate::lifecycle::report::{self, Cursor, Format};
    let q = query.into_inner();
    let tenant = reader.tenant_filter(q.tenant)?;
    let format = match q.format.as_deref() {
        None => Format::Ndjson,
        Some(f) => f.parse::<Format>().map_err(ScimError::invalid_value)?,
    };
    let db = svc.db.clone();
    let header =
        (format == Format::Csv).then(|| web::Bytes::from_static(report::CSV_HEADER.as_bytes()));
    // The state is the cursor of the next page: `Some(None)` is the first,
    // `None` means the last page has been sent.
    let pages = futures_util::stream::unfold(Some(None::<Cursor>), move |state| {
        let db = db.clone();
        let tenant = tenant.clone();
        async move {
            let after = state?;
            let page = db
                .run(move |conn| report::page(conn, tenant.as_deref(), after.as_ref(), format))
                .await;
            match page {
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
    svc: web::Data<Service>,
) -> Result<HttpResponse, ScimError> {
    admin.require_all_tenants()?;
    let text = std::str::from_utf8(&body)
        .map_err(|_| ScimError::invalid_syntax("The configuration must be UTF-8 TOML."))?;
    let candidate = crate::config::Settings::parse(text)
        .map_err(|e| ScimError::invalid_syntax(format!("The configuration is invalid: {e}")))?;
    let apps = std::sync::Arc::new(
        crate::lifecycle::Apps::compile(
            &svc.registry,
            &candidate.apps,
            &candidate.rules,
            &candidate.lifecycle,
        )
        .map_err(|e| ScimError::invalid_value(format!("The configuration is invalid: {e:#}")))?,
    );
    let reg = svc.registry.clone();
    let preview = svc
        .db
        .run(move |conn| crate::delivery::preview::preview(conn, &reg, &apps))
        .await?;
    Ok(json_ok(json!({ "apps": preview })))
}

/// Registers the admin routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/admin")
            .route("/apps", web::get().to(list_apps))
            .route("/apps/{app}", web::get().to(get_app))
            .route("/apps/{app}/pause", web::post().to(pause_app))
            .route("/apps/{app}/resume", web::post().to(resume_app))
            .route("/apps/{app}/retry", web::post().to(retry_all))
            .route("/apps/{app}/jobs", web::get().to(list_jobs))
            .route("/apps/{app}/jobs/{id}", web::get().to(get_job))
            .route("/apps/{app}/jobs/{id}/retry", web::post().to(retry_job))
            .route("/apps/{app}/accounts/{id}", web::get().to(get_account))
            .route(
                "/apps/{app}/quarantine/release",
                web::post().to(release_quarantine),
            )
            .route(
                "/apps/{app}/quarantine/discard",
                web::post().to(discard_quarantine),
            )
            .route("/apps/{app}/reconcile", web::post().to(reconcile_app))
            .route("/reports/access", web::get().to(access_report))
            .route("/plan", web::post().to(plan_preview))
            .default_service(web::to(|| async {
                Err::<HttpResponse, _>(ScimError::not_found("No such admin endpoint."))
            })),
    );
}
