//! The admin listener (`[admin]`): its raw table, validation and settings.

use std::net::{Ipv4Addr, SocketAddr};

use serde::Deserialize;
use toml::Spanned;

use super::checks::Admin;
use super::report::Report;
use super::table::{RawTable, Section};
use super::values::socket_addr;

/// `[admin]`: the admin HTTP listener (health, status, metrics, dashboard,
/// drain).
#[derive(Debug, Default, Deserialize)]
pub(super) struct RawAdmin {
    /// Address the admin listener binds, `"ip:port"`. It has its own port so
    /// it stays up for diagnosis while traffic listeners are closed.
    /// Default `"127.0.0.1:9901"` (loopback: the admin API can drain the node).
    pub listen: Option<Spanned<String>>,
}

impl RawTable for RawAdmin {}
/// `[admin]`: the admin HTTP listener (`/live`, `/ready`, `/status`,
/// `/metrics`, dashboard).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminSettings {
    /// Where the admin listener binds. It has a port of its own so that it
    /// stays up for diagnosis while traffic listeners are closed.
    pub listen: SocketAddr,
}

impl AdminSettings {
    /// Loopback only by default: the admin API can drain the node.
    pub const DEFAULT_LISTEN: SocketAddr =
        SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 9901);
}

impl Default for AdminSettings {
    fn default() -> AdminSettings {
        AdminSettings {
            listen: AdminSettings::DEFAULT_LISTEN,
        }
    }
}

pub(super) fn admin(section: Option<&Section<RawAdmin>>, report: &mut Report<'_>) -> Admin {
    let listen = section.and_then(|section| section.raw.listen.as_ref());
    Admin {
        settings: AdminSettings {
            listen: listen
                .and_then(|listen| socket_addr(listen, "listen", report))
                .map_or(AdminSettings::DEFAULT_LISTEN, Spanned::into_inner),
        },
        listen_span: listen.map(Spanned::span),
    }
}
