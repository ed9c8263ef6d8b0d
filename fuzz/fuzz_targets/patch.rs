//! PatchOp body → JSON reader (depth limit) → parse (operation and path
//! limits) → apply to a fixed User and Group → normalise → content limits.
//! A document a PATCH produced and normalise accepted must normalise to
//! itself again (what is stored is a fixed point).
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use scim_gateway::config::ScimSettings;
use scim_gateway::http::body::parse_json;
use scim_gateway::scim::limits::ContentLimits;
use scim_gateway::scim::normalize::normalize;
use scim_gateway::scim::patch::{self, PatchLimits};
use scim_gateway::scim::schema::{Registry, ResourceType};
use serde_json::{Map, Value, json};

struct Fixture {
    registry: Registry,
    user: Map<String, Value>,
    group: Map<String, Value>,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let registry = Registry::load(&ScimSettings::default()).unwrap_or_else(|e| panic!("{e}"));
    let stored = |rt: &ResourceType, v: Value| match normalize(rt, &v) {
        Ok(n) => n.doc,
        Err(e) => panic!("fixture: {e}"),
    };
    let user = stored(
        &registry.user,
        json!({"userName": "bjensen", "externalId": "e1", "active": true,
               "name": {"givenName": "Barbara", "familyName": "Jensen"},
               "emails": [{"value": "b@x.org", "type": "work", "primary": true},
                          {"value": "b@home.org", "type": "home"}],
               "phoneNumbers": [{"value": "+1 555", "type": "mobile"}],
               "roles": [{"value": "admin"}],
               "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":
                   {"department": "Ops", "manager": {"value": "m1"}}}),
    );
    let group = stored(&registry.group, json!({"displayName": "Guides"}));
    Fixture {
        registry,
        user,
        group,
    }
});

fuzz_target!(|data: &[u8]| {
    let Ok(body) = parse_json(data, 32) else {
        return;
    };
    let Ok(ops) = patch::parse(&body, PatchLimits::default()) else {
        return;
    };
    let fx = &*FIXTURE;
    let limits = ContentLimits::from_settings(&ScimSettings::default());
    for (rt, doc) in [
        (&fx.registry.user, &fx.user),
        (&fx.registry.group, &fx.group),
    ] {
        for path in ops.iter().filter_map(|o| o.path.as_deref()) {
            let _ = patch::check_path(rt, path);
        }
        let Ok(patched) = patch::apply(rt, doc, &ops) else {
            continue;
        };
        let _ = limits.check_members(patched.member_refs());
        let Ok(n) = normalize(rt, &Value::Object(patched.doc)) else {
            continue;
        };
        let _ = limits.check_document(&n.doc);
        match normalize(rt, &Value::Object(n.doc.clone())) {
            Ok(again) => assert_eq!(again.doc, n.doc, "normalise is not idempotent"),
            Err(e) => panic!("a normalised document is refused: {e}"),
        }
    }
});
