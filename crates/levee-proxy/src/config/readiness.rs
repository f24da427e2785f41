//! When this node is ready (`[readiness]`, `[[readiness.probe]]`): the raw
//! tables, validation and settings.
//!
//! `[readiness]` and `[[alert]]`: criteria that name clusters and endpoints
//! defined elsewhere in the file, dependency probes, and webhooks.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::ops::Range;
use std::time::Duration;

use levee_core::health::HealthCheckParams;
use levee_probe::{ProbeKind, ProbeTarget};
use serde::Deserialize;
use toml::Spanned;

use super::EndpointAddress;
use super::checks::Cluster;
use super::keys::DefinedNames;
use super::keys::fields_of;
use super::report::Report;
use super::table::RawTable;
use super::table::Section;
use super::values::{Zero, duration};

/// `[readiness]`: when this node counts as ready, degraded or impaired.
#[derive(Debug, Default, Deserialize)]
pub(super) struct RawReadiness {
    /// Cluster name → least number of available endpoints, each at least 1
    /// and at most the cluster's endpoint count (`{ app = 2 }`). Default:
    /// none.
    pub min_healthy: Option<Spanned<std::collections::BTreeMap<String, Spanned<i64>>>>,
    /// Endpoints that must each be available, written
    /// `"<cluster>/<endpoint>"` (`"app/10.0.0.1:8000"`). Default: none.
    pub required_endpoints: Option<Spanned<Vec<Spanned<String>>>>,
    /// Dependency probes (`[[readiness.probe]]`). Default: none.
    pub probe: Option<Vec<Spanned<RawProbe>>>,
}

impl RawTable for RawReadiness {
    fn keys_at(path: &[&str]) -> &'static [&'static str] {
        match path {
            [] => fields_of::<Self>(),
            ["probe", rest @ ..] => RawProbe::keys_at(rest),
            _ => &[],
        }
    }
}

/// `[[readiness.probe]]`: a named dependency probe.
#[derive(Debug, Default, Deserialize)]
pub(super) struct RawProbe {
    /// Unique name. Required.
    pub name: Option<Spanned<String>>,
    /// `"http"`, `"tcp"`, `"redis"` or `"memcached"`. Required.
    pub kind: Option<Spanned<String>>,
    /// `"host:port"` of the dependency. Required.
    pub address: Option<Spanned<String>>,
    /// `false`: a failing probe only degrades the node. Default `true`.
    pub required: Option<bool>,
    /// Time between probes; more than 0. Default `"5s"`.
    pub interval: Option<Spanned<String>>,
    /// Limit on one probe; more than 0. Default `"2s"`.
    pub timeout: Option<Spanned<String>>,
    /// Passes in a row that make a failed probe pass again; at least 1.
    /// Default 2.
    pub rise: Option<Spanned<u32>>,
    /// Failures in a row that fail a passing probe; at least 1. Default 2.
    pub fall: Option<Spanned<u32>>,
    /// `http` probes only: the path requested; any 2xx passes. Default
    /// `"/"`.
    pub path: Option<Spanned<String>>,
}

impl RawTable for RawProbe {}
/// `[readiness]`: the criteria that decide whether this node is ready,
/// degraded or impaired (see [`levee_core::readiness`]).
///
/// When a breaker is shared, the gateway adds the optional criterion
/// `store` (the shared breaker store is reachable) on its own: it needs no
/// key here.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ReadinessSettings {
    /// Clusters that need at least this many available (healthy, not
    /// ejected) endpoints, in file order.
    pub min_healthy: Vec<(String, usize)>,
    /// Endpoints that must each be available.
    pub required_endpoints: Vec<RequiredEndpoint>,
    /// Dependency probes, in file order; names are unique.
    pub probes: Vec<ProbeSettings>,
}

/// An endpoint of a cluster that must be available: `"app/10.0.0.1:8000"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequiredEndpoint {
    /// The cluster.
    pub cluster: String,
    /// One of its endpoints.
    pub endpoint: EndpointAddress,
}

impl fmt::Display for RequiredEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.cluster, self.endpoint)
    }
}

/// `[[readiness.probe]]`: a named dependency probe.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeSettings {
    /// Unique name, in `/ready`, `/status`, metrics and events.
    pub name: String,
    /// What is probed and how. Probes with equal targets run once.
    pub target: levee_probe::ProbeTarget,
    /// A required probe that fails impairs the node; an optional one only
    /// degrades it.
    pub required: bool,
    /// Interval, timeout, rise and fall (no separate transition interval and
    /// no jitter: a failing dependency is seen within interval + timeout).
    pub params: HealthCheckParams,
}

impl ProbeSettings {
    /// Default probe interval.
    pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);
    /// Default probe timeout.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
    /// Default rise and fall.
    pub const DEFAULT_RISE_FALL: u32 = 2;
}

/// `[readiness]`; `clusters` are the validated clusters (for names and
/// endpoints). Bad parts are reported and left out.
pub(super) fn readiness(
    section: Option<&Section<RawReadiness>>,
    clusters: &[Cluster<'_>],
    report: &mut Report<'_>,
) -> ReadinessSettings {
    let Some(section) = section else {
        return ReadinessSettings::default();
    };
    let raw = &section.raw;
    // Cluster name → index in `clusters`.
    let mut defined = DefinedNames::new(
        clusters
            .iter()
            .enumerate()
            .filter_map(|(index, cluster)| Some((cluster.name?.get_ref().as_str(), index))),
    );
    let mut settings = ReadinessSettings::default();
    if let Some(min_healthy) = &raw.min_healthy {
        for (cluster_name, count) in min_healthy.get_ref() {
            let span = count.span();
            let Some(index) = find_cluster(
                &mut defined,
                cluster_name,
                span.clone(),
                "min_healthy",
                report,
            ) else {
                continue;
            };
            let cluster = &clusters[index];
            let endpoints = cluster.settings.as_ref().map(|s| s.endpoints.len());
            match (usize::try_from(*count.get_ref()), endpoints) {
                (Ok(0), _) => report.error(
                    span,
                    format!("min_healthy.{cluster_name}: must be at least 1"),
                ),
                (Ok(n), Some(total)) if n > total => report.error(
                    span,
                    format!(
                        "min_healthy.{cluster_name}: {n} is more than the cluster's {total} endpoints: the node could never be ready"
                    ),
                ),
                (Ok(n), _) => settings.min_healthy.push((cluster_name.clone(), n)),
                (Err(_), _) => report.error(
                    span,
                    format!("min_healthy.{cluster_name}: must be at least 1, got {}", count.get_ref()),
                ),
            }
        }
    }
    if let Some(endpoints) = &raw.required_endpoints {
        // Each cluster's endpoints as a set, made when first needed: a
        // list searched for every required endpoint would be quadratic.
        let mut endpoint_sets: Vec<Option<HashSet<&EndpointAddress>>> = vec![None; clusters.len()];
        for text in endpoints.get_ref() {
            let Some((index, endpoint)) = required_endpoint(text, &mut defined, report) else {
                continue;
            };
            let Some(cluster_settings) = &clusters[index].settings else {
                continue;
            };
            let set = endpoint_sets[index]
                .get_or_insert_with(|| cluster_settings.endpoints.iter().collect());
            if set.contains(&endpoint.endpoint) {
                settings.required_endpoints.push(endpoint);
            } else {
                report.error(
                    text.span(),
                    format!(
                        "required_endpoints: cluster {:?} has no endpoint {:?}",
                        endpoint.cluster,
                        endpoint.endpoint.to_string()
                    ),
                );
            }
        }
    }
    let mut names: HashMap<&str, &Spanned<String>> = HashMap::new();
    for probe_table in raw.probe.iter().flatten() {
        if let Some(name) = &probe_table.get_ref().name {
            if let Some(first) = names.get(name.get_ref().as_str()) {
                let message = format!(
                    "duplicate probe name {:?} (first defined at line {})",
                    name.get_ref(),
                    report.line(first.span().start)
                );
                report.error(name.span(), message);
            } else {
                names.insert(name.get_ref(), name);
            }
        }
        if let Some(probe) = probe(probe_table, report) {
            settings.probes.push(probe);
        }
    }
    settings
}

/// The index of the cluster called `name`, or `None` (reported at `span`).
fn find_cluster(
    defined: &mut DefinedNames<'_, usize>,
    name: &str,
    span: Range<usize>,
    key: &str,
    report: &mut Report<'_>,
) -> Option<usize> {
    let found = defined.get(name).copied();
    if found.is_none() {
        let hint = defined.hint(name);
        report.error(
            span,
            format!("{key}: cluster {name:?} is not defined{hint}"),
        );
    }
    found
}

/// `"app/10.0.0.1:8000"`: a defined cluster (its index) and an endpoint,
/// which the caller looks for in the cluster.
fn required_endpoint(
    text: &Spanned<String>,
    defined: &mut DefinedNames<'_, usize>,
    report: &mut Report<'_>,
) -> Option<(usize, RequiredEndpoint)> {
    let Some((cluster_name, endpoint)) = text.get_ref().split_once('/') else {
        report.error(
            text.span(),
            format!(
                "required_endpoints: {:?} is not \"<cluster>/<endpoint>\", e.g. \"app/10.0.0.1:8000\"",
                text.get_ref()
            ),
        );
        return None;
    };
    let index = find_cluster(
        defined,
        cluster_name,
        text.span(),
        "required_endpoints",
        report,
    )?;
    let endpoint: EndpointAddress = endpoint
        .parse()
        .map_err(|error| report.error(text.span(), format!("required_endpoints: {error}")))
        .ok()?;
    Some((
        index,
        RequiredEndpoint {
            cluster: cluster_name.to_owned(),
            endpoint,
        },
    ))
}

/// One `[[readiness.probe]]`; `None` if any part is bad (reported).
fn probe(table: &Spanned<RawProbe>, report: &mut Report<'_>) -> Option<ProbeSettings> {
    let raw = table.get_ref();
    let label = match &raw.name {
        Some(name) => format!("[[readiness.probe]] {:?}", name.get_ref()),
        None => "[[readiness.probe]]".to_owned(),
    };
    // A probe table is not a `Section`, so missing keys are reported here.
    let missing = |report: &mut Report<'_>, key: &str| {
        report.error(table.span(), format!("missing key {key:?} in {label}"));
    };
    let name = match &raw.name {
        Some(name) if name.get_ref().trim().is_empty() => {
            report.error(name.span(), "name: must not be empty");
            None
        }
        Some(name) => Some(name.get_ref().clone()),
        None => {
            missing(report, "name");
            None
        }
    };
    let kind = match &raw.kind {
        None => {
            missing(report, "kind");
            None
        }
        Some(kind) => match kind.get_ref().as_str() {
            "http" | "tcp" | "redis" | "memcached" => Some(kind),
            other => {
                report.error(
                    kind.span(),
                    format!(
                        "unknown probe kind {other:?}: expected \"http\", \"tcp\", \"redis\" or \"memcached\""
                    ),
                );
                None
            }
        },
    };
    let kind = match (kind.map(|k| k.get_ref().as_str()), &raw.path) {
        (Some("http"), path) => {
            let path = path.as_ref().map_or("/", |p| p.get_ref().as_str());
            if !path.starts_with('/') {
                if let Some(written) = &raw.path {
                    report.error(
                        written.span(),
                        format!("path: {path:?} must start with \"/\""),
                    );
                }
                None
            } else {
                Some(ProbeKind::Http {
                    path: path.to_owned(),
                })
            }
        }
        (Some(other), Some(path)) => {
            report.error(
                path.span(),
                format!("path: only an http probe has a path; this one is {other}"),
            );
            None
        }
        (Some("tcp"), None) => Some(ProbeKind::Tcp),
        (Some("redis"), None) => Some(ProbeKind::Redis),
        (Some("memcached"), None) => Some(ProbeKind::Memcached),
        _ => None,
    };
    let address = match &raw.address {
        None => {
            missing(report, "address");
            None
        }
        Some(address) => address
            .get_ref()
            .parse::<EndpointAddress>()
            .map_err(|error| report.error(address.span(), format!("address: {error}")))
            .ok(),
    };
    let interval = duration(
        raw.interval.as_ref(),
        "interval",
        ProbeSettings::DEFAULT_INTERVAL,
        Zero::Rejected { hint: "" },
        report,
    );
    let timeout = duration(
        raw.timeout.as_ref(),
        "timeout",
        ProbeSettings::DEFAULT_TIMEOUT,
        Zero::Rejected { hint: "" },
        report,
    );
    let count = |value: &Option<Spanned<u32>>, key: &str, report: &mut Report<'_>| match value {
        None => Some(ProbeSettings::DEFAULT_RISE_FALL),
        Some(value) if *value.get_ref() == 0 => {
            report.error(value.span(), format!("{key}: must be at least 1"));
            None
        }
        Some(value) => Some(*value.get_ref()),
    };
    let rise = count(&raw.rise, "rise", report);
    let fall = count(&raw.fall, "fall", report);
    let (
        Some(name),
        Some(kind),
        Some(address),
        Some(interval),
        Some(timeout),
        Some(rise),
        Some(fall),
    ) = (name, kind, address, interval, timeout, rise, fall)
    else {
        return None;
    };
    let params = HealthCheckParams::new(rise, fall, interval, interval, timeout, 0.0)
        .map_err(|error| report.error(table.span(), format!("{label}: {error}")))
        .ok()?;
    Some(ProbeSettings {
        name,
        target: ProbeTarget {
            kind,
            address: address.to_string(),
        },
        required: raw.required.unwrap_or(true),
        params,
    })
}
