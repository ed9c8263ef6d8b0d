//! Grant bookkeeping: from what the rules want now and what was granted
//! before, which grants are in force, which are new, which are revoked and
//! which have expired, and when the next expiry comes. Pure: the worker
//! writes the result after the app has been changed.

use chrono::{DateTime, Utc};

use super::{Wanted, WantedGrant};
use crate::format::timestamp as fmt;
use crate::store::grants::GrantRow;

/// Why a grant ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revocation {
    /// Its rule no longer matches (a mover), or the scope no longer does.
    RuleNoLongerMatches,
    /// The identity left (inactive, end date, deleted).
    Leaver,
    /// An already expired grant whose rule stopped matching: housekeeping.
    Cleanup,
}

impl Revocation {
    /// The reason as written in the audit trail.
    pub fn as_str(self) -> &'static str {
        match self {
            Revocation::RuleNoLongerMatches => "rule no longer matches",
            Revocation::Leaver => "leaver",
            Revocation::Cleanup => "expired grant cleaned up",
        }
    }
}

/// The outcome of grant planning.
#[derive(Debug, Clone, Default)]
pub struct GrantPlan {
    /// Grants in force after this convergence (new ones included).
    pub live: Vec<GrantRow>,
    /// Grants to record.
    pub added: Vec<GrantRow>,
    /// Grants to remove, and why.
    pub revoked: Vec<(GrantRow, Revocation)>,
    /// Grants whose time is up (kept, marked expired).
    pub expired: Vec<GrantRow>,
    /// The next time a live grant expires.
    pub next_expiry: Option<DateTime<Utc>>,
}

impl GrantPlan {
    /// Whether the identity has an account in the app.
    pub fn has_access(&self) -> bool {
        self.live.iter().any(|g| g.entitlement.is_empty())
    }

    /// The entitlements in force, sorted, without duplicates.
    pub fn entitlements(&self) -> Vec<String> {
        let mut e: Vec<String> = self
            .live
            .iter()
            .filter(|g| !g.entitlement.is_empty())
            .map(|g| g.entitlement.clone())
            .collect();
        e.sort();
        e.dedup();
        e
    }
}

fn parse(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

fn key(g: &GrantRow) -> (&str, &str) {
    (g.entitlement.as_str(), g.rule.as_str())
}

/// Plans the grants of one identity in one app.
pub fn plan(
    app: &str,
    tenant: &str,
    identity: &str,
    wanted: &Wanted,
    existing: &[GrantRow],
    now: DateTime<Utc>,
) -> GrantPlan {
    let mut out = GrantPlan::default();
    let (want, why): (&[WantedGrant], Revocation) = match wanted {
        Wanted::Leaver(_) => (&[], Revocation::Leaver),
        Wanted::Grants(g) => (g.as_slice(), Revocation::RuleNoLongerMatches),
    };
    let mut note_expiry = |t: DateTime<Utc>| {
        out.next_expiry = Some(out.next_expiry.map_or(t, |n| n.min(t)));
    };
    for w in want {
        match existing
            .iter()
            .find(|g| key(g) == (w.entitlement.as_str(), w.rule.as_str()))
        {
            Some(g) => {
                let ends = g.expires_at.as_deref().and_then(parse);
                if g.expired_at.is_some() {
                    continue; // spent: the rule must stop matching before it grants again
                }
                match ends {
                    Some(t) if t <= now => out.expired.push(g.clone()),
                    Some(t) => {
                        note_expiry(t);
                        out.live.push(g.clone());
                    }
                    None => out.live.push(g.clone()),
                }
            }
            None => {
                let by_duration = w
                    .duration
                    .and_then(|d| chrono::Duration::from_std(d).ok())
                    .and_then(|d| now.checked_add_signed(d));
                let ends = match (w.ends, by_duration) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                if ends.is_some_and(|t| t <= now) {
                    continue; // already over: never granted
                }
                if let Some(t) = ends {
                    note_expiry(t);
                }
                let g = GrantRow {
                    app: app.to_string(),
                    resource_id: identity.to_string(),
                    tenant: tenant.to_string(),
                    entitlement: w.entitlement.clone(),
                    rule: w.rule.clone(),
                    granted_at: fmt(now),
                    expires_at: ends.map(fmt),
                    expired_at: None,
                };
                out.added.push(g.clone());
                out.live.push(g);
            }
        }
    }
    // An entitlement without the account it belongs to is not in force.
    if !out.has_access() {
        out.added.clear();
        out.live.clear();
        out.next_expiry = None;
    }
    for g in existing {
        let wanted_still = want
            .iter()
            .any(|w| (w.entitlement.as_str(), w.rule.as_str()) == key(g));
        if !wanted_still {
            let reason = if g.expired_at.is_some() {
                Revocation::Cleanup
            } else {
                why
            };
            out.revoked.push((g.clone(), reason));
        } else if !out.live.iter().any(|l| key(l) == key(g))
            && !out.expired.iter().any(|e| key(e) == key(g))
            && g.expired_at.is_none()
        {
            // Wanted, but the account itself is not granted any more.
            out.revoked.push((g.clone(), why));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn want(ent: &str, rule: &str, days: Option<u64>) -> WantedGrant {
        WantedGrant {
            entitlement: ent.into(),
            rule: rule.into(),
            duration: days.map(|d| std::time::Duration::from_secs(d * 86_400)),
            ends: None,
        }
    }

    fn t(s: &str) -> DateTime<Utc> {
        parse(s).unwrap()
    }

    #[test]
    fn joiner_gets_grants_with_expiry_and_mover_loses_them() {
        let now = t("2026-01-01T00:00:00Z");
        let w = Wanted::Grants(vec![
            want("", "sales", None),
            want("Sales User", "sales", None),
            want("", "vpn", Some(90)),
        ]);
        let p = plan("crm", "t", "u", &w, &[], now);
        assert!(p.has_access());
        assert_eq!(p.entitlements(), vec!["Sales User"]);
        assert_eq!(p.added.len(), 3);
        assert_eq!(p.next_expiry, Some(t("2026-04-01T00:00:00Z")));
        // Mover: only the vpn rule still matches.
        let later = t("2026-02-01T00:00:00Z");
        let w2 = Wanted::Grants(vec![want("", "vpn", Some(90))]);
        let p2 = plan("crm", "t", "u", &w2, &p.added, later);
        assert!(p2.added.is_empty());
        assert_eq!(p2.revoked.len(), 2);
        assert!(
            p2.revoked
                .iter()
                .all(|(_, r)| *r == Revocation::RuleNoLongerMatches)
        );
        assert!(p2.entitlements().is_empty());
        // Expiry: the vpn grant's time is up; it is not granted again.
        let expired_time = t("2026-04-02T00:00:00Z");
        let p3 = plan("crm", "t", "u", &w2, &p2.live, expired_time);
        assert!(!p3.has_access());
        assert_eq!(p3.expired.len(), 1);
        let mut spent = p3.expired[0].clone();
        spent.expired_at = Some(fmt(expired_time));
        let p4 = plan("crm", "t", "u", &w2, &[spent.clone()], expired_time);
        assert!(!p4.has_access() && p4.added.is_empty() && p4.revoked.is_empty());
        // Once the rule stops matching, the spent grant is cleaned up.
        let p5 = plan(
            "crm",
            "t",
            "u",
            &Wanted::Grants(vec![]),
            &[spent],
            expired_time,
        );
        assert_eq!(p5.revoked[0].1, Revocation::Cleanup);
    }

    #[test]
    fn leavers_lose_everything() {
        let now = t("2026-01-01T00:00:00Z");
        let p = plan(
            "crm",
            "t",
            "u",
            &Wanted::Grants(vec![want("", "r", None)]),
            &[],
            now,
        );
        let q = plan("crm", "t", "u", &Wanted::Leaver("x"), &p.live, now);
        assert!(!q.has_access());
        assert_eq!(q.revoked.len(), 1);
        assert_eq!(q.revoked[0].1, Revocation::Leaver);
    }

    #[test]
    fn an_entitlement_without_the_account_is_not_in_force() {
        let now = t("2026-01-01T00:00:00Z");
        let mut only_ent = want("Admin", "r", None);
        only_ent.entitlement = "Admin".into();
        let p = plan("crm", "t", "u", &Wanted::Grants(vec![only_ent]), &[], now);
        assert!(!p.has_access() && p.live.is_empty() && p.added.is_empty());
    }
}
