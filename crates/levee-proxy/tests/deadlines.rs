//! Deadlines that shrink: the caller's deadline (here `x-request-timeout-ms`)
//! bounds the request, each attempt is told the time left, and no retry is
//! started that could not finish before the deadline.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::Request;
use http_body_util::Full;
use levee_proxy::config::{BalancePolicy, HedgeSettings};
use levee_testkit::backend::{Backend, Mode};
use tokio::time::Instant;

async fn get_with_deadline(client: &TestClient, web: std::net::SocketAddr, millis: u64) -> Answer {
    let request = Request::get(format!("http://{web}/"))
        .header("x-request-timeout-ms", millis.to_string())
        .body(Full::new(Bytes::new()))
        .expect("request");
    send(client, request).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_that_cannot_finish_before_the_deadline_is_not_started() {
    let backends = backends(2).await;
    for backend in &backends {
        backend
            .set_mode(Mode::Slow(Duration::from_millis(120)))
            .await
            .expect("mode");
    }
    let mut config = config(
        backends.iter().map(|b| b.addr()).collect(),
        BalancePolicy::RoundRobin,
    );
    let cluster = &mut config.clusters[0];
    cluster.outlier = None;
    cluster.deadline_header = Some(http::HeaderName::from_static("x-request-timeout-ms"));
    cluster.retry.per_try_timeout = Duration::from_millis(150);
    // Hedging keeps the latencies (the p50); a hedge itself never comes
    // within these deadlines.
    cluster.retry.hedge = Some(HedgeSettings {
        floor: Duration::from_secs(2),
        ceiling: Duration::from_secs(2),
    });
    let (gateway, web) = start(config).await;
    let client = client();
    // The cluster learns its latency: about 120 ms.
    for _ in 0..30 {
        assert_eq!(get_with_deadline(&client, web, 5_000).await.status, 200);
    }
    let told = told_ms(&backends[1]).expect("the attempt was told its time left");
    assert!((4_000..=5_000).contains(&told), "told {told} ms of 5000");

    backends[0].set_mode(Mode::Hung).await.expect("mode");
    // 250 ms: after a 150 ms per-try timeout on the hung node, about 100 ms
    // are left, less than the cluster's p50: not retried, and said why.
    let mut refused = 0;
    for _ in 0..4 {
        let sent = Instant::now();
        let answer = get_with_deadline(&client, web, 250).await;
        if answer.status == 504 {
            assert!(
                answer
                    .body
                    .contains("ms left before the deadline, less than the cluster's p50"),
                "{}",
                answer.body
            );
            assert!(
                sent.elapsed() < Duration::from_millis(400),
                "{:?}",
                sent.elapsed()
            );
            refused += 1;
        } else {
            assert_eq!(answer.status, 200, "{}", answer.body);
        }
    }
    assert!(refused >= 1, "some requests went to the hung node first");
    // 600 ms leaves time for a second attempt: retried, answered, and the
    // retry was told what was left of the 600 ms.
    for _ in 0..4 {
        let answer = get_with_deadline(&client, web, 600).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
    }
    let told = told_ms(&backends[1]).expect("told");
    assert!(told <= 600, "told {told} ms of 600");
    backends[0].set_mode(Mode::Healthy).await.expect("mode");
    gateway.shutdown().await;
}

/// The time left (ms) the last request `backend` received was told (in
/// one field: levee's value replaces the client's).
fn told_ms(backend: &Backend) -> Option<u64> {
    let headers = backend.last_request_headers()?;
    let fields = headers.get_all("x-request-timeout-ms").iter().count();
    assert!(
        fields <= 1,
        "{fields} x-request-timeout-ms fields: {headers:?}"
    );
    headers
        .get("x-request-timeout-ms")?
        .to_str()
        .ok()?
        .parse()
        .ok()
}
