//! The config exactly as written in TOML, before any checking.
//!
//! Every key is optional here, even required ones: a missing key is reported
//! by validation at the table's header, in levee's own words, instead of
//! stopping serde. Values that need parsing (durations, addresses, enum
//! names) are kept as `Spanned<String>` so that validation can report every
//! bad one at its position, not just the first.
//!
//! There is no `deny_unknown_fields`: unknown keys are collected with
//! `serde_ignored` so that all of them are reported (see `document.rs`).
//! A key added here must be documented in `docs/config.md`; a test checks it.

use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;

/// The top-level keys. Each is a section deserialized on its own, so that a
/// bad value in one section does not hide problems in the others.
pub(super) const SECTIONS: [&str; 4] = ["admin", "runtime", "listener", "cluster"];

/// The whole file, one section at a time.
#[derive(Debug, Default)]
pub(super) struct RawConfig {
    /// `[admin]`, if written.
    pub admin: Option<Section<RawAdmin>>,
    /// `[runtime]`, if written.
    pub runtime: Option<Section<RawRuntime>>,
    /// Every `[[listener]]`, in file order.
    pub listener: Vec<Section<RawListener>>,
    /// Every `[[cluster]]`, in file order.
    pub cluster: Vec<Section<RawCluster>>,
}

/// One table of the file, as far as serde could read it.
#[derive(Debug)]
pub(super) struct Section<T> {
    /// How messages name this table: `[admin]`, `[[cluster]] "app"`,
    /// `[[listener]] #2` (when it has no usable name).
    pub label: String,
    /// The table's header (`[[cluster]]`), or the `{ ... }` of an inline
    /// table: where a missing key is reported.
    pub span: Range<usize>,
    /// The keys serde could read. A key whose value had the wrong type is
    /// `None` here and listed in `unreadable`.
    pub raw: T,
    /// Keys present in the file whose value was already reported as being of
    /// the wrong type; they must not be reported as missing as well.
    pub unreadable: Vec<String>,
}

impl<T> Section<T> {
    /// Whether `key` is written in this table but could not be read.
    pub fn is_unreadable(&self, key: &str) -> bool {
        self.unreadable.iter().any(|unreadable| unreadable == key)
    }
}

/// `[admin]`: the admin HTTP listener (health, status, metrics, dashboard,
/// drain).
#[derive(Debug, Default, Deserialize)]
pub(super) struct RawAdmin {
    /// Address the admin listener binds, `"ip:port"`. It has its own port so
    /// it stays up for diagnosis while traffic listeners are closed.
    /// Default `"127.0.0.1:9901"` (loopback: the admin API can drain the node).
    pub listen: Option<Spanned<String>>,
}

/// `[runtime]`: the process.
#[derive(Debug, Default, Deserialize)]
pub(super) struct RawRuntime {
    /// Number of worker threads, at least 1. Default: unset, one per CPU.
    pub worker_threads: Option<Spanned<usize>>,
    /// On shutdown, how long to wait for in-flight requests to finish before
    /// closing their connections. Default `"30s"`.
    pub drain_timeout: Option<Spanned<String>>,
}

/// `[[listener]]`: a socket accepting client traffic for one cluster.
#[derive(Debug, Default, Deserialize)]
pub(super) struct RawListener {
    /// Unique name, used in logs, metrics and `/status`. Required.
    pub name: Option<Spanned<String>>,
    /// Address to bind, `"ip:port"` (`"0.0.0.0:8080"`, `"[::]:8080"`).
    /// Required.
    pub listen: Option<Spanned<String>>,
    /// What the listener speaks: `"http"`. Default `"http"`.
    pub protocol: Option<Spanned<String>>,
    /// Name of the `[[cluster]]` that serves this listener. Required.
    pub cluster: Option<Spanned<String>>,
}

/// `[[cluster]]`: interchangeable endpoints and how to talk to them.
#[derive(Debug, Default, Deserialize)]
pub(super) struct RawCluster {
    /// Unique name, referenced by listeners. Required.
    pub name: Option<Spanned<String>>,
    /// Endpoint addresses, `"host:port"` each, at least one, no duplicates.
    /// Required.
    pub endpoints: Option<Spanned<Vec<Spanned<String>>>>,
    /// Load-balancing policy: `"p2c-ewma"`, `"round-robin"` or
    /// `"least-request"`. Default `"p2c-ewma"`.
    pub balance: Option<Spanned<String>>,
    /// Limit on establishing a connection to an endpoint; more than 0.
    /// Default `"1s"`.
    pub connect_timeout: Option<Spanned<String>>,
    /// Limit from sending a request until the upstream's response head
    /// arrives; on expiry the client gets 504. More than 0. Default `"15s"`.
    pub request_timeout: Option<Spanned<String>>,
    /// How long an idle pooled upstream connection is kept; more than 0.
    /// Default `"90s"`.
    pub idle_timeout: Option<Spanned<String>>,
    /// Most idle pooled connections kept per endpoint; 0 disables pooling.
    /// Default 128.
    pub max_idle_per_endpoint: Option<usize>,
    /// Time constant of the latency average (peak EWMA) that `p2c-ewma`
    /// compares endpoints by: how quickly an old latency is forgotten. More
    /// than 0. Default `"10s"`.
    pub ewma_decay: Option<Spanned<String>>,
}
