//! The config exactly as written in TOML, before any checking: the whole
//! file ([`RawConfig`]), one section at a time (see `table.rs` for what the
//! sections' raw structs share).

use super::admin::RawAdmin;
use super::alert::RawAlert;
use super::cluster::RawCluster;
use super::listener::RawListener;
use super::log::RawLog;
use super::readiness::RawReadiness;
use super::runtime::RawRuntime;
use super::store::RawStore;
use super::table::Section;

/// The top-level keys. Each is a section deserialized on its own, so that a
/// bad value in one section does not hide problems in the others.
pub(super) const SECTIONS: [&str; 8] = [
    "admin",
    "runtime",
    "log",
    "listener",
    "cluster",
    "readiness",
    "alert",
    "store",
];

/// The whole file, one section at a time.
#[derive(Debug, Default)]
pub(super) struct RawConfig {
    /// `[admin]`, if written.
    pub admin: Option<Section<RawAdmin>>,
    /// `[runtime]`, if written.
    pub runtime: Option<Section<RawRuntime>>,
    /// `[log]`, if written.
    pub log: Option<Section<RawLog>>,
    /// Every `[[listener]]`, in file order.
    pub listener: Vec<Section<RawListener>>,
    /// Every `[[cluster]]`, in file order.
    pub cluster: Vec<Section<RawCluster>>,
    /// `[readiness]`, if written.
    pub readiness: Option<Section<RawReadiness>>,
    /// Every `[[alert]]`, in file order.
    pub alert: Vec<Section<RawAlert>>,
    /// `[store]`, if written.
    pub store: Option<Section<RawStore>>,
}
