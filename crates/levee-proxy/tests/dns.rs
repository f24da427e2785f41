//! Endpoints that follow DNS: a name stands for every address it resolves
//! to, traffic and health checks move when the answer changes, and a failed
//! lookup keeps the last addresses. A real resolver (hickory, through
//! `[runtime] dns_servers`) asks a real DNS server on loopback whose answers
//! the test changes; one test goes through the system resolver.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use common::*;
use levee_core::health::HealthCheckParams;
use levee_proxy::config::{
    BalancePolicy, Config, EndpointAddress, HealthCheckKind, HealthSettings, HttpCheckSettings,
};
use levee_testkit::backend::{Backend, Mode};
use levee_testkit::dns::DnsServer;

const NAME: &str = "svc.test";
const TTL: u32 = 1;

fn ip(text: &str) -> IpAddr {
    text.parse().expect("ip")
}

/// Backends named after their address, all on one port, one per loopback
/// address in `ips` (127.0.0.2, 127.0.0.3, ...): what a name resolving to
/// several nodes looks like.
async fn backends_on(ips: &[&str]) -> Vec<Backend> {
    'port: for _ in 0..20 {
        let first = Backend::start(ips[0], SocketAddr::new(ip(ips[0]), 0))
            .await
            .expect("backend");
        let port = first.addr().port();
        let mut all = vec![first];
        for other in &ips[1..] {
            match Backend::start(*other, SocketAddr::new(ip(other), port)).await {
                Ok(backend) => all.push(backend),
                // The port is taken on that address: try another.
                Err(_) => continue 'port,
            }
        }
        return all;
    }
    panic!("no port free on every address of {ips:?}");
}

/// One cluster "app" of the single endpoint `host:port`, checked every
/// 200 ms, looked up on `dns` (the system resolver if `None`).
fn name_config(host: &str, port: u16, dns: Option<SocketAddr>) -> Config {
    let mut config = config(Vec::new(), BalancePolicy::RoundRobin);
    config.clusters[0].endpoints = vec![EndpointAddress::new(host, port)];
    config.clusters[0].slow_start = Duration::ZERO;
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
            1,
            1,
            Duration::from_millis(200),
            Duration::from_millis(100),
            Duration::from_millis(500),
            0.1,
        )
        .expect("params"),
    });
    config.runtime.dns_servers = dns.into_iter().collect();
    config
}

async fn status(client: &TestClient, admin: SocketAddr) -> serde_json::Value {
    serde_json::from_str(&get(client, admin, "/status").await.body).expect("status JSON")
}

/// `(address, name, state)` of every endpoint of the first cluster.
fn endpoints(status: &serde_json::Value) -> Vec<(String, String, String)> {
    status["clusters"][0]["endpoints"]
        .as_array()
        .expect("endpoints")
        .iter()
        .map(|e| {
            let text = |key: &str| e[key].as_str().unwrap_or("").to_owned();
            (text("address"), text("name"), text("state"))
        })
        .collect()
}

/// Assert the endpoints become `expected` within 3 s (checks take a moment).
async fn assert_endpoints(
    client: &TestClient,
    admin: SocketAddr,
    expected: impl AsRef<[(String, String, String)]>,
) {
    let expected = expected.as_ref();
    let mut listed = Vec::new();
    for _ in 0..60 {
        listed = endpoints(&status(client, admin).await);
        if listed == expected {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(listed, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_and_checks_move_when_the_answer_changes() {
    let nodes = backends_on(&["127.0.0.2", "127.0.0.3"]).await;
    let port = nodes[0].addr().port();
    let dns = DnsServer::start("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("dns");
    dns.set(NAME, &[ip("127.0.0.2")], TTL);
    let (gateway, addr) = start(name_config(NAME, port, Some(dns.addr()))).await;
    let admin = gateway.admin_address();
    let client = client();

    assert_eq!(
        get(&client, addr, "/").await.headers["x-backend"],
        "127.0.0.2"
    );
    let named = format!("{NAME}:{port}");
    assert_endpoints(
        &client,
        admin,
        [(
            format!("127.0.0.2:{port}"),
            named.clone(),
            "healthy".to_owned(),
        )],
    )
    .await;
    assert!(nodes[1].requests_received() == 0, "not checked yet");

    // The node moves. With a 1 s TTL levee follows within about 2 s, and
    // no request fails meanwhile: the old node still answers.
    dns.set(NAME, &[ip("127.0.0.3")], TTL);
    let mut moved = false;
    for _ in 0..80 {
        let answer = get(&client, addr, "/").await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        if answer.headers["x-backend"] == "127.0.0.3" {
            moved = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(moved, "traffic follows the new answer within 4 s");

    // Checks moved too: the old node hears nothing more, the new one is
    // checked without any traffic.
    tokio::time::sleep(Duration::from_millis(200)).await;
    nodes[0].reset_counters();
    nodes[1].reset_counters();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(nodes[0].requests_received(), 0, "the old address is left");
    assert!(
        nodes[1].requests_received() >= 2,
        "the new address is checked"
    );
    assert_endpoints(
        &client,
        admin,
        [(
            format!("127.0.0.3:{port}"),
            named.clone(),
            "healthy".to_owned(),
        )],
    )
    .await;
    let events = get(&client, admin, "/events").await.body;
    assert!(
        events.contains(&format!(
            r#""from":"127.0.0.2:{port}","to":"127.0.0.3:{port}""#
        )),
        "{events}"
    );
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_address_is_an_endpoint_and_a_failed_lookup_keeps_them() {
    let nodes = backends_on(&["127.0.0.2", "127.0.0.3"]).await;
    let port = nodes[0].addr().port();
    let dns = DnsServer::start("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("dns");
    dns.set(NAME, &[ip("127.0.0.2"), ip("127.0.0.3")], TTL);
    let (gateway, addr) = start(name_config(NAME, port, Some(dns.addr()))).await;
    let admin = gateway.admin_address();
    let client = client();
    let named = format!("{NAME}:{port}");
    let both = |state: &str| {
        vec![
            (format!("127.0.0.2:{port}"), named.clone(), state.to_owned()),
            (
                format!("127.0.0.3:{port}"),
                named.clone(),
                "healthy".to_owned(),
            ),
        ]
    };
    assert_endpoints(&client, admin, both("healthy")).await;
    for _ in 0..10 {
        assert_eq!(get(&client, addr, "/").await.status, 200);
    }
    assert!(nodes[0].requests_received() > 0 && nodes[1].requests_received() > 0);

    // Each address has its own health.
    nodes[0].set_mode(Mode::Failing).await.expect("mode");
    assert_endpoints(&client, admin, both("unhealthy")).await;
    nodes[0].set_mode(Mode::Healthy).await.expect("mode");

    // The name disappears from DNS: levee keeps both addresses, says so
    // once and counts every failed lookup.
    dns.remove(NAME);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    for _ in 0..10 {
        assert_eq!(get(&client, addr, "/").await.status, 200);
    }
    let listed = endpoints(&status(&client, admin).await);
    assert_eq!(listed.len(), 2, "{listed:?}");
    let events = get(&client, admin, "/events").await.body;
    assert_eq!(events.matches(r#""to":"stale""#).count(), 1, "{events}");
    let status = status(&client, admin).await;
    let name = &status["names"][0];
    assert_eq!(name["name"], named, "{status}");
    assert_eq!(name["state"], "stale", "{status}");
    assert_eq!(
        name["addresses"].as_array().map(Vec::len),
        Some(2),
        "{status}"
    );
    assert!(name["error"].is_string(), "{status}");
    assert_eq!(name["clusters"][0], "app", "{status}");
    let metrics = get(&client, admin, "/metrics").await.body;
    let failures = metrics
        .lines()
        .find(|line| {
            line.starts_with(&format!(
                r#"levee_name_lookup_failures_total{{name="{named}"}}"#
            ))
        })
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|count| count.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(failures >= 1, "{metrics}");
    assert!(
        metrics.contains(&format!(r#"levee_name_addresses{{name="{named}"}} 2"#)),
        "{metrics}"
    );

    // It comes back with one address: the other drains.
    dns.set(NAME, &[ip("127.0.0.3")], TTL);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    nodes[0].reset_counters();
    for _ in 0..10 {
        assert_eq!(get(&client, addr, "/").await.status, 200);
    }
    assert_eq!(nodes[0].requests_received(), 0);
    assert_endpoints(
        &client,
        admin,
        [(
            format!("127.0.0.3:{port}"),
            named.clone(),
            "healthy".to_owned(),
        )],
    )
    .await;
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_the_system_resolver_knows_is_followed_too() {
    let node = Backend::start("local", LOOPBACK).await.expect("backend");
    let port = node.addr().port();
    let (gateway, addr) = start(name_config("localhost", port, None)).await;
    let client = client();
    for _ in 0..5 {
        let answer = get(&client, addr, "/").await;
        assert_eq!(answer.status, 200, "{}", answer.body);
    }
    // localhost may also resolve to ::1, where nothing listens.
    let wanted = (
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        "healthy".to_owned(),
    );
    let mut listed = Vec::new();
    for _ in 0..60 {
        listed = endpoints(&status(&client, gateway.admin_address()).await);
        if listed.contains(&wanted) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(listed.contains(&wanted), "{listed:?}");
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_follows_its_name_to_the_new_address() {
    use levee_probe::{ProbeKind, ProbeTarget};
    use levee_proxy::config::ProbeSettings;

    // The dependency listens on 127.0.0.2 only; its name first points there.
    let dependency = tokio::net::TcpListener::bind("127.0.0.2:0")
        .await
        .expect("bind");
    let port = dependency.local_addr().expect("address").port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = dependency.accept().await {
            drop(stream);
        }
    });
    let backend = Backend::start("b1", LOOPBACK).await.expect("backend");
    let dns = DnsServer::start("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("dns");
    dns.set("db.test", &[ip("127.0.0.2")], TTL);
    let mut config = config(vec![backend.addr()], BalancePolicy::RoundRobin);
    config.runtime.dns_servers = vec![dns.addr()];
    config.readiness.probes = vec![ProbeSettings {
        name: "db".into(),
        target: ProbeTarget {
            kind: ProbeKind::Tcp,
            address: format!("db.test:{port}"),
        },
        required: true,
        params: HealthCheckParams::new(
            1,
            1,
            Duration::from_millis(200),
            Duration::from_millis(200),
            Duration::from_millis(300),
            0.0,
        )
        .expect("params"),
    }];
    let (gateway, _) = start(config).await;
    let admin = gateway.admin_address();
    let client = client();
    let ready = |answer: &Answer| answer.status.as_u16();
    let mut status = 0;
    for _ in 0..40 {
        status = ready(&get(&client, admin, "/ready").await);
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, 200, "the probe passes at 127.0.0.2");

    // The name moves to an address where nothing listens: the probe follows
    // it (and fails), rather than checking the old address forever.
    dns.set("db.test", &[ip("127.0.0.3")], TTL);
    for _ in 0..80 {
        status = ready(&get(&client, admin, "/ready").await);
        if status == 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, 503, "the probe follows the name within 4 s");
    gateway.shutdown().await;
}
