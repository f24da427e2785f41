//! `[readiness]`, `[[readiness.probe]]`, `when_impaired` and `[[alert]]`:
//! good values are read, bad ones reported at their position.

use std::time::Duration;

use levee_probe::{ProbeKind, ProbeTarget};

use super::{VALID_TAIL, error, errors};
use crate::config::{Config, WhenImpaired};

const CLUSTER: &str = r#"
[[listener]]
name = "web"
listen = "127.0.0.1:7100"
cluster = "app"
when_impaired = "reject-writes"

[[cluster]]
name = "app"
endpoints = ["10.0.0.1:8000", "10.0.0.2:8000", "10.0.0.3:8000"]
"#;

#[test]
fn readiness_criteria_probes_and_alerts_are_read() {
    let source = format!(
        "{CLUSTER}
[readiness]
min_healthy = {{ app = 2 }}
required_endpoints = [\"app/10.0.0.1:8000\"]

[[readiness.probe]]
name = \"sessions\"
kind = \"memcached\"
address = \"127.0.0.1:11211\"
interval = \"1s\"
fall = 1

[[readiness.probe]]
name = \"search\"
kind = \"http\"
address = \"search:9200\"
required = false

[[alert]]
url = \"http://127.0.0.1:9000/hook\"
events = [\"readiness\"]
"
    );
    let config = Config::from_toml_str(&source, "levee.toml").expect("valid");
    assert_eq!(
        config.listeners[0].when_impaired,
        WhenImpaired::RejectWrites
    );
    let readiness = &config.readiness;
    assert_eq!(readiness.min_healthy, [("app".to_owned(), 2)]);
    assert_eq!(
        readiness.required_endpoints[0].to_string(),
        "app/10.0.0.1:8000"
    );
    let sessions = &readiness.probes[0];
    assert_eq!(
        sessions.target,
        ProbeTarget {
            kind: ProbeKind::Memcached,
            address: "127.0.0.1:11211".into()
        }
    );
    assert!(sessions.required);
    assert_eq!(sessions.params.interval(), Duration::from_secs(1));
    assert_eq!(sessions.params.timeout(), Duration::from_secs(2));
    assert_eq!((sessions.params.rise(), sessions.params.fall()), (2, 1));
    let search = &readiness.probes[1];
    assert_eq!(search.target.kind, ProbeKind::Http { path: "/".into() });
    assert!(!search.required);
    assert_eq!(config.alerts[0].url, "http://127.0.0.1:9000/hook");
    assert_eq!(config.alerts[0].events, Some(vec!["readiness".to_owned()]));
}

#[test]
fn unknown_clusters_and_endpoints_are_reported_at_their_place() {
    let source = format!(
        "{CLUSTER}
[readiness]
min_healthy = {{ ap = 2 }}
required_endpoints = [\"app/10.0.0.9:8000\", \"nope/1.2.3.4:5\", \"no-slash\"]
"
    );
    let found = errors(&source);
    assert_eq!(found.len(), 4, "{found:#?}");
    assert!(
        found[0].starts_with(
            "levee.toml:13:22: min_healthy: cluster \"ap\" is not defined (did you mean \"app\"?)"
        ),
        "{found:#?}"
    );
    assert!(
        found[1].contains(
            "14:23: required_endpoints: cluster \"app\" has no endpoint \"10.0.0.9:8000\""
        ),
        "{found:#?}"
    );
    assert!(
        found[2].contains("cluster \"nope\" is not defined"),
        "{found:#?}"
    );
    assert!(
        found[3].contains("\"no-slash\" is not \"<cluster>/<endpoint>\""),
        "{found:#?}"
    );
}

#[test]
fn a_min_healthy_the_cluster_cannot_reach_is_an_error() {
    let message = error(&format!(
        "{CLUSTER}\n[readiness]\nmin_healthy = {{ app = 4 }}\n"
    ));
    assert!(
        message.contains("min_healthy.app: 4 is more than the cluster's 3 endpoints"),
        "{message}"
    );
    let message = error(&format!(
        "{CLUSTER}\n[readiness]\nmin_healthy = {{ app = 0 }}\n"
    ));
    assert!(
        message.contains("min_healthy.app: must be at least 1"),
        "{message}"
    );
}

#[test]
fn bad_probes_are_reported_at_their_keys() {
    let source = format!(
        "[readiness]
[[readiness.probe]]
name = \"a\"
kind = \"mongodb\"
address = \"x:1\"

[[readiness.probe]]
name = \"a\"
kind = \"redis\"
address = \"x\"
path = \"/\"
rise = 0
interval = \"0s\"

[[readiness.probe]]
kind = \"tcp\"
{VALID_TAIL}"
    );
    let found = errors(&source);
    let expect = [
        "levee.toml:4:8: unknown probe kind \"mongodb\"",
        "levee.toml:8:8: duplicate probe name \"a\" (first defined at line 3)",
        "levee.toml:10:11: address:",
        "levee.toml:11:8: path: only an http probe has a path",
        "levee.toml:12:8: rise: must be at least 1",
        "levee.toml:13:12: interval: must be more than 0",
    ];
    for needle in expect {
        assert!(
            found.iter().any(|e| e.starts_with(needle)),
            "{needle} not in {found:#?}"
        );
    }
    assert!(
        found
            .iter()
            .any(|e| e.contains("missing key \"name\" in [[readiness.probe]]")),
        "{found:#?}"
    );
    assert!(
        found
            .iter()
            .any(|e| e.contains("missing key \"address\" in [[readiness.probe]]")),
        "{found:#?}"
    );
}

#[test]
fn when_impaired_values_are_checked() {
    // The listener is the last table, so the appended key lands in it.
    const LISTENER_LAST: &str = "[[cluster]]\nname = \"ok\"\nendpoints = [\"127.0.0.1:7001\"]\n\n[[listener]]\nname = \"ok\"\nlisten = \"127.0.0.1:7000\"\ncluster = \"ok\"\n";
    let bad = format!("{LISTENER_LAST}when_impaired = \"explode\"\n");
    assert!(error(&bad).contains("unknown when_impaired \"explode\""));
    let tcp = format!("{LISTENER_LAST}protocol = \"tcp\"\nwhen_impaired = \"reject-writes\"\n");
    let message = error(&tcp);
    assert!(
        message.contains("when_impaired: \"reject-writes\" rejects HTTP requests"),
        "{message}"
    );
    let tcp_close = format!("{LISTENER_LAST}protocol = \"tcp\"\nwhen_impaired = \"close\"\n");
    assert!(errors(&tcp_close).is_empty());
}

#[test]
fn bad_alerts_are_reported() {
    let source = format!(
        "{VALID_TAIL}
[[alert]]
url = \"https://hooks.example/x\"

[[alert]]
url = \"http://127.0.0.1:1/\"
events = [\"readyness\"]

[[alert]]
events = []
"
    );
    let found = errors(&source);
    assert_eq!(found.len(), 3, "{found:#?}");
    assert!(found[0].contains("is not an http:// URL"), "{found:#?}");
    assert!(
        found[1].contains("unknown event kind \"readyness\" (did you mean \"readiness\"?)"),
        "{found:#?}"
    );
    assert!(
        found[2].contains("missing key \"url\" in [[alert]]"),
        "{found:#?}"
    );
}
