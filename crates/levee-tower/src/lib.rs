//! levee's resilience rules as [tower] middleware, for any Rust service or
//! client: axum and tonic servers, hyper-util and reqwest clients.
//!
//! The rules are levee-core's, the same state machines levee's gateway
//! runs, so the library and the proxy behave alike; each layer here is a
//! thin adapter. What sets them apart from tower's own `retry` and
//! `load_shed` and from other resilience crates: the retry knows whether a
//! request may already have been acted on, the breaker can be shared by a
//! fleet, the queue sheds the oldest waiters' work first when it stands,
//! and every extra call (retry, hedge) is paid from a budget.
//!
//! | the failure you fear | use | example |
//! | --- | --- | --- |
//! | a write done twice because a timed-out call was retried | [`RetryLayer`] with a [`RetryClassifier`] that says how far each attempt got | `cargo run -p levee-tower --example resilient_client` |
//! | retries that turn a short stall into an outage (3× the load on a failing service) | [`RetryLayer`]'s budget (20 % of calls by default) | same |
//! | one slow replica making every p99 slow | [`HedgeLayer`] at the p95 of the calls' own latencies | same |
//! | every caller waiting for the timeout of a dead dependency | [`CircuitBreakerLayer`] | same |
//! | every process of a fleet learning the same outage alone | `CircuitBreakerLayer::fleet` (feature `fleet`, Redis through levee-store) | `cargo run -p levee-tower --example redis_fleet_breaker -- redis://127.0.0.1:6379` |
//! | a burst queued until every request times out | [`AdmissionLayer`] (adaptive LIFO + CoDel, optional gradient limit) | `cargo run -p levee-tower --example admission_server` |
//! | a stampede of refills when a hot cache entry expires | [`levee_core::cache::RefreshingCache`] (single flight, stale-while-revalidate, generation-checked purges) | `cargo run -p levee-core --example refreshing_cache` |
//!
//! PendingRetries to tower's own middleware:
//!
//! - `tower::retry` retries what its `Policy` says and knows nothing of
//!   send phases; a budget (`TpsBudget`) is opt-in. [`RetryLayer`] refuses
//!   to repeat a request that may have been acted on unless it is
//!   idempotent, always pays from a budget, stops on a poison request, and
//!   clones a request only while a retry is still possible.
//! - `tower::load_shed` + `ConcurrencyLimit` reject everything past the
//!   limit at once (no queue). [`AdmissionLayer`] lets a short burst wait
//!   (bounded, controlled delay, newest first once the queue stands) and
//!   can move its limit with latency. It costs more per call (about 32 ns
//!   against 13 ns in `benches/overhead.rs`) for that queue.
//! - `tower::hedge` hedges at a latency percentile; [`HedgeLayer`] does the
//!   same within a floor and a ceiling and pays each hedge from a budget.
//!
//! Overhead per call above a no-op service (`cargo bench -p levee-tower
//! --bench overhead`, best of 5, one shared 2-core machine): breaker 152 ns
//! and 1 allocation (tower-resilience's: 190 ns, 3), admission 32 ns and 0
//! (tower-resilience bulkhead: 171 ns, 3), retry 76 ns and 0 (tower retry
//! with a `TpsBudget`: 84 ns), hedge 147 ns and 0 (tower hedge: 170 ns).
//!
//! Errors: each layer's service returns [`BoxError`] (tower's convention,
//! so layers stack in any order); levee's own are [`BreakerOpen`],
//! [`Overloaded`] and [`BudgetExhausted`], matched with
//! `error.downcast_ref::<BreakerOpen>()`. Time is `tokio::time`: tests
//! pause it, and wall-clock jumps change nothing.
//!
//! A client stack, outermost first (the breaker sees one call per request,
//! the retry layer sees each attempt's failures):
//!
//! ```
//! use levee_core::breaker::BreakerParams;
//! use levee_core::FailureKind;
//! use levee_tower::{
//!     Attempt, BoxError, CircuitBreakerLayer, HedgeLayer, HedgeSettings, RetryClassifier, RetryLayer,
//!     RetrySettings, Verdict,
//! };
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! #[derive(Clone)]
//! struct Get(&'static str);
//!
//! /// Layers below this one box their errors: classify through a downcast.
//! struct Gets;
//! impl RetryClassifier<Get, String, BoxError> for Gets {
//!     fn classify(&self, result: &Result<String, BoxError>) -> Attempt {
//!         let io = |error: &BoxError| error.downcast_ref::<std::io::Error>().map(|io| io.kind());
//!         match result {
//!             Ok(_) => Attempt::Done,
//!             Err(error) if io(error) == Some(std::io::ErrorKind::ConnectionRefused) => {
//!                 Attempt::not_sent(FailureKind::ConnectRefused)
//!             }
//!             Err(_) => Attempt::sent_no_response(FailureKind::ResetBeforeResponse),
//!         }
//!     }
//!     fn is_idempotent(&self, _: &Get) -> bool {
//!         true
//!     }
//!     fn clone_request(&self, request: &Get) -> Option<Get> {
//!         Some(request.clone())
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let client = ServiceBuilder::new()
//!     .layer(CircuitBreakerLayer::new("catalog", BreakerParams::default(), |result: &Result<String, BoxError>| {
//!         if result.is_ok() { Verdict::Success } else { Verdict::Failure }
//!     }))
//!     .layer(RetryLayer::new(RetrySettings::default(), Gets))
//!     .layer(HedgeLayer::new(HedgeSettings::default(), |request: &Get| Some(request.clone())))
//!     .service(service_fn(|request: Get| async move { Ok::<_, std::io::Error>(format!("item {}", request.0)) }));
//! assert_eq!(client.oneshot(Get("7")).await.unwrap(), "item 7");
//! # }
//! ```
//!
//! [tower]: tower_service

mod admission;
mod breaker;
mod error;
mod hedge;
mod retry;

pub use admission::{AdmissionLayer, AdmissionState, Admitted, AdmittedFuture};
pub use breaker::{CircuitBreaker, CircuitBreakerLayer, Verdict};
pub use error::{BoxError, BreakerOpen, BudgetExhausted, Overloaded};
pub use hedge::{Hedge, HedgeFuture, HedgeLayer, HedgeSettings};
pub use retry::{
    Attempt, PendingRetries, Retry, RetryClassifier, RetryFuture, RetryLayer, RetrySettings,
};
