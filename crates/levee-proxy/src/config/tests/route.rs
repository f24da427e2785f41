//! `[[listener.route]]`: read, checked, and warned about.

use super::*;
use crate::route::{HostPattern, PathPattern};

const CLUSTERS: &str = r#"
[[cluster]]
name = "app"
endpoints = ["127.0.0.1:8000"]

[[cluster]]
name = "api"
endpoints = ["127.0.0.1:9000"]
"#;

fn with_routes(listener: &str) -> String {
    format!("[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:8080\"\n{listener}\n{CLUSTERS}")
}

fn errors(source: &str) -> Vec<String> {
    match Config::from_toml_str(source, "levee.toml") {
        Ok(_) => Vec::new(),
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn routes_are_read_with_their_conditions_and_replacements() {
    let source = with_routes(
        r#"cluster = "app"

[[listener.route]]
host = ["API.example.com", "*.example.org"]
path_prefix = "/v1"
methods = ["GET"]
header = { name = "X-Canary" }
cluster = "api"
request_timeout = "2s"
retry = { max_attempts = 1, hedge = "off", idempotent = true, per_try_timeout = "1s" }
cache = false

[[listener.route]]
name = "exact"
path = "/healthz"
cluster = "app"
"#,
    );
    let config = Config::from_toml_str(&source, "levee.toml").expect("valid");
    let web = &config.listeners[0];
    assert_eq!(web.cluster.as_deref(), Some("app"));
    let [api, exact] = &web.routes[..] else {
        panic!("two routes: {:?}", web.routes);
    };
    assert_eq!(api.name, "route-1");
    assert_eq!(
        api.matches.hosts,
        [
            HostPattern::Exact("api.example.com".into()),
            HostPattern::Subdomains(".example.org".into())
        ]
    );
    assert_eq!(api.matches.path, Some(PathPattern::Prefix("/v1".into())));
    assert_eq!(api.matches.methods, [Method::GET]);
    assert_eq!(
        api.matches.header.as_ref().map(|h| h.name.as_str()),
        Some("x-canary")
    );
    assert_eq!(api.request_timeout, Some(2 * SECOND));
    assert_eq!(api.retry.max_attempts.map(|p| p.max_attempts()), Some(1));
    assert_eq!(api.retry.hedge, Some(false));
    assert_eq!(api.retry.idempotent, Some(true));
    assert_eq!(api.retry.per_try_timeout, Some(SECOND));
    assert_eq!(api.cache, Some(false));
    assert_eq!(exact.name, "exact");
    assert_eq!(
        exact.matches.path,
        Some(PathPattern::Exact("/healthz".into()))
    );
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
    // What a route leaves alone stays the cluster's.
    let cluster = RetrySettings::default();
    let applied = api.retry.apply(&cluster);
    assert_eq!(applied.policy.max_attempts(), 1);
    assert_eq!(applied.hedge, None);
    assert_eq!(applied.budget, cluster.budget);
}

#[test]
fn a_listener_with_routes_needs_no_cluster_one_without_does() {
    let routed = with_routes("[[listener.route]]\npath = \"/x\"\ncluster = \"api\"\n");
    let config = Config::from_toml_str(&routed, "levee.toml").expect("valid");
    assert_eq!(config.listeners[0].cluster, None);
    assert_eq!(
        errors(&with_routes("")),
        [r#"levee.toml:1:1: missing key "cluster" in [[listener]] "web""#]
    );
}

#[test]
fn bad_routes_are_reported_at_their_keys() {
    let source = with_routes(
        r#"cluster = "app"

[[listener.route]]
host = "bad host:80"
path = "/a"
path_prefix = "/b"
methods = ["get"]
header = { value = "1" }
cluster = "nope"
retry = { hedge = "sometimes", max_attempts = 0 }
"#,
    );
    let found = errors(&source).join("\n");
    for expected in [
        r#"host: "bad host:80" is not a host name"#,
        "path_prefix: route #1 of [[listener]] \"web\" sets path already",
        r#"methods: "get" is not a method name"#,
        r#"missing key "header.name""#,
        r#"names cluster "nope", which is not defined"#,
        r#"retry.hedge: unknown value "sometimes""#,
        "retry.max_attempts: must be at least 1",
    ] {
        assert!(
            found.contains(expected),
            "missing {expected:?} in:\n{found}"
        );
    }
}

#[test]
fn unknown_route_keys_get_a_hint() {
    let source = with_routes("cluster = \"app\"\n\n[[listener.route]]\nclustr = \"api\"\n");
    let found = errors(&source).join("\n");
    assert!(
        found.contains(r#"unknown key "route[0].clustr" in [[listener]] "web" (did you mean "route[0].cluster"?)"#),
        "{found}"
    );
}

#[test]
fn a_tcp_listener_has_no_routes() {
    let source = with_routes(
        "protocol = \"tcp\"\ncluster = \"app\"\n\n[[listener.route]]\ncluster = \"api\"\n",
    );
    let found = errors(&source).join("\n");
    assert!(
        found.contains("route: only http listeners route requests"),
        "{found}"
    );
}

#[test]
fn a_route_that_can_never_match_is_a_warning() {
    let source = with_routes(
        r#"cluster = "app"

[[listener.route]]
name = "api"
path_prefix = "/api"
cluster = "api"

[[listener.route]]
name = "v1"
path_prefix = "/api/v1"
cluster = "app"

[[listener.route]]
name = "all"
cluster = "app"

[[listener.route]]
name = "late"
host = "a.example"
cluster = "api"
"#,
    );
    let config = Config::from_toml_str(&source, "levee.toml").expect("warnings are not errors");
    let warnings: Vec<String> = config.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(
        warnings[0]
            .contains(r#"route "v1" of [[listener]] "web" can never match: route "api" before it"#),
        "{warnings:?}"
    );
    assert!(
        warnings[1].contains(r#"route "late""#) && warnings[1].contains(r#"route "all""#),
        "{warnings:?}"
    );
    assert!(warnings[0].starts_with("levee.toml:"), "{warnings:?}");
}
