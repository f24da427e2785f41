//! Webhooks (`[[alert]]`): every event of the [`EventLog`] that passes a
//! webhook's filter is POSTed to it as one JSON document.
//!
//! Built on the event log, not on any one feature, so that every state
//! change levee records (endpoint health, readiness, drain, and later
//! breakers) reaches the same webhooks. Sending never blocks the path that
//! caused the event: events wait in a bounded queue per webhook, and when it
//! is full new ones are dropped and counted (`levee_alerts_dropped_total`)
//! rather than stalling traffic behind a slow receiver.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, header};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use prometheus_client::metrics::counter::Counter;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::config::AlertSettings;
use crate::events::{Event, EventLog};
use crate::metrics::Metrics;

/// Events waiting for one webhook.
const QUEUE: usize = 1000;
/// Tries per event: the first and 3 retries.
const TRIES: u32 = 4;
/// Pause before the first retry; doubles for each further one.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// Limit on one delivery, connect to response head.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// Subscribe every webhook of `alerts` to `events`; returns the sending
/// tasks (aborted at shutdown).
pub fn spawn(
    alerts: &[AlertSettings],
    events: &EventLog,
    metrics: &Metrics,
) -> Vec<JoinHandle<()>> {
    spawn_with_queue(alerts, events, metrics, QUEUE)
}

fn spawn_with_queue(
    alerts: &[AlertSettings],
    events: &EventLog,
    metrics: &Metrics,
    queue: usize,
) -> Vec<JoinHandle<()>> {
    let (sent, failed, dropped) = metrics.alert_counters();
    alerts
        .iter()
        .map(|alert| {
            let (tx, rx) = mpsc::channel::<Event>(queue);
            let filter = alert.events.clone();
            let dropped = dropped.clone();
            events.subscribe(move |event| {
                let wanted = filter
                    .as_ref()
                    .is_none_or(|kinds| kinds.iter().any(|kind| kind == event.kind));
                if wanted && tx.try_send(event.clone()).is_err() {
                    dropped.inc();
                }
            });
            tokio::spawn(deliver(
                Arc::new(alert.url.clone()),
                rx,
                sent.clone(),
                failed.clone(),
            ))
        })
        .collect()
}

async fn deliver(
    url: Arc<http::Uri>,
    mut rx: mpsc::Receiver<Event>,
    sent: Counter,
    failed: Counter,
) {
    while let Some(event) = rx.recv().await {
        let body = match serde_json::to_vec(&event) {
            Ok(body) => Bytes::from(body),
            Err(_) => continue,
        };
        let mut backoff = FIRST_BACKOFF;
        let mut delivered = false;
        for attempt in 1..=TRIES {
            match tokio::time::timeout(SEND_TIMEOUT, post(&url, body.clone())).await {
                Ok(Ok(())) => {
                    delivered = true;
                    break;
                }
                Ok(Err(error)) => {
                    tracing::debug!(%url, attempt, %error, "webhook delivery failed");
                }
                Err(_) => tracing::debug!(%url, attempt, "webhook delivery timed out"),
            }
            if attempt < TRIES {
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
        }
        if delivered {
            sent.inc();
        } else {
            failed.inc();
            tracing::warn!(%url, event = event.id, kind = event.kind, "webhook did not accept the event after {TRIES} tries");
        }
    }
}

async fn post(url: &http::Uri, body: Bytes) -> Result<(), String> {
    let authority = url.authority().ok_or("no host")?.as_str();
    let port = url.port_u16().unwrap_or(80);
    let host = url.host().ok_or("no host")?;
    let stream = TcpStream::connect((host.trim_matches(['[', ']']), port))
        .await
        .map_err(|error| error.to_string())?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|error| error.to_string())?;
    let connection = tokio::spawn(connection);
    let path = url.path_and_query().map_or("/", |p| p.as_str());
    let request = Request::post(path)
        .header(header::HOST, authority)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::USER_AGENT, "levee-alert")
        .body(Full::new(body))
        .map_err(|error| error.to_string())?;
    let result = sender.send_request(request).await;
    connection.abort();
    let response = result.map_err(|error| error.to_string())?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(format!("status {}", response.status()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{NewEvent, Severity};

    fn event(kind: &'static str) -> NewEvent {
        NewEvent {
            kind,
            cluster: String::new(),
            endpoint: None,
            from: "ready".into(),
            to: "impaired".into(),
            reason: "test".into(),
            severity: Severity::Error,
        }
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts_instead_of_blocking() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port");
        let alerts = [AlertSettings {
            url: format!("http://{closed}/hook").parse().expect("url"),
            events: Some(vec!["readiness".into()]),
        }];
        let events = EventLog::default();
        let metrics = Metrics::new();
        let tasks = spawn_with_queue(&alerts, &events, &metrics, 2);
        // The sending task has not run yet (current-thread runtime): two
        // events fit, the rest are dropped; filtered-out kinds are not queued.
        for _ in 0..10 {
            events.record(event("readiness"));
            events.record(event("endpoint-health"));
        }
        let (_, _, dropped) = metrics.alert_counters();
        assert_eq!(dropped.get(), 8);
        for task in tasks {
            task.abort();
        }
    }
}
