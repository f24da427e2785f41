//! An outbound HTTP client (hyper-util) wrapped in a breaker, a retry layer
//! and hedging, talking to a flaky local server: every 5th call hangs for a
//! second (hedged), every 7th answers 503 (retried: the call is a GET), and
//! then the server goes away (refused connects are retried, then the
//! breaker opens and calls fail fast). Prints what each layer did.
//!
//! ```text
//! cargo run -p levee-tower --example resilient_client
//! ```

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use levee_core::FailureKind;
use levee_core::breaker::BreakerParams;
use levee_tower::{
    Attempt, BoxError, BreakerOpen, CircuitBreakerLayer, HedgeLayer, HedgeSettings,
    RetryClassifier, RetryLayer, RetrySettings, Verdict,
};
use tower::{ServiceBuilder, ServiceExt};

type Call = Request<Empty<Bytes>>;

/// A copy of a GET (no body to replay).
fn copy(request: &Call) -> Call {
    let mut copy = Request::new(Empty::new());
    *copy.method_mut() = request.method().clone();
    *copy.uri_mut() = request.uri().clone();
    *copy.headers_mut() = request.headers().clone();
    copy
}

/// How far an attempt got: a refused connect never reached the server; a
/// 502-504 or a timeout may have.
struct Http;

impl RetryClassifier<Call, Response<Incoming>, BoxError> for Http {
    fn classify(&self, result: &Result<Response<Incoming>, BoxError>) -> Attempt {
        match result {
            Ok(response) if matches!(response.status().as_u16(), 502..=504) => {
                Attempt::sent_no_response(FailureKind::Other)
            }
            Ok(_) => Attempt::Done,
            Err(error) => match error.downcast_ref::<hyper_util::client::legacy::Error>() {
                Some(error) if error.is_connect() => Attempt::not_sent(FailureKind::ConnectRefused),
                _ => Attempt::sent_no_response(FailureKind::Timeout),
            },
        }
    }

    fn is_idempotent(&self, request: &Call) -> bool {
        levee_core::retry::is_idempotent(request.method().as_str(), false, false)
    }

    fn clone_request(&self, request: &Call) -> Option<Call> {
        Some(copy(request))
    }
}

/// The flaky server: counts what it receives. Its connections live in a
/// `JoinSet` it owns, so stopping it closes them all.
async fn serve(listener: tokio::net::TcpListener, received: Arc<AtomicU32>) {
    let mut connections = tokio::task::JoinSet::new();
    while let Ok((tcp, _)) = listener.accept().await {
        let received = Arc::clone(&received);
        connections.spawn(async move {
            let service = service_fn(move |_: Request<Incoming>| {
                let n = received.fetch_add(1, Ordering::SeqCst) + 1;
                async move {
                    if n % 5 == 0 {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    let status = if n % 7 == 0 {
                        StatusCode::SERVICE_UNAVAILABLE
                    } else {
                        StatusCode::OK
                    };
                    let mut response = Response::new(Full::new(Bytes::from_static(b"ok\n")));
                    *response.status_mut() = status;
                    Ok::<_, Infallible>(response)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let address = listener.local_addr()?;
    let received = Arc::new(AtomicU32::new(0));
    let server = tokio::spawn(serve(listener, Arc::clone(&received)));

    let breaker = CircuitBreakerLayer::new(
        "flaky",
        BreakerParams::builder()
            .consecutive_failures(3)
            .open_for(Duration::from_secs(30))
            .build()?,
        |result: &Result<Response<Incoming>, BoxError>| match result {
            Ok(response) if response.status().is_server_error() => Verdict::Failure,
            Ok(_) => Verdict::Success,
            Err(_) => Verdict::Failure,
        },
    );
    let retry = RetryLayer::new(RetrySettings::default(), Http);
    let hedge = HedgeLayer::new(
        HedgeSettings {
            ceiling: Duration::from_millis(100),
            ..HedgeSettings::default()
        },
        |request: &Call| Some(copy(request)),
    );
    let http = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let client = ServiceBuilder::new()
        .layer(breaker.clone())
        .layer(retry)
        .layer(hedge)
        .service(http);

    let get = || {
        let uri = format!("http://{address}/")
            .parse::<http::Uri>()
            .expect("uri");
        Request::get(uri)
            .body(Empty::<Bytes>::new())
            .expect("request")
    };
    let mut answered = 0;
    let started = tokio::time::Instant::now();
    for _ in 0..30 {
        let response = client.clone().oneshot(get()).await?;
        if response.status() == StatusCode::OK {
            answered += 1;
        }
    }
    let sent = received.load(Ordering::SeqCst);
    println!(
        "30 GETs: {answered} answered 200 in {:.2} s; the server received {sent} ({} extra: hedges beside the hung calls, retries after the 503s)",
        started.elapsed().as_secs_f64(),
        sent.saturating_sub(30)
    );

    // The server goes away: refused connects are retried (they never
    // reached it), then the breaker opens and calls fail fast.
    server.abort();
    let _ = server.await;
    let mut fast = 0;
    for _ in 0..6 {
        let started = tokio::time::Instant::now();
        match client.clone().oneshot(get()).await {
            Ok(response) => println!("unexpected answer {}", response.status()),
            Err(error) => {
                if let Some(open) = error.downcast_ref::<BreakerOpen>() {
                    fast += 1;
                    println!("fails fast in {:?}: {open}", started.elapsed());
                } else {
                    println!("failed after retries: {error}");
                }
            }
        }
    }
    println!("breaker open: {}", breaker.is_open());
    if answered < 30 || !breaker.is_open() || fast == 0 {
        return Err("expected every GET answered, then the breaker open".into());
    }
    Ok(())
}
