//! Endpoint names that do not resolve: levee starts, says so, keeps the
//! endpoint out of rotation (even in panic mode) and out of readiness, and a
//! request that has nowhere else to go is told why.

mod common;

use std::time::Duration;

use common::*;
use levee_proxy::config::{BalancePolicy, EndpointAddress};

/// Reserved never to resolve (RFC 6761).
const NOWHERE: &str = "no-such-host.invalid";

fn nowhere() -> EndpointAddress {
    EndpointAddress::new(NOWHERE, 80)
}

async fn status(client: &TestClient, admin: std::net::SocketAddr) -> serde_json::Value {
    serde_json::from_str(&get(client, admin, "/status").await.body).expect("status JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unresolvable_endpoint_is_out_of_rotation_and_of_readiness() {
    let backends = backends(1).await;
    let mut config = config(vec![backends[0].addr()], BalancePolicy::RoundRobin);
    config.clusters[0].endpoints.push(nowhere());
    config.readiness.min_healthy = vec![("app".to_owned(), 2)];
    let (gateway, addr) = start(config).await;
    let admin = gateway.admin_address();
    let client = client();

    let status = status(&client, admin).await;
    let endpoint = &status["clusters"][0]["endpoints"][1];
    assert_eq!(endpoint["address"], format!("{NOWHERE}:80"));
    assert_eq!(endpoint["state"], "unresolved", "{endpoint}");
    assert!(
        endpoint["reason"]
            .as_str()
            .unwrap_or("")
            .starts_with("the name does not resolve: "),
        "{endpoint}"
    );
    assert_eq!(status["clusters"][0]["routable_endpoints"], 1, "{status}");

    // Round robin would send every other request to it.
    for _ in 0..20 {
        let answer = get(&client, addr, "/").await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert_eq!(answer.headers["x-levee-attempts"], "1");
    }
    assert_eq!(backends[0].requests_received(), 20);

    let ready = get(&client, admin, "/ready").await;
    assert_eq!(ready.status, 503, "{}", ready.body);
    assert!(
        ready.body.contains("1 of 2 endpoints available, need 2")
            && ready.body.contains(&format!("{NOWHERE}:80 unresolved")),
        "{}",
        ready.body
    );

    let events = get(&client, admin, "/events").await.body;
    assert!(
        events.contains("endpoint-resolution") && events.contains("\"to\":\"unresolved\""),
        "{events}"
    );
    let metrics = get(&client, admin, "/metrics").await.body;
    assert!(
        metrics.contains(&format!(
            r#"levee_endpoint_transitions_total{{cluster="app",endpoint="{NOWHERE}:80",state="unresolved"}} 1"#
        )),
        "{metrics}"
    );
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_of_only_an_unresolvable_endpoint_says_it_does_not_resolve() {
    let mut config = config(Vec::new(), BalancePolicy::RoundRobin);
    config.clusters[0].endpoints = vec![nowhere()];
    config.clusters[0].connect_timeout = Duration::from_secs(1);
    let (gateway, addr) = start(config).await;
    let client = client();
    let answer = get(&client, addr, "/").await;
    assert_eq!(answer.status, 502, "{}", answer.body);
    let json: serde_json::Value = serde_json::from_str(&answer.body).expect("JSON");
    assert_eq!(json["cluster"], "app", "{json}");
    assert_eq!(
        json["reason"],
        format!("{NOWHERE}:80 does not resolve"),
        "{json}"
    );
    gateway.shutdown().await;
}
