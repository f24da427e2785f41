//! Two instances of a program calling an HTTP service through one shared
//! breaker: failures seen by one instance open the breaker for both, so the
//! second fails fast without sending a single request to a service that is
//! down. The service is a levee-testkit `Backend` on 127.0.0.1, switched to
//! failing and back; the store is a `MemoryStore` (a `RedisStore` shares the
//! breaker between processes the same way).
//!
//! ```text
//! cargo run -p levee-store --example fleet_breaker
//! ```

use std::error::Error;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Empty;
use hyper::StatusCode;
use hyper::Uri;
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use levee_core::breaker::BreakerParams;
use levee_store::{FleetBreaker, FleetRules, MemoryStore};
use levee_testkit::backend::{Backend, Mode};

type HttpClient = Client<HttpConnector, Empty<Bytes>>;

/// One instance of the program: its name, its breaker, its HTTP client.
struct Instance {
    name: &'static str,
    breaker: FleetBreaker,
}

/// GET `uri` through `instance`'s breaker and print what happened, with
/// the state of every instance's breaker after the call.
async fn get(instance: &Instance, client: &HttpClient, uri: &Uri, fleet: &[&Instance]) {
    let answer = instance
        .breaker
        .call(
            async {
                let response = client.get(uri.clone()).await?;
                Ok::<StatusCode, hyper_util::client::legacy::Error>(response.status())
            },
            // 5xx and transport errors blame the service; a 404 would not.
            |result| result.as_ref().map_or(true, StatusCode::is_server_error),
        )
        .await;
    let outcome = match answer {
        Ok(Ok(status)) => format!("HTTP {status}"),
        Ok(Err(error)) => format!("transport error: {error}"),
        Err(rejected) => format!("rejected without calling: {rejected}"),
    };
    let states: Vec<String> = fleet
        .iter()
        .map(|i| format!("{}={}", i.name, i.breaker.snapshot().state.as_str()))
        .collect();
    println!("{:<11} {outcome:<75} [{}]", instance.name, states.join(" "));
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let backend = Backend::start("inventory", ([127, 0, 0, 1], 0).into()).await?;
    let uri: Uri = format!("http://{}/", backend.addr()).parse()?;
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();

    let params = BreakerParams::builder()
        .consecutive_failures(3)
        .failure_rate(None)
        .open_for(Duration::from_secs(2))
        .half_open_trials(1)
        .build()?;
    // Quorum 1: one instance's evidence opens the breaker for everyone.
    let store = MemoryStore::new("instance-a", FleetRules::new());
    let a = Instance {
        name: "instance-a",
        breaker: FleetBreaker::new("inventory", params.clone(), Arc::new(store.clone())),
    };
    let b = Instance {
        name: "instance-b",
        breaker: FleetBreaker::new(
            "inventory",
            params,
            Arc::new(store.as_instance("instance-b")),
        ),
    };

    let fleet = [&a, &b];

    println!("-- the service is healthy");
    get(&a, &client, &uri, &fleet).await;
    get(&b, &client, &uri, &fleet).await;

    println!("-- the service fails: instance-a trips the shared breaker");
    backend.set_mode(Mode::Failing).await?;
    for _ in 0..4 {
        get(&a, &client, &uri, &fleet).await;
    }
    // The fleet's verdict reaches instance-b in the background.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let before = backend.requests_received();
    for _ in 0..3 {
        get(&b, &client, &uri, &fleet).await;
    }
    println!(
        "   requests instance-b sent to the failing service: {}",
        backend.requests_received() - before
    );

    println!("-- the service recovers; after the open period a trial call closes each breaker");
    backend.set_mode(Mode::Healthy).await?;
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    get(&b, &client, &uri, &fleet).await;
    get(&a, &client, &uri, &fleet).await;
    get(&b, &client, &uri, &fleet).await;

    backend.shutdown().await;
    Ok(())
}
