//! Group membership changes of one request, written as their net effect.
//!
//! ```text
//!  [MemberChange] ──fold, in order, over the members they name──▶ before / now per id
//!                                         └──────── write ───────▶ delete (before, not now)
//!                                                                 insert (now, not before)
//! ```
//! Only the members an operation names are read (a remove-all or a filtered
//! remove reads them all), so adding one member to a large group still costs
//! one row. Every member added is validated at its step (it must exist in
//! the tenant, be of the type the client said, and not be the group), even
//! when a later step removes it again; a PATCH whose steps cancel out writes
//! nothing, so sending it twice changes nothing the second time.

use std::collections::HashMap;

use serde_json::json;

use super::filter::val_matches;
use super::normalize::MemberRef;
use super::patch::MemberChange;
use super::schema::ResourceType;
use crate::error::ScimError;
use crate::store::{self, AnyConnection, StoreError};

/// One member id the changes looked at.
#[derive(Debug, Clone, Default)]
struct Entry {
    /// A member before the request.
    before: bool,
    /// A member after the steps so far.
    now: bool,
    /// `User` or `Group`, once known.
    kind: Option<String>,
    /// Its display name, once read.
    display: Option<String>,
}

/// The membership of one group as the steps of a request leave it.
struct Net<'a> {
    conn: &'a mut AnyConnection,
    tenant: &'a str,
    group_id: &'a str,
    entries: HashMap<String, Entry>,
    /// Whether `entries` holds every member the group had.
    complete: bool,
}

impl Net<'_> {
    /// Reads whether the given ids are members, for those not known yet.
    fn look_up(&mut self, ids: &[String]) -> Result<(), StoreError> {
        if self.complete {
            return Ok(());
        }
        let unknown: Vec<String> = ids
            .iter()
            .filter(|id| !self.entries.contains_key(*id))
            .cloned()
            .collect();
        if unknown.is_empty() {
            return Ok(());
        }
        let members = store::find_member_ids(self.conn, self.group_id, &unknown)?;
        for id in unknown {
            let member = members.contains(&id);
            self.entries.insert(
                id,
                Entry {
                    before: member,
                    now: member,
                    ..Entry::default()
                },
            );
        }
        Ok(())
    }

    /// Reads every member, with its type and display name.
    fn load_all(&mut self) -> Result<(), StoreError> {
        if self.complete {
            return Ok(());
        }
        for row in store::find_members(self.conn, self.group_id)? {
            let e = self.entries.entry(row.member_id).or_insert(Entry {
                before: true,
                now: true,
                ..Entry::default()
            });
            e.kind = Some(row.member_type);
            e.display = row.display;
        }
        self.complete = true;
        Ok(())
    }

    fn add(&mut self, refs: &[MemberRef]) -> Result<(), StoreError> {
        let ids: Vec<String> = refs.iter().map(|m| m.value.clone()).collect();
        self.look_up(&ids)?;
        let fresh: Vec<&MemberRef> = refs
            .iter()
            .filter(|m| !self.entries.get(&m.value).is_some_and(|e| e.now))
            .collect();
        for (id, kind) in validate(self.conn, self.tenant, self.group_id, &fresh)? {
            let e = self.entries.entry(id).or_default();
            e.now = true;
            e.kind = Some(kind);
        }
        Ok(())
    }

    fn remove(&mut self, ids: &[String]) -> Result<(), StoreError> {
        self.look_up(ids)?;
        for id in ids {
            if let Some(e) = self.entries.get_mut(id) {
                e.now = false;
            }
        }
        Ok(())
    }

    fn remove_all(&mut self) -> Result<(), StoreError> {
        self.load_all()?;
        self.entries.values_mut().for_each(|e| e.now = false);
        Ok(())
    }

    fn remove_where(
        &mut self,
        rt: &ResourceType,
        filter: &scim_v2::filter::ValFilter,
    ) -> Result<(), StoreError> {
        let Some(def) = rt.schema.attr("members") else {
            return Ok(());
        };
        self.load_all()?;
        // Members added by earlier steps: their display names are not read yet.
        let missing: Vec<String> = self
            .entries
            .iter()
            .filter(|(_, e)| e.now && !e.before && e.display.is_none())
            .map(|(id, _)| id.clone())
            .collect();
        for (id, display) in store::find_displays(self.conn, &missing)? {
            if let Some(e) = self.entries.get_mut(&id) {
                e.display = display;
            }
        }
        for (id, e) in self.entries.iter_mut().filter(|(_, e)| e.now) {
            let element = json!({"value": id, "display": e.display, "type": e.kind});
            if val_matches(def, filter, &element) {
                e.now = false;
            }
        }
        Ok(())
    }

    /// Writes the difference; returns the ids whose membership changed.
    fn write(self) -> Result<Vec<String>, StoreError> {
        let mut gone = Vec::new();
        let mut fresh = Vec::new();
        for (id, e) in self.entries {
            match (e.before, e.now, e.kind) {
                (true, false, _) => gone.push(id),
                (false, true, Some(kind)) => fresh.push((id, kind)),
                _ => {}
            }
        }
        gone.sort();
        fresh.sort();
        store::delete_members(self.conn, self.group_id, &gone)?;
        // Looked up under the group's row lock: none of them is a member.
        store::insert_members(self.conn, self.group_id, &fresh)?;
        gone.extend(fresh.into_iter().map(|(id, _)| id));
        Ok(gone)
    }
}

/// Applies a request's membership changes to a group; returns the members
/// whose membership changed (their computed `groups` changed too).
pub fn apply_changes(
    conn: &mut AnyConnection,
    tenant: &str,
    group_id: &str,
    changes: &[MemberChange],
    rt: &ResourceType,
) -> Result<Vec<String>, StoreError> {
    if changes.is_empty() {
        return Ok(Vec::new());
    }
    let mut net = Net {
        conn,
        tenant,
        group_id,
        entries: HashMap::new(),
        complete: false,
    };
    for change in changes {
        match change {
            MemberChange::Add(refs) => net.add(refs)?,
            MemberChange::Remove(ids) => net.remove(ids)?,
            MemberChange::RemoveAll => net.remove_all()?,
            MemberChange::RemoveWhere(f) => net.remove_where(rt, f)?,
        }
    }
    net.write()
}

/// Checks members to be added: each exists in the tenant, is of the type
/// the client gave (if any) and is not the group itself. Returns `(id, type)`.
pub fn validate(
    conn: &mut AnyConnection,
    tenant: &str,
    group_id: &str,
    members: &[&MemberRef],
) -> Result<Vec<(String, String)>, StoreError> {
    if members.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<String> = members.iter().map(|m| m.value.clone()).collect();
    let kinds: HashMap<String, String> =
        store::find_kinds(conn, tenant, &ids)?.into_iter().collect();
    let mut rows = Vec::with_capacity(members.len());
    for m in members {
        if m.value == group_id {
            return Err(ScimError::invalid_value("A group cannot be a member of itself.").into());
        }
        let Some(kind) = kinds.get(&m.value) else {
            return Err(
                ScimError::invalid_value(format!("Member '{}' does not exist.", m.value)).into(),
            );
        };
        if let Some(t) = &m.kind
            && t != kind
        {
            return Err(ScimError::invalid_value(format!(
                "Member '{}' is a {kind}, not a {t}.",
                m.value
            ))
            .into());
        }
        rows.push((m.value.clone(), kind.clone()));
    }
    Ok(rows)
}
