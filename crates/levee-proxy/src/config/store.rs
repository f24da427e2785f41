//! Where shared breakers keep their fleet state (`[store]`): its raw table,
//! validation and settings.

use serde::Deserialize;
use toml::Spanned;

use super::report::Report;
use super::table::{RawTable, Section};

/// `[store]`: where shared breaker state lives.
#[derive(Debug, Default, Deserialize)]
pub(super) struct RawStore {
    /// `"memory"` (this process) or `"redis"` (a fleet). Default `"memory"`.
    pub kind: Option<Spanned<String>>,
    /// Redis URL. Default `"redis://127.0.0.1:6379"`.
    pub url: Option<Spanned<String>>,
    /// Prefix of every key; non-empty, no spaces. Default `"levee"`.
    pub namespace: Option<Spanned<String>>,
    /// This instance's id in the fleet, unique. Default `"HOSTNAME:pid"`.
    pub instance_id: Option<Spanned<String>>,
    /// `"local"`, `"open"` or `"closed"`: what shared breakers do while the
    /// store is unreachable. Default `"local"`.
    pub on_unreachable: Option<Spanned<String>>,
    /// Redis Sentinel: `host:port` of each sentinel; the master is asked of
    /// them at every connection. Needs `master_name`.
    pub sentinels: Option<Spanned<Vec<Spanned<String>>>>,
    /// The name the sentinels monitor the master under.
    pub master_name: Option<Spanned<String>>,
}
impl RawTable for RawStore {}

/// `[store]`: where breakers marked `shared` keep their fleet state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreSettings {
    /// `memory` (this process only) or `redis` (a fleet).
    pub kind: StoreKind,
    /// `redis://host:port/db`, used when `kind = "redis"`.
    pub url: String,
    /// Prefix of every key: fleets sharing a Redis but not their breakers
    /// use different namespaces.
    pub namespace: String,
    /// This instance's id in the fleet (what the quorum counts).
    pub instance_id: String,
    /// What shared breakers do while the store cannot be reached.
    pub on_unreachable: OnUnreachable,
    /// Redis Sentinel: the sentinels (`host:port`) and the master's name;
    /// `None`: `url` is the server.
    pub sentinel: Option<(Vec<String>, String)>,
}

impl StoreSettings {
    /// The default Redis URL.
    pub const DEFAULT_URL: &str = "redis://127.0.0.1:6379";
    /// The default namespace.
    pub const DEFAULT_NAMESPACE: &str = "levee";

    /// `HOSTNAME:pid`, or `levee:pid` without a host name.
    pub fn default_instance_id() -> String {
        let host = std::env::var("HOSTNAME")
            .ok()
            .filter(|host| !host.is_empty())
            .unwrap_or_else(|| "levee".to_owned());
        format!("{host}:{}", std::process::id())
    }
}

impl Default for StoreSettings {
    fn default() -> Self {
        StoreSettings {
            kind: StoreKind::Memory,
            url: StoreSettings::DEFAULT_URL.to_owned(),
            namespace: StoreSettings::DEFAULT_NAMESPACE.to_owned(),
            instance_id: StoreSettings::default_instance_id(),
            on_unreachable: OnUnreachable::Local,
            sentinel: None,
        }
    }
}

/// `kind` of `[store]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StoreKind {
    /// In this process: shared breakers are shared by nobody else.
    #[default]
    Memory,
    /// A Redis server shared by the fleet.
    Redis,
}

impl StoreKind {
    /// `memory` or `redis`.
    pub fn as_str(self) -> &'static str {
        match self {
            StoreKind::Memory => "memory",
            StoreKind::Redis => "redis",
        }
    }
}

/// `on_unreachable` of `[store]`: how shared breakers behave while the
/// store is down (its state is then stale).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnUnreachable {
    /// Each instance follows its own local breaker (the default: an outage
    /// of the store neither stops traffic nor removes protection).
    #[default]
    Local,
    /// Every shared breaker fails fast as if open.
    Open,
    /// Every shared breaker lets everything through.
    Closed,
}

impl OnUnreachable {
    /// `local`, `open` or `closed`.
    pub fn as_str(self) -> &'static str {
        match self {
            OnUnreachable::Local => "local",
            OnUnreachable::Open => "open",
            OnUnreachable::Closed => "closed",
        }
    }
}
pub(super) fn store(section: Option<&Section<RawStore>>, report: &mut Report<'_>) -> StoreSettings {
    let mut settings = StoreSettings::default();
    let Some(Section { raw, .. }) = section else {
        return settings;
    };
    if let Some(kind) = &raw.kind {
        match kind.get_ref().as_str() {
            "memory" => settings.kind = StoreKind::Memory,
            "redis" => settings.kind = StoreKind::Redis,
            other => report.error(
                kind.span(),
                format!("kind: {other:?} is not a store: expected \"memory\" or \"redis\""),
            ),
        }
    }
    if let Some(url) = &raw.url {
        let text = url.get_ref();
        if text.starts_with("redis://") || text.starts_with("rediss://") {
            settings.url = text.clone();
        } else {
            report.error(
                url.span(),
                format!("url: {text:?} is not a Redis URL (redis://host:port)"),
            );
        }
    }
    if let Some(namespace) = &raw.namespace {
        let text = namespace.get_ref();
        if text.is_empty() || text.contains(char::is_whitespace) {
            report.error(
                namespace.span(),
                "namespace: must be non-empty, without spaces",
            );
        } else {
            settings.namespace = text.clone();
        }
    }
    if let Some(id) = &raw.instance_id {
        let text = id.get_ref();
        if text.trim().is_empty() {
            report.error(
                id.span(),
                "instance_id: must be non-empty (leave it unset for HOSTNAME:pid)",
            );
        } else {
            settings.instance_id = text.clone();
        }
    }
    if let Some(fallback) = &raw.on_unreachable {
        match fallback.get_ref().as_str() {
            "local" => settings.on_unreachable = OnUnreachable::Local,
            "open" => settings.on_unreachable = OnUnreachable::Open,
            "closed" => settings.on_unreachable = OnUnreachable::Closed,
            other => report.error(
                fallback.span(),
                format!("on_unreachable: {other:?}: expected \"local\", \"open\" or \"closed\""),
            ),
        }
    }
    settings.sentinel = sentinel(raw, report);
    settings
}

/// `sentinels` and `master_name`, which go together.
fn sentinel(raw: &RawStore, report: &mut Report<'_>) -> Option<(Vec<String>, String)> {
    let addresses = raw.sentinels.as_ref().map(|sentinels| {
        let mut addresses = Vec::new();
        for address in sentinels.get_ref() {
            let text = address.get_ref();
            let valid = text
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
            if valid {
                addresses.push(text.clone());
            } else {
                report.error(
                    address.span(),
                    format!("sentinels: {text:?} is not host:port"),
                );
            }
        }
        if sentinels.get_ref().is_empty() {
            report.error(sentinels.span(), "sentinels: name at least one sentinel");
        }
        (sentinels.span(), addresses)
    });
    match (addresses, &raw.master_name) {
        (None, None) => None,
        (Some((span, _)), None) => {
            report.error(
                span,
                "sentinels: needs master_name, the name the sentinels monitor the master under",
            );
            None
        }
        (None, Some(name)) => {
            report.error(
                name.span(),
                "master_name: needs sentinels, the `host:port` of each sentinel",
            );
            None
        }
        (Some((_, addresses)), Some(name)) => {
            if name.get_ref().trim().is_empty() {
                report.error(name.span(), "master_name: must be non-empty");
                return None;
            }
            (!addresses.is_empty()).then(|| (addresses, name.get_ref().clone()))
        }
    }
}
