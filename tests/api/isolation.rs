//! Tenant isolation matrix: every SCIM endpoint (by id, lists and filters,
//! `.search`, root `.search`, Bulk, membership, cursors, app pull tokens) is
//! called with tenant globex's credentials and tenant acme's ids. Nothing
//! of acme is returned, changed or revealed: an id of another tenant gets
//! exactly the answer of an id that does not exist (404, an empty list, an
//! unknown member), and acme's resources, memberships and audit rows are
//! the same afterwards.

use reqwest::Method;
use scim_gateway::config::{AppSettings, Settings, TokenSettings, hash_token};
use serde_json::{Value, json};

use crate::helpers::*;

const USER_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const BULK: &str = "urn:ietf:params:scim:api:messages:2.0:BulkRequest";
const SEARCH: &str = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";
/// Pull token of globex's app `crm`.
const GLOBEX_PULL: &str = "globex-crm-pull-token";
/// Pull token of acme's app `wiki`.
const ACME_PULL: &str = "acme-wiki-pull-token";
/// An id that exists in no tenant.
const NOWHERE: &str = "00000000-0000-4000-8000-000000000000";

fn id_of(resource: &Value) -> String {
    resource["id"].as_str().expect("id").to_string()
}

fn pulling_apps(s: &mut Settings) {
    for (name, tenant, secret) in [("crm", "globex", GLOBEX_PULL), ("wiki", "acme", ACME_PULL)] {
        s.apps.push(AppSettings {
            name: name.into(),
            tenant: tenant.into(),
            groups: true,
            pull_tokens: vec![TokenSettings {
                id: format!("{name}-pull"),
                sha256: Some(hex::encode(hash_token(secret))),
                secret_env: None,
            }],
            ..AppSettings::default()
        });
    }
}

/// Acme's resources as acme sees them, with their audit row counts.
struct AcmeState {
    users: Vec<Value>,
    groups: Vec<Value>,
    audit: Vec<i64>,
}

async fn acme_state(acme: &TestApp, user_ids: &[String], group_ids: &[String]) -> AcmeState {
    let mut state = AcmeState {
        users: Vec::new(),
        groups: Vec::new(),
        audit: Vec::new(),
    };
    for id in user_ids {
        state.users.push(acme.get_ok(&format!("/Users/{id}")).await);
        state.audit.push(acme.audit_count(Some(id)));
    }
    for id in group_ids {
        state
            .groups
            .push(acme.get_ok(&format!("/Groups/{id}")).await);
        state.audit.push(acme.audit_count(Some(id)));
    }
    state
}

fn assert_same_state(before: &AcmeState, after: &AcmeState) {
    assert_eq!(before.users, after.users, "acme's users changed");
    assert_eq!(before.groups, after.groups, "acme's groups changed");
    assert_eq!(before.audit, after.audit, "acme's audit rows changed");
}

/// Status and body of a request; the body as JSON when it is JSON.
async fn call(app: &TestApp, method: Method, path: &str, body: Option<&Value>) -> (u16, Value) {
    let res = app
        .request(method, path, body)
        .send()
        .await
        .expect("request");
    let status = res.status().as_u16();
    let text = res.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Every by-id request on `endpoint/{id}`, in a form valid for that type.
fn by_id_requests(endpoint: &str, id: &str) -> Vec<(Method, String, Option<Value>)> {
    let path = format!("{endpoint}/{id}");
    let full = if endpoint == "/Users" {
        json!({"schemas": [USER_URN], "userName": "taken-over"})
    } else {
        json!({"schemas": [GROUP_URN], "displayName": "taken-over"})
    };
    let attr = if endpoint == "/Users" {
        "title"
    } else {
        "displayName"
    };
    vec![
        (Method::GET, path.clone(), None),
        (Method::GET, format!("{path}?attributes=id"), None),
        (Method::PUT, path.clone(), Some(full)),
        (
            Method::PATCH,
            path.clone(),
            Some(patch_op(
                json!([{"op": "replace", "path": attr, "value": "x"}]),
            )),
        ),
        (
            Method::PATCH,
            path.clone(),
            Some(patch_op(json!([{"op": "remove", "path": "members"}]))),
        ),
        (Method::DELETE, path, None),
    ]
}

/// Asserts that a list answer holds none of `ids` and returns its total.
fn assert_lists_none_of(list: &Value, ids: &[String], what: &str) -> u64 {
    let text = list.to_string();
    for id in ids {
        assert!(!text.contains(id.as_str()), "{what} reveals {id}: {list}");
    }
    list["totalResults"]
        .as_u64()
        .unwrap_or_else(|| panic!("{what}: {list}"))
}

#[tokio::test]
async fn no_endpoint_returns_changes_or_reveals_another_tenants_resources() {
    let acme = spawn_app_with(pulling_apps).await;
    let globex = acme.with_token(GLOBEX_TOKEN);

    // acme: two users (one in a group), one group; globex: a user with the
    // same userName and externalId as acme's, and a group of its own.
    let a1 = acme
        .create_user_from(json!({"userName": "alice", "externalId": "ext-1",
            "emails": [{"value": "alice@acme.test", "type": "work"}]}))
        .await;
    let a2 = acme.create_user("amos").await;
    let ga = acme.create_group("acme-admins", &[&id_of(&a1)]).await;
    let b1 = globex
        .create_user_from(json!({"userName": "alice", "externalId": "ext-1"}))
        .await;
    let gb = globex.create_group("globex-staff", &[&id_of(&b1)]).await;
    let acme_users = vec![id_of(&a1), id_of(&a2)];
    let acme_groups = vec![id_of(&ga)];
    let acme_ids: Vec<String> = acme_users.iter().chain(&acme_groups).cloned().collect();
    let before = acme_state(&acme, &acme_users, &acme_groups).await;
    let pull = acme.with_token(GLOBEX_PULL);

    // By id: exactly the answer for an id that exists nowhere.
    // Every acme id on both endpoints (a group's id on /Users too).
    for endpoint in ["/Users", "/Groups"] {
        for id in &acme_ids {
            let requests = by_id_requests(endpoint, id)
                .into_iter()
                .zip(by_id_requests(endpoint, NOWHERE));
            for ((method, path, body), (_, nowhere_path, _)) in requests {
                for client in [&globex, &pull] {
                    let (status, answer) = call(client, method.clone(), &path, body.as_ref()).await;
                    let (_, nowhere) =
                        call(client, method.clone(), &nowhere_path, body.as_ref()).await;
                    if client.token == GLOBEX_PULL && method != Method::GET {
                        // A pull token may not write at all, whatever the id.
                        assert_eq!(status, 403, "{method} {path} with a pull token");
                    } else {
                        assert_eq!(status, 404, "{method} {path}: {answer}");
                    }
                    assert_eq!(
                        answer, nowhere,
                        "{method} {path} differs from an unknown id"
                    );
                }
            }
        }
    }
    // Conditional requests do not reveal a version either.
    for header in ["if-match", "if-none-match"] {
        let res = globex
            .request(Method::GET, &format!("/Users/{}", acme_users[0]), None)
            .header(header, "*")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 404, "{header}");
        assert!(res.headers().get("etag").is_none());
    }

    // Lists, filters and searches.
    for client in [&globex, &pull] {
        let mut queries: Vec<(String, String)> = vec![
            ("/Users".into(), String::new()),
            ("/Groups".into(), String::new()),
            ("/Users".into(), "userName eq \"alice\"".into()),
            ("/Users".into(), "externalId eq \"ext-1\"".into()),
            ("/Users".into(), "emails.value co \"acme\"".into()),
            ("/Users".into(), "userName sw \"a\"".into()),
            ("/Users".into(), "not (userName eq \"nobody\")".into()),
            ("/Groups".into(), "displayName sw \"acme\"".into()),
        ];
        for id in &acme_ids {
            queries.push(("/Users".into(), format!("id eq \"{id}\"")));
            queries.push(("/Groups".into(), format!("id eq \"{id}\"")));
            queries.push(("/Groups".into(), format!("members[value eq \"{id}\"]")));
            queries.push(("/Groups".into(), format!("members.value eq \"{id}\"")));
            queries.push(("/Users".into(), format!("groups.value eq \"{id}\"")));
        }
        for (path, filter) in &queries {
            let q: Vec<(&str, &str)> = if filter.is_empty() {
                vec![]
            } else {
                vec![("filter", filter.as_str())]
            };
            let what = format!("{} {path}?filter={filter}", client.token);
            let list = client.list_ok(path, &q).await;
            let total = assert_lists_none_of(&list, &acme_ids, &what);
            assert!(total <= 1, "{what} counts acme's resources: {list}");
            let body = if filter.is_empty() {
                json!({"schemas": [SEARCH]})
            } else {
                json!({"schemas": [SEARCH], "filter": filter})
            };
            let (status, list) = call(
                client,
                Method::POST,
                &format!("{path}/.search"),
                Some(&body),
            )
            .await;
            assert_eq!(status, 200, "{what} .search: {list}");
            assert_lists_none_of(&list, &acme_ids, &format!("{what} .search"));
            let (status, list) = call(client, Method::POST, "/.search", Some(&body)).await;
            if status == 200 {
                assert_lists_none_of(&list, &acme_ids, &format!("{what} root .search"));
            } else {
                // A filter that fits neither type (e.g. `members` for a user).
                assert_eq!(list["scimType"], "invalidFilter", "{what}: {list}");
            }
        }
        let (_, all) = call(
            client,
            Method::POST,
            "/.search",
            Some(&json!({"schemas": [SEARCH]})),
        )
        .await;
        assert_eq!(
            all["totalResults"], 2,
            "globex has one user and one group: {all}"
        );
    }

    // A cursor handed to acme does not open acme's pages to globex.
    let page = acme
        .list_ok("/Users", &[("cursor", ""), ("count", "1")])
        .await;
    let next = page["nextCursor"].as_str().expect("acme has a second page");
    let (status, list) = call(
        &globex,
        Method::GET,
        &format!("/Users?count=1&cursor={next}"),
        None,
    )
    .await;
    if status == 200 {
        assert_lists_none_of(&list, &acme_ids, "globex with acme's cursor");
    } else {
        assert_eq!(list["scimType"], "invalidCursor", "{list}");
    }

    // Membership: acme's users cannot be put into globex's groups, and the
    // refusal is the one for an unknown id.
    let gb_path = format!("/Groups/{}", id_of(&gb));
    let member_refusals = |id: &str| {
        vec![
            (
                Method::PATCH,
                gb_path.clone(),
                patch_op(json!([{"op": "add", "path": "members", "value": [{"value": id}]}])),
            ),
            (
                Method::PUT,
                gb_path.clone(),
                json!({"schemas": [GROUP_URN], "displayName": "globex-staff", "members": [{"value": id}]}),
            ),
            (
                Method::POST,
                "/Groups".to_string(),
                json!({"schemas": [GROUP_URN], "displayName": "grab", "members": [{"value": id}]}),
            ),
        ]
    };
    for id in &acme_ids {
        for ((method, path, body), (_, _, nowhere_body)) in member_refusals(id)
            .into_iter()
            .zip(member_refusals(NOWHERE))
        {
            let (status, answer) = call(&globex, method.clone(), &path, Some(&body)).await;
            assert_eq!(status, 400, "{method} {path} with member {id}: {answer}");
            assert_eq!(answer["scimType"], "invalidValue");
            let (_, nowhere) = call(&globex, method.clone(), &path, Some(&nowhere_body)).await;
            assert_eq!(
                answer["detail"].as_str().unwrap().replace(id.as_str(), "?"),
                nowhere["detail"].as_str().unwrap().replace(NOWHERE, "?"),
                "{method} {path}"
            );
        }
        // Removing a member globex's group does not have is a no-op.
        let ops = json!([{"op": "remove", "path": format!("members[value eq \"{id}\"]")}]);
        globex.patch_ok(&gb_path, ops).await;
    }
    assert_eq!(
        globex.get_ok(&gb_path).await["members"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Bulk: every operation on an acme id fails as for an unknown id.
    let mut ops = Vec::new();
    for (endpoint, id) in [("/Users", &acme_users[0]), ("/Groups", &acme_groups[0])] {
        for (method, path, data) in by_id_requests(endpoint, id) {
            if method == Method::GET {
                continue;
            }
            let mut op = json!({"method": method.as_str(), "path": path});
            if let Some(d) = data {
                op["data"] = d;
            }
            ops.push(op);
        }
    }
    ops.push(json!({"method": "POST", "bulkId": "g", "path": "/Groups",
        "data": {"schemas": [GROUP_URN], "displayName": "bulk-grab", "members": [{"value": acme_users[0]}]}}));
    let (status, answer) = call(
        &globex,
        Method::POST,
        "/Bulk",
        Some(&json!({"schemas": [BULK], "Operations": ops})),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let results = answer["Operations"].as_array().unwrap();
    assert_eq!(results.len(), ops.len());
    for r in results {
        let expected = if r["method"] == "POST" { "400" } else { "404" };
        assert_eq!(r["status"], expected, "{r}");
        assert!(r.get("location").is_none(), "{r}");
    }

    // acme's side is exactly as it was, and globex wrote no audit row about it.
    let after = acme_state(&acme, &acme_users, &acme_groups).await;
    assert_same_state(&before, &after);
    assert!(
        acme.audit_rows()
            .iter()
            .filter(|r| r.tenant.as_deref() == Some("globex"))
            .all(|r| r
                .resource_id
                .as_ref()
                .is_none_or(|id| !acme_ids.contains(id))),
        "globex's audit rows name acme's resources"
    );
    // And acme's own app still sees acme's users, not globex's.
    let wiki = acme.with_token(ACME_PULL).list_ok("/Users", &[]).await;
    assert_eq!(wiki["totalResults"], 2);
    assert_lists_none_of(&wiki, &[id_of(&b1), id_of(&gb)], "acme's pull token");
}

#[tokio::test]
#[ignore = "needs PostgreSQL (SCIM_TEST_POSTGRES_URL); scripts/test runs it in its PostgreSQL pass"]
async fn a_write_naming_another_tenants_id_locks_nothing_of_that_tenant() {
    use diesel::Connection;
    use diesel::prelude::*;
    use scim_gateway::store::{AnyConnection, StoreError, lock_resource};
    assert!(
        std::env::var(PG_ENV).is_ok(),
        "row locks are taken on PostgreSQL only: set {PG_ENV}"
    );
    let acme = spawn_app().await;
    let id = id_of(&acme.create_user("alice").await);
    let url = acme.database_url.clone();
    tokio::task::spawn_blocking(move || {
        let mut writer = AnyConnection::Postgresql(diesel::PgConnection::establish(&url).unwrap());
        let mut other = diesel::PgConnection::establish(&url).unwrap();
        // Whether another session could take acme's row right now.
        let mut row_is_free = || {
            diesel::sql_query("SELECT 1 FROM resources WHERE id = $1 FOR UPDATE NOWAIT")
                .bind::<diesel::sql_types::Text, _>(&id)
                .execute(&mut other)
                .is_ok()
        };
        writer
            .transaction(|tx| {
                lock_resource(tx, "globex", &id)?;
                assert!(row_is_free(), "globex's write locked acme's row");
                lock_resource(tx, "acme", &id)?;
                assert!(!row_is_free(), "acme's own write must lock its row");
                Ok::<_, StoreError>(())
            })
            .unwrap();
    })
    .await
    .unwrap();
}
