//! What a test backend does with each request: the failure it imitates.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// How a [`Backend`](super::Backend) answers, evaluated for every request.
///
/// Each mode imitates a way real nodes fail. The interesting ones are those
/// that are *not* clean crashes: a node that accepts connections but never
/// answers ([`Mode::Hung`]) or drops the connection after the request was
/// sent ([`Mode::ResetAfterRequest`]) is what a gateway must learn to route
/// around.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Mode {
    /// Serves every route normally, with keep-alive.
    #[default]
    Healthy,
    /// The process is gone: the listening socket is closed (new connects are
    /// refused) and every open connection has been dropped.
    Crashed,
    /// Accepts connections and reads requests, but never answers: a stopped
    /// process or a deadlocked worker.
    Hung,
    /// Like [`Mode::Healthy`] but waits this long before the response headers.
    Slow(Duration),
    /// Answers `503` at once, like a node whose dependency is down.
    Failing,
    /// Reads the request head, then resets the TCP connection without sending
    /// a single response byte: the request may or may not have been acted on.
    ResetAfterRequest,
    /// Sends a `200` head announcing a 1 000 000 byte body, then `bytes` body
    /// bytes, then resets the connection: a response that is already being
    /// forwarded when the node dies, and so must never be retried.
    PartialThenReset {
        /// How many body bytes are sent before the reset.
        bytes: usize,
    },
}

/// The delay of `slow` when none is given.
pub const DEFAULT_SLOW: Duration = Duration::from_secs(1);

/// The number of body bytes of `partial-reset` when none is given.
pub const DEFAULT_PARTIAL_BYTES: usize = 16;

/// The spellings [`Mode::from_str`] accepts, for error and help messages.
pub const VALID_MODES: &str =
    "healthy, crashed, hung, slow[:DURATION], failing, reset, partial-reset[:BYTES]";

/// A string that does not name a [`Mode`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid backend mode `{input}`: {reason}; valid modes are {VALID_MODES}")]
pub struct ParseModeError {
    /// The text that was rejected, so the message can quote it.
    input: String,
    /// What exactly is wrong with it.
    reason: String,
}

impl ParseModeError {
    fn new(input: &str, reason: impl Into<String>) -> Self {
        Self {
            input: input.to_owned(),
            reason: reason.into(),
        }
    }
}

impl FromStr for Mode {
    type Err = ParseModeError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let trimmed = input.trim();
        let (name, arg) = match trimmed.split_once(':') {
            Some((name, arg)) => (name.trim(), Some(arg.trim())),
            None => (trimmed, None),
        };
        let no_arg = |mode: Mode| match arg {
            None => Ok(mode),
            Some(_) => Err(ParseModeError::new(
                input,
                format!("`{name}` takes no argument"),
            )),
        };
        match name.to_ascii_lowercase().as_str() {
            "healthy" => no_arg(Mode::Healthy),
            "crashed" => no_arg(Mode::Crashed),
            "hung" => no_arg(Mode::Hung),
            "failing" => no_arg(Mode::Failing),
            "reset" => no_arg(Mode::ResetAfterRequest),
            "slow" => match arg {
                None => Ok(Mode::Slow(DEFAULT_SLOW)),
                Some(arg) => humantime::parse_duration(arg)
                    .map(Mode::Slow)
                    .map_err(|e| ParseModeError::new(input, format!("bad delay `{arg}`: {e}"))),
            },
            "partial-reset" => match arg {
                None => Ok(Mode::PartialThenReset {
                    bytes: DEFAULT_PARTIAL_BYTES,
                }),
                Some(arg) => arg
                    .parse::<usize>()
                    .map(|bytes| Mode::PartialThenReset { bytes })
                    .map_err(|e| {
                        ParseModeError::new(input, format!("bad byte count `{arg}`: {e}"))
                    }),
            },
            _ => Err(ParseModeError::new(input, "unknown mode")),
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mode::Healthy => f.write_str("healthy"),
            Mode::Crashed => f.write_str("crashed"),
            Mode::Hung => f.write_str("hung"),
            Mode::Slow(delay) => write!(f, "slow:{}", humantime::format_duration(*delay)),
            Mode::Failing => f.write_str("failing"),
            Mode::ResetAfterRequest => f.write_str("reset"),
            Mode::PartialThenReset { bytes } => write!(f, "partial-reset:{bytes}"),
        }
    }
}

/// A [`Mode`] packed into one `u64`, so the request path reads the current
/// mode with a single atomic load and never takes a lock.
///
/// The top 8 bits hold the variant, the low 56 bits its argument (nanoseconds
/// of delay, or bytes). Arguments beyond 2^56 (about 2.3 years, or 64 PiB)
/// saturate, which no test can tell apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PackedMode(pub(crate) u64);

const ARG_BITS: u32 = 56;
const ARG_MASK: u64 = (1 << ARG_BITS) - 1;

impl PackedMode {
    pub(crate) fn pack(mode: Mode) -> Self {
        let (tag, arg): (u64, u64) = match mode {
            Mode::Healthy => (0, 0),
            Mode::Crashed => (1, 0),
            Mode::Hung => (2, 0),
            Mode::Slow(delay) => (3, u64::try_from(delay.as_nanos()).unwrap_or(u64::MAX)),
            Mode::Failing => (4, 0),
            Mode::ResetAfterRequest => (5, 0),
            Mode::PartialThenReset { bytes } => (6, u64::try_from(bytes).unwrap_or(u64::MAX)),
        };
        PackedMode((tag << ARG_BITS) | arg.min(ARG_MASK))
    }

    pub(crate) fn unpack(self) -> Mode {
        let arg = self.0 & ARG_MASK;
        match self.0 >> ARG_BITS {
            0 => Mode::Healthy,
            1 => Mode::Crashed,
            2 => Mode::Hung,
            3 => Mode::Slow(Duration::from_nanos(arg)),
            4 => Mode::Failing,
            5 => Mode::ResetAfterRequest,
            _ => Mode::PartialThenReset {
                bytes: usize::try_from(arg).unwrap_or(usize::MAX),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Mode; 9] = [
        Mode::Healthy,
        Mode::Crashed,
        Mode::Hung,
        Mode::Slow(Duration::from_millis(250)),
        Mode::Slow(Duration::from_millis(1500)),
        Mode::Failing,
        Mode::ResetAfterRequest,
        Mode::PartialThenReset { bytes: 0 },
        Mode::PartialThenReset { bytes: 100 },
    ];

    #[test]
    fn display_round_trips_through_from_str() {
        for mode in ALL {
            let text = mode.to_string();
            assert_eq!(text.parse::<Mode>(), Ok(mode), "{text}");
        }
    }

    #[test]
    fn packing_round_trips() {
        for mode in ALL {
            assert_eq!(PackedMode::pack(mode).unpack(), mode);
        }
    }

    #[test]
    fn defaults_and_spellings() {
        assert_eq!("slow".parse(), Ok(Mode::Slow(DEFAULT_SLOW)));
        assert_eq!(
            "slow:250ms".parse(),
            Ok(Mode::Slow(Duration::from_millis(250)))
        );
        assert_eq!(
            "partial-reset".parse(),
            Ok(Mode::PartialThenReset { bytes: 16 })
        );
        assert_eq!(
            "partial-reset:100".parse(),
            Ok(Mode::PartialThenReset { bytes: 100 })
        );
        assert_eq!(" Hung ".parse(), Ok(Mode::Hung));
    }

    #[test]
    fn errors_name_the_input_and_the_valid_modes() {
        let err = "sleepy".parse::<Mode>().unwrap_err().to_string();
        assert!(err.contains("`sleepy`"), "{err}");
        assert!(err.contains(VALID_MODES), "{err}");
        let err = "slow:soon".parse::<Mode>().unwrap_err().to_string();
        assert!(err.contains("bad delay"), "{err}");
        assert!("healthy:1".parse::<Mode>().is_err());
        assert!("partial-reset:-1".parse::<Mode>().is_err());
    }
}
