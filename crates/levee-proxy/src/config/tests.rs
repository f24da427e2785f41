//! What a user sees: the example and minimal configs are valid, every key is
//! documented, and each kind of mistake gives one exact `file:line:col`
//! message, all of them in one go.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use http::Method;
use levee_core::health::HealthCheckParams;
use levee_core::outlier::OutlierParams;
use levee_core::retry::{Backoff, RetryBudgetParams, RetryPolicy};

use super::admin::RawAdmin;
use super::alert::RawAlert;
use super::cluster::RawCluster;
use super::listener::RawListener;
use super::log::RawLog;
use super::raw::SECTIONS;
use super::readiness::RawReadiness;
use super::runtime::RawRuntime;
use super::store::RawStore;
use super::table::RawTable;
use super::*;

mod admission;
mod breaker;
mod cache;
mod large;
mod properties;
mod readiness;
mod retry;
mod route;

const SECOND: Duration = Duration::from_secs(1);

const EXAMPLE: &str = include_str!("../../../../docs/levee.example.toml");
const REFERENCE: &str = include_str!("../../../../docs/config.md");

/// A listener and a cluster that are fine: appended to a snippet, only the
/// snippet's problem is reported.
const VALID_TAIL: &str = r#"
[[listener]]
name = "ok"
listen = "127.0.0.1:7000"
cluster = "ok"

[[cluster]]
name = "ok"
endpoints = ["127.0.0.1:7001"]
"#;

fn errors(source: &str) -> Vec<String> {
    match Config::from_toml_str(source, "levee.toml") {
        Ok(_) => Vec::new(),
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    }
}

/// The only error of `source`.
fn error(source: &str) -> String {
    let mut errors = errors(source);
    assert_eq!(errors.len(), 1, "expected one error, got {errors:#?}");
    errors.remove(0)
}

/// A table levee reads: its name in the docs (`admin`, `cluster.health.http`)
/// and its keys.
struct TableKeys {
    name: String,
    keys: &'static [&'static str],
}

/// Every table levee reads: the sections and, found through
/// [`RawTable::keys_at`], every table nested in them, so that a new nested
/// table cannot be left out of the example or the reference.
fn every_table() -> Vec<TableKeys> {
    fn walk<T: RawTable>(section: &str, path: &mut Vec<&'static str>, tables: &mut Vec<TableKeys>) {
        let keys = T::keys_at(path);
        let name = std::iter::once(section)
            .chain(path.iter().copied())
            .collect::<Vec<_>>()
            .join(".");
        tables.push(TableKeys { name, keys });
        for key in keys {
            path.push(key);
            if !T::keys_at(path).is_empty() {
                walk::<T>(section, path, tables);
            }
            path.pop();
        }
    }
    let mut tables = Vec::new();
    walk::<RawAdmin>("admin", &mut Vec::new(), &mut tables);
    walk::<RawRuntime>("runtime", &mut Vec::new(), &mut tables);
    walk::<RawLog>("log", &mut Vec::new(), &mut tables);
    walk::<RawListener>("listener", &mut Vec::new(), &mut tables);
    walk::<RawCluster>("cluster", &mut Vec::new(), &mut tables);
    walk::<RawReadiness>("readiness", &mut Vec::new(), &mut tables);
    walk::<RawAlert>("alert", &mut Vec::new(), &mut tables);
    walk::<RawStore>("store", &mut Vec::new(), &mut tables);
    tables
}

/// Every key `value` sets, as a dotted path from `prefix`, looking through
/// arrays of tables: `cluster.health.http.path`.
fn key_paths(prefix: &str, value: &toml::Value, paths: &mut Vec<String>) {
    match value {
        toml::Value::Table(table) => {
            for (key, value) in table {
                let path = match prefix {
                    "" => key.clone(),
                    _ => format!("{prefix}.{key}"),
                };
                key_paths(&path, value, paths);
                paths.push(path);
            }
        }
        toml::Value::Array(items) => {
            for item in items {
                key_paths(prefix, item, paths);
            }
        }
        _ => {}
    }
}

/// The text of the first ```toml block after `heading` in the reference.
fn toml_block_after(heading: &str) -> &'static str {
    let (_, after) = REFERENCE
        .split_once(&format!("\n{heading}\n"))
        .unwrap_or_else(|| panic!("docs/config.md has no heading {heading:?}"));
    let (_, block) = after.split_once("```toml\n").expect("a toml block");
    block.split_once("```").expect("a closed toml block").0
}

// (a) The example and the reference.

#[test]
fn the_example_file_is_valid_and_sets_every_key() {
    let config = Config::from_toml_str(EXAMPLE, "levee.example.toml").unwrap();
    assert_eq!(config.listeners.len(), 3);
    let git = &config.listeners[2];
    assert_eq!(git.protocol, Protocol::Tcp);
    assert_eq!(git.tcp_replay, 64 * 1024);
    assert_eq!(config.runtime.worker_threads, Some(4));
    let api = config.cluster("api").unwrap();
    assert_eq!(api.balance, BalancePolicy::LeastRequest);
    assert_eq!(api.endpoints[1], EndpointAddress::new("fd00::2", 9000));
    assert_eq!(api.connect_timeout, Duration::from_millis(250));
    assert_eq!(api.panic_threshold_percent, 30);
    assert_eq!(api.slow_start, Duration::ZERO);
    let tcp = api.health.as_ref().unwrap();
    assert_eq!(tcp.check, HealthCheckKind::Tcp);
    let params = HealthCheckParams::new(2, 2, SECOND * 2, SECOND, SECOND * 2, 0.1).unwrap();
    assert_eq!(tcp.params, params);
    assert_eq!(api.outlier, None);

    let app = config.cluster("app").unwrap();
    assert_eq!(app.panic_threshold_percent, 50);
    assert_eq!(app.slow_start, SECOND * 10);
    let expected = HealthSettings {
        check: HealthCheckKind::Http(HttpCheckSettings {
            method: Method::GET,
            path: "/healthz".into(),
            host: Some("app.internal".into()),
            expect_status: vec![200, 204],
            expect_body: Some("ok".into()),
            draining_status: vec![503],
        }),
        params: HealthCheckParams::default(),
    };
    assert_eq!(app.health, Some(expected));
    // The example shows every outlier and retry default.
    assert_eq!(app.outlier, Some(OutlierParams::default()));
    assert_eq!(app.retry, RetrySettings::default());

    // Every key of every table, nested ones too, is set somewhere.
    let document: toml::Value = toml::from_str(EXAMPLE).unwrap();
    let mut written = Vec::new();
    key_paths("", &document, &mut written);
    for table in every_table() {
        for key in table.keys {
            let path = format!("{}.{key}", table.name);
            assert!(
                written.contains(&path),
                "docs/levee.example.toml does not set {path}"
            );
        }
    }
}

#[test]
fn the_reference_shows_the_example_file_verbatim() {
    assert_eq!(toml_block_after("## Full example"), EXAMPLE);
}

#[test]
fn the_minimal_config_in_the_reference_is_valid() {
    assert!(Config::from_toml_str(toml_block_after("## Minimal config"), "minimal").is_ok());
}

// (b) Every key serde accepts is documented, in its section.

#[test]
fn every_key_is_documented_in_its_section() {
    let tables = every_table();
    let sections: Vec<&str> = tables
        .iter()
        .map(|table| table.name.as_str())
        .filter(|name| !name.contains('.'))
        .collect();
    assert_eq!(sections, SECTIONS);
    let nested: Vec<&str> = tables
        .iter()
        .map(|table| table.name.as_str())
        .filter(|name| name.contains('.'))
        .collect();
    assert_eq!(
        nested,
        [
            "listener.route",
            "listener.route.header",
            "listener.route.retry",
            "listener.tls",
            "listener.tls.certificates",
            "listener.access_log",
            "cluster.health",
            "cluster.health.http",
            "cluster.outlier",
            "cluster.retry",
            "cluster.admission",
            "cluster.cache",
            "cluster.breaker",
            "cluster.throttle",
            "cluster.rate_limit",
            "cluster.tls",
            "readiness.probe"
        ]
    );
    for table in &tables {
        // `## [admin]`, `## [[cluster]]`, `### cluster.health`.
        let heading = match table.name.as_str() {
            name if name.contains('.') => format!("### {name}"),
            name @ ("listener" | "cluster" | "alert") => format!("## [[{name}]]"),
            name => format!("## [{name}]"),
        };
        assert!(!table.keys.is_empty(), "no keys found for {heading}");
        let (_, text) = REFERENCE
            .split_once(&format!("\n{heading}\n"))
            .unwrap_or_else(|| panic!("docs/config.md has no section {heading:?}"));
        let text = text.split("\n## ").next().unwrap_or_default();
        let text = text.split("\n### ").next().unwrap_or_default();
        for key in table.keys {
            assert!(
                text.contains(&format!("\n| `{key}` |")),
                "docs/config.md does not document `{key}` under {heading}"
            );
        }
    }
}

// (e) Defaults.

#[test]
fn the_minimal_config_gets_every_default() {
    let source = r#"
[[listener]]
name = "web"
listen = "0.0.0.0:8080"
cluster = "app"

[[cluster]]
name = "app"
endpoints = ["10.0.0.1:8000"]
"#;
    let config = Config::from_toml_str(source, "levee.toml").unwrap();
    let expected = Config {
        admin: AdminSettings {
            listen: "127.0.0.1:9901".parse().unwrap(),
        },
        runtime: RuntimeSettings {
            worker_threads: None,
            drain_timeout: Duration::from_secs(30),
            watch_config: false,
            dns_servers: Vec::new(),
        },
        log: crate::config::LogSettings::default(),
        listeners: vec![ListenerSettings {
            name: "web".into(),
            listen: "0.0.0.0:8080".parse().unwrap(),
            protocol: Protocol::Http,
            cluster: Some("app".into()),
            routes: Vec::new(),
            tcp_replay: 0,
            first_byte_timeout: None,
            tcp_hedge: false,
            replay_first_bytes_match: Vec::new(),
            when_impaired: WhenImpaired::Serve,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: None,
            max_request_headers: 256,
            tls: None,
            access_log: None,
        }],
        clusters: vec![ClusterSettings {
            name: "app".into(),
            endpoints: vec![EndpointAddress::new("10.0.0.1", 8000)],
            balance: BalancePolicy::P2cEwma,
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(15),
            body_idle_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(90),
            max_idle_per_endpoint: 128,
            max_response_headers: 100,
            upstream_protocol: super::UpstreamProtocol::Http1,
            max_concurrent_streams: 100,
            ewma_decay: Duration::from_secs(10),
            health: None,
            outlier: Some(OutlierParams::default()),
            panic_threshold_percent: 50,
            slow_start: Duration::from_secs(10),
            resolve_interval: Duration::from_secs(30),
            retry: RetrySettings {
                policy: RetryPolicy::new(3).unwrap(),
                per_try_timeout: Duration::from_secs(5),
                backoff: Backoff::new(Duration::from_millis(25), Duration::from_millis(250))
                    .unwrap(),
                budget: RetryBudgetParams::new(20, 10, Duration::from_secs(10)).unwrap(),
                replay_buffer: 64 * 1024,
                hedge: Some(HedgeSettings {
                    floor: Duration::from_millis(20),
                    ceiling: Duration::from_secs(1),
                }),
                idempotent: false,
                idle_close: false,
            },
            admission: None,
            cache: None,
            throttle: None,
            rate_limit: None,
            breaker: None,
            breaker_fleet: FleetBreakerSettings::default(),
            breaker_per_endpoint: false,
            tls: None,
            share_health: None,
            source_address: None,
            deadline_header: None,
            health_quorum: 2,
        }],
        readiness: ReadinessSettings::default(),
        alerts: Vec::new(),
        store: StoreSettings::default(),
        warnings: Vec::new(),
    };
    assert_eq!(config, expected);
    // The constructors agree with the file's defaults.
    let listen: SocketAddr = "0.0.0.0:8080".parse().unwrap();
    assert_eq!(
        config.listeners[0],
        ListenerSettings::new("web", listen, "app")
    );
    let endpoints = vec![EndpointAddress::new("10.0.0.1", 8000)];
    assert_eq!(config.clusters[0], ClusterSettings::new("app", endpoints));
}

#[test]
fn inline_arrays_of_tables_are_accepted() {
    let source = r#"
listener = [{ name = "web", listen = "127.0.0.1:80", cluster = "app" }]
cluster = [{ name = "app", endpoints = ["a:1"] }]
"#;
    let config = Config::from_toml_str(source, "levee.toml").unwrap();
    assert_eq!(config.clusters[0].endpoints[0].to_string(), "a:1");
}

// (c) One test per kind of problem, with the exact message.

#[test]
fn syntax_error() {
    assert_eq!(
        errors("[admin]\nlisten = \"127.0.0.1:9901\n"),
        ["levee.toml:2:25: invalid TOML: invalid basic string, expected `\"`"]
    );
}

#[test]
fn only_the_first_syntax_error_is_reported() {
    // After one syntax error the parser can only guess; the second line's
    // error could be a consequence of the first.
    assert_eq!(
        errors("a = \nb = \"x"),
        ["levee.toml:1:5: invalid TOML: string values must be quoted, expected literal string"]
    );
}

#[test]
fn duplicate_table_names_the_key() {
    let source = "[admin]\nlisten = \"127.0.0.1:1\"\n[admin]\n";
    assert_eq!(
        error(source),
        "levee.toml:3:2: invalid TOML: duplicate key \"admin\""
    );
}

#[test]
fn unknown_key_with_suggestion() {
    let source = format!(
        "[[cluster]]\nname = \"app\"\nendpoints = [\"a:1\"]\nbalanc = \"round-robin\"\n{VALID_TAIL}"
    );
    assert_eq!(
        error(&source),
        r#"levee.toml:4:1: unknown key "balanc" in [[cluster]] "app" (did you mean "balance"?)"#
    );
}

#[test]
fn unknown_keys_are_all_reported_even_after_a_type_error() {
    // Keys are visited in alphabetical order: "aaa" before the type error,
    // "zzz" after it.
    let source = format!(
        "[runtime]\naaa = 1\nworker_threads = \"two\"\nzzz = 2\n[admin]\nlistne = \"127.0.0.1:1\"\n{VALID_TAIL}"
    );
    assert_eq!(
        errors(&source),
        [
            r#"levee.toml:2:1: unknown key "aaa" in [runtime]"#,
            r#"levee.toml:3:18: worker_threads: invalid type: string "two", expected a non-negative integer"#,
            r#"levee.toml:4:1: unknown key "zzz" in [runtime]"#,
            r#"levee.toml:6:1: unknown key "listne" in [admin] (did you mean "listen"?)"#,
        ]
    );
}

#[test]
fn unknown_top_level_section() {
    let source = format!("[listeners]\nname = \"x\"\n{VALID_TAIL}");
    assert_eq!(
        error(&source),
        r#"levee.toml:1:2: unknown key "listeners" at the top level (did you mean "listener"?)"#
    );
}

#[test]
fn unknown_key_in_a_listener_without_a_name_is_numbered() {
    let source = format!(
        "{VALID_TAIL}\n[[listener]]\nname = 7\nlisten = \"127.0.0.1:7002\"\ncluster = \"ok\"\nweight = 1\n"
    );
    assert_eq!(
        errors(&source),
        [
            "levee.toml:12:8: name: invalid type: integer `7`, expected a string",
            r#"levee.toml:15:1: unknown key "weight" in [[listener]] #2"#,
        ]
    );
}

#[test]
fn wrong_type() {
    let source = format!("[runtime]\nworker_threads = \"two\"\n{VALID_TAIL}");
    assert_eq!(
        error(&source),
        r#"levee.toml:2:18: worker_threads: invalid type: string "two", expected a non-negative integer"#
    );
}

#[test]
fn wrong_type_inside_an_array() {
    let source = format!("{VALID_TAIL}\n[[cluster]]\nname = \"b\"\nendpoints = [\"a:1\", 2]\n");
    assert_eq!(
        error(&source),
        "levee.toml:13:21: endpoints: invalid type: integer `2`, expected a string"
    );
}

#[test]
fn a_required_key_of_the_wrong_type_is_not_also_missing() {
    let source = format!("{VALID_TAIL}\n[[cluster]]\nname = [\"b\"]\nendpoints = [\"a:1\"]\n");
    assert_eq!(
        error(&source),
        "levee.toml:12:8: name: invalid type: sequence, expected a string"
    );
}

#[test]
fn missing_listener_keys_point_at_the_header() {
    let source = format!("{VALID_TAIL}\n[[listener]]\nprotocol = \"http\"\n");
    assert_eq!(
        errors(&source),
        [
            r#"levee.toml:11:1: missing key "name" in [[listener]] #2"#,
            r#"levee.toml:11:1: missing key "listen" in [[listener]] #2"#,
            r#"levee.toml:11:1: missing key "cluster" in [[listener]] #2"#,
        ]
    );
}

#[test]
fn missing_cluster_keys_point_at_the_header() {
    let source =
        format!("{VALID_TAIL}\n[[cluster]]\nname = \"b\"\n\n[[cluster]]\nendpoints = [\"a:1\"]\n");
    assert_eq!(
        errors(&source),
        [
            r#"levee.toml:11:1: missing key "endpoints" in [[cluster]] "b""#,
            r#"levee.toml:14:1: missing key "name" in [[cluster]] #3"#,
        ]
    );
}

#[test]
fn empty_name() {
    let source = format!("{VALID_TAIL}\n[[cluster]]\nname = \" \"\nendpoints = [\"a:1\"]\n");
    assert_eq!(error(&source), "levee.toml:12:8: name: must not be empty");
}

#[test]
fn bad_duration() {
    let source = format!(
        "[[cluster]]\nname = \"app\"\nendpoints = [\"a:1\"]\nconnect_timeout = \"10 parsecs\"\n{VALID_TAIL}"
    );
    assert_eq!(
        error(&source),
        r#"levee.toml:4:19: connect_timeout: bad duration "10 parsecs": expected e.g. "250ms" or "10s""#
    );
}

#[test]
fn durations_need_a_unit() {
    let source = format!("[runtime]\ndrain_timeout = \"10\"\n{VALID_TAIL}");
    assert_eq!(
        error(&source),
        r#"levee.toml:2:17: drain_timeout: bad duration "10": expected e.g. "250ms" or "10s""#
    );
}

#[test]
fn bad_socket_address() {
    let source = format!("[admin]\nlisten = \"localhost:9901\"\n{VALID_TAIL}");
    assert_eq!(
        error(&source),
        r#"levee.toml:2:10: listen: bad socket address "localhost:9901": expected an IP address and port, e.g. "0.0.0.0:8080" or "[::]:8080""#
    );
}

#[test]
fn bad_endpoint_address() {
    let source = format!(
        "{VALID_TAIL}\n[[cluster]]\nname = \"b\"\nendpoints = [\"10.0.0.1:8000\", \"backend\"]\n"
    );
    assert_eq!(
        error(&source),
        r#"levee.toml:13:31: endpoints: bad endpoint address "backend": missing port; expected host:port, e.g. "10.0.0.1:8000" or "backend.internal:8000""#
    );
}

#[test]
fn duplicate_endpoint() {
    let source = format!(
        "{VALID_TAIL}\n[[cluster]]\nname = \"b\"\nendpoints = [\"[::1]:80\", \"[0::1]:80\"]\n"
    );
    assert_eq!(
        error(&source),
        r#"levee.toml:13:26: endpoints: "[::1]:80" is listed twice"#
    );
}

#[test]
fn bad_balance_policy_lists_the_valid_ones() {
    let source = format!(
        "[[cluster]]\nname = \"app\"\nendpoints = [\"a:1\"]\nbalance = \"random\"\n{VALID_TAIL}"
    );
    assert_eq!(
        error(&source),
        r#"levee.toml:4:11: unknown balance policy "random": expected one of "p2c-ewma", "round-robin", "least-request""#
    );
}

/// `VALID_TAIL` and a listener "ssh" on cluster "ok" with `lines` added.
fn listener_with(lines: &str) -> String {
    format!(
        "{VALID_TAIL}\n[[listener]]\nname = \"ssh\"\nlisten = \"0.0.0.0:22\"\ncluster = \"ok\"\n{lines}"
    )
}

fn ssh_listener(lines: &str) -> ListenerSettings {
    let config = Config::from_toml_str(&listener_with(lines), "levee.toml").unwrap();
    config.listeners[1].clone()
}

#[test]
fn tcp_listeners_replay_only_when_asked() {
    let plain = ssh_listener("protocol = \"tcp\"\n");
    assert_eq!(plain.protocol, Protocol::Tcp);
    assert_eq!(plain.tcp_replay, 0);
    let replaying = ssh_listener("protocol = \"tcp\"\ntcp_replay = \"64KiB\"\n");
    assert_eq!(replaying.tcp_replay, 64 * 1024);
    assert_eq!(
        ssh_listener("protocol = \"tcp\"\ntcp_replay = \"0\"\n").tcp_replay,
        0
    );
}

#[test]
fn tcp_replay_on_an_http_listener() {
    for lines in [
        "tcp_replay = \"64KiB\"\n",
        "protocol = \"http\"\ntcp_replay = \"0\"\n",
    ] {
        let source = listener_with(lines);
        let line = 14 + lines.lines().count();
        assert_eq!(
            error(&source),
            format!(
                r#"levee.toml:{line}:14: tcp_replay: only a listener with protocol = "tcp" replays bytes; [[listener]] "ssh" is an http listener"#
            )
        );
    }
}

#[test]
fn bad_tcp_replay_size() {
    let source = listener_with("protocol = \"tcp\"\ntcp_replay = \"lots\"\n");
    assert_eq!(
        error(&source),
        r#"levee.toml:16:14: tcp_replay: bad size "lots": expected e.g. "64KiB" or "1MB""#
    );
    // A bad protocol is reported once, and a good size is not judged by it.
    let source = listener_with("protocol = \"udp\"\ntcp_replay = \"1KiB\"\n");
    assert_eq!(
        error(&source),
        r#"levee.toml:15:12: unknown protocol "udp": expected "http" or "tcp""#
    );
}

#[test]
fn unknown_protocol() {
    let source = format!(
        "{VALID_TAIL}\n[[listener]]\nname = \"x\"\nlisten = \"0.0.0.0:22\"\nprotocol = \"gopher\"\ncluster = \"ok\"\n"
    );
    assert_eq!(
        error(&source),
        r#"levee.toml:14:12: unknown protocol "gopher": expected "http" or "tcp""#
    );
}

#[test]
fn listener_names_an_undefined_cluster() {
    let source = r#"
[[listener]]
name = "web"
listen = "0.0.0.0:8080"
cluster = "ap"

[[cluster]]
name = "app"
endpoints = ["a:1"]
"#;
    assert_eq!(
        error(source),
        r#"levee.toml:5:11: listener "web" names cluster "ap", which is not defined (did you mean "app"?)"#
    );
}

#[test]
fn two_listeners_on_one_address() {
    let source = format!(
        "{VALID_TAIL}\n[[listener]]\nname = \"again\"\nlisten = \"127.0.0.1:7000\"\ncluster = \"ok\"\n"
    );
    assert_eq!(
        error(&source),
        r#"levee.toml:13:10: listener "again" cannot listen on 127.0.0.1:7000: listener "ok" (line 4) already listens on 127.0.0.1:7000"#
    );
}

#[test]
fn a_wildcard_listener_collides_with_a_specific_one_on_its_port() {
    let source = format!(
        "{VALID_TAIL}\n[[listener]]\nname = \"all\"\nlisten = \"0.0.0.0:7000\"\ncluster = \"ok\"\n"
    );
    assert_eq!(
        error(&source),
        r#"levee.toml:13:10: listener "all" cannot listen on 0.0.0.0:7000: listener "ok" (line 4) already listens on 127.0.0.1:7000"#
    );
}

#[test]
fn port_zero_never_collides() {
    let source = r#"
[admin]
listen = "127.0.0.1:0"

[[listener]]
name = "a"
listen = "127.0.0.1:0"
cluster = "app"

[[listener]]
name = "b"
listen = "0.0.0.0:0"
cluster = "app"

[[cluster]]
name = "app"
endpoints = ["a:1"]
"#;
    assert_eq!(errors(source), Vec::<String>::new());
}

#[test]
fn a_listener_on_the_admin_address() {
    let source = r#"[admin]
listen = "127.0.0.1:9000"

[[listener]]
name = "web"
listen = "0.0.0.0:9000"
cluster = "app"

[[cluster]]
name = "app"
endpoints = ["a:1"]
"#;
    assert_eq!(
        error(source),
        r#"levee.toml:6:10: listener "web" cannot listen on 0.0.0.0:9000: the admin listener (line 2) already listens on 127.0.0.1:9000"#
    );
}

#[test]
fn a_listener_on_the_default_admin_address() {
    let source = format!(
        "{VALID_TAIL}\n[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:9901\"\ncluster = \"ok\"\n"
    );
    assert_eq!(
        error(&source),
        r#"levee.toml:13:10: listener "web" cannot listen on 127.0.0.1:9901: the admin listener (by default) already listens on 127.0.0.1:9901"#
    );
}

#[test]
fn duplicate_listener_name() {
    let source = format!(
        "{VALID_TAIL}\n[[listener]]\nname = \"ok\"\nlisten = \"127.0.0.1:7002\"\ncluster = \"ok\"\n"
    );
    assert_eq!(
        error(&source),
        r#"levee.toml:12:8: duplicate listener name "ok" (first defined at line 3)"#
    );
}

#[test]
fn duplicate_cluster_name() {
    let source = format!("{VALID_TAIL}\n[[cluster]]\nname = \"ok\"\nendpoints = [\"b:1\"]\n");
    assert_eq!(
        error(&source),
        r#"levee.toml:12:8: duplicate cluster name "ok" (first defined at line 8)"#
    );
}

#[test]
fn empty_cluster() {
    let source = format!("{VALID_TAIL}\n[[cluster]]\nname = \"none\"\nendpoints = []\n");
    assert_eq!(
        error(&source),
        r#"levee.toml:13:13: [[cluster]] "none" has no endpoints"#
    );
}

#[test]
fn no_listener() {
    let source = "[[cluster]]\nname = \"app\"\nendpoints = [\"a:1\"]\n";
    assert_eq!(
        error(source),
        "levee.toml:1:1: config defines no [[listener]]"
    );
    assert_eq!(error(""), "levee.toml:1:1: config defines no [[listener]]");
}

#[test]
fn zero_worker_threads() {
    let source = format!("[runtime]\nworker_threads = 0\n{VALID_TAIL}");
    assert_eq!(
        error(&source),
        "levee.toml:2:18: worker_threads: must be at least 1 (leave it unset for one per CPU)"
    );
}

#[test]
fn zero_timeouts() {
    let source = format!(
        "[[cluster]]\nname = \"app\"\nendpoints = [\"a:1\"]\nconnect_timeout = \"0s\"\nrequest_timeout = \"0ms\"\nbody_idle_timeout = \"0s\"\nidle_timeout = \"0s\"\newma_decay = \"0s\"\n{VALID_TAIL}"
    );
    assert_eq!(
        errors(&source),
        [
            "levee.toml:4:19: connect_timeout: must be more than 0",
            "levee.toml:5:19: request_timeout: must be more than 0",
            "levee.toml:6:21: body_idle_timeout: must be more than 0",
            "levee.toml:7:16: idle_timeout: must be more than 0 (to disable pooling, set max_idle_per_endpoint = 0)",
            "levee.toml:8:14: ewma_decay: must be more than 0",
        ]
    );
}

#[test]
fn a_zero_drain_timeout_is_fine() {
    let source = format!("[runtime]\ndrain_timeout = \"0s\"\n{VALID_TAIL}");
    let config = Config::from_toml_str(&source, "levee.toml").unwrap();
    assert_eq!(config.runtime.drain_timeout, Duration::ZERO);
}

#[test]
fn a_section_of_the_wrong_shape() {
    let source = format!("admin = \"127.0.0.1:1\"\n{VALID_TAIL}");
    assert_eq!(
        error(&source),
        "levee.toml:1:9: admin: expected a table, found string"
    );
    let source = format!("runtime = 4\n{VALID_TAIL}");
    assert_eq!(
        error(&source),
        "levee.toml:1:11: runtime: expected a table, found integer"
    );
    assert_eq!(
        errors("listener = 5\n"),
        [
            "levee.toml:1:1: config defines no [[listener]]",
            "levee.toml:1:12: listener: expected an array of tables ([[listener]]), found integer",
        ]
    );
    assert_eq!(
        errors("listener = [\"web\"]\n"),
        [
            "levee.toml:1:1: config defines no [[listener]]",
            "levee.toml:1:13: listener: expected a table, found string",
        ]
    );
}

#[test]
fn single_brackets_for_a_repeated_section() {
    let source = r#"[listener]
name = "web"
listen = "127.0.0.1:80"
cluster = "app"

[[cluster]]
name = "app"
endpoints = ["a:1"]
"#;
    assert_eq!(
        error(source),
        "levee.toml:1:1: listener: write [[listener]], not [listener]: there can be several"
    );
}

#[test]
fn unreadable_file() {
    let path = Path::new("/nonexistent-levee-dir/levee.toml");
    let errors = Config::load(path).unwrap_err();
    let os_error = std::io::Error::from_raw_os_error(2);
    assert_eq!(
        errors.to_string(),
        format!("/nonexistent-levee-dir/levee.toml:1:1: cannot read config: {os_error}")
    );
}

#[test]
fn load_reads_a_file() {
    let path = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/levee.example.toml"
    ));
    assert!(Config::load(path).is_ok());
}

// (d) Everything at once.

#[test]
fn every_problem_is_reported_in_one_go_in_file_order() {
    let source = r#"[admin]
listen = "127.0.0.1:8080"

[runtime]
worker_threads = 0
drain_timout = "5s"

[[listener]]
name = "web"
listen = "0.0.0.0:8080"
cluster = "ap"

[[listener]]
name = "web"
listen = "not an address"
protocol = "udp"
cluster = "app"

[[cluster]]
name = "app"
endpoints = ["10.0.0.1:8000", "10.0.0.2"]
balanc = "round-robin"
connect_timeout = "10 parsecs"
request_timeout = 15
"#;
    let errors = errors(source);
    let expected = [
        r#"levee.toml:5:18: worker_threads: must be at least 1 (leave it unset for one per CPU)"#,
        r#"levee.toml:6:1: unknown key "drain_timout" in [runtime] (did you mean "drain_timeout"?)"#,
        r#"levee.toml:10:10: listener "web" cannot listen on 0.0.0.0:8080: the admin listener (line 2) already listens on 127.0.0.1:8080"#,
        r#"levee.toml:11:11: listener "web" names cluster "ap", which is not defined (did you mean "app"?)"#,
        r#"levee.toml:14:8: duplicate listener name "web" (first defined at line 9)"#,
        r#"levee.toml:15:10: listen: bad socket address "not an address": expected an IP address and port, e.g. "0.0.0.0:8080" or "[::]:8080""#,
        r#"levee.toml:16:12: unknown protocol "udp": expected "http" or "tcp""#,
        r#"levee.toml:21:31: endpoints: bad endpoint address "10.0.0.2": missing port; expected host:port, e.g. "10.0.0.1:8000" or "backend.internal:8000""#,
        r#"levee.toml:22:1: unknown key "balanc" in [[cluster]] "app" (did you mean "balance"?)"#,
        r#"levee.toml:23:19: connect_timeout: bad duration "10 parsecs": expected e.g. "250ms" or "10s""#,
        r#"levee.toml:24:19: request_timeout: invalid type: integer `15`, expected a string"#,
    ];
    assert_eq!(errors, expected);
}

#[test]
fn errors_display_one_per_line() {
    let errors = Config::from_toml_str("[[listener]]\n", "x.toml").unwrap_err();
    assert_eq!(
        errors.to_string(),
        [
            r#"x.toml:1:1: missing key "name" in [[listener]] #1"#,
            r#"x.toml:1:1: missing key "listen" in [[listener]] #1"#,
            r#"x.toml:1:1: missing key "cluster" in [[listener]] #1"#,
        ]
        .join("\n")
    );
    assert_eq!(errors.len(), 3);
    assert_eq!(errors.0[0].line, 1);
}

// (f) A cluster's health checks, outlier detection, panic threshold and slow
// start.

/// A valid cluster "app" whose keys go on from line 4 with `lines`, then
/// [`VALID_TAIL`].
fn cluster_with(lines: &str) -> String {
    format!("[[cluster]]\nname = \"app\"\nendpoints = [\"a:1\"]\n{lines}{VALID_TAIL}")
}

/// The settings of cluster "app" in [`cluster_with`]`(lines)`.
fn app_with(lines: &str) -> ClusterSettings {
    let config = Config::from_toml_str(&cluster_with(lines), "levee.toml").unwrap();
    config.cluster("app").unwrap().clone()
}

#[test]
fn a_health_table_fills_in_its_defaults() {
    let tcp = app_with("health = { tcp = true }\n").health.unwrap();
    assert_eq!(tcp.check, HealthCheckKind::Tcp);
    assert_eq!(tcp.params, HealthCheckParams::default());

    let http = app_with("health = { http = { path = \"/healthz\" }, rise = 3 }\n");
    let http = http.health.unwrap();
    assert_eq!(
        http.check,
        HealthCheckKind::Http(HttpCheckSettings::new("/healthz"))
    );
    assert_eq!(http.params.rise(), 3);
    assert_eq!(http.params.fall(), 2);

    // `tcp = false` next to `http` says what the default says.
    let http = app_with("health = { http = { path = \"/\" }, tcp = false }\n");
    assert!(matches!(
        http.health.unwrap().check,
        HealthCheckKind::Http(_)
    ));
}

#[test]
fn health_as_tables_of_their_own() {
    let app = app_with(
        "[cluster.health]\ninterval = \"1s\"\n[cluster.health.http]\npath = \"/status?deep=1\"\nmethod = \"HEAD\"\n",
    );
    let health = app.health.unwrap();
    assert_eq!(health.params.interval(), SECOND);
    let HealthCheckKind::Http(http) = health.check else {
        panic!("expected an HTTP check");
    };
    assert_eq!(http.path, "/status?deep=1");
    assert_eq!(http.method, Method::HEAD);
}

#[test]
fn outlier_detection_can_be_turned_off_or_tuned() {
    assert_eq!(app_with("outlier = { enabled = false }\n").outlier, None);
    let tuned = app_with(
        "outlier = { consecutive_failures = 0, failure_rate = 0, latency_factor = 0, window = \"30s\", max_ejected_percent = 0, count_other_5xx = false }\n",
    );
    let expected = OutlierParams::builder()
        .consecutive_failures(0)
        .failure_rate(None)
        .latency_factor(None)
        .window(SECOND * 30)
        .max_ejected_percent(0)
        .count_other_5xx(false)
        .build()
        .unwrap();
    assert_eq!(tuned.outlier, Some(expected));
    let rate = app_with("outlier = { failure_rate = 1 }\n")
        .outlier
        .unwrap();
    assert_eq!(rate.failure_rate(), Some(1.0));
}

#[test]
fn panic_threshold_and_slow_start() {
    let app = app_with("panic_threshold = 0\nslow_start = \"0s\"\n");
    assert_eq!(app.panic_threshold_percent, 0);
    assert_eq!(app.slow_start, Duration::ZERO);
    let app = app_with("panic_threshold = 100\nslow_start = \"1m\"\n");
    assert_eq!(app.panic_threshold_percent, 100);
    assert_eq!(app.slow_start, SECOND * 60);
}

#[test]
fn both_check_kinds() {
    let source = cluster_with("health = { tcp = true, http = { path = \"/\" } }\n");
    assert_eq!(
        error(&source),
        "levee.toml:4:10: health: set one check, not both http and tcp = true"
    );
}

#[test]
fn no_check_kind() {
    let source = cluster_with("health = { interval = \"1s\", tcp = false }\n");
    assert_eq!(
        error(&source),
        r#"levee.toml:4:10: health: set the check: http = { path = "/..." } or tcp = true"#
    );
    // As a table of its own, at its header.
    let source = cluster_with("\n[cluster.health]\nrise = 3\n");
    assert_eq!(
        error(&source),
        r#"levee.toml:5:1: health: set the check: http = { path = "/..." } or tcp = true"#
    );
}

#[test]
fn unknown_nested_keys_with_suggestions() {
    // The misspelt `http` leaves the table without a check, which is
    // reported too: the fix is the suggestion.
    let source = cluster_with("health = { htp = { path = \"/healthz\" } }\n");
    assert_eq!(
        errors(&source),
        [
            r#"levee.toml:4:10: health: set the check: http = { path = "/..." } or tcp = true"#,
            r#"levee.toml:4:12: unknown key "health.htp" in [[cluster]] "app" (did you mean "health.http"?)"#,
        ]
    );
    let source = cluster_with(
        "[cluster.health.http]\npath = \"/\"\nexpect_staus = [200]\n[cluster.outlier]\nwindw = \"1s\"\nweight = 2\n",
    );
    assert_eq!(
        errors(&source),
        [
            r#"levee.toml:6:1: unknown key "health.http.expect_staus" in [[cluster]] "app" (did you mean "health.http.expect_status"?)"#,
            r#"levee.toml:8:1: unknown key "outlier.windw" in [[cluster]] "app" (did you mean "outlier.window"?)"#,
            r#"levee.toml:9:1: unknown key "outlier.weight" in [[cluster]] "app""#,
        ]
    );
}

#[test]
fn missing_path() {
    let source = cluster_with("health = { http = { method = \"HEAD\" } }\n");
    assert_eq!(
        error(&source),
        r#"levee.toml:4:19: missing key "health.http.path" in [[cluster]] "app""#
    );
}

#[test]
fn bad_path() {
    let source = cluster_with("health = { http = { path = \"healthz\" } }\n");
    assert_eq!(
        error(&source),
        r#"levee.toml:4:28: health.http.path: must start with "/", got "healthz""#
    );
    let source = cluster_with("health = { http = { path = \"/health check\" } }\n");
    assert_eq!(
        error(&source),
        r#"levee.toml:4:28: health.http.path: "/health check" is not a valid request path (percent-encode spaces and other special characters)"#
    );
}

#[test]
fn bad_method() {
    let source = cluster_with("health = { http = { path = \"/\", method = \"G ET\" } }\n");
    assert_eq!(
        error(&source),
        r#"levee.toml:4:42: health.http.method: "G ET" is not a valid HTTP method"#
    );
    let source = cluster_with("health = { http = { path = \"/\", method = \"get\" } }\n");
    assert_eq!(
        error(&source),
        r#"levee.toml:4:42: health.http.method: methods are case-sensitive: write "GET", not "get""#
    );
    // An extension method is a valid token.
    let app = app_with("health = { http = { path = \"/\", method = \"PROBE\" } }\n");
    let Some(HealthCheckKind::Http(http)) = app.health.map(|health| health.check) else {
        panic!("expected an HTTP check");
    };
    assert_eq!(http.method.as_str(), "PROBE");
}

#[test]
fn status_out_of_range() {
    let source = cluster_with(
        "health = { http = { path = \"/\", expect_status = [99, 200, 600, 70000] } }\n",
    );
    assert_eq!(
        errors(&source),
        [
            "levee.toml:4:50: health.http.expect_status: 99 is not an HTTP status (100 to 599)",
            "levee.toml:4:59: health.http.expect_status: 600 is not an HTTP status (100 to 599)",
            "levee.toml:4:64: health.http.expect_status: 70000 is not an HTTP status (100 to 599)",
        ]
    );
    let source = cluster_with("health = { http = { path = \"/\", expect_status = [] } }\n");
    assert_eq!(
        error(&source),
        "levee.toml:4:49: health.http.expect_status: must list at least one status"
    );
}

#[test]
fn bad_host_and_empty_body() {
    let source =
        cluster_with("health = { http = { path = \"/\", host = \"a b\", expect_body = \"\" } }\n");
    assert_eq!(
        errors(&source),
        [
            r#"levee.toml:4:40: health.http.host: "a b" is not a valid Host header: expected e.g. "app.internal" or "app.internal:8080""#,
            "levee.toml:4:61: health.http.expect_body: must not be empty (leave it out to accept any body)",
        ]
    );
}

#[test]
fn rise_of_zero_is_named() {
    let source = cluster_with("health = { tcp = true, rise = 0 }\n");
    assert_eq!(
        error(&source),
        "levee.toml:4:31: health.rise: must be at least 1"
    );
}

#[test]
fn jitter_out_of_range() {
    let source = cluster_with("health = { tcp = true, jitter = 1.5 }\n");
    assert_eq!(
        error(&source),
        "levee.toml:4:33: health.jitter: must be between 0.0 and 1.0, got 1.5"
    );
}

#[test]
fn every_bad_health_parameter_is_reported() {
    let source = cluster_with(
        "[cluster.health]\ntcp = true\nrise = 0\nfall = 0\ninterval = \"0s\"\ntransition_interval = \"0ms\"\ntimeout = \"never\"\njitter = -0.5\n",
    );
    assert_eq!(
        errors(&source),
        [
            "levee.toml:6:8: health.rise: must be at least 1",
            "levee.toml:7:8: health.fall: must be at least 1",
            "levee.toml:8:12: health.interval: must be greater than zero",
            "levee.toml:9:23: health.transition_interval: must be greater than zero",
            r#"levee.toml:10:11: health.timeout: bad duration "never": expected e.g. "250ms" or "10s""#,
            "levee.toml:11:10: health.jitter: must be between 0.0 and 1.0, got -0.5",
        ]
    );
}

#[test]
fn a_wrong_type_in_a_nested_table_leaves_the_rest_checked() {
    let source = cluster_with(
        "health = { http = { path = 5, method = \"get\" }, rise = \"two\", fall = 0 }\n",
    );
    assert_eq!(
        errors(&source),
        [
            "levee.toml:4:28: health.http.path: invalid type: integer `5`, expected a string",
            r#"levee.toml:4:40: health.http.method: methods are case-sensitive: write "GET", not "get""#,
            r#"levee.toml:4:56: health.rise: invalid type: string "two", expected a non-negative integer"#,
            "levee.toml:4:70: health.fall: must be at least 1",
        ]
    );
    // Through dotted keys and a table of its own as well.
    let source = cluster_with("health.tcp = \"yes\"\n[cluster.outlier]\nwindow = 10\n");
    assert_eq!(
        errors(&source),
        [
            r#"levee.toml:4:14: health.tcp: invalid type: string "yes", expected a boolean"#,
            "levee.toml:6:10: outlier.window: invalid type: integer `10`, expected a string",
        ]
    );
}

#[test]
fn a_nested_table_of_the_wrong_type() {
    let source = cluster_with("health = \"yes\"\noutlier = false\n");
    assert_eq!(
        errors(&source),
        [
            r#"levee.toml:4:10: health: invalid type: string "yes", expected a table"#,
            "levee.toml:5:11: outlier: invalid type: boolean `false`, expected a table",
        ]
    );
}

#[test]
fn failure_rate_above_one() {
    let source = cluster_with("outlier = { failure_rate = 2.0 }\n");
    assert_eq!(
        error(&source),
        "levee.toml:4:28: outlier.failure_rate: must be between 0 and 1 (0 excluded), got 2"
    );
}

#[test]
fn max_ejected_percent_above_100() {
    let source = cluster_with("outlier = { max_ejected_percent = 150 }\n");
    assert_eq!(
        error(&source),
        "levee.toml:4:35: outlier.max_ejected_percent: must be between 0 and 100, got 150"
    );
}

#[test]
fn every_bad_outlier_parameter_is_reported_even_when_disabled() {
    let source = cluster_with(
        "[cluster.outlier]\nenabled = false\nfailure_rate = -1\nwindow = \"0s\"\nmin_requests = 0\nlatency_factor = 0.5\nlatency_floor = \"fast\"\nbase_ejection = \"0s\"\nmax_ejected_percent = -5\n",
    );
    assert_eq!(
        errors(&source),
        [
            "levee.toml:6:16: outlier.failure_rate: must be between 0 and 1 (0 excluded), got -1",
            "levee.toml:7:10: outlier.window: must be greater than zero",
            "levee.toml:8:16: outlier.min_requests: must be at least 1",
            "levee.toml:9:18: outlier.latency_factor: must be greater than 1, got 0.5",
            r#"levee.toml:10:17: outlier.latency_floor: bad duration "fast": expected e.g. "250ms" or "10s""#,
            "levee.toml:11:17: outlier.base_ejection: must be greater than zero",
            "levee.toml:12:23: outlier.max_ejected_percent: must be between 0 and 100, got -5",
        ]
    );
}

#[test]
fn a_default_made_wrong_by_another_key_is_reported_at_the_table() {
    let source = cluster_with("outlier = { base_ejection = \"10m\" }\n");
    assert_eq!(
        error(&source),
        "levee.toml:4:11: outlier.max_ejection: must be at least base_ejection (600s), got 300s (its default)"
    );
    let source = cluster_with("outlier = { base_ejection = \"10m\", max_ejection = \"1m\" }\n");
    assert_eq!(
        error(&source),
        "levee.toml:4:51: outlier.max_ejection: must be at least base_ejection (600s), got 60s"
    );
}

#[test]
fn bad_panic_threshold_and_slow_start() {
    let source = cluster_with("panic_threshold = 101\nslow_start = \"soon\"\n");
    assert_eq!(
        errors(&source),
        [
            "levee.toml:4:19: panic_threshold: must be between 0 and 100, got 101",
            r#"levee.toml:5:14: slow_start: bad duration "soon": expected e.g. "250ms" or "10s""#,
        ]
    );
    let source = cluster_with("panic_threshold = 0.5\n");
    assert_eq!(
        error(&source),
        "levee.toml:4:19: panic_threshold: invalid type: floating point `0.5`, expected an integer"
    );
}

// TLS.

#[test]
fn tls_tables_are_checked_key_by_key() {
    let source = r#"
[[listener]]
name = "web"
listen = "127.0.0.1:8443"
cluster = "app"
tls = { cert = "a.pem", min_version = "1.1", handshake_timeout = "0s", certificates = [{ cert = "b.pem" }] }

[[cluster]]
name = "app"
endpoints = ["127.0.0.1:8000"]
tls = { server_name = "not a name", client_cert = "c.pem" }
"#;
    let errors = errors(source);
    let expected = [
        "levee.toml:6:7: tls: missing key \"key\"",
        "levee.toml:6:39: tls.min_version: unknown version \"1.1\": expected \"1.2\" or \"1.3\" (older versions are not offered)",
        "levee.toml:6:66: tls.handshake_timeout: must be more than 0",
        "levee.toml:6:88: tls: missing key \"key\"",
        "levee.toml:11:23: tls.server_name: \"not a name\" is neither a DNS name nor an IP address",
        "levee.toml:11:51: tls: client_cert and client_key go together (mutual TLS needs both)",
    ];
    assert_eq!(errors, expected, "{errors:#?}");
}

#[test]
fn tls_paths_are_relative_to_the_config_file() {
    let dir = std::env::temp_dir().join(format!("levee-config-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("levee.toml");
    std::fs::write(
        &path,
        r#"
[[listener]]
name = "web"
listen = "127.0.0.1:8443"
cluster = "app"
tls = { cert = "tls/site.pem", key = "/abs/site.key", watch_interval = "0s" }

[[cluster]]
name = "app"
endpoints = ["127.0.0.1:8000"]
tls = { ca = "ca.pem" }
"#,
    )
    .expect("write");
    let config = Config::load(&path).expect("valid");
    let _ = std::fs::remove_dir_all(&dir);
    let tls = config.listeners[0].tls.as_ref().expect("listener tls");
    assert_eq!(tls.default.cert, dir.join("tls/site.pem"));
    assert_eq!(tls.default.key, std::path::PathBuf::from("/abs/site.key"));
    assert_eq!(tls.watch_interval, None);
    assert_eq!(tls.min_version, super::TlsVersion::Tls12);
    let upstream = config.clusters[0].tls.as_ref().expect("cluster tls");
    assert_eq!(upstream.ca, Some(dir.join("ca.pem")));
    assert!(!upstream.insecure_skip_verify);
}

#[test]
fn log_format_and_level_are_checked() {
    let config = Config::from_toml_str(
        &format!("[log]\nformat = \"json\"\nlevel = \"warn,levee_proxy::tls=debug\"\n{VALID_TAIL}"),
        "levee.toml",
    )
    .unwrap();
    assert_eq!(config.log.format, crate::config::LogFormat::Json);
    assert_eq!(config.log.level, "warn,levee_proxy::tls=debug");
    let errors = Config::from_toml_str(
        &format!("[log]\nformat = \"xml\"\nlevel = \"loud\"\n{VALID_TAIL}"),
        "levee.toml",
    )
    .unwrap_err()
    .to_string();
    assert!(
        errors.contains("levee.toml:2:10: format: unknown log format \"xml\""),
        "{errors}"
    );
    assert!(
        errors.contains("levee.toml:3:9: level: bad directive \"loud\""),
        "{errors}"
    );
}

#[test]
fn access_logs_are_checked_and_http_only() {
    let source = r#"
[[listener]]
name = "web"
listen = "127.0.0.1:8080"
cluster = "app"
access_log = { path = "logs/web.log", format = "combined", buffer = 100 }

[[cluster]]
name = "app"
endpoints = ["127.0.0.1:8000"]
"#;
    let config = Config::from_toml_str(source, "levee.toml").unwrap();
    let log = config.listeners[0].access_log.as_ref().expect("access log");
    assert_eq!(log.format, crate::config::AccessLogFormat::Combined);
    assert_eq!(log.buffer, 100);
    let bad = r#"
[[listener]]
name = "web"
listen = "127.0.0.1:8080"
cluster = "app"
access_log = { format = "xml", buffer = 0 }

[[listener]]
name = "ssh"
listen = "127.0.0.1:2222"
protocol = "tcp"
cluster = "app"
access_log = { path = "stdout" }

[[cluster]]
name = "app"
endpoints = ["127.0.0.1:8000"]
"#;
    let errors = Config::from_toml_str(bad, "levee.toml")
        .unwrap_err()
        .to_string();
    for needle in [
        "access_log: missing key \"path\"",
        "access_log.format: unknown format \"xml\"",
        "access_log.buffer: must be 1 to 1048576 lines",
        "access_log: http listeners only",
    ] {
        assert!(errors.contains(needle), "{needle}: {errors}");
    }
}
