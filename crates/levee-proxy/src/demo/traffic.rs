//! Background traffic for the demo: a steady trickle of requests through the
//! gateway, so the dashboard shows what a client would see while backends are
//! broken and healed. Bounded: one request at a time, 20 per second.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use parking_lot::Mutex;
use serde::Serialize;

/// How many recent results the dashboard summarises.
const WINDOW: usize = 200;
/// Pause between requests.
const INTERVAL: Duration = Duration::from_millis(50);
/// A client gives up after this long (a hung gateway shows as `timeout`).
const CLIENT_TIMEOUT: Duration = Duration::from_secs(3);

/// What one demo request ended with, as the client saw it.
#[derive(Clone, Copy, Debug)]
enum Seen {
    Status(u16),
    Timeout,
    Error,
}

/// The last [`WINDOW`] results.
#[derive(Default)]
pub(super) struct Traffic {
    recent: Mutex<VecDeque<(Seen, Duration)>>,
}

/// Summary for the dashboard.
#[derive(Serialize)]
pub(super) struct TrafficSummary {
    requests: usize,
    ok: usize,
    server_errors: usize,
    other_statuses: usize,
    timeouts: usize,
    connection_errors: usize,
    max_latency_ms: f64,
}

impl Traffic {
    fn push(&self, seen: Seen, latency: Duration) {
        let mut recent = self.recent.lock();
        if recent.len() == WINDOW {
            recent.pop_front();
        }
        recent.push_back((seen, latency));
    }

    pub(super) fn summary(&self) -> TrafficSummary {
        let recent = self.recent.lock();
        let mut summary = TrafficSummary {
            requests: recent.len(),
            ok: 0,
            server_errors: 0,
            other_statuses: 0,
            timeouts: 0,
            connection_errors: 0,
            max_latency_ms: 0.0,
        };
        for (seen, latency) in recent.iter() {
            match seen {
                Seen::Status(200..=299) => summary.ok += 1,
                Seen::Status(500..=599) => summary.server_errors += 1,
                Seen::Status(_) => summary.other_statuses += 1,
                Seen::Timeout => summary.timeouts += 1,
                Seen::Error => summary.connection_errors += 1,
            }
            summary.max_latency_ms = summary.max_latency_ms.max(latency.as_secs_f64() * 1000.0);
        }
        summary
    }
}

/// Send requests to `gateway` until the task is aborted.
pub(super) async fn run(gateway: SocketAddr, traffic: Arc<Traffic>) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let uri: http::Uri = match format!("http://{gateway}/").parse() {
        Ok(uri) => uri,
        Err(_) => return,
    };
    loop {
        let started = tokio::time::Instant::now();
        let request = client.get(uri.clone());
        let seen = match tokio::time::timeout(CLIENT_TIMEOUT, async {
            let response = request.await?;
            let status = response.status().as_u16();
            response.into_body().collect().await?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(status)
        })
        .await
        {
            Ok(Ok(status)) => Seen::Status(status),
            Ok(Err(_)) => Seen::Error,
            Err(_) => Seen::Timeout,
        };
        traffic.push(seen, started.elapsed());
        tokio::time::sleep(INTERVAL).await;
    }
}
