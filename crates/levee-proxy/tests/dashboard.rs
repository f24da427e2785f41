//! The dashboard every levee serves on its admin listener, in a real
//! browser: it loads, its charts fill from the live stream, and when a
//! backend fails the endpoint's state and reason change on the page, as
//! /status says them. A failed check keeps a screenshot in
//! `target/test-artifacts/`.

#[path = "common/browser.rs"]
mod browser;
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use browser::Browser;
use common::*;
use levee_core::HealthCheckParams;
use levee_core::admission::AdmissionParams;
use levee_core::breaker::BreakerParams;
use levee_proxy::config::{
    AdmissionSettings, BalancePolicy, HealthCheckKind, HealthSettings, HttpCheckSettings,
};
use levee_testkit::backend::Mode;

/// Wait for `expression` in the page; on failure keep a screenshot and fail
/// naming `what`.
async fn expect(browser: &mut Browser, expression: &str, what: &str) {
    if browser.wait_for(expression, Duration::from_secs(15)).await {
        return;
    }
    let shot = browser
        .screenshot(&format!("dashboard-{}", what.replace(' ', "-")))
        .await;
    let page = browser.eval("document.body.innerText.slice(0, 3000)").await;
    panic!(
        "dashboard never showed {what}; screenshot: {}\n{page}",
        shot.display()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_endpoints_breaker_and_charts_and_follows_a_failure() {
    let backends = backends(2).await;
    let addrs: Vec<_> = backends.iter().map(|b| b.addr()).collect();
    let mut config = config(addrs.clone(), BalancePolicy::RoundRobin);
    config.clusters[0].health = Some(HealthSettings {
        check: HealthCheckKind::Http(HttpCheckSettings {
            method: http::Method::GET,
            path: "/healthz".into(),
            host: None,
            expect_status: vec![200],
            expect_body: None,
            draining_status: vec![503],
        }),
        params: HealthCheckParams::new(
            2,
            2,
            Duration::from_millis(200),
            Duration::from_millis(100),
            Duration::from_millis(150),
            0.1,
        )
        .expect("params"),
    });
    config.clusters[0].breaker = Some(BreakerParams::default());
    config.clusters[0].admission = Some(AdmissionSettings {
        params: AdmissionParams::builder()
            .max_concurrency(64)
            .build()
            .expect("params"),
        adaptive: None,
        priority_header: None,
    });
    let (gateway, addr) = start(config).await;
    let admin = gateway.admin_address();

    // Steady traffic for the charts, stopped at the end of the test.
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = {
        let stop = Arc::clone(&stop);
        tokio::spawn(async move {
            let client = client();
            for _ in 0..2_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let _ = get(&client, addr, "/").await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    let mut browser = Browser::start("dashboard").await;
    browser.open(&format!("http://{admin}/")).await;
    let cluster = r#"document.querySelector('section.cluster[data-cluster="app"]')"#;
    let state_of = |address: &str| {
        format!(
            r#"(document.querySelector('tr[data-endpoint="{address}"] td.state')||{{}}).textContent"#
        )
    };
    expect(&mut browser, &format!("{cluster} !== null"), "the cluster").await;
    for address in &addrs {
        expect(
            &mut browser,
            &format!("{} === 'healthy'", state_of(&address.to_string())),
            "healthy endpoints",
        )
        .await;
    }
    expect(
        &mut browser,
        "document.getElementById('readiness-state').textContent === 'ready'",
        "readiness",
    )
    .await;
    expect(
        &mut browser,
        &format!("{cluster}.querySelector('.breaker-state').textContent === 'closed'"),
        "the breaker closed",
    )
    .await;
    // The requests/s chart has points, and its latest value is traffic.
    expect(
        &mut browser,
        &format!(
            r#"(() => {{ const line = {cluster}.querySelector('svg[data-chart="rps"] polyline');
                const points = line ? line.getAttribute('points').trim().split(' ').filter(Boolean) : [];
                const latest = {cluster}.querySelector('.latest[data-chart="rps"]').textContent;
                return points.length >= 2 && parseFloat(latest.replace('req/s', '')) > 0; }})()"#
        ),
        "a requests-per-second chart",
    )
    .await;
    expect(
        &mut browser,
        &format!(
            r#"{cluster}.querySelectorAll('svg[data-chart="latency"] polyline')[1].getAttribute('points').length > 0"#
        ),
        "a p99 line",
    )
    .await;

    // A backend crashes: its row says unhealthy, and why now.
    backends[1].set_mode(Mode::Crashed).await.expect("crash");
    let crashed = addrs[1].to_string();
    expect(
        &mut browser,
        &format!("{} === 'unhealthy'", state_of(&crashed)),
        "the crashed endpoint unhealthy",
    )
    .await;
    expect(
        &mut browser,
        &format!(
            r#"(document.querySelector('tr[data-endpoint="{crashed}"] td.reason')||{{}}).textContent.startsWith('latest check:')"#
        ),
        "the crashed endpoint's reason",
    )
    .await;
    // The event timeline has the transition, in the API's words.
    expect(
        &mut browser,
        &format!(
            r#"[...document.querySelectorAll('#events tbody tr')].some(row => row.textContent.includes('{crashed}') && row.textContent.includes('unhealthy'))"#
        ),
        "the health event",
    )
    .await;
    // The page agrees with /status.
    let status: serde_json::Value =
        serde_json::from_str(&get(&client(), admin, "/status").await.body).expect("status");
    let listed = browser
        .eval("document.querySelectorAll('section.cluster tr[data-endpoint]').length")
        .await;
    assert_eq!(
        listed,
        serde_json::json!(
            status["clusters"][0]["endpoints"]
                .as_array()
                .map_or(0, Vec::len)
        )
    );

    // Kept for a look at what the page showed (not a check).
    browser.screenshot("dashboard-after-a-crash").await;
    stop.store(true, Ordering::Relaxed);
    let _ = traffic.await;
    drop(browser);
    backends[1].set_mode(Mode::Healthy).await.expect("heal");
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_sends_history_then_an_update_every_second() {
    let backends = backends(1).await;
    let (gateway, _addr) = start(config(vec![backends[0].addr()], BalancePolicy::RoundRobin)).await;
    let admin = gateway.admin_address();
    let page = get(&client(), admin, "/").await;
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("/dashboard/stream"),
        "the page reads the stream"
    );
    assert!(
        !page.body.contains("https://") && !page.body.contains("http://cdn"),
        "no CDN"
    );
    // Read the raw stream for a little over two seconds.
    let mut stream = tokio::net::TcpStream::connect(admin)
        .await
        .expect("connect");
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream
        .write_all(format!("GET /dashboard/stream HTTP/1.1\r\nHost: {admin}\r\n\r\n").as_bytes())
        .await
        .expect("request");
    let mut text = Vec::new();
    let _ = tokio::time::timeout(Duration::from_millis(2300), async {
        let mut buffer = [0u8; 8192];
        while let Ok(n) = stream.read(&mut buffer).await {
            if n == 0 {
                break;
            }
            text.extend_from_slice(&buffer[..n]);
        }
    })
    .await;
    let text = String::from_utf8_lossy(&text);
    assert!(text.contains("content-type: text/event-stream"), "{text}");
    assert_eq!(text.matches("event: history").count(), 1, "{text}");
    let updates = text.matches("event: update").count();
    assert!(
        (2..=3).contains(&updates),
        "{updates} updates in 2.3 s: {text}"
    );
    // Shutdown ends the stream instead of waiting for it.
    let started = tokio::time::Instant::now();
    gateway.shutdown().await;
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
}
