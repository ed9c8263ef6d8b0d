//! `/Users` and `/Groups`: one set of handlers, parameterised by the
//! resource kind the route was registered with.

use std::future::{Ready, ready};

use actix_web::dev::Payload;
use actix_web::http::{StatusCode, header};
use actix_web::{FromRequest, HttpRequest, HttpResponse, web};

use super::body::read_json;
use super::{HttpSettings, base_url, json_bytes};
use crate::domain::{Actor, Kind};
use crate::error::{SCIM_JSON, ScimError};
use crate::scim::list::{LIST_RESPONSE_URN, ListParams};
use crate::scim::project::Projection;
use crate::scim::render::{Stored, location, render, render_default};
use crate::scim::service::{Load, Service};

impl FromRequest for Kind {
    type Error = ScimError;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(
            req.app_data::<Kind>()
                .copied()
                .ok_or_else(|| ScimError::not_found("The requested endpoint does not exist.")),
        )
    }
}

fn query_pairs(req: &HttpRequest) -> Result<Vec<(String, String)>, ScimError> {
    // Decoding replaces bytes that are not UTF-8 with U+FFFD, which would
    // let a filter on garbage succeed as a filter on something else.
    for pair in req.query_string().split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if !decodes_to_utf8(name) || !decodes_to_utf8(value) {
            let detail = format!(
                "The query parameter '{}' is not UTF-8 once percent-decoded.",
                String::from_utf8_lossy(&percent_decode(name))
            );
            return Err(if name.eq_ignore_ascii_case("filter") {
                ScimError::invalid_filter(detail)
            } else {
                ScimError::invalid_syntax(detail)
            });
        }
    }
    web::Query::<Vec<(String, String)>>::from_query(req.query_string())
        .map(web::Query::into_inner)
        .map_err(|e| ScimError::invalid_syntax(format!("The query string is malformed: {e}")))
}

/// The bytes of a form-encoded component (`+` is a space).
fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match b[i] {
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    out
}

fn decodes_to_utf8(s: &str) -> bool {
    std::str::from_utf8(&percent_decode(s)).is_ok()
}

fn param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

struct Ctx {
    projection: Projection,
    load: Load,
}

fn ctx(svc: &Service, kind: Kind, pairs: &[(String, String)]) -> Ctx {
    let projection = svc.projection(
        kind,
        param(pairs, "attributes"),
        param(pairs, "excludedAttributes"),
    );
    let rt = svc.resource_type(kind);
    let load = Load {
        members: kind == Kind::Group && projection.wants(rt, "members"),
        groups: kind == Kind::User && projection.wants(rt, "groups"),
    };
    Ctx { projection, load }
}

fn if_match(req: &HttpRequest) -> Option<String> {
    req.headers()
        .get(header::IF_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

#[expect(clippy::too_many_arguments, reason = "a response has many inputs")]
fn respond(
    status: StatusCode,
    req: &HttpRequest,
    settings: &HttpSettings,
    svc: &Service,
    actor: &Actor,
    kind: Kind,
    stored: &Stored,
    projection: &Projection,
) -> HttpResponse {
    let rt = svc.resource_type(kind);
    let base = base_url(req, settings);
    let body = resource_bytes(svc, actor, kind, stored, projection, &base);
    let mut res = HttpResponse::build(status);
    res.content_type(SCIM_JSON)
        .insert_header((header::ETAG, stored.etag()));
    if status == StatusCode::CREATED {
        res.insert_header((header::LOCATION, location(rt, &stored.row, &base)));
    }
    res.body(body)
}

/// A resource's response body under `projection`. The default projection
/// for an actor that is not an app is written from the stored text when
/// it can be ([`render_default`]); a GET by id spent about a sixth of its
/// time parsing that text into a tree and serialising it again.
fn resource_bytes(
    svc: &Service,
    actor: &Actor,
    kind: Kind,
    stored: &Stored,
    projection: &Projection,
    base: &str,
) -> Vec<u8> {
    let rt = svc.resource_type(kind);
    if projection.is_default()
        && actor.app.is_none()
        && let Some(body) = render_default(rt, stored, base)
    {
        return body;
    }
    let mut doc = render(rt, stored, base);
    projection.apply(rt, &mut doc);
    json_bytes(&svc.pull_view(actor, kind, doc))
}

/// `GET /Users`, `GET /Groups`.
pub async fn list_resources(
    req: HttpRequest,
    kind: Kind,
    actor: Actor,
    svc: web::Data<Service>,
    settings: web::Data<HttpSettings>,
) -> Result<HttpResponse, ScimError> {
    let pairs = query_pairs(&req)?;
    let params = ListParams::from_pairs(&pairs, &svc.settings)?;
    list_page(req, kind, actor, svc, settings, params).await
}

/// `POST /Users/.search`, `POST /Groups/.search`.
pub async fn search_resources(
    req: HttpRequest,
    kind: Kind,
    actor: Actor,
    payload: web::Payload,
    svc: web::Data<Service>,
    settings: web::Data<HttpSettings>,
) -> Result<HttpResponse, ScimError> {
    let body = read_json(&req, payload, settings.limits).await?;
    let params = ListParams::from_search_body(&body, &svc.settings)?;
    list_page(req, kind, actor, svc, settings, params).await
}

/// The projection of a list request and what it needs loaded: a list never
/// embeds group members unless they are asked for by name.
fn list_projection(svc: &Service, kind: Kind, params: &ListParams) -> (Projection, Load) {
    let projection = svc.projection(
        kind,
        params.attributes.as_deref(),
        params.excluded_attributes.as_deref(),
    );
    let load = Load {
        members: kind == Kind::Group && projection.asks_for("members"),
        groups: kind == Kind::User && projection.wants(svc.resource_type(kind), "groups"),
    };
    (projection, load)
}

async fn list_page(
    req: HttpRequest,
    kind: Kind,
    actor: Actor,
    svc: web::Data<Service>,
    settings: web::Data<HttpSettings>,
    params: ListParams,
) -> Result<HttpResponse, ScimError> {
    let (projection, load) = list_projection(&svc, kind, &params);
    let page = svc.list(&actor, kind, params, load).await?;
    let base = base_url(&req, &settings);
    let resources: Vec<Vec<u8>> = page
        .resources
        .iter()
        .map(|s| resource_bytes(&svc, &actor, kind, s, &projection, &base))
        .collect();
    let body = list_response(page.total, page.start_index, resources, page.cursors);
    Ok(HttpResponse::Ok().content_type(SCIM_JSON).body(body))
}

/// `POST /Users`, `POST /Groups`.
pub async fn create_resource(
    req: HttpRequest,
    kind: Kind,
    actor: Actor,
    payload: web::Payload,
    svc: web::Data<Service>,
    settings: web::Data<HttpSettings>,
) -> Result<HttpResponse, ScimError> {
    let body = read_json(&req, payload, settings.limits).await?;
    let c = ctx(&svc, kind, &query_pairs(&req)?);
    let stored = svc.create(&actor, kind, body, c.load).await?;
    Ok(respond(
        StatusCode::CREATED,
        &req,
        &settings,
        &svc,
        &actor,
        kind,
        &stored,
        &c.projection,
    ))
}

/// `GET /Users/{id}`; answers 304 when `If-None-Match` names the current version.
pub async fn get_resource(
    req: HttpRequest,
    kind: Kind,
    actor: Actor,
    id: web::Path<String>,
    svc: web::Data<Service>,
    settings: web::Data<HttpSettings>,
) -> Result<HttpResponse, ScimError> {
    let c = ctx(&svc, kind, &query_pairs(&req)?);
    let stored = svc.get(&actor, kind, &id, c.load).await?;
    let etag = stored.etag();
    if let Some(inm) = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        && inm
            .split(',')
            .map(str::trim)
            .any(|t| t == "*" || t.trim_start_matches("W/") == etag.trim_start_matches("W/"))
    {
        return Ok(HttpResponse::NotModified()
            .insert_header((header::ETAG, etag))
            .finish());
    }
    Ok(respond(
        StatusCode::OK,
        &req,
        &settings,
        &svc,
        &actor,
        kind,
        &stored,
        &c.projection,
    ))
}

/// `PUT /Users/{id}`.
pub async fn replace_resource(
    req: HttpRequest,
    kind: Kind,
    actor: Actor,
    id: web::Path<String>,
    payload: web::Payload,
    svc: web::Data<Service>,
    settings: web::Data<HttpSettings>,
) -> Result<HttpResponse, ScimError> {
    let body = read_json(&req, payload, settings.limits).await?;
    let c = ctx(&svc, kind, &query_pairs(&req)?);
    let stored = svc
        .replace(&actor, kind, &id, body, if_match(&req), c.load)
        .await?;
    Ok(respond(
        StatusCode::OK,
        &req,
        &settings,
        &svc,
        &actor,
        kind,
        &stored,
        &c.projection,
    ))
}

/// `PATCH /Users/{id}`; `Prefer: return=minimal` answers 204.
pub async fn patch_resource(
    req: HttpRequest,
    kind: Kind,
    actor: Actor,
    id: web::Path<String>,
    payload: web::Payload,
    svc: web::Data<Service>,
    settings: web::Data<HttpSettings>,
) -> Result<HttpResponse, ScimError> {
    let body = read_json(&req, payload, settings.limits).await?;
    let minimal = req
        .headers()
        .get("prefer")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("return=minimal"));
    let mut c = ctx(&svc, kind, &query_pairs(&req)?);
    if minimal {
        c.load = Load::default();
    }
    let stored = svc
        .patch(&actor, kind, &id, body, if_match(&req), c.load)
        .await?;
    if minimal {
        return Ok(HttpResponse::NoContent()
            .insert_header((header::ETAG, stored.etag()))
            .finish());
    }
    Ok(respond(
        StatusCode::OK,
        &req,
        &settings,
        &svc,
        &actor,
        kind,
        &stored,
        &c.projection,
    ))
}

/// `DELETE /Users/{id}`.
pub async fn delete_resource(
    req: HttpRequest,
    kind: Kind,
    actor: Actor,
    id: web::Path<String>,
    svc: web::Data<Service>,
) -> Result<HttpResponse, ScimError> {
    svc.delete(&actor, kind, &id, if_match(&req)).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `POST /.search`: searches Users, then Groups, as one paged result. A
/// filter that names an attribute only one type defines matches nothing of
/// the other type; one that fits neither is `invalidFilter`.
pub async fn search_all(
    req: HttpRequest,
    actor: Actor,
    payload: web::Payload,
    svc: web::Data<Service>,
    settings: web::Data<HttpSettings>,
) -> Result<HttpResponse, ScimError> {
    let body = read_json(&req, payload, settings.limits).await?;
    let params = ListParams::from_search_body(&body, &svc.settings)?;
    if params.cursor.is_some() {
        return Err(ScimError::invalid_value(
            "Cursor pagination is offered per resource type (/Users, /Groups), not on /.search.",
        ));
    }
    let base = base_url(&req, &settings);
    let mut total = 0;
    let mut resources: Vec<Vec<u8>> = Vec::new();
    let mut skip = params.start_index - 1;
    let mut first_error = None;
    let mut answered = false;
    for kind in [Kind::User, Kind::Group] {
        let (projection, load) = list_projection(&svc, kind, &params);
        let p = ListParams {
            start_index: skip + 1,
            count: params.count - resources.len(),
            ..params.clone()
        };
        let page = match svc.list(&actor, kind, p, load).await {
            Ok(page) => page,
            Err(e) if e.scim_type().is_some() => {
                first_error.get_or_insert(e);
                continue;
            }
            Err(e) => return Err(e),
        };
        answered = true;
        total += page.total;
        skip = skip.saturating_sub(page.total);
        resources.extend(
            page.resources
                .iter()
                .map(|s| resource_bytes(&svc, &actor, kind, s, &projection, &base)),
        );
    }
    if let (false, Some(e)) = (answered, first_error) {
        return Err(e);
    }
    let body = list_response(total, params.start_index, resources, None);
    Ok(HttpResponse::Ok().content_type(SCIM_JSON).body(body))
}

/// A ListResponse's members other than `Resources`, in the order written.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct ListHead {
    schemas: [&'static str; 1],
    total_results: usize,
    items_per_page: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    start_index: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    previous_cursor: Option<String>,
}

/// A ListResponse's bytes, its resources already serialised; in cursor
/// mode (RFC 9865) with `nextCursor` / `previousCursor` instead of
/// `startIndex`.
fn list_response(
    total: usize,
    start_index: usize,
    resources: Vec<Vec<u8>>,
    cursors: Option<(Option<String>, Option<String>)>,
) -> Vec<u8> {
    let (start_index, (next_cursor, previous_cursor)) = match cursors {
        None => (Some(start_index), (None, None)),
        Some(c) => (None, c),
    };
    let head = ListHead {
        schemas: [LIST_RESPONSE_URN],
        total_results: total,
        items_per_page: resources.len(),
        start_index,
        next_cursor,
        previous_cursor,
    };
    let mut body = json_bytes(&head);
    // `head` is a non-empty object: replace its closing brace.
    body.pop();
    body.extend_from_slice(br#","Resources":["#);
    for (i, r) in resources.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(r);
    }
    body.extend_from_slice(b"]}");
    body
}
