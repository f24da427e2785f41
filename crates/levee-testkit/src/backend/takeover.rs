//! What a backend's service and its connection task share for one
//! connection: the raw fault a request asked for ([`Takeover`]) and, once
//! hyper has let go, the socket to run it on (see `connection.rs`).

use std::sync::Arc;

use parking_lot::Mutex;
use tokio::net::TcpStream;
use tokio::sync::Notify;

/// A fault that needs the bare socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Takeover {
    /// Close without a word (a request raced with a crash).
    Drop,
    /// Keep the connection open, read and discard, never answer.
    Hang,
    /// Reset (RST) at once.
    Reset,
    /// Send a partial response, then reset.
    PartialThenReset { bytes: usize },
}

/// What the service and the connection task share for one connection.
pub(crate) struct ConnControl {
    /// The requested fault and, once hyper has let go, the socket. A lock is
    /// fine here: it is touched only on the fault path and once at close.
    pub(super) slot: Mutex<Slot>,
    /// Wakes the connection task when a fault is requested.
    pub(super) taken: Notify,
    /// Woken once hyper's connection is gone, to end a pending request future.
    pub(super) gone: Arc<Notify>,
}

#[derive(Default)]
pub(super) struct Slot {
    pub(super) takeover: Option<Takeover>,
    pub(super) stream: Option<TcpStream>,
}

impl ConnControl {
    pub(super) fn new() -> Self {
        Self {
            slot: Mutex::new(Slot::default()),
            taken: Notify::new(),
            gone: Arc::new(Notify::new()),
        }
    }

    /// Notified once hyper's side of the connection has been dropped.
    pub(crate) fn gone(&self) -> Arc<Notify> {
        Arc::clone(&self.gone)
    }

    /// Asks the connection task to run `takeover`. The first request wins
    /// (with HTTP/2 several streams may ask at once).
    pub(crate) fn request_takeover(&self, takeover: Takeover) {
        self.slot.lock().takeover.get_or_insert(takeover);
        self.taken.notify_one();
    }
}
