//! The converge decision: from the identity as it is now and the account as
//! last applied to the app, the one operation (if any) that makes them agree.

use serde_json::{Map, Value};

use crate::config::LeaveAction;
use crate::lifecycle::AppPolicy;
use crate::scim::service::Kind;
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

fn kind_of(resource_type: &str) -> Kind {
    if resource_type == "Group" {
        Kind::Group
    } else {
        Kind::User
    }
}

/// Decides the operation. `desired` is the account the identity should have
/// (`None` when it is gone or out of scope); `exists` says whether the
/// identity still exists at all.
pub fn plan(
    policy: &AppPolicy,
    kind: Option<Kind>,
    desired: Option<Map<String, Value>>,
    exists: bool,
    account: Option<&AccountRow>,
) -> Plan {
    let applied = account.map(|a| {
        (
            a,
            serde_json::from_str::<Value>(&a.applied).unwrap_or(Value::Null),
        )
    });
    match (desired, applied) {
        (Some(d), None) => Plan::Create {
            kind: kind.unwrap_or(Kind::User),
            account: Value::Object(d),
        },
        (Some(d), Some((row, before))) => {
            let after = Value::Object(d);
            match &row.remote_id {
                _ if before == after => Plan::Noop,
                Some(remote_id) => Plan::Update {
                    kind: kind_of(&row.resource_type),
                    remote_id: remote_id.clone(),
                    before,
                    after,
                },
                // Applied without an id: nothing to update; create afresh.
                None => Plan::Create {
                    kind: kind_of(&row.resource_type),
                    account: after,
                },
            }
        }
        (None, Some((row, before))) => {
            let kind = kind_of(&row.resource_type);
            let Some(remote_id) = row.remote_id.clone() else {
                return Plan::Noop;
            };
            let delete = !exists || kind == Kind::Group || policy.on_leave == LeaveAction::Delete;
            if delete {
                return Plan::Delete {
                    kind,
                    remote_id,
                    before,
                };
            }
            // Out of scope, kept disabled.
            let mut after = before.clone();
            if let Some(o) = after.as_object_mut() {
                o.insert("active".into(), Value::Bool(false));
            }
            if after == before {
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
        (None, None) => Plan::Noop,
    }
}
