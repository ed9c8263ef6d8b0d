//! Microsoft Entra ID replays, lookups and lifecycle: the "Test
//! connection" probe with a random GUID, matching a user by userName,
//! externalId or `emails[type eq "work"].value`, the leaver flow (disable
//! with `"active": "False"`, stay readable, then DELETE), the
//! `aadOptscim062020` feature flag Entra appends to every request and the
//! legacy ADSCIM schema URN in its create-group body. PATCH replays live in
//! `entra_patch.rs`, group membership in `entra_groups.rs`.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::expect::{self, GROUP_SCHEMA, ListPage, attr, ensure, excerpt, id_of, str_attr};
use crate::fixtures;
use crate::runner::{Check, CheckResult};
use crate::session::{Endpoint, Session};

/// Entra ID lookup and lifecycle checks.
pub const CHECKS: &[Check] = &[
    Check::new(
        "entra/test_connection_random_guid_is_empty",
        test_connection,
    ),
    Check::new("entra/match_by_username_external_id_work_email", matching),
    Check::new("entra/leaver_disable_then_delete", leaver),
    Check::new("entra/feature_flag_query_param_ignored", feature_flag),
    Check::new("entra/create_group_with_adscim_schema_urn", adscim_group),
];

/// The schema URN Entra's classic client puts next to the core Group URN.
const ADSCIM_GROUP: &str =
    "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group";

/// An Entra-provisioned user: `(id, userName, externalId, work email)`.
pub fn entra_user(s: &Session) -> Result<(String, String, String, String), String> {
    let user_name = fixtures::unique_user_name("entra");
    let external_id = fixtures::guid();
    let mail = format!("{}@mail.example.net", fixtures::unique_name("work"));
    let body = fixtures::entra_user(&user_name, &external_id, &mail);
    let id = id_of(&s.create_user_from(&body)?)?;
    Ok((id, user_name, external_id, mail))
}

/// `GET {collection}?filter=…` (Entra sends nothing else) as a ListResponse.
fn lookup(s: &Session, collection: &str, filter: &str) -> Result<ListPage, String> {
    let reply = s.client().get(collection).query("filter", filter).send()?;
    expect::list(&reply).map_err(|e| format!("filter {filter:?}: {e}"))
}

/// Asserts `filter` finds exactly the resources `want`.
fn finds(s: &Session, collection: &str, filter: &str, want: &[&str]) -> CheckResult {
    let page = lookup(s, collection, filter)?;
    let got: BTreeSet<String> = page.ids()?.into_iter().collect();
    let want: BTreeSet<String> = want.iter().map(|id| (*id).to_owned()).collect();
    ensure!(
        got == want && page.total == want.len() as u64,
        "filter {filter:?} found {got:?} (totalResults {}), want {want:?}",
        page.total
    );
    Ok(())
}

/// "Test connection" queries a random GUID and expects 200 with an empty
/// ListResponse, not 404; Entra also probes groups the same way.
fn test_connection(s: &Session) -> CheckResult {
    let guid = fixtures::guid();
    finds(s, "/Users", &format!("userName eq \"{guid}\""), &[])?;
    let reply = s
        .client()
        .get("/Groups")
        .query("excludedAttributes", "members")
        .query("filter", &format!("displayName eq \"{guid}\""))
        .send()?;
    let page = expect::list(&reply)?;
    ensure!(
        page.total == 0,
        "random group GUID matched: {}",
        reply.describe()
    );
    Ok(())
}

/// The three matching attributes Entra offers, each exact and no wider.
fn matching(s: &Session) -> CheckResult {
    let (id, user_name, external_id, mail) = entra_user(s)?;
    finds(s, "/Users", &format!("userName eq \"{user_name}\""), &[&id])?;
    finds(
        s,
        "/Users",
        &format!("externalId eq \"{external_id}\""),
        &[&id],
    )?;
    let work = format!("emails[type eq \"work\"].value eq \"{mail}\"");
    finds(s, "/Users", &work, &[&id])?;
    let home = format!("emails[type eq \"home\"].value eq \"{mail}\"");
    finds(s, "/Users", &home, &[])
}

/// Disabling keeps the user readable and filterable; DELETE removes it.
fn leaver(s: &Session) -> CheckResult {
    let (id, user_name, _, _) = entra_user(s)?;
    let path = format!("/Users/{id}");
    let body = json!({
        "Operations": [{"op": "Replace", "path": "active", "value": "False"}],
        "schemas": [expect::PATCH_SCHEMA]
    });
    let reply = s.client().patch(&path, &body).send()?;
    ensure!(
        matches!(reply.status, 200 | 204),
        "disable: {}",
        reply.describe()
    );
    let user = s.fetch(&path)?;
    ensure!(
        attr(&user, "active") == Some(&json!(false)),
        "active is not false after disable: {}",
        excerpt(&user)
    );
    ensure!(
        is_listed(s, "active eq false", &id)?,
        "filter active eq false does not list the disabled user"
    );
    let mine = format!("userName eq \"{user_name}\"");
    finds(s, "/Users", &format!("{mine} and active eq false"), &[&id])?;
    finds(s, "/Users", &format!("{mine} and active eq true"), &[])?;
    let reply = s.client().delete(&path).send()?;
    reply.expect_status(204)?;
    expect::error(&s.client().get(&path).send()?, 404, None)?;
    finds(s, "/Users", &mine, &[])
}

/// Pages through `GET /Users?filter=…` looking for `id`.
fn is_listed(s: &Session, filter: &str, id: &str) -> Result<bool, String> {
    let mut start = 1u64;
    for _ in 0..20 {
        let reply = s
            .client()
            .get("/Users")
            .query("filter", filter)
            .query("startIndex", &start.to_string())
            .query("count", "100")
            .send()?;
        let page = expect::list(&reply)?;
        if page.ids()?.iter().any(|i| i == id) {
            return Ok(true);
        }
        start += page.resources.len() as u64;
        if page.resources.is_empty() || start > page.total {
            break;
        }
    }
    Ok(false)
}

/// The flag is typed into the tenant URL, so it rides on every request:
/// `/Users?aadOptscim062020&filter=…`, `/Users/{id}?aadOptscim062020`.
fn feature_flag(s: &Session) -> CheckResult {
    let user_name = fixtures::unique_user_name("flag");
    let body = fixtures::entra_user(&user_name, &fixtures::guid(), &user_name);
    let reply = s.client().post("/Users?aadOptscim062020", &body).send()?;
    let created = reply.json_with(201).cloned();
    if let Ok(id) = reply.body().and_then(id_of) {
        s.track(Endpoint::Users, &id);
    }
    let id = id_of(&created?)?;
    let reply = s
        .client()
        .get("/Users?aadOptscim062020")
        .query("filter", &format!("userName eq \"{user_name}\""))
        .send()?;
    ensure!(
        expect::list(&reply)?.ids()? == [id.clone()],
        "lookup with the flag did not find the user: {}",
        reply.describe()
    );
    let ops = json!([{"op": "Replace", "path": "displayName", "value": "Flagged"}]);
    let flagged = format!("/Users/{id}?aadOptscim062020");
    let reply = s.client().patch(&flagged, &fixtures::patch(ops)).send()?;
    ensure!(matches!(reply.status, 200 | 204), "{}", reply.describe());
    let user = s.client().get(&flagged).send()?;
    let got = str_attr(user.json_with(200)?, "displayName")?;
    ensure!(got == "Flagged", "displayName is {got:?} after PATCH");
    Ok(())
}

/// Microsoft's documented create-group request carries the attribute-less
/// ADSCIM URN; Entra's classic client sends it verbatim.
fn adscim_group(s: &Session) -> CheckResult {
    let name = fixtures::unique_name("adscim");
    let external_id = fixtures::guid();
    let body = fixtures::merge(
        fixtures::entra_group(&name, &external_id),
        &json!({"schemas": [GROUP_SCHEMA, ADSCIM_GROUP]}),
    );
    let reply = s.post(Endpoint::Groups, &body)?;
    let group = reply.json_with(201)?;
    let id = id_of(group)?;
    let fetched = s.fetch(&format!("/Groups/{id}"))?;
    for v in [group, &fetched] {
        ensure!(
            attr(v, "externalId") == Some(&Value::String(external_id.clone()))
                && str_attr(v, "displayName")? == name,
            "group not stored as sent: {}",
            excerpt(v)
        );
    }
    Ok(())
}
