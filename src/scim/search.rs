//! Running a filtered or sorted list: the compiled filter ([`plan`]) decides
//! how much the database does and how much the evaluator does, and memory
//! stays bounded by the page, never by the tenant.
//!
//! ```text
//!            compile ─▶ exact? ──yes──────────────────────────────┐
//!                         │no                                     ▼
//!            under ≠ false: evaluate the rows in over∖under  SQL: count, ORDER BY,
//!            (few, e.g. long values); ≤ 1000 matches ──────▶ LIMIT/OFFSET or keyset;
//!                         │ otherwise                        load the page only
//!                         ▼
//!            stream `over` in creation order, 500 rows at a time;
//!            a row in `under` matches, any other goes through the evaluator;
//!            keep (sort value, created, id) of at most ~2× the rows the page
//!            needs; load the page's rows at the end
//! ```
//! The sort order everywhere is the one of the in-memory lists before:
//! sort value (absent last, reversed when descending), then creation time,
//! then id, so pages are stable and cursors from either path continue
//! on the other.

use std::cmp::Ordering;
use std::collections::HashMap;

use scim_v2::filter::Filter;
use serde_json::Value;

use super::cursor::{Cursor, Direction};
use super::filter;
use super::list::{ListParams, SortKey, sort_key};
use super::plan::{self, Compiled};
use super::render::render;
use super::schema::ResourceType;
use super::service::{KeysetPage, Load, Page, keyset_page, load_side};
use crate::domain::Kind;
use crate::store::query::{self, Order, Pred};
use crate::store::{self, AnyConnection, StoreError};

/// Rows fetched per round trip when streaming candidates.
const CHUNK: usize = 500;
/// Evaluator matches outside `under` that are still paged in SQL (as ids).
const MAX_SETTLED: usize = 1000;

/// A list request, parsed and checked.
pub(super) struct ListQuery<'a> {
    /// The resource type listed.
    pub rt: &'a ResourceType,
    /// Its kind.
    pub kind: Kind,
    /// The tenant.
    pub tenant: &'a str,
    /// The filter (with an app's scope folded in).
    pub filter: Option<&'a Filter>,
    /// Paging and sorting.
    pub params: &'a ListParams,
    /// Cursor mode: `Some(None)` for the first page.
    pub cursor: Option<Option<Cursor>>,
    /// Side data to return.
    pub load: Load,
    /// The query's fingerprint, for cursors.
    pub query: &'a str,
}

/// One page of a filtered and/or sorted list.
pub(super) fn list(conn: &mut AnyConnection, q: &ListQuery<'_>) -> Result<Page, StoreError> {
    let compiled = match q.filter {
        Some(f) => plan::compile(q.rt, f),
        None => Compiled::everything(),
    };
    let key = q
        .params
        .sort_by
        .as_deref()
        .map(|s| sort_key(q.rt, s))
        .transpose()?;
    let sql_sort = key.as_ref().and_then(plan::sort_column);
    let exact = if compiled.is_exact() {
        Some(compiled.over.clone())
    } else if compiled.under != Pred::False {
        settle(conn, q, &compiled)?
    } else {
        None
    };
    match exact {
        Some(cond) if q.cursor.is_none() && (key.is_none() || sql_sort.is_some()) => {
            let order = Order {
                key: sql_sort,
                descending: q.params.descending,
            };
            page_offset(conn, q, &cond, &order)
        }
        Some(cond) if key.is_none() => page_cursor(conn, q, &cond),
        Some(cond) => scan(conn, q, (&cond, &cond), key.as_ref()),
        None => scan(conn, q, (&compiled.over, &compiled.under), key.as_ref()),
    }
}

/// What to load for the evaluator: members or groups when the filter names them.
fn side(q: &ListQuery<'_>) -> Load {
    let mentions = |name| q.filter.is_some_and(|f| filter::mentions(f, name));
    Load {
        members: q.kind == Kind::Group && mentions("members"),
        groups: q.kind == Kind::User && mentions("groups"),
    }
}

/// Whether the evaluator accepts a row; also returns the rendered document.
fn evaluate(
    conn: &mut AnyConnection,
    q: &ListQuery<'_>,
    row: store::ResourceRow,
) -> Result<(bool, Value), StoreError> {
    let stored = load_side(conn, q.kind, row, side(q))?;
    let doc = Value::Object(render(q.rt, &stored, ""));
    let ok = q.filter.is_none_or(|f| filter::matches(q.rt, f, &doc));
    Ok((ok, doc))
}

/// Turns an inexact filter exact when few rows need the evaluator: the
/// rows in `over` but not in `under` are evaluated, and those that match
/// join `under` by id. `None` when too many match that way.
fn settle(
    conn: &mut AnyConnection,
    q: &ListQuery<'_>,
    c: &Compiled,
) -> Result<Option<Pred>, StoreError> {
    let doubt = Pred::and(vec![c.over.clone(), Pred::negate(c.under.clone())]);
    let mut ids = Vec::new();
    let mut after: Option<(String, String)> = None;
    loop {
        let boundary = after.as_ref().map(|(c, i)| (c.as_str(), i.as_str()));
        let chunk = query::find_candidates(
            conn,
            q.tenant,
            q.kind.name(),
            (&doubt, &Pred::False),
            boundary,
            CHUNK,
        )?;
        let n = chunk.len();
        for candidate in chunk {
            let row = candidate.resource;
            after = Some((row.created.clone(), row.id.clone()));
            let id = row.id.clone();
            if evaluate(conn, q, row)?.0 {
                ids.push(id);
                if ids.len() > MAX_SETTLED {
                    return Ok(None);
                }
            }
        }
        if n < CHUNK {
            break;
        }
    }
    Ok(Some(if ids.is_empty() {
        c.under.clone()
    } else {
        Pred::or(vec![c.under.clone(), Pred::Ids(ids)])
    }))
}

/// startIndex/count paging done by the database.
fn page_offset(
    conn: &mut AnyConnection,
    q: &ListQuery<'_>,
    cond: &Pred,
    order: &Order,
) -> Result<Page, StoreError> {
    let (tenant, kind, count) = (q.tenant, q.kind.name(), q.params.count);
    let skip = q.params.start_index - 1;
    let rows = if count == 0 {
        Vec::new()
    } else {
        query::find_matching_page(conn, tenant, kind, cond, order, skip, count)?
    };
    // A short page that starts inside the matches ends them: no count
    // needed (a look-up by userName is then one query).
    let total = if rows.len() < count && (skip == 0 || !rows.is_empty()) {
        skip + rows.len()
    } else {
        query::count_matching(conn, tenant, kind, cond)?
    };
    let start = skip.min(total);
    let mut resources = Vec::with_capacity(rows.len());
    for row in rows {
        resources.push(load_side(conn, q.kind, row, q.load)?);
    }
    Ok(Page {
        total,
        start_index: start + 1,
        resources,
        cursors: None,
    })
}

/// Cursor paging in creation order done by the database (keyset).
fn page_cursor(
    conn: &mut AnyConnection,
    q: &ListQuery<'_>,
    cond: &Pred,
) -> Result<Page, StoreError> {
    let (tenant, kind, count) = (q.tenant, q.kind.name(), q.params.count);
    let cursor = q.cursor.as_ref().and_then(Option::as_ref);
    let boundary = cursor.map(|c| (c.created.as_str(), c.id.as_str()));
    let before = cursor.is_some_and(|c| c.direction == Direction::Before);
    // Nearest first; one extra row tells whether the far side goes on.
    let mut rows =
        query::find_matching_keyset(conn, tenant, kind, cond, boundary, before, false, count + 1)?;
    let far = rows.len() > count;
    let total = if boundary.is_none() && !far {
        rows.len() // the first page holds every match
    } else {
        query::count_matching(conn, tenant, kind, cond)?
    };
    rows.truncate(count);
    if before {
        rows.reverse();
    }
    // The near side goes on when a match lies at or beyond the boundary.
    let near = match boundary {
        Some(b) if !rows.is_empty() => {
            !query::find_matching_keyset(conn, tenant, kind, cond, Some(b), !before, true, 1)?
                .is_empty()
        }
        _ => false,
    };
    let (has_next, has_prev) = if before { (near, far) } else { (far, near) };
    keyset_page(
        conn,
        KeysetPage {
            kind: q.kind,
            load: q.load,
            query: q.query,
            total,
            has_next,
            has_prev,
        },
        rows,
    )
}

/// Streams the rows of `over` through the evaluator (those not in `under`)
/// and keeps only what the page needs.
fn scan(
    conn: &mut AnyConnection,
    q: &ListQuery<'_>,
    bounds: (&Pred, &Pred),
    key: Option<&SortKey<'_>>,
) -> Result<Page, StoreError> {
    let mut sel = Selector::new(q, key);
    let mut after: Option<(String, String)> = None;
    loop {
        let boundary = after.as_ref().map(|(c, i)| (c.as_str(), i.as_str()));
        let chunk = query::find_candidates(conn, q.tenant, q.kind.name(), bounds, boundary, CHUNK)?;
        let n = chunk.len();
        for candidate in chunk {
            let row = candidate.resource;
            after = Some((row.created.clone(), row.id.clone()));
            let (created, id) = (row.created.clone(), row.id.clone());
            let value = if candidate.sure == 0 || key.is_some() {
                let (ok, doc) = if candidate.sure == 0 {
                    evaluate(conn, q, row)?
                } else {
                    let stored = load_side(conn, q.kind, row, side(q))?;
                    (true, Value::Object(render(q.rt, &stored, "")))
                };
                if !ok {
                    continue;
                }
                key.and_then(|k| doc.as_object().and_then(|d| k.value(d)))
                    .cloned()
                    .unwrap_or(Value::Null)
            } else {
                Value::Null
            };
            sel.push(Entry { value, created, id });
        }
        if n < CHUNK {
            break;
        }
    }
    sel.finish(conn, q)
}

/// A match's place in the order.
struct Entry {
    value: Value,
    created: String,
    id: String,
}

/// Which part of the ordered matches the page is.
enum Window {
    /// startIndex paging: skip this many, take `count`.
    Offset(usize),
    /// The first page in cursor mode.
    First,
    /// After the cursor's boundary.
    After(Entry),
    /// Before it.
    Before(Entry),
}

/// Keeps the entries a page needs out of a stream of matches: the `limit`
/// least (or, before a cursor, greatest) in the window, in a buffer of at
/// most twice that, pruned with a partial sort.
struct Selector<'k> {
    key: Option<&'k SortKey<'k>>,
    descending: bool,
    window: Window,
    count: usize,
    limit: usize,
    kept: Vec<Entry>,
    total: usize,
    /// Matches on the boundary's other side.
    outside: usize,
}

impl<'k> Selector<'k> {
    fn new(q: &ListQuery<'_>, key: Option<&'k SortKey<'k>>) -> Self {
        let count = q.params.count;
        let window = match &q.cursor {
            None => Window::Offset(q.params.start_index - 1),
            Some(None) => Window::First,
            Some(Some(c)) => {
                let e = Entry {
                    value: c.value.clone(),
                    created: c.created.clone(),
                    id: c.id.clone(),
                };
                match c.direction {
                    Direction::After => Window::After(e),
                    Direction::Before => Window::Before(e),
                }
            }
        };
        let limit = match &window {
            Window::Offset(_) if count == 0 => 0,
            Window::Offset(skip) => skip.saturating_add(count),
            _ => count + 1,
        };
        Selector {
            key,
            descending: q.params.descending,
            window,
            count,
            limit,
            kept: Vec::new(),
            total: 0,
            outside: 0,
        }
    }

    fn cmp(&self, a: &Entry, b: &Entry) -> Ordering {
        let by_value = match self.key {
            Some(k) => {
                let o = k.compare(
                    Some(&a.value).filter(|v| !v.is_null()),
                    Some(&b.value).filter(|v| !v.is_null()),
                );
                if self.descending { o.reverse() } else { o }
            }
            None => Ordering::Equal,
        };
        by_value
            .then_with(|| a.created.cmp(&b.created))
            .then_with(|| a.id.cmp(&b.id))
    }

    fn push(&mut self, e: Entry) {
        self.total += 1;
        let inside = match &self.window {
            Window::After(b) => self.cmp(&e, b) == Ordering::Greater,
            Window::Before(b) => self.cmp(&e, b) == Ordering::Less,
            _ => true,
        };
        if !inside {
            self.outside += 1;
            return;
        }
        if self.limit == 0 {
            return;
        }
        self.kept.push(e);
        if self.kept.len() >= self.limit.saturating_mul(2).max(64) {
            self.prune();
        }
    }

    /// Keeps the `limit` entries nearest the start of the window.
    fn prune(&mut self) {
        let from_end = matches!(self.window, Window::Before(_));
        let mut kept = std::mem::take(&mut self.kept);
        if self.limit == 0 {
            kept.clear();
        } else if kept.len() > self.limit {
            kept.select_nth_unstable_by(self.limit - 1, |a, b| {
                let o = self.cmp(a, b);
                if from_end { o.reverse() } else { o }
            });
            kept.truncate(self.limit);
        }
        self.kept = kept;
    }

    fn finish(mut self, conn: &mut AnyConnection, q: &ListQuery<'_>) -> Result<Page, StoreError> {
        self.prune();
        let mut kept = std::mem::take(&mut self.kept);
        kept.sort_by(|a, b| self.cmp(a, b));
        let count = self.count;
        let (page, start_index, cursors): (Vec<Entry>, usize, _) = match self.window {
            Window::Offset(skip) => {
                let page: Vec<Entry> = kept.into_iter().skip(skip).take(count).collect();
                (page, skip.min(self.total) + 1, None)
            }
            Window::First | Window::After(_) => {
                let far = kept.len() > count;
                kept.truncate(count);
                (kept, 1, Some((far, self.outside > 0)))
            }
            Window::Before(_) => {
                let far = kept.len() > count;
                let page = kept.split_off(kept.len().saturating_sub(count));
                (page, 1, Some((self.outside > 0, far)))
            }
        };
        let make = |e: &Entry, direction| {
            Cursor {
                direction,
                value: e.value.clone(),
                created: e.created.clone(),
                id: e.id.clone(),
                query: q.query.to_string(),
            }
            .encode()
        };
        let cursors = cursors.map(|(has_next, has_prev)| {
            let next = page
                .last()
                .filter(|_| has_next)
                .map(|e| make(e, Direction::After));
            let prev = page
                .first()
                .filter(|_| has_prev)
                .map(|e| make(e, Direction::Before));
            (next, prev)
        });
        // Through the compiled query (planned for these ids), not diesel's
        // cached `id = ANY(…)` statement, whose generic plan on PostgreSQL
        // may walk the tenant.
        let ids = Pred::Ids(page.iter().map(|e| e.id.clone()).collect());
        let creation = Order {
            key: None,
            descending: false,
        };
        let found = if page.is_empty() {
            Vec::new()
        } else {
            let (tenant, kind) = (q.tenant, q.kind.name());
            query::find_matching_page(conn, tenant, kind, &ids, &creation, 0, page.len())?
        };
        let mut rows: HashMap<String, store::ResourceRow> =
            found.into_iter().map(|r| (r.id.clone(), r)).collect();
        let mut resources = Vec::with_capacity(page.len());
        for e in &page {
            // A row deleted since it was matched is left out.
            if let Some(row) = rows.remove(&e.id) {
                resources.push(load_side(conn, q.kind, row, q.load)?);
            }
        }
        Ok(Page {
            total: self.total,
            start_index,
            resources,
            cursors,
        })
    }
}
