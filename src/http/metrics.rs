//! `GET /metrics`: the Prometheus scrape endpoint (text format 0.0.4).
//!
//! The gateway usually faces the internet (cloud IdPs push to it), so the
//! endpoint wants a bearer token of its own by default: `[metrics] tokens`
//! or `SCIM_GATEWAY_METRICS_TOKEN`, which Prometheus sends with
//! `authorization: { credentials: … }`. SCIM and admin tokens do not open
//! it, and a metrics token opens nothing else. `metrics.public = true`
//! drops the check where the path is unreachable from outside.

use actix_web::{HttpRequest, HttpResponse, web};
use subtle::ConstantTimeEq;

use super::auth::bearer;
use crate::config::hash_token;
use crate::error::ScimError;
use crate::metrics::{CONTENT_TYPE, Metrics, Snapshot};
use crate::scim::service::Service;
use crate::store::{self, jobs};

/// Who may scrape.
#[derive(Debug, Clone, Default)]
pub struct MetricsAccess {
    /// The SHA-256 of each token.
    pub tokens: Vec<[u8; 32]>,
    /// No token needed.
    pub public: bool,
}

impl MetricsAccess {
    fn allows(&self, req: &HttpRequest) -> bool {
        if self.public {
            return true;
        }
        let Some(secret) = bearer(req) else {
            return false;
        };
        let presented = hash_token(secret);
        // Compare with every token, so timing does not tell which matched.
        self.tokens
            .iter()
            .fold(false, |ok, t| ok | bool::from(t.ct_eq(&presented)))
    }
}

/// `GET /metrics`.
pub async fn get_metrics(
    req: HttpRequest,
    access: web::Data<MetricsAccess>,
    metrics: web::Data<Metrics>,
    svc: web::Data<Service>,
) -> Result<HttpResponse, ScimError> {
    if !access.allows(&req) {
        return Err(ScimError::unauthorized());
    }
    let postgres = svc.db.target().is_postgres();
    let (queues, paused, audit_unsealed) = svc
        .db
        .run(move |conn| {
            let backlog = match postgres {
                true => Some(store::find_seal_backlog(conn)?),
                false => None,
            };
            Ok((jobs::queue_stats(conn)?, jobs::find_paused(conn)?, backlog))
        })
        .await?;
    let snapshot = Snapshot {
        queues,
        paused,
        now: chrono::Utc::now(),
        group_commit: Some(svc.db.group_commit()),
        read_cache: svc.db.read_cache(),
        audit_unsealed,
    };
    let apps: Vec<String> = svc
        .fanout
        .apps()
        .all()
        .filter(|a| a.pushes)
        .map(|a| a.name.clone())
        .collect();
    let text = metrics
        .render(&apps, &snapshot)
        .map_err(|e| ScimError::internal(&e))?;
    Ok(HttpResponse::Ok().content_type(CONTENT_TYPE).body(text))
}
