//! An axum server protected by `AdmissionLayer` under a burst: 8 calls in
//! flight at most, 16 waiting at most for 50 ms; the rest get 503 with
//! `Retry-After` at once instead of waiting until every client times out.
//! Prints how many were served and shed, and the served calls' p99.
//!
//! ```text
//! cargo run -p levee-tower --example admission_server
//! ```

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use levee_core::admission::AdmissionParams;
use levee_tower::{AdmissionLayer, BoxError, Overloaded};
use tokio::time::Instant;
use tower::ServiceBuilder;

/// The handler: 20 ms of work.
async fn work() -> &'static str {
    tokio::time::sleep(Duration::from_millis(20)).await;
    "done\n"
}

/// levee-tower's errors as HTTP answers.
async fn answer(error: BoxError) -> Response {
    match error.downcast_ref::<Overloaded>() {
        Some(overloaded) => {
            let seconds = overloaded.retry_after.as_secs().max(1).to_string();
            let mut response =
                (StatusCode::SERVICE_UNAVAILABLE, overloaded.to_string()).into_response();
            if let Ok(value) = HeaderValue::from_str(&seconds) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            response
        }
        None => (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response(),
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let params = AdmissionParams::builder()
        .max_concurrency(8)
        .max_queue(16)
        .queue_timeout(Duration::from_millis(50))
        .build()?;
    let app = Router::new().route("/", get(work)).layer(
        ServiceBuilder::new()
            .layer(HandleErrorLayer::new(answer))
            .layer(AdmissionLayer::new(params)),
    );
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let address = listener.local_addr()?;
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    println!(
        "server on http://{address}/ (20 ms per call, 8 in flight, 16 waiting for at most 50 ms)"
    );

    // A burst of 200 calls at once.
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let calls = (0..200).map(|_| {
        let client = client.clone();
        tokio::spawn(async move {
            let start = Instant::now();
            let uri = format!("http://{address}/").parse().expect("uri");
            let response = client.get(uri).await;
            let status = response.as_ref().map(|r| r.status().as_u16()).unwrap_or(0);
            let retry_after = response
                .ok()
                .and_then(|r| r.headers().get(header::RETRY_AFTER).cloned());
            (status, retry_after, start.elapsed())
        })
    });
    let (mut served, mut shed, mut other) = (Vec::new(), 0, 0);
    for call in calls.collect::<Vec<_>>() {
        match call.await? {
            (200, _, took) => served.push(took),
            (503, Some(_), _) => shed += 1,
            _ => other += 1,
        }
    }
    served.sort();
    let p99 = served
        .get((served.len() * 99 / 100).min(served.len().saturating_sub(1)))
        .copied()
        .unwrap_or_default();
    println!(
        "burst of 200: {} served, {shed} shed with 503 + Retry-After, {other} other; p99 of served {:.0} ms",
        served.len(),
        p99.as_secs_f64() * 1000.0
    );
    server.abort();
    if served.is_empty() || shed == 0 || other > 0 {
        return Err("expected some calls served and some shed".into());
    }
    Ok(())
}
