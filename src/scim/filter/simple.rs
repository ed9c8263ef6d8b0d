//! The filter almost every look-up sends, parsed without the grammar.
//!
//! Entra ID and Okta look a user up before each write with one comparison
//! (`userName eq "…"`, `externalId eq "…"`). The full parser's lexer is a
//! large regex set whose lazy DFA is rebuilt often enough that parsing such
//! a filter took a fifth of the whole request (perf, wrk on `userName eq`).
//! [`parse`] recognises exactly that shape and builds the same tree the
//! grammar would; anything else, or anything it is unsure of, is `None`
//! and goes to the full parser. The property test below checks that
//! whenever it answers, the grammar answers the same.

use scim_v2::filter::{AttrExp, AttrPath, CompValue, CompareOp, Filter};

/// `name[.sub] op "string"`, `name[.sub] op true|false|null` or
/// `name[.sub] pr`, with single spaces and a string without escapes or
/// control characters; `None` for everything else.
pub(super) fn parse(text: &str) -> Option<Filter> {
    let (path, rest) = text.split_once(' ')?;
    let path = attr_path(path)?;
    if rest.eq_ignore_ascii_case("pr") {
        return Some(Filter::Attr(AttrExp::Present(path)));
    }
    let (op, value) = rest.split_once(' ')?;
    let op = compare_op(op)?;
    let value = match value {
        "true" => CompValue::True,
        "false" => CompValue::False,
        "null" => CompValue::Null,
        _ => {
            let inner = value.strip_prefix('"')?.strip_suffix('"')?;
            if inner
                .chars()
                .any(|c| c == '"' || c == '\\' || c.is_control())
            {
                return None;
            }
            CompValue::Str(inner.to_string())
        }
    };
    Some(Filter::Attr(AttrExp::Comparison(path, op, value)))
}

/// `name` or `name.sub`, each an ATTRNAME that the grammar's lexer cannot
/// take for a keyword or a literal.
fn attr_path(text: &str) -> Option<AttrPath> {
    let (name, sub_attr) = match text.split_once('.') {
        Some((name, sub)) => (name, Some(attr_name(sub)?.to_string())),
        None => (text, None),
    };
    Some(AttrPath {
        uri: None,
        name: attr_name(name)?.to_string(),
        sub_attr,
    })
}

/// Words the lexer reads as keywords or literals: such a name is left to
/// the grammar (which refuses most of them).
const KEYWORDS: [&str; 16] = [
    "and", "or", "not", "pr", "eq", "ne", "co", "sw", "ew", "gt", "lt", "ge", "le", "true",
    "false", "null",
];

/// ATTRNAME = ALPHA *(ALPHA / DIGIT / "_" / "-"), not a keyword.
fn attr_name(s: &str) -> Option<&str> {
    let mut bytes = s.bytes();
    let first = bytes.next()?;
    let valid = first.is_ascii_alphabetic()
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        && !KEYWORDS.iter().any(|k| k.eq_ignore_ascii_case(s));
    valid.then_some(s)
}

fn compare_op(s: &str) -> Option<CompareOp> {
    const OPS: [(&str, CompareOp); 9] = [
        ("eq", CompareOp::Eq),
        ("ne", CompareOp::Ne),
        ("co", CompareOp::Co),
        ("sw", CompareOp::Sw),
        ("ew", CompareOp::Ew),
        ("gt", CompareOp::Gt),
        ("lt", CompareOp::Lt),
        ("ge", CompareOp::Ge),
        ("le", CompareOp::Le),
    ];
    OPS.iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(s))
        .map(|(_, op)| op.clone())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Whenever the simple parser answers, the grammar gives the same tree.
    fn agrees(text: &str) -> Result<bool, TestCaseError> {
        let Some(simple) = parse(text) else {
            return Ok(false);
        };
        let full = text.parse::<Filter>();
        prop_assert_eq!(Some(&simple), full.as_ref().ok(), "{:?}", text);
        Ok(true)
    }

    #[test]
    fn answers_the_look_ups_idps_send_as_the_grammar_does() {
        for text in [
            r#"userName eq "bjensen@example.com""#,
            r#"externalId eq "00u1abcd""#,
            r#"displayName EQ "Sales - EMEA""#,
            r#"name.familyName sw "Jen""#,
            r#"emails.value co "@example.com""#,
            r#"meta.lastModified gt "2026-01-01T00:00:00Z""#,
            r#"active eq true"#,
            r#"manager eq null"#,
            r#"title pr"#,
            r#"title PR"#,
            r#"userName eq """#,
            r#"userName eq "ünïcødé ✓""#,
        ] {
            assert!(agrees(text).unwrap(), "{text} should take the simple path");
        }
    }

    #[test]
    fn leaves_every_other_shape_to_the_grammar() {
        for text in [
            r#"userName eq "a" and active eq true"#,
            r#"emails[type eq "work"]"#,
            r#"urn:ietf:params:scim:schemas:core:2.0:User:userName eq "x""#,
            r#"userName  eq "x""#,
            r#"userName eq "a\"b""#,
            r#"userName eq "tab	inside""#,
            r#"not eq "x""#,
            r#"true eq "x""#,
            r#"a.b.c eq "x""#,
            r#"1abc eq "x""#,
            r#"userName eq 42"#,
            r#"userName eq True"#,
            r#"userName eq "x" "#,
            r#"userName xx "x""#,
            r#"(userName eq "x")"#,
        ] {
            assert!(parse(text).is_none(), "{text} should go to the grammar");
        }
    }

    proptest! {
        #[test]
        fn never_disagrees_with_the_grammar(
            name in "[a-zA-Z][a-zA-Z0-9_-]{0,6}(\\.[a-zA-Z][a-zA-Z0-9_-]{0,4})?|not|NOT|null|true|and|pr|[a-z:.]{1,8}",
            op in "(?i:eq|ne|co|sw|ew|gt|lt|ge|le|pr|xx)",
            value in "\"[^\"\\\\]{0,12}\"|true|false|null|True|\"a\\\\\"b\"|[0-9]{1,3}| ",
            spaces in "( |  |\t)",
        ) {
            let text = if op.eq_ignore_ascii_case("pr") {
                format!("{name}{spaces}{op}")
            } else {
                format!("{name}{spaces}{op}{spaces}{value}")
            };
            agrees(&text)?;
        }
    }
}
