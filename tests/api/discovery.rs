//! Discovery (RFC 7644 §4) and health endpoints as a client sees them: what
//! the gateway advertises, and that none of it needs a token.

use serde_json::{Value, json};

use crate::helpers::*;

const USER_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const ENTERPRISE_URN: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const LIST_URN: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";

/// GETs a discovery endpoint without any token; asserts 200 and the SCIM media type.
async fn discover(app: &TestApp, path: &str) -> Value {
    let res = app.client.get(app.url(path)).send().await.unwrap();
    assert_eq!(res.status(), 200, "GET {path}");
    assert_eq!(
        res.headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap()),
        Some(SCIM_JSON),
        "GET {path}"
    );
    res.json().await.unwrap()
}

fn attribute<'a>(schema: &'a Value, name: &str) -> &'a Value {
    schema["attributes"]
        .as_array()
        .expect("attributes")
        .iter()
        .find(|a| a["name"] == name)
        .unwrap_or_else(|| panic!("attribute {name} in {}", schema["id"]))
}

#[tokio::test]
async fn service_provider_config_advertises_what_the_gateway_supports() {
    let app = spawn_app().await;
    let spc = discover(&app, "/ServiceProviderConfig").await;
    assert_eq!(
        spc["schemas"],
        json!(["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"])
    );
    assert_eq!(spc["patch"]["supported"], true);
    assert_eq!(spc["filter"]["supported"], true);
    assert!(spc["filter"]["maxResults"].as_u64().unwrap() > 0);
    assert_eq!(spc["sort"]["supported"], true);
    assert_eq!(spc["etag"]["supported"], true);
    assert!(spc["bulk"]["supported"].is_boolean());
    assert!(spc["bulk"]["maxOperations"].is_number());
    assert!(spc["bulk"]["maxPayloadSize"].is_number());
    assert!(spc["changePassword"]["supported"].is_boolean());
    let schemes = spc["authenticationSchemes"].as_array().unwrap();
    let bearer = schemes
        .iter()
        .find(|s| s["type"] == "oauthbearertoken")
        .expect("oauthbearertoken scheme");
    assert!(bearer["name"].is_string());
    assert!(bearer["description"].is_string());
    let pagination = &spc["pagination"];
    assert_eq!(pagination["index"], true);
    // The harness configures pages of 50, at most 200.
    assert_eq!(pagination["defaultPageSize"], 50);
    assert_eq!(pagination["maxPageSize"], 200);
    assert_eq!(spc["filter"]["maxResults"], 200);
    assert_eq!(spc["meta"]["resourceType"], "ServiceProviderConfig");
    assert_eq!(spc["meta"]["location"], app.url("/ServiceProviderConfig"));
}

#[tokio::test]
async fn advertised_bulk_support_matches_the_bulk_endpoint() {
    let app = spawn_app().await;
    let spc = discover(&app, "/ServiceProviderConfig").await;
    let bulk = &spc["bulk"];
    let res = app
        .post(
            "/Bulk",
            &json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
                    "Operations": [{"method": "POST", "path": "/Users", "bulkId": "u1",
                                    "data": {"schemas": [USER_URN], "userName": "bulky"}}]}),
        )
        .await;
    if bulk["supported"] == true {
        assert!(bulk["maxOperations"].as_u64().unwrap() > 0, "{bulk}");
        assert!(bulk["maxPayloadSize"].as_u64().unwrap() > 0, "{bulk}");
        assert_eq!(res.status(), 200);
        assert_eq!(app.user_count().await, 1);
    } else {
        assert_scim_error(res, 501, None).await;
        assert_eq!(app.user_count().await, 0);
    }
}

#[tokio::test]
async fn resource_types_list_user_with_the_enterprise_extension_and_group() {
    let app = spawn_app().await;
    let list = discover(&app, "/ResourceTypes").await;
    assert_eq!(list["schemas"], json!([LIST_URN]));
    assert_eq!(list["totalResults"], 2);
    let types = list["Resources"].as_array().unwrap();
    let user = types.iter().find(|t| t["name"] == "User").expect("User");
    assert_eq!(user["id"], "User");
    assert_eq!(user["endpoint"], "/Users");
    assert_eq!(user["schema"], USER_URN);
    assert_eq!(
        user["schemaExtensions"],
        json!([{"schema": ENTERPRISE_URN, "required": false}])
    );
    assert_eq!(
        user["schemas"],
        json!(["urn:ietf:params:scim:schemas:core:2.0:ResourceType"])
    );
    assert_eq!(user["meta"]["resourceType"], "ResourceType");
    assert_eq!(user["meta"]["location"], app.url("/ResourceTypes/User"));
    let group = types.iter().find(|t| t["name"] == "Group").expect("Group");
    assert_eq!(group["endpoint"], "/Groups");
    assert_eq!(group["schema"], GROUP_URN);
    assert_eq!(
        group["schemaExtensions"]
            .as_array()
            .map(Vec::len)
            .unwrap_or(0),
        0
    );
}

#[tokio::test]
async fn a_resource_type_is_served_by_name_and_an_unknown_one_is_404() {
    let app = spawn_app().await;
    let list = discover(&app, "/ResourceTypes").await;
    let listed = list["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "User")
        .unwrap()
        .clone();
    let user = discover(&app, "/ResourceTypes/User").await;
    assert_eq!(user, listed);
    let group = discover(&app, "/ResourceTypes/Group").await;
    assert_eq!(group["schema"], GROUP_URN);
    let res = app
        .client
        .get(app.url("/ResourceTypes/Printer"))
        .send()
        .await
        .unwrap();
    assert_scim_error(res, 404, None).await;
}

#[tokio::test]
async fn schemas_list_user_group_and_enterprise_user_with_their_attributes() {
    let app = spawn_app().await;
    let list = discover(&app, "/Schemas").await;
    assert_eq!(list["schemas"], json!([LIST_URN]));
    let schemas = list["Resources"].as_array().unwrap();
    assert_eq!(list["totalResults"], schemas.len());
    for urn in [USER_URN, GROUP_URN, ENTERPRISE_URN] {
        let s = schemas
            .iter()
            .find(|s| s["id"] == urn)
            .unwrap_or_else(|| panic!("{urn} listed"));
        assert!(s["name"].is_string(), "{urn} name");
        assert!(
            !s["attributes"].as_array().unwrap().is_empty(),
            "{urn} attributes"
        );
        assert_eq!(
            s["schemas"],
            json!(["urn:ietf:params:scim:schemas:core:2.0:Schema"])
        );
        assert_eq!(s["meta"]["resourceType"], "Schema");
        assert_eq!(s["meta"]["location"], app.url(&format!("/Schemas/{urn}")));
    }
    let user = schemas.iter().find(|s| s["id"] == USER_URN).unwrap();
    let user_name = attribute(user, "userName");
    assert_eq!(user_name["required"], true);
    assert_eq!(user_name["uniqueness"], "server");
    assert_eq!(user_name["caseExact"], false);
    let password = attribute(user, "password");
    assert_eq!(password["mutability"], "writeOnly");
    assert_eq!(password["returned"], "never");
    assert_eq!(attribute(user, "groups")["mutability"], "readOnly");
    let group = schemas.iter().find(|s| s["id"] == GROUP_URN).unwrap();
    let members = attribute(group, "members");
    assert_eq!(members["multiValued"], true);
    let subs: Vec<&str> = members["subAttributes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    for sub in ["value", "$ref", "display", "type"] {
        assert!(subs.contains(&sub), "members.{sub}");
    }
    let ent = schemas.iter().find(|s| s["id"] == ENTERPRISE_URN).unwrap();
    for name in [
        "employeeNumber",
        "costCenter",
        "organization",
        "division",
        "department",
        "manager",
    ] {
        attribute(ent, name);
    }
}

#[tokio::test]
async fn a_schema_is_served_by_urn_and_an_unknown_urn_is_404() {
    let app = spawn_app().await;
    let list = discover(&app, "/Schemas").await;
    for urn in [USER_URN, GROUP_URN, ENTERPRISE_URN] {
        let one = discover(&app, &format!("/Schemas/{urn}")).await;
        let listed = list["Resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == urn)
            .unwrap();
        assert_eq!(&one, listed, "{urn}");
    }
    let res = app
        .client
        .get(app.url("/Schemas/urn:example:params:scim:schemas:nope"))
        .send()
        .await
        .unwrap();
    assert_scim_error(res, 404, None).await;
}

#[tokio::test]
async fn healthz_and_readyz_answer_200_without_a_token() {
    let app = spawn_app().await;
    for path in ["/healthz", "/readyz"] {
        let res = app
            .client
            .get(format!("{}{path}", app.address))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{path}");
    }
}

#[tokio::test]
async fn discovery_needs_no_token_while_resources_do() {
    let app = spawn_app().await;
    for path in [
        "/ServiceProviderConfig",
        "/ResourceTypes",
        "/ResourceTypes/User",
        "/Schemas",
        &format!("/Schemas/{USER_URN}"),
    ] {
        discover(&app, path).await;
    }
    let res = app.client.get(app.url("/Users")).send().await.unwrap();
    assert_scim_error(res, 401, None).await;
}
