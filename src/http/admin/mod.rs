//! The admin API under `/admin/`: apps and their delivery jobs.
//!
//! Every handler here is a thin face of [`crate::admin::AdminService`]:
//! it parses the request, calls one service function and renders the
//! result as JSON (or CSV); the admin CLI calls the same functions. The
//! handlers are grouped by area: [`apps`], [`jobs`], [`quarantine`] and
//! [`reports`].
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

pub mod apps;
pub mod jobs;
pub mod quarantine;
pub mod reports;

use actix_web::{HttpResponse, web};

use actix_web::http::StatusCode;

use crate::admin::AdminError;
use crate::delivery::ReconcileError;
use crate::error::ScimError;

/// A 200 with a JSON body.
fn json_ok(v: &impl serde::Serialize) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(super::json_bytes(v))
}

/// Registers the admin routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/admin")
            .route("/apps", web::get().to(apps::list_apps))
            .route("/apps/{app}", web::get().to(apps::get_app))
            .route("/apps/{app}/pause", web::post().to(apps::pause_app))
            .route("/apps/{app}/resume", web::post().to(apps::resume_app))
            .route("/apps/{app}/retry", web::post().to(jobs::retry_all))
            .route("/apps/{app}/jobs", web::get().to(jobs::list_jobs))
            .route("/apps/{app}/jobs/{id}", web::get().to(jobs::get_job))
            .route(
                "/apps/{app}/jobs/{id}/retry",
                web::post().to(jobs::retry_job),
            )
            .route(
                "/apps/{app}/accounts/{id}",
                web::get().to(jobs::get_account),
            )
            .route(
                "/apps/{app}/quarantine/release",
                web::post().to(quarantine::release_quarantine),
            )
            .route(
                "/apps/{app}/quarantine/discard",
                web::post().to(quarantine::discard_quarantine),
            )
            .route(
                "/apps/{app}/reconcile",
                web::post().to(reports::reconcile_app),
            )
            .route("/reports/access", web::get().to(reports::access_report))
            .route("/plan", web::post().to(reports::plan_preview))
            .default_service(web::to(|| async {
                Err::<HttpResponse, _>(ScimError::not_found("No such admin endpoint."))
            })),
    );
}

/// What an admin action refused, as the SCIM error the client gets.
impl From<AdminError> for ScimError {
    fn from(e: AdminError) -> Self {
        match e {
            AdminError::UnknownApp(_) | AdminError::NoJob | AdminError::NoAccount => {
                ScimError::not_found(e.to_string())
            }
            AdminError::JobState | AdminError::NoAdapter(_) | AdminError::Candidate(_) => {
                ScimError::invalid_value(e.to_string())
            }
            AdminError::OtherTenant(_) | AdminError::AllTenants(_) => {
                ScimError::forbidden(e.to_string())
            }
            AdminError::ConfigEncoding | AdminError::ConfigSyntax(_) => {
                ScimError::invalid_syntax(e.to_string())
            }
            AdminError::Reconcile(ReconcileError::Unsupported(app)) => {
                ScimError::invalid_value(ReconcileError::Unsupported(app).to_string())
            }
            AdminError::Reconcile(ReconcileError::Adapter(a)) => ScimError::new(
                StatusCode::BAD_GATEWAY,
                format!("Listing the app's accounts failed: {a}"),
            ),
            AdminError::Reconcile(ReconcileError::Store(s)) | AdminError::Store(s) => s.into(),
        }
    }
}
