//! The HTTP surface: routes, extractors and response helpers. Handlers are
//! thin: extract, call one service function, map the result.

pub mod admin;
pub mod audit_export;
pub mod auth;
pub mod body;
pub mod bulk;
pub mod discovery;
pub mod jwt;
pub mod metrics;
pub mod middleware;
pub mod rate_limit;
pub mod resources;
pub mod wire;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::Value;

use crate::domain::Kind;
use crate::error::{SCIM_JSON, ScimError};

/// HTTP-level settings the handlers need.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Public base URL (without `/scim/v2`), if configured.
    pub base_url: Option<String>,
    /// Whether the listener terminates TLS (links then say `https`).
    pub tls: bool,
    /// Body limits.
    pub limits: body::BodyLimits,
    /// Default page size, advertised in discovery.
    pub default_page_size: usize,
    /// Maximum page size, advertised in discovery.
    pub max_page_size: usize,
    /// Most operations in one Bulk request.
    pub bulk_max_operations: usize,
    /// Largest Bulk request body.
    pub bulk_max_payload_bytes: usize,
}

/// The SCIM base URL (…/scim/v2) for links in responses.
pub fn base_url(req: &HttpRequest, settings: &HttpSettings) -> String {
    match &settings.base_url {
        Some(b) => format!("{}/scim/v2", b.trim_end_matches('/')),
        None => {
            let info = req.connection_info();
            let scheme = if settings.tls { "https" } else { info.scheme() };
            format!("{scheme}://{}/scim/v2", info.host())
        }
    }
}

/// A 200 response with a SCIM JSON body.
pub fn scim_json(body: Value) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(SCIM_JSON)
        .body(json_bytes(&body))
}

/// A JSON value's bytes. Written straight into the buffer, which is
/// cheaper than `to_string` (that goes through `fmt::Display`).
pub fn json_bytes(v: &(impl serde::Serialize + ?Sized)) -> Vec<u8> {
    // A JSON value (string keys only) always serialises.
    serde_json::to_vec(v).unwrap_or_default()
}

async fn not_found() -> Result<HttpResponse, ScimError> {
    Err(ScimError::not_found(
        "The requested endpoint does not exist.",
    ))
}

/// A default service answering 405 with the `Allow` header RFC 9110 requires.
fn method_not_allowed(allow: &'static str) -> actix_web::Route {
    web::to(move || async move {
        let mut res = actix_web::ResponseError::error_response(&ScimError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("This method is not allowed on this endpoint; use {allow}."),
        ));
        res.headers_mut().insert(
            actix_web::http::header::ALLOW,
            actix_web::http::header::HeaderValue::from_static(allow),
        );
        res
    })
}

/// A read-only resource: GET, 405 for anything else.
fn get_only<F, Args>(path: &str, handler: F) -> actix_web::Resource
where
    F: actix_web::Handler<Args>,
    Args: actix_web::FromRequest + 'static,
    F::Output: actix_web::Responder + 'static,
{
    web::resource(path)
        .route(web::get().to(handler))
        .default_service(method_not_allowed("GET"))
}

async fn not_implemented(req: HttpRequest) -> Result<HttpResponse, ScimError> {
    Err(ScimError::new(
        StatusCode::NOT_IMPLEMENTED,
        format!("{} is not supported by this service provider.", req.path()),
    ))
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok")
}

/// Ready for traffic: the database answers and its schema is this
/// binary's. A load balancer takes the process out of rotation otherwise.
async fn readyz(svc: web::Data<crate::scim::service::Service>) -> HttpResponse {
    use crate::store::StoreError;
    let not_ready = match svc.db.is_ready().await {
        Ok(()) => return HttpResponse::Ok().content_type("text/plain").body("ready"),
        Err(StoreError::Migration(_)) => "database migrations not applied",
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            "database unavailable"
        }
    };
    HttpResponse::ServiceUnavailable()
        .content_type("text/plain")
        .body(not_ready)
}

fn resource_routes(cfg: &mut web::ServiceConfig, kind: Kind, endpoint: &str) {
    use resources::*;
    cfg.service(
        web::resource(endpoint)
            .app_data(kind)
            .route(web::get().to(list_resources))
            .route(web::post().to(create_resource))
            .default_service(method_not_allowed("GET, POST")),
    )
    .service(
        web::resource(format!("{endpoint}/.search"))
            .app_data(kind)
            .route(web::post().to(search_resources))
            .default_service(method_not_allowed("POST")),
    )
    .service(
        web::resource(format!("{endpoint}/{{id}}"))
            .app_data(kind)
            .route(web::get().to(get_resource))
            .route(web::put().to(replace_resource))
            .route(web::patch().to(patch_resource))
            .route(web::delete().to(delete_resource))
            .default_service(method_not_allowed("GET, PUT, PATCH, DELETE")),
    );
}

/// Registers every route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .service(get_only("/metrics", metrics::get_metrics))
        .configure(audit_export::configure)
        .configure(admin::configure)
        .service(
            web::scope("/scim/v2")
                .configure(|c| resource_routes(c, Kind::User, "/Users"))
                .configure(|c| resource_routes(c, Kind::Group, "/Groups"))
                .service(get_only(
                    "/ServiceProviderConfig",
                    discovery::get_service_provider_config,
                ))
                .service(get_only("/ResourceTypes", discovery::list_resource_types))
                .service(get_only(
                    "/ResourceTypes/{name}",
                    discovery::get_resource_type,
                ))
                .service(get_only("/Schemas", discovery::list_schemas))
                .service(get_only("/Schemas/{id}", discovery::get_schema))
                .service(
                    web::resource("/.search")
                        .route(web::post().to(resources::search_all))
                        .default_service(method_not_allowed("POST")),
                )
                .service(
                    web::resource("/Bulk")
                        .route(web::post().to(bulk::post_bulk))
                        .default_service(method_not_allowed("POST")),
                )
                .route("/Me", web::to(not_implemented))
                .default_service(web::to(not_found)),
        )
        .default_service(web::to(not_found));
}
