//! `scim-bench --soak`: a long, steady mixed load at a fixed share of the
//! gateway's measured capacity, watching for what only time shows: memory
//! that creeps up, throughput or latency that drifts, errors that start
//! after an hour.
//!
//! ```text
//! load N users + G groups ─▶ capacity probe: the mix, closed loop, --probe s
//!   ─▶ the mix paced at share × capacity for --minutes (open loop, pacer.rs)
//!        └ every --interval: req/s, p50, p99, errors, gateway RSS, DB size ─▶ stderr
//!   ─▶ report: the interval table, a verdict on flatness, per-request figures, error samples
//! ```
//!
//! The load generator shares the machine with the gateway; what it reports
//! is stated, never asserted.

mod mix;
mod timeline;

use std::fmt::Write as _;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use anyhow::bail;
use rand::SeedableRng;
use rand::rngs::SmallRng;
use tokio::task::JoinSet;

use self::mix::{Kind, Mix, Weights};
use self::timeline::{Failure, Recorder, Row, Verdict, table_header, table_row};
use crate::client::{Call, Conn, Reply, Target};
use crate::database::Database;
use crate::gateway::Gateway;
use crate::measure::{self, Plan, REQUEST_TIMEOUT, Work, histogram, millis_at};
use crate::pacer::{self, Slots};
use crate::report::per_second;
use crate::{load, load_average};

/// The soak's command-line options (flattened into `scim-bench`'s).
#[derive(clap::Args, Debug)]
pub struct Options {
    /// Soak: drive a paced mix of reads, user writes and group changes for
    /// --minutes, printing throughput, p50/p99, errors and the gateway's RSS
    /// every --interval, then a table and a verdict.
    #[arg(long, conflicts_with = "fanout")]
    pub soak: bool,
    /// With --soak: minutes of paced load.
    #[arg(long, default_value_t = 30, requires = "soak")]
    pub minutes: u64,
    /// With --soak: the paced rate as a share of the capacity measured
    /// first (--rate gives the rate instead and skips the measurement).
    #[arg(
        long,
        default_value_t = 0.5,
        requires = "soak",
        conflicts_with = "rate"
    )]
    pub capacity_share: f64,
    /// With --soak: seconds of the capacity measurement (the mix, closed
    /// loop over --connections).
    #[arg(long, default_value_t = 20, requires = "soak")]
    pub probe: u64,
    /// With --soak: seconds per reported interval [default: a twelfth of
    /// the run, within 5 to 60].
    #[arg(long, requires = "soak")]
    pub interval: Option<u64>,
    /// With --soak: weights of the requests (get, filter, list, create,
    /// patch, delete, member); deletes remove users the soak created.
    #[arg(long, default_value = mix::DEFAULT_MIX, value_parser = Weights::parse, requires = "soak")]
    pub mix: Weights,
    /// With --soak: groups whose membership changes.
    #[arg(long, default_value_t = 10, requires = "soak")]
    pub groups: usize,
    /// With --soak: members of each group at the start (the same number of
    /// other users are its spares; less if --users is too small).
    #[arg(long, default_value_t = 500, requires = "soak")]
    pub group_size: usize,
}

/// Everything the soak needs.
pub struct Settings<'a> {
    /// The soak's own options.
    pub options: &'a Options,
    /// Users to load.
    pub users: usize,
    /// Requests per second; measured (× share) when `None`.
    pub rate: Option<u32>,
    /// Keep-alive connections, for the probe and the paced load.
    pub connections: usize,
    /// Bulk requests in flight while loading.
    pub load_connections: usize,
    /// Unrecorded warm-up of the capacity probe.
    pub warmup: Duration,
    /// Threads of the load generator, for the report.
    pub client_threads: usize,
}

impl Settings<'_> {
    fn duration(&self) -> Duration {
        Duration::from_secs(self.options.minutes * 60)
    }

    fn interval(&self) -> Duration {
        self.options
            .interval
            .map_or_else(|| default_interval(self.duration()), Duration::from_secs)
    }
}

impl Options {
    /// Refuses settings the soak cannot run with, before anything starts.
    pub fn check(&self, users: usize, rate: Option<u32>) -> anyhow::Result<()> {
        if self.minutes == 0 || self.probe == 0 || self.interval == Some(0) || rate == Some(0) {
            bail!("--minutes, --probe, --interval and --rate must be at least 1");
        }
        if !(self.capacity_share > 0.0 && self.capacity_share <= 1.0) {
            bail!("--capacity-share must be above 0 and at most 1");
        }
        if Mix::has_member_changes(&self.mix) && (self.groups == 0 || users < 2 * self.groups) {
            bail!(
                "the mix changes group members: it needs --groups ≥ 1 and --users ≥ 2 × --groups"
            );
        }
        Ok(())
    }
}

/// A twelfth of the run, in whole seconds within 5 to 60.
fn default_interval(duration: Duration) -> Duration {
    Duration::from_secs((duration.as_secs() / 12).clamp(5, 60))
}

/// Loads the data, finds the rate, drives the soak on the running `gw`,
/// and renders the report (`s.options` passed [`Options::check`]).
pub async fn run(s: &Settings<'_>, db: &Database, gw: &mut Gateway) -> anyhow::Result<String> {
    let load_before = load_average();
    let (mix, setup) = prepare(s, &gw.target).await?;
    let mix = Arc::new(mix);
    let (rate, capacity) = match s.rate {
        Some(rate) => (f64::from(rate), format!("Rate given: {rate} req/s.")),
        None => {
            let (capacity, sentence) = probe(s, &gw.target, mix.clone()).await?;
            gw.memory()?; // fails if the gateway died under the probe
            (capacity * s.options.capacity_share, sentence)
        }
    };
    let (rows, recorder) = drive(s, db, gw, mix.clone(), rate).await?;
    let verdict = Verdict::of(&rows, s.duration());
    let mut r = String::new();
    let share = match s.rate {
        Some(_) => "given rate".to_string(),
        None => format!("{} × measured capacity", s.options.capacity_share),
    };
    let _ = writeln!(
        r,
        "## scim-gateway soak: {} min at {rate:.0} req/s ({share}), {}\n",
        s.options.minutes,
        db.backend()
    );
    let command: Vec<String> = std::env::args().collect();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let _ = writeln!(
        r,
        "`{}`\n\n{setup} Mix: {}. Paced open loop over {} keep-alive connections on loopback; \
         latencies are of successful requests, counted from the time each request was due (so \
         waiting for a free connection counts). Load generator on {} threads sharing {cores} \
         cores with the gateway. {capacity} Machine load average (1/5/15 min) before: \
         {load_before}; after: {}.\n",
        command.join(" "),
        s.options.mix,
        s.connections,
        s.client_threads,
        load_average()
    );
    let _ = writeln!(r, "{}", table_header());
    for row in &rows {
        let _ = writeln!(r, "{}", table_row(row));
    }
    let _ = writeln!(r);
    if let Some(v) = &verdict {
        r.push_str(&v.render(rate));
    }
    if let (Some(first), Some(last)) = (rows.first(), rows.last()) {
        let _ = writeln!(
            r,
            "- database: {:.1} MiB after the first interval, {:.1} MiB at the end (every write \
             adds an audit event); users the soak created and had not deleted yet at the end: {}",
            first.db_bytes as f64 / 1_048_576.0,
            last.db_bytes as f64 / 1_048_576.0,
            mix.created_alive()
        );
    }
    r.push('\n');
    r.push_str(&per_kind(&recorder)?);
    let errors = recorder.errors.lines();
    if !errors.is_empty() {
        let _ = writeln!(r, "\nErrors (count, what, first sample):\n");
        for line in errors {
            let _ = writeln!(r, "- {line}");
        }
    }
    Ok(r)
}

/// Loads the users and the groups; returns the mix over them and a
/// sentence on what was loaded.
async fn prepare(s: &Settings<'_>, target: &Target) -> anyhow::Result<(Mix, String)> {
    let o = s.options;
    let layout = if Mix::has_member_changes(&o.mix) {
        mix::group_layout(s.users, o.groups, o.group_size)
    } else {
        Vec::new()
    };
    let size = layout.first().map_or(0, |(members, _)| members.len());
    eprintln!(
        "loading {} users and {} groups of {size} members",
        s.users,
        layout.len()
    );
    let start = Instant::now();
    let batch = load::bulk_batch_size(target).await?;
    let users = load::load_users(target, s.users, batch, s.load_connections).await?;
    let users_time = start.elapsed();
    let mut conn = Conn::open(target).await?;
    let mut groups = Vec::new();
    for (g, (members, spare)) in layout.into_iter().enumerate() {
        let members = users[members].to_vec();
        let id = load::create_group(&mut conn, &format!("soak-{g}"), &members).await?;
        groups.push((id, members, users[spare].to_vec()));
    }
    let sentence = format!(
        "{} users loaded in {:.1} s ({:.0}/s), then {} groups of {size} members, each with {size} \
         other users as spares to add (a group's size stays near its start).",
        s.users,
        users_time.as_secs_f64(),
        per_second(s.users, users_time),
        groups.len()
    );
    eprintln!("{sentence}");
    Ok((Mix::new(o.mix.clone(), users, groups), sentence))
}

/// Measures the mix closed loop; returns its successful requests per
/// second and a sentence for the report.
async fn probe(s: &Settings<'_>, target: &Target, mix: Arc<Mix>) -> anyhow::Result<(f64, String)> {
    let plan = Plan {
        connections: s.connections,
        warmup: s.warmup,
        duration: Duration::from_secs(s.options.probe),
    };
    eprintln!(
        "measuring capacity: the mix, closed loop, {} connections, {} s",
        plan.connections, s.options.probe
    );
    let out = measure::run(std::slice::from_ref(target), mix, plan).await?;
    let capacity = out.rate();
    let mut sentence = format!(
        "Capacity measured first: {capacity:.0} req/s ({} s warm-up + {} s closed loop, {} \
         connections; p50 {:.2} ms, p99 {:.2} ms, {} errors",
        s.warmup.as_secs(),
        s.options.probe,
        s.connections,
        out.millis_at(50.0),
        out.millis_at(99.0),
        out.errors
    );
    if let Some(e) = &out.first_error {
        let _ = write!(sentence, ", first: {e}");
    }
    sentence.push_str(").");
    eprintln!("{sentence}");
    if capacity < 1.0 {
        bail!("the capacity probe measured {capacity:.1} req/s; nothing to soak at");
    }
    Ok((capacity, sentence))
}

/// Paces the mix at `rate` for the soak's duration, taking a [`Row`] every
/// interval (printed as it is taken); returns the rows and the recorder.
async fn drive(
    s: &Settings<'_>,
    db: &Database,
    gw: &mut Gateway,
    mix: Arc<Mix>,
    rate: f64,
) -> anyhow::Result<(Vec<Row>, Recorder)> {
    let (duration, interval) = (s.duration(), s.interval());
    let total = (rate * duration.as_secs_f64()).round() as u64;
    eprintln!(
        "soaking: {total} requests at {rate:.0}/s for {} min, a line every {} s",
        s.options.minutes,
        interval.as_secs()
    );
    let recorder = Arc::new(Mutex::new(Recorder::new()?));
    // Up to a second of due requests may wait for a free connection before
    // the pacer itself waits (their latency still counts from due time).
    let (pacer, slots) = pacer::schedule(rate, total, (rate as usize).max(s.connections));
    // Dropping the set (an error below) stops the pacer and the connections.
    let mut tasks = JoinSet::new();
    for seed in 0..s.connections as u64 {
        let (target, mix, slots, rec) = (
            gw.target.clone(),
            mix.clone(),
            slots.clone(),
            recorder.clone(),
        );
        tasks.spawn(connection(target, mix, slots, rec, seed));
    }
    drop(slots);
    let start = Instant::now();
    tasks.spawn(pacer.run());
    eprintln!("{}", table_header());
    let mut rows = Vec::new();
    let mut last = start;
    let ticks = duration.as_secs().div_ceil(interval.as_secs()).max(1);
    for k in 1..=ticks {
        if k < ticks {
            tokio::time::sleep_until((start + interval * k as u32).into()).await;
        } else {
            // The last interval also holds the requests still queued or in
            // flight when the schedule ended.
            while let Some(joined) = tasks.join_next().await {
                joined??;
            }
        }
        let now = Instant::now();
        let window = lock(&recorder).take_window()?;
        let mut row = Row::new(now - start, now - last, &window, gw.memory()?);
        row.db_bytes = db.size_bytes().await?;
        row.load1 = load_average()
            .split_whitespace()
            .next()
            .unwrap_or("?")
            .to_string();
        eprintln!("{}", table_row(&row));
        rows.push(row);
        last = now;
    }
    let recorder = Arc::try_unwrap(recorder)
        .map_err(|_| anyhow::anyhow!("a connection task outlived the soak"))?
        .into_inner()
        .unwrap_or_else(PoisonError::into_inner);
    Ok((rows, recorder))
}

/// One paced connection: takes the next due slot, sends the mix's next
/// request (reconnecting after a failure), and records the answer.
async fn connection(
    target: Target,
    mix: Arc<Mix>,
    slots: Slots,
    recorder: Arc<Mutex<Recorder>>,
    seed: u64,
) -> anyhow::Result<()> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut conn = None;
    while let Some(slot) = slots.next().await {
        let (call, ticket) = mix.next_call(&mut rng);
        let kind = ticket.kind();
        let reply = send(&mut conn, &target, &call).await;
        let latency = slot.due.elapsed();
        let accepted = mix.settle(ticket, reply.as_ref().ok());
        let failure = match reply {
            Ok(_) if accepted => None,
            Ok(r) => Some(Failure::Status(
                r.status,
                format!("{} {}: {}", call.method, call.path, r.describe()),
            )),
            Err(e) => Some(Failure::Transport(format!("{e:#}"))),
        };
        lock(&recorder).record(kind, latency, failure);
    }
    Ok(())
}

/// Sends `call` over `conn`, opening one first if there is none; a
/// connection that failed is not kept.
async fn send(conn: &mut Option<Conn>, target: &Target, call: &Call) -> anyhow::Result<Reply> {
    let mut c = match conn.take() {
        Some(c) => c,
        None => Conn::open(target).await?,
    };
    let reply = c.send(call, REQUEST_TIMEOUT).await;
    if reply.is_ok() {
        *conn = Some(c);
    }
    reply
}

/// The whole run per kind of request, and all kinds together.
fn per_kind(recorder: &Recorder) -> anyhow::Result<String> {
    let mut s = String::from(
        "| request | requests | errors | p50 ms | p99 ms | p99.9 ms |\n|---|---:|---:|---:|---:|---:|\n",
    );
    let mut all = histogram()?;
    let mut errors = 0;
    let line = |label: &str, hist: &hdrhistogram::Histogram<u64>, errors: u64| {
        format!(
            "| {label} | {} | {errors} | {:.2} | {:.2} | {:.2} |\n",
            hist.len() + errors,
            millis_at(hist, 50.0),
            millis_at(hist, 99.0),
            millis_at(hist, 99.9)
        )
    };
    for kind in Kind::ALL {
        let tally = &recorder.kinds[kind.index()];
        if tally.ok() + tally.errors == 0 {
            continue;
        }
        s.push_str(&line(kind.label(), &tally.hist, tally.errors));
        all.add(&tally.hist)?;
        errors += tally.errors;
    }
    s.push_str(&line("**all**", &all, errors));
    Ok(s)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_default_to_a_twelfth_of_the_run_within_5_and_60_seconds() {
        let min = |m: u64| default_interval(Duration::from_secs(m * 60));
        assert_eq!(min(2), Duration::from_secs(10));
        assert_eq!(min(10), Duration::from_secs(50));
        assert_eq!(min(30), Duration::from_secs(60));
        assert_eq!(
            default_interval(Duration::from_secs(30)),
            Duration::from_secs(5)
        );
    }
}
