//! Adapter calls whose outcome is unknown.
//!
//! A call can act in the app and still leave no record: the process dies
//! (kill -9, a lost machine) between the app's answer and the recorder's
//! commit, or the call times out or fails with a 5xx after the app acted.
//! The app then holds the account as last applied, or as any of those calls
//! meant it to be. Converging from the last applied state alone goes wrong
//! as soon as the identity changes before the job runs again, which on
//! several nodes it does while a dead node's lease runs out: a create in
//! flight followed by a delete leaves an orphan, a disable in flight
//! followed by a re-enable is skipped as "nothing to do".
//!
//! So before its calls the worker writes, per job, the state each call is
//! about to apply into the job's `inflight` column ([`Doubt`]); an outcome
//! that is known clears it (a success), or puts back what was there before
//! (a refusal: the app did not act). The next attempt, on whichever node
//! takes the job over, converges from every state the app may be in:
//!
//! ```text
//!  recorded account ─┬─ every possible state is what is wanted ─▶ the plan as it was
//!                    └─ one differs ─▶ update; `before` differs wherever any state does
//!  no account, a create in doubt ─┬─ the same create is wanted ─▶ create again (adopts)
//!                                 └─ otherwise ─▶ Adapter::locate ─┬─ found ─▶ update / delete it
//!                                                                  └─ none  ─▶ create / nothing
//! ```
//!
//! An update in doubt is flagged to the adapter (`OpContext::in_doubt`),
//! which then sends whole values (a SCIM group's members are replaced, not
//! patched by difference).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::converge::Plan;
use crate::domain::Kind;
use crate::store::AccountRow;

/// Most states a job keeps in doubt; beyond, the oldest are forgotten.
const MOST_STATES: usize = 8;

/// What unrecorded calls of one job may have left in the app.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Doubt {
    /// `User` or `Group`: an identity that is gone no longer says.
    kind: String,
    /// The account states the calls applied, oldest first.
    states: Vec<Value>,
}

impl Doubt {
    /// The doubt a job row carries, if any.
    pub fn parse(stored: Option<&str>) -> Option<Self> {
        let d: Self = serde_json::from_str(stored?).ok()?;
        (!d.states.is_empty()).then_some(d)
    }

    /// The stored form.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The resource type the states are of.
    pub fn kind(&self) -> Kind {
        if self.kind == "Group" {
            Kind::Group
        } else {
            Kind::User
        }
    }

    /// The doubt once a call that applies `plan` is under way: its target
    /// joins the states. A delete adds none (a second delete, or a 404 on
    /// the next update, settles it).
    pub fn before_call(prior: Option<&Doubt>, plan: &Plan) -> Option<Doubt> {
        let (kind, target) = match plan {
            Plan::Create { kind, account } => (*kind, account),
            Plan::Update { kind, after, .. } => (*kind, after),
            Plan::Delete { .. } | Plan::Noop => return prior.cloned(),
        };
        let mut states = prior.map(|d| d.states.clone()).unwrap_or_default();
        states.retain(|s| s != target);
        states.push(target.clone());
        let over = states.len().saturating_sub(MOST_STATES);
        states.drain(..over);
        Some(Doubt {
            kind: kind.name().to_string(),
            states,
        })
    }
}

/// A plan adjusted for a doubt.
#[derive(Debug, Clone, PartialEq)]
pub enum Resolved {
    /// Carry this out (`in_doubt`: the app's state is not known exactly).
    Plan { plan: Plan, in_doubt: bool },
    /// No account is recorded, yet a create may have made one: ask the
    /// adapter, then [`located`] gives the plan.
    Locate {
        kind: Kind,
        /// What the app should hold (`None`: no account).
        target: Option<Value>,
        /// The states a create may have left.
        states: Vec<Value>,
    },
}

/// What `plan` aims for: the account the app should hold afterwards
/// (`None`: none).
fn target(plan: &Plan, applied: Option<&Value>) -> Option<Value> {
    match plan {
        Plan::Noop => applied.cloned(),
        Plan::Create { account, .. } => Some(account.clone()),
        Plan::Update { after, .. } => Some(after.clone()),
        Plan::Delete { .. } => None,
    }
}

/// Adjusts the plan made from the recorded account for what unrecorded
/// calls may have left in the app.
pub fn resolve(plan: Plan, account: Option<&AccountRow>, doubt: Option<&Doubt>) -> Resolved {
    let Some(doubt) = doubt else {
        return Resolved::Plan {
            plan,
            in_doubt: false,
        };
    };
    let recorded = account.and_then(|a| {
        let remote_id = a.remote_id.clone()?;
        let applied = serde_json::from_str::<Value>(&a.applied).unwrap_or(Value::Null);
        Some((a, remote_id, applied))
    });
    let Some((row, remote_id, applied)) = recorded else {
        let target = target(&plan, None);
        if let Some(t) = &target
            && doubt.states.iter().all(|s| s == t)
        {
            // The create is made again as it was: the adapters link an
            // account that is already there (a SCIM 409, a row or entry
            // with the key, a webhook event with the same id).
            return Resolved::Plan {
                plan,
                in_doubt: false,
            };
        }
        return Resolved::Locate {
            kind: doubt.kind(),
            target,
            states: doubt.states.clone(),
        };
    };
    let Some(target) = target(&plan, Some(&applied)) else {
        // A delete settles every state (an account already gone is success).
        return Resolved::Plan {
            plan,
            in_doubt: true,
        };
    };
    let mut states: Vec<&Value> = vec![&applied];
    states.extend(&doubt.states);
    if states.iter().all(|s| **s == target) {
        return Resolved::Plan {
            plan,
            in_doubt: false,
        };
    }
    let kind = if row.resource_type == "Group" {
        Kind::Group
    } else {
        Kind::User
    };
    Resolved::Plan {
        plan: Plan::Update {
            kind,
            remote_id,
            before: covering(&states, &target),
            after: target,
        },
        in_doubt: true,
    }
}

/// The plan once the adapter said whether a create in doubt made an
/// account (`remote_id`), and whether it is an update in doubt.
pub fn located(
    kind: Kind,
    remote_id: Option<String>,
    target: Option<Value>,
    states: &[Value],
) -> (Plan, bool) {
    let plan = match (remote_id, target) {
        (None, Some(account)) => Plan::Create { kind, account },
        (None, None) => Plan::Noop,
        (Some(remote_id), None) => Plan::Delete {
            kind,
            remote_id,
            before: states.last().cloned().unwrap_or(Value::Null),
        },
        // It is there as wanted: a create links it (every adapter adopts).
        (Some(_), Some(account)) if states.iter().all(|s| *s == account) => {
            Plan::Create { kind, account }
        }
        (Some(remote_id), Some(after)) => {
            let states: Vec<&Value> = states.iter().collect();
            Plan::Update {
                kind,
                remote_id,
                before: covering(&states, &after),
                after,
            }
        }
    };
    let in_doubt = matches!(plan, Plan::Update { .. });
    (plan, in_doubt)
}

/// A `before` for an update to `target` that differs from it wherever any
/// of `states` does, so a change computed from it covers every state the
/// app may be in: an attribute some state has differently is set, one some
/// state has and the target lacks is removed. Objects are compared member
/// by member.
fn covering(states: &[&Value], target: &Value) -> Value {
    let states: Vec<Option<&Value>> = states.iter().map(|s| Some(*s)).collect();
    cover(&states, Some(target)).unwrap_or(Value::Null)
}

fn cover(states: &[Option<&Value>], target: Option<&Value>) -> Option<Value> {
    let objects = states.iter().all(|s| s.is_none_or(Value::is_object));
    if let (Some(Value::Object(t)), true) = (target, objects) {
        let empty = Map::new();
        let maps: Vec<&Map<String, Value>> = states
            .iter()
            .map(|s| s.and_then(Value::as_object).unwrap_or(&empty))
            .collect();
        let mut keys: Vec<&String> = t.keys().chain(maps.iter().flat_map(|m| m.keys())).collect();
        keys.sort_unstable();
        keys.dedup();
        let mut out = Map::new();
        for k in keys {
            let sub: Vec<Option<&Value>> = maps.iter().map(|m| m.get(k)).collect();
            if let Some(v) = cover(&sub, t.get(k)) {
                out.insert(k.clone(), v);
            }
        }
        return Some(Value::Object(out));
    }
    match states.iter().find(|s| **s != target) {
        Some(s) => s.cloned(),
        None => target.cloned(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::store::account_status;

    fn account(applied: Value, remote_id: Option<&str>) -> AccountRow {
        AccountRow {
            app: "crm".into(),
            resource_id: "u1".into(),
            tenant: "default".into(),
            resource_type: "User".into(),
            remote_id: remote_id.map(str::to_string),
            status: account_status::ACTIVE.into(),
            applied: applied.to_string(),
            revision: 1,
            created_at: "t".into(),
            updated_at: "t".into(),
            disabled_at: None,
        }
    }

    fn doubt(states: Vec<Value>) -> Doubt {
        Doubt {
            kind: "User".into(),
            states,
        }
    }

    #[test]
    fn a_disable_in_doubt_is_not_skipped_when_the_user_is_enabled_again() {
        let applied = json!({"userName": "jo", "active": true});
        let row = account(applied.clone(), Some("r1"));
        let d = doubt(vec![json!({"userName": "jo", "active": false})]);
        // Wanted again as applied: without the doubt, nothing to do.
        let r = resolve(Plan::Noop, Some(&row), Some(&d));
        assert_eq!(
            r,
            Resolved::Plan {
                plan: Plan::Update {
                    kind: Kind::User,
                    remote_id: "r1".into(),
                    before: json!({"userName": "jo", "active": false}),
                    after: applied,
                },
                in_doubt: true,
            }
        );
    }

    #[test]
    fn a_doubt_that_matches_what_is_wanted_changes_nothing() {
        let applied = json!({"userName": "jo"});
        let row = account(applied.clone(), Some("r1"));
        let d = doubt(vec![applied.clone()]);
        assert_eq!(
            resolve(Plan::Noop, Some(&row), Some(&d)),
            Resolved::Plan {
                plan: Plan::Noop,
                in_doubt: false
            }
        );
    }

    #[test]
    fn the_covering_before_differs_wherever_any_state_does() {
        let applied = json!({"userName": "jo", "title": "A",
            "urn:e": {"department": "X", "costCenter": "1"}});
        let in_flight = json!({"userName": "jo", "nickName": "J",
            "urn:e": {"department": "Y"}});
        let target = json!({"userName": "jo", "title": "A",
            "urn:e": {"department": "X", "costCenter": "2"}});
        let before = covering(&[&applied, &in_flight], &target);
        // title: the in-flight state lacks it, so it is set again; nickName
        // is removed; department is set back; costCenter is set.
        assert_eq!(
            before,
            json!({"userName": "jo", "nickName": "J",
                "urn:e": {"department": "Y", "costCenter": "1"}})
        );
        assert!(before.get("title").is_none());
    }

    #[test]
    fn a_create_in_doubt_without_a_record_asks_the_app() {
        let d = doubt(vec![json!({"userName": "jo"})]);
        // The identity was deleted meanwhile: nothing is wanted.
        assert_eq!(
            resolve(Plan::Noop, None, Some(&d)),
            Resolved::Locate {
                kind: Kind::User,
                target: None,
                states: vec![json!({"userName": "jo"})],
            }
        );
        assert_eq!(
            located(Kind::User, Some("r9".into()), None, &d.states),
            (
                Plan::Delete {
                    kind: Kind::User,
                    remote_id: "r9".into(),
                    before: json!({"userName": "jo"}),
                },
                false
            )
        );
        assert_eq!(
            located(Kind::User, None, None, &d.states),
            (Plan::Noop, false)
        );
    }

    #[test]
    fn the_same_create_in_doubt_is_made_again() {
        let account = json!({"userName": "jo"});
        let d = doubt(vec![account.clone()]);
        let plan = Plan::Create {
            kind: Kind::User,
            account,
        };
        assert_eq!(
            resolve(plan.clone(), None, Some(&d)),
            Resolved::Plan {
                plan,
                in_doubt: false
            }
        );
    }

    #[test]
    fn a_renamed_identity_updates_the_account_a_create_in_doubt_made() {
        let states = vec![json!({"userName": "old"})];
        let r = located(
            Kind::User,
            Some("r9".into()),
            Some(json!({"userName": "new"})),
            &states,
        );
        assert_eq!(
            r,
            (
                Plan::Update {
                    kind: Kind::User,
                    remote_id: "r9".into(),
                    before: json!({"userName": "old"}),
                    after: json!({"userName": "new"}),
                },
                true
            )
        );
    }

    #[test]
    fn states_are_bounded_and_a_delete_adds_none() {
        let mut d: Option<Doubt> = None;
        for i in 0..20 {
            d = Doubt::before_call(
                d.as_ref(),
                &Plan::Create {
                    kind: Kind::User,
                    account: json!({ "n": i }),
                },
            );
        }
        let d = d.unwrap();
        assert_eq!(d.states.len(), MOST_STATES);
        assert_eq!(d.states.last(), Some(&json!({"n": 19})));
        let del = Plan::Delete {
            kind: Kind::User,
            remote_id: "r".into(),
            before: json!({}),
        };
        assert_eq!(Doubt::before_call(Some(&d), &del), Some(d.clone()));
        assert_eq!(Doubt::parse(Some(&d.to_json())), Some(d));
    }
}
