//! Wall-clock pacing for the benches that wait for instants (windows, releases, backups):
//! clock arithmetic, sleeping until an instant while watching the operator, and sampling its
//! memory. (`runs` paces itself by rounds, so these items are unused there.)
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use jiff::Timestamp;

use super::{Rig, Ticker, lock, proc_mib, progress};

/// Seconds from `a` to `b` (negative when `b` is earlier).
pub fn secs(a: Timestamp, b: Timestamp) -> f64 {
    b.duration_since(a).as_secs_f64()
}

/// Seconds from now until `t` (negative when past).
pub fn until(t: Timestamp) -> f64 {
    secs(Timestamp::now(), t)
}

/// `t` plus `seconds` (minus, when negative).
pub fn plus(t: Timestamp, seconds: f64) -> Timestamp {
    t + jiff::SignedDuration::from_secs_f64(seconds)
}

impl Rig {
    /// Sleeps until the wall-clock instant `t`, checking the operator and saying what it
    /// waits for.
    pub async fn sleep_until(&self, what: &str, t: Timestamp) -> Result<()> {
        let mut tick = Ticker::new();
        loop {
            let left = until(t);
            if left <= 0.0 {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_secs_f64(left.min(0.5))).await;
            self.operator_alive()?;
            if tick.due() {
                progress(format!("  ... {what}: {:.0}s to go", until(t).max(0.0)));
            }
        }
    }
}

/// The operator's VmRSS, sampled every 100 ms by a background task and stamped by `clock`
/// (the bench's own clock: a Timestamp, or seconds since it started).
#[derive(Clone)]
pub struct RssSamples<T>(Arc<Mutex<Vec<(T, f64)>>>);

impl<T: PartialOrd + Copy + Send + 'static> RssSamples<T> {
    /// Starts sampling `pid` (nothing is sampled without one).
    pub fn start(pid: Option<u32>, clock: fn() -> T) -> Self {
        let samples = Self(Arc::default());
        if let Some(pid) = pid {
            let into = samples.0.clone();
            tokio::spawn(async move {
                loop {
                    if let Some(mib) = proc_mib(pid, "VmRSS") {
                        lock(&into).push((clock(), mib));
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            });
        }
        samples
    }

    /// The highest sample in [from, to].
    pub fn peak(&self, from: T, to: T) -> Option<f64> {
        lock(&self.0)
            .iter()
            .filter(|(t, _)| *t >= from && *t <= to)
            .map(|(_, v)| *v)
            .reduce(f64::max)
    }
}
