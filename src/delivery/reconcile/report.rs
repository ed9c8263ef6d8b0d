//! The report of a reconciliation: its findings, their counts, and the
//! CSV form (one line per orphan, missing account and drifted attribute).

use serde::Serialize;
use serde_json::Value;

use super::drift::AttributeDrift;
use crate::format::csv_report_field as csv_field;

/// An account in the app that no identity should have.
#[derive(Debug, Clone, Serialize)]
pub struct Orphan {
    /// `User` or `Group`.
    pub kind: &'static str,
    /// The app's id for the account.
    pub remote_id: String,
    /// Its correlation key, when it has one.
    pub key: Option<String>,
    /// The identity it belonged to, when one is known.
    pub identity: Option<String>,
    /// Its userName / displayName in the app.
    pub name: Option<String>,
    /// Whether it is enabled in the app.
    pub active: bool,
    /// Why it is an orphan.
    pub reason: String,
    /// What remediation did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// The identity has an app_accounts row: the engine converges it.
    #[serde(skip)]
    pub(super) linked: bool,
    #[serde(skip)]
    pub(super) attributes: Value,
}

/// An identity that should have an account and has none in the app.
#[derive(Debug, Clone, Serialize)]
pub struct Missing {
    /// `User` or `Group`.
    pub kind: &'static str,
    /// The identity.
    pub identity: String,
    /// Its userName / displayName.
    pub name: Option<String>,
    /// Why it should have one.
    pub reason: String,
    /// The gateway's record says the account was applied (it is stale).
    pub stale_record: bool,
    /// What remediation did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
}

/// An account whose managed attributes differ from what the gateway wants.
#[derive(Debug, Clone, Serialize)]
pub struct Drifted {
    /// `User` or `Group`.
    pub kind: &'static str,
    /// The identity.
    pub identity: String,
    /// The app's id for the account.
    pub remote_id: String,
    /// Its userName / displayName.
    pub name: Option<String>,
    /// The attributes that differ.
    pub attributes: Vec<AttributeDrift>,
    /// What remediation did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// The identity's app_accounts row is for this account.
    #[serde(skip)]
    pub(super) linked: bool,
}

/// How many of each.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Counts {
    /// Accounts the app listed.
    pub listed: usize,
    /// Orphaned accounts.
    pub orphans: usize,
    /// Missing accounts.
    pub missing: usize,
    /// Drifted accounts.
    pub drifted: usize,
    /// Remediation actions that succeeded (disable, delete, re-converge).
    pub remediated: usize,
    /// Remediation actions that failed or were held.
    pub failed: usize,
}

/// The outcome of one reconciliation.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The app.
    pub app: String,
    /// Whether findings were remediated (false: a dry run).
    pub remediate: bool,
    /// When it started and finished (RFC 3339).
    pub started_at: String,
    /// When it finished.
    pub finished_at: String,
    /// Counts.
    pub counts: Counts,
    /// Orphaned accounts.
    pub orphans: Vec<Orphan>,
    /// Identities without their account.
    pub missing: Vec<Missing>,
    /// Accounts with drifted attributes.
    pub drifted: Vec<Drifted>,
}

fn csv_value(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl Report {
    /// The findings as CSV (RFC 4180, with a header): one line per orphan,
    /// per missing account and per drifted attribute.
    pub fn to_csv(&self) -> String {
        let mut out =
            String::from("kind,identity,remote_id,attribute,desired,actual,reason,action\n");
        let mut line = |fields: [&str; 8]| {
            let f: Vec<String> = fields.iter().map(|s| csv_field(s)).collect();
            out.push_str(&f.join(","));
            out.push('\n');
        };
        for o in &self.orphans {
            let who = o.identity.as_deref().or(o.key.as_deref()).unwrap_or("");
            let action = o.action.as_deref().unwrap_or("");
            line(["orphan", who, &o.remote_id, "", "", "", &o.reason, action]);
        }
        for m in &self.missing {
            let action = m.action.as_deref().unwrap_or("");
            line(["missing", &m.identity, "", "", "", "", &m.reason, action]);
        }
        for d in &self.drifted {
            let action = d.action.as_deref().unwrap_or("");
            for a in &d.attributes {
                let mut why = Vec::new();
                if !a.missing.is_empty() {
                    why.push(format!("missing: {}", a.missing.join("; ")));
                }
                if !a.surplus.is_empty() {
                    why.push(format!("surplus: {}", a.surplus.join("; ")));
                }
                let (desired, actual) = (csv_value(&a.desired), csv_value(&a.actual));
                let why = why.join(", ");
                line([
                    "drifted",
                    &d.identity,
                    &d.remote_id,
                    &a.attribute,
                    &desired,
                    &actual,
                    &why,
                    action,
                ]);
            }
        }
        out
    }
}
