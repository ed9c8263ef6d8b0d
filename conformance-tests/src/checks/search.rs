//! Searching with POST (RFC 7644 §3.4.3): `POST /Users/.search` with a
//! SearchRequest body (filter, attributes, sortBy, startIndex, count)
//! answers the same ListResponse a GET would, paged and projected;
//! `POST /.search` at the root spans resource types, so a user and a group
//! sharing a unique externalId both come back; and GET on a `.search`
//! endpoint is 405 (RFC 9110 §15.5.6, with `Allow`).

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::checks::filter::trio;
use crate::expect::{self, ListPage, attr, ensure, excerpt, id_of, str_attr};
use crate::fixtures;
use crate::runner::{Check, CheckResult};
use crate::session::{Endpoint, Session};

/// POST search checks.
pub const CHECKS: &[Check] = &[
    Check::new("search/post_users_search_request", users_search),
    Check::new("search/root_search_spans_users_and_groups", root_search),
    Check::new("search/get_on_search_endpoint_is_405", get_is_405),
];

const SEARCH_REQUEST: &str = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";

/// POSTs a SearchRequest made of `fields` to `path`; requires a 200 ListResponse.
fn search(s: &Session, path: &str, fields: Value) -> Result<ListPage, String> {
    let body = fixtures::merge(json!({"schemas": [SEARCH_REQUEST]}), &fields);
    let reply = s.client().post(path, &body).send()?;
    expect::list(&reply).map_err(|e| format!("{path} with {body}: {e}"))
}

fn users_search(s: &Session) -> CheckResult {
    let t = trio(s)?;
    let page = |start: u64| {
        let fields = json!({
            "filter": format!("userName sw \"{}-\"", t.prefix),
            "attributes": ["userName", "displayName"],
            "sortBy": "userName",
            "startIndex": start,
            "count": 2
        });
        search(s, "/Users/.search", fields)
    };
    let (first, second) = (page(1)?, page(3)?);
    for (p, start, len) in [(&first, 1, 2), (&second, 3, 1)] {
        ensure!(
            p.total == 3 && p.resources.len() == len && p.start_index == Some(start),
            "startIndex {start}: totalResults {}, {} resources, startIndex {:?}; want 3, {len}, {start}",
            p.total,
            p.resources.len(),
            p.start_index
        );
        for r in &p.resources {
            ensure!(
                str_attr(r, "userName").is_ok() && str_attr(r, "displayName").is_ok(),
                "asked-for attributes missing: {}",
                excerpt(r)
            );
            for unasked in ["emails", "name", "active", "title"] {
                ensure!(
                    attr(r, unasked).is_none(),
                    "{unasked} returned although not in \"attributes\": {}",
                    excerpt(r)
                );
            }
        }
    }
    let order: Vec<String> = first.ids()?.into_iter().chain(second.ids()?).collect();
    let want = [t.alice, t.bob, t.carol];
    if s.ctx().supports("sort")? {
        ensure!(
            order == want,
            "sortBy userName ignored: got ids {order:?}, want {want:?}"
        );
    }
    let got: BTreeSet<&String> = order.iter().collect();
    let expected: BTreeSet<&String> = want.iter().collect();
    ensure!(
        got == expected,
        "the two pages do not cover the three users exactly once"
    );
    Ok(())
}

/// A user and a group sharing one externalId: the root search returns
/// both, each with its own `meta.resourceType`, and pages across them.
fn root_search(s: &Session) -> CheckResult {
    let external_id = fixtures::guid();
    let name = fixtures::unique_user_name("search");
    let user = s.create_user_from(&fixtures::user_with(
        &name,
        &json!({"externalId": external_id}),
    ))?;
    let body = fixtures::merge(
        fixtures::group(&fixtures::unique_name("search"), &[]),
        &json!({"externalId": external_id}),
    );
    let group = s.post(Endpoint::Groups, &body)?.json_with(201)?.clone();
    let want = [("User", id_of(&user)?), ("Group", id_of(&group)?)];
    let filter = format!("externalId eq \"{external_id}\"");
    let all = search(s, "/.search", json!({"filter": filter}))?;
    let kinds = |p: &ListPage| -> Result<BTreeSet<(String, String)>, String> {
        p.resources
            .iter()
            .map(|r| Ok((str_attr(r, "meta.resourceType")?.to_owned(), id_of(r)?)))
            .collect()
    };
    let want: BTreeSet<(String, String)> =
        want.into_iter().map(|(k, id)| (k.to_owned(), id)).collect();
    ensure!(
        all.total == 2 && kinds(&all)? == want,
        "filter {filter:?} over /.search: totalResults {}, got {:?}, want {want:?}",
        all.total,
        kinds(&all)?
    );
    let mut paged = BTreeSet::new();
    for start in [1, 2] {
        let fields = json!({"filter": filter, "startIndex": start, "count": 1});
        let page = search(s, "/.search", fields)?;
        ensure!(
            page.total == 2 && page.resources.len() == 1,
            "startIndex {start}, count 1: totalResults {}, {} resources; want 2, 1",
            page.total,
            page.resources.len()
        );
        paged.extend(kinds(&page)?);
    }
    ensure!(
        paged == want,
        "paging over /.search returned {paged:?}, want {want:?}"
    );
    Ok(())
}

/// RFC 7644 §3.4.3 defines `.search` for POST only.
fn get_is_405(s: &Session) -> CheckResult {
    for path in ["/Users/.search", "/Groups/.search", "/.search"] {
        let reply = s.client().get(path).send()?;
        expect::error(&reply, 405, None).map_err(|e| format!("GET {path}: {e}"))?;
        let allow = reply.header("allow").unwrap_or_default();
        ensure!(
            allow.to_ascii_uppercase().contains("POST"),
            "GET {path}: 405 with Allow {allow:?}, which should name POST"
        );
    }
    Ok(())
}
