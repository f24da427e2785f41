//! Rules between sections: there is a listener, names are unique, listeners
//! name clusters that exist, and no two listeners would bind the same
//! address. Each problem is reported at the later of the two places, naming
//! the earlier one.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;

use toml::Spanned;

use super::keys::DefinedNames;
use super::report::Report;
use super::{AdminSettings, ClusterSettings, ListenerSettings};

/// `[admin]` after validation.
pub(super) struct Admin {
    pub settings: AdminSettings,
    /// Where `listen` is written, if it is.
    pub listen_span: Option<Range<usize>>,
}

/// A `[[listener]]` after validation, with what the checks between sections
/// need: a field is `None` if it is missing or bad (already reported).
pub(super) struct Listener<'r> {
    /// `[[listener]] "web"` or `[[listener]] #2`.
    pub label: &'r str,
    pub name: Option<&'r Spanned<String>>,
    pub listen: Option<Spanned<SocketAddr>>,
    pub cluster: Option<&'r Spanned<String>>,
    /// The `cluster` of each of its routes.
    pub route_clusters: Vec<&'r Spanned<String>>,
    /// Only if every part is valid.
    pub settings: Option<ListenerSettings>,
}

/// A `[[cluster]]` after validation.
pub(super) struct Cluster<'r> {
    pub name: Option<&'r Spanned<String>>,
    /// Only if every part is valid.
    pub settings: Option<ClusterSettings>,
}

/// Without a listener levee would start and serve nothing.
pub(super) fn at_least_one_listener(listeners: &[Listener<'_>], report: &mut Report<'_>) {
    if listeners.is_empty() {
        report.error(0..0, "config defines no [[listener]]");
    }
}

/// `kind` is `"listener"` or `"cluster"`; names identify them in logs,
/// metrics and references.
pub(super) fn unique_names<'r>(
    kind: &str,
    names: impl Iterator<Item = &'r Spanned<String>>,
    report: &mut Report<'_>,
) {
    let mut seen: HashMap<&str, &Spanned<String>> = HashMap::new();
    for name in names {
        match seen.entry(name.get_ref()) {
            Entry::Occupied(first) => {
                let message = format!(
                    "duplicate {kind} name {:?} (first defined at line {})",
                    name.get_ref(),
                    report.line(first.get().span().start)
                );
                report.error(name.span(), message);
            }
            Entry::Vacant(slot) => {
                slot.insert(name);
            }
        }
    }
}

pub(super) fn clusters_are_defined(
    listeners: &[Listener<'_>],
    clusters: &[Cluster<'_>],
    report: &mut Report<'_>,
) {
    let mut defined = DefinedNames::new(
        clusters
            .iter()
            .filter_map(|cluster| cluster.name)
            .map(|name| (name.get_ref().as_str(), ())),
    );
    for listener in listeners {
        for cluster in listener.cluster.iter().chain(&listener.route_clusters) {
            let cluster_name = cluster.get_ref().as_str();
            if defined.get(cluster_name).is_some() {
                continue;
            }
            let hint = defined.hint(cluster_name);
            let message = format!(
                "{} names cluster {cluster_name:?}, which is not defined{hint}",
                who(listener)
            );
            report.error(cluster.span(), message);
        }
    }
}

/// Startup would fail to bind the second of two listeners on one address, so
/// say it now, with both places. The admin listener counts too.
pub(super) fn addresses_are_free(
    admin: &Admin,
    listeners: &[Listener<'_>],
    report: &mut Report<'_>,
) {
    let admin_place = match &admin.listen_span {
        Some(span) => format!("the admin listener (line {})", report.line(span.start)),
        None => "the admin listener (by default)".to_owned(),
    };
    let mut taken = Taken::default();
    taken.insert(admin.settings.listen, admin_place);
    for listener in listeners {
        let Some(listen) = &listener.listen else {
            continue;
        };
        let address = *listen.get_ref();
        match taken.collision(address) {
            Some((other, other_place)) => {
                let message = format!(
                    "{} cannot listen on {address}: {other_place} already listens on {other}",
                    who(listener)
                );
                report.error(listen.span(), message);
            }
            None => {
                let place = format!(
                    "{} (line {})",
                    who(listener),
                    report.line(listen.span().start)
                );
                taken.insert(address, place);
            }
        }
    }
}

/// The addresses listened on so far, by port, so that finding a collision
/// does not compare every pair of listeners (a file can have thousands).
#[derive(Default)]
struct Taken {
    /// In the order taken; the places name them in messages.
    addresses: Vec<(SocketAddr, String)>,
    ports: HashMap<u16, Port>,
}

/// The addresses taken on one port, as indices into `Taken::addresses`.
#[derive(Default)]
struct Port {
    by_ip: HashMap<IpAddr, usize>,
    /// The first address of each family ([IPv4, IPv6]), and the first
    /// wildcard of each: what a wildcard, or an address beside a wildcard,
    /// collides with.
    first: [Option<usize>; 2],
    wildcard: [Option<usize>; 2],
}

impl Taken {
    fn insert(&mut self, address: SocketAddr, place: String) {
        let index = self.addresses.len();
        self.addresses.push((address, place));
        let port = self.ports.entry(address.port()).or_default();
        let family = usize::from(address.is_ipv6());
        port.by_ip.entry(address.ip()).or_insert(index);
        port.first[family].get_or_insert(index);
        if address.ip().is_unspecified() {
            port.wildcard[family].get_or_insert(index);
        }
    }

    /// The earliest address taken that `address` would collide with.
    fn collision(&self, address: SocketAddr) -> Option<(SocketAddr, &str)> {
        let port = self.ports.get(&address.port())?;
        let family = usize::from(address.is_ipv6());
        let same_ip = port.by_ip.get(&address.ip()).copied();
        let beside_wildcard = match address.ip().is_unspecified() {
            true => port.first[family],
            false => port.wildcard[family],
        };
        let index = same_ip.into_iter().chain(beside_wildcard).min()?;
        let (other, place) = &self.addresses[index];
        would_collide(*other, address).then_some((*other, place.as_str()))
    }
}

/// Whether binding both addresses would fail: same port (port 0 picks a free
/// one, so never), and the same IP or a wildcard of the same family.
///
/// `[::]` and `0.0.0.0` on one port are left to the OS: whether they collide
/// depends on `IPV6_V6ONLY`.
fn would_collide(a: SocketAddr, b: SocketAddr) -> bool {
    let same_family = a.is_ipv4() == b.is_ipv4();
    a.port() == b.port()
        && a.port() != 0
        && (a.ip() == b.ip()
            || (same_family && (a.ip().is_unspecified() || b.ip().is_unspecified())))
}

/// `listener "web"`, or the table's label if it has no usable name.
fn who(listener: &Listener<'_>) -> String {
    match listener.name {
        Some(name) => format!("listener {:?}", name.get_ref()),
        None => listener.label.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collide(a: &str, b: &str) -> bool {
        would_collide(a.parse().unwrap(), b.parse().unwrap())
    }

    #[test]
    fn which_addresses_collide() {
        assert!(collide("127.0.0.1:80", "127.0.0.1:80"));
        assert!(collide("0.0.0.0:80", "127.0.0.1:80"));
        assert!(collide("10.0.0.1:80", "0.0.0.0:80"));
        assert!(collide("[::]:80", "[::1]:80"));
        assert!(!collide("127.0.0.1:80", "127.0.0.1:81"));
        assert!(!collide("127.0.0.1:80", "127.0.0.2:80"));
        assert!(!collide("127.0.0.1:0", "127.0.0.1:0"));
        assert!(!collide("0.0.0.0:80", "[::]:80"));
        assert!(!collide("0.0.0.0:80", "[::1]:80"));
    }
}
