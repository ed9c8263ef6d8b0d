//! Filter text → parse (with the configured limits) → name check → the
//! in-memory evaluator and the compiled SQL over a small store. The SQL's
//! `over` condition must admit every resource the evaluator matches, and
//! whatever its `under` condition admits must match; anything else (a
//! panic, a hang, unbounded memory) is a bug.
#![no_main]

use std::cell::RefCell;

use diesel::Connection;
use libfuzzer_sys::fuzz_target;
use scim_gateway::config::ScimSettings;
use scim_gateway::scim::filter::{self, FilterLimits};
use scim_gateway::scim::index::index_entries;
use scim_gateway::scim::plan;
use scim_gateway::scim::project::Projection;
use scim_gateway::scim::render::{Stored, render};
use scim_gateway::scim::schema::{Registry, ResourceType};
use scim_gateway::store::{self, AnyConnection, ResourceRow};
use scim_v2::filter::Filter;
use serde_json::{Value, json};

const TENANT: &str = "fuzz";

struct Fixture {
    registry: Registry,
    conn: AnyConnection,
    /// Rendered resources with their kind (true: User).
    docs: Vec<(bool, String, Value)>,
}

fn user_docs() -> Vec<Value> {
    vec![
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User",
                           "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
               "externalId": "E-1", "userName": "bjensen@example.com",
               "name": {"givenName": "Barbara", "familyName": "Jensen"},
               "displayName": "Babs Jensen", "title": "Engineer", "active": true,
               "emails": [{"value": "BJensen@Example.com", "type": "work", "primary": true},
                          {"value": "babs@jensen.org", "type": "home"}],
               "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":
                   {"employeeNumber": "701984", "department": "Tour Operations",
                    "manager": {"value": "u-2"}}}),
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
               "userName": "Ünïcode", "displayName": "ß", "active": false,
               "emails": [{"value": "x@y"}]}),
    ]
}

fn fixture() -> Fixture {
    let registry = Registry::load(&ScimSettings::default()).unwrap_or_else(|e| panic!("{e}"));
    let raw = diesel::SqliteConnection::establish(":memory:").unwrap_or_else(|e| panic!("{e}"));
    let mut conn = AnyConnection::Sqlite(raw);
    store::run_migrations(&mut conn).unwrap_or_else(|e| panic!("{e}"));
    let mut docs = Vec::new();
    let group = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                       "displayName": "Tour Guides"});
    let all = user_docs()
        .into_iter()
        .map(|d| (true, d))
        .chain([(false, group)]);
    for (i, (is_user, doc)) in all.enumerate() {
        let rt = if is_user {
            &registry.user
        } else {
            &registry.group
        };
        let Value::Object(doc) = doc else { continue };
        let row = ResourceRow {
            id: format!("u-{}", i + 1),
            tenant: TENANT.into(),
            resource_type: rt.name.into(),
            external_id: doc
                .get("externalId")
                .and_then(Value::as_str)
                .map(str::to_string),
            display: None,
            data: Value::Object(doc.clone()).to_string(),
            version: 1,
            created: format!("2026-01-0{}T00:00:00.000Z", i + 1),
            last_modified: "2026-01-09T00:00:00.000Z".into(),
        };
        store::insert_resource(&mut conn, &row).unwrap_or_else(|e| panic!("{e}"));
        store::replace_index(
            &mut conn,
            TENANT,
            rt.name,
            &row.id,
            &index_entries(rt, &doc),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        docs.push((is_user, row.id.clone(), row));
    }
    // The group holds the first user.
    store::add_members(&mut conn, "u-3", &[("u-1".to_string(), "User".to_string())])
        .unwrap_or_else(|e| panic!("{e}"));
    let rendered = docs
        .into_iter()
        .map(|(is_user, id, row)| {
            let rt = if is_user {
                &registry.user
            } else {
                &registry.group
            };
            let members =
                (!is_user).then(|| store::find_members(&mut conn, &id).unwrap_or_default());
            let groups = is_user.then(|| {
                store::find_groups_of(&mut conn, std::slice::from_ref(&id)).unwrap_or_default()
            });
            let stored = Stored {
                row: std::sync::Arc::new(row),
                members,
                groups,
            };
            (is_user, id, Value::Object(render(rt, &stored, "")))
        })
        .collect();
    Fixture {
        registry,
        conn,
        docs: rendered,
    }
}

thread_local! {
    static FIXTURE: RefCell<Fixture> = RefCell::new(fixture());
}

fn check_against(fx: &mut Fixture, is_user: bool, f: &Filter) {
    let Fixture {
        registry,
        conn,
        docs,
    } = fx;
    let rt: &ResourceType = if is_user {
        &registry.user
    } else {
        &registry.group
    };
    if filter::check(rt, f).is_err() {
        return;
    }
    let compiled = plan::compile(rt, f);
    let rows = store::query::find_candidates(
        conn,
        TENANT,
        rt.name,
        (&compiled.over, &compiled.under),
        None,
        100_000,
    )
    .unwrap_or_else(|e| panic!("compiled SQL failed for {f}: {e}"));
    for (doc_is_user, id, doc) in docs.iter() {
        if *doc_is_user != is_user {
            continue;
        }
        let row = rows.iter().find(|c| &c.resource.id == id);
        if filter::matches(rt, f, doc) {
            assert!(row.is_some(), "SQL misses {id} for {f}");
        } else {
            assert!(
                row.is_none_or(|c| c.sure == 0),
                "SQL is sure of {id} for {f}, the evaluator is not"
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    FIXTURE.with(|fx| {
        let mut fx = fx.borrow_mut();
        // The same text as an attributes list must parse or be ignored.
        let _ = Projection::parse(&fx.registry.user, Some(text), Some(text));
        let Ok(f) = filter::parse_limited(text, FilterLimits::default()) else {
            return;
        };
        check_against(&mut fx, true, &f);
        check_against(&mut fx, false, &f);
        let _ = filter::mentions(&f, "members");
    });
});
