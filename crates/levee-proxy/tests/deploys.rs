//! Deploys without errors: the endpoints of a cluster restart one at a
//! time, each stopping as a server does on a graceful shutdown (listener
//! closed, idle keep-alive connections closed, requests in flight
//! finished), under steady POST traffic. Clients see no error, and every
//! POST that got a 200 was delivered exactly once.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::Request;
use http_body_util::{BodyExt, Full};
use levee_proxy::config::BalancePolicy;
use levee_testkit::backend::Mode;

/// Clients sending POSTs all the time.
const CLIENTS: usize = 30;
/// How long a restarted endpoint stays down: its restart takes a second.
const DOWN_FOR: Duration = Duration::from_secs(1);
/// After an endpoint is back, before the next one stops: its checks pass
/// (rise 2 at 100 ms) and it takes traffic again.
const SETTLE: Duration = Duration::from_millis(1500);

/// What the clients saw and the backends received.
struct Deploy {
    ok: u64,
    errors: u64,
    delivered: u64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_under_post_load_costs_no_error_and_no_duplicate() {
    let deploy = rolling_restart(true).await;
    println!(
        "rolling restart, retry.idle_close = true: {} POSTs answered 200, {} errors, {} delivered",
        deploy.ok, deploy.errors, deploy.delivered
    );
    assert!(deploy.ok > 1_000, "the load ran: {} answered", deploy.ok);
    assert_eq!(
        deploy.errors, 0,
        "no client error during the rolling restart"
    );
    assert_eq!(
        deploy.delivered, deploy.ok,
        "every POST answered 200 was delivered exactly once (none twice, none lost)"
    );
}

/// Without `idle_close`, levee retries only what the endpoint provably never
/// received: a POST the endpoint read and discarded is a 502, never a
/// second delivery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_idle_close_a_rolling_restart_never_delivers_a_post_twice() {
    let deploy = rolling_restart(false).await;
    println!(
        "rolling restart, retry.idle_close = false: {} POSTs answered 200, {} errors, {} delivered",
        deploy.ok, deploy.errors, deploy.delivered
    );
    assert!(deploy.ok > 1_000, "the load ran: {} answered", deploy.ok);
    assert_eq!(
        deploy.delivered, deploy.ok,
        "every POST answered 200 was delivered exactly once"
    );
}

async fn rolling_restart(idle_close: bool) -> Deploy {
    let backends = backends(3).await;
    let mut config = config(
        backends.iter().map(|b| b.addr()).collect(),
        BalancePolicy::RoundRobin,
    );
    let cluster = &mut config.clusters[0];
    cluster.slow_start = Duration::from_secs(1);
    cluster.retry.idle_close = idle_close;
    cluster.health = Some(http_health(
        Duration::from_millis(100),
        Duration::from_millis(50),
        Duration::from_millis(200),
        0.1,
    ));
    let (gateway, addr) = start(config).await;

    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for client_index in 0..CLIENTS {
        let (stop, ok, errors) = (Arc::clone(&stop), Arc::clone(&ok), Arc::clone(&errors));
        clients.push(tokio::spawn(async move {
            let client = client();
            let mut sent = 0u64;
            // Bounded: the loop ends by itself even if the flag never turns.
            while !stop.load(Ordering::Relaxed) && sent < 200_000 {
                sent += 1;
                let request = Request::post(format!("http://{addr}/count"))
                    .body(Full::new(Bytes::from(format!(
                        "order {client_index}-{sent}"
                    ))))
                    .expect("request");
                let answer = tokio::time::timeout(TEST_TIMEOUT, client.request(request)).await;
                let (status, body) = match answer {
                    Ok(Ok(response)) => {
                        let status = response.status();
                        let body = response.into_body().collect().await;
                        let body = body.map(|body| body.to_bytes()).unwrap_or_default();
                        (Some(status), body)
                    }
                    _ => (None, Bytes::new()),
                };
                match status {
                    Some(status) if status == 200 => ok.fetch_add(1, Ordering::Relaxed),
                    other => {
                        if errors.load(Ordering::Relaxed) < 5 {
                            eprintln!("client {client_index}: {other:?} {body:?}");
                        }
                        errors.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        }));
    }

    tokio::time::sleep(Duration::from_millis(500)).await;
    for backend in &backends {
        backend.stop_gracefully().await;
        tokio::time::sleep(DOWN_FOR).await;
        backend.set_mode(Mode::Healthy).await.expect("restarts");
        tokio::time::sleep(SETTLE).await;
    }
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.expect("client task");
    }

    let deploy = Deploy {
        ok: ok.load(Ordering::Relaxed),
        errors: errors.load(Ordering::Relaxed),
        delivered: backends.iter().map(|b| b.writes_received()).sum(),
    };
    gateway.shutdown().await;
    deploy
}

async fn status_of(client: &TestClient, admin: std::net::SocketAddr) -> serde_json::Value {
    let answer = get(client, admin, "/status").await;
    serde_json::from_str(&answer.body).expect("status JSON")
}

/// A node that refuses a connection leaves rotation at once (not after
/// `fall` failed checks, here 2 s away), is checked at once, and comes back
/// when a check passes; one that answers its check with 503 leaves at the
/// first answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_says_it_is_leaving_is_out_at_once_and_back_when_a_check_passes() {
    let backends = backends(2).await;
    let mut config = config(
        backends.iter().map(|b| b.addr()).collect(),
        BalancePolicy::RoundRobin,
    );
    let cluster = &mut config.clusters[0];
    cluster.slow_start = Duration::ZERO;
    cluster.outlier = None;
    cluster.health = Some(http_health(
        Duration::from_secs(1),
        Duration::from_secs(1),
        Duration::from_millis(200),
        0.0,
    ));
    let (gateway, web) = start(config).await;
    let admin = gateway.admin_address();
    let client = client();
    // Both healthy first.
    let give_up = tokio::time::Instant::now() + Duration::from_secs(5);
    while status_of(&client, admin).await["clusters"][0]["endpoints"][0]["state"] != "healthy" {
        assert!(tokio::time::Instant::now() < give_up, "healthy at start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    backends[0].stop_gracefully().await;
    let stopped = tokio::time::Instant::now();
    // Every request is answered (a refused one is retried elsewhere), and
    // after the first refusal b1 gets no more attempts.
    for _ in 0..20 {
        assert_eq!(get(&client, web, "/").await.status, 200);
    }
    let status = status_of(&client, admin).await;
    let node = &status["clusters"][0]["endpoints"][0];
    assert_eq!(node["state"], "going-away", "{status:#}");
    assert!(
        node["reason"]
            .as_str()
            .is_some_and(|r| r.contains("refused a connection")),
        "{node:#}"
    );
    assert!(
        stopped.elapsed() < Duration::from_secs(1),
        "before a single periodic check"
    );

    backends[0].set_mode(Mode::Healthy).await.expect("restarts");
    let give_up = tokio::time::Instant::now() + Duration::from_secs(5);
    while status_of(&client, admin).await["clusters"][0]["endpoints"][0]["state"] != "healthy" {
        assert!(
            tokio::time::Instant::now() < give_up,
            "back after a passing check"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let before = backends[0].requests_received();
    for _ in 0..20 {
        assert_eq!(get(&client, web, "/").await.status, 200);
    }
    assert!(
        backends[0].requests_received() >= before + 5,
        "b1 takes traffic again"
    );

    // A 503 to its health check: out at the first answer.
    backends[1].set_mode(Mode::Failing).await.expect("mode");
    let give_up = tokio::time::Instant::now() + Duration::from_millis(1_600);
    loop {
        let status = status_of(&client, admin).await;
        if status["clusters"][0]["endpoints"][1]["state"] == "going-away" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < give_up,
            "out at the first 503: {status:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let events = get(&client, admin, "/events").await.body;
    assert!(
        events.contains("endpoint-going-away") && events.contains("(draining)"),
        "{events}"
    );
    gateway.shutdown().await;
}
