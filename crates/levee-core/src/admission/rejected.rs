//! Why a request was not admitted, in the words of levee's 503.

use std::fmt;
use std::time::Duration;

/// A request shed by [`Admission`](super::Admission). Shed requests are
/// levee's own decision: they never count against an endpoint's health or a
/// breaker, and are not retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejected {
    /// Every slot was busy and the queue already held `waiting` requests, so
    /// the request was turned away without waiting at all.
    QueueFull {
        /// Requests that were waiting (the queue's capacity).
        waiting: usize,
    },
    /// The request waited for a slot until its controlled-delay deadline.
    Timeout {
        /// How long it waited.
        waited: Duration,
    },
    /// The queue was full and a request of a higher class took this one's
    /// place (lower classes are shed first).
    Displaced {
        /// The class of the request that took its place.
        by: super::Priority,
    },
}

impl Rejected {
    /// Retry-After hint. HTTP counts it in whole seconds, and shedding is for
    /// short stalls, so one second: long enough to let a standing queue drain,
    /// short enough that clients come back soon after the stall ends. The
    /// proxy may add jitter so that shed clients do not return in step.
    pub const RETRY_AFTER: Duration = Duration::from_secs(1);

    /// A sensible `Retry-After` for this rejection; see [`Self::RETRY_AFTER`].
    pub fn retry_after(&self) -> Duration {
        Rejected::RETRY_AFTER
    }

    /// A short stable label for metrics: `queue_full` or `timeout`.
    pub fn reason(&self) -> &'static str {
        match self {
            Rejected::QueueFull { .. } => "queue_full",
            Rejected::Timeout { .. } => "timeout",
            Rejected::Displaced { .. } => "displaced",
        }
    }
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejected::QueueFull { waiting } => {
                write!(f, "overloaded: queue full ({waiting} waiting)")
            }
            Rejected::Timeout { waited } => {
                write!(
                    f,
                    "overloaded: waited {}ms in the queue",
                    waited.as_millis()
                )
            }
            Rejected::Displaced { by } => write!(
                f,
                "overloaded: shed from a full queue for a {by} request (lower classes are shed first)"
            ),
        }
    }
}

impl std::error::Error for Rejected {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_read_like_a_503_body() {
        let full = Rejected::QueueFull { waiting: 1024 };
        assert_eq!(full.to_string(), "overloaded: queue full (1024 waiting)");
        assert_eq!(full.reason(), "queue_full");
        let late = Rejected::Timeout {
            waited: Duration::from_micros(5_400),
        };
        assert_eq!(late.to_string(), "overloaded: waited 5ms in the queue");
        assert_eq!(late.reason(), "timeout");
        assert_eq!(late.retry_after(), Duration::from_secs(1));
    }
}
