//! The `ldap` adapter: accounts as entries in an LDAP directory.
//!
//! An account is an entry `<rdn>=<value>,<base_dn>` with the configured
//! object classes and mapped attributes; the correlation key (the account's
//! `externalId`, by default in `employeeNumber`) is the app's id for it, so
//! the id survives renames and moves. Every operation first finds the entry
//! by that key, then:
//!
//! ```text
//! create ─ found ─▶ converge (adopted)        update ─▶ modifyDN when the RDN or
//!        └ none ──▶ add (68 exists → converge)          the parent changes, then
//! delete ─▶ drop memberships, delete                    replace mapped attributes
//! ```
//!
//! Entitlements are memberships (`member`) of existing `groupOfNames`
//! entries `cn=<entitlement>,<entitlement_base_dn>`; every operation
//! converges them to the account's list, re-pointing them after a rename.
//! Disable is configured: an attribute change, a move to another subtree,
//! or deletion. Only users are provisioned: groups are refused at start-up.
//! Each call opens its own connection (LDAP binds are cheap, and no
//! connection outlives a directory restart).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::Duration;

use ldap3::adapters::PagedResults;
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, LdapError, Mod, Scope, SearchEntry};
use ldap3::{dn_escape, ldap_escape};
use serde_json::{Map, Value};

use super::http::read_secret;
use super::paths::{set_at, value_at};
use super::{Adapter, AdapterError, Applied, ErrorKind, OpContext, RemoteAccount};
use crate::config::{AppSettings, LdapAdapterSettings, LdapDisable};
use crate::domain::Kind;

const DEFAULT_CLASSES: [&str; 4] = ["top", "person", "organizationalPerson", "inetOrgPerson"];

/// An LDAP directory.
pub struct LdapAdapter {
    url: String,
    starttls: bool,
    bind: Option<(String, String)>,
    base_dn: String,
    rdn: String,
    object_classes: Vec<String>,
    /// (LDAP attribute, account path).
    attributes: Vec<(String, String)>,
    key: String,
    disable: Option<LdapDisable>,
    entitlement_base: Option<String>,
    /// The account attribute that carries entitlements.
    entitlements_attribute: String,
    timeout: Duration,
}

/// Attribute → values; an empty list means "absent".
type Attrs = BTreeMap<String, Vec<String>>;

fn is_attribute_name(s: &str) -> bool {
    let mut c = s.chars();
    c.next().is_some_and(|c| c.is_ascii_alphabetic())
        && c.all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// The class of a failed LDAP operation (RFC 4511 result codes).
fn ldap_error(e: LdapError) -> AdapterError {
    let LdapError::LdapResult { result } = e else {
        // Connection, TLS, timeout: the same call may work later.
        return AdapterError::transient(format!("ldap: {e}"));
    };
    let kind = match result.rc {
        8 | 13 | 48 | 49 | 50 => ErrorKind::Unauthorized,
        32 => ErrorKind::NotFound,
        3 | 11 | 51 | 52 | 80 => ErrorKind::Transient,
        _ => ErrorKind::Rejected,
    };
    AdapterError {
        kind,
        status: None,
        message: format!("ldap: {result}"),
    }
}

fn is_active(v: &Value) -> bool {
    v.get("active").and_then(Value::as_bool).unwrap_or(true)
}

/// A JSON value as LDAP attribute values.
fn ldap_values(v: Option<&Value>) -> Vec<String> {
    match v {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) if s.is_empty() => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Bool(b)) => vec![if *b { "TRUE" } else { "FALSE" }.to_string()],
        Some(Value::Number(n)) => vec![n.to_string()],
        Some(Value::Array(items)) => items
            .iter()
            .flat_map(|i| ldap_values(Some(i.get("value").unwrap_or(i))))
            .collect(),
        Some(o @ Value::Object(_)) => ldap_values(o.get("value")),
    }
}

fn entitlements(account: &Value, attribute: &str) -> BTreeSet<String> {
    ldap_values(account.get(attribute)).into_iter().collect()
}

fn set(values: &[String]) -> HashSet<&str> {
    values.iter().map(String::as_str).collect()
}

fn key_of(ctx: &OpContext, account: &Value) -> String {
    account
        .get("externalId")
        .and_then(Value::as_str)
        .map_or_else(|| ctx.identity.clone(), str::to_string)
}

impl LdapAdapter {
    /// Checks the settings and reads the bind password now.
    pub fn new(
        app: &AppSettings,
        s: &LdapAdapterSettings,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        anyhow::ensure!(
            !app.groups,
            "app {}: the ldap adapter provisions users (and entitlement memberships) only; set groups = false",
            app.name
        );
        anyhow::ensure!(
            s.url.starts_with("ldap://") || s.url.starts_with("ldaps://"),
            "ldap url must be ldap:// or ldaps://"
        );
        let rdn = s.rdn_attribute.clone().unwrap_or_else(|| "uid".into());
        let key = s
            .key_attribute
            .clone()
            .unwrap_or_else(|| "employeeNumber".into());
        for a in s.attributes.keys().chain([&rdn, &key]) {
            anyhow::ensure!(is_attribute_name(a), "ldap attribute {a:?} is not a name");
        }
        anyhow::ensure!(
            s.attributes.keys().any(|a| a.eq_ignore_ascii_case(&rdn)),
            "ldap: the naming attribute {rdn} needs an entry in attributes"
        );
        anyhow::ensure!(!s.base_dn.trim().is_empty(), "ldap base_dn is empty");
        let password = read_secret(
            s.bind_password_env.as_deref(),
            s.bind_password_file.as_deref(),
            "ldap bind password",
        )?;
        let bind = match (&s.bind_dn, password) {
            (Some(dn), Some(pw)) => Some((dn.clone(), pw)),
            (None, None) => None,
            _ => anyhow::bail!("ldap: bind_dn and a bind password go together"),
        };
        let object_classes = if s.object_classes.is_empty() {
            DEFAULT_CLASSES.iter().map(|c| c.to_string()).collect()
        } else {
            s.object_classes.clone()
        };
        Ok(Self {
            url: s.url.clone(),
            starttls: s.starttls,
            bind,
            base_dn: s.base_dn.clone(),
            rdn,
            object_classes,
            attributes: s
                .attributes
                .iter()
                .map(|(a, p)| (a.clone(), p.clone()))
                .collect(),
            key,
            disable: s.disable.clone(),
            entitlement_base: s.entitlement_base_dn.clone(),
            entitlements_attribute: app
                .entitlements_attribute
                .clone()
                .unwrap_or_else(|| "entitlements".into()),
            timeout,
        })
    }

    async fn connect(&self) -> Result<Ldap, AdapterError> {
        let settings = LdapConnSettings::new()
            .set_conn_timeout(self.timeout)
            .set_starttls(self.starttls);
        let (conn, mut ldap) = LdapConnAsync::with_settings(settings, &self.url)
            .await
            .map_err(ldap_error)?;
        ldap3::drive!(conn);
        if let Some((dn, pw)) = &self.bind {
            ldap.simple_bind(dn, pw)
                .await
                .and_then(|r| r.success())
                .map_err(ldap_error)?;
        }
        Ok(ldap)
    }

    /// Runs one adapter operation under the app's timeout.
    async fn timed<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, AdapterError>>,
    ) -> Result<T, AdapterError> {
        tokio::time::timeout(self.timeout * 2, f)
            .await
            .map_err(|_| AdapterError::transient("ldap: timed out"))?
    }

    fn disabled_base(&self) -> Option<&str> {
        match &self.disable {
            Some(LdapDisable::Move { base_dn }) => Some(base_dn),
            _ => None,
        }
    }

    fn search_bases(&self) -> Vec<&str> {
        std::iter::once(self.base_dn.as_str())
            .chain(self.disabled_base())
            .collect()
    }

    /// The DN of the entry with this key; entries listed without a key
    /// have their DN as id.
    async fn find(&self, ldap: &mut Ldap, key: &str) -> Result<Option<String>, AdapterError> {
        let filter = format!("({}={})", self.key, ldap_escape(key));
        let mut found = Vec::new();
        for base in self.search_bases() {
            match ldap
                .search(base, Scope::Subtree, &filter, vec!["1.1"])
                .await
                .and_then(|r| r.success())
            {
                Ok((entries, _)) => {
                    found.extend(entries.into_iter().map(|e| SearchEntry::construct(e).dn))
                }
                Err(LdapError::LdapResult { result }) if result.rc == 32 => {}
                Err(e) => return Err(ldap_error(e)),
            }
        }
        if found.is_empty() && key.contains('=') {
            // A DN from a listing of an entry without a key.
            if let Ok((entries, _)) = ldap
                .search(key, Scope::Base, "(objectClass=*)", vec!["1.1"])
                .await
                .and_then(|r| r.success())
            {
                found.extend(entries.into_iter().map(|e| SearchEntry::construct(e).dn));
            }
        }
        match found.len() {
            0 => Ok(None),
            1 => Ok(found.pop()),
            n => Err(AdapterError::rejected(format!(
                "ldap: {n} entries have {}={key}",
                self.key
            ))),
        }
    }

    /// The attributes an account's entry should have.
    fn attrs(&self, account: &Value, key: &str) -> Attrs {
        let mut out = Attrs::new();
        for (attr, path) in &self.attributes {
            out.entry(attr.clone())
                .or_default()
                .extend(ldap_values(value_at(account, path)));
        }
        out.insert(self.key.clone(), vec![key.to_string()]);
        if let Some(LdapDisable::Attribute {
            attribute,
            value,
            enabled_value,
        }) = &self.disable
        {
            let v = if is_active(account) {
                enabled_value.clone()
            } else {
                Some(value.clone())
            };
            out.insert(attribute.clone(), v.into_iter().collect());
        }
        for v in out.values_mut() {
            v.sort();
            v.dedup();
        }
        out
    }

    /// The RDN (`uid=ada`) and parent an account's entry should have.
    fn placement(&self, attrs: &Attrs, active: bool) -> Result<(String, String), AdapterError> {
        let value = attrs
            .iter()
            .find(|(a, _)| a.eq_ignore_ascii_case(&self.rdn))
            .and_then(|(_, v)| v.first())
            .ok_or_else(|| {
                AdapterError::rejected(format!(
                    "ldap: the account has no value for the naming attribute {}",
                    self.rdn
                ))
            })?;
        let parent = match self.disabled_base() {
            Some(b) if !active => b.to_string(),
            _ => self.base_dn.clone(),
        };
        Ok((format!("{}={}", self.rdn, dn_escape(value)), parent))
    }

    /// Renames or moves the entry where it should be and replaces its
    /// mapped attributes; returns its DN.
    async fn converge(
        &self,
        ldap: &mut Ldap,
        dn: &str,
        attrs: &Attrs,
        active: bool,
    ) -> Result<String, AdapterError> {
        let (rdn, parent) = self.placement(attrs, active)?;
        let target = format!("{rdn},{parent}");
        let dn = if dn.eq_ignore_ascii_case(&target) {
            dn.to_string()
        } else {
            ldap.modifydn(dn, &rdn, true, Some(&parent))
                .await
                .and_then(|r| r.success())
                .map_err(ldap_error)?;
            target
        };
        let mods: Vec<Mod<&str>> = attrs
            .iter()
            .map(|(a, v)| Mod::Replace(a.as_str(), set(v)))
            .collect();
        ldap.modify(&dn, mods)
            .await
            .and_then(|r| r.success())
            .map_err(ldap_error)?;
        Ok(dn)
    }

    /// Makes the entitlement groups that list `old_dn` or should list
    /// `new_dn` agree with `wanted`.
    async fn memberships(
        &self,
        ldap: &mut Ldap,
        old_dn: &str,
        new_dn: &str,
        wanted: &BTreeSet<String>,
    ) -> Result<(), AdapterError> {
        let Some(base) = &self.entitlement_base else {
            return Ok(());
        };
        let group_dn = |e: &str| format!("cn={},{base}", dn_escape(e));
        let wanted: BTreeSet<String> = wanted.iter().map(|e| group_dn(e).to_lowercase()).collect();
        let filter = format!("(member={})", ldap_escape(old_dn));
        let current: BTreeSet<String> = match ldap
            .search(base, Scope::OneLevel, &filter, vec!["1.1"])
            .await
            .and_then(|r| r.success())
        {
            Ok((entries, _)) => entries
                .into_iter()
                .map(|e| SearchEntry::construct(e).dn.to_lowercase())
                .collect(),
            Err(LdapError::LdapResult { result }) if result.rc == 32 => BTreeSet::new(),
            Err(e) => return Err(ldap_error(e)),
        };
        let same = old_dn.eq_ignore_ascii_case(new_dn);
        for g in &current {
            if same && wanted.contains(g) {
                continue;
            }
            self.member(ldap, g, Mod::Delete("member", HashSet::from([old_dn])))
                .await?;
        }
        for g in &wanted {
            if same && current.contains(g) {
                continue;
            }
            self.member(ldap, g, Mod::Add("member", HashSet::from([new_dn])))
                .await?;
        }
        Ok(())
    }

    async fn member(&self, ldap: &mut Ldap, group: &str, m: Mod<&str>) -> Result<(), AdapterError> {
        match ldap.modify(group, vec![m]).await.and_then(|r| r.success()) {
            // Already a member / already not one.
            Err(LdapError::LdapResult { result }) if result.rc == 20 || result.rc == 16 => Ok(()),
            // A missing group is a configuration problem, not a missing account.
            Err(LdapError::LdapResult { result }) if result.rc == 32 => Err(
                AdapterError::rejected(format!("ldap: entitlement group {group} does not exist")),
            ),
            other => other.map(|_| ()).map_err(ldap_error),
        }
    }

    async fn remove(&self, ldap: &mut Ldap, dn: &str) -> Result<(), AdapterError> {
        self.memberships(ldap, dn, dn, &BTreeSet::new()).await?;
        match ldap.delete(dn).await.and_then(|r| r.success()) {
            Err(LdapError::LdapResult { result }) if result.rc == 32 => Ok(()),
            other => other.map(|_| ()).map_err(ldap_error),
        }
    }

    async fn create_inner(
        &self,
        ctx: &OpContext,
        account: &Value,
    ) -> Result<Applied, AdapterError> {
        let key = key_of(ctx, account);
        let active = is_active(account);
        let mut ldap = self.connect().await?;
        let applied = |adopted| Applied {
            remote_id: Some(key.clone()),
            adopted,
            status: None,
        };
        let existing = self.find(&mut ldap, &key).await?;
        if matches!(self.disable, Some(LdapDisable::Delete)) && !active {
            // Disabled means no entry.
            if let Some(dn) = existing {
                self.remove(&mut ldap, &dn).await?;
            }
            return Ok(applied(false));
        }
        let attrs = self.attrs(account, &key);
        let (dn, adopted) = match existing {
            Some(dn) => (self.converge(&mut ldap, &dn, &attrs, active).await?, true),
            None => {
                let (rdn, parent) = self.placement(&attrs, active)?;
                let dn = format!("{rdn},{parent}");
                let mut entry: Vec<(&str, HashSet<&str>)> = vec![(
                    "objectClass",
                    self.object_classes.iter().map(String::as_str).collect(),
                )];
                entry.extend(
                    attrs
                        .iter()
                        .filter(|(_, v)| !v.is_empty())
                        .map(|(a, v)| (a.as_str(), set(v))),
                );
                match ldap.add(&dn, entry).await.and_then(|r| r.success()) {
                    Ok(_) => (dn, false),
                    // An entry with that name but not our key (made by
                    // hand): link it and bring it in line.
                    Err(LdapError::LdapResult { result }) if result.rc == 68 => {
                        (self.converge(&mut ldap, &dn, &attrs, active).await?, true)
                    }
                    Err(e) => return Err(ldap_error(e)),
                }
            }
        };
        self.memberships(
            &mut ldap,
            &dn,
            &dn,
            &entitlements(account, &self.entitlements_attribute),
        )
        .await?;
        let _ = ldap.unbind().await;
        Ok(applied(adopted))
    }

    async fn update_inner(
        &self,
        remote_id: &str,
        before: &Value,
        after: &Value,
    ) -> Result<Applied, AdapterError> {
        let mut ldap = self.connect().await?;
        let found = self.find(&mut ldap, remote_id).await?;
        if matches!(self.disable, Some(LdapDisable::Delete)) {
            if !is_active(after) {
                if let Some(dn) = found {
                    self.remove(&mut ldap, &dn).await?;
                }
                return Ok(Applied::default());
            }
            if !is_active(before) {
                return Err(AdapterError {
                    kind: ErrorKind::NotFound,
                    status: None,
                    message: "ldap: re-enabled account was deleted on disable; creating it again"
                        .into(),
                });
            }
        }
        let Some(dn) = found else {
            return Err(AdapterError {
                kind: ErrorKind::NotFound,
                status: None,
                message: format!("ldap: no entry with {}={remote_id}", self.key),
            });
        };
        let key = after
            .get("externalId")
            .and_then(Value::as_str)
            .unwrap_or(remote_id);
        let attrs = self.attrs(after, key);
        let new_dn = self
            .converge(&mut ldap, &dn, &attrs, is_active(after))
            .await?;
        self.memberships(
            &mut ldap,
            &dn,
            &new_dn,
            &entitlements(after, &self.entitlements_attribute),
        )
        .await?;
        let _ = ldap.unbind().await;
        Ok(Applied::default())
    }

    async fn delete_inner(&self, remote_id: &str) -> Result<Applied, AdapterError> {
        let mut ldap = self.connect().await?;
        if let Some(dn) = self.find(&mut ldap, remote_id).await? {
            self.remove(&mut ldap, &dn).await?;
        }
        let _ = ldap.unbind().await;
        Ok(Applied::default())
    }

    /// An entry in account terms.
    fn account_of(&self, e: &SearchEntry) -> Value {
        let get = |name: &str| {
            e.attrs
                .iter()
                .find(|(a, _)| a.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        let mut out = Map::new();
        for (attr, path) in &self.attributes {
            let v = match get(attr) {
                Some(mut v) if v.len() == 1 => Value::String(v.remove(0)),
                Some(v) => Value::Array(v.into_iter().map(Value::String).collect()),
                None => Value::Null,
            };
            if path == "active" {
                let b = v.as_str().map(|s| s.eq_ignore_ascii_case("TRUE"));
                set_at(&mut out, path, b.map_or(Value::Null, Value::Bool));
            } else {
                set_at(&mut out, path, v);
            }
        }
        if !out.contains_key("active") {
            let disabled = match &self.disable {
                Some(LdapDisable::Attribute {
                    attribute, value, ..
                }) => get(attribute).is_some_and(|v| v.iter().any(|x| x == value)),
                Some(LdapDisable::Move { base_dn }) => {
                    e.dn.to_ascii_lowercase()
                        .ends_with(&base_dn.to_ascii_lowercase())
                }
                _ => false,
            };
            out.insert("active".into(), Value::Bool(!disabled));
        }
        Value::Object(out)
    }

    async fn list_inner(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<RemoteAccount>, AdapterError> {
        let mut ldap = self.connect().await?;
        let class = self
            .object_classes
            .last()
            .map_or("person", String::as_str)
            .to_string();
        let filter = format!("(objectClass={})", ldap_escape(&class));
        let mut attrs: Vec<String> = self.attributes.iter().map(|(a, _)| a.clone()).collect();
        attrs.push(self.key.clone());
        if let Some(LdapDisable::Attribute { attribute, .. }) = &self.disable {
            attrs.push(attribute.clone());
        }
        // The directory returns entries in its own order: keep the `limit`
        // smallest ids after `after` while streaming page by page, so
        // memory stays bounded by the page size, not the directory's.
        let mut page: BTreeMap<String, (String, RemoteAccount)> = BTreeMap::new();
        for base in self.search_bases() {
            let mut stream = match ldap
                .streaming_search_with(
                    PagedResults::new(500),
                    base,
                    Scope::Subtree,
                    &filter,
                    attrs.clone(),
                )
                .await
            {
                Ok(s) => s,
                Err(e) => return Err(ldap_error(e)),
            };
            while let Some(entry) = stream.next().await.map_err(ldap_error)? {
                let e = SearchEntry::construct(entry);
                let key = e
                    .attrs
                    .iter()
                    .find(|(a, _)| a.eq_ignore_ascii_case(&self.key))
                    .and_then(|(_, v)| v.first().cloned());
                let id = key.clone().unwrap_or_else(|| e.dn.clone());
                if after.is_some_and(|a| id.as_str() <= a) {
                    continue;
                }
                if page.len() >= limit && page.last_key_value().is_some_and(|(last, _)| *last <= id)
                {
                    continue;
                }
                let account = RemoteAccount {
                    remote_id: id.clone(),
                    key,
                    attributes: self.account_of(&e),
                };
                page.insert(id, (e.dn, account));
                if page.len() > limit {
                    page.pop_last();
                }
            }
            let done = stream.finish().await;
            if done.rc != 0 && done.rc != 32 {
                return Err(ldap_error(LdapError::LdapResult { result: done }));
            }
        }
        let mut out = Vec::with_capacity(page.len());
        for (dn, mut account) in page.into_values() {
            if let Some(held) = self.held_entitlements(&mut ldap, &dn).await? {
                let list = held
                    .into_iter()
                    .map(|e| serde_json::json!({ "value": e }))
                    .collect();
                if let Some(o) = account.attributes.as_object_mut() {
                    o.insert(self.entitlements_attribute.clone(), Value::Array(list));
                }
            }
            out.push(account);
        }
        let _ = ldap.unbind().await;
        Ok(out)
    }

    /// The entitlements an entry holds: the `cn` of every `groupOfNames`
    /// under the entitlement base that lists it as a `member` (one indexed
    /// search per entry, so a listing page never reads whole groups).
    /// `None` when the app has no entitlement groups.
    async fn held_entitlements(
        &self,
        ldap: &mut Ldap,
        dn: &str,
    ) -> Result<Option<Vec<String>>, AdapterError> {
        let Some(base) = &self.entitlement_base else {
            return Ok(None);
        };
        let filter = format!("(&(objectClass=groupOfNames)(member={}))", ldap_escape(dn));
        let (entries, _) = ldap
            .search(base, Scope::Subtree, &filter, vec!["cn"])
            .await
            .and_then(|r| r.success())
            .map_err(ldap_error)?;
        let mut held: Vec<String> = entries
            .into_iter()
            .filter_map(|e| {
                let e = SearchEntry::construct(e);
                e.attrs
                    .into_iter()
                    .find(|(a, _)| a.eq_ignore_ascii_case("cn"))
                    .and_then(|(_, mut v)| (!v.is_empty()).then(|| v.swap_remove(0)))
            })
            .collect();
        held.sort();
        Ok(Some(held))
    }
}

#[async_trait::async_trait]
impl Adapter for LdapAdapter {
    async fn locate(
        &self,
        ctx: &OpContext,
        account: &Value,
    ) -> Result<Option<String>, AdapterError> {
        if ctx.kind == Kind::Group {
            return Ok(None);
        }
        let key = key_of(ctx, account);
        self.timed(async {
            let mut ldap = self.connect().await?;
            let found = self.find(&mut ldap, &key).await?;
            let _ = ldap.unbind().await;
            Ok(found.map(|_| key.clone()))
        })
        .await
    }

    async fn create(&self, ctx: &OpContext, account: &Value) -> Result<Applied, AdapterError> {
        if ctx.kind == Kind::Group {
            return Err(AdapterError::rejected(
                "groups are not supported by this ldap app",
            ));
        }
        self.timed(self.create_inner(ctx, account)).await
    }

    async fn update(
        &self,
        ctx: &OpContext,
        remote_id: &str,
        before: &Value,
        after: &Value,
    ) -> Result<Applied, AdapterError> {
        if ctx.kind == Kind::Group {
            return Err(AdapterError::rejected(
                "groups are not supported by this ldap app",
            ));
        }
        self.timed(self.update_inner(remote_id, before, after))
            .await
    }

    async fn delete(
        &self,
        ctx: &OpContext,
        remote_id: &str,
        _last: &Value,
    ) -> Result<Applied, AdapterError> {
        if ctx.kind == Kind::Group {
            return Err(AdapterError::rejected(
                "groups are not supported by this ldap app",
            ));
        }
        self.timed(self.delete_inner(remote_id)).await
    }

    fn can_list(&self) -> bool {
        true
    }

    async fn list(
        &self,
        kind: Kind,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<RemoteAccount>, AdapterError> {
        if kind == Kind::Group {
            return Err(AdapterError::rejected(
                "groups are not supported by this ldap app",
            ));
        }
        // A listing reads the whole directory once per page: allow for it.
        tokio::time::timeout(self.timeout * 30, self.list_inner(after, limit.max(1)))
            .await
            .map_err(|_| AdapterError::transient("ldap: listing timed out"))?
    }

    fn listed_paths(&self) -> Option<Vec<String>> {
        // `active` is always reported: mapped, or read from the disable action.
        let mut paths: Vec<String> = self.attributes.iter().map(|(_, p)| p.clone()).collect();
        paths.push("active".into());
        if self.entitlement_base.is_some() {
            paths.push(self.entitlements_attribute.clone());
        }
        paths.sort();
        paths.dedup();
        Some(paths)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_values_become_ldap_values() {
        assert_eq!(ldap_values(Some(&json!("a"))), ["a"]);
        assert_eq!(ldap_values(Some(&json!(true))), ["TRUE"]);
        assert_eq!(
            ldap_values(Some(&json!([{"value": "x"}, {"value": "y"}]))),
            ["x", "y"]
        );
        assert!(ldap_values(Some(&json!(""))).is_empty());
        assert!(ldap_values(None).is_empty());
    }

    #[test]
    fn result_codes_map_to_engine_classes() {
        let rc = |rc| {
            ldap_error(LdapError::LdapResult {
                result: ldap3::LdapResult {
                    rc,
                    matched: String::new(),
                    text: String::new(),
                    refs: Vec::new(),
                    ctrls: Vec::new(),
                },
            })
            .kind
        };
        assert_eq!(rc(49), ErrorKind::Unauthorized);
        assert_eq!(rc(32), ErrorKind::NotFound);
        assert_eq!(rc(52), ErrorKind::Transient);
        assert_eq!(rc(34), ErrorKind::Rejected, "invalid DN syntax");
        assert_eq!(rc(65), ErrorKind::Rejected, "object class violation");
    }
}
