//! `cache` of a `[[cluster]]`.

use std::time::Duration;

use super::{cluster_with, errors};
use crate::config::{CacheSettings, Config};

fn cache_of(source: &str) -> Option<CacheSettings> {
    let config = Config::from_toml_str(source, "levee.toml").expect("valid config");
    config.clusters[0].cache
}

#[test]
fn the_cache_is_off_unless_written() {
    assert_eq!(cache_of(&cluster_with("")), None);
    assert_eq!(
        cache_of(&cluster_with("cache = {}\n")),
        Some(CacheSettings::default())
    );
    let tuned = cache_of(&cluster_with(
        "cache = { max_size = \"1MiB\", max_entry_size = \"64KiB\", default_ttl = \"10s\", stale_if_error = \"0s\" }\n",
    ))
    .expect("on");
    assert_eq!(tuned.max_size, 1024 * 1024);
    assert_eq!(tuned.max_entry_size, 64 * 1024);
    assert_eq!(tuned.default_ttl, Duration::from_secs(10));
    assert_eq!(tuned.stale_if_error, Duration::ZERO);
    assert_eq!(
        cache_of(&cluster_with("cache = { enabled = false }\n")),
        None
    );
}

#[test]
fn every_bad_cache_value_is_reported() {
    let source = cluster_with(
        "[cluster.cache]\nmax_size = \"100B\"\nmax_entry_size = \"1MiB\"\nfill_wait = \"0s\"\nstale_if_error = \"later\"\n",
    );
    assert_eq!(
        errors(&source),
        [
            "levee.toml:5:12: cache.max_size: must be at least 1KiB, got 100 bytes",
            "levee.toml:6:18: cache.max_entry_size: must be at most max_size (100 bytes), got 1048576 bytes",
            "levee.toml:7:13: cache.fill_wait: must be more than 0",
            r#"levee.toml:8:18: cache.stale_if_error: bad duration "later": expected e.g. "250ms" or "10s""#,
        ]
    );
}
