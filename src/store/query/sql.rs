//! SQL text for a [`Pred`]: the WHERE clause, ordering and keyset bounds
//! for either backend, every value a bound parameter, and the bounded set of
//! dynamic texts kept prepared in diesel's statement cache.

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};

use super::super::StoreError;
use super::super::connection::AnyConnection;
use super::super::prepared::{prepared, uncached};
use super::{Column, Order, Pred, SortBy, Test};

#[derive(Debug, Clone)]
enum Bind {
    Text(String),
    Int(i64),
}

/// SQL text under construction, with its binds: parameters are written
/// `$1`, `$2`, … as [`prepared`] reads them, whatever the backend.
pub(super) struct Sql {
    pub(super) pg: bool,
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
    pub(super) fn new(conn: &AnyConnection) -> Self {
        Sql {
            pg: matches!(conn, AnyConnection::Postgresql(_)),
            text: String::new(),
            binds: Vec::new(),
            lists: false,
        }
    }

    pub(super) fn push(&mut self, s: &str) {
        self.text.push_str(s);
    }

    fn bind(&mut self, v: impl Into<String>) {
        self.binds.push(Bind::Text(v.into()));
        self.placeholder();
    }

    pub(super) fn bind_int(&mut self, v: i64) {
        self.binds.push(Bind::Int(v));
        self.placeholder();
    }

    fn placeholder(&mut self) {
        use std::fmt::Write;
        let _ = write!(self.text, "${}", self.binds.len());
    }

    /// `WHERE` for one tenant's resources of one type passing `pred`.
    pub(super) fn scope(&mut self, tenant: &str, resource_type: &str, pred: &Pred) {
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
    pub(super) fn pred(&mut self, pred: &Pred, neg: bool, tenant: &str, rtype: &str) {
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

    pub(super) fn order(&mut self, order: &Order) {
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

    pub(super) fn keyset(&mut self, boundary: (&str, &str), before: bool, inclusive: bool) {
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

    pub(super) fn load<T>(self, conn: &mut AnyConnection) -> Result<Vec<T>, StoreError>
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

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
