//! Filter planning: which resources a filter can possibly match, found
//! through the attribute index and the membership table instead of a scan.
//!
//! ```text
//!  filter ──plan──▶ Candidates::Ids(set) ──load rows──▶ evaluator (exact semantics)
//!                   Candidates::All     ──scan type──▶ evaluator
//! ```
//! A plan only ever over-approximates: the in-memory evaluator decides, so a
//! plan can be coarse but never wrong. `and` intersects what it can narrow,
//! `or` unions only when every branch narrows, `not` does not narrow.

use std::collections::HashSet;

use scim_v2::filter::{AttrExp, AttrPath, CompValue, CompareOp, Filter, ValFilter};

use super::index::{INDEXED, index_value};
use super::schema::ResourceType;
use crate::store::{self, AnyConnection, StoreError};

/// Ids a filter can match, or every resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Candidates {
    /// No narrowing: every resource of the type.
    All,
    /// Only these ids can match.
    Ids(HashSet<String>),
}

/// One index probe.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Probe {
    Eq(String, String),
    Prefix(String, String),
    Present(String),
    Id(String),
    GroupWithMember(String),
}

/// The plan tree: probes combined by and/or.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Plan {
    All,
    Probe(Probe),
    And(Vec<Plan>),
    Or(Vec<Plan>),
}

/// Plans a filter and runs its probes.
pub fn candidates(
    conn: &mut AnyConnection,
    tenant: &str,
    rt: &ResourceType,
    filter: &Filter,
) -> Result<Candidates, StoreError> {
    run(conn, tenant, rt.name, &plan(rt, filter))
}

fn run(
    conn: &mut AnyConnection,
    tenant: &str,
    kind: &str,
    plan: &Plan,
) -> Result<Candidates, StoreError> {
    Ok(match plan {
        Plan::All => Candidates::All,
        Plan::Probe(p) => Candidates::Ids(
            match p {
                Probe::Eq(attr, v) => store::find_ids_by_index(conn, tenant, kind, attr, v)?,
                Probe::Prefix(attr, v) => {
                    store::find_ids_by_index_prefix(conn, tenant, kind, attr, v)?
                }
                Probe::Present(attr) => store::find_ids_with_attr(conn, tenant, kind, attr)?,
                Probe::Id(id) => vec![id.clone()],
                Probe::GroupWithMember(m) => store::find_group_ids_with_member(conn, tenant, m)?,
            }
            .into_iter()
            .collect(),
        ),
        Plan::And(items) => {
            let mut acc: Option<HashSet<String>> = None;
            for item in items {
                if let Candidates::Ids(ids) = run(conn, tenant, kind, item)? {
                    acc = Some(match acc {
                        None => ids,
                        Some(a) => a.intersection(&ids).cloned().collect(),
                    });
                    if acc.as_ref().is_some_and(HashSet::is_empty) {
                        break;
                    }
                }
            }
            acc.map_or(Candidates::All, Candidates::Ids)
        }
        Plan::Or(items) => {
            let mut acc = HashSet::new();
            for item in items {
                match run(conn, tenant, kind, item)? {
                    Candidates::Ids(ids) => acc.extend(ids),
                    Candidates::All => return Ok(Candidates::All),
                }
            }
            Candidates::Ids(acc)
        }
    })
}

fn plan(rt: &ResourceType, filter: &Filter) -> Plan {
    match filter {
        Filter::Attr(e) => attr_plan(rt, e, None),
        Filter::ValuePath(vp) => val_plan(rt, &vp.attr, &vp.filter),
        Filter::Not(_) => Plan::All,
        Filter::And(items) => simplify_and(items.iter().map(|i| plan(rt, i)).collect()),
        Filter::Or(items) => simplify_or(items.iter().map(|i| plan(rt, i)).collect()),
    }
}

fn val_plan(rt: &ResourceType, parent: &AttrPath, f: &ValFilter) -> Plan {
    match f {
        ValFilter::Attr(e) => attr_plan(rt, e, Some(parent)),
        ValFilter::Not(_) => Plan::All,
        ValFilter::And(items) => {
            simplify_and(items.iter().map(|i| val_plan(rt, parent, i)).collect())
        }
        ValFilter::Or(items) => {
            simplify_or(items.iter().map(|i| val_plan(rt, parent, i)).collect())
        }
    }
}

fn simplify_and(items: Vec<Plan>) -> Plan {
    let narrowing: Vec<Plan> = items.into_iter().filter(|p| *p != Plan::All).collect();
    if narrowing.is_empty() {
        Plan::All
    } else {
        Plan::And(narrowing)
    }
}

fn simplify_or(items: Vec<Plan>) -> Plan {
    if items.contains(&Plan::All) {
        Plan::All
    } else {
        Plan::Or(items)
    }
}

/// `attr op value`, possibly inside `parent[...]`.
fn attr_plan(rt: &ResourceType, e: &AttrExp, parent: Option<&AttrPath>) -> Plan {
    let path = match e {
        AttrExp::Present(p) | AttrExp::Comparison(p, _, _) => p,
    };
    let full = match parent {
        Some(par) => AttrPath {
            uri: par.uri.clone(),
            name: par.name.clone(),
            sub_attr: Some(path.name.clone()),
        },
        None => path.clone(),
    };
    let Some(r) = rt.resolve(full.uri.as_deref(), &full.name, full.sub_attr.as_deref()) else {
        return Plan::All;
    };
    if r.extension.is_some() {
        return Plan::All;
    }
    let name = match r.sub {
        Some(s) => format!("{}.{}", r.attr.name, s.name),
        None => r.attr.name.clone(),
    };
    let leaf = r.sub.unwrap_or(r.attr);
    match (name.as_str(), e) {
        ("id", AttrExp::Comparison(_, CompareOp::Eq, CompValue::Str(v))) => {
            Plan::Probe(Probe::Id(v.clone()))
        }
        ("members.value" | "members", AttrExp::Comparison(_, CompareOp::Eq, CompValue::Str(v)))
            if rt.is_group() =>
        {
            Plan::Probe(Probe::GroupWithMember(v.clone()))
        }
        (n, AttrExp::Comparison(_, CompareOp::Eq, CompValue::Str(v))) if INDEXED.contains(&n) => {
            Plan::Probe(Probe::Eq(n.to_ascii_lowercase(), index_value(leaf, v)))
        }
        (n, AttrExp::Comparison(_, CompareOp::Sw, CompValue::Str(v))) if INDEXED.contains(&n) => {
            Plan::Probe(Probe::Prefix(n.to_ascii_lowercase(), index_value(leaf, v)))
        }
        (n, AttrExp::Present(_)) if INDEXED.contains(&n) => {
            Plan::Probe(Probe::Present(n.to_ascii_lowercase()))
        }
        _ => Plan::All,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ScimSettings;
    use crate::scim::filter::parse;
    use crate::scim::schema::Registry;

    fn p(f: &str) -> Plan {
        let reg = Registry::load(&ScimSettings::default()).unwrap();
        let rt = if f.contains("members") {
            &reg.group
        } else {
            &reg.user
        };
        plan(rt, &parse(f).unwrap())
    }

    #[test]
    fn plans_narrow_only_where_the_index_can() {
        let eq = |a: &str, v: &str| Plan::Probe(Probe::Eq(a.into(), v.into()));
        assert_eq!(p(r#"userName eq "BJensen""#), eq("username", "bjensen"));
        assert_eq!(p(r#"externalId eq "AbC""#), eq("externalid", "AbC"));
        assert_eq!(
            p(r#"emails[type eq "work"].value eq "A@x""#),
            Plan::And(vec![eq("emails.value", "a@x")])
        );
        assert_eq!(
            p(r#"userName sw "bj""#),
            Plan::Probe(Probe::Prefix("username".into(), "bj".into()))
        );
        assert_eq!(p(r#"title eq "x""#), Plan::All);
        assert_eq!(p(r#"not (userName eq "x")"#), Plan::All);
        assert_eq!(p(r#"userName eq "a" or title eq "b""#), Plan::All);
        assert_eq!(
            p(r#"userName eq "a" or userName eq "b""#),
            Plan::Or(vec![eq("username", "a"), eq("username", "b")])
        );
        assert_eq!(
            p(r#"title eq "b" and userName eq "a""#),
            Plan::And(vec![eq("username", "a")])
        );
        assert_eq!(
            p(r#"id eq "g1" and members[value eq "u1"]"#),
            Plan::And(vec![
                Plan::Probe(Probe::Id("g1".into())),
                Plan::Probe(Probe::GroupWithMember("u1".into()))
            ])
        );
    }
}
