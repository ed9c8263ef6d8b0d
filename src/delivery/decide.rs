//! The decision for one (app, identity): read the identity, its grants and
//! its applied account, ask the policy what it should have, and plan the
//! operation. The same function serves the workers and `plan` previews.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::converge::{Plan, Want, plan};
use crate::domain::Kind;
use crate::lifecycle::grants::{self, GrantPlan, Revocation};
use crate::lifecycle::{AppPolicy, Wanted};
use crate::scim::render::{Stored, render};
use crate::scim::schema::Registry;
use crate::store::grants::GrantRow;
use crate::store::{self, AccountRow, AnyConnection, GroupRef, ResourceRow, StoreError};

/// What to do for one (app, identity), and why.
#[derive(Debug, Clone)]
pub struct Decision {
    /// User or Group (`None` when the identity is gone and was never applied).
    pub kind: Option<Kind>,
    /// The operation.
    pub plan: Plan,
    /// Why, in words for the audit trail.
    pub reason: String,
    /// Grant bookkeeping to write once the operation succeeded.
    pub grants: GrantPlan,
    /// When this identity must converge again by itself.
    pub next_due: Option<DateTime<Utc>>,
    /// The account as last applied.
    pub account: Option<AccountRow>,
    /// The identity's userName or displayName, for reports.
    pub display: Option<String>,
}

fn parse(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

fn earliest(a: Option<DateTime<Utc>>, b: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, y) => x.or(y),
    }
}

/// What a decision reads about one identity: fetched one query each by
/// [`decide`], or for a whole claimed batch at once by [`decide_batch`].
#[derive(Default)]
struct Inputs {
    account: Option<AccountRow>,
    grants: Vec<GrantRow>,
    row: Option<ResourceRow>,
    /// The groups of a User, when the app's policy reads them.
    groups: Option<Vec<GroupRef>>,
}

/// Decides for one identity in one app.
pub fn decide(
    conn: &mut AnyConnection,
    reg: &Registry,
    policy: &AppPolicy,
    tenant: &str,
    id: &str,
    now: DateTime<Utc>,
) -> Result<Decision, StoreError> {
    let account = store::find_account(conn, &policy.name, id)?;
    let grants = store::grants::find_grants(conn, &policy.name, id)?;
    let row = store::find_resource_any(conn, tenant, id)?;
    let groups = match &row {
        Some(r) if r.resource_type != "Group" && policy.needs_groups() => {
            Some(store::find_groups_of(conn, std::slice::from_ref(&r.id))?)
        }
        _ => None,
    };
    let inputs = Inputs {
        account,
        grants,
        row,
        groups,
    };
    decide_from(conn, reg, policy, tenant, id, inputs, now)
}

/// Decides for many identities of one app (a claimed batch): the accounts,
/// grants, resources and group memberships are read with one query each
/// for the whole batch instead of one each per identity. `items` are
/// `(tenant, id)` pairs; the decisions come back in their order.
pub fn decide_batch(
    conn: &mut AnyConnection,
    reg: &Registry,
    policy: &AppPolicy,
    items: &[(String, String)],
    now: DateTime<Utc>,
) -> Result<Vec<Decision>, StoreError> {
    let ids: Vec<String> = items.iter().map(|(_, id)| id.clone()).collect();
    let mut inputs: HashMap<&str, Inputs> = HashMap::with_capacity(items.len());
    for (_, id) in items {
        inputs.entry(id.as_str()).or_default();
    }
    for a in store::find_accounts(conn, &policy.name, &ids)? {
        if let Some(i) = inputs.get_mut(a.resource_id.as_str()) {
            i.account = Some(a);
        }
    }
    for g in store::grants::find_grants_of(conn, &policy.name, &ids)? {
        if let Some(i) = inputs.get_mut(g.resource_id.as_str()) {
            i.grants.push(g);
        }
    }
    let mut tenants: Vec<&str> = items.iter().map(|(t, _)| t.as_str()).collect();
    tenants.sort_unstable();
    tenants.dedup();
    for tenant in tenants {
        let wanted: Vec<String> = items
            .iter()
            .filter(|(t, _)| t == tenant)
            .map(|(_, id)| id.clone())
            .collect();
        for r in store::find_resources_by_ids(conn, tenant, None, &wanted)? {
            if let Some(i) = inputs.get_mut(r.id.as_str()) {
                i.row = Some(r);
            }
        }
    }
    if policy.needs_groups() {
        let users: Vec<String> = inputs
            .values()
            .filter_map(|i| i.row.as_ref())
            .filter(|r| r.resource_type != "Group")
            .map(|r| r.id.clone())
            .collect();
        for i in inputs.values_mut() {
            if i.row.as_ref().is_some_and(|r| r.resource_type != "Group") {
                i.groups = Some(Vec::new());
            }
        }
        for g in store::find_groups_of(conn, &users)? {
            if let Some(Some(groups)) = inputs.get_mut(g.member_id.as_str()).map(|i| &mut i.groups)
            {
                groups.push(g);
            }
        }
    }
    items
        .iter()
        .map(|(tenant, id)| {
            let found = inputs.remove(id.as_str()).unwrap_or_default();
            decide_from(conn, reg, policy, tenant, id, found, now)
        })
        .collect()
}

/// The decision from what was read; reads more only for a Group in scope
/// (its members' remote ids).
fn decide_from(
    conn: &mut AnyConnection,
    reg: &Registry,
    policy: &AppPolicy,
    tenant: &str,
    id: &str,
    inputs: Inputs,
    now: DateTime<Utc>,
) -> Result<Decision, StoreError> {
    let Inputs {
        account,
        grants: existing,
        row,
        groups,
    } = inputs;
    let Some(row) = row else {
        let mut grants = grants::plan(
            &policy.name,
            tenant,
            id,
            &Wanted::Leaver("deleted"),
            &existing,
            now,
        );
        for r in &mut grants.revoked {
            if r.1 == Revocation::RuleNoLongerMatches {
                r.1 = Revocation::Leaver;
            }
        }
        let kind = account.as_ref().map(|a| {
            if a.resource_type == "Group" {
                Kind::Group
            } else {
                Kind::User
            }
        });
        return Ok(Decision {
            kind,
            plan: plan(policy, kind, Want::Delete, account.as_ref()),
            reason: "identity deleted".into(),
            grants,
            next_due: None,
            account,
            display: None,
        });
    };
    let display = row.display.clone();
    let kind = if row.resource_type == "Group" {
        Kind::Group
    } else {
        Kind::User
    };
    let rt = match kind {
        Kind::User => &reg.user,
        Kind::Group => &reg.group,
    };
    let stored = Stored {
        row: std::sync::Arc::new(row),
        members: None,
        groups,
    };
    let doc = render(rt, &stored, "");
    if kind == Kind::Group {
        let (want, reason) = if policy.in_scope(reg, kind, &doc) {
            let ids: Vec<String> = store::find_members(conn, &stored.row.id)?
                .into_iter()
                .map(|m| m.member_id)
                .collect();
            let remote = store::find_remote_ids(conn, &policy.name, &ids)?
                .into_iter()
                .map(|(_, r)| r)
                .collect();
            (
                Want::Account(policy.group_account(&doc, remote)),
                "group in scope",
            )
        } else {
            (Want::NoAccess, "group out of scope")
        };
        return Ok(Decision {
            kind: Some(kind),
            plan: plan(policy, Some(kind), want, account.as_ref()),
            reason: reason.into(),
            grants: GrantPlan::default(),
            next_due: None,
            account,
            display,
        });
    }
    let wanted = policy.wanted(reg, &doc, now);
    let grants = grants::plan(&policy.name, tenant, id, &wanted, &existing, now);
    let end_date = policy.end_date_of(reg, &doc).filter(|t| *t > now);
    let (want, reason, due) = match &wanted {
        Wanted::Leaver(why) => match (policy.delete_after, &account) {
            (Some(grace), Some(a)) => {
                let since = a
                    .disabled_at
                    .as_deref()
                    .and_then(parse)
                    .filter(|_| a.status == store::account_status::DISABLED)
                    .unwrap_or(now);
                let ends = chrono::Duration::from_std(grace)
                    .ok()
                    .and_then(|g| since.checked_add_signed(g));
                if ends.is_some_and(|e| e <= now) {
                    (Want::Delete, format!("{why}; grace period over"), None)
                } else {
                    (Want::Disable, why.to_string(), ends)
                }
            }
            _ => (Want::Disable, why.to_string(), None),
        },
        Wanted::Grants(_) if grants.has_access() => {
            let mut rules: Vec<&str> = grants.live.iter().map(|g| g.rule.as_str()).collect();
            rules.sort();
            rules.dedup();
            let account =
                policy.with_entitlements(policy.user_account(reg, &doc), &grants.entitlements());
            (
                Want::Account(account),
                format!("granted by {}", rules.join(", ")),
                end_date,
            )
        }
        Wanted::Grants(w) if w.is_empty() => (
            Want::NoAccess,
            if policy.in_scope(reg, kind, &doc) {
                "no rule grants access".to_string()
            } else {
                "out of the app's scope".to_string()
            },
            end_date,
        ),
        Wanted::Grants(_) => (Want::NoAccess, "access expired".to_string(), end_date),
    };
    Ok(Decision {
        kind: Some(kind),
        plan: plan(policy, Some(kind), want, account.as_ref()),
        reason,
        next_due: earliest(grants.next_expiry, due),
        grants,
        account,
        display,
    })
}
