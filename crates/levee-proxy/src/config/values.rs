//! Parsing one value and reporting it at its position: what every
//! section's validation uses (a required key, a name, a socket address, a
//! percentage, a duration).

use std::net::SocketAddr;
use std::time::Duration;

use toml::Spanned;

use super::report::Report;
use super::table::Section;
use super::units::parse_duration;

/// A required, non-empty `name`.
pub(super) fn name<'r, T>(
    section: &Section<T>,
    name: Option<&'r Spanned<String>>,
    report: &mut Report<'_>,
) -> Option<&'r Spanned<String>> {
    let name = required(section, name, "name", report)?;
    if name.get_ref().trim().is_empty() {
        report.error(name.span(), "name: must not be empty");
        return None;
    }
    Some(name)
}

/// `value`, or a report at the table's header that it is missing (unless it
/// is written but had the wrong type, which is already reported).
pub(super) fn required<'r, T, V>(
    section: &Section<T>,
    value: Option<&'r V>,
    key: &str,
    report: &mut Report<'_>,
) -> Option<&'r V> {
    if value.is_none() && !section.is_unreadable(key) {
        let message = format!("missing key {key:?} in {}", section.label);
        report.error(section.span.clone(), message);
    }
    value
}

pub(super) fn socket_addr(
    text: &Spanned<String>,
    key: &str,
    report: &mut Report<'_>,
) -> Option<Spanned<SocketAddr>> {
    match text.get_ref().parse::<SocketAddr>() {
        Ok(address) => Some(Spanned::new(text.span(), address)),
        Err(_) => {
            let message = format!(
                "{key}: bad socket address {:?}: expected an IP address and port, \
                 e.g. \"0.0.0.0:8080\" or \"[::]:8080\"",
                text.get_ref()
            );
            report.error(text.span(), message);
            None
        }
    }
}

/// A percentage, 0 to 100; `None` if out of range (reported).
pub(super) fn percent(value: &Spanned<i64>, key: &str, report: &mut Report<'_>) -> Option<u8> {
    match u8::try_from(*value.get_ref()) {
        Ok(percent @ 0..=100) => Some(percent),
        _ => {
            let message = format!("{key}: must be between 0 and 100, got {}", value.get_ref());
            report.error(value.span(), message);
            None
        }
    }
}

/// Whether a zero duration makes sense for a key.
pub(super) enum Zero {
    Allowed,
    /// Rejected, with a hint appended to the message.
    Rejected {
        hint: &'static str,
    },
}

/// The duration written for `key`, or `default` if it is not written.
/// `None` if it is bad (reported).
pub(super) fn duration(
    text: Option<&Spanned<String>>,
    key: &str,
    default: Duration,
    zero: Zero,
    report: &mut Report<'_>,
) -> Option<Duration> {
    let Some(text) = text else {
        return Some(default);
    };
    match (parse_duration(text.get_ref()), zero) {
        (Err(error), _) => {
            report.error(text.span(), format!("{key}: {error}"));
            None
        }
        (Ok(Duration::ZERO), Zero::Rejected { hint }) => {
            report.error(text.span(), format!("{key}: must be more than 0{hint}"));
            None
        }
        (Ok(duration), _) => Some(duration),
    }
}
