//! TLS to a cluster's endpoints: which roots verify them, which name they
//! must prove, and the client certificate for mutual TLS.
//!
//! A failed handshake happens before any byte of a request is sent, so the
//! attempt is `tls-handshake`, never sent: the request may go to another
//! endpoint whatever its method.

use std::io;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::files::{TlsFileError, certificates, private_key};
use super::stream::Stream;
use crate::config::UpstreamTlsSettings;

/// Why a cluster's TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamTlsError {
    /// A CA, certificate or key file.
    #[error(transparent)]
    File(#[from] TlsFileError),
    /// No CA certificate to verify endpoints with.
    #[error(
        "no CA certificates: the system has none that load ({0}); install the ca-certificates package, or set tls.ca"
    )]
    NoRoots(String),
    /// rustls refused the settings (a client key it cannot use).
    #[error("{0}")]
    Config(#[from] rustls::Error),
}

/// TLS settings of one cluster, shared by all its endpoints' connections.
pub struct UpstreamTls {
    connector: TlsConnector,
    /// The name every endpoint must prove, if the config sets one.
    server_name: Option<ServerName<'static>>,
}

impl std::fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamTls")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl UpstreamTls {
    /// Build the client side of TLS for `cluster` from `settings`, offering
    /// `alpn` (most preferred first).
    pub fn new(
        cluster: &str,
        settings: &UpstreamTlsSettings,
        alpn: &[&[u8]],
    ) -> Result<UpstreamTls, UpstreamTlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()?;
        let builder = if settings.insecure_skip_verify {
            tracing::warn!(
                cluster,
                "tls.insecure_skip_verify = true: endpoint certificates are NOT verified; anyone on the path can read and change this cluster's traffic"
            );
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
        } else {
            builder.with_root_certificates(roots(settings)?)
        };
        let mut config = match &settings.client_certificate {
            None => builder.with_no_client_auth(),
            Some(files) => builder
                .with_client_auth_cert(certificates(&files.cert)?, private_key(&files.key)?)?,
        };
        config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
        let server_name = settings
            .server_name
            .as_deref()
            .and_then(|name| ServerName::try_from(name.to_owned()).ok());
        Ok(UpstreamTls {
            connector: TlsConnector::from(Arc::new(config)),
            server_name,
        })
    }

    /// The name to send and verify for an endpoint configured as `host`:
    /// the cluster's `server_name`, else the host itself. `None` if `host`
    /// is neither a DNS name nor an IP address.
    pub fn name_for(&self, host: &str) -> Option<ServerName<'static>> {
        match &self.server_name {
            Some(name) => Some(name.clone()),
            None => ServerName::try_from(
                host.trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_owned(),
            )
            .ok(),
        }
    }

    /// The TLS handshake on a new connection to an endpoint that must
    /// prove `name`. The caller bounds it in time.
    pub async fn connect(&self, tcp: TcpStream, name: ServerName<'static>) -> io::Result<Stream> {
        let tls = self.connector.connect(name, tcp).await?;
        Ok(Stream::Client(Box::new(tls)))
    }
}

/// The roots that verify endpoints: the CA file, or the system's.
fn roots(settings: &UpstreamTlsSettings) -> Result<RootCertStore, UpstreamTlsError> {
    let mut roots = RootCertStore::empty();
    match &settings.ca {
        Some(ca) => {
            let (_added, ignored) = roots.add_parsable_certificates(certificates(ca)?);
            if roots.is_empty() {
                return Err(TlsFileError::Malformed {
                    path: ca.clone(),
                    what: "CA certificate",
                    reason: format!("none of its {ignored} certificates can be a trust anchor"),
                }
                .into());
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
            if roots.is_empty() {
                let why = found
                    .errors
                    .first()
                    .map_or_else(|| "none found".to_owned(), ToString::to_string);
                return Err(UpstreamTlsError::NoRoots(why));
            }
        }
    }
    Ok(roots)
}

/// `insecure_skip_verify`: any certificate is accepted, though the
/// handshake's signatures are still checked (the peer holds the key of the
/// certificate it sent, whatever that is).
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
