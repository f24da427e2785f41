//! Turning upstream errors (hyper's HTTP/2 ones, socket errors, levee's
//! own HTTP/1.1 client's) into attempt outcomes.

use std::error::Error as StdError;
use std::io;

use levee_core::FailureKind;

/// Classify an error from sending a request on an established connection
/// (connect errors are classified where the connection is made).
pub fn classify_send_error(error: &hyper::Error) -> FailureKind {
    if error.is_parse() || error.is_parse_status() || error.is_parse_too_large() {
        return FailureKind::Protocol;
    }
    if error.is_body_write_aborted() || error.is_user() {
        // The client's request body failed while being forwarded.
        return FailureKind::ClientBody;
    }
    if error.is_timeout() {
        return FailureKind::Timeout;
    }
    if let Some(h2) = find_source::<h2::Error>(error) {
        return classify_h2(h2);
    }
    if error.is_incomplete_message() || error.is_canceled() || error.is_closed() {
        return FailureKind::ResetBeforeResponse;
    }
    find_source::<io::Error>(error).map_or(FailureKind::Other, classify_io_error)
}

/// Classify a socket error met while a request was sent or its response
/// head awaited.
pub fn classify_io_error(error: &io::Error) -> FailureKind {
    match error.kind() {
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe
        | io::ErrorKind::UnexpectedEof => FailureKind::ResetBeforeResponse,
        io::ErrorKind::TimedOut => FailureKind::Timeout,
        _ => FailureKind::Other,
    }
}

/// An HTTP/2 stream's error. The endpoint promises it did not process a
/// stream it refused (`REFUSED_STREAM`), nor one above the last id of a
/// graceful `GOAWAY` (RFC 9113 §6.8, §8.7): those were not sent, as far as
/// retrying is concerned. After a `GOAWAY` with an error code even streams
/// below its last id fail, processed or not: those may have been acted on.
fn classify_h2(error: &h2::Error) -> FailureKind {
    match error.reason() {
        Some(h2::Reason::REFUSED_STREAM) if error.is_reset() => FailureKind::Refused,
        Some(h2::Reason::NO_ERROR) if error.is_go_away() && error.is_remote() => {
            FailureKind::Refused
        }
        Some(
            h2::Reason::PROTOCOL_ERROR
            | h2::Reason::FRAME_SIZE_ERROR
            | h2::Reason::COMPRESSION_ERROR,
        ) => FailureKind::Protocol,
        _ => FailureKind::ResetBeforeResponse,
    }
}

/// Classify an error from a response body that was already streaming: the
/// endpoint's, unless it was the client's request body that failed (a
/// duplex exchange).
pub fn classify_body_error(error: &(dyn StdError + 'static)) -> FailureKind {
    match find_source::<super::http1::BodyError>(error) {
        Some(super::http1::BodyError::ClientBody(_)) => FailureKind::ClientBody,
        _ => FailureKind::BodyInterrupted,
    }
}

/// The first error of type `E` in the cause chain, starting with `error`.
fn find_source<'a, E: StdError + 'static>(error: &'a (dyn StdError + 'static)) -> Option<&'a E> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<E>() {
            return Some(found);
        }
        current = e.source();
    }
    None
}
