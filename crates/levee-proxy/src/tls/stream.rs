//! A TCP connection, bare or under TLS, as one type: client connections of
//! listeners and connections to endpoints both use it, so the code that
//! reads and writes them is the same whichever they are.

use std::io::{self, Read};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::{client, server};

/// A TCP connection, with or without TLS.
#[derive(Debug)]
pub enum Stream {
    /// Cleartext.
    Plain(TcpStream),
    /// TLS terminated by levee (a client connection of a TLS listener).
    Server(Box<server::TlsStream<TcpStream>>),
    /// TLS started by levee (a connection to a TLS endpoint).
    Client(Box<client::TlsStream<TcpStream>>),
}

impl Stream {
    /// The TCP socket underneath.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(tcp) => tcp,
            Stream::Server(tls) => tls.get_ref().0,
            Stream::Client(tls) => tls.get_ref().0,
        }
    }

    /// The protocol agreed by ALPN, if TLS negotiated one.
    pub fn alpn(&self) -> Option<&[u8]> {
        match self {
            Stream::Plain(_) => None,
            Stream::Server(tls) => tls.get_ref().1.alpn_protocol(),
            Stream::Client(tls) => tls.get_ref().1.alpn_protocol(),
        }
    }

    /// Plaintext TLS decrypted already but nobody read: readiness of the TCP
    /// socket says nothing about it, so whoever waits on the socket must
    /// take it first. Empty for a cleartext connection.
    pub fn take_decrypted(&mut self) -> Bytes {
        let mut taken = BytesMut::new();
        let mut chunk = [0u8; 4096];
        loop {
            let read = match self {
                Stream::Plain(_) => return Bytes::new(),
                Stream::Server(tls) => tls.get_mut().1.reader().read(&mut chunk),
                Stream::Client(tls) => tls.get_mut().1.reader().read(&mut chunk),
            };
            match read {
                Ok(read) if read > 0 => taken.extend_from_slice(&chunk[..read]),
                // Nothing more (WouldBlock), the peer's close, or an error
                // the next read through TLS reports again.
                _ => return taken.freeze(),
            }
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_read(cx, buf),
            Stream::Server(tls) => Pin::new(tls.as_mut()).poll_read(cx, buf),
            Stream::Client(tls) => Pin::new(tls.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_write(cx, buf),
            Stream::Server(tls) => Pin::new(tls.as_mut()).poll_write(cx, buf),
            Stream::Client(tls) => Pin::new(tls.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_write_vectored(cx, bufs),
            Stream::Server(tls) => Pin::new(tls.as_mut()).poll_write_vectored(cx, bufs),
            Stream::Client(tls) => Pin::new(tls.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(tcp) => tcp.is_write_vectored(),
            Stream::Server(tls) => tls.is_write_vectored(),
            Stream::Client(tls) => tls.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_flush(cx),
            Stream::Server(tls) => Pin::new(tls.as_mut()).poll_flush(cx),
            Stream::Client(tls) => Pin::new(tls.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_shutdown(cx),
            Stream::Server(tls) => Pin::new(tls.as_mut()).poll_shutdown(cx),
            Stream::Client(tls) => Pin::new(tls.as_mut()).poll_shutdown(cx),
        }
    }
}
