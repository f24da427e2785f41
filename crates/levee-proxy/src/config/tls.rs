//! TLS settings: `tls` of a `[[listener]]` (levee terminates TLS) and `tls`
//! of a `[[cluster]]` (levee speaks TLS to the endpoints): raw tables,
//! validation and settings.
//!
//! Only the shape is checked here; the files are read when the gateway
//! starts or reloads (`crate::tls`), where a missing or bad file is an
//! error naming it. Relative paths are taken from the config file's
//! directory (see [`super::Config::load`]).

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use rustls_pki_types::ServerName;
use serde::Deserialize;
use toml::Spanned;

use super::report::Report;
use super::table::RawTable;
use super::values::{Zero, duration};

/// `tls` of a `[[listener]]`.
#[derive(Debug, Default, Deserialize)]
pub(super) struct RawListenerTls {
    /// PEM file with the certificate chain served when no other certificate
    /// covers the name the client asks for (SNI), or it asks for none; leaf
    /// first. Required.
    pub cert: Option<Spanned<String>>,
    /// PEM file with the private key of `cert` (PKCS#8, PKCS#1 or SEC1).
    /// Required.
    pub key: Option<Spanned<String>>,
    /// More certificates, each `{ cert = "…", key = "…" }`: a client
    /// asking for a name (SNI) gets the first one whose certificate covers
    /// that name (wildcards included), else the default `cert`. Default:
    /// none.
    pub certificates: Option<Vec<Spanned<RawCertificate>>>,
    /// Oldest TLS version accepted: `"1.2"` or `"1.3"`. Default `"1.2"`.
    pub min_version: Option<Spanned<String>>,
    /// A client has this long from connecting to finish the TLS handshake;
    /// more than 0. Default `"10s"`.
    pub handshake_timeout: Option<Spanned<String>>,
    /// The certificate and key files are checked for changes this often,
    /// and read again when one changed (connections stay; a new file that
    /// does not load keeps the old certificate). `"0s"`: only on reload.
    /// Default `"5s"`.
    pub watch_interval: Option<Spanned<String>>,
}

impl RawTable for RawListenerTls {
    fn keys_at(path: &[&str]) -> &'static [&'static str] {
        match path {
            [] => super::keys::fields_of::<Self>(),
            ["certificates"] => super::keys::fields_of::<RawCertificate>(),
            _ => &[],
        }
    }
}

/// One `{ cert, key }` pair of `tls.certificates`.
#[derive(Debug, Default, Deserialize)]
pub(super) struct RawCertificate {
    /// PEM file with the certificate chain, leaf first. Required.
    pub cert: Option<Spanned<String>>,
    /// PEM file with its private key. Required.
    pub key: Option<Spanned<String>>,
}

/// `tls` of a `[[cluster]]`: writing the table turns TLS to the endpoints
/// on.
#[derive(Debug, Default, Deserialize)]
pub(super) struct RawClusterTls {
    /// PEM file with the CA certificates that endpoint certificates are
    /// verified against. Default: the system's roots.
    pub ca: Option<Spanned<String>>,
    /// The name sent as SNI and that each endpoint's certificate must be
    /// valid for. Default: the endpoint's own host (a name, or an IP
    /// address checked against the certificate's IP addresses).
    pub server_name: Option<Spanned<String>>,
    /// PEM file with a client certificate chain presented to endpoints that
    /// ask for one (mutual TLS). Needs `client_key`. Default: none.
    pub client_cert: Option<Spanned<String>>,
    /// PEM file with the private key of `client_cert`. Default: none.
    pub client_key: Option<Spanned<String>>,
    /// `true` accepts any endpoint certificate, unverified: for tests
    /// only; levee warns at every start and reload. Default `false`.
    pub insecure_skip_verify: Option<bool>,
}

impl RawTable for RawClusterTls {}

/// A certificate chain and its key, as files.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CertificateFiles {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// The oldest TLS version a listener accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsVersion {
    /// TLS 1.2 and 1.3.
    #[default]
    Tls12,
    /// TLS 1.3 only.
    Tls13,
}

impl fmt::Display for TlsVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TlsVersion::Tls12 => "1.2",
            TlsVersion::Tls13 => "1.3",
        })
    }
}

/// `tls` of a `[[listener]]`: levee terminates TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerTlsSettings {
    /// Served when no certificate of `certificates` covers the client's
    /// SNI name, or it sent none.
    pub default: CertificateFiles,
    /// Chosen by SNI: the first whose certificate covers the name.
    pub certificates: Vec<CertificateFiles>,
    /// Oldest version accepted.
    pub min_version: TlsVersion,
    /// From accept to a finished handshake.
    pub handshake_timeout: Duration,
    /// How often the files are checked for changes; `None`: only on
    /// reload.
    pub watch_interval: Option<Duration>,
}

impl ListenerTlsSettings {
    /// Default [`ListenerTlsSettings::handshake_timeout`].
    pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
    /// Default [`ListenerTlsSettings::watch_interval`].
    pub const DEFAULT_WATCH_INTERVAL: Duration = Duration::from_secs(5);

    /// Terminate TLS with one certificate, every other setting at its
    /// default.
    pub fn new(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> ListenerTlsSettings {
        ListenerTlsSettings {
            default: CertificateFiles {
                cert: cert.into(),
                key: key.into(),
            },
            certificates: Vec::new(),
            min_version: TlsVersion::default(),
            handshake_timeout: ListenerTlsSettings::DEFAULT_HANDSHAKE_TIMEOUT,
            watch_interval: Some(ListenerTlsSettings::DEFAULT_WATCH_INTERVAL),
        }
    }

    /// Every file, default certificate first.
    pub fn files(&self) -> impl Iterator<Item = &CertificateFiles> {
        std::iter::once(&self.default).chain(&self.certificates)
    }

    /// Make relative paths relative to `dir`.
    pub(super) fn resolve_paths(&mut self, dir: &std::path::Path) {
        for files in std::iter::once(&mut self.default).chain(&mut self.certificates) {
            files.cert = dir.join(&files.cert);
            files.key = dir.join(&files.key);
        }
    }
}

/// `tls` of a `[[cluster]]`: levee speaks TLS to the endpoints.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UpstreamTlsSettings {
    /// CA certificates to verify against; `None`: the system's roots.
    pub ca: Option<PathBuf>,
    /// SNI and verified name; `None`: each endpoint's own host.
    pub server_name: Option<String>,
    /// Client certificate for mutual TLS.
    pub client_certificate: Option<CertificateFiles>,
    /// Accept any certificate (tests only).
    pub insecure_skip_verify: bool,
}

impl UpstreamTlsSettings {
    /// Make relative paths relative to `dir`.
    pub(super) fn resolve_paths(&mut self, dir: &std::path::Path) {
        if let Some(ca) = &mut self.ca {
            *ca = dir.join(&*ca);
        }
        if let Some(files) = &mut self.client_certificate {
            files.cert = dir.join(&files.cert);
            files.key = dir.join(&files.key);
        }
    }
}

/// A required, non-empty path at `key` of a table written at `span`.
fn path(
    value: Option<&Spanned<String>>,
    key: &str,
    table: &Spanned<impl Sized>,
    report: &mut Report<'_>,
) -> Option<PathBuf> {
    match value {
        None => {
            report.error(table.span(), format!("tls: missing key {key:?}"));
            None
        }
        Some(text) if text.get_ref().trim().is_empty() => {
            report.error(text.span(), format!("tls.{key}: must name a file"));
            None
        }
        Some(text) => Some(PathBuf::from(text.get_ref())),
    }
}

/// The settings of a listener's written `tls` table; `None` if anything in
/// it is bad (reported).
pub(super) fn listener_tls(
    written: &Spanned<RawListenerTls>,
    report: &mut Report<'_>,
) -> Option<ListenerTlsSettings> {
    let raw = written.get_ref();
    let cert = path(raw.cert.as_ref(), "cert", written, report);
    let key = path(raw.key.as_ref(), "key", written, report);
    let mut certificates = Some(Vec::new());
    for pair in raw.certificates.iter().flatten() {
        let cert = path(pair.get_ref().cert.as_ref(), "cert", pair, report);
        let key = path(pair.get_ref().key.as_ref(), "key", pair, report);
        match (cert, key, &mut certificates) {
            (Some(cert), Some(key), Some(list)) => list.push(CertificateFiles { cert, key }),
            _ => certificates = None,
        }
    }
    let min_version = match &raw.min_version {
        None => Some(TlsVersion::default()),
        Some(text) => match text.get_ref().as_str() {
            "1.2" => Some(TlsVersion::Tls12),
            "1.3" => Some(TlsVersion::Tls13),
            other => {
                let message = format!(
                    "tls.min_version: unknown version {other:?}: expected \"1.2\" or \"1.3\" (older versions are not offered)"
                );
                report.error(text.span(), message);
                None
            }
        },
    };
    let handshake_timeout = duration(
        raw.handshake_timeout.as_ref(),
        "tls.handshake_timeout",
        ListenerTlsSettings::DEFAULT_HANDSHAKE_TIMEOUT,
        Zero::Rejected { hint: "" },
        report,
    );
    let watch_interval = duration(
        raw.watch_interval.as_ref(),
        "tls.watch_interval",
        ListenerTlsSettings::DEFAULT_WATCH_INTERVAL,
        Zero::Allowed,
        report,
    );
    Some(ListenerTlsSettings {
        default: CertificateFiles {
            cert: cert?,
            key: key?,
        },
        certificates: certificates?,
        min_version: min_version?,
        handshake_timeout: handshake_timeout?,
        watch_interval: Some(watch_interval?).filter(|interval| !interval.is_zero()),
    })
}

/// The settings of a cluster's written `tls` table; `None` if anything in
/// it is bad (reported).
pub(super) fn cluster_tls(
    written: &Spanned<RawClusterTls>,
    report: &mut Report<'_>,
) -> Option<UpstreamTlsSettings> {
    let raw = written.get_ref();
    let mut ok = true;
    let server_name = match &raw.server_name {
        None => None,
        Some(text) => match ServerName::try_from(text.get_ref().as_str()) {
            Ok(_) => Some(text.get_ref().clone()),
            Err(_) => {
                let message = format!(
                    "tls.server_name: {:?} is neither a DNS name nor an IP address",
                    text.get_ref()
                );
                report.error(text.span(), message);
                ok = false;
                None
            }
        },
    };
    let client_certificate = match (&raw.client_cert, &raw.client_key) {
        (None, None) => None,
        (Some(cert), Some(key)) => Some(CertificateFiles {
            cert: PathBuf::from(cert.get_ref()),
            key: PathBuf::from(key.get_ref()),
        }),
        (Some(written), None) | (None, Some(written)) => {
            report.error(
                written.span(),
                "tls: client_cert and client_key go together (mutual TLS needs both)",
            );
            ok = false;
            None
        }
    };
    let ca = raw.ca.as_ref().map(|ca| PathBuf::from(ca.get_ref()));
    let insecure_skip_verify = raw.insecure_skip_verify.unwrap_or(false);
    if insecure_skip_verify && (ca.is_some() || server_name.is_some()) {
        report.warning(
            written.span(),
            "tls: insecure_skip_verify = true verifies nothing, so ca and server_name only set the SNI name",
        );
    }
    ok.then_some(UpstreamTlsSettings {
        ca,
        server_name,
        client_certificate,
        insecure_skip_verify,
    })
}
