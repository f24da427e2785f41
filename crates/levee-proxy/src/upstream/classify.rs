//! Turning hyper-util client errors into attempt outcomes.

use std::error::Error as StdError;
use std::io;

use levee_core::FailureKind;

/// Classify a failed upstream request. Connect errors were never sent; every
/// other error may have reached the endpoint.
pub fn classify_error(error: &hyper_util::client::legacy::Error) -> FailureKind {
    let io_kind = io_error_kind(error);
    if error.is_connect() {
        return match io_kind {
            Some(io::ErrorKind::ConnectionRefused) => FailureKind::ConnectRefused,
            Some(io::ErrorKind::TimedOut) => FailureKind::ConnectTimeout,
            _ => FailureKind::ConnectFailed,
        };
    }
    if let Some(hyper_error) = find_source::<hyper::Error>(error) {
        if hyper_error.is_parse() || hyper_error.is_parse_status() {
            return FailureKind::Protocol;
        }
        if hyper_error.is_incomplete_message() || hyper_error.is_canceled() {
            return FailureKind::ResetBeforeResponse;
        }
        if hyper_error.is_timeout() {
            return FailureKind::Timeout;
        }
    }
    match io_kind {
        Some(
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof,
        ) => FailureKind::ResetBeforeResponse,
        Some(io::ErrorKind::TimedOut) => FailureKind::Timeout,
        _ => FailureKind::Other,
    }
}

/// Classify an error from a response body that was already streaming.
pub fn classify_body_error(_error: &hyper::Error) -> FailureKind {
    FailureKind::BodyInterrupted
}

fn io_error_kind(error: &(dyn StdError + 'static)) -> Option<io::ErrorKind> {
    find_source::<io::Error>(error).map(io::Error::kind)
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
