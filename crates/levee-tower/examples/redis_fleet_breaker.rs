//! A circuit breaker shared by two processes through Redis: each process
//! sees its calls to a dependency fail; one process alone is below the
//! quorum (2) and opens only its own breaker; once both have seen it, the
//! breaker is open for the fleet and every process fails fast.
//!
//! ```text
//! redis-server --port 6379 &
//! cargo run -p levee-tower --example redis_fleet_breaker -- redis://127.0.0.1:6379
//! ```
//!
//! The first process starts the second (this same program, `child`
//! argument) and waits for it.

use std::sync::Arc;
use std::time::Duration;

use levee_core::breaker::BreakerParams;
use levee_store::{FleetBreaker, FleetRules, RedisStore, RedisStoreConfig};
use levee_tower::{BoxError, BreakerOpen, CircuitBreakerLayer, Verdict};
use tower::{ServiceBuilder, ServiceExt, service_fn};

/// This process's breaker, over a dependency that always fails.
fn client(
    url: &str,
    namespace: &str,
    instance: &str,
) -> Result<
    (
        CircuitBreakerLayer<(), std::io::Error>,
        impl tower::Service<(), Response = (), Error = BoxError> + Clone,
    ),
    BoxError,
> {
    let rules = FleetRules::new().with_quorum(2)?;
    let store =
        RedisStore::start(RedisStoreConfig::new(url, namespace, instance).with_rules(rules))?;
    let params = BreakerParams::builder()
        .consecutive_failures(3)
        .open_for(Duration::from_secs(30))
        .build()?;
    let layer = CircuitBreakerLayer::fleet(
        FleetBreaker::new("inventory", params, Arc::new(store)),
        |result: &Result<(), std::io::Error>| {
            if result.is_ok() {
                Verdict::Success
            } else {
                Verdict::Failure
            }
        },
    );
    let service = ServiceBuilder::new()
        .layer(layer.clone())
        .service(service_fn(|()| async {
            Err::<(), _>(std::io::Error::other("inventory service unavailable"))
        }));
    Ok((layer, service))
}

/// Fail three calls, then say what this process's breaker thinks.
async fn fail_three(
    who: &str,
    service: &(impl tower::Service<(), Response = (), Error = BoxError> + Clone),
) {
    for _ in 0..3 {
        let error = service.clone().oneshot(()).await.expect_err("always fails");
        println!("{who}: call failed: {error}");
    }
}

/// Wait (at most 5 s) until this process applies the fleet's verdict: its
/// reason names the instances that opened it.
async fn wait_for_fleet_open(layer: &CircuitBreakerLayer<(), std::io::Error>) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while tokio::time::Instant::now() < deadline {
        if layer.snapshot().reason.contains("instances") {
            return layer.is_open();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let mut args = std::env::args().skip(1);
    let first = args
        .next()
        .unwrap_or_else(|| "redis://127.0.0.1:6379".to_owned());
    if first == "child" {
        let url = args.next().ok_or("child: missing url")?;
        let namespace = args.next().ok_or("child: missing namespace")?;
        let (layer, service) = client(&url, &namespace, "process-b")?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        fail_three("process-b", &service).await;
        // Its own evidence opens it here at once; the report it publishes
        // completes the quorum for process-a.
        let open = layer.is_open();
        println!(
            "process-b: breaker open: {open} ({})",
            layer.snapshot().reason
        );
        // Give the store's writer a moment to publish before exiting.
        tokio::time::sleep(Duration::from_millis(300)).await;
        return if open {
            Ok(())
        } else {
            Err("process-b: not open".into())
        };
    }
    let url = first;
    let namespace = format!("levee-example-{}", std::process::id());
    let (layer, service) = client(&url, &namespace, "process-a")?;
    fail_three("process-a", &service).await;
    println!(
        "process-a: open on its own evidence only ({}); the fleet needs 2 instances",
        layer.snapshot().reason
    );
    let mut child = tokio::process::Command::new(std::env::current_exe()?)
        .args(["child", &url, &namespace])
        .spawn()?;
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait()).await??;
    let open = wait_for_fleet_open(&layer).await;
    println!(
        "process-a: breaker open for the fleet: {open} ({})",
        layer.snapshot().reason
    );
    match service.clone().oneshot(()).await {
        Err(error) if error.downcast_ref::<BreakerOpen>().is_some() => {
            println!("process-a: fails fast: {error}");
        }
        other => println!("process-a: unexpected: {other:?}"),
    }
    if !status.success() || !open {
        return Err("expected the fleet breaker open in both processes".into());
    }
    Ok(())
}
