//! A streamed request body on its way upstream: when it has been sent whole,
//! and, until then, whom the upload is waiting for.
//!
//! Time spent receiving the client's body is the client's, not the
//! endpoint's. Issue #16: a 1 GiB upload at 100 MB/s was cut at
//! `per_try_timeout` with a 504, and the healthy endpoint was charged with a
//! timeout. So a streamed body goes up in two phases:
//!
//! 1. **Upload.** No response-head timer runs. A progress timer does: when
//!    the body has not moved for `body_idle_timeout`, whoever it was waiting
//!    for is at fault. Waiting for the client (hyper asked for the next frame
//!    and the client has not sent it) is the client's doing: the request
//!    fails as [`ClientBodyFailed::Stalled`], never counted against the
//!    endpoint. Waiting for the endpoint (hyper holds a frame the endpoint
//!    does not take) is the endpoint's: a timeout, as before.
//! 2. **Answer.** Once the last frame has gone to hyper, the per-try timeout
//!    and the request's deadline run, shifted by the time the upload took.
//!
//! Bodies levee holds whole (the common case: none, or a small one) never
//! come here: they are sent at once from memory, so the per-try timer may
//! start with the attempt.

use std::sync::Arc;
use std::time::Duration;

use hyper::Request;
use hyper::Response;
use hyper::body::Incoming;
use levee_core::FailureKind;
use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::pool::{EndpointPool, PooledConnection, SendFailure};
use super::request_body::{ClientBodyFailed, RequestBody};

/// Who a streamed upload is waiting for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Waiting {
    /// hyper asked for the next frame; the client has not sent it.
    Client,
    /// A frame went to hyper (or the connection is still being set up), and
    /// hyper has not asked for the next: the endpoint is not taking bytes.
    Endpoint,
}

/// What the body and the attempt share about one upload.
#[derive(Debug)]
struct Shared {
    progress: Mutex<Progress>,
    /// Woken once the last frame has gone to hyper.
    sent: Notify,
}

#[derive(Debug)]
struct Progress {
    waiting: Waiting,
    /// Since when (the last time the body moved, either way).
    since: Instant,
    /// When the last frame went to hyper.
    sent_at: Option<Instant>,
}

/// The body's side: told of every frame it hands to hyper.
#[derive(Debug)]
pub(super) struct UploadProgress {
    shared: Arc<Shared>,
}

/// The attempt's side: knows when the body was sent whole and who a stalled
/// upload was waiting for.
#[derive(Debug)]
pub struct UploadWatch {
    shared: Arc<Shared>,
    started: Instant,
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
    /// hyper asked for a frame and the client has none yet. The clock is
    /// read only when the wait changes hands, not on every spurious poll.
    pub(super) fn waiting_for_client(&self) {
        let mut progress = self.shared.progress.lock();
        if progress.waiting != Waiting::Client {
            progress.waiting = Waiting::Client;
            progress.since = Instant::now();
        }
    }

    /// A frame went to hyper; `last` when it was the body's last.
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
    /// When the body's last frame went to hyper. One waiter only (the
    /// attempt): `notify_one` keeps the wake-up if it comes first.
    async fn sent(&self) -> Instant {
        loop {
            if let Some(sent_at) = self.shared.progress.lock().sent_at {
                return sent_at;
            }
            self.shared.sent.notified().await;
        }
    }

    /// Who the upload waits for, and since when.
    fn waiting(&self) -> (Waiting, Instant) {
        let progress = self.shared.progress.lock();
        (progress.waiting, progress.since)
    }
}

/// What a streamed attempt came back with.
pub struct Uploaded {
    /// The response head, or why there is none.
    pub result: Result<(Response<Incoming>, PooledConnection), SendFailure>,
    /// How long the body took to go up (until the attempt ended, if it did
    /// not get there): the response-head deadlines are shifted by it.
    pub upload: Duration,
    /// How long the endpoint kept the attempt waiting: from the body's last
    /// frame (or the last frame it took) to the head or failure.
    pub latency: Duration,
}

/// Send `request`, whose body streams from the client, on `pool`: no
/// response-head timer while the body goes up, only `idle` as a progress
/// limit; then the head is due by `head_by` plus the upload's duration
/// (`head_by` being the attempt's deadline as if the body had been sent at
/// once).
pub async fn send_streamed(
    pool: &Arc<EndpointPool>,
    request: Request<RequestBody>,
    watch: UploadWatch,
    idle: Duration,
    head_by: Instant,
) -> Uploaded {
    let started = watch.started;
    let send = pool.send(request);
    tokio::pin!(send);
    let check = tokio::time::sleep_until(started + idle);
    tokio::pin!(check);
    let sent_at = loop {
        tokio::select! {
            biased;
            // An answer before the body is whole (413, 401, ...), or a failure.
            result = &mut send => {
                let (_, since) = watch.waiting();
                return Uploaded {
                    result,
                    upload: started.elapsed(),
                    latency: since.elapsed(),
                };
            }
            sent_at = watch.sent() => break sent_at,
            () = &mut check => {
                let (waiting, since) = watch.waiting();
                let now = Instant::now();
                if now < since + idle {
                    check.as_mut().reset(since + idle);
                    continue;
                }
                // Dropping `send` closes the connection: the endpoint sees a
                // truncated body, never a complete one.
                let failure = match waiting {
                    Waiting::Client => SendFailure::client_body(ClientBodyFailed::Stalled),
                    Waiting::Endpoint => SendFailure::new(FailureKind::Timeout),
                };
                tracing::debug!(
                    endpoint = ?pool,
                    waiting = ?waiting,
                    idle_ms = idle.as_millis() as u64,
                    "request body upload stalled"
                );
                return Uploaded {
                    result: Err(failure),
                    upload: now.saturating_duration_since(started),
                    latency: now.saturating_duration_since(since),
                };
            }
        }
    };
    let upload = sent_at.saturating_duration_since(started);
    let result = match tokio::time::timeout_at(head_by + upload, &mut send).await {
        Ok(result) => result,
        Err(_elapsed) => Err(SendFailure::new(FailureKind::Timeout)),
    };
    Uploaded {
        result,
        upload,
        latency: sent_at.elapsed(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[tokio::test(start_paused = true)]
    async fn the_wait_changes_hands_with_each_frame() {
        let start = Instant::now();
        let (body, attempt) = watch(start);
        // Connecting, then the head: the endpoint's side.
        assert_eq!(attempt.waiting(), (Waiting::Endpoint, start));
        tokio::time::advance(10 * MS).await;
        body.waiting_for_client();
        assert_eq!(attempt.waiting(), (Waiting::Client, start + 10 * MS));
        // Polled again with nothing new: still waiting since then.
        tokio::time::advance(10 * MS).await;
        body.waiting_for_client();
        assert_eq!(attempt.waiting(), (Waiting::Client, start + 10 * MS));
        body.handed_over(false);
        assert_eq!(attempt.waiting(), (Waiting::Endpoint, start + 20 * MS));
    }

    #[tokio::test(start_paused = true)]
    async fn the_last_frame_marks_the_body_sent() {
        let start = Instant::now();
        let (body, attempt) = watch(start);
        let sent = tokio::spawn(async move { attempt.sent().await });
        tokio::time::advance(5 * MS).await;
        body.handed_over(false);
        tokio::task::yield_now().await;
        assert!(!sent.is_finished());
        tokio::time::advance(5 * MS).await;
        body.handed_over(true);
        let sent_at = tokio::time::timeout(Duration::from_secs(1), sent)
            .await
            .expect("woken")
            .expect("task");
        assert_eq!(sent_at, start + 10 * MS);
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_sent_before_anyone_waits_is_still_seen() {
        let start = Instant::now();
        let (body, attempt) = watch(start);
        body.handed_over(true);
        let sent_at = tokio::time::timeout(Duration::from_secs(1), attempt.sent())
            .await
            .expect("no lost wake-up");
        assert_eq!(sent_at, start);
    }
}
