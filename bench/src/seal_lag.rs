//! The audit sealer's lag on PostgreSQL, watched while an operation is
//! measured: every 100 ms, how many committed audit rows wait for a chain
//! position and how old the oldest of them is (`at` is written at the
//! start of the write, so the age bounds commit-to-sealed from above).
//! The gateway chains rows after commit (`src/store/seal.rs`); its target
//! is that none waits longer than a second under load.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use diesel::sql_types::{BigInt, Double};
use diesel::{Connection, PgConnection, QueryableByName, RunQueryDsl};

/// How often the backlog is read.
const EVERY: Duration = Duration::from_millis(100);

/// What the samples showed.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Lag {
    /// Largest number of rows waiting at once.
    pub rows: i64,
    /// Largest age of the oldest waiting row, in seconds.
    pub seconds: f64,
    /// Samples taken.
    pub samples: u64,
}

#[derive(QueryableByName)]
struct Sample {
    #[diesel(sql_type = BigInt)]
    rows: i64,
    #[diesel(sql_type = Double)]
    seconds: f64,
}

const QUERY: &str = "SELECT count(*) AS rows, \
    COALESCE(EXTRACT(EPOCH FROM clock_timestamp() - min(at)::timestamptz), 0)::float8 AS seconds \
    FROM audit_events WHERE chain_pos IS NULL AND hash IS NULL";

/// A running watcher; [`Watch::finish`] stops it and returns the maxima.
pub struct Watch {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<anyhow::Result<Lag>>,
}

impl Watch {
    /// Starts watching the PostgreSQL database at `url`.
    pub fn start(url: &str) -> anyhow::Result<Self> {
        let mut conn = PgConnection::establish(url)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut lag = Lag::default();
            while !stopping.load(Ordering::Relaxed) {
                let s: Sample = diesel::sql_query(QUERY).get_result(&mut conn)?;
                lag.rows = lag.rows.max(s.rows);
                lag.seconds = lag.seconds.max(s.seconds);
                lag.samples += 1;
                std::thread::sleep(EVERY);
            }
            Ok(lag)
        });
        Ok(Self { stop, thread })
    }

    /// Stops and returns what was seen.
    pub fn finish(self) -> anyhow::Result<Lag> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .join()
            .map_err(|_| anyhow::anyhow!("the seal-lag watcher panicked"))?
    }
}

/// The report's line for one operation.
pub fn note(label: &str, lag: &Lag) -> String {
    format!(
        "{label}: audit rows waiting for the sealer peaked at {} (oldest {:.2} s old; {} samples)",
        lag.rows, lag.seconds, lag.samples
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_note_names_the_peak_and_the_age() {
        let lag = Lag {
            rows: 42,
            seconds: 0.25,
            samples: 50,
        };
        assert_eq!(
            note("POST /Users", &lag),
            "POST /Users: audit rows waiting for the sealer peaked at 42 (oldest 0.25 s old; 50 samples)"
        );
    }
}
