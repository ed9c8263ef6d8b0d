//! The measured operations: what request each one sends next and which
//! answer counts as a success. Reads pick uniformly random loaded users;
//! creates use fresh names; member additions walk a pool of users that are
//! not yet members, so every PATCH really adds a row. The request builders
//! at the end are shared with the soak's mixed workload.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use hyper::{Method, StatusCode};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use rand::Rng;
use rand::rngs::SmallRng;

use crate::client::{Call, Reply};
use crate::fixtures;
use crate::load::Dataset;
use crate::measure::Work;

/// One benchmarked operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `GET /healthz`: the trivial-endpoint ceiling.
    Healthz,
    /// `GET /Users/{id}` of a random loaded user.
    GetUser,
    /// `GET /Users?filter=userName eq "…"` for a random loaded user.
    FilterUserName,
    /// `GET /Users?filter=emails[type eq "work"].value eq "…"`.
    FilterEmail,
    /// `POST /Users` of a new user.
    CreateUser,
    /// `PATCH /Users/{id}` replacing `title` (full 200 response).
    PatchUser,
    /// `PATCH` adding one member to the group that started empty.
    AddMemberSmall,
    /// `PATCH` adding one member to the big group.
    AddMemberBig,
}

impl Op {
    /// Whether the operation changes the store (and so writes audit rows).
    pub fn writes(self) -> bool {
        matches!(
            self,
            Op::CreateUser | Op::PatchUser | Op::AddMemberSmall | Op::AddMemberBig
        )
    }

    /// Every operation, in the order they are measured.
    pub const ALL: [Op; 8] = [
        Op::Healthz,
        Op::GetUser,
        Op::FilterUserName,
        Op::FilterEmail,
        Op::CreateUser,
        Op::PatchUser,
        Op::AddMemberSmall,
        Op::AddMemberBig,
    ];

    /// The row label in the report; `big` is the big group's size.
    pub fn label(self, big: usize) -> String {
        match self {
            Op::Healthz => "GET /healthz (ceiling)".into(),
            Op::GetUser => "GET /Users/{id}".into(),
            Op::FilterUserName => "GET /Users?filter=userName eq".into(),
            Op::FilterEmail => "GET /Users?filter=emails[type eq \"work\"].value eq".into(),
            Op::CreateUser => "POST /Users".into(),
            Op::PatchUser => "PATCH /Users/{id} replace title".into(),
            Op::AddMemberSmall => "PATCH /Groups/{id} add member, empty group (minimal)".into(),
            Op::AddMemberBig => {
                format!("PATCH /Groups/{{id}} add member, {big}-member group (minimal)")
            }
        }
    }

    fn expected(self) -> StatusCode {
        match self {
            Op::CreateUser => StatusCode::CREATED,
            Op::AddMemberSmall | Op::AddMemberBig => StatusCode::NO_CONTENT,
            _ => StatusCode::OK,
        }
    }
}

/// One operation with the data it draws from.
pub struct Workload {
    op: Op,
    data: Arc<Dataset>,
    /// Users to add as members, in order (for the member operations).
    pool: Arc<Vec<String>>,
    cursor: AtomicUsize,
    seq: AtomicU64,
    /// Ids of the users created so far (warm-up included).
    created: Mutex<Vec<String>>,
}

impl Workload {
    /// `op` over `data`; member additions take users from `pool`.
    pub fn new(op: Op, data: Arc<Dataset>, pool: Arc<Vec<String>>) -> Self {
        Self {
            op,
            data,
            pool,
            cursor: AtomicUsize::new(0),
            seq: AtomicU64::new(0),
            created: Mutex::new(Vec::new()),
        }
    }

    /// Ids of the users this workload created (warm-up included).
    pub fn created(&self) -> Vec<String> {
        self.created
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// When the member pool ran out: how many additions (warm-up included)
    /// repeated an existing member, out of how many, from a pool of how
    /// many users. A repeated addition changes nothing and is cheaper.
    pub fn repeated_additions(&self) -> Option<(usize, usize, usize)> {
        let sent = self.cursor.load(Ordering::Relaxed);
        let pool = self.pool.len();
        (sent > pool).then_some((sent - pool, sent, pool))
    }

    /// The next request.
    fn call(&self, rng: &mut impl Rng) -> Call {
        let d = &self.data;
        let i = rng.random_range(0..d.user_ids.len());
        match self.op {
            Op::Healthz => Call::get("/healthz"),
            Op::GetUser => get_user(&d.user_ids[i]),
            Op::FilterUserName => filter_user_name(i),
            Op::FilterEmail => filter(&format!(
                "emails[type eq \"work\"].value eq \"{}\"",
                fixtures::work_email(i)
            )),
            Op::CreateUser => create_user(self.seq.fetch_add(1, Ordering::Relaxed)),
            Op::PatchUser => patch_title(&d.user_ids[i], self.seq.fetch_add(1, Ordering::Relaxed)),
            Op::AddMemberSmall => self.add_member(&d.small_group),
            Op::AddMemberBig => self.add_member(&d.big_group),
        }
    }

    fn add_member(&self, group: &str) -> Call {
        let k = self.cursor.fetch_add(1, Ordering::Relaxed);
        let member = self
            .pool
            .get(k % self.pool.len().max(1))
            .map_or("", String::as_str);
        add_member(group, member)
    }

    /// Whether `reply` is the answer a working gateway gives: the expected
    /// status, and for a filter exactly one match.
    fn accepts(&self, reply: &Reply) -> bool {
        if reply.status != self.op.expected() {
            return false;
        }
        match self.op {
            Op::FilterUserName | Op::FilterEmail => is_single_match(reply),
            _ => true,
        }
    }
}

impl Work for Workload {
    type Ticket = ();

    fn next_call(&self, rng: &mut SmallRng) -> (Call, ()) {
        (self.call(rng), ())
    }

    fn settle(&self, _: (), reply: Option<&Reply>) -> bool {
        let Some(reply) = reply.filter(|r| self.accepts(r)) else {
            return false;
        };
        if self.op == Op::CreateUser {
            let mut created = self.created.lock().unwrap_or_else(PoisonError::into_inner);
            created.extend(created_id(&reply.body));
        }
        true
    }
}

/// `GET /Users/{id}`.
pub fn get_user(id: &str) -> Call {
    Call::get(format!("/scim/v2/Users/{id}"))
}

/// `GET /Users?filter=userName eq "…"` for loaded user `i`.
pub fn filter_user_name(i: usize) -> Call {
    filter(&format!("userName eq \"{}\"", fixtures::user_name(i)))
}

/// `POST /Users` of new user `n` (unique within the run).
pub fn create_user(n: u64) -> Call {
    let body = fixtures::new_user(n).to_string();
    Call::with_body(Method::POST, "/scim/v2/Users", body)
}

/// `PATCH /Users/{id}` replacing `title` with `Title n`.
pub fn patch_title(id: &str, n: u64) -> Call {
    let body = fixtures::replace_title(&format!("Title {n}")).to_string();
    Call::with_body(Method::PATCH, format!("/scim/v2/Users/{id}"), body)
}

/// `PATCH /Groups/{group}` adding `member`, answered with 204.
pub fn add_member(group: &str, member: &str) -> Call {
    let body = fixtures::add_members([member]).to_string();
    Call::with_body(Method::PATCH, format!("/scim/v2/Groups/{group}"), body).minimal()
}

/// `PATCH /Groups/{group}` removing `member`, answered with 204.
pub fn remove_member(group: &str, member: &str) -> Call {
    let body = fixtures::remove_members([member]).to_string();
    Call::with_body(Method::PATCH, format!("/scim/v2/Groups/{group}"), body).minimal()
}

/// Whether a ListResponse found exactly one resource.
pub fn is_single_match(reply: &Reply) -> bool {
    total_results(&reply.body) == Some(1)
}

/// The id in a created resource's body. This and [`total_results`] scan
/// the bytes instead of parsing the JSON: the load generator shares the
/// cores with the gateway, so its own cost is kept low.
pub fn created_id(body: &[u8]) -> Option<String> {
    let rest = after(body, b"\"id\":\"")?;
    let len = rest.iter().position(|&b| b == b'"')?;
    String::from_utf8(rest[..len].to_vec()).ok()
}

/// `totalResults` of a ListResponse.
pub fn total_results(body: &[u8]) -> Option<u64> {
    let rest = after(body, b"\"totalResults\":")?;
    let len = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&rest[..len]).ok()?.parse().ok()
}

/// What follows the first occurrence of `key` in `body`.
fn after<'a>(body: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    let at = body.windows(key.len()).position(|w| w == key)?;
    Some(&body[at + key.len()..])
}

fn filter(expr: &str) -> Call {
    let q = utf8_percent_encode(expr, NON_ALPHANUMERIC);
    Call::get(format!("/scim/v2/Users?filter={q}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_id_is_found_without_parsing() {
        let body = br#"{"schemas":["x"],"externalId":"e","id":"abc-123","userName":"u"}"#;
        assert_eq!(created_id(body).as_deref(), Some("abc-123"));
        assert_eq!(created_id(b"{}"), None);
    }

    #[test]
    fn total_results_reads_the_whole_number() {
        assert_eq!(total_results(br#"{"totalResults":1,"x":2}"#), Some(1));
        assert_eq!(total_results(br#"{"totalResults":10}"#), Some(10));
        assert_eq!(total_results(br#"{"Resources":[]}"#), None);
    }

    #[test]
    fn filters_are_percent_encoded() {
        let call = filter("userName eq \"a@b\"");
        assert_eq!(
            call.path,
            "/scim/v2/Users?filter=userName%20eq%20%22a%40b%22"
        );
    }
}
