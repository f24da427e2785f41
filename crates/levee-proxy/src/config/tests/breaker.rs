//! `breaker` of a `[[cluster]]`.

use std::time::Duration;

use levee_core::breaker::BreakerParams;

use super::{cluster_with, errors};
use crate::config::Config;

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
