//! The request body as sent upstream: held whole (so a retry or a hedge can
//! send it again) when it fits the cluster's replay buffer, streamed through
//! otherwise.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::FutureExt;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::time::Instant;

use super::client_body::ClientBody;
use super::progress::{self, UploadProgress, UploadWatch};

pin_project_lite::pin_project! {
    /// A request body on its way upstream.
    #[project = RequestBodyProjection]
    pub enum RequestBody {
        /// The whole body, held by levee: every attempt gets its own copy
        /// (a cheap reference-counted clone).
        Replayable {
            data: Option<Bytes>,
            // Boxed: rare, and the body travels in every attempt's
            // request (128 bytes unboxed, 88 boxed).
            trailers: Option<Box<HeaderMap>>,
        },
        /// A body larger than the replay buffer: what was read while finding
        /// that out, then the rest straight from the client. Gone once sent.
        Streaming {
            prefix: Option<Bytes>,
            #[pin]
            rest: ClientBody,
            // Told of every frame handed to the upstream connection, once an attempt watches
            // the upload.
            progress: Option<UploadProgress>,
        },
    }
}

/// How the client's request body failed. Either way it is the client's
/// doing: never counted against an endpoint. (One byte: it travels in every
/// attempt's result.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientBodyFailed {
    /// No byte of it arrived for `body_idle_timeout`.
    Stalled,
    /// It could not be read: the client went away mid-body or sent a
    /// malformed one.
    Broken,
}

impl ClientBodyFailed {
    /// Stable lower-case label for metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            ClientBodyFailed::Stalled => "stalled",
            ClientBodyFailed::Broken => "broken",
        }
    }

    /// What happened, in words, for a cluster whose `body_idle_timeout` is
    /// `idle`.
    pub fn reason(self, idle: Duration) -> String {
        match self {
            ClientBodyFailed::Stalled => format!(
                "no byte of the request body arrived for {} (body_idle_timeout)",
                humantime::format_duration(idle)
            ),
            ClientBodyFailed::Broken => {
                "the request body broke off: the client disconnected or sent a malformed body"
                    .to_owned()
            }
        }
    }
}

/// A request body as read before the first attempt.
pub struct BodyRead {
    /// The body held whole (replayable), or the body to stream (once).
    pub body: Result<ReplayCopy, RequestBody>,
    /// When levee first had to wait for the client's bytes, if it had to:
    /// the time since then was spent on the client, not on an endpoint.
    pub waited_since: Option<Instant>,
}

/// A copy of the body for one attempt, or `None` for a streaming body (it
/// can be sent once only).
#[derive(Clone, Debug, Default)]
pub struct ReplayCopy {
    data: Bytes,
    trailers: Option<Box<HeaderMap>>,
}

impl ReplayCopy {
    /// A fresh body for the next attempt.
    pub fn body(&self) -> RequestBody {
        RequestBody::Replayable {
            data: (!self.data.is_empty()).then(|| self.data.clone()),
            trailers: self.trailers.clone(),
        }
    }
}

impl RequestBody {
    /// A body streaming from the client, `prefix` (already read) first.
    fn streaming(prefix: Option<Bytes>, rest: ClientBody) -> RequestBody {
        RequestBody::Streaming {
            prefix,
            rest,
            progress: None,
        }
    }

    /// Watch this body go up from `now`, if it streams from the client
    /// (`None` for a body levee holds: it is sent at once from memory).
    pub fn watch_upload(&mut self, now: Instant) -> Option<UploadWatch> {
        match self {
            RequestBody::Replayable { .. } => None,
            RequestBody::Streaming { progress, .. } => {
                let (body_side, attempt_side) = progress::watch(now);
                *progress = Some(body_side);
                Some(attempt_side)
            }
        }
    }
}

/// Read `body` for replay if it announces a length of at most `limit` bytes:
/// the result holds a [`ReplayCopy`] (replayable) or the streaming body to
/// send once. A client that sends no byte of it for `idle` fails it as
/// [`ClientBodyFailed::Stalled`]: the wait is bounded by the client's
/// progress, not by a deadline, so a slow but steady client is served.
///
/// A body of unknown length (chunked) is never held: it may be a stream the
/// client only continues once the upstream answers (a duplex exchange), and
/// waiting for its end would deadlock both. It streams through instead.
pub async fn read_for_replay(
    mut body: ClientBody,
    limit: usize,
    idle: Duration,
) -> Result<BodyRead, ClientBodyFailed> {
    let mut waited_since = None;
    // GET, HEAD, DELETE …: nothing to read, nothing to copy.
    if body.is_end_stream() {
        return Ok(BodyRead {
            body: Ok(ReplayCopy::default()),
            waited_since,
        });
    }
    let Some(announced) = body
        .size_hint()
        .exact()
        .filter(|length| *length <= limit as u64)
    else {
        return Ok(BodyRead {
            body: Err(RequestBody::streaming(None, body)),
            waited_since,
        });
    };
    let mut buffer = BytesMut::with_capacity(usize::try_from(announced).unwrap_or(0));
    let mut trailers = None;
    while let Some(frame) = next_frame(&mut body, idle, &mut waited_since).await? {
        match frame.into_data() {
            Ok(data) => {
                buffer.extend_from_slice(&data);
                // Only if the client sent more than it announced.
                if buffer.len() > limit {
                    return Ok(BodyRead {
                        body: Err(RequestBody::streaming(Some(buffer.freeze()), body)),
                        waited_since,
                    });
                }
            }
            Err(frame) => {
                if let Ok(map) = frame.into_trailers() {
                    trailers = Some(Box::new(map));
                }
            }
        }
    }
    Ok(BodyRead {
        body: Ok(ReplayCopy {
            data: buffer.freeze(),
            trailers,
        }),
        waited_since,
    })
}

/// The next frame of `body`, waiting at most `idle` for it. A frame that is
/// already there (a small body usually arrives with its head) is taken
/// without a timer or a clock read; the first real wait is noted in
/// `waited_since`.
async fn next_frame(
    body: &mut ClientBody,
    idle: Duration,
    waited_since: &mut Option<Instant>,
) -> Result<Option<Frame<Bytes>>, ClientBodyFailed> {
    let frame = match body.frame().now_or_never() {
        Some(frame) => frame,
        None => {
            let now = Instant::now();
            waited_since.get_or_insert(now);
            // Boxed: the timer would otherwise sit in every request's
            // future (which hyper moves whole), waiting or not.
            Box::pin(tokio::time::timeout_at(now + idle, body.frame()))
                .await
                .map_err(|_elapsed| ClientBodyFailed::Stalled)?
        }
    };
    frame.transpose().map_err(|_| ClientBodyFailed::Broken)
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.project() {
            RequestBodyProjection::Replayable { data, trailers } => {
                if let Some(data) = data.take() {
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Poll::Ready(trailers.take().map(|map| Ok(Frame::trailers(*map))))
            }
            RequestBodyProjection::Streaming {
                prefix,
                mut rest,
                progress,
            } => {
                if let Some(prefix) = prefix.take() {
                    if let Some(progress) = progress {
                        progress.handed_over(rest.is_end_stream());
                    }
                    return Poll::Ready(Some(Ok(Frame::data(prefix))));
                }
                let polled = rest.as_mut().poll_frame(cx);
                if let Some(progress) = progress {
                    match &polled {
                        Poll::Pending => progress.waiting_for_client(),
                        // The connection stops asking once a body says it has ended,
                        // so the last frame is known by `is_end_stream`.
                        Poll::Ready(Some(Ok(_))) => progress.handed_over(rest.is_end_stream()),
                        Poll::Ready(None) => progress.handed_over(true),
                        // The attempt fails with it: a client body failure.
                        Poll::Ready(Some(Err(_))) => {}
                    }
                }
                polled
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Replayable { data, trailers } => data.is_none() && trailers.is_none(),
            RequestBody::Streaming { prefix, rest, .. } => prefix.is_none() && rest.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Replayable { data, .. } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |data| data.len() as u64))
            }
            RequestBody::Streaming { prefix, rest, .. } => {
                let prefix = prefix.as_ref().map_or(0, |prefix| prefix.len() as u64);
                let rest = rest.size_hint();
                let mut hint = SizeHint::new();
                hint.set_lower(rest.lower() + prefix);
                if let Some(upper) = rest.upper() {
                    hint.set_upper(upper + prefix);
                }
                hint
            }
        }
    }
}
