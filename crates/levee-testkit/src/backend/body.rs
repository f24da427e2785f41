//! The response bodies a backend sends, as one concrete type so the healthy
//! path needs no boxing.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::time::Sleep;

/// Every body the backend's routes produce.
pub(crate) enum ResponseBody {
    /// A body known up front (`hello from …`, the 503 JSON, or nothing).
    /// `None` once it has been sent.
    Full(Option<Bytes>),
    /// `/drip`: numbered chunks with a pause between them, so a test can
    /// watch a response being streamed through the proxy.
    Drip(Box<Drip>),
    /// `/echo`: the request body, forwarded frame by frame as it arrives.
    Echo(Incoming),
}

/// State of a `/drip` response.
pub(crate) struct Drip {
    /// Index of the next chunk to send.
    next: u64,
    /// How many chunks to send in all.
    total: u64,
    /// Pause between two chunks.
    interval: Duration,
    /// The running pause, if one is in progress.
    pause: Option<Pin<Box<Sleep>>>,
}

impl ResponseBody {
    /// A body of fixed bytes.
    pub(crate) fn full(bytes: Bytes) -> Self {
        ResponseBody::Full(Some(bytes))
    }

    /// An empty body.
    pub(crate) fn empty() -> Self {
        ResponseBody::Full(None)
    }

    /// `chunks` numbered chunks, `interval` apart (the first one at once).
    pub(crate) fn drip(chunks: u64, interval: Duration) -> Self {
        ResponseBody::Drip(Box::new(Drip {
            next: 0,
            total: chunks,
            interval,
            pause: None,
        }))
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            ResponseBody::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            ResponseBody::Echo(incoming) => Pin::new(incoming).poll_frame(cx),
            ResponseBody::Drip(drip) => {
                if drip.next >= drip.total {
                    return Poll::Ready(None);
                }
                if drip.next > 0 {
                    let interval = drip.interval;
                    let pause = drip
                        .pause
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep(interval)));
                    if pause.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    drip.pause = None;
                }
                let chunk = Bytes::from(format!("chunk {}\n", drip.next));
                drip.next += 1;
                Poll::Ready(Some(Ok(Frame::data(chunk))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ResponseBody::Full(bytes) => bytes.is_none(),
            ResponseBody::Echo(incoming) => incoming.is_end_stream(),
            ResponseBody::Drip(drip) => drip.next >= drip.total,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            // An exact hint makes hyper send `content-length` instead of
            // chunked encoding.
            ResponseBody::Full(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
            ResponseBody::Echo(incoming) => incoming.size_hint(),
            ResponseBody::Drip(_) => SizeHint::default(),
        }
    }
}
