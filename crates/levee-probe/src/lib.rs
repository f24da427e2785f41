//! Dependency probes: the I/O half of levee's self-health.
//!
//! A probe answers "can the node levee protects use this dependency right
//! now?". HTTP and TCP probes check that a service answers; the cache probes
//! go further, because a cache client can lie: one that "mitigates flapping"
//! drops writes and answers reads with the caller's default, so "write a key,
//! read it back" passes while the cache is down. A cache probe therefore
//! writes a key no one else writes (`levee-probe:<instance>:<nonce>`, a new
//! nonce each run) with a fresh random value and a short TTL, reads it back,
//! and fails at once on a miss, an error or any other value.
//!
//! Each probe run is bounded by its timeout and opens its own connection, so
//! a pooled connection cannot hide a server that stopped accepting. What the
//! results mean over time (rise/fall) is levee-core's
//! [`HealthTracker`](levee_core::HealthTracker).

pub mod http;
mod memcached;
mod redis;

use std::fmt;
use std::io;
use std::time::Duration;

use levee_core::health::{CheckFailure, CheckResult};
use rand::Rng;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// How long a cache probe's key lives: long enough to read it back, short
/// enough that a probe interrupted between write and read leaves nothing
/// behind for long.
pub const PROBE_KEY_TTL: Duration = Duration::from_secs(10);

/// What a probe does.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProbeKind {
    /// `GET path`; any 2xx status whose body arrives whole (up to
    /// [`http::MAX_BODY`] bytes are read) passes.
    Http {
        /// Path and query, starting with `/`.
        path: String,
    },
    /// A TCP connection opens.
    Tcp,
    /// Redis: `SET key value PX ttl`, then `GET key` must return the value.
    Redis,
    /// memcached: `set`, then `get` must return the value.
    Memcached,
}

impl ProbeKind {
    /// The config spelling: `http`, `tcp`, `redis`, `memcached`.
    pub fn as_str(&self) -> &'static str {
        match self {
            ProbeKind::Http { .. } => "http",
            ProbeKind::Tcp => "tcp",
            ProbeKind::Redis => "redis",
            ProbeKind::Memcached => "memcached",
        }
    }
}

/// What to probe: two configured probes with equal targets run once and
/// report under both names.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProbeTarget {
    /// What the probe does.
    pub kind: ProbeKind,
    /// `host:port`.
    pub address: String,
}

impl fmt::Display for ProbeTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ProbeKind::Http { path } => write!(f, "http://{}{path}", self.address),
            kind => write!(f, "{}://{}", kind.as_str(), self.address),
        }
    }
}

/// Why one probe run failed, in words a log reader understands.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// No verdict within the timeout.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The TCP connection did not open.
    #[error("cannot connect: {0}")]
    Connect(#[source] io::Error),
    /// The connection failed after it opened.
    #[error("connection failed: {0}")]
    Io(#[source] io::Error),
    /// An HTTP probe got a status other than 2xx.
    #[error("unexpected status {0}")]
    Status(u16),
    /// An HTTP probe's response body broke off before its end.
    #[error("{0}")]
    BodyInterrupted(String),
    /// The server answered something the protocol does not allow, or an
    /// error reply.
    #[error("bad answer: {0}")]
    Protocol(String),
    /// A cache probe's read found nothing under the key it had just written.
    #[error("read of {key} returned a miss right after it was written")]
    Miss {
        /// The probe key.
        key: String,
    },
    /// A cache probe's read returned another value than the one written.
    #[error("read of {key} returned another value than the one just written")]
    WrongValue {
        /// The probe key.
        key: String,
    },
}

impl ProbeError {
    /// The kind of failure, for the health tracker and metrics.
    pub fn failure(&self) -> CheckFailure {
        match self {
            ProbeError::Timeout(_) => CheckFailure::Timeout,
            ProbeError::Connect(error) if error.kind() == io::ErrorKind::ConnectionRefused => {
                CheckFailure::ConnectRefused
            }
            ProbeError::Connect(_) => CheckFailure::ConnectFailed,
            ProbeError::Io(_) => CheckFailure::Reset,
            ProbeError::Status(status) => CheckFailure::UnexpectedStatus(*status),
            ProbeError::BodyInterrupted(_) => CheckFailure::BodyInterrupted,
            ProbeError::Protocol(_) => CheckFailure::Protocol,
            ProbeError::Miss { .. } | ProbeError::WrongValue { .. } => CheckFailure::ReadBack,
        }
    }
}

/// The result of one probe run: the tracker's view and, on failure, the
/// detailed reason.
#[derive(Debug)]
pub struct ProbeOutcome {
    /// Passed (with latency) or the failure kind.
    pub result: CheckResult,
    /// The detailed error, on failure.
    pub error: Option<ProbeError>,
}

/// Run one probe of `target`, bounded by `timeout` from connect to verdict.
/// `instance` names this levee in cache probe keys, so probes of several
/// instances sharing one cache never read each other's keys.
pub async fn run(target: &ProbeTarget, instance: &str, timeout: Duration) -> ProbeOutcome {
    let started = Instant::now();
    let verdict = tokio::time::timeout(timeout, async {
        match &target.kind {
            ProbeKind::Tcp => connect(&target.address).await.map(drop),
            ProbeKind::Http { path } => http::probe(&target.address, path).await,
            ProbeKind::Redis => {
                let (key, value) = probe_key_and_value(instance);
                redis::probe(&target.address, &key, &value).await
            }
            ProbeKind::Memcached => {
                let (key, value) = probe_key_and_value(instance);
                memcached::probe(&target.address, &key, &value).await
            }
        }
    })
    .await
    .unwrap_or(Err(ProbeError::Timeout(timeout)));
    match verdict {
        Ok(()) => ProbeOutcome {
            result: CheckResult::Passed {
                latency: started.elapsed(),
            },
            error: None,
        },
        Err(error) => ProbeOutcome {
            result: CheckResult::Failed(error.failure()),
            error: Some(error),
        },
    }
}

/// A fresh key under `levee-probe:<instance>:<nonce>` and a fresh value:
/// neither a previous run nor a default can match them.
fn probe_key_and_value(instance: &str) -> (String, String) {
    let mut rng = rand::rng();
    let nonce: u64 = rng.random();
    let value: u128 = rng.random();
    // Keys must not contain spaces or control characters (memcached).
    let instance: String = instance
        .chars()
        .map(|c| if c.is_ascii_graphic() { c } else { '_' })
        .collect();
    (
        format!("levee-probe:{instance}:{nonce:016x}"),
        format!("{value:032x}"),
    )
}

async fn connect(address: &str) -> Result<TcpStream, ProbeError> {
    let stream = TcpStream::connect(address)
        .await
        .map_err(ProbeError::Connect)?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_namespaced_unique_and_safe() {
        let (a, value_a) = probe_key_and_value("node 1");
        let (b, value_b) = probe_key_and_value("node 1");
        assert!(a.starts_with("levee-probe:node_1:"), "{a}");
        assert_ne!(a, b);
        assert_ne!(value_a, value_b);
        assert!(a.len() < 250, "memcached keys are at most 250 bytes");
    }

    #[tokio::test]
    async fn a_closed_port_fails_with_connect_refused() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("addr").to_string();
        drop(listener);
        for kind in [ProbeKind::Tcp, ProbeKind::Redis, ProbeKind::Memcached] {
            let target = ProbeTarget {
                kind,
                address: address.clone(),
            };
            let outcome = run(&target, "t", Duration::from_secs(2)).await;
            assert_eq!(
                outcome.result,
                CheckResult::Failed(CheckFailure::ConnectRefused),
                "{target}: {:?}",
                outcome.error
            );
        }
    }
}
