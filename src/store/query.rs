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
//! prepared: the first [`MAX_ADMITTED`] texts without a long id list are
//! kept in diesel's statement cache. Preparing was two fifths of such a
//! request (callgrind). Any other text is prepared for each execution, so
//! the cache stays bounded whatever filters clients send.

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Integer, Text};

use super::StoreError;
use super::connection::AnyConnection;
use super::prepared::{prepared, uncached};
use super::resources::ResourceRow;

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

#[derive(Debug, Clone)]
enum Bind {
    Text(String),
    Int(i64),
}

/// SQL text under construction, with its binds: parameters are written
/// `$1`, `$2`, … as [`prepared`] reads them, whatever the backend.
struct Sql {
    pg: bool,
    text: String,
    binds: Vec<Bind>,
    /// Whether the text holds a list of ids longer than [`MAX_KEPT_LIST`]:
    /// such a text is never admitted to the statement cache.
    lists: bool,
}

/// Dynamic statement texts kept prepared, at most.
const MAX_ADMITTED: usize = 32;
/// Longest id list a text kept prepared may hold: a page found by the
/// evaluator (Entra's e-mail look-up) is a short list of ids, a different
/// text for every length.
const MAX_KEPT_LIST: usize = 4;
/// Longest dynamic statement text kept prepared.
const MAX_ADMITTED_LEN: usize = 8 * 1024;
/// Most parameters of a dynamic statement kept prepared. A long `or`
/// chain or list in a filter has as many texts as it has lengths; the
/// shapes IdPs repeat have a handful of parameters.
const MAX_ADMITTED_BINDS: usize = 12;

/// The dynamic statement texts admitted to diesel's statement cache. Each
/// is leaked once, which bounds what this holds to [`MAX_ADMITTED`] texts.
static ADMITTED: std::sync::RwLock<Vec<&'static str>> = std::sync::RwLock::new(Vec::new());

/// `text` as a `&'static str` diesel may keep prepared: the admitted copy,
/// or a new one while fewer than [`MAX_ADMITTED`] are; `None` otherwise.
fn admitted(text: &str) -> Option<&'static str> {
    admit(&ADMITTED, text)
}

/// [`admitted`] over the list `into`. A request only reads the list (the
/// HTTP workers share it); it is written while a text is admitted.
fn admit(into: &std::sync::RwLock<Vec<&'static str>>, text: &str) -> Option<&'static str> {
    use std::sync::PoisonError;
    let find = |all: &[&'static str]| all.iter().copied().find(|t| *t == text);
    let all = into.read().unwrap_or_else(PoisonError::into_inner);
    if let Some(found) = find(&all) {
        return Some(found);
    }
    if all.len() >= MAX_ADMITTED || text.len() > MAX_ADMITTED_LEN {
        return None;
    }
    drop(all);
    let mut all = into.write().unwrap_or_else(PoisonError::into_inner);
    if let Some(found) = find(&all) {
        return Some(found); // admitted meanwhile
    }
    if all.len() >= MAX_ADMITTED {
        return None;
    }
    let kept: &'static str = Box::leak(text.to_owned().into_boxed_str());
    all.push(kept);
    Some(kept)
}

impl Sql {
    fn new(conn: &AnyConnection) -> Self {
        Sql {
            pg: matches!(conn, AnyConnection::Postgresql(_)),
            text: String::new(),
            binds: Vec::new(),
            lists: false,
        }
    }

    fn push(&mut self, s: &str) {
        self.text.push_str(s);
    }

    fn bind(&mut self, v: impl Into<String>) {
        self.binds.push(Bind::Text(v.into()));
        self.placeholder();
    }

    fn bind_int(&mut self, v: i64) {
        self.binds.push(Bind::Int(v));
        self.placeholder();
    }

    fn placeholder(&mut self) {
        use std::fmt::Write;
        let _ = write!(self.text, "${}", self.binds.len());
    }

    /// `WHERE` for one tenant's resources of one type passing `pred`.
    fn scope(&mut self, tenant: &str, resource_type: &str, pred: &Pred) {
        // When the predicate names a small set of ids (an index look-up),
        // the query must start from it: with the (tenant, type) index in
        // reach, both planners may instead walk the whole tenant in
        // creation order and probe the set per row, above all before
        // statistics exist. An expression on the columns takes the index
        // out of reach (`+x` on SQLite, `x || ''` on PostgreSQL).
        let (tenant_col, type_col) = match (narrows(pred), self.pg) {
            (false, _) => ("r.tenant", "r.resource_type"),
            (true, false) => ("+r.tenant", "+r.resource_type"),
            (true, true) => ("r.tenant || ''", "r.resource_type || ''"),
        };
        self.push(&format!(" FROM resources r WHERE {tenant_col} = "));
        self.bind(tenant);
        self.push(&format!(" AND {type_col} = "));
        self.bind(resource_type);
        if *pred != Pred::True {
            self.push(" AND ");
            self.pred(pred, false, tenant, resource_type);
        }
    }

    /// Renders `pred` (or its negation): negations move to the leaves.
    fn pred(&mut self, pred: &Pred, neg: bool, tenant: &str, rtype: &str) {
        match pred {
            Pred::True => self.push(if neg { "1 = 0" } else { "1 = 1" }),
            Pred::False => self.push(if neg { "1 = 1" } else { "1 = 0" }),
            Pred::Not(inner) => self.pred(inner, !neg, tenant, rtype),
            Pred::Or(items) if !neg && items.iter().all(is_set) => {
                // One set of ids: both planners drive the query from a
                // union, where an OR of sets becomes a scan on PostgreSQL.
                self.push("r.id IN (");
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        self.push(" UNION ");
                    }
                    self.id_set(item, tenant, rtype);
                }
                self.push(")");
            }
            Pred::And(items) | Pred::Or(items) => {
                let and = matches!(pred, Pred::And(_)) != neg;
                self.push("(");
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        self.push(if and { " AND " } else { " OR " });
                    }
                    self.pred(item, neg, tenant, rtype);
                }
                self.push(")");
            }
            Pred::Index { attr, test } if neg => {
                // A correlated anti-join.
                self.push(
                    "NOT EXISTS (SELECT 1 FROM attr_index a WHERE a.resource_id = r.id AND a.attr = ",
                );
                self.bind(attr.as_str());
                self.push(" AND a.value <> ''");
                if *test != Test::Anything {
                    self.push(" AND ");
                    self.test("a.value", test, false);
                }
                self.push(")");
            }
            Pred::Index { .. } => {
                // An uncorrelated set the planner can drive the query from.
                self.push("r.id IN (");
                self.id_set(pred, tenant, rtype);
                self.push(")");
            }
            Pred::Column { column, test } => {
                if neg {
                    self.push("NOT ");
                }
                self.push("(");
                self.test(column.sql(), test, true);
                self.push(")");
            }
            Pred::HasMember(member) => self.membership(neg, "group_id", "member_id", member),
            Pred::MemberOf(group) => self.membership(neg, "member_id", "group_id", group),
            Pred::JsonBool { path, value } => {
                if neg {
                    self.push("NOT ");
                }
                if self.pg {
                    // `data` is JSON text on both backends.
                    self.push("(COALESCE((r.data::jsonb");
                    for key in path {
                        self.push(" -> ");
                        self.bind(key.as_str());
                    }
                    self.push(") = ");
                    self.push(if *value { "'true'" } else { "'false'" });
                    self.push("::jsonb, FALSE))");
                } else {
                    let mut p = String::from("$");
                    for key in path {
                        p.push_str(&format!(".\"{key}\""));
                    }
                    self.push("(json_type(r.data, ");
                    self.bind(p);
                    self.push(") IS ");
                    self.push(if *value { "'true'" } else { "'false'" });
                    self.push(")");
                }
            }
            Pred::Ids(ids) => {
                if ids.is_empty() {
                    return self.pred(&Pred::False, neg, tenant, rtype);
                }
                self.push(if neg { "r.id NOT IN (" } else { "r.id IN (" });
                self.lists |= ids.len() > MAX_KEPT_LIST;
                for (i, id) in ids.iter().enumerate() {
                    if i > 0 {
                        self.push(", ");
                    }
                    self.bind(id.as_str());
                }
                self.push(")");
            }
        }
    }

    /// `r.id` of groups with / resources in `other` (`self_col` is the row's side).
    fn membership(&mut self, neg: bool, self_col: &str, other_col: &str, other: &Option<String>) {
        if let (false, Some(_)) = (neg, other) {
            let set = if self_col == "group_id" {
                Pred::HasMember(other.clone())
            } else {
                Pred::MemberOf(other.clone())
            };
            self.push("r.id IN (");
            self.id_set(&set, "", "");
            self.push(")");
            return;
        }
        self.push(if neg { "NOT EXISTS" } else { "EXISTS" });
        self.push(&format!(
            " (SELECT 1 FROM group_members gm WHERE gm.{self_col} = r.id"
        ));
        if let Some(v) = other {
            self.push(&format!(" AND gm.{other_col} = "));
            self.bind(v.as_str());
        }
        self.push(")");
    }

    /// `SELECT` of the ids in a set predicate (see [`is_set`]).
    fn id_set(&mut self, pred: &Pred, tenant: &str, rtype: &str) {
        match pred {
            Pred::Index { attr, test } => {
                self.push("SELECT a.resource_id FROM attr_index a WHERE a.tenant = ");
                self.bind(tenant);
                self.push(" AND a.resource_type = ");
                self.bind(rtype);
                self.push(" AND a.attr = ");
                self.bind(attr.as_str());
                self.push(" AND a.value <> ''");
                if *test != Test::Anything {
                    self.push(" AND ");
                    self.test("a.value", test, false);
                }
            }
            Pred::HasMember(Some(m)) => {
                self.push("SELECT gm.group_id FROM group_members gm WHERE gm.member_id = ");
                self.bind(m.as_str());
            }
            Pred::MemberOf(Some(g)) => {
                self.push("SELECT gm.member_id FROM group_members gm WHERE gm.group_id = ");
                self.bind(g.as_str());
            }
            Pred::Ids(ids) => {
                self.push("SELECT r2.id FROM resources r2 WHERE r2.id IN (");
                self.lists |= ids.len() > MAX_KEPT_LIST;
                for (i, id) in ids.iter().enumerate() {
                    if i > 0 {
                        self.push(", ");
                    }
                    self.bind(id.as_str());
                }
                self.push(")");
            }
            Pred::Column {
                column: Column::Id,
                test: Test::Eq(id),
            } => {
                self.push("SELECT r2.id FROM resources r2 WHERE r2.id = ");
                self.bind(id.as_str());
            }
            // Not a set: callers check `is_set` first.
            _ => self.push("SELECT r2.id FROM resources r2 WHERE 1 = 0"),
        }
    }

    /// A test on `expr`. `resources` columns use the database collation on
    /// PostgreSQL, so order comparisons on them ask for byte order.
    fn test(&mut self, expr: &str, test: &Test, column: bool) {
        let ordered = if column && self.pg {
            format!("{expr} COLLATE \"C\"")
        } else {
            expr.to_string()
        };
        let cmp = |s: &mut Sql, op: &str, v: &str| {
            s.push(&format!("{ordered} {op} "));
            s.bind(v);
        };
        match test {
            // Equality is the same in every deterministic collation, and
            // only the column's own collation can use its index.
            Test::Eq(v) => {
                self.push(&format!("{expr} = "));
                self.bind(v.as_str());
            }
            Test::Gt(v) => cmp(self, ">", v),
            Test::Ge(v) => cmp(self, ">=", v),
            Test::Lt(v) => cmp(self, "<", v),
            Test::Le(v) => cmp(self, "<=", v),
            Test::Prefix(p) => {
                // [p, successor(p)): a range the index serves.
                cmp(self, ">=", p);
                if let Some(upper) = successor(p) {
                    self.push(" AND ");
                    cmp(self, "<", &upper);
                }
            }
            Test::Contains(s) => self.pattern(expr, s, true, true),
            Test::Suffix(s) => self.pattern(expr, s, true, false),
            Test::Not(inner) => {
                self.push("NOT (");
                self.test(expr, inner, column);
                self.push(")");
            }
            Test::AtLeastBytes(n) => {
                self.push(&if self.pg {
                    format!("octet_length({expr}) >= ")
                } else {
                    format!("length(CAST({expr} AS BLOB)) >= ")
                });
                self.bind_int(*n as i64);
            }
            Test::Any(items) | Test::All(items) => {
                let op = if matches!(test, Test::Any(_)) {
                    " OR "
                } else {
                    " AND "
                };
                self.push("(");
                for (i, t) in items.iter().enumerate() {
                    if i > 0 {
                        self.push(op);
                    }
                    self.test(expr, t, column);
                }
                self.push(")");
            }
            Test::Anything => self.push("1 = 1"),
        }
    }

    /// Case-sensitive substring / suffix match. SQLite's LIKE ignores ASCII
    /// case, so SQLite uses GLOB; PostgreSQL's LIKE is case-sensitive.
    fn pattern(&mut self, expr: &str, needle: &str, lead: bool, trail: bool) {
        let mut p = String::new();
        if self.pg {
            if lead {
                p.push('%');
            }
            for c in needle.chars() {
                if matches!(c, '%' | '_' | '\\') {
                    p.push('\\');
                }
                p.push(c);
            }
            if trail {
                p.push('%');
            }
            self.push(&format!("{expr} LIKE "));
            self.bind(p);
            self.push(" ESCAPE '\\'");
        } else {
            if lead {
                p.push('*');
            }
            for c in needle.chars() {
                match c {
                    '*' | '?' | '[' => {
                        p.push('[');
                        p.push(c);
                        p.push(']');
                    }
                    _ => p.push(c),
                }
            }
            if trail {
                p.push('*');
            }
            self.push(&format!("{expr} GLOB "));
            self.bind(p);
        }
    }

    fn sort_expr(&mut self, key: &SortBy) {
        match key {
            SortBy::Column(c) => {
                self.push(c.sql());
                if self.pg {
                    self.push(" COLLATE \"C\"");
                }
            }
            SortBy::Index(attr) => {
                self.push("(SELECT min(a.value) FROM attr_index a WHERE a.resource_id = r.id AND a.attr = ");
                self.bind(attr.as_str());
                self.push(")");
            }
        }
    }

    fn order(&mut self, order: &Order) {
        self.push(" ORDER BY ");
        if let Some(key) = &order.key {
            let dir = if order.descending { "DESC" } else { "ASC" };
            // Absent values last when ascending, first when descending.
            self.push("(");
            self.sort_expr(key);
            self.push(&format!(" IS NULL) {dir}, "));
            self.sort_expr(key);
            self.push(&format!(" {dir}, "));
        }
        self.push("r.created ASC, r.id ASC");
    }

    fn keyset(&mut self, boundary: (&str, &str), before: bool, inclusive: bool) {
        let (op, tie) = match (before, inclusive) {
            (false, false) => (">", ">"),
            (false, true) => (">", ">="),
            (true, false) => ("<", "<"),
            (true, true) => ("<", "<="),
        };
        self.push(&format!(" AND (r.created {op} "));
        self.bind(boundary.0);
        self.push(" OR (r.created = ");
        self.bind(boundary.0);
        self.push(&format!(" AND r.id {tie} "));
        self.bind(boundary.1);
        self.push("))");
    }

    fn load<T>(self, conn: &mut AnyConnection) -> Result<Vec<T>, StoreError>
    where
        T: QueryableByName<diesel::sqlite::Sqlite> + QueryableByName<diesel::pg::Pg> + 'static,
    {
        // PostgreSQL plans a statement it keeps prepared without its values
        // after a few executions (a generic plan), which a LIMIT or a
        // skewed attribute can make much worse; an unnamed statement is
        // planned for its values every time. SQLite's plans never depend
        // on the values (it is built with the planner stability guarantee).
        let kept = if self.lists || self.pg || self.binds.len() > MAX_ADMITTED_BINDS {
            None
        } else {
            admitted(&self.text)
        };
        Ok(on_backend!(conn, c => {
            let mut q = match kept {
                Some(text) => prepared(text),
                None => uncached(&self.text),
            };
            for b in &self.binds {
                q = match b {
                    Bind::Text(s) => q.bind::<Text, _>(s.as_str()),
                    Bind::Int(i) => q.bind::<BigInt, _>(*i),
                };
            }
            q.load(c)?
        }))
    }
}

/// Whether `pred` is a set of ids found through an index on something
/// other than the tenant (attribute index, membership, ids).
fn is_set(pred: &Pred) -> bool {
    match pred {
        Pred::Index { .. } | Pred::HasMember(Some(_)) | Pred::MemberOf(Some(_)) => true,
        Pred::Ids(ids) => !ids.is_empty(),
        Pred::Column {
            column: Column::Id,
            test: Test::Eq(_),
        } => true,
        _ => false,
    }
}

/// Whether `pred` confines rows to such a set (so the query starts there).
fn narrows(pred: &Pred) -> bool {
    match pred {
        Pred::And(items) => items.iter().any(narrows),
        Pred::Or(items) => items.iter().all(is_set),
        other => is_set(other),
    }
}

/// The least string greater than every string starting with `p`, in code
/// point order: `p` with its last character incremented (dropping trailing
/// U+10FFFF). `None` when there is none (every string ≥ `p` starts with it).
fn successor(p: &str) -> Option<String> {
    let mut chars: Vec<char> = p.chars().collect();
    while let Some(last) = chars.pop() {
        let mut next = last as u32 + 1;
        while next <= 0x10FFFF {
            if let Some(c) = char::from_u32(next) {
                chars.push(c);
                return Some(chars.into_iter().collect());
            }
            next += 1;
        }
    }
    None
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn successor_bounds_exactly_the_strings_with_a_prefix() {
        assert_eq!(successor("ab").as_deref(), Some("ac"));
        assert_eq!(successor("a\u{10FFFF}").as_deref(), Some("b"));
        assert_eq!(successor("\u{D7FF}").as_deref(), Some("\u{E000}"));
        assert_eq!(successor("\u{10FFFF}"), None);
        assert_eq!(successor(""), None);
    }

    /// Counts the statements a connection keeps prepared.
    struct Kept(std::sync::Arc<std::sync::Mutex<usize>>);

    impl diesel::connection::Instrumentation for Kept {
        fn on_connection_event(&mut self, event: diesel::connection::InstrumentationEvent<'_>) {
            if let diesel::connection::InstrumentationEvent::CacheQuery { .. } = event
                && let Ok(mut n) = self.0.lock()
            {
                *n += 1;
            }
        }
    }

    /// A migrated in-memory SQLite connection and the count of statements
    /// it has kept prepared.
    fn counting() -> anyhow::Result<(AnyConnection, impl Fn() -> usize)> {
        let mut sqlite = diesel::SqliteConnection::establish(":memory:")?;
        let kept = std::sync::Arc::new(std::sync::Mutex::new(0));
        sqlite.set_instrumentation(Kept(kept.clone()));
        let mut conn = AnyConnection::Sqlite(sqlite);
        crate::store::run_migrations(&mut conn)?;
        let count = move || {
            *kept
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        };
        Ok((conn, count))
    }

    #[test]
    fn a_filter_shape_stays_prepared_and_a_long_id_list_does_not() -> anyhow::Result<()> {
        let (mut conn, count) = counting()?;
        let before = count();
        let email = |v: &str| Pred::Index {
            attr: "emails.value".into(),
            test: Test::Eq(v.into()),
        };
        for v in ["a@x.example", "b@x.example", "c@x.example"] {
            let found =
                find_candidates(&mut conn, "t", "User", (&email(v), &Pred::False), None, 10)?;
            assert!(found.is_empty());
        }
        assert_eq!(count() - before, 1, "one shape, prepared once");
        let ids = |n: usize| Pred::Ids((0..n).map(|i| format!("id-{i}")).collect());
        for n in [1, 2, 1, 2] {
            let found = find_candidates(&mut conn, "t", "User", (&ids(n), &ids(n)), None, 10)?;
            assert!(found.is_empty());
        }
        assert_eq!(count() - before, 3, "a short id list, one text per length");
        for n in [MAX_KEPT_LIST + 1, MAX_KEPT_LIST + 2, MAX_KEPT_LIST + 1] {
            let found = find_candidates(&mut conn, "t", "User", (&ids(n), &ids(n)), None, 10)?;
            assert!(found.is_empty());
        }
        assert_eq!(count() - before, 3, "long id lists are never kept prepared");
        Ok(())
    }

    #[test]
    fn admission_stops_at_its_bound() {
        // A list of its own: the process-wide one is shared with the other
        // tests when they run as threads of one process (`cargo test`).
        static LIST: std::sync::RwLock<Vec<&'static str>> = std::sync::RwLock::new(Vec::new());
        let texts: Vec<String> = (0..MAX_ADMITTED + 5)
            .map(|i| format!("SELECT {i} AS admission_test"))
            .collect();
        let admitted_now = texts.iter().filter(|t| admit(&LIST, t).is_some()).count();
        assert_eq!(admitted_now, MAX_ADMITTED);
        assert!(admit(&LIST, &texts[MAX_ADMITTED + 4]).is_none());
        // An admitted text is found again, as the same leaked copy.
        let first = admit(&LIST, &texts[0]);
        assert!(first.is_some_and(|f| admit(&LIST, &texts[0]).is_some_and(|g| std::ptr::eq(f, g))));
        static SHORT: std::sync::RwLock<Vec<&'static str>> = std::sync::RwLock::new(Vec::new());
        assert!(admit(&SHORT, &"x".repeat(MAX_ADMITTED_LEN + 1)).is_none());
    }

    #[test]
    fn a_long_or_chain_is_not_kept_prepared() -> anyhow::Result<()> {
        let (mut conn, count) = counting()?;
        let before = count();
        for n in [MAX_ADMITTED_BINDS, MAX_ADMITTED_BINDS + 1] {
            let chain = Pred::Or(
                (0..n)
                    .map(|i| Pred::Index {
                        attr: "username".into(),
                        test: Test::Eq(format!("user{i}")),
                    })
                    .collect(),
            );
            let found = find_candidates(&mut conn, "t", "User", (&chain, &chain), None, 10)?;
            assert!(found.is_empty());
        }
        assert_eq!(
            count() - before,
            0,
            "or chains of many terms stay unprepared"
        );
        Ok(())
    }

    #[test]
    fn constants_fold() {
        let leaf = || Pred::Ids(vec!["a".into()]);
        assert_eq!(Pred::and(vec![Pred::True, leaf()]), leaf());
        assert_eq!(Pred::and(vec![Pred::False, leaf()]), Pred::False);
        assert_eq!(Pred::or(vec![Pred::False, leaf()]), leaf());
        assert_eq!(Pred::or(vec![Pred::True, leaf()]), Pred::True);
        assert_eq!(Pred::negate(Pred::negate(leaf())), leaf());
    }
}
