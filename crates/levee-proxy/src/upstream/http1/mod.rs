//! levee's own HTTP/1.1 client connection: requests written and responses
//! read by the request's task itself.
//!
//! Written by hand rather than taken from hyper (issue 11): hyper's client
//! connection runs as a task of its own, and every request crosses to it
//! and back through a channel and a oneshot, with its body behind another
//! channel — about 11,000 instructions per request under callgrind, a third
//! of levee's whole request path. Here the exchange is a plain state
//! machine the request's future polls. The parsing is `httparse`'s (what
//! hyper uses), and the framing rules are hyper's client rules, so an
//! endpoint sees the bytes it saw before. Protocol upgrades and HTTP/2
//! still go through hyper.

mod body_decoder;
mod exchange;
mod request_head;
mod response_head;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::BytesMut;
use http::{Method, Request, Response};

pub(crate) use exchange::push_chunk_size;
pub use exchange::{BodyError, ExchangeError, Http1Body};
pub(crate) use request_head::{ends_with_chunked, has_token, length_of};

use super::request_body::RequestBody;
use super::watched::{Watched, WireLog};
use crate::tls::Stream;

/// Room made in the read buffer before each read.
const READ_CHUNK: usize = 8 * 1024;

/// A write buffer grown past this (by a large body) is given back once
/// empty, not kept with the idle connection: request heads fit, and a pool
/// of idle connections should not each hold the largest upload's buffer.
const KEEP_WRITE_BUF: usize = 16 * 1024;

/// An HTTP/1.1 connection to an endpoint, idle or carrying one request.
pub struct Http1Connection {
    io: Watched,
    /// What the socket saw (see [`WireLog`]).
    wire: Arc<WireLog>,
    /// Bytes read and not yet taken by a response.
    read_buf: BytesMut,
    /// Bytes of the request not yet written.
    write_buf: BytesMut,
    /// Header fields a response may have.
    max_headers: usize,
    /// The request body still to send; `None` once all of it was written
    /// (and while the connection is idle).
    upload: Option<exchange::Upload>,
}

impl Http1Connection {
    /// A connection over `stream` (connected, TLS done).
    pub fn new(stream: Stream, max_headers: usize) -> Box<Http1Connection> {
        let (io, wire) = Watched::new(stream);
        Box::new(Http1Connection {
            io,
            wire,
            read_buf: BytesMut::new(),
            write_buf: BytesMut::new(),
            max_headers,
            upload: None,
        })
    }

    /// What its socket saw.
    pub fn wire(&self) -> &Arc<WireLog> {
        &self.wire
    }

    /// Whether the endpoint has closed this idle connection, or sent on it
    /// what nobody asked for: found without waiting (a read that would
    /// block means it is still open).
    pub fn is_stale(&mut self) -> bool {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match self.poll_read(&mut cx) {
            Poll::Pending => false,
            Poll::Ready(Ok(_) | Err(_)) => true,
        }
    }

    /// Read what the socket has into the read buffer: the bytes read, 0 at
    /// the end of the stream.
    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<usize>> {
        if self.read_buf.capacity() - self.read_buf.len() < READ_CHUNK / 8 {
            self.read_buf.reserve(READ_CHUNK);
        }
        tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.read_buf)
    }

    fn trim_write_buf(&mut self) {
        if self.write_buf.capacity() > KEEP_WRITE_BUF {
            self.write_buf = BytesMut::new();
        }
    }
}

/// Where a connection goes once its response has been read to its end:
/// the endpoint's pool. A trait, so that this module needs nothing of the
/// pool that uses it.
pub trait ConnectionHome: Send + Sync {
    /// Keep `connection` for another request (or close it).
    fn give_back(&self, connection: Box<Http1Connection>);
}

/// Send `request` on `connection`, with the header fields all attempts of
/// its request share (`shared`) before its own: the future's output is the response
/// head, whose body reads the rest and gives the connection back to `home`
/// once it has been read to its end.
///
/// The request is taken apart and its head written to the connection's
/// buffer here, not in the future: what the future keeps is the exchange
/// alone, and every future that awaits it up to the one hyper holds per
/// request stays that much smaller (issue 11).
pub fn send(
    connection: Box<Http1Connection>,
    request: Request<RequestBody>,
    shared: &super::SharedFields,
    home: Arc<dyn ConnectionHome>,
) -> SendHead {
    let (exchange, method) = exchange::Exchange::start(connection, request, shared);
    SendHead {
        exchange: Some((exchange, home)),
        method,
    }
}

/// A request on its way, until its response head has come back.
pub struct SendHead {
    /// `None` once the head came back.
    exchange: Option<(exchange::Exchange, Arc<dyn ConnectionHome>)>,
    method: Method,
}

impl SendHead {
    /// What the connection's socket saw (for telling an idle close apart);
    /// `None` once the head came back.
    pub fn wire(&self) -> Option<&Arc<WireLog>> {
        self.exchange.as_ref().map(|(exchange, _)| exchange.wire())
    }
}

impl Future for SendHead {
    type Output = Result<Response<Http1Body>, ExchangeError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let Some((exchange, _)) = this.exchange.as_mut() else {
            return Poll::Ready(Err(ExchangeError::Closed));
        };
        // On an error the exchange stays (its connection closes when this
        // future is dropped): the pool reads what the socket saw.
        let head = match exchange.poll_head(cx, &this.method) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
            Poll::Ready(Ok(head)) => head,
        };
        let Some((exchange, home)) = this.exchange.take() else {
            return Poll::Ready(Err(ExchangeError::Closed));
        };
        let body = exchange.into_body(&head, home);
        let (parts, ()) = head.response.into_parts();
        Poll::Ready(Ok(Response::from_parts(parts, body)))
    }
}
