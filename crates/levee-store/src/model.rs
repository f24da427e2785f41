//! What instances tell the store and what the store tells them back, in wall
//! clock time: a fleet shares no monotonic clock, so everything stored is a
//! [`SystemTime`], and only the final conversion into a local
//! [`BreakerState`] goes back to a pausable [`Instant`].

use std::time::{Duration, SystemTime};

use levee_core::breaker::BreakerState;
use tokio::time::Instant;

/// One instance's own verdict on one breaker, as its local
/// [`Breaker`](levee_core::breaker::Breaker) sees it. Each instance writes
/// only its own report; the fleet verdict is computed by every reader from
/// all of them, so no instance can decide for the others.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalReport {
    /// `Some` while the local breaker is open: when it goes half-open
    /// (a forced-open local breaker has no end; report a far instant).
    /// `None` while closed or half-open.
    pub open_until: Option<SystemTime>,
    /// Why the local breaker is in its state ("5 consecutive failures").
    pub reason: String,
    /// Failures in the local window, for `/status` and operators.
    pub failures: u64,
    /// Calls in the local window.
    pub calls: u64,
    /// When the instance made this report.
    pub at: SystemTime,
}

impl LocalReport {
    /// A closed breaker's report.
    pub fn closed(reason: impl Into<String>, failures: u64, calls: u64, at: SystemTime) -> Self {
        LocalReport {
            open_until: None,
            reason: reason.into(),
            failures,
            calls,
            at,
        }
    }

    /// An open breaker's report.
    pub fn open(until: SystemTime, reason: impl Into<String>, at: SystemTime) -> Self {
        LocalReport {
            open_until: Some(until),
            reason: reason.into(),
            failures: 0,
            calls: 0,
            at,
        }
    }

    /// Whether this report says "open" at `now`.
    pub fn is_open_at(&self, now: SystemTime) -> bool {
        self.open_until.is_some_and(|until| until > now)
    }
}

/// A report as stored: the report and when it stops counting. The expiry
/// is set by the writer at each write (and pushed forward by its periodic
/// refresh), so the report of an instance that died, or lost the store,
/// stops counting after the TTL instead of holding the fleet open forever.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredReport {
    /// The report.
    pub report: LocalReport,
    /// After this, readers ignore the report (and Redis readers delete it).
    pub expires: SystemTime,
}

/// An operator's decision for the whole fleet, stored beside the reports
/// so that every instance sees it (`POST /breakers/{name}/force-open`...).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Override {
    /// Open everywhere until forced closed or reset, whatever the reports.
    ForceOpen {
        /// Why, as the operator put it.
        reason: String,
        /// When it was set.
        at: SystemTime,
    },
    /// Closed everywhere until forced open or reset, whatever the reports.
    ForceClosed {
        /// Why, as the operator put it.
        reason: String,
        /// When it was set.
        at: SystemTime,
    },
    /// Forget the evidence: reports made before `at` no longer count, so
    /// an instance that has not yet heard of the reset cannot reopen the
    /// breaker with its old verdict.
    Reset {
        /// When it was set.
        at: SystemTime,
    },
}

impl Override {
    /// When the operator set it.
    pub fn at(&self) -> SystemTime {
        match self {
            Override::ForceOpen { at, .. }
            | Override::ForceClosed { at, .. }
            | Override::Reset { at } => *at,
        }
    }
}

/// The fleet's verdict on one breaker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FleetVerdict {
    /// Calls flow (as far as the fleet is concerned: an instance may still
    /// protect itself locally).
    Closed {
        /// Held closed by an operator.
        forced: bool,
    },
    /// Calls fail fast fleet-wide.
    Open {
        /// When the first of the reporting instances that make the quorum
        /// reported open (or the operator forced it).
        since: SystemTime,
        /// The latest `open_until` among them; `None` when forced open.
        until: Option<SystemTime>,
        /// Which instances and why, or the operator's reason.
        reason: String,
    },
}

/// Everything the fleet knows about one breaker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FleetState {
    /// Open or closed for the fleet.
    pub verdict: FleetVerdict,
    /// The operator's override, if any.
    pub override_: Option<Override>,
    /// Distinct instances needed to open the breaker for the fleet.
    pub quorum: u32,
    /// Instances whose live report says open (sorted), including those
    /// that are not enough for the quorum: `/status` shows them as "open
    /// locally only".
    pub open_instances: Vec<String>,
    /// Instances with a live report.
    pub reporting_instances: u32,
    /// Failures summed over the live reports.
    pub failures: u64,
    /// Calls summed over the live reports.
    pub calls: u64,
}

impl FleetState {
    /// True when calls should fail fast fleet-wide.
    pub fn is_open(&self) -> bool {
        matches!(self.verdict, FleetVerdict::Open { .. })
    }

    /// The state to give the local breaker with
    /// [`Breaker::apply_remote`](levee_core::breaker::Breaker::apply_remote),
    /// converting wall-clock times into local instants: `wall_now` and
    /// `now` must be read together. Apply it only when the fleet state
    /// changed (see [`FleetWatcher`](crate::FleetWatcher)): two conversions
    /// of the same state give instants a few nanoseconds apart, which the
    /// breaker would take for a new opening.
    pub fn breaker_state(&self, now: Instant, wall_now: SystemTime) -> BreakerState {
        match &self.verdict {
            FleetVerdict::Closed { forced } => BreakerState::Closed { forced: *forced },
            FleetVerdict::Open {
                since,
                until,
                reason,
            } => BreakerState::Open {
                since: to_instant(*since, now, wall_now),
                until: until.map(|until| to_instant(until, now, wall_now)),
                reason: reason.clone(),
            },
        }
    }
}

/// `wall` as a local instant, given a pair of readings of both clocks.
fn to_instant(wall: SystemTime, now: Instant, wall_now: SystemTime) -> Instant {
    match wall.duration_since(wall_now) {
        Ok(ahead) => now + ahead,
        Err(behind) => now.checked_sub(behind.duration()).unwrap_or(now),
    }
}

/// Milliseconds since the Unix epoch, the wire form of times (readable in
/// `redis-cli`, and free of the serde representation of [`SystemTime`]).
pub(crate) fn to_millis(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map(|since| u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The inverse of [`to_millis`].
pub(crate) fn from_millis(millis: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fleet_open_state_converts_to_local_instants() {
        let wall_now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let now = Instant::now();
        let state = FleetState {
            verdict: FleetVerdict::Open {
                since: wall_now - Duration::from_secs(2),
                until: Some(wall_now + Duration::from_secs(3)),
                reason: "r".to_owned(),
            },
            override_: None,
            quorum: 1,
            open_instances: vec!["a".to_owned()],
            reporting_instances: 1,
            failures: 0,
            calls: 0,
        };
        let BreakerState::Open { since, until, .. } = state.breaker_state(now, wall_now) else {
            panic!("expected open");
        };
        assert_eq!(until, Some(now + Duration::from_secs(3)));
        assert_eq!(now - since, Duration::from_secs(2));
    }

    #[test]
    fn wire_times_round_trip_to_the_millisecond() {
        let time = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        assert_eq!(from_millis(to_millis(time)), time);
    }
}
