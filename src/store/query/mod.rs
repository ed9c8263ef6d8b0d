//! Filtered reads of `resources`: a predicate tree (what `scim::plan`
//! compiles a SCIM filter into) rendered to SQL for the connection's
//! backend, then counted, paged, or streamed in creation order.
//!
//! ```text
//!  Pred ──render(sqlite | pg)──▶ WHERE r.tenant = ? AND r.resource_type = ? AND (…)
//!          Index  → r.id IN (SELECT resource_id FROM attr_index WHERE attr = ? AND value …)
//!          Column → r.id / r.created / r.last_modified …
//!          Member → group_members
//!          Json   → the stored document (json_type / jsonb)
//! ```
//! Negations are pushed down to the leaves (De Morgan), where a negated
//! side-table test becomes a correlated `NOT EXISTS`: PostgreSQL plans it as
//! an anti-join, where `NOT IN` over a large set degrades to a per-row scan.
//! Every leaf is two-valued (never NULL), so `NOT` means what it says.
//! Every value is a bound parameter; only identifiers of our own are spliced.
//!
//! So the text depends only on the filter's shape, and on SQLite the few
//! shapes IdPs send over and over (Entra's e-mail look-up, say) stay
//! prepared: the first 32 texts (`sql::MAX_ADMITTED`) without a long id list are
//! kept in diesel's statement cache. Preparing was two fifths of such a
//! request (callgrind). Any other text is prepared for each execution, so
//! the cache stays bounded whatever filters clients send.

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Integer, Text};

use super::StoreError;
use super::connection::AnyConnection;
use super::resources::ResourceRow;
use sql::Sql;

mod sql;

/// A condition on a resource row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pred {
    /// Every row.
    True,
    /// No row.
    False,
    /// All of these.
    And(Vec<Pred>),
    /// Any of these.
    Or(Vec<Pred>),
    /// Not this.
    Not(Box<Pred>),
    /// Some non-empty `attr_index` value of `attr` (lower-cased path) passes `test`.
    Index {
        /// Attribute path as stored in `attr_index.attr`.
        attr: String,
        /// Test on the indexed value.
        test: Test,
    },
    /// A column of the row passes `test`.
    Column {
        /// Which column.
        column: Column,
        /// Test on its value.
        test: Test,
    },
    /// A group with this member (any member when `None`).
    HasMember(Option<String>),
    /// A resource that is a member of this group (of any group when `None`).
    MemberOf(Option<String>),
    /// The stored document holds the JSON boolean `value` at `path`.
    JsonBool {
        /// Keys from the document root (attribute names, extension URNs).
        path: Vec<String>,
        /// The boolean.
        value: bool,
    },
    /// One of these ids.
    Ids(Vec<String>),
}

/// A column of `resources` a filter may test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    /// `id`.
    Id,
    /// `created` (fixed-width RFC 3339 UTC text: compares as time).
    Created,
    /// `last_modified`, same format.
    LastModified,
}

impl Column {
    fn sql(self) -> &'static str {
        match self {
            Column::Id => "r.id",
            Column::Created => "r.created",
            Column::LastModified => "r.last_modified",
        }
    }
}

/// A test on one text value; comparisons are in byte (code point) order,
/// case-sensitive: callers fold case beforehand where the schema says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Test {
    /// Equal.
    Eq(String),
    /// Greater than.
    Gt(String),
    /// Greater than or equal.
    Ge(String),
    /// Less than.
    Lt(String),
    /// Less than or equal.
    Le(String),
    /// Starts with (an index range scan).
    Prefix(String),
    /// Contains.
    Contains(String),
    /// Ends with.
    Suffix(String),
    /// At least this many bytes long.
    AtLeastBytes(usize),
    /// Not this.
    Not(Box<Test>),
    /// Any of these.
    Any(Vec<Test>),
    /// All of these.
    All(Vec<Test>),
    /// Anything (for `pr`: index values are never empty here).
    Anything,
}

impl Pred {
    /// `a and b and …`, folding constants.
    pub fn and(items: Vec<Pred>) -> Pred {
        let mut out = Vec::with_capacity(items.len());
        for p in items {
            match p {
                Pred::True => {}
                Pred::False => return Pred::False,
                Pred::And(inner) => out.extend(inner),
                other => out.push(other),
            }
        }
        match out.len() {
            0 => Pred::True,
            1 => out.pop().unwrap_or(Pred::True),
            _ => Pred::And(out),
        }
    }

    /// `a or b or …`, folding constants.
    pub fn or(items: Vec<Pred>) -> Pred {
        let mut out = Vec::with_capacity(items.len());
        for p in items {
            match p {
                Pred::False => {}
                Pred::True => return Pred::True,
                Pred::Or(inner) => out.extend(inner),
                other => out.push(other),
            }
        }
        match out.len() {
            0 => Pred::False,
            1 => out.pop().unwrap_or(Pred::False),
            _ => Pred::Or(out),
        }
    }

    /// `not p`, folding constants and double negation.
    pub fn negate(p: Pred) -> Pred {
        match p {
            Pred::True => Pred::False,
            Pred::False => Pred::True,
            Pred::Not(inner) => *inner,
            other => Pred::Not(Box::new(other)),
        }
    }
}

/// The order of a page: an optional sort column, then creation, then id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    /// What to sort by first; `None` is creation order.
    pub key: Option<SortBy>,
    /// Descending sort value (absent values first); ties stay ascending.
    pub descending: bool,
}

/// A sort key SQL can order by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SortBy {
    /// A column of `resources`.
    Column(Column),
    /// The (single) index value of a singular indexed attribute.
    Index(String),
}

const COLUMNS: &str = "r.id, r.tenant, r.resource_type, r.external_id, r.display, r.data, r.version, r.created, r.last_modified";

/// Number of a tenant's resources of one type that pass `pred`.
pub fn count_matching(
    conn: &mut AnyConnection,
    tenant: &str,
    resource_type: &str,
    pred: &Pred,
) -> Result<usize, StoreError> {
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let mut sql = Sql::new(conn);
    sql.push("SELECT count(*) AS n");
    sql.scope(tenant, resource_type, pred);
    let rows: Vec<Count> = sql.load(conn)?;
    Ok(rows.first().map_or(0, |c| c.n.max(0) as usize))
}

/// A page of the resources that pass `pred`, in `order`.
pub fn find_matching_page(
    conn: &mut AnyConnection,
    tenant: &str,
    resource_type: &str,
    pred: &Pred,
    order: &Order,
    offset: usize,
    limit: usize,
) -> Result<Vec<ResourceRow>, StoreError> {
    let mut sql = Sql::new(conn);
    sql.push(&format!("SELECT {COLUMNS}"));
    sql.scope(tenant, resource_type, pred);
    sql.order(order);
    sql.push(" LIMIT ");
    sql.bind_int(limit as i64);
    sql.push(" OFFSET ");
    sql.bind_int(offset as i64);
    sql.load(conn)
}

/// Resources that pass `pred` after (or, with `before`, before) the
/// `(created, id)` boundary in creation order, nearest first, at most `limit`;
/// `inclusive` admits the boundary itself.
#[expect(clippy::too_many_arguments, reason = "one keyset query, many parts")]
pub fn find_matching_keyset(
    conn: &mut AnyConnection,
    tenant: &str,
    resource_type: &str,
    pred: &Pred,
    boundary: Option<(&str, &str)>,
    before: bool,
    inclusive: bool,
    limit: usize,
) -> Result<Vec<ResourceRow>, StoreError> {
    let mut sql = Sql::new(conn);
    sql.push(&format!("SELECT {COLUMNS}"));
    sql.scope(tenant, resource_type, pred);
    if let Some(b) = boundary {
        sql.keyset(b, before, inclusive);
    }
    sql.push(if before {
        " ORDER BY r.created DESC, r.id DESC LIMIT "
    } else {
        " ORDER BY r.created ASC, r.id ASC LIMIT "
    });
    sql.bind_int(limit as i64);
    sql.load(conn)
}

/// A row passing `over`, and whether it also passes `under` (then it
/// matches for sure; otherwise only the evaluator can tell).
#[derive(Debug, QueryableByName)]
pub struct Candidate {
    /// The resource.
    #[diesel(embed)]
    pub resource: ResourceRow,
    /// 1 when the row passes `under`.
    #[diesel(sql_type = Integer)]
    pub sure: i32,
}

/// The next chunk of candidates in creation order after `after`: rows
/// passing `over`, each flagged with whether it passes `under`.
pub fn find_candidates(
    conn: &mut AnyConnection,
    tenant: &str,
    resource_type: &str,
    (over, under): (&Pred, &Pred),
    after: Option<(&str, &str)>,
    limit: usize,
) -> Result<Vec<Candidate>, StoreError> {
    let mut sql = Sql::new(conn);
    sql.push(&format!("SELECT {COLUMNS}, "));
    if under == over {
        sql.push("1");
    } else if *under == Pred::False {
        sql.push("0");
    } else {
        sql.push("CASE WHEN ");
        sql.pred(under, false, tenant, resource_type);
        sql.push(" THEN 1 ELSE 0 END");
    }
    sql.push(" AS sure");
    sql.scope(tenant, resource_type, over);
    if let Some(b) = after {
        sql.keyset(b, false, false);
    }
    sql.push(" ORDER BY r.created ASC, r.id ASC LIMIT ");
    sql.bind_int(limit as i64);
    sql.load(conn)
}

/// The backend's plan for the page query of `pred` (tests, diagnostics).
pub fn explain_matching(
    conn: &mut AnyConnection,
    tenant: &str,
    resource_type: &str,
    pred: &Pred,
) -> Result<String, StoreError> {
    #[derive(QueryableByName)]
    struct Line {
        #[diesel(sql_type = Text)]
        detail: String,
    }
    #[derive(QueryableByName)]
    struct PgLine {
        #[diesel(sql_type = Text, column_name = "QUERY PLAN")]
        plan: String,
    }
    let mut sql = Sql::new(conn);
    sql.push(if sql.pg {
        "EXPLAIN "
    } else {
        "EXPLAIN QUERY PLAN "
    });
    sql.push(&format!("SELECT {COLUMNS}"));
    sql.scope(tenant, resource_type, pred);
    sql.order(&Order {
        key: None,
        descending: false,
    });
    sql.push(" LIMIT 100");
    let lines: Vec<String> = if sql.pg {
        use diesel::connection::SimpleConnection;
        // Planning as for a large table: no sequential scan when an index serves.
        conn.batch_execute("SET enable_seqscan = off")?;
        let lines = sql.load::<PgLine>(conn);
        conn.batch_execute("SET enable_seqscan = on")?;
        lines?.into_iter().map(|l| l.plan).collect()
    } else {
        sql.load::<Line>(conn)?
            .into_iter()
            .map(|l| l.detail)
            .collect()
    };
    Ok(lines.join("\n"))
}
