//! `scim-bench`: starts the release gateway on a fresh database, loads it
//! with users and groups, measures each SCIM operation in turn with
//! concurrent keep-alive connections on loopback, and prints a Markdown
//! report. The gateway is stopped (and a PostgreSQL database dropped) on
//! every exit path, Ctrl-C included.
//!
//! ```text
//! fresh DB ─▶ gateway (child, 127.0.0.1:free port) ─▶ load (Bulk) ─▶ measure op 1..8 ─▶ report
//!                                                                      └ ceiling: GET /healthz
//! ```
//!
//! With `--nodes N` (PostgreSQL only) N gateways share the database and
//! the measuring connections are dealt out round-robin over them (see
//! `cluster.rs`). With `--compare` it measures SQLite with one node and
//! then PostgreSQL with each of `--compare-nodes`, and closes with a table
//! that sets them side by side (see `compare.rs`).
//!
//! With `--fanout` it measures the delivery engine instead (see `fanout.rs`):
//! the gateway pushes to 3 `scim` apps served by a second gateway. With
//! `--soak` it drives a paced mixed load for a long time and watches
//! throughput, latency and the gateway's memory (see `soak.rs`).

mod client;
mod cluster;
mod compare;
mod database;
mod fanout;
mod fixtures;
mod gateway;
mod load;
mod measure;
mod ops;
mod pacer;
mod report;
mod seal_lag;
mod soak;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use clap::Parser;

use crate::cluster::Cluster;
use crate::compare::{Comparison, Measured, NodeCounts};
use crate::database::Database;
use crate::gateway::Gateway;
use crate::measure::Plan;
use crate::ops::{Op, Workload};
use crate::report::{Report, Row, connections_sentence, per_second};

/// Benchmark a scim-gateway release binary.
#[derive(Parser, Debug)]
#[command(name = "scim-bench", version)]
struct Args {
    /// Users to load before measuring.
    #[arg(long, default_value_t = 10_000)]
    users: usize,
    /// PostgreSQL server (postgres://…) to run on: a fresh database is
    /// created there and dropped at the end. Default: a temporary SQLite file.
    /// With --compare: the server of the PostgreSQL configurations.
    #[arg(long)]
    database_url: Option<String>,
    /// Gateway nodes (`serve` processes) over the one database, measured
    /// together: --connections are dealt out round-robin over them, loading
    /// goes through the first. Above 1 needs --database-url (PostgreSQL).
    #[arg(long, default_value_t = 1, conflicts_with_all = ["fanout", "soak"])]
    nodes: usize,
    /// Measure, one after another with a fresh database and load each,
    /// SQLite with 1 node and PostgreSQL (--database-url) with each of
    /// --compare-nodes, then print a table comparing them.
    #[arg(long, requires = "database_url", conflicts_with_all = ["fanout", "soak", "nodes"])]
    compare: bool,
    /// With --compare: the PostgreSQL configurations' node counts,
    /// increasing.
    #[arg(long, default_value = "1,2,3", value_parser = NodeCounts::parse, requires = "compare")]
    compare_nodes: NodeCounts,
    /// The gateway binary (build it first: cargo build --release -p scim-gateway).
    #[arg(long, default_value = "target/release/scim-gateway")]
    gateway: PathBuf,
    /// Measured seconds per operation (with --fanout: seconds of sustained load).
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Unrecorded warm-up seconds before each measurement (with --soak:
    /// before the capacity probe).
    #[arg(long, default_value_t = 1)]
    warmup: u64,
    /// Concurrent keep-alive connections while measuring (with --fanout and
    /// --soak: the paced requests are spread over this many).
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Members of the big group (at most --users).
    #[arg(long, default_value_t = 100_000)]
    group_members: usize,
    /// Bulk requests in flight while loading (with --fanout: in phase 2).
    #[arg(long, default_value_t = 4)]
    load_connections: usize,
    /// Threads of the load generator (it shares the machine with the gateway).
    #[arg(long, default_value_t = 2)]
    client_threads: usize,
    /// Measure delivery instead: 3 `scim` apps pointing at a second gateway;
    /// latency from the IdP's 2xx to the change applied downstream at
    /// --rate for --duration s, then converged operations per second from a
    /// paused backlog of --drain-changes users.
    #[arg(long)]
    fanout: bool,
    /// With --fanout: IdP creates per second (open loop) [default: 500].
    /// With --soak: requests per second, instead of a share of the measured
    /// capacity.
    #[arg(long)]
    rate: Option<u32>,
    /// With --fanout: users created while the apps are paused.
    #[arg(long, default_value_t = 5000, requires = "fanout")]
    drain_changes: usize,
    /// With --fanout: each app's delivery `concurrency` (default: the gateway's).
    #[arg(long, requires = "fanout")]
    app_concurrency: Option<usize>,
    /// With --fanout: longest wait, in seconds, for the delivery queues to empty.
    #[arg(long, default_value_t = 300, requires = "fanout")]
    drain_timeout: u64,
    #[command(flatten)]
    soak: soak::Options,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.client_threads.max(1))
        .enable_all()
        .build();
    let result = runtime
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(run(args)));
    match result {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("scim-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Creates the database, runs the benchmark, and removes the database
/// whatever happened.
async fn run(args: Args) -> anyhow::Result<String> {
    if !args.gateway.is_file() {
        bail!(
            "gateway binary {} not found; build it with `cargo build --release -p scim-gateway` \
             (from the workspace root) or pass --gateway PATH",
            args.gateway.display()
        );
    }
    if args.users == 0 || args.connections == 0 {
        bail!("--users and --connections must be at least 1");
    }
    if args.rate.is_some() && !args.fanout && !args.soak.soak {
        bail!("--rate goes with --fanout or --soak");
    }
    if args.soak.soak {
        args.soak.check(args.users, args.rate)?;
    }
    if args.nodes == 0 {
        bail!("--nodes must be at least 1");
    }
    if args.nodes > 1 && args.database_url.is_none() {
        bail!(
            "--nodes {} needs --database-url: several gateways share a PostgreSQL database, \
             not a SQLite file",
            args.nodes
        );
    }
    let work = tempfile::Builder::new().prefix("scim-bench-").tempdir()?;
    if args.compare {
        return compare_all(&args, work.path()).await;
    }
    let server = args.database_url.as_deref();
    on_fresh_database(server, work.path(), async |db| {
        bench(&args, db, work.path()).await
    })
    .await
}

/// Creates a fresh database (on PostgreSQL `server`, or a SQLite file in
/// `dir`), runs `bench` on it until it ends or Ctrl-C, and removes the
/// database whatever happened.
async fn on_fresh_database<T>(
    server: Option<&str>,
    dir: &Path,
    bench: impl AsyncFnOnce(&Database) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let db = Database::create(server, dir).await?;
    let outcome = tokio::select! {
        r = bench(&db) => r,
        _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted")),
    };
    let removed = db.remove().await;
    if let (Err(_), Err(e)) = (&outcome, &removed) {
        eprintln!("scim-bench: {e:#}");
    }
    let value = outcome?;
    removed?;
    Ok(value)
}

/// `--compare`: measures each configuration on its own fresh database,
/// printing its report as soon as it is done, and returns the comparison.
async fn compare_all(args: &Args, dir: &Path) -> anyhow::Result<String> {
    let server = args
        .database_url
        .as_deref()
        .context("--compare needs --database-url")?;
    let configs = compare::configurations(&args.compare_nodes);
    let mut results = Vec::new();
    for (i, config) in configs.iter().enumerate() {
        eprintln!(
            "=== configuration {} of {}: {} ===",
            i + 1,
            configs.len(),
            config.name()
        );
        let dir = dir.join(format!("config-{}", i + 1));
        std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let server = config.postgres.then_some(server);
        let report = on_fresh_database(server, &dir, async |db| {
            measure_on(args, db, &dir, config.nodes).await
        })
        .await
        .with_context(|| format!("measuring {}", config.name()))?;
        println!("{}", report.render());
        results.push(Measured {
            config: *config,
            rows: report.rows,
        });
    }
    let comparison = Comparison {
        users: args.users,
        cores: cores(),
        results,
    };
    Ok(comparison.render())
}

/// Starts the gateway, measures, and stops it (also on error).
async fn bench(args: &Args, db: &Database, dir: &Path) -> anyhow::Result<String> {
    if args.fanout {
        let settings = fanout::Settings {
            binary: args.gateway.clone(),
            rate: args.rate.unwrap_or(500),
            duration: Duration::from_secs(args.duration),
            drain_changes: args.drain_changes,
            connections: args.connections,
            load_connections: args.load_connections,
            app_concurrency: args.app_concurrency,
            drain_timeout: Duration::from_secs(args.drain_timeout),
            client_threads: args.client_threads,
        };
        return fanout::bench(&settings, db, dir).await;
    }
    if !args.soak.soak {
        return Ok(measure_on(args, db, dir, args.nodes).await?.render());
    }
    eprintln!("starting {} on {}", args.gateway.display(), db.backend());
    let mut gw = Gateway::start(&args.gateway, db.url(), &dir.join("gateway.log")).await?;
    let settings = soak::Settings {
        options: &args.soak,
        users: args.users,
        rate: args.rate,
        connections: args.connections,
        load_connections: args.load_connections,
        warmup: Duration::from_secs(args.warmup),
        client_threads: args.client_threads,
    };
    let result = soak::run(&settings, db, &mut gw).await;
    if result.is_err() {
        eprintln!("--- gateway log (last 30 lines) ---\n{}", gw.log_tail(30));
    }
    gw.stop().await?;
    result
}

/// Starts `nodes` gateways on `db`, measures every operation, and stops
/// them (also on error).
async fn measure_on(
    args: &Args,
    db: &Database,
    dir: &Path,
    nodes: usize,
) -> anyhow::Result<Report> {
    let binary = args.gateway.display();
    match nodes {
        1 => eprintln!("starting {binary} on {}", db.backend()),
        n => eprintln!("starting {n} × {binary} on {}", db.backend()),
    }
    let mut cluster = Cluster::start(&args.gateway, db.url(), dir, nodes).await?;
    let result = measure_all(args, db, &mut cluster).await;
    if result.is_err() {
        eprintln!("{}", cluster.log_tails(30));
    }
    cluster.stop().await?;
    result
}

async fn measure_all(args: &Args, db: &Database, nodes: &mut Cluster) -> anyhow::Result<Report> {
    let big = args.group_members.min(args.users);
    eprintln!(
        "loading {} users, an empty group and a {big}-member group",
        args.users
    );
    let (data, stats) = load::load(nodes.first(), args.users, big, args.load_connections).await?;
    let memory_after_load = nodes.largest_memory()?;
    let load = format!(
        "Loaded {} users in {:.1} s ({:.0} users/s; {}, {} requests in flight), then 2 groups \
         and the big group's {big} members in {:.1} s ({:.0} members/s, PATCH {} at a time).",
        args.users,
        stats.users_time.as_secs_f64(),
        per_second(args.users, stats.users_time),
        match stats.batch {
            1 => "single POSTs".to_string(),
            n => format!("/Bulk with {n} operations per request"),
        },
        args.load_connections,
        stats.groups_time.as_secs_f64(),
        per_second(big, stats.groups_time),
        load::MEMBER_CHUNK,
    );
    eprintln!("{load}");
    let data = Arc::new(data);
    let mut pool = Arc::new(data.user_ids[big..].to_vec());
    let load_before = load_average();
    let plan = Plan {
        connections: args.connections,
        warmup: Duration::from_secs(args.warmup),
        duration: Duration::from_secs(args.duration),
    };
    let targets = nodes.targets();
    let (mut rows, mut notes) = (Vec::new(), Vec::new());
    for op in Op::ALL {
        let label = op.label(big);
        eprintln!("measuring {label}");
        let work = Arc::new(Workload::new(op, data.clone(), pool.clone()));
        // The audit sealer's backlog while writes run (PostgreSQL).
        let watch = match (db, op.writes()) {
            (Database::Postgres { url, .. }, true) => Some(seal_lag::Watch::start(url)?),
            _ => None,
        };
        let out = measure::run(&targets, work.clone(), plan).await?;
        if let Some(watch) = watch {
            notes.push(seal_lag::note(&label, &watch.finish()?));
        }
        // Fails if a gateway node died under this load.
        let peak_kib = nodes.largest_memory()?.peak_kib;
        if op == Op::CreateUser {
            // Users created here belong to no group: the member pool.
            pool = Arc::new(
                work.created()
                    .into_iter()
                    .chain(pool.iter().cloned())
                    .collect(),
            );
        }
        if let Some((repeated, sent, pool)) = work.repeated_additions() {
            notes.push(format!(
                "{label}: only {pool} users were not yet members, so {repeated} of {sent} \
                 additions repeated an existing member"
            ));
        }
        if let Some(e) = &out.first_error {
            notes.push(format!("{label}: {} errors; first: {e}", out.errors));
        }
        let row = Row {
            op,
            label,
            rate: out.rate(),
            p50: out.millis_at(50.0),
            p99: out.millis_at(99.0),
            errors: out.errors,
            peak_kib,
        };
        eprintln!(
            "  {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms, {} errors",
            row.rate, row.p50, row.p99, row.errors
        );
        rows.push(row);
    }
    let cores = cores();
    let setup = format!(
        "{}, {} s warm-up + {} s per operation; load generator \
         on {} threads sharing {cores} cores with the gateway. Latencies are of successful requests. \
         Member PATCHes send `Prefer: return=minimal` (204, no group body); the user PATCH gets the \
         full 200 response. Machine load average (1/5/15 min) before measuring: {load_before}; \
         after: {}.",
        connections_sentence(args.connections, nodes.len()),
        args.warmup,
        args.duration,
        args.client_threads,
        load_average()
    );
    Ok(Report {
        users: args.users,
        backend: db.backend(),
        nodes: nodes.len(),
        setup,
        load,
        rows,
        memory: (memory_after_load, nodes.largest_memory()?),
        notes,
    })
}

/// The machine's cores (0 if unknown), for the reports.
fn cores() -> usize {
    std::thread::available_parallelism().map_or(0, |n| n.get())
}

/// The machine's load averages: on a shared machine other work skews
/// absolute numbers, and the report should say so.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}
