//! The errors the layers add to a service's own: small types a caller
//! matches by downcasting the boxed error (tower's convention, so layers
//! compose in any order).

use std::time::Duration;

/// What every layer's service returns as its error: the inner service's
/// error, or one of this crate's, boxed.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The circuit breaker is open: the call was not made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("circuit breaker {name:?} is {state}: {reason}")]
pub struct BreakerOpen {
    /// The breaker's name.
    pub name: String,
    /// `open`, or `half-open` when every trial slot is taken.
    pub state: &'static str,
    /// Why it opened.
    pub reason: String,
    /// How long until it lets a call through again, if known (a server maps
    /// it to `Retry-After`).
    pub until: Option<Duration>,
}

/// Admission control turned the call away: too many calls in flight and
/// the queue full, or the wait for a slot too long.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("overloaded: {reason}")]
pub struct Overloaded {
    /// `queue_full` or `timeout`, with the figures.
    pub reason: String,
    /// When to try again (a server maps it to `503` + `Retry-After`).
    pub retry_after: Duration,
}

/// A call failed in a way that would be retried, but the retry budget is
/// spent: the service is failing broadly and retries would only add load.
#[derive(Debug, thiserror::Error)]
#[error("retry budget exhausted after {attempts} attempt(s): {source}")]
pub struct BudgetExhausted {
    /// Attempts made.
    pub attempts: u32,
    /// The last attempt's error.
    #[source]
    pub source: BoxError,
}
