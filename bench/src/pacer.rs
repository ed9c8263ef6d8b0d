//! Open-loop pacing: requests are due on a fixed schedule (`rate` per
//! second), whatever the answers take. The pacer hands out numbered slots
//! with their due time; connection tasks take the next slot when they are
//! free, so a slow gateway makes slots wait in the queue instead of
//! slowing the schedule, and a latency measured from the due time includes
//! that wait (no coordinated omission).
//!
//! ```text
//! pacer ──(n, due)──▶ bounded queue ──▶ connection 1..k ──▶ gateway
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::{Mutex, mpsc};

/// How often the pacer looks at the clock.
const TICK: Duration = Duration::from_millis(2);

/// One scheduled request.
#[derive(Debug, Clone, Copy)]
pub struct Slot {
    /// Position in the schedule, from 0.
    pub seq: u64,
    /// When the request is due.
    pub due: Instant,
}

/// The queue connection tasks take their slots from (cheap to clone).
#[derive(Clone)]
pub struct Slots(Arc<Mutex<mpsc::Receiver<Slot>>>);

impl Slots {
    /// The next slot; `None` once the schedule is over and the queue empty.
    pub async fn next(&self) -> Option<Slot> {
        self.0.lock().await.recv().await
    }
}

/// Produces the slots; run it with [`Pacer::run`].
pub struct Pacer {
    tx: mpsc::Sender<Slot>,
    rate: f64,
    total: u64,
}

/// A schedule of `total` requests at `rate` per second; at most `queue`
/// due slots wait for a free connection before the pacer itself waits.
pub fn schedule(rate: f64, total: u64, queue: usize) -> (Pacer, Slots) {
    let (tx, rx) = mpsc::channel(queue.max(1));
    (Pacer { tx, rate, total }, Slots(Arc::new(Mutex::new(rx))))
}

impl Pacer {
    /// Issues every slot on time (counting from now), then closes the
    /// queue. Fails if every [`Slots`] handle is gone.
    pub async fn run(self) -> anyhow::Result<()> {
        let start = Instant::now();
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut sent = 0;
        while sent < self.total {
            tick.tick().await;
            let due_now = due_by(start.elapsed(), self.rate).min(self.total);
            while sent < due_now {
                let due = start + Duration::from_secs_f64(sent as f64 / self.rate);
                self.tx
                    .send(Slot { seq: sent, due })
                    .await
                    .context("every connection failed")?;
                sent += 1;
            }
        }
        Ok(())
    }
}

/// How many requests are due `elapsed` into a schedule of `rate` per
/// second (the first is due at once).
fn due_by(elapsed: Duration, rate: f64) -> u64 {
    (elapsed.as_secs_f64() * rate) as u64 + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_request_is_due_at_once_and_then_one_per_period() {
        assert_eq!(due_by(Duration::ZERO, 100.0), 1);
        assert_eq!(due_by(Duration::from_millis(9), 100.0), 1);
        assert_eq!(due_by(Duration::from_millis(10), 100.0), 2);
        assert_eq!(due_by(Duration::from_secs(2), 0.5), 2);
    }
}
