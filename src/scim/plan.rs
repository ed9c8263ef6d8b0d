//! Filter compilation: a parsed SCIM filter becomes two SQL predicates over
//! a tenant's resources, `over` (every match passes it) and `under` (whatever
//! passes it matches). Where they are equal the filter is exact in SQL and
//! the database counts, sorts and pages; where they differ, only rows in
//! `over` but not `under` go through the in-memory evaluator
//! ([`filter::matches`], the reference semantics, shared with policy rules).
//!
//! ```text
//!  userName eq "x"          over = under = index(username = "x")        exact
//!  not (userName sw "a")    over = under = not index(username ≥ "a" < "b") exact
//!  title eq "x"             over = true,  under = false                 evaluator
//!  emails[type eq "work"    over = index(emails.value = "x")            evaluator on
//!         and value eq "x"] under = false (same element: not in index)  the few candidates
//! ```
//! `and`/`or` combine both bounds, `not` swaps them (`over' = not under`).
//!
//! What compiles, exactly:
//! - the indexed attributes (`userName`, `externalId`, `displayName`,
//!   `emails.value`; see [`INDEXED`]) for every operator with a string
//!   operand, against `attr_index` whose values are case-folded unless the
//!   schema says `caseExact`. Index values are cut at 512 bytes: operands of
//!   up to [`EXACT_BYTES`] bytes compare exactly against a cut value (they
//!   decide within its first bytes), longer operands and `co`/`ew` against a
//!   long value only narrow (the long rows go to the evaluator);
//! - `id`, `meta.created`, `meta.lastModified` (dateTimes compare as
//!   instants: the stored text is fixed-width UTC), `meta.resourceType`;
//! - `members`/`members.value` of a Group and `groups`/`groups.value` of a
//!   User (`eq`, `ne`, `pr`) against `group_members`;
//! - boolean attributes (`active eq false`, extension booleans) against the
//!   stored JSON document;
//! - value paths (`emails[value sw "a" or value ew "z"]`) where one element
//!   need not satisfy two conditions at once.
//!
//! Everything else (non-indexed strings such as `title`, extension strings,
//! `emails.type`, numbers, `co` on dateTimes, element-wise `and` inside
//! brackets) is left to the evaluator, narrowed by whatever else the filter
//! says. Indexing more attributes was weighed and not done: each index row
//! is written on every create and replace (the write target is 5,000/s),
//! and case-insensitive comparison of JSON strings in SQL cannot match the
//! evaluator's Unicode case folding on SQLite, so it could only narrow.

use chrono::{Datelike, Timelike, Utc};
use scim_v2::filter::{AttrExp, AttrPath, CompValue, CompareOp, Filter, ValFilter};
use serde_json::Value;

use super::filter::{compare, parse_time};
use super::index::{INDEXED, MAX_INDEXED_BYTES};
use super::list::SortKey;
use super::path::{Target, resolve};
use super::schema::{AttrDef, AttrType, ResourceType};
use crate::store::query::{Column, Pred, SortBy, Test};

/// Operands up to this many bytes compare exactly against cut index values:
/// a value is only cut when longer than [`MAX_INDEXED_BYTES`], and then to
/// at least `MAX_INDEXED_BYTES - 3` bytes (a character boundary).
pub const EXACT_BYTES: usize = MAX_INDEXED_BYTES - 4;

/// What SQL can say about a filter: `under ⊆ matches ⊆ over`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compiled {
    /// Every match passes it.
    pub over: Pred,
    /// Whatever passes it matches.
    pub under: Pred,
}

impl Compiled {
    fn exact(p: Pred) -> Self {
        Compiled {
            over: p.clone(),
            under: p,
        }
    }

    /// No filter: every resource, exactly.
    pub fn everything() -> Self {
        Compiled::exact(Pred::True)
    }

    /// Nothing SQL can decide: the evaluator looks at every resource.
    fn residue() -> Self {
        Compiled {
            over: Pred::True,
            under: Pred::False,
        }
    }

    /// Whether SQL alone decides the filter.
    pub fn is_exact(&self) -> bool {
        self.over == self.under
    }

    fn negate(self) -> Self {
        Compiled {
            over: Pred::negate(self.under),
            under: Pred::negate(self.over),
        }
    }

    fn all(items: Vec<Compiled>) -> Self {
        let (over, under) = items.into_iter().map(|c| (c.over, c.under)).unzip();
        Compiled {
            over: Pred::and(over),
            under: Pred::and(under),
        }
    }

    fn any(items: Vec<Compiled>) -> Self {
        let (over, under) = items.into_iter().map(|c| (c.over, c.under)).unzip();
        Compiled {
            over: Pred::or(over),
            under: Pred::or(under),
        }
    }
}

/// Compiles a (checked) filter for resources of `rt`.
pub fn compile(rt: &ResourceType, filter: &Filter) -> Compiled {
    match filter {
        Filter::Attr(e) => leaf(rt, e, None),
        Filter::ValuePath(vp) => match resolve(rt, &vp.attr) {
            Some(Target::Attr {
                attr, sub: None, ..
            }) => value_filter(rt, &vp.attr, attr, &vp.filter),
            _ => Compiled::residue(),
        },
        Filter::Not(inner) => compile(rt, inner).negate(),
        Filter::And(items) => Compiled::all(items.iter().map(|i| compile(rt, i)).collect()),
        Filter::Or(items) => Compiled::any(items.iter().map(|i| compile(rt, i)).collect()),
    }
}

/// `parent[filter]`: matches when ONE element passes the filter. `or`
/// distributes over "some element"; `and` does not (two conditions may hold
/// on different elements), so it only narrows; `not` and `ne` hold for
/// elements the side tables do not list, so they do not narrow.
fn value_filter(rt: &ResourceType, parent: &AttrPath, def: &AttrDef, f: &ValFilter) -> Compiled {
    match f {
        ValFilter::Attr(e) => {
            let is_ne = matches!(e, AttrExp::Comparison(_, CompareOp::Ne, _));
            if is_ne || def.sub(&exp_path(e).name).is_none() {
                Compiled::residue()
            } else {
                leaf(rt, e, Some(parent))
            }
        }
        ValFilter::Not(_) => Compiled::residue(),
        ValFilter::And(items) => {
            let parts: Vec<Compiled> = items
                .iter()
                .map(|i| value_filter(rt, parent, def, i))
                .collect();
            match <[Compiled; 1]>::try_from(parts) {
                Ok([one]) => one,
                Err(parts) => Compiled {
                    over: Pred::and(parts.into_iter().map(|c| c.over).collect()),
                    under: Pred::False,
                },
            }
        }
        ValFilter::Or(items) => Compiled::any(
            items
                .iter()
                .map(|i| value_filter(rt, parent, def, i))
                .collect(),
        ),
    }
}

fn exp_path(e: &AttrExp) -> &AttrPath {
    match e {
        AttrExp::Present(p) | AttrExp::Comparison(p, _, _) => p,
    }
}

/// One comparison, possibly the sub-attribute of a value path's `parent`.
fn leaf(rt: &ResourceType, e: &AttrExp, parent: Option<&AttrPath>) -> Compiled {
    let path = exp_path(e);
    let full = match parent {
        Some(p) => AttrPath {
            uri: p.uri.clone(),
            name: p.name.clone(),
            sub_attr: Some(path.name.clone()),
        },
        None => path.clone(),
    };
    let Some(Target::Attr { ext, attr, sub }) = resolve(rt, &full) else {
        return Compiled::residue();
    };
    // A comparison on a complex attribute compares its `value`.
    let sub = match sub {
        None if attr.kind == AttrType::Complex => match attr.sub("value") {
            Some(v) => Some(v),
            None => return Compiled::residue(),
        },
        other => other,
    };
    let leaf_def = sub.unwrap_or(attr);
    let (op, operand) = match e {
        AttrExp::Present(_) => (None, &CompValue::Null),
        AttrExp::Comparison(_, op, v) => (Some(op.clone()), v),
    };
    if ext.is_none() {
        let name = match sub {
            Some(s) => format!("{}.{}", attr.name, s.name),
            None => attr.name.clone(),
        };
        match name.as_str() {
            "id" => return column(Column::Id, op, operand),
            "meta.created" => return time_column(Column::Created, op, operand),
            "meta.lastModified" => return time_column(Column::LastModified, op, operand),
            "meta.resourceType" => {
                // The same for every resource of the type.
                let m = compare(leaf_def, e, Some(&Value::String(rt.name.into())));
                return Compiled::exact(if m { Pred::True } else { Pred::False });
            }
            "members.value" if rt.is_group() && leaf_def.case_exact => {
                return membership(Pred::HasMember, op, operand);
            }
            "groups.value" if !rt.is_group() && leaf_def.case_exact => {
                return membership(Pred::MemberOf, op, operand);
            }
            n if INDEXED.contains(&n) => {
                return indexed(&n.to_ascii_lowercase(), leaf_def, op, operand);
            }
            _ => {}
        }
    }
    if attr.kind == AttrType::Boolean && !attr.multi_valued && sub.is_none() {
        let mut path: Vec<String> = ext.map(|x| x.id.clone()).into_iter().collect();
        path.push(attr.name.clone());
        return boolean(path, op, operand);
    }
    Compiled::residue()
}

/// The SQL sort key for `sortBy`, when the database can order by it: a
/// column, or a singular indexed attribute (its index value is the folded
/// value the evaluator compares; values beyond the index's 512 bytes tie
/// and fall back to creation order).
pub fn sort_column(key: &SortKey<'_>) -> Option<SortBy> {
    match key.core_path()?.as_str() {
        "id" => Some(SortBy::Column(Column::Id)),
        "meta.created" => Some(SortBy::Column(Column::Created)),
        "meta.lastModified" => Some(SortBy::Column(Column::LastModified)),
        n @ ("userName" | "displayName" | "externalId") if INDEXED.contains(&n) => {
            Some(SortBy::Index(n.to_ascii_lowercase()))
        }
        _ => None,
    }
}

/// `op` against `attr_index` values of `attr`.
fn indexed(attr: &str, def: &AttrDef, op: Option<CompareOp>, operand: &CompValue) -> Compiled {
    let index = |test: Test| Pred::Index {
        attr: attr.to_string(),
        test,
    };
    let Some(op) = op else {
        return Compiled::exact(index(Test::Anything));
    };
    let CompValue::Str(raw) = operand else {
        return Compiled::residue();
    };
    let v = if def.case_exact {
        raw.clone()
    } else {
        raw.to_lowercase()
    };
    let long_value = Test::AtLeastBytes(EXACT_BYTES + 1);
    if v.len() > EXACT_BYTES {
        // Only a long value can match a long operand; `eq`/`sw` also need
        // the operand's first bytes in the (cut) value.
        let mut head = EXACT_BYTES - 8;
        while !v.is_char_boundary(head) {
            head -= 1;
        }
        let over = match op {
            CompareOp::Eq | CompareOp::Sw => index(Test::Prefix(v[..head].to_string())),
            CompareOp::Co | CompareOp::Ew => index(long_value),
            _ => index(Test::Anything),
        };
        let c = Compiled {
            over,
            under: Pred::False,
        };
        return match op {
            CompareOp::Ne => Compiled {
                over: Pred::True,
                under: Pred::negate(index(Test::Prefix(v[..head].to_string()))),
            },
            _ => c,
        };
    }
    let exact = |t: Test| Compiled::exact(index(t));
    match op {
        CompareOp::Eq => exact(Test::Eq(v)),
        CompareOp::Ne => exact(Test::Eq(v)).negate(),
        CompareOp::Gt => exact(Test::Gt(v)),
        CompareOp::Ge => exact(Test::Ge(v)),
        CompareOp::Lt => exact(Test::Lt(v)),
        CompareOp::Le => exact(Test::Le(v)),
        CompareOp::Sw => exact(Test::Prefix(v)),
        // A cut value that contains the operand came from one that does;
        // a cut value may have lost where the operand was.
        CompareOp::Co => Compiled {
            over: index(Test::Any(vec![Test::Contains(v.clone()), long_value])),
            under: index(Test::Contains(v)),
        },
        CompareOp::Ew => Compiled {
            over: index(Test::Any(vec![Test::Suffix(v.clone()), long_value.clone()])),
            under: index(Test::All(vec![
                Test::Suffix(v),
                Test::Not(Box::new(long_value)),
            ])),
        },
    }
}

/// `op` against a case-exact, always present text column.
fn column(c: Column, op: Option<CompareOp>, operand: &CompValue) -> Compiled {
    let Some(op) = op else {
        return Compiled::exact(Pred::True);
    };
    let CompValue::Str(v) = operand else {
        return Compiled::residue();
    };
    let v = v.clone();
    let col = |test: Test| Compiled::exact(Pred::Column { column: c, test });
    match op {
        CompareOp::Eq => col(Test::Eq(v)),
        CompareOp::Ne => col(Test::Eq(v)).negate(),
        CompareOp::Gt => col(Test::Gt(v)),
        CompareOp::Ge => col(Test::Ge(v)),
        CompareOp::Lt => col(Test::Lt(v)),
        CompareOp::Le => col(Test::Le(v)),
        CompareOp::Sw if v.is_empty() => Compiled::exact(Pred::True),
        CompareOp::Sw => col(Test::Prefix(v)),
        CompareOp::Co => col(Test::Contains(v)),
        CompareOp::Ew => col(Test::Suffix(v)),
    }
}

/// `op` against a stored timestamp column, as instants.
fn time_column(c: Column, op: Option<CompareOp>, operand: &CompValue) -> Compiled {
    let Some(op) = op else {
        return Compiled::exact(Pred::True);
    };
    let CompValue::Str(text) = operand else {
        return Compiled::residue();
    };
    let Some(t) = parse_time(text) else {
        // The evaluator finds no order: only `ne` holds.
        return Compiled::exact(if op == CompareOp::Ne {
            Pred::True
        } else {
            Pred::False
        });
    };
    let t = t.with_timezone(&Utc);
    if !(1000..=9999).contains(&t.year()) {
        return Compiled::residue(); // outside the fixed-width text format
    }
    // Stored times have milliseconds: an operand between two of them.
    let between = t.nanosecond() % 1_000_000 != 0;
    let ms = crate::format::timestamp(t);
    let col = |test: Test| Compiled::exact(Pred::Column { column: c, test });
    match op {
        CompareOp::Eq if between => Compiled::exact(Pred::False),
        CompareOp::Eq => col(Test::Eq(ms)),
        CompareOp::Ne if between => Compiled::exact(Pred::True),
        CompareOp::Ne => col(Test::Eq(ms)).negate(),
        CompareOp::Gt => col(Test::Gt(ms)),
        CompareOp::Ge if between => col(Test::Gt(ms)),
        CompareOp::Ge => col(Test::Ge(ms)),
        CompareOp::Lt if between => col(Test::Le(ms)),
        CompareOp::Lt => col(Test::Lt(ms)),
        CompareOp::Le => col(Test::Le(ms)),
        // Text matching on the stored form: rare, left to the evaluator.
        CompareOp::Co | CompareOp::Sw | CompareOp::Ew => Compiled::residue(),
    }
}

/// `eq`/`ne`/`pr` on a membership id.
fn membership(
    make: fn(Option<String>) -> Pred,
    op: Option<CompareOp>,
    operand: &CompValue,
) -> Compiled {
    match (op, operand) {
        (None, _) => Compiled::exact(make(None)),
        (Some(CompareOp::Eq), CompValue::Str(v)) => Compiled::exact(make(Some(v.clone()))),
        (Some(CompareOp::Ne), CompValue::Str(v)) => Compiled::exact(make(Some(v.clone()))).negate(),
        _ => Compiled::residue(),
    }
}

/// `eq`/`ne`/`pr` on a singular boolean in the stored document.
fn boolean(path: Vec<String>, op: Option<CompareOp>, operand: &CompValue) -> Compiled {
    let is = |value: bool| Pred::JsonBool {
        path: path.clone(),
        value,
    };
    let Some(op) = op else {
        return Compiled::exact(Pred::or(vec![is(true), is(false)]));
    };
    let wanted = match operand {
        CompValue::True => Some(true),
        CompValue::False => Some(false),
        CompValue::Str(s) if s.eq_ignore_ascii_case("true") => Some(true),
        CompValue::Str(s) if s.eq_ignore_ascii_case("false") => Some(false),
        CompValue::Str(_) => None,
        _ => return Compiled::residue(),
    };
    match (op, wanted) {
        (CompareOp::Eq, Some(b)) => Compiled::exact(is(b)),
        (CompareOp::Ne, Some(b)) => Compiled::exact(is(b)).negate(),
        // No order between a boolean and other text: only `ne` holds.
        (CompareOp::Eq, None) => Compiled::exact(Pred::False),
        (CompareOp::Ne, None) => Compiled::exact(Pred::True),
        _ => Compiled::residue(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ScimSettings;
    use crate::scim::filter::{check, parse};
    use crate::scim::schema::Registry;

    fn c(f: &str) -> Compiled {
        let reg = Registry::load(&ScimSettings::default()).unwrap();
        let rt = if f.contains("members") {
            &reg.group
        } else {
            &reg.user
        };
        let filter = parse(f).unwrap();
        check(rt, &filter).unwrap();
        compile(rt, &filter)
    }

    fn idx(attr: &str, test: Test) -> Pred {
        Pred::Index {
            attr: attr.into(),
            test,
        }
    }

    #[test]
    fn indexed_comparisons_are_exact_and_fold_case_by_schema() {
        assert_eq!(
            c(r#"userName eq "BJensen""#),
            Compiled::exact(idx("username", Test::Eq("bjensen".into())))
        );
        assert_eq!(
            c(r#"externalId eq "AbC""#),
            Compiled::exact(idx("externalid", Test::Eq("AbC".into())))
        );
        assert_eq!(
            c(r#"emails eq "A@x""#),
            Compiled::exact(idx("emails.value", Test::Eq("a@x".into())))
        );
        assert_eq!(
            c(r#"not (userName sw "A")"#),
            Compiled::exact(Pred::negate(idx("username", Test::Prefix("a".into()))))
        );
        assert_eq!(
            c("displayName pr"),
            Compiled::exact(idx("displayname", Test::Anything))
        );
        for f in [
            r#"userName gt "a" and userName le "m""#,
            r#"userName ne "a" or externalId lt "b""#,
            r#"emails[value sw "a" or value eq "b"]"#,
            r#"meta.lastModified gt "2026-01-01T00:00:00Z""#,
            r#"id eq "x" or meta.created le "2026-01-01T00:00:00.5Z""#,
            r#"active eq false"#,
            r#"not (active ne "True")"#,
            r#"members eq "u1" and not (members.value eq "u2")"#,
            r#"groups pr"#,
            r#"meta.resourceType eq "user""#,
        ] {
            assert!(c(f).is_exact(), "{f}: {:?}", c(f));
        }
    }

    #[test]
    fn what_sql_cannot_decide_is_left_to_the_evaluator_but_narrowed() {
        assert_eq!(c(r#"title eq "x""#), Compiled::residue());
        assert_eq!(
            c(
                r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber eq "1""#
            ),
            Compiled::residue()
        );
        // Same element: the index has no `type`.
        let vp = c(r#"emails[type eq "work"].value eq "A@x""#);
        assert_eq!(vp.over, idx("emails.value", Test::Eq("a@x".into())));
        assert_eq!(vp.under, Pred::False);
        // `and` keeps what narrows, `or` with an open branch does not narrow.
        let and = c(r#"title eq "b" and userName eq "a""#);
        assert_eq!(and.over, idx("username", Test::Eq("a".into())));
        assert_eq!(and.under, Pred::False);
        let or = c(r#"title eq "b" or userName eq "a""#);
        assert_eq!(or.over, Pred::True);
        assert_eq!(or.under, idx("username", Test::Eq("a".into())));
        // `not` swaps the bounds.
        let not = c(r#"not (title eq "b" or userName eq "a")"#);
        assert_eq!(
            not.over,
            Pred::negate(idx("username", Test::Eq("a".into())))
        );
        assert_eq!(not.under, Pred::False);
        // A contained operand may sit beyond the cut of a long value.
        assert!(!c(r#"userName co "x""#).is_exact());
        // An operand longer than the index keeps only its head.
        let long = format!(r#"userName eq "{}""#, "a".repeat(600));
        assert_eq!(c(&long).under, Pred::False);
        assert_eq!(
            c(&long).over,
            idx("username", Test::Prefix("a".repeat(EXACT_BYTES - 8)))
        );
    }

    #[test]
    fn times_compare_as_instants_at_millisecond_precision() {
        let col = |test: Test| {
            Compiled::exact(Pred::Column {
                column: Column::LastModified,
                test,
            })
        };
        assert_eq!(
            c(r#"meta.lastModified gt "2026-01-02T11:00:00+02:00""#),
            col(Test::Gt("2026-01-02T09:00:00.000Z".into()))
        );
        assert_eq!(
            c(r#"meta.lastModified ge "2026-01-02T09:00:00.0005Z""#),
            col(Test::Gt("2026-01-02T09:00:00.000Z".into()))
        );
        // A value that is no time is refused before planning (400)…
        let reg = Registry::load(&ScimSettings::default()).unwrap();
        let bad = parse(r#"meta.lastModified eq "yesterday""#).unwrap();
        assert!(check(&reg.user, &bad).is_err());
        // …and would plan to nothing if it got here.
        assert_eq!(compile(&reg.user, &bad), Compiled::exact(Pred::False));
    }
}
