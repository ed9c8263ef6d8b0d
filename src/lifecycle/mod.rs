//! Lifecycle policy: which identities an app gets, and what their accounts
//! look like there. The delivery engine asks this module for the desired
//! account of an identity; app-scoped pull reads the same answer.
//!
//! Scopes use the SCIM filter language and the same evaluator as queries.

pub mod mapping;

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::Context;
use scim_v2::filter::Filter;
use serde_json::{Map, Value, json};

use crate::config::{AdapterSettings, AppSettings, LeaveAction};
use crate::scim::filter;
use crate::scim::schema::{Registry, ResourceType};
use crate::scim::service::Kind;
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
}

fn compile_filter(rt: &ResourceType, text: &str, what: &str) -> anyhow::Result<Filter> {
    let f = filter::parse(text).map_err(|e| anyhow::anyhow!("{what}: {}", e.detail()))?;
    filter::check(rt, &f).map_err(|e| anyhow::anyhow!("{what}: {}", e.detail()))?;
    Ok(f)
}

impl AppPolicy {
    /// Compiles an app's scope filters and mapping against the schemas.
    pub fn compile(reg: &Registry, app: &AppSettings) -> anyhow::Result<Self> {
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
        Ok(Self {
            name: app.name.clone(),
            tenant: app.tenant.clone(),
            scope,
            groups: app.groups,
            group_scope,
            on_leave: app.on_leave,
            mapping,
            pushes: !matches!(app.adapter, AdapterSettings::None),
        })
    }

    /// Whether rendering an identity for this app needs a user's `groups`.
    pub fn needs_groups(&self) -> bool {
        self.scope
            .as_ref()
            .is_some_and(|f| filter::mentions(f, "groups"))
            || self.mapping.reads("groups")
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
    /// Compiles every app; names must be unique.
    pub fn compile(reg: &Registry, apps: &[AppSettings]) -> anyhow::Result<Self> {
        let mut out = Apps::default();
        for app in apps {
            let policy =
                AppPolicy::compile(reg, app).with_context(|| format!("app {}", app.name))?;
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
