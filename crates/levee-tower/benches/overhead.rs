//! Per-call overhead of each levee-tower layer around a no-op service, next
//! to its counterpart in tower and tower-resilience, in the same run: ns per
//! call and heap allocations per call (counted by this binary's allocator).
//!
//! ```text
//! cargo bench -p levee-tower --bench overhead
//! ```
//!
//! Each service is called 200,000 times in a row on a current-thread
//! runtime (`ready().await` then `call().await`), after 20,000 warm-up
//! calls; the best of 5 rounds is kept (the machine is shared). The no-op
//! service alone is the baseline; each figure is the layer's cost above it.

// A benchmark measures wall time with the standard clock, outside tokio.
#![allow(clippy::disallowed_types)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use levee_core::admission::AdmissionParams;
use levee_core::breaker::BreakerParams;
use levee_tower::{
    AdmissionLayer, Attempt, CircuitBreakerLayer, HedgeLayer, HedgeSettings, RetryClassifier,
    RetryLayer, RetrySettings, Verdict,
};
use tower::{Layer, Service, ServiceExt, service_fn};

/// Counts every allocation this process makes.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const CALLS: u32 = 200_000;
const WARMUP: u32 = 20_000;
const ROUNDS: usize = 5;

fn noop()
-> impl Service<u32, Response = u32, Error = Infallible, Future: Send> + Clone + Send + 'static {
    service_fn(|x: u32| async move { Ok::<u32, Infallible>(x) })
}

/// Best-of-rounds ns per call and allocations per call of `service`.
async fn measure<S>(mut service: S) -> (f64, f64)
where
    S: Service<u32>,
    S::Error: std::fmt::Debug,
{
    for i in 0..WARMUP {
        service
            .ready()
            .await
            .expect("ready")
            .call(i)
            .await
            .expect("call");
    }
    let mut best = (f64::MAX, f64::MAX);
    for _ in 0..ROUNDS {
        let allocations = ALLOCATIONS.load(Ordering::Relaxed);
        let start = Instant::now();
        for i in 0..CALLS {
            service
                .ready()
                .await
                .expect("ready")
                .call(i)
                .await
                .expect("call");
        }
        let ns = start.elapsed().as_nanos() as f64 / f64::from(CALLS);
        let allocs = (ALLOCATIONS.load(Ordering::Relaxed) - allocations) as f64 / f64::from(CALLS);
        best = (best.0.min(ns), best.1.min(allocs));
    }
    best
}

struct Never;

impl RetryClassifier<u32, u32, Infallible> for Never {
    fn classify(&self, _: &Result<u32, Infallible>) -> Attempt {
        Attempt::Done
    }
    fn is_idempotent(&self, _: &u32) -> bool {
        true
    }
    fn clone_request(&self, request: &u32) -> Option<u32> {
        Some(*request)
    }
}

/// tower's retry with a policy that would retry an error (there is none).
#[derive(Clone)]
struct TowerPolicy;

impl tower::retry::Policy<u32, u32, Infallible> for TowerPolicy {
    type Future = std::future::Ready<()>;
    fn retry(&mut self, _: &mut u32, _: &mut Result<u32, Infallible>) -> Option<Self::Future> {
        None
    }
    fn clone_request(&mut self, request: &u32) -> Option<u32> {
        Some(*request)
    }
}

/// tower's retry paying from a `TpsBudget`, as levee's retry pays from its
/// budget: a deposit per request.
#[derive(Clone)]
struct BudgetedPolicy(std::sync::Arc<tower::retry::budget::TpsBudget>);

impl tower::retry::Policy<u32, u32, Infallible> for BudgetedPolicy {
    type Future = std::future::Ready<()>;
    fn retry(&mut self, _: &mut u32, _: &mut Result<u32, Infallible>) -> Option<Self::Future> {
        use tower::retry::budget::Budget;
        self.0.withdraw().then(|| std::future::ready(()))
    }
    fn clone_request(&mut self, request: &u32) -> Option<u32> {
        use tower::retry::budget::Budget;
        self.0.deposit();
        Some(*request)
    }
}

/// tower's hedge policy: every request may be hedged.
#[derive(Clone)]
struct HedgeAll;

impl tower::hedge::Policy<u32> for HedgeAll {
    fn clone_request(&self, request: &u32) -> Option<u32> {
        Some(*request)
    }
    fn can_retry(&self, _: &u32) -> bool {
        true
    }
}

struct Row {
    what: &'static str,
    ns: f64,
    allocs: f64,
}

async fn row<S>(what: &'static str, service: S, baseline: f64) -> Row
where
    S: Service<u32>,
    S::Error: std::fmt::Debug,
{
    let (ns, allocs) = measure(service).await;
    Row {
        what,
        ns: (ns - baseline).max(0.0),
        allocs,
    }
}

fn run<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(future)
}

fn main() {
    let rows = run(async {
        let (baseline, base_allocs) = measure(noop()).await;
        let breaker_params = BreakerParams::default();
        let admission = AdmissionParams::builder()
            .max_concurrency(1024)
            .build()
            .expect("params");
        let mut rows = Vec::new();
        rows.push(
            row(
                "levee CircuitBreakerLayer",
                CircuitBreakerLayer::new("bench", breaker_params, |_: &Result<u32, Infallible>| {
                    Verdict::Success
                })
                .layer(noop()),
                baseline,
            )
            .await,
        );
        rows.push(
            row(
                "tower-resilience circuit breaker",
                tower_resilience::circuitbreaker::CircuitBreakerLayer::builder()
                    .build()
                    .expect("breaker")
                    .layer(noop()),
                baseline,
            )
            .await,
        );
        rows.push(
            row(
                "levee AdmissionLayer",
                AdmissionLayer::new(admission).layer(noop()),
                baseline,
            )
            .await,
        );
        rows.push(
            row(
                "tower ConcurrencyLimit + LoadShed",
                tower::ServiceBuilder::new()
                    .load_shed()
                    .concurrency_limit(1024)
                    .service(noop()),
                baseline,
            )
            .await,
        );
        rows.push(
            row(
                "tower-resilience bulkhead",
                tower_resilience::bulkhead::BulkheadLayer::builder()
                    .max_concurrent_calls(1024)
                    .build()
                    .expect("bulkhead")
                    .layer(noop()),
                baseline,
            )
            .await,
        );
        rows.push(
            row(
                "levee RetryLayer",
                RetryLayer::new(RetrySettings::default(), Never).layer(noop()),
                baseline,
            )
            .await,
        );
        rows.push(
            row(
                "tower retry",
                tower::retry::RetryLayer::new(TowerPolicy).layer(noop()),
                baseline,
            )
            .await,
        );
        let tps = tower::retry::budget::TpsBudget::new(Duration::from_secs(10), 10, 0.2);
        rows.push(
            row(
                "tower retry + TpsBudget",
                tower::retry::RetryLayer::new(BudgetedPolicy(std::sync::Arc::new(tps)))
                    .layer(noop()),
                baseline,
            )
            .await,
        );
        rows.push(
            row(
                "levee HedgeLayer",
                HedgeLayer::new(HedgeSettings::default(), |request: &u32| Some(*request))
                    .layer(noop()),
                baseline,
            )
            .await,
        );
        rows.push(
            row(
                "tower hedge",
                tower::hedge::Hedge::new::<u32>(
                    noop(),
                    HedgeAll,
                    10,
                    0.95,
                    Duration::from_secs(10),
                ),
                baseline,
            )
            .await,
        );
        rows.push(row_base("no-op service alone", baseline, base_allocs));
        rows
    });
    println!("{:<36} {:>10} {:>14}", "layer", "ns/call", "allocs/call");
    for row in rows {
        println!("{:<36} {:>10.1} {:>14.2}", row.what, row.ns, row.allocs);
    }
}

fn row_base(what: &'static str, ns: f64, allocs: f64) -> Row {
    Row { what, ns, allocs }
}
