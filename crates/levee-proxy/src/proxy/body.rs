//! The response body as forwarded to the client: the upstream's body streamed
//! frame by frame, keeping the request counted as in flight until it ends.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use levee_core::{EndpointId, InFlightGuard};
use prometheus_client::metrics::gauge::Gauge;

use crate::cluster::Cluster;
use crate::upstream::classify_body_error;

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
        #[pin]
        inner: Incoming,
        in_flight: Option<InFlight>,
        cluster: Arc<Cluster>,
        endpoint: EndpointId,
    }
}

impl UpstreamBody {
    /// Wrap `inner`, reporting a mid-body failure to `cluster`.
    pub fn new(
        inner: Incoming,
        in_flight: InFlight,
        cluster: Arc<Cluster>,
        endpoint: EndpointId,
    ) -> Self {
        UpstreamBody {
            inner,
            in_flight: Some(in_flight),
            cluster,
            endpoint,
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        match &polled {
            Poll::Ready(None) => {
                this.in_flight.take();
            }
            Poll::Ready(Some(Err(error))) => {
                // The client already has the head: the only honest thing left is
                // to fail its stream too (hyper aborts the client connection), so
                // a truncated body is never mistaken for a whole one.
                this.cluster
                    .record_body_failure(*this.endpoint, classify_body_error(error));
                this.in_flight.take();
            }
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
