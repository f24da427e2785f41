//! Priority classes under overload: a node of known capacity (8 workers,
//! 20 ms each: 400 requests/s) flooded by sheddable traffic keeps serving
//! the critical requests that come with it.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::Request;
use http_body_util::{BodyExt, Full};
use levee_proxy::config::Config;
use levee_testkit::backend::Mode;
use parking_lot::Mutex;
use tokio::time::Instant;

fn config(backend: SocketAddr) -> Config {
    let source = format!(
        r#"
[admin]
listen = "127.0.0.1:0"

[[listener]]
name = "web"
listen = "127.0.0.1:0"
cluster = "app"

# Clients may name their class, up to critical on this route.
[[listener.route]]
name = "all"
path_prefix = "/"
cluster = "app"
priority = "critical"

[[cluster]]
name = "app"
endpoints = ["{backend}"]
retry = {{ max_attempts = 1 }}
outlier = {{ enabled = false }}

[cluster.admission]
max_concurrency = 8
max_queue = 16
priority_header = "x-priority"
"#
    );
    Config::from_toml_str(&source, "levee.toml").expect("valid config")
}

/// What one class's clients saw: answered, shed, latencies of the answered.
#[derive(Default)]
struct Seen {
    ok: u64,
    shed: u64,
    latencies: Vec<Duration>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn critical_requests_are_served_through_a_sheddable_flood() {
    let backends = backends(1).await;
    let backend = &backends[0];
    backend.set_capacity(Some(8));
    backend
        .set_mode(Mode::Slow(Duration::from_millis(20)))
        .await
        .expect("mode");
    let (gateway, web) = start(config(backend.addr())).await;

    let stop = Arc::new(AtomicBool::new(false));
    let critical = Arc::new(Mutex::new(Seen::default()));
    let sheddable = Arc::new(Mutex::new(Seen::default()));
    let mut clients = Vec::new();
    for (count, class, seen) in [(4, "critical", &critical), (40, "sheddable", &sheddable)] {
        for _ in 0..count {
            let (stop, seen) = (Arc::clone(&stop), Arc::clone(seen));
            clients.push(tokio::spawn(async move {
                let client = common::client();
                let mut sent = 0;
                while !stop.load(Ordering::Relaxed) && sent < 10_000 {
                    sent += 1;
                    let request = Request::get(format!("http://{web}/"))
                        .header("x-priority", class)
                        .body(Full::new(Bytes::new()))
                        .expect("request");
                    let started = Instant::now();
                    let response = tokio::time::timeout(TEST_TIMEOUT, client.request(request))
                        .await
                        .expect("answered in time")
                        .expect("response");
                    let status = response.status();
                    let _ = response.into_body().collect().await;
                    let mut seen = seen.lock();
                    if status == 200 {
                        seen.ok += 1;
                        seen.latencies.push(started.elapsed());
                    } else {
                        assert_eq!(status, 503, "shed, not failed");
                        seen.shed += 1;
                    }
                }
            }));
        }
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.expect("client");
    }
    let p99 = |seen: &mut Seen| {
        seen.latencies.sort();
        seen.latencies
            .get(seen.latencies.len() * 99 / 100)
            .copied()
            .unwrap_or_default()
    };
    let mut critical = std::mem::take(&mut *critical.lock());
    let sheddable = std::mem::take(&mut *sheddable.lock());
    let critical_p99 = p99(&mut critical);
    println!(
        "critical: {} ok, {} shed, p99 {:?}; sheddable: {} ok, {} shed",
        critical.ok, critical.shed, critical_p99, sheddable.ok, sheddable.shed
    );
    let total = critical.ok + critical.shed;
    assert!(critical.ok >= 100, "critical traffic ran: {total}");
    assert!(
        critical.ok * 100 >= total * 99,
        "critical success {} of {total}",
        critical.ok
    );
    assert!(
        sheddable.shed > critical.shed,
        "the flood was shed, not the critical traffic"
    );
    assert!(
        critical_p99 < Duration::from_millis(200),
        "critical p99 {critical_p99:?}"
    );
    let status = get(&client(), gateway.admin_address(), "/metrics")
        .await
        .body;
    assert!(
        status.contains(
            "levee_admission_shed_total{cluster=\"app\",reason=\"queue_full\",class=\"sheddable\"}"
        ),
        "{status}"
    );
    gateway.shutdown().await;
}
