//! levee's resilience primitives as a library: the rules levee's gateway
//! runs, for any Rust program.
//!
//! Everything here is pure decision logic: state machines and estimators that
//! take an observation and a [`tokio::time::Instant`] and return a decision.
//! Nothing opens a socket or reads a clock of its own (the async helpers read
//! `tokio::time`, which tests pause), so every rule can be unit-tested under
//! paused time and reused outside the proxy. For tower services and clients,
//! the `levee-tower` crate wraps these as layers.
//!
//! | the failure you fear | type | example |
//! | --- | --- | --- |
//! | a hot cache entry expires and every caller refills it at once | [`cache::RefreshingCache`] | `cargo run -p levee-core --example refreshing_cache` |
//! | every caller waiting for the timeout of a dead dependency | [`breaker::SharedBreaker`] (state machine: [`breaker::Breaker`]) | below |
//! | a write done twice because a failed call was retried | [`retry::decide`] with [`SendPhase`] | `levee-tower`'s `RetryLayer` |
//! | retries multiplying the load of a failing service | [`retry::RetryBudget`] | same |
//! | one slow replica slowing every p99 | [`retry::LatencyQuantile`] + [`retry::hedge_delay`] | `levee-tower`'s `HedgeLayer` |
//! | a burst queued until every request times out | [`admission::Admission`] (adaptive LIFO + CoDel), [`admission::GradientLimit`] | `levee-tower`'s `AdmissionLayer` |
//! | traffic sent to a node that hangs | [`OutlierDetector`], [`Balancer`] (peak EWMA) | levee's proxy |
//! | a node taken out by one flaky check | [`HealthTracker`] (rise/fall) | levee's proxy |
//!
//! A breaker around any async call:
//!
//! ```
//! use std::time::Duration;
//!
//! use levee_core::breaker::{BreakerParams, SharedBreaker};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let breaker = SharedBreaker::new(
//!     BreakerParams::builder()
//!         .consecutive_failures(2)
//!         .open_for(Duration::from_secs(10))
//!         .build()
//!         .unwrap(),
//! );
//! for _ in 0..2 {
//!     let answer = breaker
//!         .call(async { Err::<(), _>("connection refused") }, |result| result.is_err())
//!         .await;
//!     assert!(answer.is_ok(), "called, and failed");
//! }
//! // Open: the call is not made; the rejection says why and for how long.
//! let rejected = breaker.call(async { Ok::<_, ()>(()) }, |r| r.is_err()).await.unwrap_err();
//! assert_eq!(rejected.reason, "2 consecutive failures");
//! assert!(rejected.retry_after.is_some());
//! # }
//! ```
//!
//! Guarantees shared by every type: no lock is held across an await; the
//! async helpers are cancel-safe (a dropped call gives back what it held:
//! a breaker's trial slot, an admission slot, a cache fill's waiters are
//! answered by the fill that keeps running); time is monotonic
//! (`tokio::time::Instant`), so a wall-clock jump changes no decision.

pub mod admission;
pub mod balance;
pub mod breaker;
pub mod cache;
pub mod health;
pub mod latency;
pub mod outcome;
pub mod outlier;
pub mod ratelimit;
pub mod readiness;
pub mod retry;
pub mod throttle;
mod window;

pub use balance::{BalancePolicy, Balancer, EndpointLoad, InFlightGuard};
pub use breaker::{Breaker, BreakerParams, BreakerState, CallOutcome, SharedBreaker};
pub use cache::{CacheParams, CacheStatus, Loaded, RefreshingCache};
pub use health::{
    BadHealthParams, CheckFailure, CheckResult, Health, HealthCheckParams, HealthTracker,
};
pub use latency::PeakEwma;
pub use outcome::{AttemptResult, EndpointId, FailureKind, Outcome, SendPhase, StatusClass};
pub use outlier::{Ejection, EjectionReason, OutlierDetector, OutlierParams};
