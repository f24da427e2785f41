//! Routes: requests go to the cluster of the first route that matches, by
//! host, wildcard host, path, method and header, with the route's own
//! timeout, retries and cache; what no route takes goes to the listener's
//! cluster or gets 404.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::{Method, Request};
use http_body_util::Full;
use levee_proxy::config::{CacheSettings, ClusterSettings, Config, RouteRetry, RouteSettings};
use levee_proxy::route::{HeaderMatch, HostPattern, PathPattern, RouteMatch};
use levee_testkit::backend::{Backend, Mode};

fn cluster(name: &str, backends: &[Backend]) -> ClusterSettings {
    let mut cluster =
        ClusterSettings::new(name, backends.iter().map(|b| endpoint(b.addr())).collect());
    cluster.connect_timeout = Duration::from_millis(500);
    cluster.request_timeout = Duration::from_secs(5);
    cluster
}

fn route(name: &str, cluster: &str, matches: RouteMatch) -> RouteSettings {
    RouteSettings {
        name: name.to_owned(),
        matches,
        cluster: cluster.to_owned(),
        request_timeout: None,
        retry: RouteRetry::default(),
        cache: None,
        priority: None,
    }
}

/// Which backend answered (`x-backend`), or the status if levee did.
async fn served_by(client: &TestClient, request: Request<Full<Bytes>>) -> String {
    let answer = send(client, request).await;
    match answer.headers.get("x-backend") {
        Some(name) => name.to_str().unwrap_or("?").to_owned(),
        None => format!("{} {}", answer.status.as_u16(), answer.body),
    }
}

fn request(
    method: Method,
    addr: std::net::SocketAddr,
    host: &str,
    path: &str,
) -> Request<Full<Bytes>> {
    Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"))
        .header("host", host)
        .body(Full::new(Bytes::new()))
        .expect("request")
}

#[tokio::test]
async fn requests_go_to_the_first_route_that_matches() {
    let api = vec![Backend::start("api", LOOPBACK).await.expect("backend")];
    let wild = vec![Backend::start("wild", LOOPBACK).await.expect("backend")];
    let canary = vec![Backend::start("canary", LOOPBACK).await.expect("backend")];
    let writes = vec![Backend::start("writes", LOOPBACK).await.expect("backend")];
    let app = vec![Backend::start("app", LOOPBACK).await.expect("backend")];
    let mut config = config(
        vec![app[0].addr()],
        levee_proxy::config::BalancePolicy::RoundRobin,
    );
    config.clusters = vec![
        cluster("app", &app),
        cluster("api", &api),
        cluster("wild", &wild),
        cluster("canary", &canary),
        cluster("writes", &writes),
    ];
    config.listeners[0].routes = vec![
        route(
            "canary",
            "canary",
            RouteMatch {
                header: Some(HeaderMatch {
                    name: "x-canary".parse().expect("name"),
                    value: Some("1".parse().expect("value")),
                }),
                ..RouteMatch::default()
            },
        ),
        route(
            "api",
            "api",
            RouteMatch {
                hosts: vec![HostPattern::parse("api.example.com").expect("host")],
                path: Some(PathPattern::Prefix("/v1".into())),
                ..RouteMatch::default()
            },
        ),
        route(
            "wild",
            "wild",
            RouteMatch {
                hosts: vec![HostPattern::parse("*.example.com").expect("host")],
                ..RouteMatch::default()
            },
        ),
        route(
            "writes",
            "writes",
            RouteMatch {
                methods: vec![Method::POST, Method::PUT],
                ..RouteMatch::default()
            },
        ),
    ];
    let (gateway, addr) = start(config).await;
    let client = client();
    let get = |host: &str, path: &str| request(Method::GET, addr, host, path);
    assert_eq!(
        served_by(&client, get("api.example.com", "/v1/users")).await,
        "api"
    );
    assert_eq!(
        served_by(&client, get("API.Example.com:8080", "/v1")).await,
        "api"
    );
    // Not at a segment boundary: the next route, by host.
    assert_eq!(
        served_by(&client, get("api.example.com", "/v10")).await,
        "wild"
    );
    assert_eq!(
        served_by(&client, get("a.b.example.com", "/")).await,
        "wild"
    );
    assert_eq!(served_by(&client, get("example.com", "/")).await, "app");
    assert_eq!(
        served_by(&client, request(Method::POST, addr, "other", "/x")).await,
        "writes"
    );
    let mut flagged = get("api.example.com", "/v1/users");
    flagged
        .headers_mut()
        .insert("x-canary", "1".parse().expect("value"));
    assert_eq!(served_by(&client, flagged).await, "canary");
    let mut other_flag = get("other", "/");
    other_flag
        .headers_mut()
        .insert("x-canary", "0".parse().expect("value"));
    assert_eq!(served_by(&client, other_flag).await, "app");
    gateway.shutdown().await;
}

#[tokio::test]
async fn without_a_default_cluster_unrouted_requests_get_404_saying_why() {
    let api = vec![Backend::start("api", LOOPBACK).await.expect("backend")];
    let mut config = config(
        vec![api[0].addr()],
        levee_proxy::config::BalancePolicy::RoundRobin,
    );
    config.clusters = vec![cluster("api", &api)];
    config.listeners[0].cluster = None;
    config.listeners[0].routes = vec![route(
        "api",
        "api",
        RouteMatch {
            path: Some(PathPattern::Exact("/only".into())),
            ..RouteMatch::default()
        },
    )];
    let (gateway, addr) = start(config).await;
    let client = client();
    assert_eq!(
        served_by(&client, request(Method::GET, addr, "x", "/only")).await,
        "api"
    );
    let answer = get(&client, addr, "/elsewhere").await;
    assert_eq!(answer.status, 404);
    assert!(
        answer
            .body
            .contains(r#""error":"no route for this request""#),
        "{}",
        answer.body
    );
    assert!(
        answer.body.contains("listener \\\"web\\\""),
        "{}",
        answer.body
    );
    gateway.shutdown().await;
}

#[tokio::test]
async fn a_route_replaces_its_clusters_timeout_retries_and_cache() {
    let nodes = backends(2).await;
    for node in &nodes {
        node.set_mode(Mode::Failing).await.expect("failing");
    }
    let mut app = cluster("app", &nodes);
    app.cache = Some(CacheSettings::default());
    let mut config: Config = config(vec![], levee_proxy::config::BalancePolicy::RoundRobin);
    config.clusters = vec![app];
    let mut once = route(
        "once",
        "app",
        RouteMatch {
            path: Some(PathPattern::Prefix("/once".into())),
            ..RouteMatch::default()
        },
    );
    once.retry.max_attempts = Some(levee_core::retry::RetryPolicy::new(1).expect("policy"));
    let mut quick = route(
        "quick",
        "app",
        RouteMatch {
            path: Some(PathPattern::Prefix("/quick".into())),
            ..RouteMatch::default()
        },
    );
    quick.request_timeout = Some(Duration::from_millis(200));
    quick.cache = Some(false);
    config.listeners[0].routes = vec![once, quick];
    let (gateway, addr) = start(config).await;
    let client = client();
    // The cluster retries a 503 on the other node; the route does not.
    let default = get(&client, addr, "/x").await;
    assert_eq!(
        default.headers["x-levee-attempts"], "2",
        "{:?}",
        default.headers
    );
    let once = get(&client, addr, "/once").await;
    assert_eq!(once.headers["x-levee-attempts"], "1", "{:?}", once.headers);
    // The cluster's cache marks its answers; this route bypasses it.
    assert!(default.headers.contains_key("x-levee-cache"));
    for node in &nodes {
        node.set_mode(Mode::Slow(Duration::from_secs(1)))
            .await
            .expect("slow");
    }
    let started = tokio::time::Instant::now();
    let quick = get(&client, addr, "/quick").await;
    assert_eq!(quick.status, 504, "{}", quick.body);
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    assert!(!quick.headers.contains_key("x-levee-cache"));
    for node in &nodes {
        node.set_mode(Mode::Healthy).await.expect("heal");
    }
    gateway.shutdown().await;
}
