//! `scim-bench --fanout`: the delivery engine end to end. The gateway under
//! test pushes every change to three `scim` apps, which are the three
//! tenants of a second gateway (on its own SQLite file) standing in for the
//! downstream service provider.
//!
//! ```text
//! phase 1: POST /Users at --rate/s for --duration s ─▶ gateway ─▶ app1..app3 ─▶ downstream gateway
//!          2xx time (client clock)  vs.  audit delivery.create `at` (gateway clock, same host)
//! phase 2: pause app1..app3 ─▶ /Bulk --drain-changes users ─▶ resume (T0) ─▶ queues empty (T1)
//!          converged ops/s = 3 × changes ÷ (T1 − T0)
//! ```
//!
//! Figures are reported, never asserted: the machine is shared, so the
//! report also gives the same run's IdP-side write rate as a baseline.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use hyper::{Method, StatusCode};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::task::JoinSet;

use crate::client::{Call, Conn, Reply, Target};
use crate::database::{Database, DeliveryRow};
use crate::gateway::{Gateway, random_token};
use crate::pacer::{self, Slot};
use crate::report::per_second;
use crate::{load, ops};

/// The apps configured on the gateway under test (and the downstream
/// gateway's tenants, one per app).
const APPS: [&str; 3] = ["app1", "app2", "app3"];
/// Bound for one SCIM or admin request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// How often the admin API is polled while waiting for empty queues.
const DRAIN_POLL: Duration = Duration::from_millis(50);
/// How often the backlog is sampled during phase 1.
const BACKLOG_POLL: Duration = Duration::from_secs(1);

/// What the fan-out mode needs from the command line.
pub struct Settings {
    /// The gateway binary (both gateways run it).
    pub binary: PathBuf,
    /// IdP creates per second in phase 1.
    pub rate: u32,
    /// Length of phase 1.
    pub duration: Duration,
    /// Users created while the apps are paused in phase 2.
    pub drain_changes: usize,
    /// Connections the phase 1 POSTs are spread over.
    pub connections: usize,
    /// Bulk requests in flight in phase 2.
    pub load_connections: usize,
    /// `concurrency` of each app (the gateway's default when unset).
    pub app_concurrency: Option<usize>,
    /// Longest wait for the queues to empty.
    pub drain_timeout: Duration,
    /// Threads of the load generator, for the report.
    pub client_threads: usize,
}

/// Starts the downstream and the upstream gateway, runs both phases, and
/// stops both gateways (also on error).
pub async fn bench(s: &Settings, db: &Database, dir: &Path) -> anyhow::Result<String> {
    if s.rate == 0 || s.duration.is_zero() || s.drain_changes == 0 || s.connections == 0 {
        bail!("--rate, --duration, --drain-changes and --connections must be at least 1");
    }
    let load_before = crate::load_average();
    let app_tokens: Vec<String> = APPS.iter().map(|_| random_token()).collect();
    let down_config = dir.join("downstream.toml");
    std::fs::write(&down_config, downstream_toml(&app_tokens))?;
    let down_url = format!("sqlite://{}", dir.join("downstream.db").display());
    eprintln!("starting the downstream gateway (3 tenants) on SQLite");
    let down = Gateway::start_configured(
        &s.binary,
        &down_url,
        &dir.join("downstream.log"),
        Some(&down_config),
    )
    .await?;
    let admin_token = random_token();
    let mut token_files = Vec::new();
    for (app, token) in APPS.iter().zip(&app_tokens) {
        let path = dir.join(format!("{app}.token"));
        std::fs::write(&path, token)?;
        token_files.push(path);
    }
    let up_config = dir.join("upstream.toml");
    std::fs::write(
        &up_config,
        upstream_toml(
            down.target.addr,
            &token_files,
            &admin_token,
            s.app_concurrency,
        ),
    )?;
    eprintln!(
        "starting {} on {} with 3 scim apps",
        s.binary.display(),
        db.backend()
    );
    let up = match Gateway::start_configured(
        &s.binary,
        db.url(),
        &dir.join("gateway.log"),
        Some(&up_config),
    )
    .await
    {
        Ok(up) => up,
        Err(e) => {
            down.stop().await?;
            return Err(e);
        }
    };
    let downstream: Vec<Target> = app_tokens
        .iter()
        .map(|t| Target::new(down.target.addr, t))
        .collect::<anyhow::Result<_>>()?;
    let result = match Target::new(up.target.addr, &admin_token) {
        Ok(admin) => measure(s, db, &up.target, &admin, &downstream, load_before).await,
        Err(e) => Err(e),
    };
    if result.is_err() {
        eprintln!("--- gateway log (last 30 lines) ---\n{}", up.log_tail(30));
        eprintln!(
            "--- downstream log (last 30 lines) ---\n{}",
            down.log_tail(30)
        );
    }
    let stopped = (up.stop().await, down.stop().await);
    let report = result?;
    stopped.0?;
    stopped.1?;
    Ok(report)
}

/// The downstream gateway: one tenant per app, each with its own token, so
/// the three apps' accounts live in separate namespaces.
fn downstream_toml(tokens: &[String]) -> String {
    let mut s = String::new();
    for (app, token) in APPS.iter().zip(tokens) {
        let hash = hex::encode(Sha256::digest(token.as_bytes()));
        let _ = writeln!(
            s,
            "[[tenants]]\nid = \"{app}\"\n[[tenants.tokens]]\nid = \"{app}\"\nsha256 = \"{hash}\"\n"
        );
    }
    s
}

/// The gateway under test: three `scim` apps fed by tenant `default` (the
/// bench's SCIM token) and an admin token.
fn upstream_toml(
    downstream: SocketAddr,
    token_files: &[PathBuf],
    admin_token: &str,
    concurrency: Option<usize>,
) -> String {
    let hash = hex::encode(Sha256::digest(admin_token.as_bytes()));
    let mut s = format!("[[admin.tokens]]\nid = \"bench\"\nsha256 = \"{hash}\"\n\n");
    for (app, file) in APPS.iter().zip(token_files) {
        let _ = writeln!(s, "[[apps]]\nname = \"{app}\"\ntenant = \"default\"");
        if let Some(c) = concurrency {
            let _ = writeln!(s, "concurrency = {c}");
        }
        let _ = writeln!(
            s,
            "[apps.adapter]\nkind = \"scim\"\nbase_url = \"http://{downstream}/scim/v2\"\n\
             token_file = {}\n",
            Value::String(file.display().to_string())
        );
    }
    s
}

/// Job counts of one app, from the admin API.
#[derive(Debug, Clone, Default)]
struct AppJobs {
    name: String,
    paused: bool,
    pending: u64,
    running: u64,
    dead: u64,
}

impl AppJobs {
    fn open(&self) -> u64 {
        self.pending + self.running
    }
}

/// The admin API over one keep-alive connection, opened again when the
/// gateway has closed it (it drops idle connections after a few seconds).
struct AdminClient {
    target: Target,
    conn: Option<Conn>,
}

impl AdminClient {
    fn new(target: Target) -> Self {
        Self { target, conn: None }
    }

    /// Sends `call` (every admin call the bench makes is idempotent, so a
    /// call that failed on a stale connection is sent again on a new one).
    async fn send(&mut self, call: &Call) -> anyhow::Result<Reply> {
        if let Some(conn) = &mut self.conn {
            match conn.send(call, REQUEST_TIMEOUT).await {
                Ok(reply) => return Ok(reply),
                Err(_) => self.conn = None,
            }
        }
        let mut conn = Conn::open(&self.target).await?;
        let reply = conn.send(call, REQUEST_TIMEOUT).await?;
        self.conn = Some(conn);
        Ok(reply)
    }

    /// `GET /admin/apps`.
    async fn summaries(&mut self) -> anyhow::Result<Vec<AppJobs>> {
        let reply = self.send(&Call::get("/admin/apps")).await?;
        if reply.status != StatusCode::OK {
            bail!("GET /admin/apps answered {}", reply.describe());
        }
        let doc: Value = serde_json::from_slice(&reply.body)?;
        let apps = doc["apps"]
            .as_array()
            .context("GET /admin/apps without apps")?;
        Ok(apps
            .iter()
            .map(|a| {
                let n = |s: &str| a["jobs"][s].as_u64().unwrap_or(0);
                AppJobs {
                    name: a["name"].as_str().unwrap_or_default().to_string(),
                    paused: a["paused"].as_bool().unwrap_or(false),
                    pending: n("pending"),
                    running: n("running"),
                    dead: n("dead"),
                }
            })
            .collect())
    }

    /// `POST /admin/apps/{app}/pause` or `…/resume`.
    async fn set_paused(&mut self, app: &str, paused: bool) -> anyhow::Result<()> {
        let verb = if paused { "pause" } else { "resume" };
        let call = Call {
            method: Method::POST,
            path: format!("/admin/apps/{app}/{verb}"),
            body: None,
            minimal: false,
        };
        let reply = self.send(&call).await?;
        if reply.status != StatusCode::OK {
            bail!("POST {} answered {}", call.path, reply.describe());
        }
        Ok(())
    }
}

/// How waiting for empty queues ended.
struct Drain {
    /// From the start of waiting to the poll that saw every queue empty (or
    /// to the timeout).
    elapsed: Duration,
    /// Whether every queue emptied.
    done: bool,
    /// The last counts seen.
    last: Vec<AppJobs>,
}

/// Polls the admin API until no app has a pending or running job.
async fn wait_drained(admin: &mut AdminClient, timeout: Duration) -> anyhow::Result<Drain> {
    let start = Instant::now();
    let mut said = Instant::now();
    loop {
        let last = admin.summaries().await?;
        let open: u64 = last.iter().map(AppJobs::open).sum();
        let elapsed = start.elapsed();
        if open == 0 || elapsed >= timeout {
            return Ok(Drain {
                elapsed,
                done: open == 0,
                last,
            });
        }
        if said.elapsed() >= Duration::from_secs(5) {
            said = Instant::now();
            eprintln!(
                "  {:.0} s: {open} jobs pending or running",
                elapsed.as_secs_f64()
            );
        }
        tokio::time::sleep(DRAIN_POLL).await;
    }
}

/// Samples the backlog every second until aborted; returns the largest.
async fn watch_backlog(admin: Target, largest: Arc<std::sync::atomic::AtomicU64>) {
    let mut admin = AdminClient::new(admin);
    loop {
        if let Ok(s) = admin.summaries().await {
            let open: u64 = s.iter().map(AppJobs::open).sum();
            largest.fetch_max(open, std::sync::atomic::Ordering::Relaxed);
        }
        tokio::time::sleep(BACKLOG_POLL).await;
    }
}

/// What the paced creates produced.
#[derive(Default)]
struct Paced {
    /// `(id, when its 201 arrived)` per created user.
    acks: Vec<(String, DateTime<Utc>)>,
    /// From the scheduled send time to the response, ms (queueing in the
    /// load generator included, so a stall is not hidden).
    latencies: Vec<f64>,
    errors: u64,
    first_error: Option<String>,
    /// From the first scheduled send to the last response.
    elapsed: Duration,
}

/// Sends `total` POST /Users at `rate` per second on a fixed schedule over
/// `connections` connections, whatever the responses take.
async fn paced_creates(
    target: &Target,
    rate: u32,
    total: usize,
    connections: usize,
) -> anyhow::Result<Paced> {
    let (pacer, slots) = pacer::schedule(f64::from(rate), total as u64, total);
    let mut workers = JoinSet::new();
    for _ in 0..connections {
        let (target, slots) = (target.clone(), slots.clone());
        workers.spawn(async move {
            let mut conn = Conn::open(&target).await?;
            let mut out = Paced::default();
            while let Some(Slot { seq, due }) = slots.next().await {
                let call = ops::create_user(seq);
                let reply = conn.send(&call, REQUEST_TIMEOUT).await;
                let acked = Utc::now();
                let latency = due.elapsed().as_secs_f64() * 1000.0;
                let failure = match reply {
                    Ok(r) if r.status == StatusCode::CREATED => {
                        let doc: Value = serde_json::from_slice(&r.body).unwrap_or_default();
                        match doc["id"].as_str() {
                            Some(id) => {
                                out.acks.push((id.to_string(), acked));
                                out.latencies.push(latency);
                                None
                            }
                            None => Some("201 without an id".to_string()),
                        }
                    }
                    Ok(r) => Some(r.describe()),
                    Err(e) => {
                        conn = Conn::open(&target).await?;
                        Some(format!("{e:#}"))
                    }
                };
                if let Some(f) = failure {
                    out.errors += 1;
                    out.first_error.get_or_insert(f);
                }
            }
            anyhow::Ok(out)
        });
    }
    drop(slots);
    let start = Instant::now();
    pacer.run().await?;
    let mut all = Paced::default();
    while let Some(joined) = workers.join_next().await {
        let part = joined.context("a load task failed")??;
        all.acks.extend(part.acks);
        all.latencies.extend(part.latencies);
        all.errors += part.errors;
        if all.first_error.is_none() {
            all.first_error = part.first_error;
        }
    }
    all.elapsed = start.elapsed();
    Ok(all)
}

/// Nearest-rank percentile of sorted `v`.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

/// The earliest successful `delivery.create` per `(app, identity)`.
fn applied_at(rows: &[DeliveryRow]) -> HashMap<(&str, &str), DateTime<Utc>> {
    let mut out = HashMap::new();
    for r in rows {
        let (Some(app), Some(id)) = (r.app.as_deref(), r.resource_id.as_deref()) else {
            continue;
        };
        if r.action != "delivery.create" || r.outcome != "success" {
            continue;
        }
        if let Ok(at) = DateTime::parse_from_rfc3339(&r.at) {
            out.entry((app, id)).or_insert(at.with_timezone(&Utc));
        }
    }
    out
}

/// Latencies (ms) from each acknowledged create to its delivery in each
/// app, and the number of `(app, user)` pairs never delivered.
fn fanout_latencies(
    acks: &[(String, DateTime<Utc>)],
    applied: &HashMap<(&str, &str), DateTime<Utc>>,
) -> (Vec<f64>, usize) {
    let (mut lat, mut missing) = (Vec::new(), 0);
    for (id, acked) in acks {
        for app in APPS {
            match applied.get(&(app, id.as_str())) {
                Some(at) => {
                    let us = (*at - *acked).num_microseconds().unwrap_or(i64::MAX);
                    lat.push(us as f64 / 1000.0);
                }
                None => missing += 1,
            }
        }
    }
    (lat, missing)
}

/// `GET /scim/v2/Users?count=0` on the downstream gateway: its user count.
async fn downstream_users(target: &Target) -> anyhow::Result<u64> {
    let mut conn = Conn::open(target).await?;
    let reply = conn
        .send(&Call::get("/scim/v2/Users?count=0"), REQUEST_TIMEOUT)
        .await?;
    if reply.status != StatusCode::OK {
        bail!("downstream GET /Users answered {}", reply.describe());
    }
    let doc: Value = serde_json::from_slice(&reply.body)?;
    doc["totalResults"]
        .as_u64()
        .context("downstream list without totalResults")
}

fn jobs_line(apps: &[AppJobs]) -> String {
    apps.iter()
        .map(|a| {
            format!(
                "{} {}/{}/{}{}",
                a.name,
                a.pending,
                a.running,
                a.dead,
                if a.paused { " (paused)" } else { "" }
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

async fn measure(
    s: &Settings,
    db: &Database,
    scim: &Target,
    admin: &Target,
    downstream: &[Target],
    load_before: String,
) -> anyhow::Result<String> {
    let mut admin_conn = AdminClient::new(admin.clone());
    let apps = admin_conn.summaries().await?;
    let names: Vec<&str> = apps.iter().map(|a| a.name.as_str()).collect();
    if names != APPS {
        bail!("the gateway lists apps {names:?}, expected {APPS:?}");
    }
    let mut notes = Vec::new();

    // Phase 1: a sustained rate, latency from 2xx to applied downstream.
    let total = (f64::from(s.rate) * s.duration.as_secs_f64()).round() as usize;
    eprintln!(
        "phase 1: {total} POST /Users at {}/s over {} connections",
        s.rate, s.connections
    );
    let largest = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let watcher = tokio::spawn(watch_backlog(admin.clone(), largest.clone()));
    let paced = paced_creates(scim, s.rate, total, s.connections).await;
    let load_end = Instant::now();
    let paced = paced?;
    eprintln!(
        "  {} created ({:.0}/s), {} errors; waiting for the queues to empty",
        paced.acks.len(),
        per_second(paced.acks.len(), paced.elapsed),
        paced.errors
    );
    let drain1 = wait_drained(&mut admin_conn, s.drain_timeout).await?;
    watcher.abort();
    let drain1_after_load = load_end.elapsed();
    if !drain1.done {
        notes.push(format!(
            "phase 1: queues not empty {} s after the load (pending/running/dead: {})",
            s.drain_timeout.as_secs(),
            jobs_line(&drain1.last)
        ));
    }
    if let Some(e) = &paced.first_error {
        notes.push(format!(
            "phase 1: {} failed POSTs; first: {e}",
            paced.errors
        ));
    }

    // Phase 2: a paused backlog, converged as fast as the engine goes.
    eprintln!(
        "phase 2: pausing the apps, creating {} users, resuming",
        s.drain_changes
    );
    for app in APPS {
        admin_conn.set_paused(app, true).await?;
    }
    let batch = load::bulk_batch_size(scim).await?;
    let write_start = Instant::now();
    let drain_ids =
        load::load_users(scim, s.drain_changes, batch, s.load_connections.max(1)).await?;
    let write_time = write_start.elapsed();
    let at_resume = admin_conn.summaries().await?;
    let t0 = Instant::now();
    for app in APPS {
        admin_conn.set_paused(app, false).await?;
    }
    let resumed = t0.elapsed();
    let drain2 = wait_drained(&mut admin_conn, s.drain_timeout).await?;
    // From the first resume to the poll that saw every queue empty.
    let converge_time = resumed + drain2.elapsed;
    if !drain2.done {
        notes.push(format!(
            "phase 2: queues not empty {} s after resuming (pending/running/dead: {})",
            s.drain_timeout.as_secs(),
            jobs_line(&drain2.last)
        ));
    }
    let load_after = crate::load_average();

    // What the gateway recorded, and what arrived downstream.
    let rows = db.delivery_rows().await?;
    let applied = applied_at(&rows);
    let (lat, missing1) = fanout_latencies(&paced.acks, &applied);
    let lat = sorted(lat);
    let negative = lat.iter().filter(|&&l| l < 0.0).count();
    let idp = sorted(paced.latencies.clone());
    let phase1_ids: HashSet<&str> = paced.acks.iter().map(|(id, _)| id.as_str()).collect();
    let phase1_times: Vec<DateTime<Utc>> = applied
        .iter()
        .filter(|((_, id), _)| phase1_ids.contains(id))
        .map(|(_, at)| *at)
        .collect();
    let delivered1 = match (phase1_times.iter().min(), phase1_times.iter().max()) {
        (Some(first), Some(last)) if last > first => {
            let secs = (*last - *first).num_milliseconds() as f64 / 1000.0;
            format!(
                "{} in {secs:.1} s = {:.0}/s",
                phase1_times.len(),
                phase1_times.len() as f64 / secs
            )
        }
        _ => phase1_times.len().to_string(),
    };
    let missing2 = drain_ids
        .iter()
        .flat_map(|id| APPS.map(|app| (app, id.as_str())))
        .filter(|key| !applied.contains_key(key))
        .count();
    let mut by_outcome: BTreeMap<(String, String), usize> = BTreeMap::new();
    for r in &rows {
        let outcome = if r.outcome == "success" {
            "success".to_string()
        } else {
            r.outcome.chars().take(120).collect()
        };
        *by_outcome.entry((r.action.clone(), outcome)).or_default() += 1;
    }
    let mut counts = Vec::new();
    for (app, target) in APPS.iter().zip(downstream) {
        counts.push(format!("{app} {}", downstream_users(target).await?));
    }
    let expected = paced.acks.len() + drain_ids.len();

    let ops = 3 * drain_ids.len();
    let write_rate = per_second(drain_ids.len(), write_time);
    let converged_rate = per_second(ops, converge_time);
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let command: Vec<String> = std::env::args().collect();
    let mut r = String::new();
    let _ = writeln!(
        r,
        "## scim-gateway fan-out benchmark: 3 SCIM apps, {}\n",
        db.backend()
    );
    let _ = writeln!(
        r,
        "`{}`\n\nThe gateway under test ({}) pushes to 3 `scim` apps (`concurrency` {} each) \
         that are 3 tenants of a second gateway on its own SQLite file. Both gateways and the \
         load generator ({} threads) share {cores} cores on loopback. Latency to \"applied \
         downstream\" is the audit row `delivery.create` `at` (written after the downstream \
         201, ms resolution) minus the wall-clock time the IdP's 201 arrived. Machine load \
         average (1/5/15 min) before: {load_before}; after: {load_after}.\n",
        command.join(" "),
        db.backend(),
        s.app_concurrency
            .map_or("8 (default)".to_string(), |c| c.to_string()),
        s.client_threads,
    );
    let _ = writeln!(
        r,
        "### Phase 1: {}/s POST /Users for {} s (open loop, {} connections)\n",
        s.rate,
        s.duration.as_secs(),
        s.connections
    );
    let _ = writeln!(r, "| | |\n|---|---:|");
    let _ = writeln!(
        r,
        "| POSTs sent / 201 / failed | {total} / {} / {} |",
        paced.acks.len(),
        paced.errors
    );
    let _ = writeln!(
        r,
        "| IdP-side rate achieved | {:.0}/s |",
        per_second(paced.acks.len(), paced.elapsed)
    );
    let _ = writeln!(
        r,
        "| IdP POST latency p50 / p99 (from scheduled send) | {:.1} / {:.1} ms |",
        percentile(&idp, 50.0),
        percentile(&idp, 99.0)
    );
    let _ = writeln!(
        r,
        "| largest backlog seen (jobs pending + running, 3 apps, sampled 1/s) | {} |",
        largest.load(std::sync::atomic::Ordering::Relaxed)
    );
    let _ = writeln!(
        r,
        "| queues empty after the last 201 | {:.2} s |",
        drain1_after_load.as_secs_f64()
    );
    let _ = writeln!(r, "| deliveries of phase 1 users | {delivered1} |");
    let _ = writeln!(
        r,
        "| **201 → applied downstream p50 / p99 / max** ({} app×user pairs; target p99 < 250 ms) \
         | **{:.0} / {:.0} / {:.0} ms** |",
        lat.len(),
        percentile(&lat, 50.0),
        percentile(&lat, 99.0),
        lat.last().copied().unwrap_or(f64::NAN)
    );
    let _ = writeln!(
        r,
        "| app×user pairs without a successful delivery.create | {missing1} |\n"
    );
    let _ = writeln!(
        r,
        "### Phase 2: {} users × 3 apps converged from a paused start\n",
        drain_ids.len()
    );
    let _ = writeln!(r, "| | |\n|---|---:|");
    let _ = writeln!(
        r,
        "| IdP writes while paused (/Bulk, {batch} ops per request, {} in flight) | {} in {:.2} s = {write_rate:.0}/s |",
        s.load_connections.max(1),
        drain_ids.len(),
        write_time.as_secs_f64()
    );
    let _ = writeln!(
        r,
        "| jobs pending/running/dead at resume | {} |",
        jobs_line(&at_resume)
    );
    let _ = writeln!(
        r,
        "| resume → every queue empty | {:.2} s{} |",
        converge_time.as_secs_f64(),
        if drain2.done { "" } else { " (timed out)" }
    );
    let _ = writeln!(
        r,
        "| **converged operations/s** (3 × {} ÷ time; target ≥ 2,000/s) | **{converged_rate:.0}/s** |",
        drain_ids.len()
    );
    let _ = writeln!(
        r,
        "| converged ops/s ÷ IdP write rate (same run) | {:.3} |",
        converged_rate / write_rate.max(1e-9)
    );
    let _ = writeln!(
        r,
        "| app×user pairs without a successful delivery.create | {missing2} |\n"
    );
    let _ = writeln!(
        r,
        "- downstream users per tenant at the end: {} (expected {expected} each)",
        counts.join(", ")
    );
    let _ = writeln!(
        r,
        "- jobs pending/running/dead at the end: {}",
        jobs_line(&drain2.last)
    );
    let outcomes: Vec<String> = by_outcome
        .iter()
        .map(|((action, outcome), n)| format!("{action} {outcome}: {n}"))
        .collect();
    let _ = writeln!(r, "- delivery audit rows: {}", outcomes.join("; "));
    if negative > 0 {
        let _ = writeln!(
            r,
            "- {negative} deliveries were recorded before the client saw the 201 (the worker \
             finished while the response was in flight; ms-truncated audit times)"
        );
    }
    for note in &notes {
        let _ = writeln!(r, "- {note}");
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v = sorted((1..=100).rev().map(f64::from).collect());
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&v, 100.0), 100.0);
        assert!(percentile(&[], 50.0).is_nan());
    }

    #[test]
    fn configurations_parse_shapes() {
        let down = downstream_toml(&["a".into(), "b".into(), "c".into()]);
        assert_eq!(down.matches("[[tenants]]").count(), 3);
        assert!(down.contains(&hex::encode(Sha256::digest(b"b"))));
        let addr = SocketAddr::from(([127, 0, 0, 1], 9));
        let files: Vec<PathBuf> = APPS
            .iter()
            .map(|a| PathBuf::from(format!("/t/{a}")))
            .collect();
        let up = upstream_toml(addr, &files, "x", Some(4));
        assert_eq!(up.matches("[[apps]]").count(), 3);
        assert!(up.contains("base_url = \"http://127.0.0.1:9/scim/v2\""));
        assert!(up.contains("token_file = \"/t/app2\""));
        assert!(up.contains("concurrency = 4"));
    }

    #[test]
    fn latency_pairs_each_app_and_counts_missing() {
        let at = |s: &str| DateTime::parse_from_rfc3339(s).map(|t| t.with_timezone(&Utc));
        let row = |app: &str, at: &str| DeliveryRow {
            app: Some(app.into()),
            resource_id: Some("u1".into()),
            action: "delivery.create".into(),
            outcome: "success".into(),
            at: at.into(),
        };
        let rows = vec![
            row("app1", "2026-01-01T00:00:00.100Z"),
            row("app2", "2026-01-01T00:00:00.250Z"),
            row("app1", "2026-01-01T00:00:09.000Z"),
        ];
        let applied = applied_at(&rows);
        let acks = vec![("u1".to_string(), at("2026-01-01T00:00:00.000Z").unwrap())];
        let (lat, missing) = fanout_latencies(&acks, &applied);
        assert_eq!(sorted(lat), vec![100.0, 250.0]);
        assert_eq!(missing, 1);
    }
}
