//! The converge decision: from the identity as it is now and the account as
//! last applied to the app, the one operation (if any) that makes them agree.

use serde_json::{Map, Value};

use crate::config::LeaveAction;
use crate::domain::Kind;
use crate::lifecycle::AppPolicy;
use crate::store::AccountRow;

/// What to do for one (app, identity).
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// Already converged.
    Noop,
    /// Create the account.
    Create {
        /// User or Group.
        kind: Kind,
        /// The account.
        account: Value,
    },
    /// Change the account.
    Update {
        /// User or Group.
        kind: Kind,
        /// The app's id.
        remote_id: String,
        /// As last applied.
        before: Value,
        /// As it should be.
        after: Value,
    },
    /// Delete the account.
    Delete {
        /// User or Group.
        kind: Kind,
        /// The app's id.
        remote_id: String,
        /// As last applied.
        before: Value,
    },
}

impl Plan {
    /// Whether carrying it out takes access away: a delete, or an update
    /// that disables an active account. The safety net counts these.
    pub fn deprovisions(&self) -> bool {
        match self {
            Plan::Delete { .. } => true,
            Plan::Update { before, after, .. } => is_active(before) && !is_active(after),
            _ => false,
        }
    }
}

/// Whether an account is enabled: `active` absent counts as enabled.
pub fn is_active(account: &Value) -> bool {
    account
        .get("active")
        .and_then(Value::as_bool)
        .unwrap_or(true)
}

fn kind_of(resource_type: &str) -> Kind {
    if resource_type == "Group" {
        Kind::Group
    } else {
        Kind::User
    }
}

/// What the identity should have in the app.
#[derive(Debug, Clone, PartialEq)]
pub enum Want {
    /// This account.
    Account(Map<String, Value>),
    /// No access (out of scope, no rule): the app's `on_leave` decides.
    NoAccess,
    /// A leaver: the account, if any, disabled.
    Disable,
    /// No account at all (identity deleted, grace period over).
    Delete,
}

/// Decides the operation from what is wanted and what was last applied.
pub fn plan(
    policy: &AppPolicy,
    kind: Option<Kind>,
    want: Want,
    account: Option<&AccountRow>,
) -> Plan {
    let applied = account.map(|a| {
        (
            a,
            serde_json::from_str::<Value>(&a.applied).unwrap_or(Value::Null),
        )
    });
    let Some((row, before)) = applied else {
        return match want {
            Want::Account(d) => Plan::Create {
                kind: kind.unwrap_or(Kind::User),
                account: Value::Object(d),
            },
            _ => Plan::Noop,
        };
    };
    let kind = kind_of(&row.resource_type);
    let Some(remote_id) = row.remote_id.clone() else {
        // Applied without an id: nothing to change there; create afresh.
        return match want {
            Want::Account(d) => Plan::Create {
                kind,
                account: Value::Object(d),
            },
            _ => Plan::Noop,
        };
    };
    // Disabling also takes every entitlement away: a disabled account
    // keeps nothing that no rule grants.
    let disable = |before: Value| {
        let mut after = before.clone();
        if let Some(o) = after.as_object_mut() {
            o.insert("active".into(), Value::Bool(false));
            if kind == Kind::User {
                o.remove(&policy.entitlements_attribute);
            }
        }
        if after == before {
            Plan::Noop
        } else {
            Plan::Update {
                kind,
                remote_id: remote_id.clone(),
                before,
                after,
            }
        }
    };
    match want {
        Want::Account(d) => {
            let after = Value::Object(d);
            if before == after {
                Plan::Noop
            } else {
                Plan::Update {
                    kind,
                    remote_id,
                    before,
                    after,
                }
            }
        }
        Want::Delete => Plan::Delete {
            kind,
            remote_id,
            before,
        },
        Want::NoAccess if kind == Kind::Group || policy.on_leave == LeaveAction::Delete => {
            Plan::Delete {
                kind,
                remote_id,
                before,
            }
        }
        Want::NoAccess | Want::Disable => disable(before),
    }
}
