//! Running one active health check against one endpoint address.
//!
//! Each check opens a fresh connection: a check that reused a pooled
//! connection would not notice a node that stopped accepting. An HTTP check
//! must get a response head within its timeout, so a kernel that completes
//! the TCP handshake for a stopped (or hung) process does not fool it, and
//! its body whole (up to 64 KiB, see [`levee_probe::http`], which the
//! dependency probes share), so a node that breaks every body after the
//! head does not either.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, header};
use http_body_util::Empty;
use levee_core::health::{CheckFailure, CheckResult};
use levee_probe::http::{ExchangeError, exchange, exchange_h2};
use tokio::time::Instant;

use crate::config::{HealthCheckKind, HttpCheckSettings, UpstreamProtocol};
use crate::tls::Stream;
use crate::upstream::{EndpointTls, connect_from};

/// Run one check against `target` (whose configured name is `host`), bounded
/// by `timeout` from connect to verdict. With `tls` (a TLS cluster) the
/// check speaks TLS as traffic does: a TCP check passes once the handshake
/// does, so a certificate that no longer verifies fails it.
pub async fn run_check(
    kind: &HealthCheckKind,
    target: SocketAddr,
    host: &str,
    (tls, protocol): (Option<&EndpointTls>, UpstreamProtocol),
    (timeout, source): (Duration, Option<std::net::IpAddr>),
) -> CheckResult {
    let started = Instant::now();
    let verdict = tokio::time::timeout(timeout, async {
        let tcp = connect_from(target, source)
            .await
            .map_err(connect_failure)?;
        let _ = tcp.set_nodelay(true);
        let stream = match tls {
            None => Stream::Plain(tcp),
            Some(EndpointTls { tls, name }) => {
                tls.connect(tcp, name.clone()).await.map_err(|error| {
                    tracing::debug!(%target, %error, "health check: TLS handshake failed");
                    CheckFailure::ConnectFailed
                })?
            }
        };
        match kind {
            HealthCheckKind::Tcp => Ok(()),
            HealthCheckKind::Http(check) => http_check(check, stream, host, protocol).await,
        }
    })
    .await;
    match verdict {
        Ok(Ok(())) => CheckResult::Passed {
            latency: started.elapsed(),
        },
        Ok(Err(failure)) => CheckResult::Failed(failure),
        Err(_elapsed) => CheckResult::Failed(CheckFailure::Timeout),
    }
}

async fn http_check(
    check: &HttpCheckSettings,
    stream: Stream,
    host: &str,
    protocol: UpstreamProtocol,
) -> Result<(), CheckFailure> {
    // The check speaks what traffic speaks: HTTP/2 for `h2c`, and where
    // ALPN chose it.
    let h2 = protocol == UpstreamProtocol::H2c || stream.alpn() == Some(b"h2");
    let tls = !matches!(stream, Stream::Plain(_));
    let host = HeaderValue::from_str(check.host.as_deref().unwrap_or(host))
        .map_err(|_| CheckFailure::Protocol)?;
    let request = Request::builder()
        .method(check.method.clone())
        .uri(check.path.as_str())
        .header(header::HOST, host)
        .header(header::USER_AGENT, "levee-health-check")
        .header(header::CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .map_err(|_| CheckFailure::Protocol)?;
    let answer = if h2 {
        let mut request = request;
        crate::upstream::into_h2_form(&mut request, tls);
        exchange_h2(stream, request).await
    } else {
        exchange(stream, request).await
    }
    .map_err(exchange_failure)?;
    if !check.expect_status.contains(&answer.status.as_u16()) {
        return Err(CheckFailure::UnexpectedStatus(answer.status.as_u16()));
    }
    if let Some(expected) = &check.expect_body
        && !contains(&answer.body, expected.as_bytes())
    {
        return Err(CheckFailure::BodyMismatch);
    }
    Ok(())
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty()
        || haystack
            .windows(needle.len())
            .any(|window| window == needle)
}

fn connect_failure(error: io::Error) -> CheckFailure {
    match error.kind() {
        io::ErrorKind::ConnectionRefused => CheckFailure::ConnectRefused,
        io::ErrorKind::ConnectionReset => CheckFailure::Reset,
        _ => CheckFailure::ConnectFailed,
    }
}

fn exchange_failure(error: ExchangeError) -> CheckFailure {
    match error {
        _ if error.is_protocol() => CheckFailure::Protocol,
        ExchangeError::Handshake(_) => CheckFailure::ConnectFailed,
        ExchangeError::NoResponse(_) => CheckFailure::Reset,
        ExchangeError::BodyInterrupted { .. } => CheckFailure::BodyInterrupted,
    }
}
