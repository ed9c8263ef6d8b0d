//! Loading the data set as fast as the gateway takes it: users through
//! `/Bulk` (as many operations per request as `ServiceProviderConfig`
//! allows, at most 1000; plain concurrent POSTs when Bulk is unsupported)
//! with several requests in flight, then an empty group and a big group
//! whose members are added in chunks by PATCH.
//!
//! ```text
//! loaders (k connections) ──/Bulk 1000 users──▶ gateway   ids ◀── Operations[].location
//! one connection ──POST /Groups ×2, PATCH add 5000 members ×⌈big/5000⌉──▶ gateway
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hyper::{Method, StatusCode};
use serde_json::Value;

use crate::client::{Call, Conn, Reply, Target};
use crate::fixtures;

/// Most operations the benchmark puts in one Bulk request.
const MAX_BULK_OPS: usize = 1000;
/// Members added per PATCH while building the big group (~250 KB bodies,
/// well under the gateway's default 1 MiB body limit).
pub const MEMBER_CHUNK: usize = 5000;
/// Generous bound for one loading request (a 1000-operation Bulk request).
const LOAD_TIMEOUT: Duration = Duration::from_secs(600);

/// What was loaded: the ids the gateway assigned.
pub struct Dataset {
    /// Id of loaded user `i` at index `i`.
    pub user_ids: Vec<String>,
    /// The group that starts empty.
    pub small_group: String,
    /// The big group; its members are the first loaded users.
    pub big_group: String,
}

/// How long loading took.
pub struct LoadStats {
    /// Operations per Bulk request (1: single POSTs).
    pub batch: usize,
    /// Time to create every user.
    pub users_time: Duration,
    /// Time to create both groups and the big group's members.
    pub groups_time: Duration,
}

/// Creates `users` users and the two groups.
pub async fn load(
    target: &Target,
    users: usize,
    big_members: usize,
    connections: usize,
) -> anyhow::Result<(Dataset, LoadStats)> {
    let batch = bulk_batch_size(target).await?;
    let start = Instant::now();
    let user_ids = load_users(target, users, batch, connections).await?;
    let users_time = start.elapsed();
    let start = Instant::now();
    let mut conn = Conn::open(target).await?;
    let small_group = create_group(&mut conn, "bench-empty", &[]).await?;
    let big_group = create_group(&mut conn, "bench-big", &user_ids[..big_members]).await?;
    let stats = LoadStats {
        batch,
        users_time,
        groups_time: start.elapsed(),
    };
    let data = Dataset {
        user_ids,
        small_group,
        big_group,
    };
    Ok((data, stats))
}

/// Operations per Bulk request, from `ServiceProviderConfig`.
pub async fn bulk_batch_size(target: &Target) -> anyhow::Result<usize> {
    let mut conn = Conn::open(target).await?;
    let call = Call::get("/scim/v2/ServiceProviderConfig");
    let reply = call_expecting(&mut conn, &call, StatusCode::OK).await?;
    let config: Value = serde_json::from_slice(&reply.body)?;
    let bulk = &config["bulk"];
    if bulk["supported"] != Value::Bool(true) {
        return Ok(1);
    }
    let max_ops = bulk["maxOperations"].as_u64().unwrap_or(1) as usize;
    let max_bytes = bulk["maxPayloadSize"].as_u64().unwrap_or(u64::MAX) as usize;
    // Keep each request below 90 % of the payload limit.
    let per_op = fixtures::bulk_create_users(999_999..1_000_000)
        .to_string()
        .len();
    let by_size = (max_bytes / 10 * 9) / per_op.max(1);
    Ok(max_ops.min(by_size).clamp(1, MAX_BULK_OPS))
}

/// Creates loaded users `0..n` with `connections` requests in flight.
pub async fn load_users(
    target: &Target,
    n: usize,
    batch: usize,
    connections: usize,
) -> anyhow::Result<Vec<String>> {
    let batches = n.div_ceil(batch);
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let progress = tokio::spawn(report_progress(done.clone(), n));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..connections.clamp(1, batches.max(1)) {
        let (target, next, done) = (target.clone(), next.clone(), done.clone());
        tasks.spawn(async move {
            let mut conn = Conn::open(&target).await?;
            let mut ids = Vec::new();
            loop {
                let b = next.fetch_add(1, Ordering::Relaxed);
                if b >= batches {
                    return anyhow::Ok(ids);
                }
                let range = b * batch..((b + 1) * batch).min(n);
                let count = range.len();
                ids.extend(create_users(&mut conn, range).await?);
                done.fetch_add(count, Ordering::Relaxed);
            }
        });
    }
    let mut slots: Vec<Option<String>> = vec![None; n];
    let mut failure = None;
    while let Some(joined) = tasks.join_next().await {
        match joined.context("loader task failed").and_then(|r| r) {
            Ok(ids) => ids.into_iter().for_each(|(i, id)| slots[i] = Some(id)),
            Err(e) => {
                failure.get_or_insert(e);
                tasks.abort_all();
            }
        }
    }
    progress.abort();
    if let Some(e) = failure {
        return Err(e.context("loading users"));
    }
    slots
        .into_iter()
        .enumerate()
        .map(|(i, id)| id.with_context(|| format!("no id came back for user {i}")))
        .collect()
}

/// Creates users `range` in one Bulk request (or one POST for a single
/// user); returns `(index, id)` pairs.
async fn create_users(
    conn: &mut Conn,
    range: std::ops::Range<usize>,
) -> anyhow::Result<Vec<(usize, String)>> {
    if range.len() == 1 {
        let i = range.start;
        let call = Call::with_body(
            Method::POST,
            "/scim/v2/Users",
            fixtures::loaded_user(i).to_string(),
        );
        let reply = call_expecting(conn, &call, StatusCode::CREATED).await?;
        return Ok(vec![(i, id_of(&reply)?)]);
    }
    let body = fixtures::bulk_create_users(range).to_string();
    let call = Call::with_body(Method::POST, "/scim/v2/Bulk", body);
    let reply = call_expecting(conn, &call, StatusCode::OK).await?;
    let response: Value = serde_json::from_slice(&reply.body)?;
    let ops = response["Operations"]
        .as_array()
        .context("Bulk response without Operations")?;
    ops.iter()
        .map(|op| {
            let (Some("201"), Some(bulk_id), Some(location)) = (
                op["status"].as_str(),
                op["bulkId"].as_str(),
                op["location"].as_str(),
            ) else {
                bail!("Bulk operation failed: {op}");
            };
            let id = location.rsplit('/').next().unwrap_or_default().to_string();
            Ok((bulk_id.parse()?, id))
        })
        .collect()
}

/// Creates group `name`, then adds `members` by PATCH in chunks of
/// [`MEMBER_CHUNK`]; returns its id.
pub async fn create_group(
    conn: &mut Conn,
    name: &str,
    members: &[String],
) -> anyhow::Result<String> {
    let body = fixtures::group(name).to_string();
    let call = Call::with_body(Method::POST, "/scim/v2/Groups", body);
    let group = id_of(&call_expecting(conn, &call, StatusCode::CREATED).await?)?;
    for chunk in members.chunks(MEMBER_CHUNK) {
        let body = fixtures::add_members(chunk.iter().map(String::as_str)).to_string();
        let call = Call::with_body(Method::PATCH, format!("/scim/v2/Groups/{group}"), body);
        call_expecting(conn, &call.minimal(), StatusCode::NO_CONTENT).await?;
    }
    Ok(group)
}

/// Sends `call`, failing unless the answer has status `want`.
async fn call_expecting(conn: &mut Conn, call: &Call, want: StatusCode) -> anyhow::Result<Reply> {
    let reply = conn.send(call, LOAD_TIMEOUT).await?;
    if reply.status != want {
        bail!(
            "{} {} answered {}",
            call.method,
            call.path,
            reply.describe()
        );
    }
    Ok(reply)
}

fn id_of(reply: &Reply) -> anyhow::Result<String> {
    let doc: Value = serde_json::from_slice(&reply.body)?;
    doc["id"]
        .as_str()
        .map(str::to_string)
        .context("response without id")
}

/// Prints loading progress every ten seconds (long loads stay visible).
async fn report_progress(done: Arc<AtomicUsize>, n: usize) {
    let start = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    tick.tick().await;
    loop {
        tick.tick().await;
        let d = done.load(Ordering::Relaxed);
        let rate = d as f64 / start.elapsed().as_secs_f64();
        eprintln!("  loaded {d}/{n} users ({rate:.0}/s)");
    }
}
