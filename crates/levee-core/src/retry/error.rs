//! Retry parameters that make no sense.

use std::fmt;
use std::time::Duration;

/// A retry, budget, backoff or hedging parameter out of range. Each variant
/// names the parameter as spelled in a cluster's `retry` table, so the config
/// layer can point at the offending line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadRetryParams {
    /// `max_attempts` was 0: a request must be tried at least once.
    MaxAttempts,
    /// `budget_percent` was above 100.
    BudgetPercent(u32),
    /// `budget_window` was zero.
    BudgetWindow,
    /// `backoff_base` was zero.
    BackoffBase,
    /// `backoff_max` was shorter than `backoff_base`.
    BackoffMax {
        /// The configured base.
        base: Duration,
        /// The configured cap.
        max: Duration,
    },
    /// `hedge_window` (the latency window hedging learns from) was zero.
    HedgeWindow,
}

impl BadRetryParams {
    /// The name of the offending parameter, as spelled in the config.
    pub fn param(&self) -> &'static str {
        match self {
            BadRetryParams::MaxAttempts => "max_attempts",
            BadRetryParams::BudgetPercent(_) => "budget_percent",
            BadRetryParams::BudgetWindow => "budget_window",
            BadRetryParams::BackoffBase => "backoff_base",
            BadRetryParams::BackoffMax { .. } => "backoff_max",
            BadRetryParams::HedgeWindow => "hedge_window",
        }
    }
}

impl fmt::Display for BadRetryParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let param = self.param();
        match self {
            BadRetryParams::MaxAttempts => write!(f, "{param} must be at least 1"),
            BadRetryParams::BudgetPercent(percent) => {
                write!(f, "{param} must be between 0 and 100, got {percent}")
            }
            BadRetryParams::BudgetWindow
            | BadRetryParams::BackoffBase
            | BadRetryParams::HedgeWindow => write!(f, "{param} must be greater than zero"),
            BadRetryParams::BackoffMax { base, max } => write!(
                f,
                "{param} must be at least backoff_base ({base:?}), got {max:?}"
            ),
        }
    }
}

impl std::error::Error for BadRetryParams {}
