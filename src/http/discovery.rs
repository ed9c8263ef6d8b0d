//! Discovery endpoints (RFC 7644 §4): `/ServiceProviderConfig`,
//! `/ResourceTypes`, `/Schemas`. Generated from the schema registry and the
//! configuration, so they advertise exactly what this server does.

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Value, json};

use super::{HttpSettings, base_url, scim_json};
use crate::error::ScimError;
use crate::scim::list::LIST_RESPONSE_URN;
use crate::scim::schema::{Registry, ResourceType};

/// `GET /ServiceProviderConfig`.
pub async fn get_service_provider_config(
    req: HttpRequest,
    settings: web::Data<HttpSettings>,
) -> HttpResponse {
    let base = base_url(&req, &settings);
    scim_json(json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
        "documentationUri": "https://github.com/scim-gateway/scim-gateway#readme",
        "patch": {"supported": true},
        "bulk": {
            "supported": true,
            "maxOperations": settings.bulk_max_operations,
            "maxPayloadSize": settings.bulk_max_payload_bytes,
        },
        "filter": {"supported": true, "maxResults": settings.max_page_size},
        "changePassword": {"supported": false},
        "sort": {"supported": true},
        "etag": {"supported": true},
        "pagination": {
            "cursor": true,
            "index": true,
            "defaultPaginationMethod": "index",
            "defaultPageSize": settings.default_page_size,
            "maxPageSize": settings.max_page_size,
        },
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "OAuth Bearer Token",
            "description": "Authentication with a bearer token issued for one tenant (RFC 6750).",
            "specUri": "https://www.rfc-editor.org/rfc/rfc6750",
            "primary": true,
        }],
        "meta": {
            "resourceType": "ServiceProviderConfig",
            "location": format!("{base}/ServiceProviderConfig"),
        },
    }))
}

fn resource_type_json(rt: &ResourceType, base: &str) -> Value {
    let extensions: Vec<Value> = rt
        .extensions
        .iter()
        .map(|(s, required)| json!({"schema": s.id, "required": required}))
        .collect();
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
        "id": rt.name,
        "name": rt.name,
        "endpoint": rt.endpoint,
        "description": rt.schema.raw.get("description").cloned().unwrap_or(Value::Null),
        "schema": rt.schema.id,
        "schemaExtensions": extensions,
        "meta": {"resourceType": "ResourceType", "location": format!("{base}/ResourceTypes/{}", rt.name)},
    })
}

fn schema_json(raw: &Value, id: &str, base: &str) -> Value {
    let mut v = raw.clone();
    if let Some(o) = v.as_object_mut() {
        o.insert(
            "schemas".into(),
            json!(["urn:ietf:params:scim:schemas:core:2.0:Schema"]),
        );
        o.insert(
            "meta".into(),
            json!({"resourceType": "Schema", "location": format!("{base}/Schemas/{id}")}),
        );
    }
    v
}

fn list(resources: Vec<Value>) -> HttpResponse {
    scim_json(json!({
        "schemas": [LIST_RESPONSE_URN],
        "totalResults": resources.len(),
        "itemsPerPage": resources.len(),
        "startIndex": 1,
        "Resources": resources,
    }))
}

/// `GET /ResourceTypes`.
pub async fn list_resource_types(
    req: HttpRequest,
    reg: web::Data<Registry>,
    settings: web::Data<HttpSettings>,
) -> HttpResponse {
    let base = base_url(&req, &settings);
    list(
        reg.resource_types()
            .iter()
            .map(|rt| resource_type_json(rt, &base))
            .collect(),
    )
}

/// `GET /ResourceTypes/{name}`.
pub async fn get_resource_type(
    req: HttpRequest,
    name: web::Path<String>,
    reg: web::Data<Registry>,
    settings: web::Data<HttpSettings>,
) -> Result<HttpResponse, ScimError> {
    let base = base_url(&req, &settings);
    reg.resource_types()
        .iter()
        .find(|rt| rt.name.eq_ignore_ascii_case(&name))
        .map(|rt| scim_json(resource_type_json(rt, &base)))
        .ok_or_else(|| ScimError::not_found(format!("Resource type '{name}' does not exist.")))
}

/// `GET /Schemas`.
pub async fn list_schemas(
    req: HttpRequest,
    reg: web::Data<Registry>,
    settings: web::Data<HttpSettings>,
) -> HttpResponse {
    let base = base_url(&req, &settings);
    list(
        reg.schemas
            .iter()
            .map(|s| schema_json(&s.raw, &s.id, &base))
            .collect(),
    )
}

/// `GET /Schemas/{urn}`.
pub async fn get_schema(
    req: HttpRequest,
    id: web::Path<String>,
    reg: web::Data<Registry>,
    settings: web::Data<HttpSettings>,
) -> Result<HttpResponse, ScimError> {
    let base = base_url(&req, &settings);
    reg.schema(&id)
        .map(|s| scim_json(schema_json(&s.raw, &s.id, &base)))
        .ok_or_else(|| ScimError::not_found(format!("Schema '{id}' does not exist.")))
}
