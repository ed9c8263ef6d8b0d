//! A BulkRequest body → JSON reader (depth limit) → Bulk parsing: method,
//! path, bulkId uniqueness, references and their substitution.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scim_gateway::config::ScimSettings;
use scim_gateway::http::body::parse_json;
use scim_gateway::scim::bulk;

fuzz_target!(|data: &[u8]| {
    let Ok(body) = parse_json(data, 32) else {
        return;
    };
    let max = ScimSettings::default().bulk_max_operations;
    if let Ok(n) = bulk::check(&body, max) {
        assert!(n <= max, "{n} operations accepted over the limit of {max}");
    }
});
