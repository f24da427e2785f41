//! `admission` of a `[[cluster]]`: off by default, tuned when written, every
//! bad value reported at its key.

use std::time::Duration;

use super::{cluster_with, errors};
use crate::config::{AdaptiveLimitSettings, Config};

fn cluster_of(source: &str) -> crate::config::ClusterSettings {
    let config = Config::from_toml_str(source, "levee.toml").expect("valid config");
    config.clusters[0].clone()
}

#[test]
fn admission_is_off_unless_written() {
    assert_eq!(cluster_of(&cluster_with("")).admission, None);
    let written = cluster_of(&cluster_with(
        "admission = { max_concurrency = 8, max_queue = 16, queue_timeout = \"50ms\" }\n",
    ));
    let admission = written.admission.expect("on");
    assert_eq!(admission.params.max_concurrency(), 8);
    assert_eq!(admission.params.max_queue(), 16);
    assert_eq!(admission.params.queue_timeout(), Duration::from_millis(50));
    assert_eq!(admission.params.codel_target(), Duration::from_millis(5));
    assert_eq!(admission.adaptive, None);
    let adaptive = cluster_of(&cluster_with(
        "admission = { adaptive = true, min_concurrency = 4 }\n",
    ));
    assert_eq!(
        adaptive.admission.expect("on").adaptive,
        Some(AdaptiveLimitSettings { min_concurrency: 4 })
    );
    let off = cluster_of(&cluster_with("admission = { enabled = false }\n"));
    assert_eq!(off.admission, None);
}

#[test]
fn every_bad_admission_value_is_reported() {
    let source = cluster_with(
        "[cluster.admission]\nenabled = false\nmax_concurrency = 0\nqueue_timeout = \"10ms\"\ncodel_target = \"20ms\"\ncodel_interval = \"soon\"\nmin_concurrency = 5\n",
    );
    assert_eq!(
        errors(&source),
        [
            "levee.toml:6:19: admission.max_concurrency: must be at least 1, got 0",
            "levee.toml:8:16: admission.codel_target: must not exceed queue_timeout (10ms), got 20ms",
            r#"levee.toml:9:18: admission.codel_interval: bad duration "soon": expected e.g. "250ms" or "10s""#,
            "levee.toml:10:19: admission.min_concurrency: must be between 1 and max_concurrency (0), got 5",
        ]
    );
}
