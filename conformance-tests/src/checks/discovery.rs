//! Discovery endpoints (RFC 7644 §4, RFC 7643 §5–§7): the
//! ServiceProviderConfig advertises every feature block, `/ResourceTypes`
//! describes User and Group, `/Schemas` carries the core schemas and
//! `/Schemas/{urn}` returns a single schema.

use serde_json::Value;

use crate::expect::{
    GROUP_SCHEMA, USER_SCHEMA, array_attr, attr, ensure, excerpt, has_schema, str_attr,
};
use crate::runner::{Check, CheckResult};
use crate::session::Session;

/// Discovery checks.
pub const CHECKS: &[Check] = &[
    Check::new("discovery/service_provider_config", service_provider_config),
    Check::new(
        "discovery/resource_types_list_user_and_group",
        resource_types,
    ),
    Check::new("discovery/resource_type_by_name", resource_type_by_name),
    Check::new("discovery/schemas_include_user_and_group", schemas),
    Check::new("discovery/schema_by_urn", schema_by_urn),
];

const SPC_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig";
const RESOURCE_TYPE_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:ResourceType";
const SCHEMA_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Schema";

/// RFC 7643 §5: every feature block has a boolean `supported`; bulk adds
/// `maxOperations`/`maxPayloadSize`, filter adds `maxResults`; each
/// authentication scheme has `type`, `name` and `description`.
fn service_provider_config(s: &Session) -> CheckResult {
    let reply = s.client().get("/ServiceProviderConfig").send()?;
    let spc = reply.json_with(200)?;
    ensure!(has_schema(spc, SPC_SCHEMA), "schemas lacks {SPC_SCHEMA}");
    for feature in ["patch", "bulk", "filter", "changePassword", "sort", "etag"] {
        let supported = attr(spc, &format!("{feature}.supported"));
        ensure!(
            supported.is_some_and(Value::is_boolean),
            "\"{feature}.supported\" should be a boolean, got {supported:?}"
        );
    }
    for number in [
        "bulk.maxOperations",
        "bulk.maxPayloadSize",
        "filter.maxResults",
    ] {
        ensure!(
            attr(spc, number).is_some_and(Value::is_u64),
            "\"{number}\" should be a non-negative integer"
        );
    }
    let schemes = array_attr(spc, "authenticationSchemes")?;
    ensure!(!schemes.is_empty(), "\"authenticationSchemes\" is empty");
    for scheme in schemes {
        for field in ["type", "name", "description"] {
            str_attr(scheme, field).map_err(|e| format!("authenticationSchemes: {e}"))?;
        }
    }
    Ok(())
}

/// Resources of a discovery list: a ListResponse or, leniently, a bare array.
fn discovery_list(s: &Session, path: &str) -> Result<Vec<Value>, String> {
    let reply = s.client().get(path).send()?;
    let body = reply.json_with(200)?;
    match body {
        Value::Array(items) => Ok(items.clone()),
        _ => Ok(array_attr(body, "Resources")?.to_vec()),
    }
}

/// RFC 7643 §6: the User and Group resource types with their endpoint and
/// core schema.
fn resource_types(s: &Session) -> CheckResult {
    let types = discovery_list(s, "/ResourceTypes")?;
    for (name, endpoint, schema) in [
        ("User", "/Users", USER_SCHEMA),
        ("Group", "/Groups", GROUP_SCHEMA),
    ] {
        let found = types
            .iter()
            .find(|t| str_attr(t, "name").is_ok_and(|n| n == name))
            .ok_or_else(|| format!("/ResourceTypes has no \"{name}\""))?;
        check_resource_type(found, endpoint, schema)?;
    }
    Ok(())
}

fn check_resource_type(t: &Value, endpoint: &str, schema: &str) -> CheckResult {
    ensure!(
        has_schema(t, RESOURCE_TYPE_SCHEMA),
        "resource type lacks schema {RESOURCE_TYPE_SCHEMA}: {}",
        excerpt(t)
    );
    let got = str_attr(t, "endpoint")?;
    ensure!(got == endpoint, "endpoint is {got}, want {endpoint}");
    let got = str_attr(t, "schema")?;
    ensure!(got == schema, "schema is {got}, want {schema}");
    Ok(())
}

/// `/ResourceTypes/User` returns the single resource type, not a list.
fn resource_type_by_name(s: &Session) -> CheckResult {
    let reply = s.client().get("/ResourceTypes/User").send()?;
    let t = reply.json_with(200)?;
    ensure!(
        str_attr(t, "name")? == "User",
        "expected the User resource type, got {}",
        excerpt(t)
    );
    check_resource_type(t, "/Users", USER_SCHEMA)
}

/// RFC 7643 §7: `/Schemas` includes the core User and Group schemas with
/// their attribute definitions.
fn schemas(s: &Session) -> CheckResult {
    let all = discovery_list(s, "/Schemas")?;
    for (urn, attribute) in [(USER_SCHEMA, "userName"), (GROUP_SCHEMA, "displayName")] {
        let schema = all
            .iter()
            .find(|v| str_attr(v, "id").is_ok_and(|id| id == urn))
            .ok_or_else(|| format!("/Schemas has no {urn}"))?;
        check_schema(schema, urn, attribute)?;
    }
    Ok(())
}

fn check_schema(schema: &Value, urn: &str, attribute: &str) -> CheckResult {
    ensure!(
        has_schema(schema, SCHEMA_SCHEMA),
        "{urn} lacks schema {SCHEMA_SCHEMA}"
    );
    let attributes = array_attr(schema, "attributes")?;
    let def = attributes
        .iter()
        .find(|a| str_attr(a, "name").is_ok_and(|n| n.eq_ignore_ascii_case(attribute)))
        .ok_or_else(|| format!("{urn} does not define \"{attribute}\""))?;
    // Other characteristics have defaults (RFC 7643 §2.2); `type` has none.
    str_attr(def, "type").map_err(|e| format!("{urn} {attribute}: {e}"))?;
    Ok(())
}

/// `/Schemas/{urn}` returns exactly that schema.
fn schema_by_urn(s: &Session) -> CheckResult {
    let reply = s.client().get(&format!("/Schemas/{USER_SCHEMA}")).send()?;
    let schema = reply.json_with(200)?;
    let id = str_attr(schema, "id")?;
    ensure!(id == USER_SCHEMA, "id is {id}, want {USER_SCHEMA}");
    check_schema(schema, USER_SCHEMA, "userName")
}
