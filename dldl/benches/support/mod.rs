//! What the benches share.

use std::time::{Duration, Instant};

/// Runs `f` for at least `budget` (after one warm-up call, and at least 5 times) and returns the
/// median seconds per call.
pub fn median_seconds(budget: Duration, mut f: impl FnMut()) -> f64 {
    f();
    let mut times = Vec::new();
    let start = Instant::now();
    while start.elapsed() < budget || times.len() < 5 {
        let t = Instant::now();
        f();
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}
