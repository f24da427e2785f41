//! A client request's body, whoever read the request: hyper's body for the
//! requests hyper serves, nothing for the bodiless HTTP/1.1 requests levee
//! reads itself (`listener/simple_http1.rs`).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

pin_project_lite::pin_project! {
    /// The body of a request from a client.
    #[project = ClientBodyProjection]
    pub enum ClientBody {
        /// A request without a body.
        Empty,
        /// Read by hyper.
        Hyper {
            #[pin]
            body: Incoming,
        },
    }
}

impl From<Incoming> for ClientBody {
    fn from(body: Incoming) -> ClientBody {
        ClientBody::Hyper { body }
    }
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.project() {
            ClientBodyProjection::Empty => Poll::Ready(None),
            ClientBodyProjection::Hyper { body } => body.poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ClientBody::Empty => true,
            ClientBody::Hyper { body } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ClientBody::Empty => SizeHint::with_exact(0),
            ClientBody::Hyper { body } => body.size_hint(),
        }
    }
}
