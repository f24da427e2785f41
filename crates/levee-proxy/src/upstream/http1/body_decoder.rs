//! A response body taken out of the bytes read so far: a counted length,
//! the chunked coding (with `httparse` reading chunk sizes and trailer
//! fields), or everything until the endpoint closes.

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue};

use super::response_head::{BodyEnd, ProtocolError};

/// Trailer fields read after a chunked body, at most.
const MAX_TRAILERS: usize = 64;

/// Where the decoder stands.
#[derive(Debug)]
pub(super) enum BodyDecoder {
    /// This many bytes still to come.
    Length(u64),
    /// Before a chunk's size line.
    ChunkSize,
    /// Inside a chunk, this many bytes of it to come.
    ChunkData(u64),
    /// After a chunk's data: its CRLF.
    ChunkEnd,
    /// After the last chunk: trailer fields, then an empty line.
    Trailers,
    /// Until the connection closes.
    Close,
    /// The body has ended.
    Done,
}

/// What the bytes at hand gave.
#[derive(Debug)]
pub(super) enum Decoded {
    Data(Bytes),
    Trailers(HeaderMap),
    /// The body has ended (nothing more in it).
    End,
    /// More bytes are needed.
    More,
}

impl BodyDecoder {
    pub(super) fn new(end: BodyEnd) -> BodyDecoder {
        match end {
            BodyEnd::Length(0) => BodyDecoder::Done,
            BodyEnd::Length(length) => BodyDecoder::Length(length),
            BodyEnd::Chunked => BodyDecoder::ChunkSize,
            BodyEnd::Close => BodyDecoder::Close,
        }
    }

    pub(super) fn is_done(&self) -> bool {
        matches!(self, BodyDecoder::Done)
    }

    /// The next piece of the body from `buf` (taken out of it).
    pub(super) fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, ProtocolError> {
        loop {
            match self {
                BodyDecoder::Done => return Ok(Decoded::End),
                BodyDecoder::Length(left) | BodyDecoder::ChunkData(left) => {
                    if buf.is_empty() {
                        return Ok(Decoded::More);
                    }
                    let take = usize::try_from(*left).map_or(buf.len(), |left| left.min(buf.len()));
                    let data = buf.split_to(take).freeze();
                    *left -= take as u64;
                    if *left == 0 {
                        *self = match self {
                            BodyDecoder::Length(_) => BodyDecoder::Done,
                            _ => BodyDecoder::ChunkEnd,
                        };
                    }
                    return Ok(Decoded::Data(data));
                }
                BodyDecoder::Close => {
                    if buf.is_empty() {
                        return Ok(Decoded::More);
                    }
                    return Ok(Decoded::Data(buf.split().freeze()));
                }
                BodyDecoder::ChunkSize => match httparse::parse_chunk_size(buf) {
                    Ok(httparse::Status::Complete((used, size))) => {
                        buf.advance(used);
                        *self = if size == 0 {
                            BodyDecoder::Trailers
                        } else {
                            BodyDecoder::ChunkData(size)
                        };
                    }
                    Ok(httparse::Status::Partial) if buf.len() > 1024 => {
                        return Err(ProtocolError::Chunk("chunk size line too long"));
                    }
                    Ok(httparse::Status::Partial) => return Ok(Decoded::More),
                    Err(httparse::InvalidChunkSize) => {
                        return Err(ProtocolError::Chunk("invalid chunk size"));
                    }
                },
                BodyDecoder::ChunkEnd => {
                    if buf.len() < 2 {
                        return Ok(Decoded::More);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(ProtocolError::Chunk("chunk data longer than its size"));
                    }
                    buf.advance(2);
                    *self = BodyDecoder::ChunkSize;
                }
                BodyDecoder::Trailers => return self.trailers(buf),
            }
        }
    }

    fn trailers(&mut self, buf: &mut BytesMut) -> Result<Decoded, ProtocolError> {
        let mut fields = [httparse::EMPTY_HEADER; MAX_TRAILERS];
        let (used, trailers) = match httparse::parse_headers(buf, &mut fields) {
            Ok(httparse::Status::Complete((used, fields))) => {
                let mut trailers = HeaderMap::new();
                for field in fields {
                    let (Ok(name), Ok(value)) = (
                        HeaderName::from_bytes(field.name.as_bytes()),
                        HeaderValue::from_bytes(field.value),
                    ) else {
                        return Err(ProtocolError::Chunk("invalid trailer field"));
                    };
                    trailers.append(name, value);
                }
                (used, trailers)
            }
            Ok(httparse::Status::Partial) if buf.len() > super::response_head::MAX_HEAD_BYTES => {
                return Err(ProtocolError::TooLarge);
            }
            Ok(httparse::Status::Partial) => return Ok(Decoded::More),
            Err(error) => return Err(ProtocolError::Syntax(error)),
        };
        buf.advance(used);
        *self = BodyDecoder::Done;
        Ok(if trailers.is_empty() {
            Decoded::End
        } else {
            Decoded::Trailers(trailers)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feed `wire` one byte at a time; collect the data and trailers.
    fn decode_bytewise(end: BodyEnd, wire: &[u8]) -> (Vec<u8>, Option<HeaderMap>, bool) {
        let mut decoder = BodyDecoder::new(end);
        let mut buf = BytesMut::new();
        let (mut data, mut trailers) = (Vec::new(), None);
        for byte in wire {
            buf.extend_from_slice(&[*byte]);
            loop {
                match decoder.decode(&mut buf).expect("valid") {
                    Decoded::Data(bytes) => data.extend_from_slice(&bytes),
                    Decoded::Trailers(map) => trailers = Some(map),
                    Decoded::End | Decoded::More => break,
                }
            }
        }
        (data, trailers, decoder.is_done())
    }

    #[test]
    fn a_counted_body_ends_at_its_length() {
        let (data, _, done) = decode_bytewise(BodyEnd::Length(5), b"hello");
        assert_eq!(data, b"hello");
        assert!(done);
        let mut decoder = BodyDecoder::new(BodyEnd::Length(2));
        let mut buf = BytesMut::from(&b"hiNEXT"[..]);
        assert!(matches!(decoder.decode(&mut buf), Ok(Decoded::Data(data)) if data == "hi"));
        assert!(matches!(decoder.decode(&mut buf), Ok(Decoded::End)));
        assert_eq!(&buf[..], b"NEXT");
    }

    #[test]
    fn chunks_and_trailers_are_decoded_across_any_split() {
        let wire = b"5;ext=1\r\nhello\r\n1\r\n!\r\n0\r\ngrpc-status: 0\r\n\r\n";
        let (data, trailers, done) = decode_bytewise(BodyEnd::Chunked, wire);
        assert_eq!(data, b"hello!");
        assert_eq!(trailers.expect("trailers")["grpc-status"], "0");
        assert!(done);
        let (data, trailers, done) = decode_bytewise(BodyEnd::Chunked, b"2\r\nok\r\n0\r\n\r\n");
        assert_eq!(data, b"ok");
        assert!(trailers.is_none());
        assert!(done);
    }

    #[test]
    fn a_broken_chunked_body_is_an_error() {
        let mut decoder = BodyDecoder::new(BodyEnd::Chunked);
        let mut buf = BytesMut::from(&b"zz\r\n"[..]);
        assert!(decoder.decode(&mut buf).is_err());
        let mut decoder = BodyDecoder::new(BodyEnd::Chunked);
        let mut buf = BytesMut::from(&b"1\r\nab\r\n"[..]);
        assert!(matches!(decoder.decode(&mut buf), Ok(Decoded::Data(_))));
        assert!(decoder.decode(&mut buf).is_err());
    }
}
