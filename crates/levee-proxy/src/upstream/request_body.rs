//! The request body as sent upstream: held whole (so a retry or a hedge can
//! send it again) when it fits the cluster's replay buffer, streamed through
//! otherwise.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;

pin_project_lite::pin_project! {
    /// A request body on its way upstream.
    #[project = RequestBodyProjection]
    pub enum RequestBody {
        /// The whole body, held by levee: every attempt gets its own copy
        /// (a cheap reference-counted clone).
        Replayable {
            data: Option<Bytes>,
            trailers: Option<HeaderMap>,
        },
        /// A body larger than the replay buffer: what was read while finding
        /// that out, then the rest straight from the client. Gone once sent.
        Streaming {
            prefix: Option<Bytes>,
            #[pin]
            rest: Incoming,
        },
    }
}

/// The client's body broke while levee was reading it for replay.
#[derive(Debug)]
pub struct ClientBodyFailed;

/// A copy of the body for one attempt, or `None` for a streaming body (it
/// can be sent once only).
#[derive(Clone, Debug, Default)]
pub struct ReplayCopy {
    data: Bytes,
    trailers: Option<HeaderMap>,
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

/// Read `body` for replay if it announces a length of at most `limit` bytes:
/// the result is a [`ReplayCopy`] (replayable) or the streaming body to send
/// once.
///
/// A body of unknown length (chunked) is never held: it may be a stream the
/// client only continues once the upstream answers (a duplex exchange), and
/// waiting for its end would deadlock both. It streams through instead.
pub async fn read_for_replay(
    mut body: Incoming,
    limit: usize,
) -> Result<Result<ReplayCopy, RequestBody>, ClientBodyFailed> {
    // GET, HEAD, DELETE …: nothing to read, nothing to copy.
    if body.is_end_stream() {
        return Ok(Ok(ReplayCopy::default()));
    }
    let Some(announced) = body
        .size_hint()
        .exact()
        .filter(|length| *length <= limit as u64)
    else {
        return Ok(Err(RequestBody::Streaming {
            prefix: None,
            rest: body,
        }));
    };
    let mut buffer = BytesMut::with_capacity(usize::try_from(announced).unwrap_or(0));
    let mut trailers = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| ClientBodyFailed)?;
        match frame.into_data() {
            Ok(data) => {
                buffer.extend_from_slice(&data);
                // Only if the client sent more than it announced.
                if buffer.len() > limit {
                    return Ok(Err(RequestBody::Streaming {
                        prefix: Some(buffer.freeze()),
                        rest: body,
                    }));
                }
            }
            Err(frame) => {
                if let Ok(map) = frame.into_trailers() {
                    trailers = Some(map);
                }
            }
        }
    }
    Ok(Ok(ReplayCopy {
        data: buffer.freeze(),
        trailers,
    }))
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
                Poll::Ready(trailers.take().map(|map| Ok(Frame::trailers(map))))
            }
            RequestBodyProjection::Streaming { prefix, rest } => {
                if let Some(prefix) = prefix.take() {
                    return Poll::Ready(Some(Ok(Frame::data(prefix))));
                }
                rest.poll_frame(cx)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Replayable { data, trailers } => data.is_none() && trailers.is_none(),
            RequestBody::Streaming { prefix, rest } => prefix.is_none() && rest.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Replayable { data, .. } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |data| data.len() as u64))
            }
            RequestBody::Streaming { prefix, rest } => {
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
