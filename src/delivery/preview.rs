//! Preview: what a configuration (apps, scopes, mappings, rules) would do
//! to every app, computed with the same decision the workers use against
//! the current identities and the state last applied to each app, without
//! performing anything.

use std::collections::BTreeMap;

use chrono::Utc;
use serde::Serialize;
use serde_json::Value;

use super::converge::{Plan, is_active as active};
use super::decide::decide;
use crate::lifecycle::Apps;
use crate::scim::schema::Registry;
use crate::store::{self, AnyConnection, StoreError};

/// One operation a configuration would cause.
#[derive(Debug, Clone, Serialize)]
pub struct PreviewOp {
    /// `create`, `update`, `disable`, `enable` or `delete`.
    pub op: &'static str,
    /// The identity.
    pub id: String,
    /// Its userName / displayName, when it still exists.
    pub name: Option<String>,
    /// Why.
    pub reason: String,
    /// Account attributes that would change (for updates).
    pub changes: Vec<String>,
    /// Grants it would add and revoke, as `rule/entitlement`.
    pub grants_added: Vec<String>,
    /// Grants it would revoke.
    pub grants_revoked: Vec<String>,
}

/// The operations per app, and counts by kind.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AppPreview {
    /// Count per operation kind.
    pub counts: BTreeMap<&'static str, usize>,
    /// The operations.
    pub operations: Vec<PreviewOp>,
}

fn changed_keys(before: &Value, after: &Value) -> Vec<String> {
    let (Some(b), Some(a)) = (before.as_object(), after.as_object()) else {
        return Vec::new();
    };
    let mut keys: Vec<String> = a
        .iter()
        .filter(|(k, v)| b.get(*k) != Some(v))
        .map(|(k, _)| k.clone())
        .chain(b.keys().filter(|k| !a.contains_key(*k)).cloned())
        .collect();
    keys.sort();
    keys
}

/// Computes the preview of `apps` over every identity of their tenants and
/// every account they hold.
pub fn preview(
    conn: &mut AnyConnection,
    reg: &Registry,
    apps: &Apps,
) -> Result<BTreeMap<String, AppPreview>, StoreError> {
    let now = Utc::now();
    let mut out = BTreeMap::new();
    for policy in apps.all().filter(|p| p.pushes) {
        let mut ids: Vec<String> = Vec::new();
        for kind in ["User", "Group"] {
            if kind == "Group" && !policy.groups {
                continue;
            }
            let mut offset = 0;
            loop {
                let page = store::find_resources_page(conn, &policy.tenant, kind, offset, 1000)?;
                offset += page.len() as i64;
                let done = page.len() < 1000;
                ids.extend(page.into_iter().map(|r| r.id));
                if done {
                    break;
                }
            }
        }
        let mut after: Option<String> = None;
        loop {
            let page = store::list_accounts(conn, &policy.name, after.as_deref(), 1000)?;
            let Some(last) = page.last() else { break };
            after = Some(last.resource_id.clone());
            ids.extend(page.into_iter().map(|a| a.resource_id));
        }
        ids.sort();
        ids.dedup();
        let mut app = AppPreview::default();
        for id in ids {
            let d = decide(conn, reg, policy, &policy.tenant, &id, now)?;
            let (op, changes) = match &d.plan {
                Plan::Noop => continue,
                Plan::Create { .. } => ("create", Vec::new()),
                Plan::Update { before, after, .. } => (
                    match (active(before), active(after)) {
                        (true, false) => "disable",
                        (false, true) => "enable",
                        _ => "update",
                    },
                    changed_keys(before, after),
                ),
                Plan::Delete { .. } => ("delete", Vec::new()),
            };
            *app.counts.entry(op).or_default() += 1;
            let label = |g: &store::grants::GrantRow| format!("{}/{}", g.rule, g.entitlement);
            app.operations.push(PreviewOp {
                op,
                id,
                name: d.display,
                reason: d.reason,
                changes,
                grants_added: d.grants.added.iter().map(label).collect(),
                grants_revoked: d.grants.revoked.iter().map(|(g, _)| label(g)).collect(),
            });
        }
        out.insert(policy.name.clone(), app);
    }
    Ok(out)
}
