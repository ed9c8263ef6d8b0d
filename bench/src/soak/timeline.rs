//! What a soak records and how it reads: every answer goes into the
//! current interval's tally and its kind's whole-run tally; every interval
//! becomes a [`Row`] (rate, latency, errors, the gateway's memory, the
//! database size, the machine's load), printed live and again in the
//! report; at the end [`Verdict`] states how flat memory and throughput
//! stayed. Figures are stated, never asserted: the machine may be shared.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use hyper::StatusCode;

use super::mix::Kind;
use crate::gateway::Memory;
use crate::measure::{histogram, millis_at, record};

/// Distinct error descriptions kept with a sample (more are counted as
/// "other").
const ERROR_KINDS: usize = 20;

/// Answers of one interval, or of one kind over the run.
pub struct Tally {
    /// Latencies of successful requests, from the time each was due.
    pub hist: Histogram<u64>,
    /// Failed requests.
    pub errors: u64,
}

impl Tally {
    fn new() -> anyhow::Result<Self> {
        Ok(Self {
            hist: histogram()?,
            errors: 0,
        })
    }

    /// Successful requests.
    pub fn ok(&self) -> u64 {
        self.hist.len()
    }
}

/// Why a request failed.
pub enum Failure {
    /// An answer other than the expected one.
    Status(StatusCode, String),
    /// No answer: connection failure or timeout.
    Transport(String),
}

/// Errors by what they were, each with its first sample.
#[derive(Default)]
pub struct ErrorLog {
    /// `kind → status` or `kind → no answer` → (count, first sample).
    by_what: BTreeMap<String, (u64, String)>,
    other: u64,
}

impl ErrorLog {
    fn add(&mut self, kind: Kind, failure: Failure) {
        let (what, sample) = match failure {
            Failure::Status(status, sample) => (format!("{} → {status}", kind.label()), sample),
            Failure::Transport(e) => (format!("{} → no answer", kind.label()), e),
        };
        if let Some(entry) = self.by_what.get_mut(&what) {
            entry.0 += 1;
        } else if self.by_what.len() < ERROR_KINDS {
            self.by_what.insert(what, (1, sample));
        } else {
            self.other += 1;
        }
    }

    /// Report lines: count, what, first sample.
    pub fn lines(&self) -> Vec<String> {
        let mut lines: Vec<String> = self
            .by_what
            .iter()
            .map(|(what, (n, sample))| format!("{n} × {what}; first: {sample}"))
            .collect();
        if self.other > 0 {
            lines.push(format!("{} × other errors", self.other));
        }
        lines
    }
}

/// Shared by the connections: the interval being filled, the run's tally
/// per kind, and the error log.
pub struct Recorder {
    window: Tally,
    /// Whole-run tally per kind, indexed by [`Kind::index`].
    pub kinds: Vec<Tally>,
    /// Every failure.
    pub errors: ErrorLog,
}

impl Recorder {
    /// An empty recorder.
    pub fn new() -> anyhow::Result<Self> {
        Ok(Self {
            window: Tally::new()?,
            kinds: Kind::ALL
                .iter()
                .map(|_| Tally::new())
                .collect::<anyhow::Result<_>>()?,
            errors: ErrorLog::default(),
        })
    }

    /// Records one request of `kind`, `latency` after it was due.
    pub fn record(&mut self, kind: Kind, latency: Duration, failure: Option<Failure>) {
        let whole = &mut self.kinds[kind.index()];
        match failure {
            None => {
                record(&mut self.window.hist, latency);
                record(&mut whole.hist, latency);
            }
            Some(f) => {
                self.window.errors += 1;
                whole.errors += 1;
                self.errors.add(kind, f);
            }
        }
    }

    /// The interval so far; starts the next one.
    pub fn take_window(&mut self) -> anyhow::Result<Tally> {
        Ok(std::mem::replace(&mut self.window, Tally::new()?))
    }
}

/// One interval of the soak.
#[derive(Debug, Clone)]
pub struct Row {
    /// Time from the start of the soak to the end of the interval.
    pub at: Duration,
    /// Length of the interval.
    pub span: Duration,
    /// Successful requests.
    pub ok: u64,
    /// Failed requests.
    pub errors: u64,
    /// Median latency, ms.
    pub p50: f64,
    /// 99th percentile latency, ms.
    pub p99: f64,
    /// The gateway's memory at the end of the interval.
    pub memory: Memory,
    /// Database size at the end of the interval, bytes.
    pub db_bytes: u64,
    /// The machine's 1-minute load average.
    pub load1: String,
}

impl Row {
    /// A row from an interval's tally.
    pub fn new(at: Duration, span: Duration, tally: &Tally, memory: Memory) -> Self {
        Self {
            at,
            span,
            ok: tally.ok(),
            errors: tally.errors,
            p50: millis_at(&tally.hist, 50.0),
            p99: millis_at(&tally.hist, 99.0),
            memory,
            db_bytes: 0,
            load1: String::new(),
        }
    }

    /// Answered requests (successful or not) per second.
    pub fn rate(&self) -> f64 {
        (self.ok + self.errors) as f64 / self.span.as_secs_f64().max(1e-9)
    }
}

/// The header of the interval table.
pub fn table_header() -> String {
    "| elapsed | req/s | p50 ms | p99 ms | errors | RSS MiB | anon MiB | file MiB | DB MiB | load |\n\
     |---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        .to_string()
}

/// One interval as a table line (printed live and in the report).
pub fn table_row(r: &Row) -> String {
    format!(
        "| {} | {:.0} | {:.2} | {:.2} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {} |",
        clock(r.at),
        r.rate(),
        r.p50,
        r.p99,
        r.errors,
        mib(r.memory.rss_kib * 1024),
        mib(r.memory.anon_kib * 1024),
        mib(r.memory.file_kib * 1024),
        mib(r.db_bytes),
        r.load1
    )
}

/// `mm:ss`.
fn clock(d: Duration) -> String {
    let s = d.as_secs_f64().round() as u64;
    format!("{:02}:{:02}", s / 60, s % 60)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Growth of one memory figure from the end of the first quarter to the
/// end, beside its first, last and largest values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Growth {
    /// After the first interval, MiB.
    pub first: f64,
    /// At the end of the first quarter, MiB.
    pub quarter: f64,
    /// After the last interval, MiB.
    pub last: f64,
    /// Largest seen, MiB.
    pub max: f64,
}

impl Growth {
    fn of(rows: &[Row], quarter: usize, kib: impl Fn(&Memory) -> u64) -> Option<Self> {
        let at = |i: usize| rows.get(i).map(|r| mib(kib(&r.memory) * 1024));
        Some(Self {
            first: at(0)?,
            quarter: at(quarter)?,
            last: at(rows.len().checked_sub(1)?)?,
            max: rows
                .iter()
                .map(|r| mib(kib(&r.memory) * 1024))
                .fold(0.0, f64::max),
        })
    }

    /// From the end of the first quarter to the end, MiB.
    pub fn mib(&self) -> f64 {
        self.last - self.quarter
    }

    /// The same, in % of the end-of-quarter figure.
    pub fn percent(&self) -> f64 {
        if self.quarter > 0.0 {
            self.mib() / self.quarter * 100.0
        } else {
            f64::NAN
        }
    }

    fn sentence(&self, what: &str) -> String {
        format!(
            "{what}: {:.1} MiB after the first interval, {:.1} MiB at the end of the first \
             quarter, {:.1} MiB at the end, {:.1} MiB at most; **{:+.1} MiB ({:+.1} %) from the \
             end of the first quarter to the end**",
            self.first,
            self.quarter,
            self.last,
            self.max,
            self.mib(),
            self.percent()
        )
    }
}

/// How the run went, from its rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// Requests answered, successful or not.
    pub requests: u64,
    /// Failed requests.
    pub errors: u64,
    /// Resident set (`VmRSS`).
    pub rss: Growth,
    /// Anonymous resident memory (heap, stacks): what a leak grows.
    pub anon: Growth,
    /// Requests/s of the full intervals: lowest, mean, highest.
    pub rate: (f64, f64, f64),
    /// Coefficient of variation of those rates, %.
    pub rate_cv: f64,
    /// p99 of the intervals: lowest, median, highest, ms.
    pub p99: (f64, f64, f64),
}

impl Verdict {
    /// Judges the `rows` of a soak paced for `duration` (`None` without
    /// rows).
    pub fn of(rows: &[Row], duration: Duration) -> Option<Self> {
        // The row that ends the first quarter: the first one at or past it.
        let quarter = rows.iter().position(|r| r.at >= duration / 4)?;
        // The last row also holds the drain after the schedule ended; a
        // short one would skew the rates, so only near-full rows count.
        let longest = rows.iter().map(|r| r.span).max()?;
        let full: Vec<f64> = rows
            .iter()
            .filter(|r| r.span.as_secs_f64() >= longest.as_secs_f64() * 0.9)
            .map(Row::rate)
            .collect();
        let mean = full.iter().sum::<f64>() / full.len().max(1) as f64;
        let var = full.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / full.len().max(1) as f64;
        let mut p99: Vec<f64> = rows.iter().map(|r| r.p99).collect();
        p99.sort_by(f64::total_cmp);
        Some(Self {
            requests: rows.iter().map(|r| r.ok + r.errors).sum(),
            errors: rows.iter().map(|r| r.errors).sum(),
            rss: Growth::of(rows, quarter, |m| m.rss_kib)?,
            anon: Growth::of(rows, quarter, |m| m.anon_kib)?,
            rate: (
                full.iter().copied().fold(f64::INFINITY, f64::min),
                mean,
                full.iter().copied().fold(0.0, f64::max),
            ),
            rate_cv: if mean > 0.0 {
                var.sqrt() / mean * 100.0
            } else {
                f64::NAN
            },
            p99: (*p99.first()?, p99[p99.len() / 2], *p99.last()?),
        })
    }

    /// The verdict as report bullets; `target` is the paced rate.
    pub fn render(&self, target: f64) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "- **errors: {} of {} requests** ({:.3} %)",
            self.errors,
            self.requests,
            self.errors as f64 * 100.0 / self.requests.max(1) as f64
        );
        let _ = writeln!(s, "- {}", self.rss.sentence("gateway RSS (VmRSS)"));
        let _ = writeln!(
            s,
            "- {}",
            self.anon.sentence("of which anonymous (heap, stacks)")
        );
        let (lo, mean, hi) = self.rate;
        let _ = writeln!(
            s,
            "- throughput: paced at {target:.0} req/s; full intervals achieved {lo:.0} / \
             {mean:.0} / {hi:.0} req/s (lowest / mean / highest, coefficient of variation \
             {:.1} %)",
            self.rate_cv
        );
        let (lo, med, hi) = self.p99;
        let _ = writeln!(
            s,
            "- p99 per interval: {lo:.2} / {med:.2} / {hi:.2} ms (lowest / median / highest)"
        );
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(at_s: u64, span_s: u64, ok: u64, rss_mib: u64, anon_mib: u64, p99: f64) -> Row {
        Row {
            at: Duration::from_secs(at_s),
            span: Duration::from_secs(span_s),
            ok,
            errors: 0,
            p50: p99 / 4.0,
            p99,
            memory: Memory {
                rss_kib: rss_mib * 1024,
                anon_kib: anon_mib * 1024,
                ..Memory::default()
            },
            db_bytes: 3 * 1024 * 1024,
            load1: "1.50".into(),
        }
    }

    #[test]
    fn growth_is_measured_from_the_end_of_the_first_quarter() {
        // 8 intervals of 10 s over 80 s: the quarter ends with row 1 (20 s).
        let rows: Vec<Row> = [50, 60, 61, 70, 62, 63, 64, 66]
            .iter()
            .enumerate()
            .map(|(i, &rss)| row(10 * (i as u64 + 1), 10, 1000, rss, rss / 2, 5.0))
            .collect();
        let v = Verdict::of(&rows, Duration::from_secs(80)).unwrap();
        assert_eq!(
            v.rss,
            Growth {
                first: 50.0,
                quarter: 60.0,
                last: 66.0,
                max: 70.0
            }
        );
        assert_eq!(v.rss.mib(), 6.0);
        assert_eq!(v.rss.percent(), 10.0);
        assert_eq!((v.anon.quarter, v.anon.last), (30.0, 33.0));
        assert_eq!(v.requests, 8000);
        let text = v.render(100.0);
        assert!(text.contains("**+6.0 MiB (+10.0 %) from the end of the first quarter"));
    }

    #[test]
    fn rates_count_full_intervals_only_and_p99_spans_all() {
        let mut rows = vec![
            row(10, 10, 1000, 1, 1, 4.0),
            row(20, 10, 1200, 1, 1, 9.0),
            row(30, 10, 800, 1, 1, 5.0),
            // The drain after the schedule: a short, thin interval.
            row(31, 1, 10, 1, 1, 2.0),
        ];
        rows[1].errors = 3;
        let v = Verdict::of(&rows, Duration::from_secs(30)).unwrap();
        assert_eq!(v.rate.0, 80.0);
        assert_eq!(v.rate.2, 120.3);
        assert_eq!(v.errors, 3);
        assert_eq!(v.p99, (2.0, 5.0, 9.0));
        assert!(
            v.render(100.0)
                .contains("**errors: 3 of 3013 requests** (0.100 %)")
        );
    }

    #[test]
    fn the_interval_line_shows_rate_latency_memory_and_load() {
        let line = table_row(&row(125, 10, 2500, 80, 40, 12.4));
        assert_eq!(
            line,
            "| 02:05 | 250 | 3.10 | 12.40 | 0 | 80.0 | 40.0 | 0.0 | 3.0 | 1.50 |"
        );
        assert_eq!(
            table_header()
                .lines()
                .next()
                .map(|h| h.matches('|').count()),
            Some(line.matches('|').count())
        );
    }

    #[test]
    fn the_recorder_splits_intervals_and_keeps_one_sample_per_error() {
        let mut rec = Recorder::new().unwrap();
        let ms = Duration::from_millis;
        rec.record(Kind::GetUser, ms(2), None);
        rec.record(Kind::AddMember, ms(4), None);
        for n in 0..3 {
            let f = Failure::Status(StatusCode::CONFLICT, format!("409 sample {n}"));
            rec.record(Kind::CreateUser, ms(1), Some(f));
        }
        rec.record(
            Kind::GetUser,
            ms(1),
            Some(Failure::Transport("timed out".into())),
        );
        let first = rec.take_window().unwrap();
        assert_eq!((first.ok(), first.errors), (2, 4));
        rec.record(Kind::GetUser, ms(3), None);
        let second = rec.take_window().unwrap();
        assert_eq!((second.ok(), second.errors), (1, 0));
        let get = &rec.kinds[Kind::GetUser.index()];
        assert_eq!((get.ok(), get.errors), (2, 1));
        assert_eq!(
            rec.errors.lines(),
            [
                "1 × GET /Users/{id} → no answer; first: timed out",
                "3 × POST /Users → 409 Conflict; first: 409 sample 0",
            ]
        );
    }
}
