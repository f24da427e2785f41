//! `levee demo`: the backends exist, switch modes through the admin API, and
//! the gateway in front of them shows each mode.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::Request;
use http_body_util::Full;
use levee_proxy::demo::Demo;
use tokio::time::Instant;

async fn post(client: &TestClient, addr: std::net::SocketAddr, path: &str) -> Answer {
    let request = Request::post(format!("http://{addr}{path}"))
        .body(Full::new(Bytes::new()))
        .expect("request");
    send(client, request).await
}

/// Put every demo backend in `mode` through the admin API.
async fn set_all(client: &TestClient, admin: std::net::SocketAddr, mode: &str) {
    for name in ["b1", "b2", "b3"] {
        let answer = post(client, admin, &format!("/demo/backends/{name}/{mode}")).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        let json: serde_json::Value = serde_json::from_str(&answer.body).expect("JSON");
        assert_eq!(
            json["mode"].as_str().map(|m| m.split(':').next()),
            Some(Some(mode.split(':').next().unwrap_or(mode)))
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_backends_switch_modes_and_the_gateway_shows_it() {
    let demo = Demo::start(LOOPBACK, LOOPBACK).await.expect("demo starts");
    let admin = demo.gateway().admin_address();
    let gateway = demo.gateway().listener_address("demo").expect("listener");
    let client = client();
    assert!(demo.banner().contains(&gateway.to_string()));

    let list = get(&client, admin, "/demo/backends").await;
    let json: serde_json::Value = serde_json::from_str(&list.body).expect("JSON");
    assert_eq!(json.as_array().map(Vec::len), Some(3));
    assert_eq!(json[0]["mode"], "healthy");
    assert_eq!(get(&client, gateway, "/").await.status, 200);
    // The demo's own background client (20 requests/s) is served before the
    // backends fail (on a loaded machine its first request may take a while).
    for _ in 0..100 {
        let traffic = get(&client, admin, "/demo/traffic").await;
        let traffic: serde_json::Value = serde_json::from_str(&traffic.body).expect("JSON");
        if traffic["ok"].as_u64() > Some(0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    set_all(&client, admin, "failing").await;
    assert_eq!(get(&client, gateway, "/").await.status, 503);
    // The demo's own background client (20 requests/s) sees it too.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let traffic = get(&client, admin, "/demo/traffic").await;
    let traffic: serde_json::Value = serde_json::from_str(&traffic.body).expect("JSON");
    assert!(traffic["ok"].as_u64() > Some(0), "{traffic}");
    assert!(traffic["server_errors"].as_u64() > Some(3), "{traffic}");

    set_all(&client, admin, "crashed").await;
    let answer = get(&client, gateway, "/").await;
    assert_eq!(answer.status, 502, "{}", answer.body);
    assert!(answer.body.contains("refused"), "{}", answer.body);

    set_all(&client, admin, "slow:300ms").await;
    let started = Instant::now();
    assert_eq!(get(&client, gateway, "/").await.status, 200);
    assert!(started.elapsed() >= Duration::from_millis(300));

    set_all(&client, admin, "hung").await;
    let answer = get(&client, gateway, "/").await;
    assert_eq!(answer.status, 504, "{}", answer.body);

    set_all(&client, admin, "healthy").await;
    assert_eq!(get(&client, gateway, "/").await.status, 200);

    let dashboard = get(&client, admin, "/").await;
    assert_eq!(dashboard.status, 200);
    assert!(dashboard.body.contains("levee demo"));

    let unknown = post(&client, admin, "/demo/backends/b9/hung").await;
    assert_eq!(unknown.status, 404);
    let bad_mode = post(&client, admin, "/demo/backends/b1/sideways").await;
    assert_eq!(bad_mode.status, 400);
    assert!(
        bad_mode.body.contains("healthy"),
        "error should list valid modes: {}",
        bad_mode.body
    );

    demo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_routes_around_a_broken_backend_and_takes_it_back() {
    let demo = Demo::start(LOOPBACK, LOOPBACK).await.expect("demo starts");
    let admin = demo.gateway().admin_address();
    let gateway = demo.gateway().listener_address("demo").expect("listener");
    let client = client();
    let b2 = demo.backends()[1].addr().to_string();
    for mode in ["crashed", "hung", "failing"] {
        assert_eq!(
            post(&client, admin, &format!("/demo/backends/b2/{mode}"))
                .await
                .status,
            200
        );
        // Two failed checks, one second apart at most, plus the timeout.
        tokio::time::sleep(Duration::from_millis(3000)).await;
        for _ in 0..20 {
            let answer = get(&client, gateway, "/").await;
            assert_eq!(answer.status, 200, "b2 {mode}: {}", answer.body);
        }
        let status: serde_json::Value =
            serde_json::from_str(&get(&client, admin, "/status").await.body).expect("JSON");
        let endpoint = status["clusters"][0]["endpoints"]
            .as_array()
            .and_then(|all| all.iter().find(|e| e["address"] == b2.as_str()))
            .cloned()
            .expect("b2 in status");
        assert!(
            endpoint["state"] == "unhealthy" || endpoint["state"] == "ejected",
            "b2 {mode}: {endpoint}"
        );
        assert_eq!(
            post(&client, admin, "/demo/backends/b2/healthy")
                .await
                .status,
            200
        );
        // Back after `rise` passing checks and the end of any ejection.
        let deadline = Instant::now() + Duration::from_secs(12);
        loop {
            let status: serde_json::Value =
                serde_json::from_str(&get(&client, admin, "/status").await.body).expect("JSON");
            let state = status["clusters"][0]["endpoints"]
                .as_array()
                .and_then(|all| all.iter().find(|e| e["address"] == b2.as_str()))
                .map(|e| e["state"].clone())
                .expect("b2 in status");
            if state == "healthy" || state == "slow-start" {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "b2 did not come back after {mode}: {state}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    demo.shutdown().await;
}
