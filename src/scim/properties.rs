//! Property tests of the schema-driven core on random documents: what
//! normalisation stores is a fixed point of it. (The properties that need a
//! store — a PATCH applies completely or not at all, applying it twice
//! changes nothing, SQL plans agree with the evaluator — run against both
//! databases in tests/api/properties.rs.) `PROPTEST_CASES` sets the number
//! of cases (default 256).

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Map, Value};

use super::normalize::normalize;
use super::schema::{ENTERPRISE_URN, Registry};
use crate::config::ScimSettings;

fn runner() -> TestRunner {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(256);
    TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    })
}

/// An attribute name as clients spell it: canonical, lower or upper case.
fn cased(name: &'static str) -> BoxedStrategy<String> {
    prop_oneof![
        Just(name.to_string()),
        Just(name.to_ascii_lowercase()),
        Just(name.to_ascii_uppercase()),
    ]
    .boxed()
}

/// A simple value of any JSON type, with the strings IdPs send for others.
fn scalar() -> BoxedStrategy<Value> {
    prop_oneof![
        4 => "[a-zA-Z0-9 .@éß-]{0,10}".prop_map(Value::from),
        1 => any::<i32>().prop_map(Value::from),
        1 => any::<bool>().prop_map(Value::from),
        2 => prop::sample::select(vec!["True", "false", "FALSE", "42", "-7", "1.5", "", " x "])
            .prop_map(Value::from),
        1 => Just(Value::Null),
    ]
    .boxed()
}

/// A complex value with some of `subs`, or (rarely) something else.
fn complex(subs: &'static [&'static str]) -> BoxedStrategy<Value> {
    let object = prop::collection::vec((prop::sample::select(subs), scalar()), 0..4)
        .prop_map(|pairs| Value::Object(pairs.into_iter().map(|(k, v)| (k.into(), v)).collect()));
    prop_oneof![8 => object, 1 => scalar()].boxed()
}

/// A multi-valued complex attribute: an array, or one bare value.
fn multi(subs: &'static [&'static str]) -> BoxedStrategy<Value> {
    prop_oneof![
        4 => prop::collection::vec(complex(subs), 0..4).prop_map(Value::Array),
        1 => complex(subs),
    ]
    .boxed()
}

const MULTI_SUBS: &[&str] = &["value", "type", "primary", "display"];

fn user_entry() -> BoxedStrategy<(String, Value)> {
    let department = format!("{ENTERPRISE_URN}:department");
    prop_oneof![
        (cased("userName"), scalar()),
        (cased("displayName"), scalar()),
        (cased("title"), scalar()),
        (cased("active"), scalar()),
        (cased("externalId"), scalar()),
        (
            cased("name"),
            complex(&["givenName", "familyName", "formatted"])
        ),
        (cased("emails"), multi(MULTI_SUBS)),
        (cased("phoneNumbers"), multi(MULTI_SUBS)),
        (cased("roles"), multi(MULTI_SUBS)),
        (cased("id"), scalar()),
        (cased("groups"), multi(MULTI_SUBS)),
        (cased("password"), scalar()),
        (Just(department), scalar()),
        (
            Just(ENTERPRISE_URN.to_string()),
            prop::collection::vec(
                (
                    prop::sample::select(vec!["department", "employeeNumber", "manager"]),
                    prop_oneof![scalar(), complex(&["value", "displayName"])]
                ),
                0..3
            )
            .prop_map(|p| Value::Object(p.into_iter().map(|(k, v)| (k.into(), v)).collect()))
        ),
    ]
    .boxed()
}

/// A User body: random attributes, usually with a userName.
fn user() -> BoxedStrategy<Value> {
    ("[a-z]{1,6}", prop::collection::vec(user_entry(), 0..8))
        .prop_map(|(name, entries)| {
            let mut doc = Map::new();
            doc.insert("userName".into(), Value::String(name));
            doc.extend(entries);
            Value::Object(doc)
        })
        .boxed()
}

#[test]
fn normalising_a_normalised_document_changes_nothing() {
    let reg = Registry::load(&ScimSettings::default()).unwrap();
    let accepted = std::cell::Cell::new(0u32);
    let result = runner().run(&user(), |body| {
        let Ok(once) = normalize(&reg.user, &body) else {
            return Ok(());
        };
        accepted.set(accepted.get() + 1);
        let twice = normalize(&reg.user, &Value::Object(once.doc.clone()))
            .map_err(|e| TestCaseError::fail(format!("{body} → refused again: {e}")))?;
        prop_assert_eq!(&twice.doc, &once.doc, "input {}", body);
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    assert!(accepted.get() > 0, "no generated document was accepted");
}
