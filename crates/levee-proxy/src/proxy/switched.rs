//! A connection switched to another protocol (WebSocket): its endpoint
//! side waits in the client connection's [`UpgradeSlot`] until hyper hands
//! the client side back, then bytes are relayed both ways (`tunnel.rs`
//! opens them).

use std::io;

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use prometheus_client::metrics::gauge::Gauge;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

/// The upstream side of a switched connection, waiting for the client's.
pub struct Tunnel {
    upstream: OnUpgrade,
    open: Gauge,
}

impl Tunnel {
    /// The endpoint side `upstream`, counted in `open` while relayed.
    pub(super) fn new(upstream: OnUpgrade, open: Gauge) -> Tunnel {
        Tunnel { upstream, open }
    }

    /// Relay an HTTP/2 client's stream (its extended CONNECT) in a task of
    /// its own: the connection's task serves its other streams meanwhile.
    pub(super) fn relay_stream(self, client: OnUpgrade) {
        tokio::spawn(async move {
            let Ok(client) = client.await else {
                return;
            };
            let mut client = TokioIo::new(client);
            if let Err(error) = self.relay(&mut client).await {
                tracing::debug!(%error, "tunnel ended with an error");
            }
            let _ = client.shutdown().await;
        });
    }
}

impl Tunnel {
    /// Relay bytes between `client` and the endpoint. Counted in
    /// `levee_tunnels_open{listener}` while it lasts.
    ///
    /// The endpoint closing ends the tunnel (the caller then closes the
    /// client's side): a WebSocket server that is gone or restarting must
    /// not leave its clients on a half-open connection. The client closing
    /// its side is passed on, and the endpoint has [`HALF_CLOSED_GRACE`] to
    /// finish answering. Returns the bytes sent each way.
    pub async fn relay<C>(self, client: &mut C) -> io::Result<(u64, u64)>
    where
        C: AsyncRead + AsyncWrite + Unpin,
    {
        let upgraded = self.upstream.await.map_err(io::Error::other)?;
        self.open.inc();
        let _open = DecOnDrop(self.open);
        let mut upstream = TokioIo::new(upgraded);
        let (mut client_read, mut client_write) = tokio::io::split(client);
        let (mut upstream_read, mut upstream_write) = tokio::io::split(&mut upstream);
        let to_client = tokio::io::copy(&mut upstream_read, &mut client_write);
        let to_upstream = async {
            let sent = tokio::io::copy(&mut client_read, &mut upstream_write).await?;
            upstream_write.shutdown().await?;
            Ok::<u64, io::Error>(sent)
        };
        tokio::pin!(to_client, to_upstream);
        tokio::select! {
            received = &mut to_client => received.map(|received| (0, received)),
            sent = &mut to_upstream => {
                let sent = sent?;
                match tokio::time::timeout(HALF_CLOSED_GRACE, &mut to_client).await {
                    Ok(received) => received.map(|received| (sent, received)),
                    Err(_elapsed) => Ok((sent, 0)),
                }
            }
        }
    }
}

/// After the client has closed its side of a tunnel, how long the endpoint
/// has to finish.
pub const HALF_CLOSED_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Takes a tunnel out of the gauge however the relay ends (cancelled
/// included).
struct DecOnDrop(Gauge);

impl Drop for DecOnDrop {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Where a connection's switched request leaves its [`Tunnel`] for the
/// connection to take once the 101 is written.
#[derive(Default)]
pub struct UpgradeSlot(Mutex<Option<Tunnel>>);

impl std::fmt::Debug for UpgradeSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UpgradeSlot")
    }
}

impl UpgradeSlot {
    /// The tunnel of the request that switched, if one did.
    pub fn take(&self) -> Option<Tunnel> {
        self.0.lock().take()
    }

    pub(super) fn put(&self, tunnel: Tunnel) {
        *self.0.lock() = Some(tunnel);
    }
}
