//! TLS termination for one listener: its certificates (chosen by SNI),
//! the handshake with each client, and certificates read again when their
//! files change, without touching a connection.
//!
//! The certificates sit behind one atomic pointer that rustls reads at
//! every handshake: replacing them never disturbs a connection, open or
//! in its handshake. Files are compared by size, modification time and
//! inode (a `mv` of a new file over the old counts, as certbot and
//! Kubernetes secret updates do it); a set that does not load is reported
//! once and the previous certificates stay.

use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use parking_lot::Mutex;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ServerConfig, SupportedProtocolVersion};
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use super::files::{TlsFileError, certified_key};
use super::metrics::{HandshakeFailure, TlsListenerMetrics};
use super::stream::Stream;
use crate::config::{ListenerTlsSettings, TlsVersion};
use crate::events::{EventLog, NewEvent, Severity};

/// The certificates of a listener, as loaded from their files.
#[derive(Debug)]
pub struct LoadedCertificates {
    default: Arc<CertifiedKey>,
    by_name: Vec<Arc<CertifiedKey>>,
    stamps: Vec<Option<Stamp>>,
}

impl LoadedCertificates {
    /// Read every certificate and key `settings` names.
    pub fn load(
        settings: &ListenerTlsSettings,
        provider: &CryptoProvider,
    ) -> Result<LoadedCertificates, TlsFileError> {
        let stamps = stamps(settings);
        let default = certified_key(&settings.default, provider)?;
        let by_name = settings
            .certificates
            .iter()
            .map(|files| certified_key(files, provider))
            .collect::<Result<_, _>>()?;
        Ok(LoadedCertificates {
            default,
            by_name,
            stamps,
        })
    }

    /// The certificate for a client asking for `name`: the first of
    /// `certificates` valid for it, else the default.
    fn choose(&self, name: Option<&str>) -> Arc<CertifiedKey> {
        let wanted = name.and_then(|name| ServerName::try_from(name).ok());
        if let Some(wanted) = wanted {
            // Parsing each certificate per handshake costs microseconds
            // against a handshake's hundreds; a listener has a few.
            for candidate in &self.by_name {
                let covers = candidate
                    .end_entity_cert()
                    .ok()
                    .and_then(|leaf| webpki::EndEntityCert::try_from(leaf).ok())
                    .is_some_and(|leaf| leaf.verify_is_valid_for_subject_name(&wanted).is_ok());
                if covers {
                    return Arc::clone(candidate);
                }
            }
        }
        Arc::clone(&self.default)
    }
}

/// What rustls asks at each handshake.
#[derive(Debug)]
struct Certificates(ArcSwap<LoadedCertificates>);

impl ResolvesServerCert for Certificates {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.load().choose(hello.server_name()))
    }
}

/// A file as last seen: replaced or rewritten files differ in one of these.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
    inode: u64,
}

fn stamp(path: &PathBuf) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let metadata = std::fs::metadata(path).ok()?;
    Some(Stamp {
        len: metadata.len(),
        modified: metadata.modified().ok(),
        inode: metadata.ino(),
    })
}

fn stamps(settings: &ListenerTlsSettings) -> Vec<Option<Stamp>> {
    settings
        .files()
        .flat_map(|files| [stamp(&files.cert), stamp(&files.key)])
        .collect()
}

/// TLS termination for one listener.
pub struct ServerTls {
    listener: String,
    settings: ListenerTlsSettings,
    acceptor: TlsAcceptor,
    certificates: Arc<Certificates>,
    provider: Arc<CryptoProvider>,
    metrics: TlsListenerMetrics,
    events: Arc<EventLog>,
    /// The stamps of a set of files that failed to load, so that it is
    /// reported once, not at every check.
    failed: Mutex<Option<Vec<Option<Stamp>>>>,
}

/// Why a listener's TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ServerTlsError {
    /// A certificate or key file.
    #[error(transparent)]
    File(#[from] TlsFileError),
    /// rustls refused the settings.
    #[error("{0}")]
    Config(#[from] rustls::Error),
}

impl ServerTls {
    /// Load `settings`' certificates for `listener` (offering HTTP/2 and
    /// HTTP/1.1 by ALPN when `http`), and watch their files if the
    /// settings say so (until the result is dropped).
    pub fn new(
        listener: &str,
        settings: &ListenerTlsSettings,
        http: bool,
        metrics: TlsListenerMetrics,
        events: Arc<EventLog>,
    ) -> Result<Arc<ServerTls>, ServerTlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let loaded = LoadedCertificates::load(settings, &provider)?;
        let certificates = Arc::new(Certificates(ArcSwap::from_pointee(loaded)));
        let versions: &[&SupportedProtocolVersion] = match settings.min_version {
            TlsVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
            TlsVersion::Tls13 => &[&rustls::version::TLS13],
        };
        let mut config = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(versions)?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(&certificates) as Arc<dyn ResolvesServerCert>);
        if http {
            config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        }
        // Resumption by ticket: a returning client skips the key exchange.
        config.ticketer = rustls::crypto::ring::Ticketer::new()?;
        let tls = Arc::new(ServerTls {
            listener: listener.to_owned(),
            settings: settings.clone(),
            acceptor: TlsAcceptor::from(Arc::new(config)),
            certificates,
            provider,
            metrics,
            events,
            failed: Mutex::new(None),
        });
        if let Some(interval) = settings.watch_interval {
            tokio::spawn(watch(Arc::downgrade(&tls), interval));
        }
        Ok(tls)
    }

    /// The settings it was made from.
    pub fn settings(&self) -> &ListenerTlsSettings {
        &self.settings
    }

    /// Read the files again (a config reload); the caller installs them.
    pub fn reload_files(&self) -> Result<LoadedCertificates, TlsFileError> {
        LoadedCertificates::load(&self.settings, &self.provider)
    }

    /// Serve `loaded` from the next handshake on.
    pub fn install(&self, loaded: LoadedCertificates) {
        self.certificates.0.store(Arc::new(loaded));
        *self.failed.lock() = None;
    }

    /// The TLS handshake with a client that connected at `accepted`, within
    /// `handshake_timeout` and before `deadline`. `None` if it failed
    /// (counted, and logged at debug level: it is the client's doing).
    pub async fn handshake(
        &self,
        tcp: TcpStream,
        accepted: Instant,
        deadline: Instant,
    ) -> Option<Stream> {
        let deadline = deadline.min(accepted + self.settings.handshake_timeout);
        let failure = match tokio::time::timeout_at(deadline, self.acceptor.accept(tcp)).await {
            Ok(Ok(tls)) => {
                self.metrics.record_handshake();
                return Some(Stream::Server(Box::new(tls)));
            }
            Ok(Err(error)) => {
                tracing::debug!(listener = %self.listener, %error, "TLS handshake failed");
                classify(&error)
            }
            Err(_elapsed) => HandshakeFailure::Timeout,
        };
        self.metrics.record_failure(failure);
        None
    }

    /// Compare the files with what was loaded; read them again if they
    /// changed.
    fn check_files(&self) {
        let now = stamps(&self.settings);
        if now == self.certificates.0.load().stamps {
            return;
        }
        if self.failed.lock().as_ref() == Some(&now) {
            return;
        }
        match self.reload_files() {
            Ok(loaded) => {
                self.install(loaded);
                self.metrics.record_reload(true);
                tracing::info!(listener = %self.listener, "TLS certificates changed on disk: loaded");
                self.events.record(NewEvent {
                    kind: "tls",
                    cluster: String::new(),
                    endpoint: None,
                    from: "certificates".to_owned(),
                    to: "certificates".to_owned(),
                    reason: format!(
                        "listener {:?}: certificate files changed; new connections get the new certificates",
                        self.listener
                    ),
                    severity: Severity::Info,
                });
            }
            Err(error) => {
                *self.failed.lock() = Some(now);
                self.metrics.record_reload(false);
                tracing::error!(listener = %self.listener, %error, "TLS certificate files changed but do not load; the previous certificates stay in use");
                self.events.record(NewEvent {
                    kind: "tls",
                    cluster: String::new(),
                    endpoint: None,
                    from: "certificates".to_owned(),
                    to: "certificates kept".to_owned(),
                    reason: format!(
                        "listener {:?}: changed certificate files do not load ({error}); the previous certificates stay in use",
                        self.listener
                    ),
                    severity: Severity::Error,
                });
            }
        }
    }
}

/// Check the files every `interval` until the listener's TLS is gone.
async fn watch(tls: Weak<ServerTls>, interval: Duration) {
    let mut ticks = tokio::time::interval_at(Instant::now() + interval, interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(tls) = tls.upgrade() else {
            return;
        };
        // Reading files blocks; a few small files, once per change.
        tls.check_files();
    }
}

/// The reason label of a failed handshake.
fn classify(error: &io::Error) -> HandshakeFailure {
    let tls = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    match tls {
        Some(rustls::Error::InvalidMessage(_)) => HandshakeFailure::NotTls,
        Some(rustls::Error::PeerIncompatible(_)) => HandshakeFailure::Incompatible,
        Some(rustls::Error::AlertReceived(_)) => HandshakeFailure::ClientAlert,
        Some(_) => HandshakeFailure::Other,
        None => match error.kind() {
            io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe => HandshakeFailure::Closed,
            _ => HandshakeFailure::Other,
        },
    }
}
