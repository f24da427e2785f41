//! How long to wait before the next attempt.
//!
//! Full-jitter exponential backoff, from the AWS Architecture Blog's
//! "Exponential Backoff And Jitter" (Marc Brooker, 2015): the wait is drawn
//! uniformly from zero up to an exponentially growing ceiling. Without the
//! jitter, every request that failed together retries together and hits the
//! next node as one wave; full jitter spreads them out and, in that study,
//! did the least total work of the variants tried.

use std::time::Duration;

use rand::Rng;

use super::BadRetryParams;

/// Validated backoff settings and the delay they give.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// Ceiling of the first retry's wait; doubles with each further retry.
    /// Short (tens of ms) because the retry goes to a different node, which
    /// is probably fine now: the wait spreads load, it does not wait out an
    /// outage.
    base: Duration,
    /// The ceiling never grows past this, so a request with several retries
    /// still finishes within its deadline.
    max: Duration,
}

impl Backoff {
    /// Validated settings. Rejects a zero `base` and a `max` below `base`.
    pub fn new(base: Duration, max: Duration) -> Result<Backoff, BadRetryParams> {
        if base.is_zero() {
            return Err(BadRetryParams::BackoffBase);
        }
        if max < base {
            return Err(BadRetryParams::BackoffMax { base, max });
        }
        Ok(Backoff { base, max })
    }

    /// Ceiling of the first retry's wait.
    pub fn base(&self) -> Duration {
        self.base
    }

    /// The largest ceiling.
    pub fn max(&self) -> Duration {
        self.max
    }

    /// The ceiling for retry number `attempt` (0 for the first retry):
    /// `min(max, base × 2^attempt)`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        1u32.checked_shl(attempt)
            .and_then(|factor| self.base.checked_mul(factor))
            .map_or(self.max, |ceiling| ceiling.min(self.max))
    }

    /// The wait before retry number `attempt` (0 for the first retry),
    /// uniform in `[0, ceiling(attempt)]`.
    pub fn delay<R: Rng + ?Sized>(&self, attempt: u32, rng: &mut R) -> Duration {
        let ceiling = u64::try_from(self.ceiling(attempt).as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rng.random_range(0..=ceiling))
    }
}

impl Default for Backoff {
    /// 25 ms base, 250 ms cap.
    fn default() -> Backoff {
        Backoff {
            base: Duration::from_millis(25),
            max: Duration::from_millis(250),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn params_are_validated() {
        assert_eq!(Backoff::new(25 * MS, 250 * MS), Ok(Backoff::default()));
        assert_eq!(
            Backoff::new(Duration::ZERO, 250 * MS),
            Err(BadRetryParams::BackoffBase)
        );
        let bad = Backoff::new(25 * MS, 10 * MS);
        assert_eq!(
            bad,
            Err(BadRetryParams::BackoffMax {
                base: 25 * MS,
                max: 10 * MS
            })
        );
        assert_eq!(
            bad.map_err(|error| error.to_string()),
            Err("backoff_max must be at least backoff_base (25ms), got 10ms".to_owned())
        );
        assert!(Backoff::new(25 * MS, 25 * MS).is_ok());
    }

    #[test]
    fn the_ceiling_doubles_up_to_the_cap() {
        let backoff = Backoff::default();
        let ceilings: Vec<_> = (0..6).map(|attempt| backoff.ceiling(attempt)).collect();
        assert_eq!(
            ceilings,
            [25 * MS, 50 * MS, 100 * MS, 200 * MS, 250 * MS, 250 * MS]
        );
        // No overflow however many retries.
        assert_eq!(backoff.ceiling(31), 250 * MS);
        assert_eq!(backoff.ceiling(32), 250 * MS);
        assert_eq!(backoff.ceiling(u32::MAX), 250 * MS);
        let huge = Backoff::new(Duration::from_secs(u64::MAX / 2), Duration::MAX).expect("valid");
        assert_eq!(huge.ceiling(3), Duration::MAX);
    }

    #[test]
    fn delays_are_spread_over_the_whole_range() {
        let backoff = Backoff::default();
        let mut rng = SmallRng::seed_from_u64(7);
        for attempt in 0..5 {
            let ceiling = backoff.ceiling(attempt);
            let delays: Vec<_> = (0..1000)
                .map(|_| backoff.delay(attempt, &mut rng))
                .collect();
            assert!(delays.iter().all(|delay| *delay <= ceiling));
            // Full jitter: some waits are near zero, some near the ceiling.
            assert!(delays.iter().any(|delay| *delay < ceiling / 10));
            assert!(delays.iter().any(|delay| *delay > ceiling * 9 / 10));
            let mean = delays.iter().sum::<Duration>() / 1000;
            assert!(
                mean > ceiling * 4 / 10 && mean < ceiling * 6 / 10,
                "{mean:?}"
            );
        }
    }
}
