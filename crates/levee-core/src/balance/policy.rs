//! The balancing policies.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};

use rand::Rng;
use tokio::time::Instant;

use super::EndpointLoad;

/// How a cluster spreads requests over its endpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum BalancePolicy {
    /// Power of two random choices: pick two candidates at random and send to
    /// the one with the lower peak-EWMA latency × (in-flight + 1). Reacts to a
    /// slow node within a few requests without the herd behaviour of "always the
    /// least loaded" (Mitzenmacher; Finagle, linkerd).
    #[default]
    P2cEwma,
    /// Each candidate in turn.
    RoundRobin,
    /// The candidate with the fewest requests in flight; ties are broken at
    /// random so that idle endpoints share the load evenly.
    LeastRequest,
}

impl BalancePolicy {
    /// Every policy, in the order the docs list them.
    pub const ALL: [BalancePolicy; 3] = [
        BalancePolicy::P2cEwma,
        BalancePolicy::RoundRobin,
        BalancePolicy::LeastRequest,
    ];

    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            BalancePolicy::P2cEwma => "p2c-ewma",
            BalancePolicy::RoundRobin => "round-robin",
            BalancePolicy::LeastRequest => "least-request",
        }
    }
}

impl fmt::Display for BalancePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not a policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadBalancePolicy(pub String);

impl fmt::Display for BadBalancePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown balance policy {:?}: expected one of ", self.0)?;
        for (i, policy) in BalancePolicy::ALL.iter().enumerate() {
            let separator = if i == 0 { "" } else { ", " };
            write!(f, "{separator}{:?}", policy.as_str())?;
        }
        Ok(())
    }
}

impl std::error::Error for BadBalancePolicy {}

impl FromStr for BalancePolicy {
    type Err = BadBalancePolicy;

    fn from_str(text: &str) -> Result<BalancePolicy, BadBalancePolicy> {
        BalancePolicy::ALL
            .into_iter()
            .find(|policy| policy.as_str() == text)
            .ok_or_else(|| BadBalancePolicy(text.to_owned()))
    }
}

/// Picks endpoints according to a [`BalancePolicy`].
#[derive(Debug, Default)]
pub struct Balancer {
    policy: BalancePolicy,
    /// Round-robin position.
    next: AtomicUsize,
}

impl Balancer {
    /// A balancer for `policy`.
    pub fn new(policy: BalancePolicy) -> Balancer {
        Balancer {
            policy,
            next: AtomicUsize::new(0),
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> BalancePolicy {
        self.policy
    }

    /// Choose one of `candidates` (indices into `loads`). `None` only when there
    /// is no candidate.
    pub fn pick<R: Rng + ?Sized>(
        &self,
        loads: &[EndpointLoad],
        candidates: &[usize],
        now: Instant,
        rng: &mut R,
    ) -> Option<usize> {
        match candidates.len() {
            0 => None,
            1 => Some(candidates[0]),
            n => Some(match self.policy {
                BalancePolicy::RoundRobin => {
                    candidates[self.next.fetch_add(1, Ordering::Relaxed) % n]
                }
                BalancePolicy::P2cEwma => {
                    let first = rng.random_range(0..n);
                    // Draw the second from the other n-1 so the two always differ.
                    let second = (first + 1 + rng.random_range(0..n - 1)) % n;
                    let (a, b) = (candidates[first], candidates[second]);
                    if loads[b].cost(now) < loads[a].cost(now) {
                        b
                    } else {
                        a
                    }
                }
                BalancePolicy::LeastRequest => {
                    // One pass; among equally loaded candidates keep each with
                    // probability 1/ties (reservoir sampling) for a fair tie-break.
                    let mut best = candidates[0];
                    let mut best_load = loads[best].in_flight();
                    let mut ties = 1u32;
                    for &index in &candidates[1..] {
                        let load = loads[index].in_flight();
                        if load < best_load {
                            (best, best_load, ties) = (index, load, 1);
                        } else if load == best_load {
                            ties += 1;
                            if rng.random_range(0..ties) == 0 {
                                best = index;
                            }
                        }
                    }
                    best
                }
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;
    use std::time::Duration;

    fn loads(n: usize, now: Instant) -> Vec<EndpointLoad> {
        (0..n)
            .map(|_| EndpointLoad::new(Duration::from_secs(10), now))
            .collect()
    }

    fn histogram(balancer: &Balancer, loads: &[EndpointLoad], picks: usize) -> Vec<usize> {
        let now = Instant::now();
        let mut rng = SmallRng::seed_from_u64(7);
        let candidates: Vec<usize> = (0..loads.len()).collect();
        let mut counts = vec![0; loads.len()];
        for _ in 0..picks {
            let i = balancer
                .pick(loads, &candidates, now, &mut rng)
                .expect("candidates");
            counts[i] += 1;
        }
        counts
    }

    #[test]
    fn no_candidate_no_pick() {
        let now = Instant::now();
        let balancer = Balancer::new(BalancePolicy::P2cEwma);
        let mut rng = SmallRng::seed_from_u64(1);
        assert_eq!(balancer.pick(&loads(3, now), &[], now, &mut rng), None);
        assert_eq!(balancer.pick(&loads(3, now), &[2], now, &mut rng), Some(2));
    }

    #[test]
    fn round_robin_takes_turns_over_candidates() {
        let now = Instant::now();
        let balancer = Balancer::new(BalancePolicy::RoundRobin);
        let loads = loads(4, now);
        let mut rng = SmallRng::seed_from_u64(1);
        let picks: Vec<usize> = (0..6)
            .map(|_| {
                balancer
                    .pick(&loads, &[0, 2, 3], now, &mut rng)
                    .expect("pick")
            })
            .collect();
        assert_eq!(picks, vec![0, 2, 3, 0, 2, 3]);
    }

    #[test]
    fn least_request_avoids_busy_endpoints_and_spreads_ties() {
        let now = Instant::now();
        let loads = loads(3, now);
        let _busy = loads[1].start_request();
        let balancer = Balancer::new(BalancePolicy::LeastRequest);
        let counts = histogram(&balancer, &loads, 3000);
        assert_eq!(counts[1], 0, "{counts:?}");
        assert!(counts[0] > 1200 && counts[2] > 1200, "{counts:?}");
    }

    #[test]
    fn p2c_spreads_equal_endpoints_evenly() {
        let now = Instant::now();
        let balancer = Balancer::new(BalancePolicy::P2cEwma);
        let counts = histogram(&balancer, &loads(3, now), 3000);
        for count in counts {
            assert!(count > 800, "uneven: {count}");
        }
    }

    #[test]
    fn p2c_prefers_the_fast_endpoint() {
        let now = Instant::now();
        let loads = loads(3, now);
        loads[0].observe_latency(Duration::from_millis(200), now);
        loads[1].observe_latency(Duration::from_millis(2), now);
        loads[2].observe_latency(Duration::from_millis(2), now);
        let balancer = Balancer::new(BalancePolicy::P2cEwma);
        let counts = histogram(&balancer, &loads, 3000);
        // p2c always draws two different endpoints, so the slowest never wins.
        assert_eq!(counts[0], 0, "{counts:?}");
    }
}
