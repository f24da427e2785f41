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
//!    for is at fault. Waiting for the client (the connection asked for the next frame
//!    and the client has not sent it) is the client's doing: the request
//!    fails as [`ClientBodyFailed::Stalled`], never counted against the
//!    endpoint. Waiting for the endpoint (the connection holds a frame the endpoint
//!    does not take) is the endpoint's: a timeout, as before.
//! 2. **Answer.** Once the last frame has gone to the connection, the per-try timeout
//!    and the request's deadline run, shifted by the time the upload took.
//!
//! Bodies levee holds whole (the common case: none, or a small one) never
//! come here: they are sent at once from memory, so the per-try timer may
//! start with the attempt.

use std::sync::Arc;
use std::time::Duration;

use super::response_body::ResponseBody;
use hyper::Request;
use hyper::Response;
use levee_core::FailureKind;
use tokio::time::Instant;

use super::pool::{EndpointPool, PooledConnection, SendFailure};
use super::progress::{UploadWatch, Waiting};
use super::request_body::{ClientBodyFailed, RequestBody};

/// What a streamed attempt came back with.
pub struct Uploaded {
    /// The response head, or why there is none.
    pub result: Result<(Response<ResponseBody>, PooledConnection), SendFailure>,
    /// How long the body took to go up (until the attempt ended, if it did
    /// not get there): the response-head deadlines are shifted by it.
    pub upload: Duration,
    /// How long the endpoint kept the attempt waiting: from the body's last
    /// frame (or the last frame it took) to the head or failure.
    pub latency: Duration,
}

/// Send `request` (with `shared`, see [`EndpointPool::send`]), whose body
/// streams from the client, on `pool`: no
/// response-head timer while the body goes up, only `idle` as a progress
/// limit; then the head is due by `head_by` plus the upload's duration
/// (`head_by` being the attempt's deadline as if the body had been sent at
/// once).
pub async fn send_streamed(
    pool: &Arc<EndpointPool>,
    request: Request<RequestBody>,
    shared: &super::SharedFields,
    watch: UploadWatch,
    idle: Duration,
    head_by: Instant,
) -> Uploaded {
    let started = watch.started;
    let send = pool.send(request, shared);
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
    use crate::upstream::progress::watch;

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
