//! Resource operations: what a SCIM request does, from a validated body to
//! one committed transaction that writes the resource, its index rows, its
//! memberships and its audit row together.
//!
//! ```text
//!  body ─▶ normalize / patch::apply ─▶ write_tx { check If-Match, uniqueness,
//!          (outside the transaction)               resource + index + members + audit }
//! ```

use std::collections::HashSet;
use std::sync::Arc;

use scim_v2::filter::Filter;
use serde_json::{Map, Value, json};

use super::cursor::{self, Cursor, Direction};
use super::filter::{self, FilterLimits};
use super::index::{self, display_of, index_entries, unique_keys};
use super::limits::ContentLimits;
use super::list::{ListParams, sort_key};
use super::membership;
use super::normalize::{MemberRef, normalize};
use super::patch::{self, MemberChange, PatchLimits};
use super::project::Projection;
use super::render::{Stored, render};
use super::schema::{Mutability, Registry, ResourceType};
use super::search::{self, ListQuery};
use crate::config::ScimSettings;
use crate::delivery::Fanout;
use crate::domain::{Actor, Kind};
use crate::error::ScimError;
use crate::format::now;
use crate::lifecycle::AppPolicy;
use crate::store::{
    self, AnyConnection, AuditEvent, Db, GroupRef, IndexEntry, ResourceRow, StoreError,
};

/// Refuses writes with an app's pull token.
fn writer(actor: &Actor) -> Result<(), ScimError> {
    if actor.read_only() {
        return Err(ScimError::forbidden(
            "This token belongs to an app and may only read.",
        ));
    }
    Ok(())
}

/// What to load besides the document.
#[derive(Debug, Clone, Copy, Default)]
pub struct Load {
    /// A group's members.
    pub members: bool,
    /// A user's groups.
    pub groups: bool,
}

/// One page of a list.
#[derive(Debug)]
pub struct Page {
    /// Total number of matches.
    pub total: usize,
    /// 1-based index of the first resource on the page.
    pub start_index: usize,
    /// The resources on this page.
    pub resources: Vec<Stored>,
    /// Cursor pagination (RFC 9865): whether the request used it, and the
    /// cursors to the neighbouring pages.
    pub cursors: Option<(Option<String>, Option<String>)>,
}

/// The resource service shared by all handlers.
#[derive(Clone)]
pub struct Service {
    /// Schemas and resource types.
    pub registry: Arc<Registry>,
    /// The store.
    pub db: Db,
    /// Paging limits.
    pub settings: Arc<ScimSettings>,
    /// The apps each change must reach.
    pub fanout: Fanout,
}

fn audit(actor: &Actor, action: &str, kind: Kind, id: &str, version: i64, at: &str) -> AuditEvent {
    AuditEvent {
        at: at.to_string(),
        tenant: Some(actor.tenant.clone()),
        actor: actor.label(),
        action: action.to_string(),
        resource_type: Some(kind.name().to_string()),
        resource_id: Some(id.to_string()),
        outcome: "success".into(),
        detail: Some(json!({ "version": version }).to_string()),
        app: None,
    }
}

fn check_if_match(if_match: Option<&str>, version: i64) -> Result<(), ScimError> {
    let Some(header) = if_match else {
        return Ok(());
    };
    let current = super::render::etag(version);
    let ok = header.split(',').map(str::trim).any(|t| {
        t == "*" || t == current || t.trim_start_matches("W/") == current.trim_start_matches("W/")
    });
    if ok {
        Ok(())
    } else {
        Err(ScimError::new(
            actix_web::http::StatusCode::PRECONDITION_FAILED,
            "The resource has changed since the version given in If-Match.",
        ))
    }
}

/// Refuses changes to immutable attributes that already have a value.
fn check_immutable(
    rt: &ResourceType,
    old: &Map<String, Value>,
    new: &Map<String, Value>,
) -> Result<(), ScimError> {
    let scopes = std::iter::once((None, rt.schema.as_ref())).chain(
        rt.extensions
            .iter()
            .map(|(s, _)| (Some(s.id.as_str()), s.as_ref())),
    );
    for (ext, schema) in scopes {
        let pick = |doc: &Map<String, Value>, name: &str| -> Option<Value> {
            match ext {
                None => doc.get(name).cloned(),
                Some(urn) => doc.get(urn)?.get(name).cloned(),
            }
        };
        for def in schema
            .attributes
            .iter()
            .filter(|a| a.mutability == Mutability::Immutable)
        {
            if let Some(before) = pick(old, &def.name)
                && pick(new, &def.name).as_ref() != Some(&before)
            {
                return Err(ScimError::mutability(format!(
                    "Attribute '{}' is immutable.",
                    def.name
                )));
            }
        }
    }
    Ok(())
}

fn parse_doc(row: &ResourceRow) -> Result<Map<String, Value>, StoreError> {
    serde_json::from_str(&row.data)
        .map_err(|e| StoreError::Internal(format!("stored document {}: {e}", row.id)))
}

impl Service {
    fn rt(&self, kind: Kind) -> &ResourceType {
        match kind {
            Kind::User => &self.registry.user,
            Kind::Group => &self.registry.group,
        }
    }

    /// The content limits of `[scim]`.
    fn content_limits(&self) -> ContentLimits {
        ContentLimits::from_settings(&self.settings)
    }

    /// The resource type definition for a kind.
    pub fn resource_type(&self, kind: Kind) -> &ResourceType {
        self.rt(kind)
    }

    /// POST: creates a resource.
    pub async fn create(
        &self,
        actor: &Actor,
        kind: Kind,
        body: Value,
        load: Load,
    ) -> Result<Stored, ScimError> {
        writer(actor)?;
        let n = normalize(self.rt(kind), &body)?;
        self.content_limits().check(&n)?;
        let reg = self.registry.clone();
        let actor = actor.clone();
        let fanout = self.fanout.clone();
        let tenant = actor.tenant.clone();
        let stored = self
            .db
            .write(move |conn| {
                let rt = rt_of(&reg, kind);
                let at = now();
                let row = ResourceRow {
                    id: uuid::Uuid::now_v7().to_string(),
                    tenant: actor.tenant.clone(),
                    resource_type: kind.name().into(),
                    external_id: n
                        .doc
                        .get("externalId")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                    display: display_of(&n.doc),
                    data: Value::Object(n.doc.clone()).to_string(),
                    version: 1,
                    created: at.clone(),
                    last_modified: at.clone(),
                };
                store::insert_resource(conn, &row)?;
                store::insert_unique_keys(
                    conn,
                    &row.tenant,
                    kind.name(),
                    &row.id,
                    &unique_keys(rt, &n.doc),
                )?;
                store::insert_index(
                    conn,
                    &row.tenant,
                    kind.name(),
                    &row.id,
                    &index_entries(rt, &n.doc),
                )?;
                let mut changed = vec![row.id.clone()];
                if let Some(members) = &n.members {
                    add_members(conn, &row.tenant, &row.id, members)?;
                    let ids: Vec<String> = members.iter().map(|m| m.value.clone()).collect();
                    store::touch_resources(conn, &ids, &at)?;
                    changed.extend(ids);
                }
                store::jobs::enqueue(
                    conn,
                    &row.tenant,
                    fanout.pushing(&row.tenant),
                    &changed,
                    &at,
                )?;
                store::insert_audit(conn, &audit(&actor, "scim.create", kind, &row.id, 1, &at))?;
                // A resource created a moment ago is in no group yet: no
                // need to ask the database.
                let mut stored = load_side(
                    conn,
                    kind,
                    row,
                    Load {
                        groups: false,
                        ..load
                    },
                )?;
                if load.groups {
                    stored.groups = Some(Vec::new());
                }
                Ok(stored)
            })
            .await?;
        self.fanout.wake_tenant(&tenant);
        Ok(stored)
    }

    /// GET by id.
    pub async fn get(
        &self,
        actor: &Actor,
        kind: Kind,
        id: &str,
        load: Load,
    ) -> Result<Stored, ScimError> {
        let policy = self.pull_policy(actor)?;
        if policy.is_none() && kind == Kind::User {
            // What most GETs are: the read cache may hold it.
            let (row, groups) = self
                .db
                .find_user_with_groups(&actor.tenant, kind.name(), id)
                .await?;
            return Ok(Stored {
                row,
                members: None,
                groups: load.groups.then_some(groups),
            });
        }
        let tenant = actor.tenant.clone();
        let id = id.to_string();
        let reg = self.registry.clone();
        let load = match &policy {
            Some(p) => Load {
                groups: load.groups || (kind == Kind::User && p.needs_groups()),
                ..load
            },
            None => load,
        };
        // A group's members can be many: only then is this not a point read.
        let point = !(kind == Kind::Group && load.members);
        let read = move |conn: &mut AnyConnection| {
            let mut stored = read_one(conn, &tenant, kind, &id, load)?;
            if let Some(p) = &policy {
                let doc = render(rt_of(&reg, kind), &stored, "");
                if !p.in_scope(&reg, kind, &doc) {
                    return Err(StoreError::NotFound);
                }
                restrict_members(conn, &reg, p, &tenant, &mut stored)?;
            }
            Ok(stored)
        };
        Ok(if point {
            self.db.point(read).await?
        } else {
            self.db.run(read).await?
        })
    }

    /// The app whose view a pull token reads, if the actor has one.
    fn pull_policy(&self, actor: &Actor) -> Result<Option<Arc<AppPolicy>>, ScimError> {
        match &actor.app {
            None => Ok(None),
            Some(app) => self
                .fanout
                .apps()
                .get(app)
                .cloned()
                .map(Some)
                .ok_or_else(ScimError::unauthorized),
        }
    }

    /// What an app's pull token sees of a rendered resource: the account
    /// the app's mapping makes of it, with the gateway's `id` and `meta`.
    pub fn pull_view(
        &self,
        actor: &Actor,
        kind: Kind,
        doc: Map<String, Value>,
    ) -> Map<String, Value> {
        let Some(policy) = actor.app.as_ref().and_then(|a| self.fanout.apps().get(a)) else {
            return doc;
        };
        if kind == Kind::Group {
            return doc;
        }
        let account = policy.user_account(&self.registry, &doc);
        let mut out = Map::with_capacity(account.len() + 2);
        let mut rest = account.into_iter();
        if let Some((k, v)) = rest.next() {
            out.insert(k, v);
        }
        if let Some(id) = doc.get("id") {
            out.insert("id".into(), id.clone());
        }
        out.extend(rest);
        if let Some(meta) = doc.get("meta") {
            out.insert("meta".into(), meta.clone());
        }
        out
    }

    /// PUT: replaces a resource's attributes (and a group's members).
    pub async fn replace(
        &self,
        actor: &Actor,
        kind: Kind,
        id: &str,
        body: Value,
        if_match: Option<String>,
        load: Load,
    ) -> Result<Stored, ScimError> {
        writer(actor)?;
        let n = normalize(self.rt(kind), &body)?;
        self.content_limits().check(&n)?;
        let reg = self.registry.clone();
        let tenant = actor.tenant.clone();
        let actor = actor.clone();
        let id = id.to_string();
        let fanout = self.fanout.clone();
        let stored = self
            .db
            .write(move |conn| {
                let rt = rt_of(&reg, kind);
                store::lock_resource(conn, &actor.tenant, &id)?;
                let old = store::find_resource(conn, &actor.tenant, kind.name(), &id)?;
                check_if_match(if_match.as_deref(), old.version)?;
                check_immutable(rt, &parse_doc(&old)?, &n.doc)?;
                let members = match kind {
                    Kind::Group => vec![
                        MemberChange::RemoveAll,
                        MemberChange::Add(n.members.clone().unwrap_or_default()),
                    ],
                    Kind::User => Vec::new(),
                };
                let row = save(
                    conn,
                    rt,
                    &actor,
                    kind,
                    old,
                    n.doc,
                    &members,
                    "scim.replace",
                    true,
                    fanout.pushing(&actor.tenant),
                )?;
                load_side(conn, kind, row, load)
            })
            .await?;
        self.fanout.wake_tenant(&tenant);
        Ok(stored)
    }

    /// PATCH: applies RFC 7644 §3.5.2 operations atomically.
    pub async fn patch(
        &self,
        actor: &Actor,
        kind: Kind,
        id: &str,
        body: Value,
        if_match: Option<String>,
        load: Load,
    ) -> Result<Stored, ScimError> {
        writer(actor)?;
        let ops = patch::parse(&body, PatchLimits::from_settings(&self.settings))?;
        let limits = self.content_limits();
        let reg = self.registry.clone();
        let tenant = actor.tenant.clone();
        let actor = actor.clone();
        let id = id.to_string();
        let fanout = self.fanout.clone();
        let stored = self
            .db
            .write(move |conn| {
                let rt = rt_of(&reg, kind);
                store::lock_resource(conn, &actor.tenant, &id)?;
                let old = store::find_resource(conn, &actor.tenant, kind.name(), &id)?;
                check_if_match(if_match.as_deref(), old.version)?;
                let old_doc = parse_doc(&old)?;
                let patched = patch::apply(rt, &old_doc, &ops)?;
                limits.check_members(patched.member_refs())?;
                let n = normalize(rt, &Value::Object(patched.doc))?;
                limits.check_document(&n.doc)?;
                check_immutable(rt, &old_doc, &n.doc)?;
                let changed = n.doc != old_doc;
                let row = save(
                    conn,
                    rt,
                    &actor,
                    kind,
                    old,
                    n.doc,
                    &patched.members,
                    "scim.patch",
                    changed,
                    fanout.pushing(&actor.tenant),
                )?;
                load_side(conn, kind, row, load)
            })
            .await?;
        self.fanout.wake_tenant(&tenant);
        Ok(stored)
    }

    /// DELETE.
    pub async fn delete(
        &self,
        actor: &Actor,
        kind: Kind,
        id: &str,
        if_match: Option<String>,
    ) -> Result<(), ScimError> {
        writer(actor)?;
        let tenant = actor.tenant.clone();
        let actor = actor.clone();
        let id = id.to_string();
        let fanout = self.fanout.clone();
        self.db
            .write(move |conn| {
                store::lock_resource(conn, &actor.tenant, &id)?;
                let old = store::find_resource(conn, &actor.tenant, kind.name(), &id)?;
                check_if_match(if_match.as_deref(), old.version)?;
                let at = now();
                // Groups that lose this member change too, and so do the
                // members of a deleted group (their computed `groups`).
                let mut groups: Vec<String> =
                    store::find_groups_of(conn, std::slice::from_ref(&id))?
                        .into_iter()
                        .map(|g| g.group_id)
                        .collect();
                if kind == Kind::Group {
                    groups.extend(
                        store::find_members(conn, &id)?
                            .into_iter()
                            .map(|m| m.member_id),
                    );
                }
                store::delete_resource(conn, &actor.tenant, kind.name(), &id)?;
                store::touch_resources(conn, &groups, &at)?;
                let apps = fanout.pushing(&actor.tenant);
                store::jobs::enqueue(conn, &actor.tenant, apps, &groups, &at)?;
                store::jobs::enqueue_with(
                    conn,
                    &actor.tenant,
                    apps,
                    std::slice::from_ref(&id),
                    &at,
                    store::jobs::priority::LEAVER,
                )?;
                store::insert_audit(
                    conn,
                    &audit(&actor, "scim.delete", kind, &id, old.version, &at),
                )?;
                Ok(())
            })
            .await?;
        self.fanout.wake_tenant(&tenant);
        Ok(())
    }

    /// GET list / `.search`: filter, sort and page.
    pub async fn list(
        &self,
        actor: &Actor,
        kind: Kind,
        params: ListParams,
        load: Load,
    ) -> Result<Page, ScimError> {
        let rt = self.rt(kind);
        let filter = match &params.filter {
            Some(text) => {
                let f = filter::parse_limited(text, FilterLimits::from_settings(&self.settings))?;
                filter::check(rt, &f)?;
                Some(f)
            }
            None => None,
        };
        // An app's pull token sees only the app's scope.
        let policy = self.pull_policy(actor)?;
        let filter = match &policy {
            None => filter,
            Some(p) => {
                let scope = match kind {
                    Kind::User => p.scope.clone(),
                    Kind::Group if p.groups => p.group_scope.clone(),
                    Kind::Group => {
                        return Ok(Page {
                            total: 0,
                            start_index: params.start_index,
                            resources: Vec::new(),
                            cursors: params.cursor.as_ref().map(|_| (None, None)),
                        });
                    }
                };
                match (scope, filter) {
                    (Some(s), Some(f)) => Some(Filter::and(s, f)),
                    (s, f) => s.or(f),
                }
            }
        };
        if let Some(s) = &params.sort_by {
            sort_key(rt, s)?;
        }
        let query = cursor::fingerprint(
            kind.name(),
            params.filter.as_deref(),
            params.sort_by.as_deref(),
            params.descending,
        );
        let cursor: Option<Option<Cursor>> = match params.cursor.as_deref() {
            None => None,
            Some(t) if t.trim().is_empty() => Some(None),
            Some(t) => Some(Some(Cursor::decode(t, &query)?)),
        };
        let unique = match (&policy, &params.sort_by, &cursor, &filter) {
            (None, None, None, Some(f)) => index::unique_lookup(rt, f),
            _ => None,
        };
        if let Some(key) = unique {
            let tenant = actor.tenant.clone();
            return Ok(self
                .db
                .point(move |conn| page_unique(conn, &tenant, kind, &key, &params, load))
                .await?);
        }
        let reg = self.registry.clone();
        let tenant = actor.tenant.clone();
        let mut page = self
            .db
            .run(move |conn| {
                let rt = rt_of(&reg, kind);
                if filter.is_none() && params.sort_by.is_none() {
                    return match cursor {
                        None => page_unfiltered(conn, &tenant, kind, &params, load),
                        Some(c) => {
                            page_keyset(conn, &tenant, kind, c.as_ref(), params.count, load, &query)
                        }
                    };
                }
                search::list(
                    conn,
                    &ListQuery {
                        rt,
                        kind,
                        tenant: &tenant,
                        filter: filter.as_ref(),
                        params: &params,
                        cursor,
                        load,
                        query: &query,
                    },
                )
            })
            .await?;
        if let Some(p) = policy
            && kind == Kind::Group
            && page.resources.iter().any(|r| r.members.is_some())
        {
            let reg = self.registry.clone();
            let tenant = actor.tenant.clone();
            let mut resources = std::mem::take(&mut page.resources);
            page.resources = self
                .db
                .run(move |conn| {
                    for r in &mut resources {
                        restrict_members(conn, &reg, &p, &tenant, r)?;
                    }
                    Ok(resources)
                })
                .await?;
        }
        Ok(page)
    }

    /// Builds the projection for a request.
    pub fn projection(
        &self,
        kind: Kind,
        attributes: Option<&str>,
        excluded: Option<&str>,
    ) -> Projection {
        Projection::parse(self.rt(kind), attributes, excluded)
    }
}

fn rt_of(reg: &Registry, kind: Kind) -> &ResourceType {
    match kind {
        Kind::User => &reg.user,
        Kind::Group => &reg.group,
    }
}

fn page_unfiltered(
    conn: &mut AnyConnection,
    tenant: &str,
    kind: Kind,
    params: &ListParams,
    load: Load,
) -> Result<Page, StoreError> {
    use diesel::prelude::*;
    use store::schema::resources;
    let total: i64 = resources::table
        .filter(resources::tenant.eq(tenant))
        .filter(resources::resource_type.eq(kind.name()))
        .count()
        .get_result(conn)?;
    let rows = if params.count == 0 {
        Vec::new()
    } else {
        store::find_resources_page(
            conn,
            tenant,
            kind.name(),
            (params.start_index - 1) as i64,
            params.count as i64,
        )?
    };
    let mut resources = Vec::with_capacity(rows.len());
    for row in rows {
        resources.push(load_side(conn, kind, row, load)?);
    }
    Ok(Page {
        total: total as usize,
        start_index: params.start_index,
        resources,
        cursors: None,
    })
}

/// The page of a filter that names one unique key (see
/// [`index::unique_lookup`]): at most one match, found by primary-key
/// probes (for a user with its groups, all in one statement), paged like
/// [`search::list`] pages its exact filters.
fn page_unique(
    conn: &mut AnyConnection,
    tenant: &str,
    kind: Kind,
    key: &IndexEntry,
    params: &ListParams,
    load: Load,
) -> Result<Page, StoreError> {
    let skip = params.start_index - 1;
    let wanted = skip == 0 && params.count > 0;
    let found = if kind == Kind::User && load.groups {
        store::find_by_unique_key_with_groups(conn, tenant, kind.name(), key)?.map(with_groups)
    } else {
        // A page that leaves the match out needs only to know it exists:
        // no members loaded to be thrown away.
        let side = if wanted { load } else { Load::default() };
        match store::find_by_unique_key(conn, tenant, kind.name(), key)? {
            Some(id) => match read_one(conn, tenant, kind, &id, side) {
                Ok(stored) => Some(stored),
                Err(StoreError::NotFound) => None,
                Err(e) => return Err(e),
            },
            None => None,
        }
    };
    let total = usize::from(found.is_some());
    let resources: Vec<Stored> = found.filter(|_| wanted).into_iter().collect();
    Ok(Page {
        total,
        start_index: skip.min(total) + 1,
        resources,
        cursors: None,
    })
}

/// A cursor page in creation order, straight from the store (no offset scan).
fn page_keyset(
    conn: &mut AnyConnection,
    tenant: &str,
    kind: Kind,
    cursor: Option<&Cursor>,
    count: usize,
    load: Load,
    query: &str,
) -> Result<Page, StoreError> {
    use diesel::prelude::*;
    use store::schema::resources;
    let total: i64 = resources::table
        .filter(resources::tenant.eq(tenant))
        .filter(resources::resource_type.eq(kind.name()))
        .count()
        .get_result(conn)?;
    let boundary = cursor.map(|c| (c.created.as_str(), c.id.as_str()));
    let before = cursor.is_some_and(|c| c.direction == Direction::Before);
    // One extra row tells whether the page has a neighbour on the far side.
    let mut rows = store::find_resources_keyset(
        conn,
        tenant,
        kind.name(),
        boundary,
        before,
        count as i64 + 1,
    )?;
    let far_side = rows.len() > count;
    if far_side {
        if before {
            rows.remove(0);
        } else {
            rows.truncate(count);
        }
    }
    let (has_next, has_prev) = if before {
        (cursor.is_some(), far_side)
    } else {
        (far_side, cursor.is_some())
    };
    keyset_page(
        conn,
        KeysetPage {
            kind,
            load,
            query,
            total: total as usize,
            has_next,
            has_prev,
        },
        rows,
    )
}

/// What a keyset page needs besides its rows.
pub(crate) struct KeysetPage<'a> {
    pub kind: Kind,
    pub load: Load,
    /// The query fingerprint the cursors carry.
    pub query: &'a str,
    pub total: usize,
    pub has_next: bool,
    pub has_prev: bool,
}

/// A page of rows in (created, id) order: cursors at its ends where the
/// walk goes on, and its resources.
pub(crate) fn keyset_page(
    conn: &mut AnyConnection,
    p: KeysetPage<'_>,
    rows: Vec<ResourceRow>,
) -> Result<Page, StoreError> {
    let make = |row: &ResourceRow, direction: Direction| {
        Cursor {
            direction,
            value: Value::Null,
            created: row.created.clone(),
            id: row.id.clone(),
            query: p.query.to_string(),
        }
        .encode()
    };
    let next = rows
        .last()
        .filter(|_| p.has_next)
        .map(|r| make(r, Direction::After));
    let prev = rows
        .first()
        .filter(|_| p.has_prev)
        .map(|r| make(r, Direction::Before));
    let mut resources = Vec::with_capacity(rows.len());
    for row in rows {
        resources.push(load_side(conn, p.kind, row, p.load)?);
    }
    Ok(Page {
        total: p.total,
        start_index: 1,
        resources,
        cursors: Some((next, prev)),
    })
}

/// Keeps only the members of a group that the app's scope admits.
fn restrict_members(
    conn: &mut AnyConnection,
    reg: &Registry,
    policy: &AppPolicy,
    tenant: &str,
    stored: &mut Stored,
) -> Result<(), StoreError> {
    let Some(members) = &mut stored.members else {
        return Ok(());
    };
    let mut keep = HashSet::new();
    for kind in [Kind::User, Kind::Group] {
        let ids: Vec<String> = members
            .iter()
            .filter(|m| m.member_type == kind.name())
            .map(|m| m.member_id.clone())
            .collect();
        if ids.is_empty() {
            continue;
        }
        let side = Load {
            members: false,
            groups: kind == Kind::User && policy.needs_groups(),
        };
        for row in store::find_resources_by_ids(conn, tenant, Some(kind.name()), &ids)? {
            let member = load_side(conn, kind, row, side)?;
            if policy.in_scope(reg, kind, &render(rt_of(reg, kind), &member, "")) {
                keep.insert(member.row.id.clone());
            }
        }
    }
    members.retain(|m| keep.contains(&m.member_id));
    Ok(())
}

/// A user read with its groups (no members: a user has none).
fn with_groups((row, groups): (ResourceRow, Vec<GroupRef>)) -> Stored {
    Stored {
        row: Arc::new(row),
        members: None,
        groups: Some(groups),
    }
}

/// Reads one resource with the side data `load` asks for. A user with its
/// groups is one statement (every GET of a user asks for them).
fn read_one(
    conn: &mut AnyConnection,
    tenant: &str,
    kind: Kind,
    id: &str,
    load: Load,
) -> Result<Stored, StoreError> {
    if kind == Kind::User && load.groups {
        return store::find_resource_with_groups(conn, tenant, kind.name(), id).map(with_groups);
    }
    let row = store::find_resource(conn, tenant, kind.name(), id)?;
    load_side(conn, kind, row, load)
}

/// Loads members / groups as asked.
pub(super) fn load_side(
    conn: &mut AnyConnection,
    kind: Kind,
    row: ResourceRow,
    load: Load,
) -> Result<Stored, StoreError> {
    let members = if kind == Kind::Group && load.members {
        Some(store::find_members(conn, &row.id)?)
    } else {
        None
    };
    let groups = if load.groups {
        Some(store::find_groups_of(conn, std::slice::from_ref(&row.id))?)
    } else {
        None
    };
    Ok(Stored {
        row: Arc::new(row),
        members,
        groups,
    })
}

/// Validates member ids against the tenant and adds them.
fn add_members(
    conn: &mut AnyConnection,
    tenant: &str,
    group_id: &str,
    members: &[MemberRef],
) -> Result<usize, StoreError> {
    let refs: Vec<&MemberRef> = members.iter().collect();
    let rows = membership::validate(conn, tenant, group_id, &refs)?;
    store::add_members(conn, group_id, &rows)
}

/// Writes a new version of a resource with its side tables and audit row.
#[expect(clippy::too_many_arguments, reason = "one write, many parts")]
fn save(
    conn: &mut AnyConnection,
    rt: &ResourceType,
    actor: &Actor,
    kind: Kind,
    old: ResourceRow,
    doc: Map<String, Value>,
    members: &[MemberChange],
    action: &str,
    doc_changed: bool,
    apps: &[String],
) -> Result<ResourceRow, StoreError> {
    let mut touched = membership::apply_changes(conn, &actor.tenant, &old.id, members, rt)?;
    if !doc_changed && touched.is_empty() {
        return Ok(old);
    }
    let at = now();
    if kind == Kind::Group && display_of(&doc) != old.display {
        // A rename changes every member's computed `groups[].display`.
        touched.extend(
            store::find_members(conn, &old.id)?
                .into_iter()
                .map(|m| m.member_id),
        );
    }
    touched.sort();
    touched.dedup();
    store::touch_resources(conn, &touched, &at)?;
    store::jobs::enqueue(conn, &actor.tenant, apps, &touched, &at)?;
    // A deactivation is a leaver: cut off ahead of routine work.
    let was_active = serde_json::from_str::<Value>(&old.data)
        .ok()
        .and_then(|d| d.get("active").and_then(Value::as_bool))
        != Some(false);
    let leaves = kind == Kind::User
        && was_active
        && doc.get("active").and_then(Value::as_bool) == Some(false);
    let priority = if leaves {
        store::jobs::priority::LEAVER
    } else {
        store::jobs::priority::NORMAL
    };
    store::jobs::enqueue_with(
        conn,
        &actor.tenant,
        apps,
        std::slice::from_ref(&old.id),
        &at,
        priority,
    )?;
    let row = ResourceRow {
        external_id: doc
            .get("externalId")
            .and_then(Value::as_str)
            .map(str::to_string),
        display: display_of(&doc),
        data: Value::Object(doc.clone()).to_string(),
        version: old.version + 1,
        last_modified: at.clone(),
        ..old
    };
    if doc_changed {
        store::replace_unique_keys(
            conn,
            &row.tenant,
            kind.name(),
            &row.id,
            &unique_keys(rt, &doc),
        )?;
        store::replace_index(
            conn,
            &row.tenant,
            kind.name(),
            &row.id,
            &index_entries(rt, &doc),
        )?;
    }
    store::update_resource(conn, &row)?;
    store::insert_audit(conn, &audit(actor, action, kind, &row.id, row.version, &at))?;
    Ok(row)
}
