//! How far a streamed request body has gone up: the body tells of every
//! frame it hands to the upstream connection, the attempt learns when the last one went and,
//! while it has not, whom the upload is waiting for (see `upload.rs`).

use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Who a streamed upload is waiting for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Waiting {
    /// The connection asked for the next frame; the client has not sent it.
    Client,
    /// A frame went to the connection (or it is still being set up), and
    /// it has not asked for the next: the endpoint is not taking bytes.
    Endpoint,
}

/// What the body and the attempt share about one upload.
#[derive(Debug)]
struct Shared {
    progress: Mutex<Progress>,
    /// Woken once the last frame has gone to the connection.
    sent: Notify,
}

#[derive(Debug)]
struct Progress {
    waiting: Waiting,
    /// Since when (the last time the body moved, either way).
    since: Instant,
    /// When the last frame went to the connection.
    sent_at: Option<Instant>,
}

/// The body's side: told of every frame it hands to the upstream connection.
#[derive(Debug)]
pub(super) struct UploadProgress {
    shared: Arc<Shared>,
}

/// The attempt's side: knows when the body was sent whole and who a stalled
/// upload was waiting for.
#[derive(Debug)]
pub struct UploadWatch {
    shared: Arc<Shared>,
    /// When the upload began.
    pub(super) started: Instant,
}

/// A new upload starting at `now`: its body side and its attempt side.
pub(super) fn watch(now: Instant) -> (UploadProgress, UploadWatch) {
    let shared = Arc::new(Shared {
        progress: Mutex::new(Progress {
            waiting: Waiting::Endpoint,
            since: now,
            sent_at: None,
        }),
        sent: Notify::new(),
    });
    let progress = UploadProgress {
        shared: Arc::clone(&shared),
    };
    (
        progress,
        UploadWatch {
            shared,
            started: now,
        },
    )
}

impl UploadProgress {
    /// The connection asked for a frame and the client has none yet. The clock is
    /// read only when the wait changes hands, not on every spurious poll.
    pub(super) fn waiting_for_client(&self) {
        let mut progress = self.shared.progress.lock();
        if progress.waiting != Waiting::Client {
            progress.waiting = Waiting::Client;
            progress.since = Instant::now();
        }
    }

    /// A frame went to the connection; `last` when it was the body's last.
    pub(super) fn handed_over(&self, last: bool) {
        let now = Instant::now();
        let mut progress = self.shared.progress.lock();
        progress.waiting = Waiting::Endpoint;
        progress.since = now;
        if last && progress.sent_at.is_none() {
            progress.sent_at = Some(now);
            drop(progress);
            self.shared.sent.notify_one();
        }
    }
}

impl UploadWatch {
    /// When the body's last frame went to the connection. One waiter only (the
    /// attempt): `notify_one` keeps the wake-up if it comes first.
    pub(super) async fn sent(&self) -> Instant {
        loop {
            if let Some(sent_at) = self.shared.progress.lock().sent_at {
                return sent_at;
            }
            self.shared.sent.notified().await;
        }
    }

    /// Who the upload waits for, and since when.
    pub(super) fn waiting(&self) -> (Waiting, Instant) {
        let progress = self.shared.progress.lock();
        (progress.waiting, progress.since)
    }
}
