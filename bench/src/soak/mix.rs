//! The soak's mixed workload: reads, user writes and group changes drawn by
//! weight, over the loaded users and a few groups of moderate size.
//!
//! Requests that change state keep the data set steady, so that memory
//! growth over a long run cannot be blamed on a growing data set:
//!
//! ```text
//! create ──201──▶ created (FIFO) ──oldest──▶ delete     (none left: create instead)
//! group g: spare ──add──▶ members ──remove──▶ spare     (add while size ≤ start, else remove)
//! ```
//!
//! An id is out of both queues while its request is in flight, so no two
//! requests ever race on one member; a failed change puts it back where it
//! was.

use std::collections::VecDeque;
use std::fmt;
use std::ops::Range;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use hyper::{Method, StatusCode};
use rand::Rng;
use rand::rngs::SmallRng;

use super::lock;
use crate::client::{Call, Reply};
use crate::measure::Work;
use crate::ops;

/// The mix when `--mix` is not given: 60 % reads, 25 % user writes (creates
/// and deletes balanced), 15 % group membership changes.
pub const DEFAULT_MIX: &str = "get=25,filter=20,list=15,create=8,patch=9,delete=8,member=15";
/// Users per `GET /Users` list page.
const LIST_PAGE: usize = 50;

/// An entry of the mix, as named in `--mix`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// GET a loaded user by id.
    Get,
    /// Filter `userName eq` a loaded user.
    Filter,
    /// A page of `GET /Users` at a random offset.
    List,
    /// POST a new user.
    Create,
    /// PATCH a loaded user's title.
    Patch,
    /// DELETE the oldest user the soak created.
    Delete,
    /// Add a member to a group, or remove one.
    Member,
}

impl Entry {
    const ALL: [Entry; 7] = [
        Entry::Get,
        Entry::Filter,
        Entry::List,
        Entry::Create,
        Entry::Patch,
        Entry::Delete,
        Entry::Member,
    ];

    fn name(self) -> &'static str {
        match self {
            Entry::Get => "get",
            Entry::Filter => "filter",
            Entry::List => "list",
            Entry::Create => "create",
            Entry::Patch => "patch",
            Entry::Delete => "delete",
            Entry::Member => "member",
        }
    }
}

/// What a request really was (a `member` entry becomes an add or a remove;
/// a `delete` with nothing to delete becomes a create).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `GET /Users/{id}`.
    GetUser,
    /// `GET /Users?filter=userName eq "…"`.
    FilterUserName,
    /// `GET /Users?startIndex=…&count=50`.
    ListPage,
    /// `POST /Users`.
    CreateUser,
    /// `PATCH /Users/{id}` replacing `title`.
    PatchUser,
    /// `DELETE /Users/{id}`.
    DeleteUser,
    /// `PATCH /Groups/{id}` adding one member.
    AddMember,
    /// `PATCH /Groups/{id}` removing one member.
    RemoveMember,
}

impl Kind {
    /// Every kind, in report order.
    pub const ALL: [Kind; 8] = [
        Kind::GetUser,
        Kind::FilterUserName,
        Kind::ListPage,
        Kind::CreateUser,
        Kind::PatchUser,
        Kind::DeleteUser,
        Kind::AddMember,
        Kind::RemoveMember,
    ];

    /// Position in [`Kind::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The report's label.
    pub fn label(self) -> &'static str {
        match self {
            Kind::GetUser => "GET /Users/{id}",
            Kind::FilterUserName => "GET /Users?filter=userName eq",
            Kind::ListPage => "GET /Users?startIndex&count=50",
            Kind::CreateUser => "POST /Users",
            Kind::PatchUser => "PATCH /Users/{id} replace title",
            Kind::DeleteUser => "DELETE /Users/{id}",
            Kind::AddMember => "PATCH /Groups/{id} add member",
            Kind::RemoveMember => "PATCH /Groups/{id} remove member",
        }
    }

    fn expected(self) -> StatusCode {
        match self {
            Kind::CreateUser => StatusCode::CREATED,
            Kind::DeleteUser | Kind::AddMember | Kind::RemoveMember => StatusCode::NO_CONTENT,
            _ => StatusCode::OK,
        }
    }
}

/// The weights of the entries, from `--mix name=weight,…` (entries left
/// out weigh 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Weights(Vec<(Entry, u32)>);

impl Weights {
    /// Parses `get=25,filter=20,…`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut weights = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, weight) = part
                .split_once('=')
                .ok_or_else(|| format!("'{part}' is not name=weight"))?;
            let entry = Entry::ALL
                .into_iter()
                .find(|e| e.name() == name.trim())
                .ok_or_else(|| {
                    let names: Vec<&str> = Entry::ALL.iter().map(|e| e.name()).collect();
                    format!("unknown entry '{name}' (known: {})", names.join(", "))
                })?;
            let weight: u32 = weight
                .trim()
                .parse()
                .map_err(|_| format!("weight of '{name}' is not a whole number"))?;
            if weights.iter().any(|(e, _)| *e == entry) {
                return Err(format!("'{name}' is given twice"));
            }
            weights.push((entry, weight));
        }
        weights.retain(|(_, w)| *w > 0);
        if weights.is_empty() {
            return Err("the mix needs at least one entry with a weight above 0".into());
        }
        if weights.iter().map(|(_, w)| u64::from(*w)).sum::<u64>() > u64::from(u32::MAX) {
            return Err("the weights add up to too much".into());
        }
        Ok(Self(weights))
    }

    fn total(&self) -> u32 {
        self.0.iter().map(|(_, w)| w).sum()
    }

    /// The entry that `r` (uniform in `0..total`) falls on.
    fn pick(&self, mut r: u32) -> Entry {
        for &(entry, weight) in &self.0 {
            if r < weight {
                return entry;
            }
            r -= weight;
        }
        // Only reached when r ≥ total, which `draw` never passes.
        self.0.last().map_or(Entry::Get, |(e, _)| *e)
    }

    fn draw(&self, rng: &mut impl Rng) -> Entry {
        self.pick(rng.random_range(0..self.total()))
    }

    fn weight(&self, entry: Entry) -> u32 {
        self.0
            .iter()
            .find(|(e, _)| *e == entry)
            .map_or(0, |(_, w)| *w)
    }
}

impl fmt::Display for Weights {
    /// As percentages: `get 25 %, filter 20 %, …`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total = f64::from(self.total());
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|(e, w)| format!("{} {:.0} %", e.name(), f64::from(*w) * 100.0 / total))
            .collect();
        f.write_str(&parts.join(", "))
    }
}

/// Which loaded users (by index) start as members of each group, and which
/// are its spares: group g takes the g-th run of `2 × size` users.
pub fn group_layout(users: usize, groups: usize, size: usize) -> Vec<(Range<usize>, Range<usize>)> {
    let size = size.min(users / (2 * groups.max(1)));
    (0..groups)
        .map(|g| {
            let start = g * 2 * size;
            (start..start + size, start + size..start + 2 * size)
        })
        .collect()
}

/// One group's membership as the soak knows it.
struct Group {
    id: String,
    /// Starting size, kept by alternating adds and removes.
    size: usize,
    members: VecDeque<String>,
    spare: VecDeque<String>,
}

/// Whether to add a member (and who) or remove one, keeping the size near
/// its start; `None` when the group has neither members nor spares.
fn member_change(group: &mut Group) -> Option<(bool, String)> {
    if group.members.len() > group.size || group.spare.is_empty() {
        group.members.pop_front().map(|id| (false, id))
    } else {
        group.spare.pop_front().map(|id| (true, id))
    }
}

/// What a request must remember until its answer.
pub struct Ticket {
    kind: Kind,
    /// The group (index) and user of a membership change, or the user of a
    /// delete.
    group: Option<usize>,
    user: Option<String>,
}

impl Ticket {
    /// What the request was.
    pub fn kind(&self) -> Kind {
        self.kind
    }
}

/// The mixed workload over the loaded data.
pub struct Mix {
    weights: Weights,
    /// Id of loaded user `i` at index `i`.
    users: Vec<String>,
    groups: Vec<Mutex<Group>>,
    /// Users the soak created and has not deleted yet, oldest first.
    created: Mutex<VecDeque<String>>,
    seq: AtomicU64,
}

impl Mix {
    /// A mix over `users` (loaded user ids) and `groups`: `(group id,
    /// starting members, spares)`.
    pub fn new(
        weights: Weights,
        users: Vec<String>,
        groups: Vec<(String, Vec<String>, Vec<String>)>,
    ) -> Self {
        let groups = groups
            .into_iter()
            .map(|(id, members, spare)| {
                Mutex::new(Group {
                    id,
                    size: members.len(),
                    members: members.into(),
                    spare: spare.into(),
                })
            })
            .collect();
        Self {
            weights,
            users,
            groups,
            created: Mutex::new(VecDeque::new()),
            seq: AtomicU64::new(0),
        }
    }

    /// Whether the mix changes group membership (and so needs groups).
    pub fn has_member_changes(weights: &Weights) -> bool {
        weights.weight(Entry::Member) > 0
    }

    /// Users the soak created and still holds (each one deleted later).
    pub fn created_alive(&self) -> usize {
        lock(&self.created).len()
    }

    fn ticket(kind: Kind) -> Ticket {
        Ticket {
            kind,
            group: None,
            user: None,
        }
    }

    fn create(&self) -> (Call, Ticket) {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        (ops::create_user(n), Self::ticket(Kind::CreateUser))
    }

    fn member(&self, rng: &mut SmallRng) -> Option<(Call, Ticket)> {
        if self.groups.is_empty() {
            return None;
        }
        let g = rng.random_range(0..self.groups.len());
        let mut group = lock(&self.groups[g]);
        let (add, user) = member_change(&mut group)?;
        let (call, kind) = if add {
            (ops::add_member(&group.id, &user), Kind::AddMember)
        } else {
            (ops::remove_member(&group.id, &user), Kind::RemoveMember)
        };
        let ticket = Ticket {
            kind,
            group: Some(g),
            user: Some(user),
        };
        Some((call, ticket))
    }
}

impl Work for Mix {
    type Ticket = Ticket;

    fn next_call(&self, rng: &mut SmallRng) -> (Call, Ticket) {
        let i = rng.random_range(0..self.users.len().max(1));
        let loaded = self.users.get(i).map_or("", String::as_str);
        let read = |kind, call| (call, Self::ticket(kind));
        match self.weights.draw(rng) {
            Entry::Get => read(Kind::GetUser, ops::get_user(loaded)),
            Entry::Filter => read(Kind::FilterUserName, ops::filter_user_name(i)),
            Entry::List => read(
                Kind::ListPage,
                Call::get(format!(
                    "/scim/v2/Users?startIndex={}&count={LIST_PAGE}",
                    i + 1
                )),
            ),
            Entry::Create => self.create(),
            Entry::Patch => {
                let n = self.seq.fetch_add(1, Ordering::Relaxed);
                read(Kind::PatchUser, ops::patch_title(loaded, n))
            }
            Entry::Delete => match lock(&self.created).pop_front() {
                Some(id) => {
                    let call = Call {
                        method: Method::DELETE,
                        path: format!("/scim/v2/Users/{id}"),
                        body: None,
                        minimal: false,
                    };
                    let mut ticket = Self::ticket(Kind::DeleteUser);
                    ticket.user = Some(id);
                    (call, ticket)
                }
                None => self.create(),
            },
            Entry::Member => self
                .member(rng)
                .unwrap_or_else(|| read(Kind::GetUser, ops::get_user(loaded))),
        }
    }

    fn settle(&self, ticket: Ticket, reply: Option<&Reply>) -> bool {
        let kind = ticket.kind;
        let accepted = reply.is_some_and(|r| {
            r.status == kind.expected()
                && match kind {
                    Kind::FilterUserName => ops::is_single_match(r),
                    Kind::ListPage => ops::total_results(&r.body).is_some(),
                    _ => true,
                }
        });
        match (kind, ticket.group, ticket.user) {
            (Kind::CreateUser, ..) if accepted => {
                if let Some(id) = reply.and_then(|r| ops::created_id(&r.body)) {
                    lock(&self.created).push_back(id);
                }
            }
            (Kind::AddMember | Kind::RemoveMember, Some(g), Some(user)) => {
                let mut group = lock(&self.groups[g]);
                // Where the user is now, as far as the soak knows.
                let member = (kind == Kind::AddMember) == accepted;
                if member {
                    group.members.push_back(user);
                } else {
                    group.spare.push_back(user);
                }
            }
            // A failed delete is not retried: the user may or may not be gone.
            _ => {}
        }
        accepted
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use rand::SeedableRng;

    fn reply(status: StatusCode, body: &'static str) -> Reply {
        Reply {
            status,
            body: Bytes::from_static(body.as_bytes()),
        }
    }

    #[test]
    fn the_default_mix_is_60_reads_25_writes_15_group_changes() {
        let w = Weights::parse(DEFAULT_MIX).unwrap();
        assert_eq!(w.total(), 100);
        let share = |es: &[Entry]| es.iter().map(|e| w.weight(*e)).sum::<u32>();
        assert_eq!(share(&[Entry::Get, Entry::Filter, Entry::List]), 60);
        assert_eq!(share(&[Entry::Create, Entry::Patch, Entry::Delete]), 25);
        assert_eq!(share(&[Entry::Member]), 15);
        assert_eq!(w.weight(Entry::Create), w.weight(Entry::Delete));
    }

    #[test]
    fn mixes_with_unknown_repeated_or_no_entries_are_refused() {
        assert!(
            Weights::parse("get=1,fetch=2")
                .unwrap_err()
                .contains("unknown entry 'fetch'")
        );
        assert!(Weights::parse("get=1,get=2").unwrap_err().contains("twice"));
        assert!(
            Weights::parse("get=x")
                .unwrap_err()
                .contains("whole number")
        );
        assert!(Weights::parse("get").unwrap_err().contains("name=weight"));
        assert!(Weights::parse("get=0").is_err());
        assert!(Weights::parse("").is_err());
        let w = Weights::parse(" get = 3 , member=1, list=0 ").unwrap();
        assert_eq!(w.to_string(), "get 75 %, member 25 %");
    }

    #[test]
    fn picks_fall_on_entries_in_proportion_to_their_weights() {
        let w = Weights::parse("get=2,create=1,member=3").unwrap();
        let picks: Vec<Entry> = (0..w.total()).map(|r| w.pick(r)).collect();
        use Entry::*;
        assert_eq!(picks, [Get, Get, Create, Member, Member, Member]);
    }

    #[test]
    fn groups_take_disjoint_runs_and_shrink_to_fit_the_users() {
        assert_eq!(
            group_layout(100, 2, 10),
            vec![(0..10, 10..20), (20..30, 30..40)]
        );
        // 30 users cannot give 2 groups 10 members and 10 spares each.
        assert_eq!(
            group_layout(30, 2, 10),
            vec![(0..7, 7..14), (14..21, 21..28)]
        );
        assert_eq!(group_layout(3, 2, 10), vec![(0..0, 0..0), (0..0, 0..0)]);
    }

    fn mix(weights: &str, groups: Vec<(String, Vec<String>, Vec<String>)>) -> Mix {
        let users = (0..10).map(|i| format!("u{i}")).collect();
        Mix::new(Weights::parse(weights).unwrap(), users, groups)
    }

    fn ids(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn membership_alternates_around_the_starting_size() {
        let m = mix(
            "member=1",
            vec![("g".into(), ids(&["a", "b"]), ids(&["c", "d"]))],
        );
        let mut rng = SmallRng::seed_from_u64(1);
        let ok = reply(StatusCode::NO_CONTENT, "");
        let (call, t) = m.next_call(&mut rng);
        assert_eq!(
            (t.kind(), call.path.as_str()),
            (Kind::AddMember, "/scim/v2/Groups/g")
        );
        assert!(call.minimal);
        assert!(m.settle(t, Some(&ok)));
        // 3 members now, above the starting 2: the oldest member goes.
        let (call, t) = m.next_call(&mut rng);
        assert_eq!(t.kind(), Kind::RemoveMember);
        assert!(String::from_utf8_lossy(call.body.as_deref().unwrap()).contains("\"a\""));
        assert!(m.settle(t, Some(&ok)));
        let group = lock(&m.groups[0]);
        assert_eq!(group.members, ["b", "c"]);
        assert_eq!(group.spare, ["d", "a"]);
    }

    #[test]
    fn a_failed_member_change_leaves_the_user_where_it_was() {
        let m = mix("member=1", vec![("g".into(), ids(&["a"]), ids(&["b"]))]);
        let mut rng = SmallRng::seed_from_u64(1);
        let (_, t) = m.next_call(&mut rng);
        assert_eq!(t.kind(), Kind::AddMember);
        assert!(!m.settle(t, Some(&reply(StatusCode::INTERNAL_SERVER_ERROR, "{}"))));
        let (_, t) = m.next_call(&mut rng);
        assert_eq!(t.kind(), Kind::AddMember);
        assert!(!m.settle(t, None));
        let group = lock(&m.groups[0]);
        assert_eq!((group.members.len(), group.spare.len()), (1, 1));
    }

    #[test]
    fn deletes_take_the_oldest_created_user_or_create_when_none_is_left() {
        let m = mix("delete=1", vec![]);
        let mut rng = SmallRng::seed_from_u64(1);
        let (call, t) = m.next_call(&mut rng);
        assert_eq!((t.kind(), call.method), (Kind::CreateUser, Method::POST));
        assert!(m.settle(t, Some(&reply(StatusCode::CREATED, r#"{"id":"n1","x":1}"#))));
        assert_eq!(m.created_alive(), 1);
        let (call, t) = m.next_call(&mut rng);
        assert_eq!(t.kind(), Kind::DeleteUser);
        assert_eq!(
            (call.method, call.path.as_str()),
            (Method::DELETE, "/scim/v2/Users/n1")
        );
        assert_eq!(m.created_alive(), 0);
        assert!(m.settle(t, Some(&reply(StatusCode::NO_CONTENT, ""))));
    }

    #[test]
    fn reads_are_judged_by_status_and_body() {
        let m = mix("filter=1,list=1", vec![]);
        let one = reply(StatusCode::OK, r#"{"totalResults":1,"Resources":[]}"#);
        let none = reply(StatusCode::OK, r#"{"totalResults":0,"Resources":[]}"#);
        let filter = || Mix::ticket(Kind::FilterUserName);
        assert!(m.settle(filter(), Some(&one)));
        assert!(!m.settle(filter(), Some(&none)));
        assert!(m.settle(Mix::ticket(Kind::ListPage), Some(&none)));
        assert!(!m.settle(
            Mix::ticket(Kind::ListPage),
            Some(&reply(StatusCode::OK, "{}"))
        ));
        assert!(!m.settle(
            Mix::ticket(Kind::GetUser),
            Some(&reply(StatusCode::NOT_FOUND, "{}"))
        ));
        assert!(!m.settle(Mix::ticket(Kind::GetUser), None));
    }
}
