//! Request middleware: one log line per request (method, path, status,
//! latency, request id — never the query string's secrets nor a header),
//! the request's count and latency in the metrics (by route pattern),
//! an `X-Request-Id` on every response, and a last line of defence that turns
//! any error response not produced by the SCIM layer (framework 404s, payload
//! errors) into an RFC 7644 §3.12 body.

use std::time::Instant;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::web;
use tracing::Instrument;

use crate::error::{SCIM_JSON, ScimError};
use crate::metrics::Metrics;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

fn request_id(req: &ServiceRequest) -> String {
    req.headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string())
}

/// Logs the request and normalises error bodies.
pub async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let start = Instant::now();
    let id = request_id(&req);
    let method = req.method().clone();
    let path = req.path().to_string();
    let metrics = req.app_data::<web::Data<Metrics>>().cloned();
    let span = tracing::info_span!("request", request_id = %id);
    let res = next.call(req).instrument(span.clone()).await?;
    let res = res.map_into_boxed_body();
    let mut res = if path.starts_with("/scim/") {
        scim_error_body(res)
    } else {
        res
    };
    if let Ok(v) = HeaderValue::from_str(&id) {
        res.headers_mut().insert(REQUEST_ID, v);
    }
    let status = res.status().as_u16();
    let took = start.elapsed();
    if let Some(m) = &metrics {
        let route = res.request().match_pattern();
        m.observe_request(route.as_deref(), method.as_str(), status, took);
    }
    let latency_ms = took.as_secs_f64() * 1000.0;
    span.in_scope(|| {
        tracing::info!(%method, %path, status, latency_ms = format_args!("{latency_ms:.2}"), "request");
    });
    Ok(res)
}

fn scim_error_body(res: ServiceResponse<BoxBody>) -> ServiceResponse<BoxBody> {
    let status = res.status();
    let is_scim = res
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(SCIM_JSON.as_bytes()));
    if !(status.is_client_error() || status.is_server_error()) || is_scim {
        return res;
    }
    let detail = match status.as_u16() {
        404 => "The requested endpoint does not exist.".to_string(),
        405 => "This method is not allowed on this endpoint.".to_string(),
        413 => "The request body is too large.".to_string(),
        s if s >= 500 => "Internal server error.".to_string(),
        _ => status
            .canonical_reason()
            .unwrap_or("Bad request")
            .to_string(),
    };
    let (req, _) = res.into_parts();
    let body = actix_web::ResponseError::error_response(&ScimError::new(status, detail));
    ServiceResponse::new(req, body)
}
