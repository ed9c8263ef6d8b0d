//! Lifecycle policy: which identities an app gets, and what their accounts
//! look like there. The delivery engine asks this module for the desired
//! account of an identity; app-scoped pull reads the same answer.
//!
//! Scopes use the SCIM filter language and the same evaluator as queries.

pub mod grants;
pub mod mapping;
pub mod report;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use scim_v2::filter::{Filter, PatchPath};
use serde_json::{Map, Value, json};

use crate::config::{
    AdapterSettings, AppSettings, LeaveAction, LifecycleSettings, RuleSettings, parse_duration,
};
use crate::domain::Kind;
use crate::scim::filter;
use crate::scim::schema::{Registry, ResourceType};
pub use mapping::Mapping;

/// The SCIM core User schema URN.
pub const USER_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
/// The SCIM core Group schema URN.
pub const GROUP_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";

/// One app's policy, compiled from configuration.
#[derive(Debug)]
pub struct AppPolicy {
    /// The app's name.
    pub name: String,
    /// The tenant it draws identities from.
    pub tenant: String,
    /// Which users get an account (all when `None`).
    pub scope: Option<Filter>,
    /// Whether groups are provisioned.
    pub groups: bool,
    /// Which groups (all when `None`).
    pub group_scope: Option<Filter>,
    /// What happens when a user leaves the scope.
    pub on_leave: LeaveAction,
    /// User → account mapping.
    pub mapping: Mapping,
    /// Whether the app has a push adapter (pull-only apps have none).
    pub pushes: bool,
    /// The rules that grant this app; none means the scope alone decides.
    pub rules: Vec<Rule>,
    /// Account attribute carrying the entitlements.
    pub entitlements_attribute: String,
    /// Grace period before a leaver's disabled account is deleted.
    pub delete_after: Option<Duration>,
    /// The mass-deprovisioning safety net.
    pub safety: Safety,
    /// HR end date attribute (from `[lifecycle]`).
    pub end_date: Option<PatchPath>,
}

/// A compiled rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Its name.
    pub name: String,
    /// Its condition.
    pub when: Filter,
    /// Entitlements it grants.
    pub entitlements: Vec<String>,
    /// How long its grants last.
    pub duration: Option<Duration>,
    /// Attribute with its grants' end date.
    pub expires_attribute: Option<PatchPath>,
}

/// The safety net against mass deprovisioning.
#[derive(Debug, Clone)]
pub struct Safety {
    /// Most deprovisions within `window`.
    pub max: Option<u64>,
    /// Most deprovisions within `window`, as a share of the app's accounts.
    pub share: Option<f64>,
    /// The window.
    pub window: Duration,
}

impl Safety {
    /// Whether the net is configured at all.
    pub fn armed(&self) -> bool {
        self.max.is_some() || self.share.is_some()
    }

    /// The most deprovisions allowed in a window for an app with `accounts` accounts.
    pub fn limit(&self, accounts: u64) -> u64 {
        let by_share = self
            .share
            .map(|s| (s * accounts as f64).floor().max(1.0) as u64);
        match (self.max, by_share) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) => a,
            (None, Some(b)) => b,
            (None, None) => u64::MAX,
        }
    }
}

/// What the policy wants for one user in one app.
#[derive(Debug, Clone, PartialEq)]
pub enum Wanted {
    /// A leaver (inactive, or past the end date): disabled everywhere.
    Leaver(&'static str),
    /// These grants (entitlement `""` is the account itself); none = no access.
    Grants(Vec<WantedGrant>),
}

/// A grant the rules want.
#[derive(Debug, Clone, PartialEq)]
pub struct WantedGrant {
    /// The entitlement, `""` for the account.
    pub entitlement: String,
    /// The rule.
    pub rule: String,
    /// Its lifetime from when it is first granted.
    pub duration: Option<Duration>,
    /// Its fixed end (from an attribute).
    pub ends: Option<DateTime<Utc>>,
}

/// The rule name recorded for access that an app's scope alone grants.
pub const SCOPE_RULE: &str = "app-scope";

/// Reads a date attribute (RFC 3339) from a rendered resource.
fn date_at(rt: &ResourceType, path: &PatchPath, doc: &Map<String, Value>) -> Option<DateTime<Utc>> {
    let v = mapping::read_path(rt, path, &Value::Object(doc.clone()))?;
    let s = v.as_str()?;
    filter::parse_time(s).map(|t| t.with_timezone(&Utc))
}

fn compile_path(rt: &ResourceType, s: &str, what: &str) -> anyhow::Result<PatchPath> {
    mapping::parse_source(rt, s).with_context(|| what.to_string())
}

fn compile_filter(rt: &ResourceType, text: &str, what: &str) -> anyhow::Result<Filter> {
    let f = filter::parse(text).map_err(|e| anyhow::anyhow!("{what}: {}", e.detail()))?;
    filter::check(rt, &f).map_err(|e| anyhow::anyhow!("{what}: {}", e.detail()))?;
    Ok(f)
}

impl AppPolicy {
    /// Compiles an app's scope filters, mapping and rules against the schemas.
    pub fn compile(
        reg: &Registry,
        app: &AppSettings,
        rules: &[RuleSettings],
        lifecycle: &LifecycleSettings,
    ) -> anyhow::Result<Self> {
        anyhow::ensure!(
            !app.name.is_empty()
                && app
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
            "app name '{}' must be non-empty letters, digits, '-' or '_'",
            app.name
        );
        let scope = app
            .scope
            .as_deref()
            .map(|s| compile_filter(&reg.user, s, "scope"))
            .transpose()?;
        let group_scope = app
            .group_scope
            .as_deref()
            .map(|s| compile_filter(&reg.group, s, "group_scope"))
            .transpose()?;
        let mapping = Mapping::compile(&reg.user, &app.mapping).context("mapping")?;
        let mut compiled = Vec::new();
        for r in rules.iter().filter(|r| r.app == app.name) {
            compiled.push(Rule {
                name: r.name.clone(),
                when: compile_filter(&reg.user, &r.when, &format!("rule {}", r.name))?,
                entitlements: r.entitlements.clone(),
                duration: r
                    .duration
                    .as_deref()
                    .map(parse_duration)
                    .transpose()
                    .with_context(|| format!("rule {}", r.name))?,
                expires_attribute: r
                    .expires_attribute
                    .as_deref()
                    .map(|p| compile_path(&reg.user, p, &format!("rule {}", r.name)))
                    .transpose()?,
            });
        }
        let window = match app.safety.window.as_deref() {
            Some(w) => parse_duration(w).context("safety.window")?,
            None => Duration::from_secs(3600),
        };
        if let Some(share) = app.safety.max_deprovision_share {
            anyhow::ensure!(
                share > 0.0 && share <= 1.0,
                "safety.max_deprovision_share must be in (0, 1]"
            );
        }
        Ok(Self {
            name: app.name.clone(),
            tenant: app.tenant.clone(),
            scope,
            groups: app.groups,
            group_scope,
            on_leave: app.on_leave,
            mapping,
            pushes: !matches!(app.adapter, AdapterSettings::None),
            rules: compiled,
            entitlements_attribute: app
                .entitlements_attribute
                .clone()
                .unwrap_or_else(|| "entitlements".into()),
            delete_after: app
                .delete_after
                .as_deref()
                .map(parse_duration)
                .transpose()
                .context("delete_after")?,
            safety: Safety {
                max: app.safety.max_deprovisions,
                share: app.safety.max_deprovision_share,
                window,
            },
            end_date: lifecycle
                .end_date_attribute
                .as_deref()
                .map(|p| compile_path(&reg.user, p, "lifecycle.end_date_attribute"))
                .transpose()?,
        })
    }

    /// What the policy wants for a rendered user: leaver, or the grants of
    /// every rule that matches (the scope must match too).
    pub fn wanted(&self, reg: &Registry, doc: &Map<String, Value>, now: DateTime<Utc>) -> Wanted {
        if doc.get("active").and_then(Value::as_bool) == Some(false) {
            return Wanted::Leaver("leaver: active is false");
        }
        if let Some(p) = &self.end_date
            && date_at(&reg.user, p, doc).is_some_and(|end| end <= now)
        {
            return Wanted::Leaver("leaver: end date passed");
        }
        if !self.in_scope(reg, Kind::User, doc) {
            return Wanted::Grants(Vec::new());
        }
        if self.rules.is_empty() {
            return Wanted::Grants(vec![WantedGrant {
                entitlement: String::new(),
                rule: SCOPE_RULE.into(),
                duration: None,
                ends: None,
            }]);
        }
        let value = Value::Object(doc.clone());
        let mut out = Vec::new();
        for r in self
            .rules
            .iter()
            .filter(|r| filter::matches(&reg.user, &r.when, &value))
        {
            let ends = r
                .expires_attribute
                .as_ref()
                .and_then(|p| date_at(&reg.user, p, doc));
            for ent in std::iter::once("").chain(r.entitlements.iter().map(String::as_str)) {
                out.push(WantedGrant {
                    entitlement: ent.to_string(),
                    rule: r.name.clone(),
                    duration: r.duration,
                    ends,
                });
            }
        }
        Wanted::Grants(out)
    }

    /// When the end date of a user comes, if the app knows one.
    pub fn end_date_of(&self, reg: &Registry, doc: &Map<String, Value>) -> Option<DateTime<Utc>> {
        self.end_date
            .as_ref()
            .and_then(|p| date_at(&reg.user, p, doc))
    }

    /// Adds the granted entitlements to a user's account.
    pub fn with_entitlements(
        &self,
        mut account: Map<String, Value>,
        ents: &[String],
    ) -> Map<String, Value> {
        if !ents.is_empty() {
            let list: Vec<Value> = ents.iter().map(|e| json!({ "value": e })).collect();
            account.insert(self.entitlements_attribute.clone(), Value::Array(list));
        }
        account
    }

    /// Whether rendering or judging an identity for this app needs a
    /// user's `groups`: its scope, its mapping or one of its rules reads them.
    pub fn needs_groups(&self) -> bool {
        let reads = |f: &Filter| filter::mentions(f, "groups");
        self.scope.as_ref().is_some_and(reads)
            || self.mapping.reads("groups")
            || self.rules.iter().any(|r| {
                reads(&r.when)
                    || r.expires_attribute.as_ref().is_some_and(|p| {
                        let attr = match p {
                            PatchPath::Attr(a) => a,
                            PatchPath::Value(vp) => &vp.attr,
                        };
                        attr.name.eq_ignore_ascii_case("groups")
                    })
            })
    }

    /// Whether a rendered identity belongs in this app.
    pub fn in_scope(&self, reg: &Registry, kind: Kind, doc: &Map<String, Value>) -> bool {
        let (rt, scope) = match kind {
            Kind::User => (&reg.user, &self.scope),
            Kind::Group if self.groups => (&reg.group, &self.group_scope),
            Kind::Group => return false,
        };
        scope
            .as_ref()
            .is_none_or(|f| filter::matches(rt, f, &Value::Object(doc.clone())))
    }

    /// The account a rendered user should have in the app. `externalId` is
    /// the gateway's id, unless the mapping sets it: the gateway is the
    /// app's provisioning client, so its id is the app's external id.
    pub fn user_account(&self, reg: &Registry, doc: &Map<String, Value>) -> Map<String, Value> {
        let mut body = self.mapping.apply(&reg.user, doc);
        if !body.contains_key("externalId")
            && let Some(id) = doc.get("id")
        {
            body.insert("externalId".into(), id.clone());
        }
        let mut schemas = vec![Value::String(USER_URN.into())];
        schemas.extend(
            body.keys()
                .filter(|k| k.starts_with("urn:"))
                .map(|k| Value::String(k.clone())),
        );
        let mut out = Map::with_capacity(body.len() + 1);
        out.insert("schemas".into(), Value::Array(schemas));
        out.extend(body);
        out
    }

    /// The account a rendered group should have: its name, the gateway id
    /// as `externalId`, and the members that have accounts in the app, by
    /// their ids there (sorted, so equal sets compare equal).
    pub fn group_account(
        &self,
        doc: &Map<String, Value>,
        mut member_remote_ids: Vec<String>,
    ) -> Map<String, Value> {
        member_remote_ids.sort();
        member_remote_ids.dedup();
        let members: Vec<Value> = member_remote_ids
            .into_iter()
            .map(|v| json!({ "value": v }))
            .collect();
        let mut out = Map::new();
        out.insert("schemas".into(), json!([GROUP_URN]));
        if let Some(d) = doc.get("displayName") {
            out.insert("displayName".into(), d.clone());
        }
        if let Some(id) = doc.get("id") {
            out.insert("externalId".into(), id.clone());
        }
        out.insert("members".into(), Value::Array(members));
        out
    }
}

/// Every configured app, by name and by tenant.
#[derive(Debug, Default)]
pub struct Apps {
    by_name: HashMap<String, Arc<AppPolicy>>,
    pushing_by_tenant: HashMap<String, Vec<String>>,
    order: Vec<String>,
}

impl Apps {
    /// Compiles every app and rule; names must be unique and every rule
    /// must name a configured app.
    pub fn compile(
        reg: &Registry,
        apps: &[AppSettings],
        rules: &[RuleSettings],
        lifecycle: &LifecycleSettings,
    ) -> anyhow::Result<Self> {
        let mut names = std::collections::HashSet::new();
        for r in rules {
            anyhow::ensure!(names.insert(&r.name), "rule {} is configured twice", r.name);
            anyhow::ensure!(
                apps.iter().any(|a| a.name == r.app),
                "rule {} grants app {}, which is not configured",
                r.name,
                r.app
            );
        }
        let mut out = Apps::default();
        for app in apps {
            let policy = AppPolicy::compile(reg, app, rules, lifecycle)
                .with_context(|| format!("app {}", app.name))?;
            anyhow::ensure!(
                !out.by_name.contains_key(&policy.name),
                "app {} is configured twice",
                policy.name
            );
            if policy.pushes {
                out.pushing_by_tenant
                    .entry(policy.tenant.clone())
                    .or_default()
                    .push(policy.name.clone());
            }
            out.order.push(policy.name.clone());
            out.by_name.insert(policy.name.clone(), Arc::new(policy));
        }
        Ok(out)
    }

    /// An app by name.
    pub fn get(&self, name: &str) -> Option<&Arc<AppPolicy>> {
        self.by_name.get(name)
    }

    /// Apps that push, fed by a tenant's changes.
    pub fn pushing(&self, tenant: &str) -> &[String] {
        self.pushing_by_tenant
            .get(tenant)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// Every app, in configuration order.
    pub fn all(&self) -> impl Iterator<Item = &Arc<AppPolicy>> {
        self.order.iter().filter_map(|n| self.by_name.get(n))
    }
}
