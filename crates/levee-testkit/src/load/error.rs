//! Why a request of the load generator did not succeed.

use std::error::Error as StdError;
use std::fmt;
use std::io;

/// The class of a failed request. Every request that is sent ends either as a
/// success or as exactly one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ErrorKind {
    /// No connection could be made (refused, unreachable, handshake failed).
    Connect,
    /// No complete response within the per-request deadline. Counted as an
    /// error, unlike wrk, which silently drops such requests and so hides
    /// exactly the hung nodes a gateway must survive.
    Deadline,
    /// A complete `4xx` response.
    Status4xx,
    /// A complete `5xx` response.
    Status5xx,
    /// The connection was reset or closed before the response was complete
    /// (mid-request, or mid-body).
    Reset,
    /// The response was not valid HTTP/1.1.
    Protocol,
    /// Anything else.
    Other,
}

impl ErrorKind {
    /// Every kind, in report order.
    pub const ALL: [ErrorKind; 7] = [
        ErrorKind::Connect,
        ErrorKind::Deadline,
        ErrorKind::Status4xx,
        ErrorKind::Status5xx,
        ErrorKind::Reset,
        ErrorKind::Protocol,
        ErrorKind::Other,
    ];

    /// A short stable name, used in the report and its JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::Deadline => "deadline",
            ErrorKind::Status4xx => "status_4xx",
            ErrorKind::Status5xx => "status_5xx",
            ErrorKind::Reset => "reset",
            ErrorKind::Protocol => "protocol",
            ErrorKind::Other => "other",
        }
    }

    /// Position in [`ErrorKind::ALL`], for per-worker counter arrays.
    pub(crate) fn index(self) -> usize {
        self as usize
    }

    /// Classifies a hyper client error (request, response head, or body).
    pub(crate) fn of_hyper(error: &hyper::Error) -> ErrorKind {
        if error.is_parse() || error.is_parse_status() || error.is_parse_too_large() {
            return ErrorKind::Protocol;
        }
        if let Some(io) = io_cause(error) {
            return ErrorKind::of_io(io);
        }
        if error.is_incomplete_message()
            || error.is_canceled()
            || error.is_closed()
            || error.is_body_write_aborted()
        {
            return ErrorKind::Reset;
        }
        ErrorKind::Other
    }

    /// Classifies a socket error.
    pub(crate) fn of_io(error: &io::Error) -> ErrorKind {
        match error.kind() {
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof
            | io::ErrorKind::NotConnected => ErrorKind::Reset,
            io::ErrorKind::ConnectionRefused => ErrorKind::Connect,
            _ => ErrorKind::Other,
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The first `io::Error` in the cause chain, if any.
fn io_cause(error: &hyper::Error) -> Option<&io::Error> {
    let mut cause: Option<&(dyn StdError + 'static)> = error.source();
    while let Some(current) = cause {
        if let Some(io) = current.downcast_ref::<io::Error>() {
            return Some(io);
        }
        cause = current.source();
    }
    None
}
