//! TLS on both sides of levee, with rustls (ring as its cryptography):
//!
//! - `server.rs`: termination on a listener, certificates chosen by SNI and
//!   read again when their files change;
//! - `upstream.rs`: TLS to a cluster's endpoints (verified roots, name,
//!   mutual TLS);
//! - `stream.rs`: a connection bare or under TLS, as one type;
//! - `files.rs`: PEM files, with errors that name them;
//! - `metrics.rs`: handshakes, failures by reason, reloads.

mod files;
pub mod metrics;
mod server;
mod stream;
mod upstream;

pub use files::TlsFileError;
pub use server::{LoadedCertificates, ServerTls, ServerTlsError};
pub use stream::Stream;
pub use upstream::{UpstreamTls, UpstreamTlsError};
