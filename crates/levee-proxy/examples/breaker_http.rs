//! A circuit breaker from levee's library around calls to an HTTP service,
//! without the proxy: `levee_core::breaker::SharedBreaker::call`.
//!
//! ```sh
//! cargo run -p levee-proxy --example breaker_http
//! ```
//!
//! The "external service" is a testkit backend on 127.0.0.1 that the example
//! breaks and heals, so the run shows every state: calls failing, the breaker
//! opening and failing fast (the service sees no more calls), trial calls
//! after the open period, and the breaker closing.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use levee_core::breaker::{BreakerParams, SharedBreaker};
use levee_testkit::backend::{Backend, Mode};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let service = Backend::start("service", "127.0.0.1:0".parse()?).await?;
    let url: http::Uri = format!("http://{}/", service.addr()).parse()?;
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let breaker = SharedBreaker::new(
        BreakerParams::builder()
            .consecutive_failures(3)
            .open_for(Duration::from_secs(1))
            .half_open_trials(2)
            .build()?,
    );

    // What counts as a failure is the caller's to say: here a transport
    // error or a 5xx, but not a 404 (the service answered).
    let call = || async {
        let response = client.get(url.clone()).await?;
        let status = response.status();
        response.into_body().collect().await?;
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(status)
    };
    let is_failure = |result: &Result<http::StatusCode, _>| {
        result
            .as_ref()
            .map_or(true, |status| status.is_server_error())
    };

    service.set_mode(Mode::Failing).await?;
    println!("the service fails:");
    for i in 1..=5 {
        match breaker.call(call(), is_failure).await {
            Ok(Ok(status)) => println!("  call {i}: service answered {status}"),
            Ok(Err(error)) => println!("  call {i}: service error: {error}"),
            Err(rejected) => println!("  call {i}: not sent, {rejected}"),
        }
    }
    println!(
        "  the service received {} calls; breaker is {}",
        service.requests_received(),
        breaker.snapshot().state
    );

    service.set_mode(Mode::Healthy).await?;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    println!("the service is back; after the open period:");
    for i in 6..=8 {
        match breaker.call(call(), is_failure).await {
            Ok(Ok(status)) => println!("  call {i}: service answered {status}"),
            Ok(Err(error)) => println!("  call {i}: service error: {error}"),
            Err(rejected) => println!("  call {i}: not sent, {rejected}"),
        }
    }
    println!("  breaker is {}", breaker.snapshot().state);
    service.shutdown().await;
    Ok(())
}
