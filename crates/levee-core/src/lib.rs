//! levee's resilience primitives as a library.
//!
//! Everything here is pure decision logic: state machines and estimators that
//! take an observation and a [`tokio::time::Instant`] and return a decision.
//! Nothing opens a socket or reads a clock of its own, so every rule can be
//! unit-tested under paused time and reused outside the proxy.

pub mod admission;
pub mod balance;
pub mod breaker;
pub mod cache;
pub mod health;
pub mod latency;
pub mod outcome;
pub mod outlier;
pub mod readiness;
pub mod retry;

pub use balance::{BalancePolicy, Balancer, EndpointLoad, InFlightGuard};
pub use breaker::{Breaker, BreakerParams, BreakerState, CallOutcome, SharedBreaker};
pub use cache::{CacheParams, CacheStatus, Loaded, RefreshingCache};
pub use health::{
    BadHealthParams, CheckFailure, CheckResult, Health, HealthCheckParams, HealthTracker,
};
pub use latency::PeakEwma;
pub use outcome::{AttemptResult, EndpointId, FailureKind, Outcome, SendPhase, StatusClass};
pub use outlier::{Ejection, EjectionReason, OutlierDetector, OutlierParams};
