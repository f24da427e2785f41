//! Safe retries: whether a failed attempt may be tried again, and how much
//! retrying a cluster may take.
//!
//! This is only the decision. The proxy classifies each attempt into an
//! [`Outcome`](crate::Outcome) and then, for one request:
//!
//! 1. [`decide`] applies the per-request rules: send phase, idempotency
//!    ([`is_idempotent`]), a body still held for replay, [`RetryPolicy`]'s
//!    maximum attempts;
//! 2. the proxy checks that an untried endpoint is left, then feeds the
//!    outcome to the request's [`PoisonTracker`] (a request that fails the
//!    same way on 2 endpoints is the problem, not the nodes);
//! 3. the cluster's [`RetryBudget`] is asked last, with
//!    [`RetryBudget::try_withdraw`], because asking spends a token;
//! 4. [`Backoff::delay`] says how long to wait before the next attempt.
//!
//! For idempotent requests, [`hedge_delay`] over the cluster's
//! [`LatencyQuantile`] p95 says when to send a second copy to another
//! endpoint; a hedge takes a token from the same budget.
//!
//! Every "no" is a [`NotRetried`] whose words go into levee's JSON error body
//! and whose label goes into a metric.

mod backoff;
mod budget;
mod decision;
mod error;
mod hedge;
mod idempotency;
mod poison;

pub use backoff::Backoff;
pub use budget::{BudgetSnapshot, RetryBudget, RetryBudgetParams};
pub use decision::{NotRetried, RequestFacts, RetryDecision, RetryPolicy, decide};
pub use error::BadRetryParams;
pub use hedge::{LatencyQuantile, MIN_SAMPLES, hedge_delay};
pub use idempotency::{IDEMPOTENT_METHODS, is_idempotent};
pub use poison::{POISON_ENDPOINTS, PoisonClass, PoisonTracker};
