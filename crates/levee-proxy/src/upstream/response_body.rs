//! An endpoint's response body, whichever connection it comes on.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use super::http1::Http1Body;

/// A response body read from an HTTP/1.1 connection of levee's own, or
/// from an HTTP/2 stream (hyper's).
#[derive(Debug)]
pub enum ResponseBody {
    Http1(Http1Body),
    Http2(Incoming),
}

/// Why a response body broke off.
pub type ResponseBodyError = Box<dyn std::error::Error + Send + Sync>;

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = ResponseBodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ResponseBodyError>>> {
        match self.get_mut() {
            ResponseBody::Http1(body) => Pin::new(body).poll_frame(cx).map_err(Into::into),
            ResponseBody::Http2(body) => Pin::new(body).poll_frame(cx).map_err(Into::into),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ResponseBody::Http1(body) => body.is_end_stream(),
            ResponseBody::Http2(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ResponseBody::Http1(body) => body.size_hint(),
            ResponseBody::Http2(body) => body.size_hint(),
        }
    }
}
