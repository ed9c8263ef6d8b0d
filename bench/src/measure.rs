//! Closed-loop measurement: a fixed number of keep-alive connections, each
//! sending its next request as soon as the previous answer is read, for a
//! warm-up (not recorded) and then the measured duration. Latencies of
//! successful requests go into an HDR histogram (microseconds, 3
//! significant digits); any other answer, a transport error or a timeout
//! counts as an error, and a failed connection is reopened. With several
//! gateway nodes the connections are dealt out over them round-robin, so
//! each node gets an equal share (one more for the first few when they do
//! not divide evenly).
//!
//! What is sent is up to a [`Work`]: one operation (`ops::Workload`) or the
//! soak's mix (`soak::mix::Mix`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use rand::SeedableRng;
use rand::rngs::SmallRng;

use crate::client::{Call, Conn, Reply, Target};

/// Bound for one request; a slower one counts as an error.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest latency the histogram records (longer ones are clamped).
const MAX_MICROS: u64 = 60_000_000;

/// A source of requests for the measuring loops.
pub trait Work: Send + Sync + 'static {
    /// What a request remembers until its answer (say, the member it adds).
    type Ticket: Send;

    /// The next request.
    fn next_call(&self, rng: &mut SmallRng) -> (Call, Self::Ticket);

    /// Whether `reply` (`None`: no answer came) is what a working gateway
    /// answers to the request issued with `ticket`; updates whatever state
    /// the request changed.
    fn settle(&self, ticket: Self::Ticket, reply: Option<&Reply>) -> bool;
}

/// How long and how hard to measure.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Concurrent connections.
    pub connections: usize,
    /// Unrecorded time before the measurement.
    pub warmup: Duration,
    /// Measured time.
    pub duration: Duration,
}

/// What one operation's measurement found.
pub struct Outcome {
    /// Latencies of successful requests, in microseconds.
    pub hist: Histogram<u64>,
    /// Failed requests during the measured time.
    pub errors: u64,
    /// First failure seen, for the report.
    pub first_error: Option<String>,
    /// From the end of the warm-up to the last recorded answer.
    pub elapsed: Duration,
}

impl Outcome {
    /// Successful requests per second.
    pub fn rate(&self) -> f64 {
        self.hist.len() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Latency at `q` (0–100), in milliseconds.
    pub fn millis_at(&self, q: f64) -> f64 {
        millis_at(&self.hist, q)
    }
}

/// Runs `work` under `plan`, its connections spread over `targets`.
pub async fn run<W: Work>(targets: &[Target], work: Arc<W>, plan: Plan) -> anyhow::Result<Outcome> {
    if targets.is_empty() {
        bail!("nothing to measure: no gateway to connect to");
    }
    let warm_end = Instant::now() + plan.warmup;
    let end = warm_end + plan.duration;
    let mut tasks = tokio::task::JoinSet::new();
    for (seed, target) in (0u64..).zip(spread(targets, plan.connections)) {
        let (target, work) = (target.clone(), work.clone());
        tasks.spawn(async move { worker(&target, &*work, warm_end, end, seed).await });
    }
    let mut total = Outcome {
        hist: histogram()?,
        errors: 0,
        first_error: None,
        elapsed: Duration::ZERO,
    };
    while let Some(joined) = tasks.join_next().await {
        let part = joined.context("benchmark connection task failed")??;
        total.hist.add(&part.hist)?;
        total.errors += part.errors;
        total.first_error = total.first_error.or(part.first_error);
        total.elapsed = total.elapsed.max(part.elapsed);
    }
    if total.elapsed.is_zero() {
        total.elapsed = plan.duration;
    }
    Ok(total)
}

/// The target of each of `connections` connections: `targets` in turn,
/// round-robin (none if `targets` is empty).
pub fn spread<T>(targets: &[T], connections: usize) -> impl Iterator<Item = &T> {
    targets.iter().cycle().take(connections)
}

/// An empty latency histogram (microseconds, 3 significant digits).
pub fn histogram() -> anyhow::Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(1, MAX_MICROS, 3)?)
}

/// Records `latency` in `hist` (clamped to the histogram's range).
pub fn record(hist: &mut Histogram<u64>, latency: Duration) {
    let micros = u64::try_from(latency.as_micros()).unwrap_or(MAX_MICROS);
    hist.saturating_record(micros.clamp(1, MAX_MICROS));
}

/// The latency at `q` (0–100) in `hist`, in milliseconds.
pub fn millis_at(hist: &Histogram<u64>, q: f64) -> f64 {
    hist.value_at_percentile(q) as f64 / 1000.0
}

/// One connection's loop.
async fn worker<W: Work>(
    target: &Target,
    work: &W,
    warm_end: Instant,
    end: Instant,
    seed: u64,
) -> anyhow::Result<Outcome> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut out = Outcome {
        hist: histogram()?,
        errors: 0,
        first_error: None,
        elapsed: Duration::ZERO,
    };
    // The first connection must open: a gateway that refuses it is down.
    let mut conn = Some(Conn::open(target).await?);
    while Instant::now() < end {
        let Some(c) = conn.as_mut() else {
            match Conn::open(target).await {
                Ok(c) => conn = Some(c),
                Err(e) => {
                    out.fail(Instant::now() >= warm_end, format!("reconnect: {e:#}"));
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            continue;
        };
        let (call, ticket) = work.next_call(&mut rng);
        let start = Instant::now();
        let result = c.send(&call, REQUEST_TIMEOUT).await;
        let done = Instant::now();
        let measured = start >= warm_end;
        let accepted = work.settle(ticket, result.as_ref().ok());
        match result {
            Ok(_) if accepted => {
                if measured {
                    record(&mut out.hist, done - start);
                    out.elapsed = done - warm_end;
                }
            }
            Ok(reply) => out.fail(
                measured,
                format!("{} {}: {}", call.method, call.path, reply.describe()),
            ),
            Err(e) => {
                out.fail(measured, format!("{e:#}"));
                conn = None;
            }
        }
    }
    Ok(out)
}

impl Outcome {
    fn fail(&mut self, measured: bool, what: String) {
        if measured {
            self.errors += 1;
            self.first_error.get_or_insert(what);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_dealt_out_round_robin() {
        let nodes = ["a", "b"];
        let dealt: Vec<_> = spread(&nodes, 32).collect();
        assert_eq!(dealt.len(), 32);
        assert_eq!(dealt.iter().filter(|t| ***t == "a").count(), 16);
        assert_eq!(dealt.iter().filter(|t| ***t == "b").count(), 16);
        assert_eq!(dealt[..3], [&"a", &"b", &"a"]);
    }

    #[test]
    fn uneven_connections_go_to_the_first_nodes() {
        let nodes = [1, 2, 3];
        let dealt: Vec<_> = spread(&nodes, 5).copied().collect();
        assert_eq!(dealt, [1, 2, 3, 1, 2]);
        assert_eq!(spread(&nodes, 0).count(), 0);
        assert_eq!(spread::<u8>(&[], 4).count(), 0);
    }
}
