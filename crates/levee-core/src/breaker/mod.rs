//! Circuit breakers: stop calling an upstream that is failing, let a few
//! trial calls find out when it is back.
//!
//! Without a breaker, every request to a dead or drowning upstream waits for
//! its timeout, holds a connection and a slot, and is retried: the callers
//! pile up and the upstream never gets the quiet it needs to recover. With
//! one, once the evidence is in, calls fail fast (503 with `Retry-After`)
//! until the open period ends, and then a handful of trial calls decide.
//!
//! - [`BreakerParams`]: the trip policies (consecutive failures; failure rate
//!   over a sliding window with a minimum number of calls; slow-call rate),
//!   the open period and its growth on repeated trips, the number of
//!   half-open trials; validated by a builder whose
//!   [`problems`](BreakerParamsBuilder::problems) lists every bad key.
//! - [`Breaker`]: the pure state machine, closed → open → half-open → closed
//!   or open again, over explicit [`tokio::time::Instant`]s; every change is
//!   a [`Transition`] with a human-readable reason.
//! - [`CallOutcome`]: what a call tells the breaker, built from levee's
//!   [`Outcome`](crate::Outcome) with the outlier detector's blame rules (a
//!   404 is an answer; levee's own shedding never counts).
//! - [`ConcurrentBreaker`]: a [`Breaker`] shared between threads; a closed
//!   breaker lets calls through and counts their successes without a lock.
//! - [`SharedBreaker`]: the async convenience for library users,
//!   `breaker.call(fut, is_failure)`.
//!
//! # Driving a breaker from a shared store
//!
//! The state machine is meant to stay local and pure when breaker state is
//! shared across a fleet (Redis): the request path only ever asks the local
//! [`Breaker`], so it never waits on the store. The store's driver exports
//! what the local breaker observes (its transitions, and per-instance call
//! counts for a quorum) and imports what the fleet decided with
//! [`Breaker::apply_remote`], which adopts an open state as it is (same
//! `since` and `until`, so every instance goes half-open together), starts
//! local trials on a remote half-open, and forgets local counts on a remote
//! close. Local decisions (a local trip, a trial's verdict) happen at once
//! and are published afterwards; a quorum rule would sit in the driver,
//! deciding whether a local trip is published to the fleet or kept local.

mod concurrent;
mod machine;
mod outcome;
mod params;
mod rejected;
mod shared;
mod state;
mod window;

pub use concurrent::{BreakerGuard, ConcurrentBreaker};
pub use machine::Breaker;
pub use outcome::CallOutcome;
pub use params::{BadBreakerParams, BreakerParams, BreakerParamsBuilder};
pub use rejected::{Permit, Rejected};
pub use shared::SharedBreaker;
pub use state::{BreakerSnapshot, BreakerState, StateName, Transition};
