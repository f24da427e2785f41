//! A connection's requests, counted in and out, so that the connection
//! knows whether a request is in progress (for its timeouts, parking and
//! eviction); and responses sent while levee drains say `Connection:
//! close`.
//!
//! [`begin`] and [`respond`] are called by the service itself, inside its
//! own future: a wrapper future around the request path would make hyper
//! copy the request path's (large) future once more per request.
//! [`Tracked`] wraps services where that does not matter (the admin API).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, ready};

use http::header::{CONNECTION, HeaderValue};
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::service::Service;

use super::registry::ConnectionState;
use crate::upstream::ClientBody;

/// A request has started on the connection; the guard counts it as
/// finished when dropped (or when its response body ends, see
/// [`respond`]).
pub(crate) fn begin(state: &Arc<ConnectionState>) -> Finished {
    // HTTP/2 runs each request in a task of its own: atomic adds.
    state.started.fetch_add(1, Ordering::Relaxed);
    Finished(Arc::clone(state))
}

/// The response of the request `finished` tracks: its body carries the
/// guard, and while draining an HTTP/1 response says `Connection: close`
/// (HTTP/2 says it with GOAWAY instead).
pub(crate) fn respond<B>(
    mut response: Response<B>,
    finished: Finished,
    http1: bool,
) -> Response<TrackedBody<B>> {
    if http1 && finished.0.draining.load(Ordering::Relaxed) {
        response
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    response.map(|inner| TrackedBody {
        inner,
        finished: Some(finished),
    })
}

/// A connection's service wrapped in [`begin`] / [`respond`].
pub(crate) struct Tracked<S> {
    inner: S,
    state: Arc<ConnectionState>,
    http1: bool,
}

impl<S> Tracked<S> {
    pub(crate) fn new(inner: S, state: Arc<ConnectionState>, http1: bool) -> Tracked<S> {
        Tracked {
            inner,
            state,
            http1,
        }
    }
}

impl<S, B> Service<Request<ClientBody>> for Tracked<S>
where
    S: Service<Request<ClientBody>, Response = Response<B>>,
{
    type Response = Response<TrackedBody<B>>;
    type Error = S::Error;
    type Future = TrackedFuture<S::Future>;

    fn call(&self, request: Request<ClientBody>) -> Self::Future {
        TrackedFuture {
            finished: Some(begin(&self.state)),
            inner: self.inner.call(request),
            http1: self.http1,
        }
    }
}

pin_project_lite::pin_project! {
    /// The wrapped service's future.
    pub(crate) struct TrackedFuture<F> {
        #[pin]
        inner: F,
        finished: Option<Finished>,
        http1: bool,
    }
}

impl<F, B, E> Future for TrackedFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<TrackedBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        let http1 = *this.http1;
        Poll::Ready(result.map(|response| match this.finished.take() {
            Some(finished) => respond(response, finished, http1),
            None => response.map(|inner| TrackedBody {
                inner,
                finished: None,
            }),
        }))
    }
}

pin_project_lite::pin_project! {
    /// A response body that counts its response as finished when it ends
    /// or is dropped.
    pub(crate) struct TrackedBody<B> {
        #[pin]
        inner: B,
        finished: Option<Finished>,
    }
}

/// Counts a request as finished once, when dropped.
pub(crate) struct Finished(Arc<ConnectionState>);

impl Drop for Finished {
    fn drop(&mut self) {
        let state = &self.0;
        state
            .bytes_at_finish
            .store(state.bytes_read.load(Ordering::Relaxed), Ordering::Relaxed);
        state.finished.fetch_add(1, Ordering::Relaxed);
    }
}

impl<B: Body> Body for TrackedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        if frame.is_none() {
            // Ended: count it now rather than when hyper drops the body.
            this.finished.take();
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
