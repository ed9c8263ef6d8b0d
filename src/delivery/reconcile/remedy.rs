//! Remediation of a reconciliation's findings, each action audited:
//!
//! - an orphan nobody's record points to is disabled (`active` false, its
//!   entitlements gone) or deleted through the adapter, as the app's
//!   `on_leave` says (`reconcile.disable` / `reconcile.delete`); one whose
//!   identity still has a record is left to the engine (`reconcile.reconverge`);
//! - a missing account: a stale record is forgotten, then the identity is
//!   enqueued, so the engine creates the account (`reconcile.reconverge`);
//! - a drifted account: the record takes the values found in the app for
//!   the drifted attributes, then the identity is enqueued, so the engine's
//!   ordinary diff sends exactly the corrections (`reconcile.reconverge`).
//!
//! Orphan actions count against the app's safety net: when there are more
//! than it allows, none is taken and the orphans are reported as held.

use std::sync::Arc;

use serde_json::{Value, json};

use super::{Report, audit};
use crate::adapters::paths::set_at;
use crate::adapters::{Adapter, OpContext};
use crate::config::LeaveAction;
use crate::domain::Kind;
use crate::lifecycle::AppPolicy;
use crate::store::jobs;
use crate::store::{self, Db, StoreError};

fn kind_of(name: &str) -> Kind {
    if name == "Group" {
        Kind::Group
    } else {
        Kind::User
    }
}

/// Enqueues `id` in the app (forgetting its stale record first, or
/// rewriting its record's drifted attributes), with one audit row.
async fn reconverge(
    db: &Db,
    policy: &Arc<AppPolicy>,
    actor: &str,
    id: &str,
    forget: bool,
    as_found: Option<(String, Vec<(String, Value)>)>,
    detail: Value,
) -> Result<(), StoreError> {
    let event = audit(
        policy,
        actor,
        "reconcile.reconverge",
        Some(id),
        "success".into(),
        detail,
    );
    let (app, tenant, id) = (policy.name.clone(), policy.tenant.clone(), id.to_string());
    db.write(move |conn| {
        let now = event.at.clone();
        if forget {
            store::delete_account(conn, &app, &id)?;
        }
        if let Some((remote_id, found)) = as_found
            && let Some(mut row) = store::find_account(conn, &app, &id)?
            && row.remote_id.as_deref() == Some(remote_id.as_str())
        {
            let mut applied = serde_json::from_str::<Value>(&row.applied).unwrap_or(json!({}));
            if let Some(obj) = applied.as_object_mut() {
                for (path, value) in found {
                    set_at(obj, &path, value);
                }
            }
            row.applied = applied.to_string();
            store::save_account(conn, &row)?;
        }
        jobs::enqueue(conn, &tenant, std::slice::from_ref(&app), &[id], &now)?;
        store::insert_audit(conn, &event)
    })
    .await
}

/// Carries out the report's findings, recording what was done in each.
pub(super) async fn remediate(
    db: &Db,
    policy: &Arc<AppPolicy>,
    adapter: &dyn Adapter,
    actor: &str,
    report: &mut Report,
) -> Result<(), StoreError> {
    let app = policy.name.clone();
    let acting = report.orphans.iter().filter(|o| !o.linked).count() as u64;
    let held = if policy.safety.armed() && acting > 0 {
        let a = app.clone();
        let accounts = db.run(move |c| store::count_accounts(c, &a)).await?;
        let limit = policy.safety.limit(accounts.max(0) as u64);
        (acting > limit)
            .then(|| format!("held: {acting} orphans exceed the safety limit of {limit}"))
    } else {
        None
    };
    for o in &mut report.orphans {
        if o.linked {
            let id = o.identity.clone().unwrap_or_default();
            let detail =
                json!({ "finding": "orphan", "remote_id": o.remote_id, "reason": o.reason });
            reconverge(db, policy, actor, &id, false, None, detail).await?;
            o.action = Some("reconverge queued".into());
            report.counts.remediated += 1;
            continue;
        }
        if let Some(h) = &held {
            o.action = Some(h.clone());
            report.counts.failed += 1;
            continue;
        }
        let kind = kind_of(o.kind);
        let delete = policy.on_leave == LeaveAction::Delete || kind == Kind::Group;
        if !delete && !o.active {
            o.action = Some("none: already disabled".into());
            continue;
        }
        let ctx = OpContext {
            app: app.clone(),
            identity: o
                .identity
                .clone()
                .or_else(|| o.key.clone())
                .unwrap_or_else(|| o.remote_id.clone()),
            kind,
            revision: 0,
            in_doubt: false,
        };
        let (op, result) = if delete {
            (
                "delete",
                adapter.delete(&ctx, &o.remote_id, &o.attributes).await,
            )
        } else {
            let mut after = o.attributes.clone();
            if let Some(obj) = after.as_object_mut() {
                obj.insert("active".into(), Value::Bool(false));
                obj.remove(&policy.entitlements_attribute);
            }
            (
                "disable",
                adapter
                    .update(&ctx, &o.remote_id, &o.attributes, &after)
                    .await,
            )
        };
        let mut detail = json!({
            "remote_id": o.remote_id, "key": o.key, "name": o.name, "reason": o.reason,
        });
        let outcome = match &result {
            Ok(_) => {
                report.counts.remediated += 1;
                o.action = Some(if delete { "deleted" } else { "disabled" }.into());
                "success".to_string()
            }
            Err(e) => {
                report.counts.failed += 1;
                detail["error"] = json!(e.message);
                o.action = Some(format!("failed: {e}"));
                format!("failure: {}", e.message)
            }
        };
        let event = audit(
            policy,
            actor,
            &format!("reconcile.{op}"),
            o.identity.as_deref(),
            outcome,
            detail,
        );
        db.write(move |conn| store::insert_audit(conn, &event))
            .await?;
    }
    for m in &mut report.missing {
        let detail =
            json!({ "finding": "missing", "reason": m.reason, "stale_record": m.stale_record });
        reconverge(db, policy, actor, &m.identity, m.stale_record, None, detail).await?;
        m.action = Some("reconverge queued".into());
        report.counts.remediated += 1;
    }
    for d in &mut report.drifted {
        let names: Vec<&str> = d.attributes.iter().map(|a| a.attribute.as_str()).collect();
        let detail = json!({ "finding": "drift", "remote_id": d.remote_id, "attributes": names });
        let found = d.linked.then(|| {
            let values = d
                .attributes
                .iter()
                .map(|a| (a.attribute.clone(), a.actual.clone()))
                .collect();
            (d.remote_id.clone(), values)
        });
        reconverge(db, policy, actor, &d.identity, false, found, detail).await?;
        d.action = Some("reconverge queued".into());
        report.counts.remediated += 1;
    }
    Ok(())
}
