//! Filtering (RFC 7644 §3.4.2.2): `eq` on a case-insensitive attribute and
//! attribute name, `sw`, `co`, `ew`, `ne`, `pr`, `not`, `and`/`or` with
//! grouping and precedence, `displayName eq` on groups, and an invalid
//! filter (400 `invalidFilter`). Each check creates its own three users
//! under a fresh prefix ([`trio`]), so results are exact whatever else the
//! server stores.

use std::collections::BTreeSet;

use serde_json::json;

use crate::expect::{self, ListPage, ensure, id_of, str_attr};
use crate::fixtures;
use crate::runner::{Check, CheckResult};
use crate::session::Session;

/// Filter checks.
pub const CHECKS: &[Check] = &[
    Check::new(
        "filter/username_eq_is_case_insensitive",
        eq_case_insensitive,
    ),
    Check::new("filter/sw", starts_with),
    Check::new("filter/co", contains),
    Check::new("filter/ew_ne_not", ends_with_not_equal_not),
    Check::new("filter/pr", present),
    Check::new("filter/and_or", and_or),
    Check::new("filter/invalid_filter_is_400", invalid_filter),
    Check::new("filter/group_display_name_eq", group_display_name),
];

/// Three users: alice and bob are Engineers, carol has no title. Their
/// userNames are `conf-{token}-{who}@example.com`.
pub struct Trio {
    /// `conf-{token}`, shared by the three userNames.
    pub prefix: String,
    /// The random part of the prefix.
    pub token: String,
    /// alice's id.
    pub alice: String,
    /// bob's id.
    pub bob: String,
    /// carol's id.
    pub carol: String,
}

impl Trio {
    /// The userName of `who` ("alice", "bob" or "carol").
    pub fn user_name(&self, who: &str) -> String {
        format!("{}-{who}@example.com", self.prefix)
    }
}

/// Creates the three users (tracked for clean-up).
pub fn trio(s: &Session) -> Result<Trio, String> {
    let token = fixtures::unique_token();
    let prefix = format!("conf-{token}");
    let mut ids = Vec::new();
    for (who, extra) in [
        ("alice", json!({"title": "Engineer"})),
        ("bob", json!({"title": "Engineer"})),
        ("carol", json!({})),
    ] {
        let body = fixtures::user_with(&format!("{prefix}-{who}@example.com"), &extra);
        ids.push(id_of(&s.create_user_from(&body)?)?);
    }
    let [alice, bob, carol] = <[String; 3]>::try_from(ids).map_err(|_| "three users")?;
    Ok(Trio {
        prefix,
        token,
        alice,
        bob,
        carol,
    })
}

/// `GET /Users?filter=…` as a checked ListResponse.
fn search(s: &Session, filter: &str) -> Result<ListPage, String> {
    expect::list(&s.client().get("/Users").query("filter", filter).send()?)
}

/// Asserts the filter matches exactly `want` (any order).
fn matches(s: &Session, filter: &str, want: &[&String]) -> CheckResult {
    let page = search(s, filter)?;
    let got: BTreeSet<String> = page.ids()?.into_iter().collect();
    let want: BTreeSet<String> = want.iter().map(|id| (*id).clone()).collect();
    ensure!(
        got == want && page.total == want.len() as u64,
        "filter {filter:?}: got {} ids (totalResults {}), want {}",
        got.len(),
        page.total,
        want.len()
    );
    Ok(())
}

/// RFC 7643 §4.1.1: userName is caseExact false, so `eq` ignores the
/// value's case; RFC 7644 §3.4.2.2: attribute names are case-insensitive.
fn eq_case_insensitive(s: &Session) -> CheckResult {
    let t = trio(s)?;
    let upper = t.user_name("alice").to_uppercase();
    matches(s, &format!("userName eq \"{upper}\""), &[&t.alice])?;
    let alice = t.user_name("alice");
    matches(s, &format!("USERNAME eq \"{alice}\""), &[&t.alice])
}

fn starts_with(s: &Session) -> CheckResult {
    let t = trio(s)?;
    matches(
        s,
        &format!("userName sw \"{}-\"", t.prefix),
        &[&t.alice, &t.bob, &t.carol],
    )
}

fn contains(s: &Session) -> CheckResult {
    let t = trio(s)?;
    matches(s, &format!("userName co \"{}-bo\"", t.token), &[&t.bob])
}

fn ends_with_not_equal_not(s: &Session) -> CheckResult {
    let t = trio(s)?;
    let scope = format!("userName sw \"{}-\"", t.prefix);
    let carol = format!("{}-carol@example.com", t.token);
    matches(
        s,
        &format!("{scope} and userName ew \"{carol}\""),
        &[&t.carol],
    )?;
    let alice = t.user_name("alice");
    matches(
        s,
        &format!("{scope} and userName ne \"{alice}\""),
        &[&t.bob, &t.carol],
    )?;
    matches(s, &format!("{scope} and not (title pr)"), &[&t.carol])
}

fn present(s: &Session) -> CheckResult {
    let t = trio(s)?;
    let filter = format!("userName sw \"{}-\" and title pr", t.prefix);
    matches(s, &filter, &[&t.alice, &t.bob])
}

fn and_or(s: &Session) -> CheckResult {
    let t = trio(s)?;
    let (a, c) = (t.user_name("alice"), t.user_name("carol"));
    matches(
        s,
        &format!("userName eq \"{a}\" or userName eq \"{c}\""),
        &[&t.alice, &t.carol],
    )?;
    let grouped = format!("(userName eq \"{a}\" or userName eq \"{c}\") and title eq \"Engineer\"");
    matches(s, &grouped, &[&t.alice])?;
    // `and` binds tighter than `or` (RFC 7644 §3.4.2.2, Table 5).
    let precedence = format!(
        "userName eq \"{c}\" or userName sw \"{}-\" and title pr",
        t.prefix
    );
    matches(s, &precedence, &[&t.alice, &t.bob, &t.carol])
}

/// RFC 7644 §3.4.2.2 and §3.12 (Table 9): a malformed filter is 400
/// `invalidFilter`.
fn invalid_filter(s: &Session) -> CheckResult {
    for filter in [
        "userName eq",
        "userName zz \"x\"",
        "(userName eq \"x\"",
        "userName eq \"x\" and",
    ] {
        let reply = s.client().get("/Users").query("filter", filter).send()?;
        expect::error(&reply, 400, Some("invalidFilter"))
            .map_err(|e| format!("filter {filter:?}: {e}"))?;
    }
    Ok(())
}

/// Entra ID and Okta look groups up by `displayName eq` before creating;
/// Group displayName is caseExact false (RFC 7643 §8.7.1).
fn group_display_name(s: &Session) -> CheckResult {
    let group = s.create_group("filter", &[])?;
    let name = str_attr(&group, "displayName")?;
    let filter = format!("displayName eq \"{}\"", name.to_uppercase());
    let page = expect::list(&s.client().get("/Groups").query("filter", &filter).send()?)?;
    ensure!(
        page.ids()? == [id_of(&group)?] && page.total == 1,
        "filter {filter:?} found {} groups, want exactly the one created",
        page.total
    );
    Ok(())
}
