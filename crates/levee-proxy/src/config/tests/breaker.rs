//! `breaker` of a `[[cluster]]`.

use std::time::Duration;

use levee_core::breaker::BreakerParams;

use super::{cluster_with, errors};
use crate::config::{Config, FleetBreakerSettings, OnUnreachable, StoreKind};

fn breaker_of(source: &str) -> Option<BreakerParams> {
    let config = Config::from_toml_str(source, "levee.toml").expect("valid config");
    config.clusters[0].breaker.clone()
}

#[test]
fn a_breaker_exists_only_when_written() {
    assert_eq!(breaker_of(&cluster_with("")), None);
    assert_eq!(
        breaker_of(&cluster_with("breaker = {}\n")),
        Some(BreakerParams::default())
    );
    let tuned = breaker_of(&cluster_with(
        "breaker = { consecutive_failures = 0, failure_rate = 0.25, slow_call_rate = 0.5, slow_call_duration = \"200ms\", open_for = \"2s\", half_open_trials = 1 }\n",
    ))
    .expect("on");
    assert_eq!(tuned.consecutive_failures(), 0);
    assert_eq!(tuned.failure_rate(), Some(0.25));
    assert_eq!(tuned.slow_call_rate(), Some(0.5));
    assert_eq!(tuned.slow_call_duration(), Duration::from_millis(200));
    assert_eq!(tuned.open_for(), Duration::from_secs(2));
    assert_eq!(tuned.half_open_trials(), 1);
    assert_eq!(
        breaker_of(&cluster_with("breaker = { enabled = false }\n")),
        None
    );
}

#[test]
fn every_bad_breaker_value_is_reported() {
    let source = cluster_with(
        "[cluster.breaker]\nfailure_rate = 1.5\nmin_calls = 0\nopen_for = \"forever\"\nopen_multiplier = 0.5\nhalf_open_trials = 0\n",
    );
    let errors = errors(&source);
    assert_eq!(errors.len(), 5, "{errors:#?}");
    for key in [
        "breaker.failure_rate",
        "breaker.min_calls",
        "breaker.open_for",
        "breaker.open_multiplier",
        "breaker.half_open_trials",
    ] {
        assert!(
            errors.iter().any(|error| error.contains(key)),
            "{key}: {errors:#?}"
        );
    }
}

#[test]
fn a_shared_breaker_and_its_store_are_read() {
    let source = format!(
        "{}[store]\nkind = \"redis\"\nurl = \"redis://10.0.0.5:6379\"\nnamespace = \"shop\"\ninstance_id = \"gw-1\"\non_unreachable = \"open\"\n",
        cluster_with("breaker = { shared = true, quorum = 2, protect_locally = false }\n")
    );
    let config = Config::from_toml_str(&source, "levee.toml").expect("valid config");
    let fleet = config.clusters[0].breaker_fleet;
    assert!(fleet.shared);
    assert_eq!(fleet.quorum, 2);
    assert!(!fleet.protect_locally);
    assert_eq!(config.store.kind, StoreKind::Redis);
    assert_eq!(config.store.url, "redis://10.0.0.5:6379");
    assert_eq!(config.store.namespace, "shop");
    assert_eq!(config.store.instance_id, "gw-1");
    assert_eq!(config.store.on_unreachable, OnUnreachable::Open);

    let defaults =
        Config::from_toml_str(&cluster_with("breaker = {}\n"), "levee.toml").expect("valid config");
    assert_eq!(
        defaults.clusters[0].breaker_fleet,
        FleetBreakerSettings::default()
    );
    assert_eq!(defaults.store.kind, StoreKind::Memory);
    assert_eq!(defaults.store.on_unreachable, OnUnreachable::Local);
}

#[test]
fn every_bad_store_value_is_reported() {
    let source = format!(
        "{}[store]\nkind = \"etcd\"\nurl = \"http://x\"\nnamespace = \"a b\"\ninstance_id = \"\"\non_unreachable = \"maybe\"\n",
        cluster_with("breaker = { quorum = 0 }\n")
    );
    let errors = errors(&source);
    assert_eq!(errors.len(), 6, "{errors:#?}");
    for key in [
        "breaker.quorum",
        "kind:",
        "url:",
        "namespace:",
        "instance_id:",
        "on_unreachable:",
    ] {
        assert!(
            errors.iter().any(|error| error.contains(key)),
            "{key}: {errors:#?}"
        );
    }
}

#[test]
fn sentinels_and_shared_health_are_read_and_checked() {
    let source = format!(
        "{}[store]\nkind = \"redis\"\nsentinels = [\"10.0.0.7:26379\", \"10.0.0.8:26379\"]\nmaster_name = \"levee\"\n",
        cluster_with("share_health = true\nhealth_quorum = 3\nsource_address = \"127.0.0.2\"\n")
    );
    let config = Config::from_toml_str(&source, "levee.toml").expect("valid config");
    assert_eq!(
        config.store.sentinel,
        Some((
            vec!["10.0.0.7:26379".to_owned(), "10.0.0.8:26379".to_owned()],
            "levee".to_owned()
        ))
    );
    let cluster = &config.clusters[0];
    assert!(cluster.shares_health(config.store.kind));
    assert_eq!(cluster.health_quorum, 3);
    assert_eq!(cluster.source_address, Some("127.0.0.2".parse().unwrap()));

    // Off by default with the memory store, on with Redis.
    let memory = Config::from_toml_str(&cluster_with(""), "levee.toml").expect("valid");
    assert!(!memory.clusters[0].shares_health(memory.store.kind));
    let redis = Config::from_toml_str(
        &format!("{}[store]\nkind = \"redis\"\n", cluster_with("")),
        "levee.toml",
    )
    .expect("valid");
    assert!(redis.clusters[0].shares_health(redis.store.kind));
    assert_eq!(redis.clusters[0].health_quorum, 2);

    let source = format!(
        "{}[store]\nkind = \"redis\"\nsentinels = [\"no-port\"]\n",
        cluster_with("health_quorum = 0\nsource_address = \"nowhere\"\n")
    );
    let errors = errors(&source);
    for key in [
        "health_quorum:",
        "source_address:",
        "sentinels: needs master_name",
        "\"no-port\" is not host:port",
    ] {
        assert!(
            errors.iter().any(|error| error.contains(key)),
            "{key}: {errors:#?}"
        );
    }
}

#[test]
fn per_endpoint_breakers_are_off_unless_asked_for() {
    let per_endpoint = |lines: &str| {
        let config = Config::from_toml_str(&cluster_with(lines), "levee.toml").expect("valid");
        config.clusters[0].breaker_per_endpoint
    };
    assert!(!per_endpoint(""));
    assert!(!per_endpoint("breaker = {}\n"));
    assert!(per_endpoint("breaker = { per_endpoint = true }\n"));
    assert!(!per_endpoint("breaker = { per_endpoint = false }\n"));
    assert_eq!(
        errors(&cluster_with("breaker = { per_endpoint = 1 }\n")).len(),
        1
    );
}
