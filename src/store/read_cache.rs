//! Users as GET by id reads them, kept in memory (SQLite only).
//!
//! A GET of a user reads its row and its groups from the database: a WAL
//! read transaction (two `fcntl` calls on the shared-memory index, a futex
//! when both workers read at once), five B-tree searches and diesel's
//! rows. Served from here instead, the same answer costs a hash look-up
//! and a copy.
//!
//! # Staying exact
//! Nothing is ever served that a committed write has changed, because the
//! writer connection itself reports every change: [`ReadCache::watch`]
//! gives it `TEMP` triggers (they exist on that connection only) on the
//! two tables a user's GET reads, `resources` and `group_members`. They
//! fire for every statement the writer runs, whoever wrote it, and for the
//! rows a foreign key's `ON DELETE CASCADE` removes; a group's rename
//! reports each of its members, whose `groups[].display` changes with it.
//! After the batch's COMMIT, and before any of its writes is answered, the
//! writer drops what was reported ([`ReadCache::settle`]).
//!
//! A read that missed may race a write: it read the old row, the write
//! commits and settles, then the read would store the old row. Every id
//! hashes to a gate whose generation `settle` bumps; a read notes the
//! generation before it asks the database and stores its row only if the
//! generation is still the same ([`Ticket`]). A read that noted the
//! generation after a settle began its read transaction after that
//! settle's commit, so it saw the write.
//!
//! Between a COMMIT and its settle a hit may still return the row from
//! before: its write has not been acknowledged yet, so that read was
//! concurrent with it.
//!
//! # Other processes
//! Triggers see only this process's writes. What another process commits
//! (the CLI's `reconcile` or `audit prune`, which change neither table; a
//! hand-made change) moves SQLite's `PRAGMA data_version` on the writer's
//! connection, which the writer reads at the start of every batch and,
//! while idle, every second ([`ReadCache::others`]): when it moved, the
//! whole cache is dropped, as the writer cannot know what changed. So a
//! change made elsewhere is served within about a second, not at once.
//! (PostgreSQL, where several gateways share a database, has no cache.)
//!
//! # Size
//! The cache is bounded in bytes (`[database] read_cache_mib`, 0 turns it
//! off) and evicts with S3-FIFO (`quick_cache`), so a scan through every
//! user does not flush the ones read often.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use diesel::SqliteConnection;
use diesel::connection::SimpleConnection;
use quick_cache::Weighter;
use quick_cache::sync::Cache;

use super::{GroupRef, ResourceRow, StoreError};

/// A user as its GET reads it: its row and the groups it is a direct
/// member of.
#[derive(Debug)]
pub struct Cached {
    /// The row, shared with the responses built from it.
    pub row: Arc<ResourceRow>,
    /// Its groups, in [`super::find_resource_with_groups`]'s order.
    pub groups: Vec<GroupRef>,
    /// What keeping it costs, in bytes (roughly).
    weight: u64,
}

impl Cached {
    /// Wraps what the database read.
    pub fn new(row: ResourceRow, groups: Vec<GroupRef>) -> Self {
        let text = |s: &Option<String>| s.as_ref().map_or(0, String::len);
        let row_bytes = row.id.len()
            + row.tenant.len()
            + row.resource_type.len()
            + text(&row.external_id)
            + text(&row.display)
            + row.data.len()
            + row.created.len()
            + row.last_modified.len();
        // A reference's struct and its three allocations' headers.
        let group_bytes: usize = groups
            .iter()
            .map(|g| g.member_id.len() + g.group_id.len() + text(&g.display) + 128)
            .sum();
        // The key (a copy of the id), allocation headers, the Arc and the
        // table's slot.
        let weight = (row_bytes + row.id.len() + group_bytes + 320) as u64;
        Self {
            row: Arc::new(row),
            groups,
            weight,
        }
    }
}

#[derive(Clone)]
struct ByBytes;

impl Weighter<String, Arc<Cached>> for ByBytes {
    fn weight(&self, _: &String, val: &Arc<Cached>) -> u64 {
        val.weight
    }
}

/// Number of generation gates; ids hash onto them.
const GATES: usize = 256;

/// Above this many changed ids in one batch (a group's rename or deletion
/// reports every member), [`ReadCache::settle`] empties the cache instead
/// of dropping them one by one, and the ids are no longer collected.
const CLEAR_ABOVE: usize = 4096;

/// What a read noted before asking the database; see the module docs.
#[derive(Debug, Clone, Copy)]
pub struct Ticket {
    gate: usize,
    generation: u64,
}

/// The cache; one per [`super::Db`].
pub struct ReadCache {
    entries: Cache<String, Arc<Cached>, ByBytes>,
    /// Heaviest user kept: a shard's eighth, so that one large document
    /// never pushes out thousands of users.
    largest: u64,
    gates: Box<[Mutex<u64>]>,
    hasher: std::collections::hash_map::RandomState,
    /// What the writer's triggers reported during the current batch.
    changed: Arc<Mutex<Changed>>,
    /// `PRAGMA data_version` on the writer's connection when last read.
    others: Mutex<Option<i64>>,
    hits: AtomicU64,
    misses: AtomicU64,
}

/// What the writer's triggers reported.
#[derive(Default)]
struct Changed {
    ids: Vec<String>,
    /// More than [`CLEAR_ABOVE`] ids: drop everything.
    all: bool,
}

#[derive(diesel::QueryableByName)]
struct DataVersion {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    data_version: i64,
}

diesel::define_sql_function! {
    /// Reports a changed resource id to the read cache (the writer's
    /// connection only, see [`ReadCache::watch`]).
    fn scim_gateway_changed(id: diesel::sql_types::Text) -> diesel::sql_types::Integer;
}

/// The triggers [`ReadCache::watch`] creates: every row of `resources` and
/// `group_members` that changes reports the user whose GET it changes.
const TRIGGERS: &str = "
CREATE TEMP TRIGGER IF NOT EXISTS read_cache_resource_insert AFTER INSERT ON main.resources
BEGIN SELECT scim_gateway_changed(new.id); END;
CREATE TEMP TRIGGER IF NOT EXISTS read_cache_resource_update AFTER UPDATE ON main.resources
BEGIN
    SELECT scim_gateway_changed(old.id);
    SELECT scim_gateway_changed(new.id) WHERE new.id IS NOT old.id;
END;
CREATE TEMP TRIGGER IF NOT EXISTS read_cache_resource_delete AFTER DELETE ON main.resources
BEGIN SELECT scim_gateway_changed(old.id); END;
CREATE TEMP TRIGGER IF NOT EXISTS read_cache_group_rename AFTER UPDATE OF display ON main.resources
WHEN new.display IS NOT old.display
BEGIN SELECT scim_gateway_changed(member_id) FROM main.group_members WHERE group_id = new.id; END;
CREATE TEMP TRIGGER IF NOT EXISTS read_cache_member_insert AFTER INSERT ON main.group_members
BEGIN SELECT scim_gateway_changed(new.member_id); END;
CREATE TEMP TRIGGER IF NOT EXISTS read_cache_member_update AFTER UPDATE ON main.group_members
BEGIN
    SELECT scim_gateway_changed(old.member_id);
    SELECT scim_gateway_changed(new.member_id);
END;
CREATE TEMP TRIGGER IF NOT EXISTS read_cache_member_delete AFTER DELETE ON main.group_members
BEGIN SELECT scim_gateway_changed(old.member_id); END;
";

impl ReadCache {
    /// A cache of at most `bytes`.
    pub fn new(bytes: u64) -> Self {
        let estimated = usize::try_from(bytes / 1024).unwrap_or(usize::MAX).max(16);
        let entries = Cache::with_weighter(estimated, bytes, ByBytes);
        Self {
            largest: entries.shard_capacity() / 8,
            entries,
            gates: (0..GATES).map(|_| Mutex::new(0)).collect(),
            hasher: std::collections::hash_map::RandomState::new(),
            changed: Arc::default(),
            others: Mutex::new(None),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// The user with this id, if kept.
    pub fn get(&self, id: &str) -> Option<Arc<Cached>> {
        let found = self.entries.get(id);
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// Notes the generation of `id`'s gate: call before reading it from
    /// the database, and give the ticket to [`ReadCache::put`].
    pub fn ticket(&self, id: &str) -> Ticket {
        let gate = self.gate(id);
        let generation = *lock(&self.gates[gate]);
        Ticket { gate, generation }
    }

    /// Keeps what a read found, unless a write to its gate has settled
    /// since the read's ticket was taken.
    pub fn put(&self, ticket: Ticket, found: Arc<Cached>) {
        if found.weight > self.largest {
            return;
        }
        let generation = lock(&self.gates[ticket.gate]);
        if *generation == ticket.generation {
            self.entries.insert(found.row.id.clone(), found);
        }
    }

    /// Makes the writer's connection report every change to what a GET of
    /// a user reads. Call on each connection the writer opens, before its
    /// first write. What happened while the writer had no connection is
    /// unknown, so everything kept is dropped.
    pub fn watch(&self, conn: &mut SqliteConnection) -> Result<(), StoreError> {
        let changed = self.changed.clone();
        scim_gateway_changed_utils::register_nondeterministic_impl(conn, move |id: String| {
            let mut changed = changed.lock().unwrap_or_else(PoisonError::into_inner);
            if changed.ids.len() < CLEAR_ABOVE {
                changed.ids.push(id);
            } else {
                changed.all = true;
            }
            0
        })?;
        conn.batch_execute(TRIGGERS)?;
        *lock(&self.others) = Some(data_version(conn)?);
        self.clear();
        Ok(())
    }

    /// Drops everything kept if another connection (another process)
    /// committed since the last call on this writer connection.
    pub fn others(&self, conn: &mut SqliteConnection) -> Result<(), StoreError> {
        let now = data_version(conn)?;
        let before = lock(&self.others).replace(now);
        if before != Some(now) {
            tracing::debug!("another process changed the database; the read cache starts over");
            self.clear();
        }
        Ok(())
    }

    /// Drops every user the writer reported changed since the last call.
    /// The writer calls it after each batch's COMMIT (or rollback), before
    /// answering any write of the batch.
    pub fn settle(&self) {
        let changed = std::mem::take(&mut *lock(&self.changed));
        if changed.all {
            return self.clear();
        }
        for id in changed.ids {
            let mut generation = lock(&self.gates[self.gate(&id)]);
            *generation += 1;
            self.entries.remove(id.as_str());
        }
    }

    /// Drops everything. Each gate is moved on before the entries go: a
    /// read with an older ticket then either fails its check or stored
    /// its row before, and the clear takes it.
    fn clear(&self) {
        for gate in self.gates.iter() {
            *lock(gate) += 1;
        }
        self.entries.clear();
    }

    /// Reads served from the cache and reads that went to the database.
    pub fn hits_and_misses(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }

    /// Users kept, and their weight in bytes.
    pub fn size(&self) -> (usize, u64) {
        (self.entries.len(), self.entries.weight())
    }

    fn gate(&self, id: &str) -> usize {
        (self.hasher.hash_one(id) % GATES as u64) as usize
    }
}

/// What `PRAGMA data_version` says on this connection.
fn data_version(conn: &mut SqliteConnection) -> Result<i64, StoreError> {
    use diesel::RunQueryDsl;
    Ok(diesel::sql_query("PRAGMA data_version")
        .get_result::<DataVersion>(conn)?
        .data_version)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use diesel::connection::SimpleConnection;
    use diesel::{Connection, SqliteConnection};

    use super::{CLEAR_ABOVE, Cached, ReadCache};
    use crate::store::{AnyConnection, ResourceRow, run_migrations};

    fn row(id: &str, data: &str) -> ResourceRow {
        ResourceRow {
            id: id.into(),
            tenant: "t".into(),
            resource_type: "User".into(),
            external_id: None,
            display: None,
            data: data.into(),
            version: 1,
            created: "2026-11-27T00:00:00Z".into(),
            last_modified: "2026-11-27T00:00:00Z".into(),
        }
    }

    fn cached(id: &str) -> Arc<Cached> {
        Arc::new(Cached::new(row(id, "{}"), Vec::new()))
    }

    /// A migrated in-memory database whose connection the cache watches,
    /// with users u1..u3 and group g (display G) holding u1 and u2.
    fn watched(cache: &ReadCache) -> anyhow::Result<SqliteConnection> {
        let mut any = AnyConnection::Sqlite(SqliteConnection::establish(":memory:")?);
        run_migrations(&mut any)?;
        let AnyConnection::Sqlite(mut c) = any else {
            anyhow::bail!("SQLite only");
        };
        c.batch_execute(
            "PRAGMA foreign_keys = ON;
             INSERT INTO resources (id, tenant, resource_type, display, data, version, created, last_modified)
             VALUES ('u1', 't', 'User', NULL, '{}', 1, 'x', 'x'),
                    ('u2', 't', 'User', NULL, '{}', 1, 'x', 'x'),
                    ('u3', 't', 'User', NULL, '{}', 1, 'x', 'x'),
                    ('g', 't', 'Group', 'G', '{}', 1, 'x', 'x');
             INSERT INTO group_members (group_id, member_id, member_type)
             VALUES ('g', 'u1', 'User'), ('g', 'u2', 'User');",
        )?;
        cache.watch(&mut c)?;
        Ok(c)
    }

    /// Which ids the writer's triggers reported since the last call.
    fn reported(cache: &ReadCache) -> Vec<String> {
        let mut ids = std::mem::take(&mut super::lock(&cache.changed).ids);
        ids.sort();
        ids.dedup();
        ids
    }

    #[test]
    fn every_change_to_what_a_users_get_reads_is_reported() -> anyhow::Result<()> {
        let cache = ReadCache::new(1 << 20);
        let mut c = watched(&cache)?;
        c.batch_execute("UPDATE resources SET data = '{\"a\":1}', version = 2 WHERE id = 'u3'")?;
        assert_eq!(reported(&cache), ["u3"]);
        // A group written without a new name (every member change does
        // that) reports itself, not its members.
        c.batch_execute("UPDATE resources SET display = 'G', version = 2 WHERE id = 'g'")?;
        assert_eq!(reported(&cache), ["g"]);
        // A rename changes every member's groups[].display.
        c.batch_execute("UPDATE resources SET display = 'H' WHERE id = 'g'")?;
        assert_eq!(reported(&cache), ["g", "u1", "u2"]);
        c.batch_execute(
            "INSERT INTO group_members (group_id, member_id, member_type) VALUES ('g', 'u3', 'User')",
        )?;
        assert_eq!(reported(&cache), ["u3"]);
        c.batch_execute("DELETE FROM group_members WHERE member_id = 'u1'")?;
        assert_eq!(reported(&cache), ["u1"]);
        // Deleting the group removes its memberships by ON DELETE CASCADE.
        c.batch_execute("DELETE FROM resources WHERE id = 'g'")?;
        assert_eq!(reported(&cache), ["g", "u2", "u3"]);
        c.batch_execute(
            "INSERT INTO resources (id, tenant, resource_type, data, version, created, last_modified)
             VALUES ('u4', 't', 'User', '{}', 1, 'x', 'x')",
        )?;
        assert_eq!(reported(&cache), ["u4"]);
        // Tables a GET does not read report nothing.
        c.batch_execute(
            "INSERT INTO audit_events (at, actor, action, outcome) VALUES ('x', 'a', 'b', 'success')",
        )?;
        assert!(reported(&cache).is_empty());
        Ok(())
    }

    #[test]
    fn a_settled_change_drops_the_user_and_a_read_from_before_it_is_not_kept() -> anyhow::Result<()>
    {
        let cache = ReadCache::new(1 << 20);
        let mut c = watched(&cache)?;
        let before = cache.ticket("u1");
        cache.put(cache.ticket("u2"), cached("u2"));
        cache.put(cache.ticket("u3"), cached("u3"));
        assert!(cache.get("u2").is_some());
        c.batch_execute("DELETE FROM group_members WHERE member_id = 'u2'")?;
        // Reported, but not dropped before the writer settles.
        assert!(cache.get("u2").is_some());
        c.batch_execute("UPDATE resources SET version = 2 WHERE id = 'u1'")?;
        cache.settle();
        assert!(cache.get("u2").is_none());
        assert!(cache.get("u3").is_some(), "an unchanged user stays");
        // A read that took its ticket before u1's change settled read u1
        // as it was: it must not be kept. One after it is.
        cache.put(before, cached("u1"));
        assert!(cache.get("u1").is_none());
        cache.put(cache.ticket("u1"), cached("u1"));
        assert!(cache.get("u1").is_some());
        assert_eq!(cache.hits_and_misses(), (4, 2));
        Ok(())
    }

    #[test]
    fn a_large_batch_empties_the_cache_and_stales_every_ticket() -> anyhow::Result<()> {
        let cache = ReadCache::new(1 << 20);
        let mut c = watched(&cache)?;
        // Users m1..m4097 in group g, which then holds CLEAR_ABOVE + 3.
        c.batch_execute(&format!(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i <= {CLEAR_ABOVE})
             INSERT INTO resources (id, tenant, resource_type, data, version, created, last_modified)
             SELECT 'm' || i, 't', 'User', '{{}}', 1, 'x', 'x' FROM n;
             INSERT INTO group_members (group_id, member_id, member_type)
             SELECT 'g', id, 'User' FROM resources WHERE id LIKE 'm%';"
        ))?;
        cache.settle();
        let before = cache.ticket("u9");
        cache.put(cache.ticket("u3"), cached("u3"));
        // Its rename reports every member: too many to drop one by one.
        c.batch_execute("UPDATE resources SET display = 'big' WHERE id = 'g'")?;
        {
            let changed = super::lock(&cache.changed);
            assert!(changed.all && changed.ids.len() == CLEAR_ABOVE);
        }
        cache.settle();
        assert!(cache.get("u3").is_none(), "u3 is in no group, but all went");
        cache.put(before, cached("u9"));
        assert!(cache.get("u9").is_none());
        assert!(super::lock(&cache.changed).ids.is_empty());
        Ok(())
    }

    /// What another connection (another process) commits cannot be told
    /// apart: the writer drops everything when it sees one.
    #[test]
    fn a_commit_by_another_connection_empties_the_cache() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("db.sqlite");
        let path = path.to_str().unwrap_or_default();
        let mut any = AnyConnection::Sqlite(SqliteConnection::establish(path)?);
        run_migrations(&mut any)?;
        let AnyConnection::Sqlite(mut mine) = any else {
            anyhow::bail!("SQLite only");
        };
        mine.batch_execute("PRAGMA journal_mode = WAL")?;
        let cache = ReadCache::new(1 << 20);
        cache.watch(&mut mine)?;
        cache.put(cache.ticket("u1"), cached("u1"));
        // Nothing committed elsewhere; this connection's own commits
        // (reported by its triggers) do not count as another's.
        mine.batch_execute(
            "INSERT INTO resources (id, tenant, resource_type, data, version, created, last_modified)
             VALUES ('u2', 't', 'User', '{}', 1, 'x', 'x')",
        )?;
        cache.settle();
        cache.others(&mut mine)?;
        assert!(cache.get("u1").is_some());
        let mut other = SqliteConnection::establish(path)?;
        other.batch_execute("UPDATE resources SET version = 2 WHERE id = 'u2'")?;
        assert!(cache.get("u1").is_some(), "not before the writer looks");
        cache.others(&mut mine)?;
        assert!(cache.get("u1").is_none());
        Ok(())
    }

    #[test]
    fn the_cache_keeps_to_its_bytes_and_skips_a_document_too_large_to_share_it() {
        let cache = ReadCache::new(64 * 1024);
        let huge = Arc::new(Cached::new(row("big", &"x".repeat(16 * 1024)), Vec::new()));
        cache.put(cache.ticket("big"), huge);
        assert!(cache.get("big").is_none());
        for i in 0..1000 {
            let id = format!("u{i}");
            cache.put(cache.ticket(&id), cached(&id));
        }
        let (users, bytes) = cache.size();
        assert!(bytes <= 64 * 1024, "{bytes} bytes kept");
        assert!(users > 50 && users < 1000, "{users} users kept");
    }
}
