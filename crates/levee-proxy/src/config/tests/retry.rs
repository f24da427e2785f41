//! `retry` of a `[[cluster]]`: defaults, tuning, and every bad value reported
//! at its key.

use std::time::Duration;

use super::{cluster_with, error, errors};
use crate::config::{Config, HedgeSettings, RetrySettings};

fn retry_of(source: &str) -> RetrySettings {
    let config = Config::from_toml_str(source, "levee.toml").expect("valid config");
    config.clusters[0].retry.clone()
}

#[test]
fn retries_are_on_by_default_and_can_be_tuned() {
    assert_eq!(retry_of(&cluster_with("")), RetrySettings::default());
    let retry = retry_of(&cluster_with(
        "retry = { max_attempts = 2, per_try_timeout = \"300ms\", replay_buffer = \"1KiB\", hedge_floor = \"5ms\", hedge_ceiling = \"50ms\", idempotent = true }\n",
    ));
    assert_eq!(retry.policy.max_attempts(), 2);
    assert_eq!(retry.per_try_timeout, Duration::from_millis(300));
    assert_eq!(retry.replay_buffer, 1024);
    assert_eq!(
        retry.hedge,
        Some(HedgeSettings {
            floor: Duration::from_millis(5),
            ceiling: Duration::from_millis(50),
        })
    );
    assert!(retry.idempotent);
    assert_eq!(
        retry_of(&cluster_with("retry = { hedge = \"off\" }\n")).hedge,
        None
    );
}

#[test]
fn every_bad_retry_value_is_reported() {
    let source = cluster_with(
        "[cluster.retry]\nmax_attempts = 0\nper_try_timeout = \"0s\"\nbudget_percent = 150\nreplay_buffer = \"lots\"\nhedge = \"p99\"\n",
    );
    assert_eq!(
        errors(&source),
        [
            "levee.toml:5:16: retry.max_attempts: must be at least 1 (1: never retry)",
            "levee.toml:6:19: retry.per_try_timeout: must be more than 0",
            "levee.toml:7:18: retry.budget_percent: must be between 0 and 100, got 150",
            r#"levee.toml:8:17: retry.replay_buffer: bad size "lots": expected e.g. "64KiB" or "1MB""#,
            r#"levee.toml:9:9: retry.hedge: unknown value "p99": expected "p95" or "off""#,
        ]
    );
}

#[test]
fn bounds_that_contradict_each_other() {
    let source = cluster_with("retry = { hedge_floor = \"2s\" }\n");
    assert_eq!(
        error(&source),
        "levee.toml:4:25: retry.hedge_ceiling: must be at least hedge_floor (1s < 2s)"
    );
    let source = cluster_with("retry = { backoff_base = \"1s\", backoff_max = \"10ms\" }\n");
    assert!(
        error(&source).starts_with("levee.toml:4:46: retry.backoff_max: "),
        "{}",
        error(&source)
    );
}
