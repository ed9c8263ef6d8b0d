//! Listing and paging (RFC 7644 §3.4.2, §3.4.2.4): plain lists of Users
//! and Groups are ListResponses, `startIndex`/`count` paging with exact
//! `totalResults`, `itemsPerPage` and `startIndex`, `count=0`, out-of-range
//! paging values, and unknown query parameters being ignored. Results are
//! scoped with the three users of [`trio`].

use std::collections::BTreeSet;

use crate::checks::filter::trio;
use crate::expect::{self, ListPage, ensure};
use crate::runner::{Check, CheckResult};
use crate::session::Session;

/// Listing and paging checks.
pub const CHECKS: &[Check] = &[
    Check::new("list/users_and_groups_without_filter", without_filter),
    Check::new("list/paging_start_index_count", paging),
    Check::new("list/count_zero_returns_only_total", count_zero),
    Check::new("list/out_of_range_paging_values_clamped", out_of_range),
    Check::new("list/unknown_query_params_ignored", unknown_params),
];

/// `GET /Users?filter=<the trio's users>&name=value…` as a ListResponse.
fn page_of(s: &Session, prefix: &str, params: &[(&str, &str)]) -> Result<ListPage, String> {
    let filter = format!("userName sw \"{prefix}-\"");
    let mut request = s.client().get("/Users").query("filter", &filter);
    for (name, value) in params {
        request = request.query(name, value);
    }
    expect::list(&request.send()?)
}

fn without_filter(s: &Session) -> CheckResult {
    let _t = trio(s)?;
    s.create_group("list", &[])?;
    for (path, at_least) in [("/Users", 3), ("/Groups", 1)] {
        let page = expect::list(&s.client().get(path).query("count", "1").send()?)?;
        ensure!(
            page.total >= at_least,
            "{path}: totalResults {} but at least {at_least} exist",
            page.total
        );
        ensure!(
            page.resources.len() == 1,
            "{path}?count=1 returned {} resources",
            page.resources.len()
        );
    }
    Ok(())
}

/// RFC 7644 §3.4.2.4: 1-based startIndex, count as page size; the pages
/// together return every match once.
fn paging(s: &Session) -> CheckResult {
    let t = trio(s)?;
    let page = |start: &str| {
        let params = [
            ("sortBy", "userName"),
            ("startIndex", start),
            ("count", "2"),
        ];
        page_of(s, &t.prefix, &params)
    };
    let first = page("1")?;
    let second = page("3")?;
    for (p, start, len) in [(&first, 1, 2), (&second, 3, 1)] {
        ensure!(
            p.total == 3,
            "startIndex={start}: totalResults {}, want 3",
            p.total
        );
        ensure!(
            p.resources.len() == len && p.items_per_page == Some(len as u64),
            "startIndex={start}: {} resources, itemsPerPage {:?}, want {len}",
            p.resources.len(),
            p.items_per_page
        );
        ensure!(
            p.start_index == Some(start),
            "startIndex={start}: ListResponse startIndex is {:?}",
            p.start_index
        );
    }
    let all: BTreeSet<String> = first.ids()?.into_iter().chain(second.ids()?).collect();
    let want: BTreeSet<String> = [t.alice, t.bob, t.carol].into_iter().collect();
    ensure!(
        all == want,
        "the two pages do not cover the three users exactly once"
    );
    Ok(())
}

/// RFC 7644 §3.4.2.4: count=0 returns no resources, only totalResults.
fn count_zero(s: &Session) -> CheckResult {
    let t = trio(s)?;
    let page = page_of(s, &t.prefix, &[("count", "0")])?;
    ensure!(page.total == 3, "totalResults {}, want 3", page.total);
    ensure!(
        page.resources.is_empty(),
        "count=0 returned {} resources",
        page.resources.len()
    );
    Ok(())
}

fn unknown_params(s: &Session) -> CheckResult {
    let t = trio(s)?;
    let filter = format!("userName eq \"{}\"", t.user_name("bob"));
    let reply = s
        .client()
        .get("/Users")
        .query("filter", &filter)
        .query("frobnicate", "1")
        .query("utm_source", "conformance")
        .send()?;
    let page = expect::list(&reply)?;
    ensure!(
        page.ids()? == [t.bob],
        "unknown parameters changed the result"
    );
    Ok(())
}

/// RFC 7644 §3.4.2.4: "A value less than 1 SHALL be interpreted as 1" for
/// startIndex; "A negative value SHALL be interpreted as "0"" for count.
fn out_of_range(s: &Session) -> CheckResult {
    let t = trio(s)?;
    let first = page_of(s, &t.prefix, &[("startIndex", "0"), ("count", "1")])?;
    ensure!(
        first.total == 3 && first.resources.len() == 1 && first.start_index == Some(1),
        "startIndex=0&count=1: totalResults {}, {} resources, startIndex {:?}; want 3, 1, 1",
        first.total,
        first.resources.len(),
        first.start_index
    );
    let none = page_of(s, &t.prefix, &[("count", "-1")])?;
    ensure!(
        none.total == 3 && none.resources.is_empty(),
        "count=-1: totalResults {}, {} resources; want 3, 0",
        none.total,
        none.resources.len()
    );
    Ok(())
}
