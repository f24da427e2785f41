//! One request and its response on an [`Http1Connection`], driven by the
//! request's own task: the request goes out (its body streamed as the
//! client sends it), the response head comes back, and the response body
//! is read as the client takes it. While a body still goes up after the
//! head came back (an early answer, or a duplex exchange), reading the
//! response body keeps sending it.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, Request};
use http_body::{Body, Frame, SizeHint};
use tokio::io::AsyncWrite;

use super::body_decoder::{BodyDecoder, Decoded};
use super::request_head::{self, BodyFraming, BodyLength};
use super::response_head::{self, ProtocolError};
use super::{ConnectionHome, Http1Connection};
use crate::upstream::request_body::{ClientBodyFailed, RequestBody};

/// Body bytes gathered before they are written.
const WRITE_BATCH: usize = 64 * 1024;

/// Why an exchange got no response head.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    /// The endpoint's bytes are not an HTTP/1.1 response.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// The client's request body failed while it was going up.
    #[error("the request body failed: {}", .0.as_str())]
    ClientBody(ClientBodyFailed),
    /// The endpoint closed the connection before a whole head arrived.
    #[error("the endpoint closed the connection before a whole response head")]
    Closed,
    /// Reading or writing the socket failed.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// A response body that broke off.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    #[error("the endpoint closed the connection mid-body")]
    Truncated,
    #[error("the request body failed: {}", .0.as_str())]
    ClientBody(ClientBodyFailed),
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// A connection with a request on it. Small on purpose: it travels in the
/// request's futures and in the response body, which are moved whole; the
/// upload's state stays on the heap with the connection.
pub(super) struct Exchange {
    connection: Box<Http1Connection>,
    /// The connection cannot carry another request: the request asked to
    /// close, or its body could not be sent whole.
    close_after: bool,
}

/// A request body on its way up (in [`Http1Connection::upload`]).
pub(super) struct Upload {
    /// `None` once its last frame was taken (what remains is in the
    /// connection's write buffer).
    body: Option<RequestBody>,
    framing: BodyFraming,
    /// With a counted length: bytes still to send.
    left: u64,
}

/// An upload that stopped.
enum UploadError {
    ClientBody(ClientBodyFailed),
    /// The endpoint stopped taking bytes (it may still have answered).
    Write(io::Error),
}

impl Exchange {
    /// Write `request`'s head (and, if it fits the first write, its body)
    /// into the connection's write buffer.
    pub(super) fn start(
        mut connection: Box<Http1Connection>,
        request: Request<RequestBody>,
        shared: &crate::upstream::SharedFields,
    ) -> (Exchange, http::Method) {
        let (parts, body) = request.into_parts();
        let length = if body.is_end_stream() {
            BodyLength::Ended
        } else {
            body.size_hint()
                .exact()
                .map_or(BodyLength::Unknown, BodyLength::Known)
        };
        let target = match (parts.uri.scheme(), parts.uri.path_and_query()) {
            (None, Some(path)) => std::borrow::Cow::Borrowed(path.as_str()),
            (None, None) => std::borrow::Cow::Borrowed("/"),
            (Some(_), _) => std::borrow::Cow::Owned(parts.uri.to_string()),
        };
        let (framing, close_after) = request_head::encode(
            &parts.method,
            &target,
            parts.version,
            request_head::Fields {
                shared,
                own: &parts.headers,
            },
            length,
            &mut connection.write_buf,
        );
        let left = match framing {
            BodyFraming::Length(length) => length,
            BodyFraming::Chunked { .. } => 0,
        };
        connection.upload = Some(Upload {
            body: (framing != BodyFraming::Length(0)).then_some(body),
            framing,
            left,
        });
        let exchange = Exchange {
            connection,
            close_after,
        };
        (exchange, parts.method)
    }

    /// What the connection's socket saw.
    pub(super) fn wire(&self) -> &Arc<super::WireLog> {
        &self.connection.wire
    }

    /// Send what is left of the request and read its response head.
    pub(super) fn poll_head(
        &mut self,
        cx: &mut Context<'_>,
        method: &http::Method,
    ) -> Poll<Result<response_head::Head, ExchangeError>> {
        if let Err(UploadError::ClientBody(failed)) = self.keep_uploading(cx) {
            return Poll::Ready(Err(ExchangeError::ClientBody(failed)));
        }
        let connection = &mut *self.connection;
        loop {
            if !connection.read_buf.is_empty()
                && let Some(head) =
                    response_head::parse(&mut connection.read_buf, method, connection.max_headers)?
            {
                return Poll::Ready(Ok(head));
            }
            if ready!(connection.poll_read(cx))? == 0 {
                return Poll::Ready(Err(ExchangeError::Closed));
            }
        }
    }

    /// Move the upload on, without waiting. A write the endpoint refused
    /// ends the upload (the endpoint may have answered already: the
    /// response is still read) and the connection with the response.
    fn keep_uploading(&mut self, cx: &mut Context<'_>) -> Result<(), UploadError> {
        if self.connection.upload.is_none() {
            return Ok(());
        }
        match self.poll_upload(cx) {
            Poll::Ready(Ok(())) => {
                self.connection.upload = None;
                Ok(())
            }
            Poll::Pending => Ok(()),
            Poll::Ready(Err(UploadError::Write(error))) => {
                tracing::trace!(%error, "endpoint stopped taking the request");
                self.connection.upload = None;
                self.close_after = true;
                Ok(())
            }
            Poll::Ready(Err(failed)) => {
                self.connection.upload = None;
                self.close_after = true;
                Err(failed)
            }
        }
    }

    /// Take the body's frames while the client has them (up to
    /// [`WRITE_BATCH`] bytes), write them with the head in as few writes as
    /// possible, and so on until the body has ended. One write matters: an
    /// endpoint that closed the connection resets it on the first bytes it
    /// gets, and a second write would fail where the first told nothing.
    fn poll_upload(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), UploadError>> {
        let connection = &mut *self.connection;
        let Some(upload) = connection.upload.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        loop {
            let mut client_pending = false;
            while let Some(body) = upload.body.as_mut()
                && connection.write_buf.len() < WRITE_BATCH
            {
                match Pin::new(&mut *body).poll_frame(cx) {
                    Poll::Pending => {
                        client_pending = true;
                        break;
                    }
                    Poll::Ready(None) => upload.finish(None, &mut connection.write_buf)?,
                    Poll::Ready(Some(Err(_))) => {
                        return Poll::Ready(Err(UploadError::ClientBody(ClientBodyFailed::Broken)));
                    }
                    Poll::Ready(Some(Ok(frame))) => {
                        // Nothing more is asked of a body that says it has
                        // ended (as hyper did), and the upload's watch
                        // counts on that.
                        let ended = body.is_end_stream();
                        match frame.into_data() {
                            Ok(data) => {
                                upload.put(&data, &mut connection.write_buf)?;
                                if ended {
                                    upload.finish(None, &mut connection.write_buf)?;
                                }
                            }
                            Err(frame) => upload
                                .finish(frame.into_trailers().ok(), &mut connection.write_buf)?,
                        }
                    }
                }
            }
            while !connection.write_buf.is_empty() {
                let written =
                    ready!(Pin::new(&mut connection.io).poll_write(cx, &connection.write_buf))
                        .map_err(UploadError::Write)?;
                if written == 0 {
                    return Poll::Ready(Err(UploadError::Write(io::ErrorKind::WriteZero.into())));
                }
                connection.write_buf.advance(written);
            }
            if upload.body.is_none() || client_pending {
                // What was written must reach the endpoint before the client
                // is waited for (TLS holds it otherwise).
                ready!(Pin::new(&mut connection.io).poll_flush(cx)).map_err(UploadError::Write)?;
                if client_pending {
                    return Poll::Pending;
                }
                connection.trim_write_buf();
                return Poll::Ready(Ok(()));
            }
        }
    }

    /// The response body, reading the rest of the exchange.
    pub(super) fn into_body(
        self,
        head: &response_head::Head,
        home: Arc<dyn ConnectionHome>,
    ) -> Http1Body {
        let mut body = Http1Body {
            decoder: BodyDecoder::new(head.body),
            keep_alive: head.keep_alive,
            exchange: Some(self),
            home,
            handed_out: false,
            failed: None,
        };
        if body.decoder.is_done() {
            body.finish();
        }
        body
    }
}

impl Upload {
    /// Frame and queue one piece of data.
    fn put(&mut self, data: &Bytes, out: &mut BytesMut) -> Result<(), UploadError> {
        if data.is_empty() {
            return Ok(());
        }
        match self.framing {
            BodyFraming::Length(_) => {
                let length = data.len() as u64;
                if length > self.left {
                    // More than the request announced: the endpoint would
                    // read the excess as a second request.
                    return Err(UploadError::ClientBody(ClientBodyFailed::Broken));
                }
                self.left -= length;
                out.extend_from_slice(data);
            }
            BodyFraming::Chunked { .. } => {
                push_chunk_size(data.len(), out);
                out.extend_from_slice(data);
                out.extend_from_slice(b"\r\n");
            }
        }
        Ok(())
    }

    /// The body has ended (with `trailers`, if any): close its framing.
    fn finish(
        &mut self,
        trailers: Option<HeaderMap>,
        out: &mut BytesMut,
    ) -> Result<(), UploadError> {
        self.body = None;
        match &self.framing {
            BodyFraming::Length(_) if self.left > 0 => {
                // Fewer bytes than announced: the endpoint would wait for
                // the rest forever.
                Err(UploadError::ClientBody(ClientBodyFailed::Broken))
            }
            BodyFraming::Length(_) => Ok(()),
            BodyFraming::Chunked { trailers: allowed } => {
                out.extend_from_slice(b"0\r\n");
                if let Some(trailers) = trailers {
                    let mut sent = HeaderMap::new();
                    for (name, value) in &trailers {
                        if allowed.contains(name) {
                            sent.append(name, value.clone());
                        }
                    }
                    request_head::write_fields(&sent, out);
                }
                out.extend_from_slice(b"\r\n");
                Ok(())
            }
        }
    }
}

/// A response body read from an HTTP/1.1 connection; the connection goes
/// back to its pool when the body has been read to its end (and is closed
/// when the body is dropped before).
pub struct Http1Body {
    /// `None` once the body has ended.
    exchange: Option<Exchange>,
    decoder: BodyDecoder,
    keep_alive: bool,
    home: Arc<dyn ConnectionHome>,
    /// Data was handed out since the body last waited.
    handed_out: bool,
    /// A failure held back for one poll (see [`Http1Body::fail`]).
    failed: Option<BodyError>,
}

impl Http1Body {
    /// The body has ended: the connection goes back to the pool if it can
    /// carry another request (keep-alive, the request sent whole, nothing
    /// unasked-for read), else it closes.
    fn finish(&mut self) {
        let Some(exchange) = self.exchange.take() else {
            return;
        };
        if self.keep_alive
            && !exchange.close_after
            && exchange.connection.upload.is_none()
            && exchange.connection.read_buf.is_empty()
        {
            self.home.give_back(exchange.connection);
        }
    }

    /// The body broke off. Right after data, the failure waits one poll:
    /// hyper's server writes a response's head and first data only when
    /// the body waits, and failing at once would abort the client's
    /// connection with neither (the client would not even see the status).
    fn fail(
        &mut self,
        error: BodyError,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        self.exchange = None;
        self.decoder = BodyDecoder::Done;
        if std::mem::take(&mut self.handed_out) {
            self.failed = Some(error);
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        Poll::Ready(Some(Err(error)))
    }
}

impl Body for Http1Body {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        if let Some(error) = this.failed.take() {
            return Poll::Ready(Some(Err(error)));
        }
        let Some(exchange) = this.exchange.as_mut() else {
            return Poll::Ready(None);
        };
        if let Err(UploadError::ClientBody(failed)) = exchange.keep_uploading(cx) {
            return this.fail(BodyError::ClientBody(failed), cx);
        }
        loop {
            let connection = &mut *exchange.connection;
            let frame = match this.decoder.decode(&mut connection.read_buf) {
                Err(error) => return this.fail(error.into(), cx),
                Ok(Decoded::Data(data)) => Frame::data(data),
                Ok(Decoded::Trailers(trailers)) => Frame::trailers(trailers),
                Ok(Decoded::End) => {
                    this.finish();
                    return Poll::Ready(None);
                }
                Ok(Decoded::More) => {
                    let read = match connection.poll_read(cx) {
                        Poll::Pending => {
                            this.handed_out = false;
                            return Poll::Pending;
                        }
                        Poll::Ready(Ok(read)) => read,
                        Poll::Ready(Err(error)) => return this.fail(error.into(), cx),
                    };
                    if read == 0 {
                        if matches!(this.decoder, BodyDecoder::Close) {
                            this.decoder = BodyDecoder::Done;
                            this.exchange = None;
                            return Poll::Ready(None);
                        }
                        return this.fail(BodyError::Truncated, cx);
                    }
                    continue;
                }
            };
            if this.decoder.is_done() {
                this.finish();
            }
            this.handed_out = true;
            return Poll::Ready(Some(Ok(frame)));
        }
    }

    fn is_end_stream(&self) -> bool {
        self.decoder.is_done() && self.failed.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        match self.decoder {
            BodyDecoder::Length(left) => SizeHint::with_exact(left),
            BodyDecoder::Done => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}

impl std::fmt::Debug for Http1Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http1Body")
            .field("decoder", &self.decoder)
            .finish_non_exhaustive()
    }
}

/// A chunk's size line: the length in hex, then CRLF.
pub(crate) fn push_chunk_size(length: usize, out: &mut BytesMut) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut digits = [0u8; 16];
    let mut at = digits.len();
    let mut rest = length;
    loop {
        at -= 1;
        digits[at] = HEX[rest & 0xf];
        rest >>= 4;
        if rest == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_sizes_are_lower_case_hex() {
        let mut out = BytesMut::new();
        for length in [1, 15, 16, 255, 4096, 1_000_000] {
            push_chunk_size(length, &mut out);
        }
        assert_eq!(&out[..], b"1\r\nf\r\n10\r\nff\r\n1000\r\nf4240\r\n");
    }
}
