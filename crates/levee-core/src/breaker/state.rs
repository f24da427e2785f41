//! The states of a breaker, its transitions and its `/status` view, in words a
//! log reader understands.

use std::fmt;
use std::time::Duration;

use tokio::time::Instant;

use crate::outlier::Human;

/// Which of the three states a breaker is in, without details: for metric
/// labels, JSON and the `from`/`to` of a [`Transition`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StateName {
    /// Calls flow; outcomes are counted.
    Closed,
    /// Calls fail fast.
    Open,
    /// A few trial calls decide between closed and open.
    HalfOpen,
}

impl StateName {
    /// Every state, in label order (for pre-creating metric series).
    pub const ALL: [StateName; 3] = [StateName::Closed, StateName::Open, StateName::HalfOpen];

    /// Stable lower-case name for logs, metrics and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            StateName::Closed => "closed",
            StateName::Open => "open",
            StateName::HalfOpen => "half-open",
        }
    }
}

impl fmt::Display for StateName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A breaker's state with what it needs to decide.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls flow. `forced` when an operator forced it closed: then no
    /// policy trips it until [`reset`](super::Breaker::reset).
    Closed {
        /// Held closed by an operator.
        forced: bool,
    },
    /// Calls are rejected until `until`, when the breaker goes half-open.
    Open {
        /// When it opened.
        since: Instant,
        /// When it goes half-open; `None` when forced open by an operator
        /// (it stays open until forced closed or reset).
        until: Option<Instant>,
        /// Why it opened ("5 consecutive failures").
        reason: String,
    },
    /// Trial calls are let through, at most `half_open_trials` at once.
    HalfOpen {
        /// Trial calls admitted and not yet recorded.
        in_flight: u32,
        /// Trial calls that succeeded.
        succeeded: u32,
    },
}

impl BreakerState {
    /// The state without details.
    pub fn name(&self) -> StateName {
        match self {
            BreakerState::Closed { .. } => StateName::Closed,
            BreakerState::Open { .. } => StateName::Open,
            BreakerState::HalfOpen { .. } => StateName::HalfOpen,
        }
    }
}

/// A change of state, with its reason, for a log line, a metric and an event
/// (open at error level, close at info). Displays as "closed → open for 5s: 5
/// consecutive failures".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    /// The state left.
    pub from: StateName,
    /// The state entered (may equal `from` for an operator's reset).
    pub to: StateName,
    /// Why, in words: "failure rate 62% over 10s (min 20 calls)".
    pub reason: String,
    /// When.
    pub at: Instant,
    /// How long the breaker stays open, when it opened on its own.
    pub open_for: Option<Duration>,
}

impl fmt::Display for Transition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} → {}", self.from, self.to)?;
        if let Some(open_for) = self.open_for {
            write!(f, " for {}", Human(open_for))?;
        }
        write!(f, ": {}", self.reason)
    }
}

/// What `/status` and `GET /breakers/{name}` show: enough for an application
/// UI to grey out a feature before users hit the error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BreakerSnapshot {
    /// The current state.
    pub state: StateName,
    /// True unless closed: half-open rejects all but a few trial calls, so a
    /// UI should treat it as open.
    pub is_open: bool,
    /// Held in this state by an operator.
    pub forced: bool,
    /// When the current state began.
    pub since: Instant,
    /// Why it is in this state (for closed: why it last closed, or
    /// "initial state").
    pub reason: String,
    /// When an open breaker goes half-open (`None` otherwise, or when forced).
    pub until: Option<Instant>,
    /// Failures in a row while closed.
    pub consecutive_failures: u32,
    /// Calls in the rate window.
    pub calls: u32,
    /// Failures among them.
    pub failures: u32,
    /// Slow calls among them.
    pub slow_calls: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn breaker_transitions_read_like_sentences() {
        let opened = Transition {
            from: StateName::Closed,
            to: StateName::Open,
            reason: "5 consecutive failures".to_owned(),
            at: Instant::now(),
            open_for: Some(Duration::from_secs(5)),
        };
        assert_eq!(
            opened.to_string(),
            "closed → open for 5s: 5 consecutive failures"
        );
        let closed = Transition {
            from: StateName::HalfOpen,
            to: StateName::Closed,
            reason: "3 trial calls succeeded".to_owned(),
            at: Instant::now(),
            open_for: None,
        };
        assert_eq!(
            closed.to_string(),
            "half-open → closed: 3 trial calls succeeded"
        );
        let labels: Vec<&str> = StateName::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(labels, ["closed", "open", "half-open"]);
    }
}
