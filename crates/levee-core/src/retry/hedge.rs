//! When to hedge: send a second copy of a slow idempotent request.
//!
//! A request still unanswered after most requests have finished is probably
//! stuck on a slow or hung node; a copy sent to another node then usually
//! answers first ("The Tail at Scale", Dean and Barroso, 2013: hedging after
//! the 95th percentile cut the 99.9th percentile sharply for about 5 % more
//! requests). The threshold has to follow the cluster's real latency, so it
//! comes from a [`LatencyQuantile`] over a sliding window, clamped by
//! configured bounds ([`hedge_delay`]). Hedges spend the retry budget like
//! retries do.

use std::time::Duration;

use tokio::time::Instant;

use super::BadRetryParams;

/// Time slots per window: old samples fall out a tenth of a window at a time.
const SLOTS: usize = 10;

/// Histogram buckets per slot. Bucket boundaries are log-linear (four per
/// power of two, as in HdrHistogram), so any quantile is known within 25 %
/// from 1 µs up to about 2.4 hours with a fixed 512 bytes per slot.
const BUCKETS: usize = 128;

/// Samples the window must hold before it gives a quantile: the p95 of a
/// handful of samples is just their maximum, and hedging on it would follow
/// noise. Until then, hedging waits for the configured ceiling.
pub const MIN_SAMPLES: u64 = 20;

/// One slot of time's latency histogram.
#[derive(Clone, Debug)]
struct Slot {
    /// Which slot of time (since the origin) these counts are for.
    index: u64,
    counts: [u32; BUCKETS],
}

/// Quantiles of a cluster's latency over a sliding window.
#[derive(Clone, Debug)]
pub struct LatencyQuantile {
    /// Slot 0 starts here.
    origin: Instant,
    /// Length of one slot, in nanoseconds (at least 1).
    slot_ns: u128,
    slots: Vec<Slot>,
}

impl LatencyQuantile {
    /// An empty estimator over the last `window`, starting at `now`. Rejects
    /// a zero window.
    pub fn new(window: Duration, now: Instant) -> Result<LatencyQuantile, BadRetryParams> {
        if window.is_zero() {
            return Err(BadRetryParams::HedgeWindow);
        }
        Ok(LatencyQuantile {
            origin: now,
            slot_ns: (window.as_nanos() / SLOTS as u128).max(1),
            slots: vec![
                Slot {
                    index: 0,
                    counts: [0; BUCKETS],
                };
                SLOTS
            ],
        })
    }

    /// Add the latency of one answered attempt (time to the response head).
    pub fn record(&mut self, latency: Duration, now: Instant) {
        let index = self.index(now);
        let slot = &mut self.slots[(index % SLOTS as u64) as usize];
        if slot.index < index {
            slot.index = index;
            slot.counts = [0; BUCKETS];
        }
        let bucket = &mut slot.counts[bucket_of(latency)];
        *bucket = bucket.saturating_add(1);
    }

    /// Samples in the window as of `now`.
    pub fn samples(&self, now: Instant) -> u64 {
        self.totals(now).iter().sum()
    }

    /// The `q` quantile (0.0 ..= 1.0, clamped) of the latencies in the window
    /// as of `now`, rounded up to its bucket's upper bound (so at most 25 %
    /// high, never low: a hedge sent a little late rather than too early).
    /// `None` with fewer than [`MIN_SAMPLES`] samples.
    pub fn quantile(&self, q: f64, now: Instant) -> Option<Duration> {
        let totals = self.totals(now);
        let samples: u64 = totals.iter().sum();
        if samples < MIN_SAMPLES {
            return None;
        }
        let q = if q.is_nan() { 1.0 } else { q.clamp(0.0, 1.0) };
        // The rank of the sample at quantile q, 1-based, at least 1.
        let rank = ((q * samples as f64).ceil() as u64).clamp(1, samples);
        let mut seen = 0;
        for (bucket, count) in totals.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Some(upper_bound(bucket));
            }
        }
        Some(upper_bound(BUCKETS - 1))
    }

    /// The 95th percentile, the hedging threshold.
    pub fn p95(&self, now: Instant) -> Option<Duration> {
        self.quantile(0.95, now)
    }

    /// Counts per bucket over the slots still in the window.
    fn totals(&self, now: Instant) -> [u64; BUCKETS] {
        let index = self.index(now);
        let mut totals = [0u64; BUCKETS];
        for slot in &self.slots {
            if index.saturating_sub(slot.index) < SLOTS as u64 {
                for (total, count) in totals.iter_mut().zip(slot.counts) {
                    *total += u64::from(count);
                }
            }
        }
        totals
    }

    /// Which slot of time `now` falls in (an instant before the origin counts
    /// as the first).
    fn index(&self, now: Instant) -> u64 {
        let elapsed = now.saturating_duration_since(self.origin).as_nanos();
        u64::try_from(elapsed / self.slot_ns).unwrap_or(u64::MAX)
    }
}

/// The bucket of a latency: whole microseconds below 4 µs, then four
/// buckets per power of two.
fn bucket_of(latency: Duration) -> usize {
    let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
    if micros < 4 {
        return micros as usize;
    }
    let octave = 63 - micros.leading_zeros() as usize;
    let quarter = ((micros >> (octave - 2)) & 3) as usize;
    (4 * (octave - 1) + quarter).min(BUCKETS - 1)
}

/// The smallest latency above every latency in `bucket`.
fn upper_bound(bucket: usize) -> Duration {
    if bucket < 4 {
        return Duration::from_micros(bucket as u64 + 1);
    }
    let octave = bucket / 4 + 1;
    let quarter = (bucket % 4) as u64;
    Duration::from_micros((4 + quarter + 1) << (octave - 2))
}

/// How long to wait for an answer before hedging: the cluster's p95 kept
/// within `[floor, ceiling]`. The floor stops a very fast cluster from being
/// hedged on every hiccup (doubling its load); the ceiling bounds how long a
/// client waits on a hung node. With no p95 yet (too few samples) the
/// ceiling is used. If `floor` is above `ceiling`, `ceiling` wins.
pub fn hedge_delay(p95: Option<Duration>, floor: Duration, ceiling: Duration) -> Duration {
    p95.map_or(ceiling, |p95| p95.max(floor).min(ceiling))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);
    const S: Duration = Duration::from_secs(1);

    #[test]
    fn buckets_are_contiguous_and_bound_their_latencies() {
        for micros in (0..10_000).chain([1 << 20, (1 << 32) + 12_345]) {
            let latency = Duration::from_micros(micros);
            let bucket = bucket_of(latency);
            assert!(latency < upper_bound(bucket), "{micros} µs");
            if bucket > 0 {
                assert!(latency >= upper_bound(bucket - 1), "{micros} µs");
            }
            // Within 25 %.
            assert!(upper_bound(bucket).as_micros() <= u128::from(micros) * 5 / 4 + 1);
        }
        assert_eq!(bucket_of(Duration::MAX), BUCKETS - 1);
    }

    #[test]
    fn p95_of_a_known_distribution() {
        let start = Instant::now();
        let mut latency = LatencyQuantile::new(10 * S, start).expect("valid");
        // 1 ms .. 100 ms, one sample each: p95 is 95 ms.
        for ms in 1..=100 {
            latency.record(ms * MS, start);
        }
        let p95 = latency.p95(start).expect("100 samples");
        assert!(p95 >= 95 * MS && p95 <= 95 * MS * 5 / 4, "{p95:?}");
        let p50 = latency.quantile(0.5, start).expect("100 samples");
        assert!(p50 >= 50 * MS && p50 <= 50 * MS * 5 / 4, "{p50:?}");
        assert!(latency.quantile(0.0, start) <= Some(2 * MS));
    }

    #[test]
    fn too_few_samples_give_no_quantile() {
        let start = Instant::now();
        let mut latency = LatencyQuantile::new(10 * S, start).expect("valid");
        for _ in 0..MIN_SAMPLES - 1 {
            latency.record(10 * MS, start);
        }
        assert_eq!(latency.p95(start), None);
        latency.record(10 * MS, start);
        assert!(latency.p95(start).is_some());
    }

    #[test]
    fn the_estimate_follows_the_cluster() {
        let start = Instant::now();
        let mut latency = LatencyQuantile::new(10 * S, start).expect("valid");
        for _ in 0..100 {
            latency.record(10 * MS, start);
        }
        let fast = latency.p95(start).expect("samples");
        // The cluster slows down; a window later only slow samples remain.
        let later = start + 10 * S;
        for _ in 0..100 {
            latency.record(200 * MS, later);
        }
        assert_eq!(latency.samples(later), 100);
        let slow = latency.p95(later).expect("samples");
        assert!(fast < 15 * MS, "{fast:?}");
        assert!(slow >= 200 * MS, "{slow:?}");
    }

    #[test]
    fn window_is_validated() {
        let error = LatencyQuantile::new(Duration::ZERO, Instant::now()).map(|_| ());
        assert_eq!(error, Err(BadRetryParams::HedgeWindow));
        assert_eq!(
            BadRetryParams::HedgeWindow.to_string(),
            "hedge_window must be greater than zero"
        );
    }

    #[test]
    fn hedge_delay_is_clamped() {
        let (floor, ceiling) = (5 * MS, 500 * MS);
        assert_eq!(hedge_delay(Some(40 * MS), floor, ceiling), 40 * MS);
        assert_eq!(hedge_delay(Some(MS), floor, ceiling), floor);
        assert_eq!(hedge_delay(Some(5 * S), floor, ceiling), ceiling);
        assert_eq!(hedge_delay(None, floor, ceiling), ceiling);
        assert_eq!(hedge_delay(Some(40 * MS), ceiling, floor), floor);
    }
}
