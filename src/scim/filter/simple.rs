//! The filter almost every look-up sends, parsed without the grammar.
//!
//! Entra ID and Okta look a user up before each write with one comparison
//! (`userName eq "…"`, `externalId eq "…"`). The full parser's lexer is a
//! large regex set whose lazy DFA is rebuilt often enough that parsing such
//! a filter took a fifth of the whole request (perf, wrk on `userName eq`).
//! [`parse`] recognises exactly that shape, and Entra's e-mail look-up
//! `emails[type eq "work"].value eq "…"`, and builds the same tree the
//! grammar would; anything else, or anything it is unsure of, is `None`
//! and goes to the full parser. The tests below check that whenever it
//! answers, the grammar answers the same.

use scim_v2::filter::{
    AttrExp, AttrPath, CompValue, CompareOp, Filter, Operands, ValFilter, ValuePath,
};

/// `name[.sub] op "string"`, `name[.sub] op true|false|null` or
/// `name[.sub] pr`, with single spaces and a string without escapes or
/// control characters; `None` for everything else.
pub(super) fn parse(text: &str) -> Option<Filter> {
    if text.contains('[') {
        return value_path(text);
    }
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

/// Entra's `name[sub op value].sub op value`, each comparison of the
/// simple shape above on a plain sub-attribute name: the tree the grammar
/// gives for `name[(sub op value) and sub op value]`, which is what
/// [`super::parse_limited`] rewrites it to. A `].` inside the first string
/// splits it where the rest cannot parse, so that is `None` too.
fn value_path(text: &str) -> Option<Filter> {
    let (name, rest) = text.split_once('[')?;
    let (inner, outer) = rest.split_once("].")?;
    let element = |text: &str| match parse(text)? {
        Filter::Attr(exp) if exp_path(&exp).sub_attr.is_none() => Some(ValFilter::Attr(exp)),
        _ => None,
    };
    Some(Filter::ValuePath(ValuePath {
        attr: AttrPath {
            uri: None,
            name: attr_name(name)?.to_string(),
            sub_attr: None,
        },
        filter: Box::new(ValFilter::And(Operands::pair(
            element(inner)?,
            element(outer)?,
        ))),
    }))
}

fn exp_path(exp: &AttrExp) -> &AttrPath {
    match exp {
        AttrExp::Present(p) | AttrExp::Comparison(p, _, _) => p,
    }
}

/// `name` or `name.sub`, each an ATTRNAME that the grammar's lexer cannot
/// take for a keyword or a literal. Also the path of most PATCH operations
/// (`title`, `name.givenName`), which the grammar parsed inside the
/// writer's transaction, building its lexer's regex cache every time.
pub(crate) fn attr_path(text: &str) -> Option<AttrPath> {
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

    /// Whenever the simple parser answers a value path, the grammar gives
    /// the same tree for the rewritten text.
    fn agrees_folded(text: &str) -> bool {
        let Some(simple) = parse(text) else {
            return false;
        };
        let folded = super::super::fold_value_path_comparison(text).expect("rewritten");
        assert_eq!(
            Some(&simple),
            folded.parse::<Filter>().ok().as_ref(),
            "{text}"
        );
        true
    }

    #[test]
    fn answers_entras_email_look_up_as_the_grammar_does() {
        for text in [
            r#"emails[type eq "work"].value eq "bjensen@example.com""#,
            r#"emails[type EQ "work"].value EQ "B@x.org""#,
            r#"addresses[type eq "work"].postalCode eq "12345""#,
            r#"emails[primary eq true].value sw "b""#,
            r#"emails[type pr].value eq "a""#,
            r#"phoneNumbers[type eq "mobile"].value pr"#,
        ] {
            assert!(agrees_folded(text), "{text} should take the simple path");
        }
        for text in [
            r#"emails[type eq "a]."].value eq "b""#,
            r#"emails[type eq "work" and primary eq true].value eq "b""#,
            r#"emails[type eq "work"].value eq "b" and active eq true"#,
            r#"emails[type eq "work"].value eq "b" or userName eq "c""#,
            r#"emails[type.x eq "work"].value eq "b""#,
            r#"emails[type eq "work"].value.x eq "b""#,
            r#"emails[type eq "work"]"#,
            r#"emails[type eq "work"] and userName eq "b""#,
            r#"urn:x:emails[type eq "work"].value eq "b""#,
            r#"emails[type eq "work"].value eq "b"]"#,
        ] {
            assert!(parse(text).is_none(), "{text} should go to the grammar");
        }
    }

    proptest! {
        #[test]
        fn never_disagrees_with_the_grammar_on_value_paths(
            name in "[a-zA-Z][a-zA-Z0-9_-]{0,6}|not|pr|[a-z:.]{1,8}",
            sub in "[a-zA-Z][a-z0-9]{0,4}|type\\.x|and",
            op in "(?i:eq|ne|co|sw|gt|pr|xx)",
            value in "\"[^\"\\\\\\]]{0,8}\"|true|null|\"a]\\.b\"|[0-9]{1,2}",
            tail in "|\\]| and active eq true",
        ) {
            let cmp = |sub: &str| if op.eq_ignore_ascii_case("pr") {
                format!("{sub} {op}")
            } else {
                format!("{sub} {op} {value}")
            };
            let text = format!("{name}[{}].{}{tail}", cmp(&sub), cmp("value"));
            if let Some(simple) = parse(&text) {
                let folded = super::super::fold_value_path_comparison(&text);
                let full = folded.as_deref().and_then(|t| t.parse::<Filter>().ok());
                prop_assert_eq!(Some(simple), full, "{:?}", text);
            }
        }
    }

    proptest! {
        #[test]
        fn an_attribute_path_is_what_the_patch_path_grammar_gives(
            text in "[a-zA-Z][a-zA-Z0-9_-]{0,6}(\\.[a-zA-Z$][a-zA-Z0-9_-]{0,4})?|not|pr|eq|[a-z:.]{1,8}|a\\.b\\.c|a b|1x",
        ) {
            if let Some(simple) = attr_path(&text) {
                let full = text.parse::<scim_v2::filter::PatchPath>().ok();
                prop_assert_eq!(Some(scim_v2::filter::PatchPath::Attr(simple)), full, "{:?}", text);
            }
        }
    }

    #[test]
    fn takes_the_paths_idps_patch() {
        for text in ["title", "name.givenName", "active", "emails", "x-y_z"] {
            let simple = attr_path(text).map(scim_v2::filter::PatchPath::Attr);
            assert_eq!(simple, text.parse().ok(), "{text}");
            assert!(simple.is_some(), "{text}");
        }
        for text in [
            "urn:x:y",
            "emails[type eq \"work\"]",
            "a.b.c",
            " title",
            "and",
            "$ref",
        ] {
            assert!(attr_path(text).is_none(), "{text} should go to the grammar");
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
