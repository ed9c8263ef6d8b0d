//! A POST/PUT body → JSON reader (depth limit) → schema normalisation of a
//! User and a Group → content limits, index and unique keys; the same body
//! as a SearchRequest. normalise(normalise(x)) must equal normalise(x).
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use scim_gateway::config::ScimSettings;
use scim_gateway::http::body::parse_json;
use scim_gateway::scim::index::{index_entries, unique_keys};
use scim_gateway::scim::limits::ContentLimits;
use scim_gateway::scim::list::{ListParams, sort_key};
use scim_gateway::scim::normalize::normalize;
use scim_gateway::scim::schema::Registry;
use serde_json::Value;

static REGISTRY: LazyLock<Registry> =
    LazyLock::new(|| Registry::load(&ScimSettings::default()).unwrap_or_else(|e| panic!("{e}")));

fuzz_target!(|data: &[u8]| {
    let Ok(body) = parse_json(data, 32) else {
        return;
    };
    let settings = ScimSettings::default();
    let limits = ContentLimits::from_settings(&settings);
    for rt in [&REGISTRY.user, &REGISTRY.group] {
        let Ok(n) = normalize(rt, &body) else {
            continue;
        };
        let _ = limits.check(&n);
        let _ = index_entries(rt, &n.doc);
        let _ = unique_keys(rt, &n.doc);
        match normalize(rt, &Value::Object(n.doc.clone())) {
            Ok(again) => assert_eq!(again.doc, n.doc, "normalise is not idempotent"),
            Err(e) => panic!("a normalised document is refused: {e}"),
        }
    }
    if let Ok(params) = ListParams::from_search_body(&body, &settings)
        && let Some(s) = &params.sort_by
    {
        let _ = sort_key(&REGISTRY.user, s);
    }
});
