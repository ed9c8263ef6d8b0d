//! The `sync_jobs` table: durable "converge identity X in app A" jobs.
//!
//! A job is written in the same transaction as the change that caused it, so
//! an acknowledged write is never forgotten. Many changes to one identity
//! coalesce into one row whose `generation` counts them; a worker that
//! finishes a job deletes it only if no change arrived meanwhile, otherwise
//! the row goes back to `pending` and the identity converges again.
//!
//! Claiming marks a batch `running` with a lease (`claimed_until`); on
//! PostgreSQL the candidates are locked with `FOR UPDATE SKIP LOCKED`, so two
//! processes never claim the same job. A job whose lease ran out (its worker
//! died) can be claimed again.
//!
//! The hand-written statements go through [`super::prepared`]: `$n` is
//! the n-th value bound, on both backends, and may appear more than once.

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};

use super::StoreError;
use super::connection::AnyConnection;
use super::prepared::prepared;
use super::schema::{app_state, sync_jobs};

/// Job states.
pub mod state {
    /// Waiting for `next_attempt_at`.
    pub const PENDING: &str = "pending";
    /// Claimed by a worker until `claimed_until`.
    pub const RUNNING: &str = "running";
    /// Given up: a permanent error or too many attempts. Waits for an admin.
    pub const DEAD: &str = "dead";
}

/// One job row.
#[derive(Debug, Clone, Queryable, Selectable, QueryableByName, serde::Serialize)]
#[diesel(table_name = sync_jobs)]
pub struct JobRow {
    /// The app.
    pub app: String,
    /// The identity (User or Group id).
    pub resource_id: String,
    /// The identity's tenant.
    pub tenant: String,
    /// `pending`, `running` or `dead`.
    pub state: String,
    /// Number of changes recorded so far.
    pub generation: i64,
    /// Attempts made since the last success or reset.
    pub attempts: i64,
    /// When the job is due.
    pub next_attempt_at: String,
    /// Worker holding the claim.
    pub claimed_by: Option<String>,
    /// End of the claim's lease.
    pub claimed_until: Option<String>,
    /// The generation the claim covers.
    pub claimed_generation: Option<i64>,
    /// The last failure, if any.
    pub last_error: Option<String>,
    /// HTTP status of the last failure, if any.
    pub last_status: Option<i64>,
    /// When the oldest change the row still has to deliver was recorded:
    /// the first write, or, once a run finished while newer changes came in,
    /// the newest of those (delivery latency and queue age start here).
    pub created_at: String,
    /// When the row last changed.
    pub updated_at: String,
    /// Higher runs first: leavers are cut off ahead of routine work.
    pub priority: i64,
    /// What adapter calls whose outcome was never recorded may have left in
    /// the app (see [`crate::delivery`]'s doubt handling): written before the
    /// calls, cleared when an outcome is known.
    pub inflight: Option<String>,
}

/// The due time of a leaver's job: before any routine job.
const LEAVER_DUE: &str = "1970-01-01T00:00:00.000Z";

/// Job priorities.
pub mod priority {
    /// Routine convergence.
    pub const NORMAL: i64 = 0;
    /// A leaver: deactivated or deleted.
    pub const LEAVER: i64 = 10;
}

/// The job upsert: `$1` app, `$2` resource, `$3` tenant, `$4` due time,
/// `$5` now, `$6` priority.
const ENQUEUE: &str = "\
INSERT INTO sync_jobs (app, resource_id, tenant, state, generation, attempts, next_attempt_at, created_at, updated_at, priority) \
VALUES ($1, $2, $3, 'pending', 1, 0, $4, $5, $5, $6) \
ON CONFLICT (app, resource_id) DO UPDATE SET \
  generation = sync_jobs.generation + 1, \
  priority = CASE WHEN excluded.priority > sync_jobs.priority THEN excluded.priority ELSE sync_jobs.priority END, \
  state = CASE WHEN sync_jobs.state = 'dead' THEN 'pending' ELSE sync_jobs.state END, \
  attempts = CASE WHEN sync_jobs.state = 'dead' THEN 0 ELSE sync_jobs.attempts END, \
  next_attempt_at = CASE WHEN sync_jobs.state = 'dead' THEN excluded.next_attempt_at \
    WHEN sync_jobs.state = 'pending' AND excluded.next_attempt_at < sync_jobs.next_attempt_at \
      AND excluded.priority > sync_jobs.priority THEN excluded.next_attempt_at \
    ELSE sync_jobs.next_attempt_at END, \
  updated_at = excluded.updated_at";

/// Records that each of `ids` must converge in each of `apps`. A job that
/// is already pending keeps its place (and any backoff); a dead one comes
/// back to life, since the identity changed; a running one is marked so its
/// worker converges it again after finishing.
pub fn enqueue(
    conn: &mut AnyConnection,
    tenant: &str,
    apps: &[String],
    ids: &[String],
    now: &str,
) -> Result<usize, StoreError> {
    enqueue_with(conn, tenant, apps, ids, now, priority::NORMAL)
}

/// [`enqueue`] with a priority; a pending job keeps the higher of the two.
pub fn enqueue_with(
    conn: &mut AnyConnection,
    tenant: &str,
    apps: &[String],
    ids: &[String],
    now: &str,
    priority: i64,
) -> Result<usize, StoreError> {
    // Priority is expressed as an earlier due time, so claims need no
    // ordering beyond the `(app, state, next_attempt_at)` index.
    let due = if priority > priority::NORMAL {
        LEAVER_DUE
    } else {
        now
    };
    let mut n = 0;
    for app in apps {
        for id in ids {
            n += on_backend!(conn, c => prepared!(ENQUEUE)
                .bind::<Text, _>(app)
                .bind::<Text, _>(id)
                .bind::<Text, _>(tenant)
                .bind::<Text, _>(due)
                .bind::<Text, _>(now)
                .bind::<BigInt, _>(priority)
                .execute(c)?);
        }
    }
    Ok(n)
}

/// The claim statement for `state`: due pending jobs in due order (leavers
/// are due first), or running jobs whose lease ran out. The pending claim
/// is one range scan of `(app, state, next_attempt_at)` in index order that
/// stops after `limit` rows, so a claim costs the same with ten jobs queued
/// or a million.
fn claim_sql(postgres: bool, expired: bool) -> &'static str {
    // Four fixed texts (not one `format!`), so each stays prepared.
    macro_rules! claim {
        ($state:literal, $due:literal, $order:literal, $lock:literal) => {
            concat!(
                "UPDATE sync_jobs SET state = 'running', claimed_by = $1, claimed_until = $2, \
                   claimed_generation = generation, attempts = attempts + 1, updated_at = $3 \
                 WHERE (app, resource_id) IN ( \
                   SELECT app, resource_id FROM sync_jobs \
                   WHERE app = $4 AND state = '",
                $state,
                "' AND ",
                $due,
                " AND NOT EXISTS (SELECT 1 FROM app_state s WHERE s.app = $4 AND s.paused) \
                   ORDER BY ",
                $order,
                " LIMIT $5",
                $lock,
                ") RETURNING *"
            )
        };
    }
    match (expired, postgres) {
        (true, false) => claim!("running", "claimed_until <= $3", "claimed_until", ""),
        (true, true) => claim!(
            "running",
            "claimed_until <= $3",
            "claimed_until",
            " FOR UPDATE SKIP LOCKED"
        ),
        (false, false) => claim!("pending", "next_attempt_at <= $3", "next_attempt_at", ""),
        (false, true) => claim!(
            "pending",
            "next_attempt_at <= $3",
            "next_attempt_at",
            " FOR UPDATE SKIP LOCKED"
        ),
    }
}

/// Claims up to `limit` due jobs of `app` for `worker` until `lease_until`:
/// first jobs whose worker died (lease over), then pending ones, leavers first.
pub fn claim(
    conn: &mut AnyConnection,
    app: &str,
    worker: &str,
    limit: i64,
    now: &str,
    lease_until: &str,
) -> Result<Vec<JobRow>, StoreError> {
    let postgres = matches!(conn, AnyConnection::Postgresql(_));
    let mut out = Vec::new();
    for expired in [true, false] {
        let left = limit - out.len() as i64;
        if left <= 0 {
            break;
        }
        let sql = claim_sql(postgres, expired);
        out.extend(on_backend!(conn, c => prepared(sql)
            .bind::<Text, _>(worker)
            .bind::<Text, _>(lease_until)
            .bind::<Text, _>(now)
            .bind::<Text, _>(app)
            .bind::<BigInt, _>(left)
            .load::<JobRow>(c)?));
    }
    Ok(out)
}

/// What tells one claim from another: its lease end, set afresh by every
/// claim. A worker whose lease ran out and that claimed the same job again
/// holds the new claim, not the old one.
fn claim_token(job: &JobRow) -> &str {
    job.claimed_until.as_deref().unwrap_or_default()
}

/// Finishes a claimed job after a success: deletes it, unless a change
/// arrived while it ran, in which case it is due again at once. False when
/// the claim was no longer this worker's (its lease ran out and another
/// worker took the job over): nothing was changed.
pub fn complete(
    conn: &mut AnyConnection,
    job: &JobRow,
    worker: &str,
    now: &str,
) -> Result<bool, StoreError> {
    let claimed = job.claimed_generation.unwrap_or(job.generation);
    let deleted = on_backend!(conn, c => diesel::delete(
        sync_jobs::table
            .filter(sync_jobs::app.eq(&job.app))
            .filter(sync_jobs::resource_id.eq(&job.resource_id))
            .filter(sync_jobs::claimed_by.eq(worker))
            .filter(sync_jobs::claimed_until.eq(claim_token(job)))
            .filter(sync_jobs::generation.eq(claimed)),
    )
    .execute(c)?);
    if deleted > 0 {
        return Ok(true);
    }
    let updated = diesel::update(
        sync_jobs::table
            .filter(sync_jobs::app.eq(&job.app))
            .filter(sync_jobs::resource_id.eq(&job.resource_id))
            .filter(sync_jobs::claimed_by.eq(worker))
            .filter(sync_jobs::claimed_until.eq(claim_token(job))),
    )
    .set((
        sync_jobs::state.eq(state::PENDING),
        sync_jobs::attempts.eq(0),
        sync_jobs::next_attempt_at.eq(now),
        sync_jobs::claimed_by.eq(None::<String>),
        sync_jobs::claimed_until.eq(None::<String>),
        sync_jobs::last_error.eq(None::<String>),
        sync_jobs::last_status.eq(None::<i64>),
        sync_jobs::inflight.eq(None::<String>),
        // What was recorded before the run is delivered; what is left
        // came in during it, last touched by its enqueue.
        sync_jobs::created_at.eq(sync_jobs::updated_at),
        sync_jobs::updated_at.eq(now),
    ))
    .execute(conn)?;
    Ok(updated > 0)
}

/// How a failed attempt continues.
#[derive(Debug, Clone)]
pub enum Retry {
    /// Try again at this time.
    At(String),
    /// Give up: dead letter.
    Dead,
}

/// Records a failed attempt of a claimed job: back to `pending` at the
/// given time, or `dead`. A change that arrived meanwhile revives a job that
/// would otherwise be dead, since the new state may well succeed.
/// `inflight` is what the job's doubt becomes: `None` keeps what was
/// written before the call (the app may have acted), `Some(v)` sets `v`.
/// False when the claim was no longer this worker's: nothing was changed.
#[allow(clippy::too_many_arguments)]
pub fn fail(
    conn: &mut AnyConnection,
    job: &JobRow,
    worker: &str,
    retry: &Retry,
    error: &str,
    status: Option<i64>,
    inflight: Option<Option<&str>>,
    now: &str,
) -> Result<bool, StoreError> {
    let claimed = job.claimed_generation.unwrap_or(job.generation);
    let target = sync_jobs::table
        .filter(sync_jobs::app.eq(&job.app))
        .filter(sync_jobs::resource_id.eq(&job.resource_id))
        .filter(sync_jobs::claimed_by.eq(worker))
        .filter(sync_jobs::claimed_until.eq(claim_token(job)));
    let current: Option<i64> = target
        .select(sync_jobs::generation)
        .first(conn)
        .optional()?;
    let Some(current) = current else {
        return Ok(false);
    };
    let changed = current != claimed;
    let (state, next) = match retry {
        Retry::At(at) => (state::PENDING, at.as_str()),
        Retry::Dead if changed => (state::PENDING, now),
        Retry::Dead => (state::DEAD, now),
    };
    // Before the claim goes: the filter names the claiming worker.
    if let Some(inflight) = inflight {
        diesel::update(target)
            .set(sync_jobs::inflight.eq(inflight))
            .execute(conn)?;
    }
    let updated = diesel::update(target)
        .set((
            sync_jobs::state.eq(state),
            sync_jobs::next_attempt_at.eq(next),
            sync_jobs::claimed_by.eq(None::<String>),
            sync_jobs::claimed_until.eq(None::<String>),
            sync_jobs::last_error.eq(error),
            sync_jobs::last_status.eq(status),
            sync_jobs::updated_at.eq(now),
        ))
        .execute(conn)?;
    Ok(updated > 0)
}

/// Sets a job's doubt whoever holds it (see [`mark_inflight`]).
pub fn set_inflight(
    conn: &mut AnyConnection,
    app: &str,
    resource_id: &str,
    inflight: &str,
) -> Result<(), StoreError> {
    diesel::update(
        sync_jobs::table
            .filter(sync_jobs::app.eq(app))
            .filter(sync_jobs::resource_id.eq(resource_id)),
    )
    .set(sync_jobs::inflight.eq(inflight))
    .execute(conn)?;
    Ok(())
}

/// Writes, before its adapter call, what a claimed job's call may leave
/// in the app. False when the claim is no longer this worker's (its lease
/// ran out and another took it over): the call must not be made.
pub fn mark_inflight(
    conn: &mut AnyConnection,
    job: &JobRow,
    worker: &str,
    inflight: &str,
) -> Result<bool, StoreError> {
    let n = diesel::update(
        sync_jobs::table
            .filter(sync_jobs::app.eq(&job.app))
            .filter(sync_jobs::resource_id.eq(&job.resource_id))
            .filter(sync_jobs::claimed_by.eq(worker))
            .filter(sync_jobs::claimed_until.eq(claim_token(job))),
    )
    .set(sync_jobs::inflight.eq(inflight))
    .execute(conn)?;
    Ok(n > 0)
}

/// Hands a claimed job back untouched (the attempt does not count): used
/// when the app was quarantined before the job could run.
pub fn hand_back(
    conn: &mut AnyConnection,
    job: &JobRow,
    worker: &str,
    now: &str,
) -> Result<(), StoreError> {
    diesel::update(
        sync_jobs::table
            .filter(sync_jobs::app.eq(&job.app))
            .filter(sync_jobs::resource_id.eq(&job.resource_id))
            .filter(sync_jobs::claimed_by.eq(worker))
            .filter(sync_jobs::claimed_until.eq(claim_token(job))),
    )
    .set((
        sync_jobs::state.eq(state::PENDING),
        sync_jobs::attempts.eq(sync_jobs::attempts - 1),
        sync_jobs::next_attempt_at.eq(now),
        sync_jobs::claimed_by.eq(None::<String>),
        sync_jobs::claimed_until.eq(None::<String>),
        sync_jobs::updated_at.eq(now),
    ))
    .execute(conn)?;
    Ok(())
}

/// The reason recorded when an admin releases a quarantine.
pub const RELEASED: &str = "released";

/// How the reason of a pause set by the safety net begins.
pub const QUARANTINE: &str = "quarantine:";

/// When the app's last quarantine was released, if it was.
pub fn released_at(conn: &mut AnyConnection, app: &str) -> Result<Option<String>, StoreError> {
    Ok(app_state::table
        .filter(app_state::app.eq(app))
        .filter(app_state::paused.eq(false))
        .filter(app_state::reason.eq(RELEASED))
        .select(app_state::updated_at)
        .first(conn)
        .optional()?)
}

/// Returns every `running` job to `pending` (start-up on SQLite, where only
/// one process uses the database, so no claim can still be live).
pub fn release_all_claims(conn: &mut AnyConnection, now: &str) -> Result<usize, StoreError> {
    Ok(
        diesel::update(sync_jobs::table.filter(sync_jobs::state.eq(state::RUNNING)))
            .set((
                sync_jobs::state.eq(state::PENDING),
                sync_jobs::next_attempt_at.eq(now),
                sync_jobs::claimed_by.eq(None::<String>),
                sync_jobs::claimed_until.eq(None::<String>),
            ))
            .execute(conn)?,
    )
}

/// Returns the claims a worker still holds (graceful shutdown): due at
/// once for whichever process claims next, and the interrupted attempt
/// does not count towards the dead-letter limit.
pub fn release_claims(
    conn: &mut AnyConnection,
    worker: &str,
    now: &str,
) -> Result<usize, StoreError> {
    Ok(diesel::update(
        sync_jobs::table
            .filter(sync_jobs::state.eq(state::RUNNING))
            .filter(sync_jobs::claimed_by.eq(worker)),
    )
    .set((
        sync_jobs::state.eq(state::PENDING),
        sync_jobs::attempts.eq(sync_jobs::attempts - 1),
        sync_jobs::next_attempt_at.eq(now),
        sync_jobs::claimed_by.eq(None::<String>),
        sync_jobs::claimed_until.eq(None::<String>),
        sync_jobs::updated_at.eq(now),
    ))
    .execute(conn)?)
}

/// When the next job of `app` becomes due (pending or with an expired lease).
pub fn next_due(conn: &mut AnyConnection, app: &str) -> Result<Option<String>, StoreError> {
    let pending: Option<String> = sync_jobs::table
        .filter(sync_jobs::app.eq(app))
        .filter(sync_jobs::state.eq(state::PENDING))
        .select(diesel::dsl::min(sync_jobs::next_attempt_at))
        .first(conn)?;
    let lease: Option<String> = sync_jobs::table
        .filter(sync_jobs::app.eq(app))
        .filter(sync_jobs::state.eq(state::RUNNING))
        .select(diesel::dsl::min(sync_jobs::claimed_until))
        .first(conn)?;
    Ok(match (pending, lease) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    })
}

/// The jobs of one app in one state.
#[derive(Debug, Clone)]
pub struct QueueStat {
    /// The app.
    pub app: String,
    /// The state.
    pub state: String,
    /// How many jobs.
    pub jobs: i64,
    /// The oldest `created_at` among them.
    pub oldest: Option<String>,
}

/// Job counts and oldest change per app and state, for every app: one
/// aggregate over the (normally short) queue, run at metrics scrapes.
pub fn queue_stats(conn: &mut AnyConnection) -> Result<Vec<QueueStat>, StoreError> {
    let rows: Vec<(String, String, i64, Option<String>)> = sync_jobs::table
        .group_by((sync_jobs::app, sync_jobs::state))
        .select((
            sync_jobs::app,
            sync_jobs::state,
            diesel::dsl::count_star(),
            diesel::dsl::min(sync_jobs::created_at),
        ))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(app, state, jobs, oldest)| QueueStat {
            app,
            state,
            jobs,
            oldest,
        })
        .collect())
}

/// Job counts of an app by state.
pub fn count_by_state(
    conn: &mut AnyConnection,
    app: &str,
) -> Result<Vec<(String, i64)>, StoreError> {
    Ok(sync_jobs::table
        .filter(sync_jobs::app.eq(app))
        .group_by(sync_jobs::state)
        .select((sync_jobs::state, diesel::dsl::count_star()))
        .load(conn)?)
}

/// Jobs of an app, optionally in one state, in resource-id order after `after`.
pub fn list_jobs(
    conn: &mut AnyConnection,
    app: &str,
    state: Option<&str>,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<JobRow>, StoreError> {
    let mut q = sync_jobs::table
        .filter(sync_jobs::app.eq(app))
        .select(JobRow::as_select())
        .order(sync_jobs::resource_id)
        .limit(limit)
        .into_boxed();
    if let Some(s) = state {
        q = q.filter(sync_jobs::state.eq(s.to_string()));
    }
    if let Some(a) = after {
        q = q.filter(sync_jobs::resource_id.gt(a.to_string()));
    }
    Ok(q.load(conn)?)
}

/// One job.
pub fn find_job(
    conn: &mut AnyConnection,
    app: &str,
    resource_id: &str,
) -> Result<Option<JobRow>, StoreError> {
    Ok(sync_jobs::table
        .filter(sync_jobs::app.eq(app))
        .filter(sync_jobs::resource_id.eq(resource_id))
        .select(JobRow::as_select())
        .first(conn)
        .optional()?)
}

/// Makes dead jobs of `app` due now (one identity, or all when `resource_id`
/// is `None`); returns how many.
pub fn retry_dead(
    conn: &mut AnyConnection,
    app: &str,
    resource_id: Option<&str>,
    now: &str,
) -> Result<usize, StoreError> {
    let mut target = diesel::update(sync_jobs::table)
        .filter(sync_jobs::app.eq(app.to_string()))
        .filter(sync_jobs::state.eq(state::DEAD))
        .into_boxed();
    if let Some(id) = resource_id {
        target = target.filter(sync_jobs::resource_id.eq(id.to_string()));
    }
    Ok(target
        .set((
            sync_jobs::state.eq(state::PENDING),
            sync_jobs::attempts.eq(0),
            sync_jobs::next_attempt_at.eq(now),
            sync_jobs::updated_at.eq(now),
        ))
        .execute(conn)?)
}

/// Drops a pending job (an admin discarding a held deprovision).
pub fn delete_pending(
    conn: &mut AnyConnection,
    app: &str,
    resource_id: &str,
) -> Result<usize, StoreError> {
    Ok(diesel::delete(
        sync_jobs::table
            .filter(sync_jobs::app.eq(app))
            .filter(sync_jobs::resource_id.eq(resource_id))
            .filter(sync_jobs::state.eq(state::PENDING)),
    )
    .execute(conn)?)
}

/// Pauses or resumes an app.
pub fn set_paused(
    conn: &mut AnyConnection,
    app: &str,
    paused: bool,
    reason: Option<&str>,
    now: &str,
) -> Result<(), StoreError> {
    let updated = diesel::update(app_state::table.filter(app_state::app.eq(app)))
        .set((
            app_state::paused.eq(paused),
            app_state::reason.eq(reason),
            app_state::updated_at.eq(now),
        ))
        .execute(conn)?;
    if updated == 0 {
        diesel::insert_into(app_state::table)
            .values((
                app_state::app.eq(app),
                app_state::paused.eq(paused),
                app_state::reason.eq(reason),
                app_state::updated_at.eq(now),
            ))
            .execute(conn)?;
    }
    Ok(())
}

/// Every paused app, with its reason.
pub fn find_paused(conn: &mut AnyConnection) -> Result<Vec<(String, Option<String>)>, StoreError> {
    Ok(app_state::table
        .filter(app_state::paused.eq(true))
        .select((app_state::app, app_state::reason))
        .order(app_state::app)
        .load(conn)?)
}

/// Whether an app is paused, and why.
pub fn paused(
    conn: &mut AnyConnection,
    app: &str,
) -> Result<Option<(bool, Option<String>)>, StoreError> {
    Ok(app_state::table
        .filter(app_state::app.eq(app))
        .select((app_state::paused, app_state::reason))
        .first(conn)
        .optional()?)
}

/// A PostgreSQL advisory lock for one app's periodic work (scheduled
/// reconciliation), held by a connection of its own so it lasts across
/// many pool checkouts; dropping it ends that session and so frees the lock
/// even when the holder forgets to or dies.
pub struct AppLock {
    _conn: diesel::PgConnection,
}

#[derive(QueryableByName)]
struct Locked {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    locked: bool,
}

/// Tries to take the lock named `name` (e.g. `reconcile:crm`) on the
/// PostgreSQL server at `url`: `None` when another process holds it. The
/// name is hashed by the server (`hashtextextended`), never spliced into SQL.
/// Blocking: call it off the async executor.
pub fn try_app_lock(url: &str, name: &str) -> Result<Option<AppLock>, StoreError> {
    let mut conn =
        diesel::PgConnection::establish(url).map_err(|e| StoreError::Unavailable(e.to_string()))?;
    let got: Locked =
        diesel::sql_query("SELECT pg_try_advisory_lock(hashtextextended($1, 0)) AS locked")
            .bind::<Text, _>(name)
            .get_result(&mut conn)?;
    Ok(got.locked.then_some(AppLock { _conn: conn }))
}
