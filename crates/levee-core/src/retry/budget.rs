//! The retry budget: retries may add only a bounded share of load.
//!
//! Per-request limits (3 attempts) still let a failing cluster see three
//! times its normal load, exactly when it can least take it: a retry storm.
//! A budget per cluster, as in Finagle's `RetryBudget` and linkerd's retry
//! budgets, caps retries (and hedges) at a percentage of recent requests,
//! plus a small floor so that a cluster with little traffic can still step
//! around one dead node.

use std::time::Duration;

use tokio::time::Instant;

use super::BadRetryParams;
use crate::window::PairWindow;

/// Validated budget settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryBudgetParams {
    /// Retries allowed as a percentage of client requests over the window
    /// (0 ..= 100). 20 % bounds the extra load of a broad failure to 1.2×.
    percent: u32,
    /// Retries allowed per second of window whatever the traffic, so that a
    /// quiet cluster (a few requests a minute) still retries past a dead node.
    min_per_second: u32,
    /// How far back requests and retries are counted. Long enough to smooth
    /// bursts, short enough that a budget spent in an outage refills soon.
    window: Duration,
}

impl RetryBudgetParams {
    /// Validated settings. Rejects a `percent` above 100 and a zero `window`.
    /// A `percent` of 0 with a `min_per_second` of 0 disables retries.
    pub fn new(
        percent: u32,
        min_per_second: u32,
        window: Duration,
    ) -> Result<RetryBudgetParams, BadRetryParams> {
        if percent > 100 {
            return Err(BadRetryParams::BudgetPercent(percent));
        }
        if window.is_zero() {
            return Err(BadRetryParams::BudgetWindow);
        }
        Ok(RetryBudgetParams {
            percent,
            min_per_second,
            window,
        })
    }

    /// Retries allowed as a percentage of requests.
    pub fn percent(&self) -> u32 {
        self.percent
    }

    /// Retries allowed per second whatever the traffic.
    pub fn min_per_second(&self) -> u32 {
        self.min_per_second
    }

    /// How far back requests and retries are counted.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// Retries the floor alone allows over one window.
    fn floor(&self) -> u64 {
        let floor = u128::from(self.min_per_second) * self.window.as_nanos() / 1_000_000_000;
        u64::try_from(floor).unwrap_or(u64::MAX)
    }
}

impl Default for RetryBudgetParams {
    /// 20 % of requests plus 10 per second, over 10 s.
    fn default() -> RetryBudgetParams {
        RetryBudgetParams {
            percent: 20,
            min_per_second: 10,
            window: Duration::from_secs(10),
        }
    }
}

/// What the budget holds as of some instant, for `/status` and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BudgetSnapshot {
    /// Client requests recorded over the window.
    pub requests: u64,
    /// Retries and hedges withdrawn over the window.
    pub retries: u64,
    /// Retries the window allows in all (percentage plus floor).
    pub allowed: u64,
}

impl BudgetSnapshot {
    /// Retries still available now.
    pub fn remaining(&self) -> u64 {
        self.allowed.saturating_sub(self.retries)
    }
}

/// A cluster's retry budget, shared by every request to the cluster (it
/// counts with atomics, so `&self` is enough).
///
/// Retries and hedges withdrawn over the last `window` may not exceed
/// `percent` % of the client requests recorded over it plus
/// `min_per_second` × `window`.
#[derive(Debug)]
pub struct RetryBudget {
    params: RetryBudgetParams,
    /// Requests and retries.
    counts: PairWindow,
}

impl RetryBudget {
    /// An empty budget (only the floor available) starting at `now`.
    pub fn new(params: RetryBudgetParams, now: Instant) -> RetryBudget {
        RetryBudget {
            params,
            counts: PairWindow::new(params.window, now),
        }
    }

    /// The settings this budget enforces.
    pub fn params(&self) -> &RetryBudgetParams {
        &self.params
    }

    /// Count one client request (once per request, not per attempt: retries
    /// must not earn budget for more retries).
    pub fn record_request(&self, now: Instant) {
        self.counts.add(now, [1, 0]);
    }

    /// [`record_request`](Self::record_request), and how many retries the
    /// budget holds right after it, for callers that
    /// prepare a retry only when one could happen.
    pub fn record_request_and_remaining(&self, now: Instant) -> u64 {
        self.counts.add(now, [1, 0]);
        self.snapshot(now).remaining()
    }

    /// Take one retry (or hedge) from the budget: true if it was available
    /// and is now spent, false if the budget is exhausted (count it in a
    /// metric and stop with
    /// [`NotRetried::BudgetExhausted`](super::NotRetried::BudgetExhausted)).
    pub fn try_withdraw(&self, now: Instant) -> bool {
        let snapshot = self.snapshot(now);
        if snapshot.retries >= snapshot.allowed {
            return false;
        }
        // Not one step with the check: workers withdrawing at the same
        // moment may each take the last retry (one each at most).
        self.counts.add(now, [0, 1]);
        true
    }

    /// What the budget holds as of `now`.
    pub fn snapshot(&self, now: Instant) -> BudgetSnapshot {
        let [requests, retries] = self.counts.totals(now);
        let earned = requests.saturating_mul(u64::from(self.params.percent)) / 100;
        BudgetSnapshot {
            requests,
            retries,
            allowed: earned.saturating_add(self.params.floor()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn budget(percent: u32, min_per_second: u32, now: Instant) -> RetryBudget {
        let params = RetryBudgetParams::new(percent, min_per_second, 10 * S).expect("valid");
        RetryBudget::new(params, now)
    }

    fn withdraw_all(budget: &RetryBudget, now: Instant) -> u64 {
        let mut taken = 0;
        while budget.try_withdraw(now) {
            taken += 1;
            assert!(taken <= 1_000_000, "budget never ran out");
        }
        taken
    }

    #[test]
    fn params_are_validated() {
        assert_eq!(
            RetryBudgetParams::new(20, 10, 10 * S),
            Ok(RetryBudgetParams::default())
        );
        assert_eq!(
            RetryBudgetParams::new(101, 10, 10 * S),
            Err(BadRetryParams::BudgetPercent(101))
        );
        assert_eq!(
            BadRetryParams::BudgetPercent(101).to_string(),
            "budget_percent must be between 0 and 100, got 101"
        );
        assert_eq!(
            RetryBudgetParams::new(20, 10, Duration::ZERO),
            Err(BadRetryParams::BudgetWindow)
        );
        assert!(RetryBudgetParams::new(0, 0, S).is_ok());
        assert!(RetryBudgetParams::new(100, 0, S).is_ok());
    }

    #[test]
    fn retries_are_a_share_of_requests_plus_a_floor() {
        let start = Instant::now();
        let budget = budget(20, 1, start);
        for _ in 0..1000 {
            budget.record_request(start);
        }
        // 20 % of 1000 plus 1/s over 10 s.
        assert_eq!(withdraw_all(&budget, start), 210);
        let snapshot = budget.snapshot(start);
        assert_eq!(snapshot.requests, 1000);
        assert_eq!(snapshot.retries, 210);
        assert_eq!(snapshot.allowed, 210);
        assert_eq!(snapshot.remaining(), 0);
    }

    #[test]
    fn a_quiet_cluster_still_gets_the_floor() {
        let start = Instant::now();
        let budget = budget(20, 10, start);
        assert_eq!(withdraw_all(&budget, start), 100);
    }

    #[test]
    fn zero_budget_never_retries() {
        let start = Instant::now();
        let budget = budget(0, 0, start);
        for _ in 0..100 {
            budget.record_request(start);
        }
        assert!(!budget.try_withdraw(start));
    }

    #[test]
    fn old_requests_and_retries_slide_out_of_the_window() {
        let start = Instant::now();
        let budget = budget(50, 0, start);
        for _ in 0..100 {
            budget.record_request(start);
        }
        assert_eq!(withdraw_all(&budget, start), 50);

        // Still inside the window: nothing new.
        assert!(!budget.try_withdraw(start + 9 * S));

        // A window later both the requests and the retries are forgotten.
        let later = start + 10 * S;
        assert_eq!(budget.snapshot(later).requests, 0);
        assert!(!budget.try_withdraw(later));
        for _ in 0..10 {
            budget.record_request(later);
        }
        assert_eq!(withdraw_all(&budget, later), 5);
    }

    #[test]
    fn the_window_slides_a_bucket_at_a_time() {
        let start = Instant::now();
        let budget = budget(100, 0, start);
        for second in 0..10 {
            budget.record_request(start + second * S);
        }
        assert_eq!(budget.snapshot(start + 9 * S).requests, 10);
        // One bucket (1 s) has left the window.
        assert_eq!(budget.snapshot(start + 10 * S).requests, 9);
        assert_eq!(budget.snapshot(start + 15 * S).requests, 4);
    }

    #[test]
    fn a_storm_is_bounded() {
        // All attempts fail: every request wants 2 retries. Over 1000
        // requests spread across 10 s, attempts stay within
        // (1 + 20 %) × requests + floor.
        let start = Instant::now();
        let budget = budget(20, 10, start);
        let mut attempts = 0u64;
        for i in 0..1000u32 {
            let now = start + Duration::from_millis(u64::from(i) * 10);
            budget.record_request(now);
            attempts += 1;
            for _ in 0..2 {
                if budget.try_withdraw(now) {
                    attempts += 1;
                }
            }
        }
        assert!(attempts <= 1200 + 100, "{attempts} attempts");
        assert!(attempts > 1000, "the floor allows some retries");
    }

    #[test]
    fn an_instant_before_the_origin_counts_as_the_first_bucket() {
        let early = Instant::now();
        let budget = budget(100, 0, early + S);
        budget.record_request(early);
        assert_eq!(budget.snapshot(early + S).requests, 1);
    }
}
