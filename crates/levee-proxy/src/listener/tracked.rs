//! The service of one client connection, wrapped so the connection knows
//! whether a request is in progress (for its timeouts, parking and
//! eviction), and so that responses sent while levee drains say
//! `Connection: close`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, ready};

use http::header::{CONNECTION, HeaderValue};
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::service::Service;

use super::registry::ConnectionState;

/// A connection's service, counting requests in and responses out.
pub(crate) struct Tracked<S> {
    inner: S,
    state: Arc<ConnectionState>,
    /// HTTP/1: a draining response gets `Connection: close` (HTTP/2 says
    /// it with GOAWAY instead).
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

impl<S, B> Service<Request<Incoming>> for Tracked<S>
where
    S: Service<Request<Incoming>, Response = Response<B>>,
{
    type Response = Response<TrackedBody<B>>;
    type Error = S::Error;
    type Future = TrackedFuture<S::Future>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let state = &self.state;
        // HTTP/2 runs each request in a task of its own: atomic adds.
        state.started.fetch_add(1, Ordering::Relaxed);
        TrackedFuture {
            inner: self.inner.call(request),
            state: Some(Arc::clone(state)),
            http1: self.http1,
        }
    }
}

pin_project_lite::pin_project! {
    /// The service's future; its response's body carries the guard that
    /// counts the response as finished.
    pub(crate) struct TrackedFuture<F> {
        #[pin]
        inner: F,
        state: Option<Arc<ConnectionState>>,
        http1: bool,
    }

    impl<F> PinnedDrop for TrackedFuture<F> {
        fn drop(this: Pin<&mut Self>) {
            // Dropped before answering (the connection closed): the
            // request is over all the same.
            if let Some(state) = this.project().state.take() {
                finish(&state);
            }
        }
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
        let state = this.state.take();
        Poll::Ready(result.map(|mut response| {
            if *this.http1
                && state
                    .as_ref()
                    .is_some_and(|state| state.draining.load(Ordering::Relaxed))
            {
                response
                    .headers_mut()
                    .insert(CONNECTION, HeaderValue::from_static("close"));
            }
            response.map(|inner| TrackedBody {
                inner,
                finished: state.map(Finished),
            })
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

/// Counts a response as finished once, when dropped.
pub(crate) struct Finished(Arc<ConnectionState>);

impl Drop for Finished {
    fn drop(&mut self) {
        finish(&self.0);
    }
}

fn finish(state: &ConnectionState) {
    state
        .bytes_at_finish
        .store(state.bytes_read.load(Ordering::Relaxed), Ordering::Relaxed);
    state.finished.fetch_add(1, Ordering::Relaxed);
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
