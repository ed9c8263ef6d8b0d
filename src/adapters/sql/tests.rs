//! Identifiers, values and error classes of the `sql` adapter.

use super::errors::kind_of_message;
use super::*;
use serde_json::json;

#[test]
fn only_plain_identifiers_are_accepted() {
    assert!(is_identifier("app_users"));
    assert!(is_identifier("_x1"));
    assert!(!is_identifier("1x"));
    assert!(!is_identifier("users; DROP TABLE x"));
    assert!(!is_identifier("a\"b"));
    assert!(!is_identifier(""));
    assert_eq!(quote_table("app.users").unwrap(), "\"app\".\"users\"");
    assert!(quote_table("a.b.c").is_err());
    assert!(quote_table("users--").is_err());
}

#[test]
fn database_messages_map_to_engine_classes() {
    assert_eq!(kind_of_message("deadlock detected"), ErrorKind::Transient);
    assert_eq!(kind_of_message("database is locked"), ErrorKind::Transient);
    assert_eq!(
        kind_of_message("could not connect to server: Connection refused"),
        ErrorKind::Transient
    );
    assert_eq!(
        kind_of_message("permission denied for table users"),
        ErrorKind::Unauthorized
    );
    assert_eq!(
        kind_of_message("column \"x\" of relation \"users\" does not exist"),
        ErrorKind::Rejected
    );
    assert_eq!(
        kind_of_message("value too long for type character varying(5)"),
        ErrorKind::Rejected
    );
}

#[test]
fn json_values_bind_with_their_type() {
    assert_eq!(
        SqlValue::from_json(Some(&json!(true))),
        SqlValue::Bool(true)
    );
    assert_eq!(SqlValue::from_json(Some(&json!(3))), SqlValue::Int(3));
    assert_eq!(SqlValue::from_json(None), SqlValue::Null);
    assert_eq!(
        SqlValue::from_json(Some(&json!([{"value": "a"}]))).as_text(),
        Some(r#"[{"value":"a"}]"#.to_string())
    );
    assert!(loosely_equal(&json!(1), &json!(true)));
    assert!(loosely_equal(&json!("disabled"), &json!("disabled")));
}
