//! Reconciliation: compares what an app really holds (its adapter's
//! listing) with what the gateway wants it to hold (the same decision the
//! workers use), reports the differences, and on request repairs them.
//!
//! ```text
//!  adapter.list, a page at a time ─▶ match each account to an identity:
//!      its app id in app_accounts, else its key (externalId = gateway id)
//!        ├ no live identity, or no access ─▶ orphan
//!        └ identity ─▶ decide() ─▶ desired account ─ drift::compare ─▶ drifted
//!  identities, 1000 at a time, not met in the listing
//!        └ decide() wants an account ─▶ missing (app_accounts may be stale)
//!  remediate (after both passes, so a listing never pages over its own changes):
//!        orphans ─▶ adapter disable / delete per on_leave   (reconcile.disable / .delete)
//!        missing, drifted ─▶ fix app_accounts, enqueue a job (reconcile.reconverge)
//! ```
//!
//! Memory: a page of accounts or identities at a time, plus the report's
//! findings and one set of identity ids met in the listing (a string per
//! matched account, about 5 MB for 100,000 accounts). Listings come in
//! remote-id or position order, identities in creation order, so no merge
//! of the two streams avoids that set; keeping it beats a scratch table.
//!
//! A reconciliation is a snapshot: an identity that changes while it runs
//! may be reported although the engine is converging it. Remediation of
//! missing and drifted accounts only corrects the gateway's record and
//! enqueues the identity, so a false finding costs one idempotent
//! convergence. Orphans are acted on directly, under the app's safety net.

pub mod drift;
mod remedy;
mod report;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::converge::Plan;
use super::decide::decide;
use crate::adapters::{Adapter, AdapterError, RemoteAccount};
use crate::domain::Kind;
use crate::format::timestamp as fmt_time;
use crate::lifecycle::AppPolicy;
use crate::scim::schema::Registry;
use crate::store::{self, AnyConnection, AuditEvent, Db, StoreError, account_status};

pub use drift::AttributeDrift;
pub use report::{Counts, Drifted, Missing, Orphan, Report};

/// The adapters of the configured apps that push, by app name, for
/// reconciliations started outside the engine (admin API, CLI).
#[derive(Clone, Default)]
pub struct AppAdapters(Arc<HashMap<String, Arc<dyn Adapter>>>);

impl AppAdapters {
    /// Wraps the built adapters.
    pub fn new(adapters: HashMap<String, Arc<dyn Adapter>>) -> Self {
        Self(Arc::new(adapters))
    }

    /// The adapter of `app`, when it pushes.
    pub fn get(&self, app: &str) -> Option<Arc<dyn Adapter>> {
        self.0.get(app).cloned()
    }
}

/// Accounts asked of the adapter per listing call.
const LIST_PAGE: usize = 500;
/// Identities read per page in the identity pass.
const IDENTITY_PAGE: i64 = 1000;

/// Why a reconciliation could not run.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// The app's adapter cannot list its accounts (webhook, file, none).
    #[error("app {0} cannot be reconciled: its adapter cannot list accounts")]
    Unsupported(String),
    /// Listing the app's accounts failed.
    #[error("listing the app's accounts failed: {0}")]
    Adapter(AdapterError),
    /// The gateway's store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn is_active(v: &Value) -> bool {
    match v.get("active") {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => !s.eq_ignore_ascii_case("false"),
        _ => true,
    }
}

/// Reconciles one app: lists its accounts through `adapter`, matches them
/// to `policy`'s identities, and reports orphans, missing and drifted
/// accounts. A dry run (`remediate` false) changes nothing but the audit
/// trail (one `reconcile.run` row); with `remediate` each finding is
/// repaired and audited. `actor` names who asked (`admin/<token>`,
/// `system/reconcile`, `cli`). Callers wake the app's workers afterwards
/// to converge what was enqueued at once (they also poll).
pub async fn reconcile(
    db: &Db,
    registry: &Arc<Registry>,
    policy: &Arc<AppPolicy>,
    adapter: &dyn Adapter,
    remediate: bool,
    actor: &str,
) -> Result<Report, ReconcileError> {
    if !adapter.can_list() {
        return Err(ReconcileError::Unsupported(policy.name.clone()));
    }
    let started = Utc::now();
    let mut report = Report {
        app: policy.name.clone(),
        remediate,
        started_at: fmt_time(started),
        finished_at: String::new(),
        counts: Counts::default(),
        orphans: Vec::new(),
        missing: Vec::new(),
        drifted: Vec::new(),
    };
    let scanned = scan(db, registry, policy, adapter, started, &mut report).await;
    if let Err(e) = scanned {
        let detail = json!({ "remediate": remediate, "error": e.to_string() });
        let event = audit(
            policy,
            actor,
            "reconcile.run",
            None,
            format!("failure: {e}"),
            detail,
        );
        db.write(move |conn| store::insert_audit(conn, &event))
            .await?;
        return Err(e);
    }
    if remediate {
        remedy::remediate(db, policy, adapter, actor, &mut report).await?;
    }
    report.counts.orphans = report.orphans.len();
    report.counts.missing = report.missing.len();
    report.counts.drifted = report.drifted.len();
    report.finished_at = fmt_time(Utc::now());
    let detail = json!({ "remediate": remediate, "counts": report.counts });
    let event = audit(
        policy,
        actor,
        "reconcile.run",
        None,
        "success".into(),
        detail,
    );
    db.write(move |conn| store::insert_audit(conn, &event))
        .await?;
    Ok(report)
}

/// Both passes: the app's listing, then the identities it did not list.
async fn scan(
    db: &Db,
    registry: &Arc<Registry>,
    policy: &Arc<AppPolicy>,
    adapter: &dyn Adapter,
    now: DateTime<Utc>,
    report: &mut Report,
) -> Result<(), ReconcileError> {
    let kinds: &[Kind] = if policy.groups {
        &[Kind::User, Kind::Group]
    } else {
        &[Kind::User]
    };
    let listed: Option<Arc<[String]>> = adapter.listed_paths().map(Arc::from);
    let mut seen: HashSet<String> = HashSet::new();
    for &kind in kinds {
        let mut after: Option<String> = None;
        loop {
            let page = adapter
                .list(kind, after.as_deref(), LIST_PAGE)
                .await
                .map_err(ReconcileError::Adapter)?;
            let last = page.len() < LIST_PAGE;
            after = adapter.next_cursor(after.as_deref(), &page);
            report.counts.listed += page.len();
            let (reg, pol, paths) = (registry.clone(), policy.clone(), listed.clone());
            let found = db
                .run(move |conn| match_page(conn, &reg, &pol, kind, page, paths.as_deref(), now))
                .await?;
            seen.extend(found.seen);
            report.orphans.extend(found.orphans);
            report.drifted.extend(found.drifted);
            if last || after.is_none() {
                break;
            }
        }
    }
    let seen = Arc::new(seen);
    for &kind in kinds {
        let mut offset = 0;
        loop {
            let (reg, pol, seen) = (registry.clone(), policy.clone(), seen.clone());
            let (n, missing) = db
                .run(move |conn| missing_in_page(conn, &reg, &pol, kind, offset, &seen, now))
                .await?;
            report.missing.extend(missing);
            offset += n;
            if n < IDENTITY_PAGE {
                break;
            }
        }
    }
    Ok(())
}

/// What one listing page holds.
struct PageFindings {
    orphans: Vec<Orphan>,
    drifted: Vec<Drifted>,
    /// Identities whose account was listed.
    seen: Vec<String>,
}

fn account_name(attrs: &Value) -> Option<String> {
    attrs
        .get("userName")
        .or_else(|| attrs.get("displayName"))
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// Matches one listing page to identities and compares each account.
fn match_page(
    conn: &mut AnyConnection,
    reg: &Registry,
    policy: &AppPolicy,
    kind: Kind,
    page: Vec<RemoteAccount>,
    listed: Option<&[String]>,
    now: DateTime<Utc>,
) -> Result<PageFindings, StoreError> {
    let ids: Vec<String> = page.iter().map(|a| a.remote_id.clone()).collect();
    let by_remote: HashMap<String, String> =
        store::find_accounts_by_remote_ids(conn, &policy.name, &ids)?
            .into_iter()
            .filter_map(|row| Some((row.remote_id?, row.resource_id)))
            .collect();
    let candidates: Vec<String> = page
        .iter()
        .filter_map(|a| by_remote.get(&a.remote_id).or(a.key.as_ref()).cloned())
        .collect();
    let live: HashSet<String> = store::find_kinds(conn, &policy.tenant, &candidates)?
        .into_iter()
        .filter(|(_, t)| t == kind.name())
        .map(|(id, _)| id)
        .collect();
    let mut out = PageFindings {
        orphans: Vec::new(),
        drifted: Vec::new(),
        seen: Vec::new(),
    };
    for account in page {
        let linked_id = by_remote.get(&account.remote_id).cloned();
        let identity = linked_id.clone().or_else(|| account.key.clone());
        let orphan = |identity: Option<String>, reason: String, linked: bool| Orphan {
            kind: kind.name(),
            remote_id: account.remote_id.clone(),
            key: account.key.clone(),
            identity,
            name: account_name(&account.attributes),
            active: is_active(&account.attributes),
            reason,
            action: None,
            linked,
            attributes: account.attributes.clone(),
        };
        let Some(id) = identity.filter(|id| live.contains(id)) else {
            let reason = match (&linked_id, &account.key) {
                (Some(_), _) => "identity deleted",
                (None, Some(_)) => "no identity has this key",
                (None, None) => "account without a correlation key",
            };
            out.orphans.push(orphan(
                linked_id.clone(),
                reason.into(),
                linked_id.is_some(),
            ));
            continue;
        };
        let d = decide(conn, reg, policy, &policy.tenant, &id, now)?;
        let own_remote = d.account.as_ref().and_then(|a| a.remote_id.clone());
        if linked_id.is_none()
            && let Some(other) = own_remote.as_ref().filter(|r| **r != account.remote_id)
        {
            let reason = format!("a second account for the identity (its account is {other})");
            out.orphans.push(orphan(Some(id), reason, false));
            continue;
        }
        let desired = match &d.plan {
            Plan::Create { account, .. } => Some(account.clone()),
            Plan::Update { after, .. } => Some(after.clone()),
            Plan::Noop => d
                .account
                .as_ref()
                .and_then(|a| serde_json::from_str::<Value>(&a.applied).ok()),
            Plan::Delete { .. } => None,
        };
        let Some(desired) = desired else {
            out.orphans
                .push(orphan(Some(id), d.reason.clone(), d.account.is_some()));
            continue;
        };
        out.seen.push(id.clone());
        let attributes = drift::compare(
            &desired,
            &account.attributes,
            listed,
            &policy.entitlements_attribute,
        );
        if !attributes.is_empty() {
            out.drifted.push(Drifted {
                kind: kind.name(),
                identity: id,
                remote_id: account.remote_id.clone(),
                name: d.display.clone(),
                attributes,
                action: None,
                linked: own_remote.as_deref() == Some(account.remote_id.as_str()),
            });
        }
    }
    Ok(out)
}

/// One page of the tenant's identities of `kind`: those the listing did
/// not show although the policy wants them to have an account. Returns the
/// page's size and the missing ones.
fn missing_in_page(
    conn: &mut AnyConnection,
    reg: &Registry,
    policy: &AppPolicy,
    kind: Kind,
    offset: i64,
    seen: &HashSet<String>,
    now: DateTime<Utc>,
) -> Result<(i64, Vec<Missing>), StoreError> {
    let page =
        store::find_resources_page(conn, &policy.tenant, kind.name(), offset, IDENTITY_PAGE)?;
    let n = page.len() as i64;
    let mut out = Vec::new();
    for row in page.into_iter().filter(|r| !seen.contains(&r.id)) {
        let d = decide(conn, reg, policy, &policy.tenant, &row.id, now)?;
        let applied = d
            .account
            .as_ref()
            .is_some_and(|a| a.remote_id.is_some() && a.status == account_status::ACTIVE);
        let (missing, stale) = match &d.plan {
            Plan::Create { .. } => (true, d.account.is_some()),
            Plan::Update { after, .. } => (is_active(after), true),
            Plan::Noop => (applied, true),
            Plan::Delete { .. } => (false, false),
        };
        if missing {
            out.push(Missing {
                kind: kind.name(),
                identity: row.id,
                name: d.display,
                reason: d.reason,
                stale_record: stale,
                action: None,
            });
        }
    }
    Ok((n, out))
}

/// An audit row of a reconciliation.
fn audit(
    policy: &AppPolicy,
    actor: &str,
    action: &str,
    id: Option<&str>,
    outcome: String,
    detail: Value,
) -> AuditEvent {
    AuditEvent {
        at: fmt_time(Utc::now()),
        tenant: Some(policy.tenant.clone()),
        actor: actor.to_string(),
        action: action.to_string(),
        resource_type: None,
        resource_id: id.map(str::to_string),
        outcome,
        detail: Some(detail.to_string()),
        app: Some(policy.name.clone()),
    }
}
