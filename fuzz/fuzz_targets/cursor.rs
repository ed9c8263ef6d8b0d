//! A `cursor` parameter → decode. A cursor that decodes must survive
//! encode → decode unchanged (the gateway hands out what it accepts).
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use scim_gateway::scim::cursor::{Cursor, fingerprint};

static QUERY: LazyLock<String> =
    LazyLock::new(|| fingerprint("User", Some("userName sw \"b\""), Some("userName"), false));

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(cursor) = Cursor::decode(text, &QUERY) else {
        return;
    };
    match Cursor::decode(&cursor.encode(), &QUERY) {
        Ok(again) => assert_eq!(again, cursor),
        Err(e) => panic!("an accepted cursor does not round-trip: {e}"),
    }
});
