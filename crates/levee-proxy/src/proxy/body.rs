//! The response body as forwarded to the client: the upstream's body streamed
//! frame by frame, keeping the request counted as in flight until it ends.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use levee_core::admission::Permit;
use levee_core::{EndpointId, InFlightGuard, Outcome};
use prometheus_client::metrics::gauge::Gauge;
use tokio::time::Instant;

use crate::access_log::PendingLine;
use crate::cluster::Cluster;

/// Body of every response a listener sends: a streamed upstream body or one of
/// levee's own short answers.
pub type ProxyBody = http_body_util::Either<UpstreamBody, http_body_util::Full<Bytes>>;
use crate::upstream::{PooledConnection, ResponseBody, ResponseBodyError, classify_body_error};

/// Counts a request in flight (balancer load and the metric gauge) until dropped.
pub struct InFlight {
    _load: InFlightGuard,
    gauge: Gauge,
}

impl InFlight {
    /// Start counting.
    pub fn start(cluster: &Cluster, endpoint: EndpointId) -> InFlight {
        let gauge = cluster.endpoint(endpoint).metrics.in_flight().clone();
        gauge.inc();
        InFlight {
            _load: cluster.load(endpoint).start_request(),
            gauge,
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

pin_project_lite::pin_project! {
    /// An upstream response body on its way to the client.
    pub struct UpstreamBody {
        // Bytes already read from `inner` (by the cache, finding the body too
        // large to store), sent first.
        prefix: Option<Bytes>,
        #[pin]
        inner: ResponseBody,
        in_flight: Option<InFlight>,
        // The request's admission slot, given back with `in_flight`.
        admission: Option<Permit>,
        // Goes back to the pool once the body has been read to its end.
        connection: Option<PooledConnection>,
        cluster: Arc<Cluster>,
        // The attempt's outcome as of its head; its verdict for outlier
        // detection is given once the body ends (or fails, or is dropped).
        head: Option<Outcome>,
        // The request's access-log line, written when the body ends.
        log: Option<Box<PendingLine>>,
    }

    impl PinnedDrop for UpstreamBody {
        fn drop(this: Pin<&mut Self>) {
            // hyper stops polling once a body with a known length says it has
            // ended, so the end is often seen only here.
            let this = this.project();
            // Ended, or abandoned by the client: the head's verdict stands.
            if let Some(head) = this.head.take() {
                this.cluster.record_passive(&head, Instant::now());
            }
            if let Some(log) = this.log.take() {
                log.finish();
            }
        }
    }
}

impl UpstreamBody {
    /// Wrap `inner`, reporting a mid-body failure to `cluster`.
    pub fn new(
        inner: ResponseBody,
        in_flight: InFlight,
        connection: PooledConnection,
        cluster: Arc<Cluster>,
        head: Outcome,
    ) -> Self {
        // An empty body (HEAD, 204, 304, content-length 0) may never be
        // polled: the connection is free already.
        let (in_flight, connection) = if inner.is_end_stream() {
            drop(connection);
            (None, None)
        } else {
            (Some(in_flight), Some(connection))
        };
        UpstreamBody {
            prefix: None,
            inner,
            in_flight,
            admission: None,
            connection,
            cluster,
            head: Some(head),
            log: None,
        }
    }
}

impl UpstreamBody {
    /// Send `prefix` (bytes already read from this body) before the rest.
    pub fn resume_after(&mut self, prefix: Bytes) {
        self.prefix = (!prefix.is_empty()).then_some(prefix);
    }

    /// Give no outlier verdict for this response: it failed the way a
    /// poison request fails everywhere, which says nothing about its node.
    pub fn forgive(&mut self) {
        self.head = None;
    }

    /// Write `line` once the body has gone to the client (or the client
    /// left), with its byte count.
    pub fn log_on_end(&mut self, line: Box<PendingLine>) {
        self.log = Some(line);
    }

    /// Keep the request's admission slot until the body ends (at once if it
    /// already has).
    pub fn hold_admission(&mut self, permit: Option<Permit>) {
        if self.in_flight.is_some() {
            self.admission = permit;
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = ResponseBodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ResponseBodyError>>> {
        let mut this = self.project();
        if let Some(prefix) = this.prefix.take() {
            if let Some(log) = this.log.as_mut() {
                log.count(prefix.len());
            }
            return Poll::Ready(Some(Ok(Frame::data(prefix))));
        }
        let polled = this.inner.as_mut().poll_frame(cx);
        if let (Some(log), Poll::Ready(Some(Ok(frame)))) = (this.log.as_mut(), &polled)
            && let Some(data) = frame.data_ref()
        {
            log.count(data.len());
        }
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(trailers) = frame.trailers_ref()
        {
            // A gRPC call's status comes last: judge the attempt by it.
            if let (Some(head), Some(code)) = (this.head.as_mut(), super::grpc::status_in(trailers))
            {
                *head = Outcome::response(
                    head.endpoint,
                    super::grpc::http_equivalent(code),
                    head.latency,
                );
            }
        }
        match &polled {
            Poll::Ready(None) => {
                this.in_flight.take();
                this.admission.take();
                this.connection.take();
            }
            Poll::Ready(Some(Ok(_))) if this.inner.is_end_stream() => {
                // The last frame: the response is complete.
                this.in_flight.take();
                this.admission.take();
                this.connection.take();
            }
            Poll::Ready(Some(Err(error))) => {
                // The client already has the head: the only honest thing left is
                // to fail its stream too (hyper aborts the client connection), so
                // a truncated body is never mistaken for a whole one.
                if let Some(head) = this.head.take() {
                    let kind = classify_body_error(error.as_ref());
                    this.cluster.record_body_failure(head.endpoint, kind);
                    this.cluster.record_passive(
                        &Outcome::failure(head.endpoint, kind, head.latency),
                        Instant::now(),
                    );
                }
                this.in_flight.take();
                this.admission.take();
                this.connection.take();
            }
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.prefix.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let prefix = self.prefix.as_ref().map_or(0, |prefix| prefix.len() as u64);
        let inner = self.inner.size_hint();
        let mut hint = SizeHint::new();
        hint.set_lower(inner.lower() + prefix);
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper + prefix);
        }
        hint
    }
}
