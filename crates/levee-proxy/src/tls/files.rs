//! Reading certificates and keys from PEM files, with errors that name the
//! file and say what was wrong with it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::CertificateFiles;

/// A TLS file that could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsFileError {
    /// The file could not be read.
    #[error("cannot read {path}: {reason}")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        reason: String,
    },
    /// It holds no PEM block of the expected kind.
    #[error("{path}: no {what} found (expected a PEM file with a \"-----BEGIN {label}\" block)")]
    Empty {
        /// The file.
        path: PathBuf,
        /// What was looked for: "certificate", "private key".
        what: &'static str,
        /// The PEM label expected.
        label: &'static str,
    },
    /// A PEM block that does not parse.
    #[error("{path}: not a valid PEM {what}: {reason}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What was read.
        what: &'static str,
        /// What the parser said.
        reason: String,
    },
    /// The key cannot sign, or does not belong to the certificate.
    #[error("{key}: {reason} (certificate {cert})")]
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// What was wrong.
        reason: String,
    },
}

/// Every certificate in the PEM file at `path`, in file order.
pub fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsFileError> {
    let pem = read(path)?;
    let certificates = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| TlsFileError::Malformed {
            path: path.to_owned(),
            what: "certificate",
            reason: error.to_string(),
        })?;
    if certificates.is_empty() {
        return Err(TlsFileError::Empty {
            path: path.to_owned(),
            what: "certificate",
            label: "CERTIFICATE",
        });
    }
    Ok(certificates)
}

/// The first private key in the PEM file at `path`.
pub fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsFileError> {
    let pem = read(path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|error| match error {
        rustls_pki_types::pem::Error::NoItemsFound => TlsFileError::Empty {
            path: path.to_owned(),
            what: "private key",
            label: "PRIVATE KEY",
        },
        error => TlsFileError::Malformed {
            path: path.to_owned(),
            what: "private key",
            reason: error.to_string(),
        },
    })
}

/// A certificate chain with its key, ready to serve (or to present as a
/// client): the key is checked to belong to the leaf certificate.
pub fn certified_key(
    files: &CertificateFiles,
    provider: &CryptoProvider,
) -> Result<Arc<CertifiedKey>, TlsFileError> {
    let chain = certificates(&files.cert)?;
    let key = private_key(&files.key)?;
    let mismatch = |reason: String| TlsFileError::KeyMismatch {
        cert: files.cert.clone(),
        key: files.key.clone(),
        reason,
    };
    let certified = CertifiedKey::from_der(chain, key, provider)
        .map_err(|error| mismatch(format!("key unusable or not the certificate's: {error}")))?;
    Ok(Arc::new(certified))
}

fn read(path: &Path) -> Result<Vec<u8>, TlsFileError> {
    std::fs::read(path).map_err(|error| TlsFileError::Unreadable {
        path: path.to_owned(),
        reason: error.to_string(),
    })
}
