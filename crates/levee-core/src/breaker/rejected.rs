//! The answer to "may this call go ahead?": a permit or a rejection.

use std::fmt;
use std::time::Duration;

use super::state::{StateName, Transition};

/// Leave to make one call. Hand it back with the call's outcome to
/// [`Breaker::record`](super::Breaker::record), or to
/// [`Breaker::release`](super::Breaker::release) when the call said nothing
/// (cancelled, neutral outcome): a half-open breaker counts its trial slots by
/// permits, and a permit never returned holds a slot.
///
/// The permit remembers which period of the breaker it belongs to, so a call
/// admitted before the breaker opened (a straggler) cannot count as a trial,
/// and one admitted before it last closed cannot trip it again.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "return the permit with Breaker::record or Breaker::release"]
pub struct Permit {
    /// The breaker's period (incremented at every transition) at admission.
    pub(super) generation: u32,
    /// Admitted as a half-open trial.
    pub(super) trial: bool,
    /// The transition this admission caused (open → half-open for the first
    /// trial), for the caller to log. Boxed: it is rare, and a permit
    /// travels in every call's state (72 bytes unboxed, 16 boxed).
    pub(super) transition: Option<Box<Transition>>,
}

impl Permit {
    /// Whether this call is a half-open trial.
    pub fn is_trial(&self) -> bool {
        self.trial
    }

    /// The transition that admitting this call caused, if any (open →
    /// half-open, on the first call after the open period). Taken once.
    pub fn take_transition(&mut self) -> Option<Transition> {
        self.transition.take().map(|transition| *transition)
    }
}

/// A call the breaker refused: the proxy answers 503 with a JSON body naming
/// the breaker and its state, and `Retry-After` from
/// [`retry_after`](Self::retry_after). Breaker rejections are levee's own
/// decision: they never count against an endpoint or a retry budget.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejected {
    /// How long until the breaker lets calls through again: the time left
    /// until half-open, or [`Rejected::HALF_OPEN_RETRY_AFTER`] while the
    /// trial slots are taken. `None` when forced open (no end is known).
    pub retry_after: Option<Duration>,
    /// The breaker's state (open or half-open).
    pub state: StateName,
    /// Why the breaker opened ("5 consecutive failures"), also while it is
    /// half-open.
    pub reason: String,
}

impl Rejected {
    /// Retry-After while half-open with every trial slot taken: the trials
    /// end within a call's duration, and HTTP counts in whole seconds.
    pub const HALF_OPEN_RETRY_AFTER: Duration = Duration::from_secs(1);
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.state {
            StateName::HalfOpen => write!(
                f,
                "circuit breaker half-open, trial calls in progress: {}",
                self.reason
            ),
            state => write!(f, "circuit breaker {state}: {}", self.reason),
        }
    }
}

impl std::error::Error for Rejected {}
