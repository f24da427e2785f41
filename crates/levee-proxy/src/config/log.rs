//! levee's own log lines (`[log]`): their raw table, validation and
//! settings. Access logs are per listener (`[listener.access_log]`).

use serde::Deserialize;
use toml::Spanned;

use super::report::Report;
use super::table::{RawTable, Section};

/// `[log]`: levee's own log lines on standard error.
#[derive(Debug, Default, Deserialize)]
pub(super) struct RawLog {
    /// `"text"` (default) or `"json"`.
    pub format: Option<Spanned<String>>,
    /// Which lines: `"error"`, `"warn"`, `"info"` (default), `"debug"`,
    /// `"trace"`, or per module (`"info,levee_proxy::tls=debug"`).
    pub level: Option<Spanned<String>>,
}

impl RawTable for RawLog {}

/// How levee's own log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// One human-readable line per event; coloured only on a terminal
    /// (and never with `NO_COLOR` set).
    #[default]
    Text,
    /// One JSON object per line (time, level, target, message and fields),
    /// for journald, Loki or Elasticsearch.
    Json,
}

impl LogFormat {
    /// The config's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

/// `[log]`: levee's own log lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSettings {
    /// Text or JSON.
    pub format: LogFormat,
    /// The filter, in `tracing`'s `EnvFilter` syntax; the `LEVEE_LOG`
    /// environment variable overrides it.
    pub level: String,
}

impl LogSettings {
    /// Default [`LogSettings::level`].
    pub const DEFAULT_LEVEL: &'static str = "info";
}

impl Default for LogSettings {
    fn default() -> LogSettings {
        LogSettings {
            format: LogFormat::default(),
            level: LogSettings::DEFAULT_LEVEL.to_owned(),
        }
    }
}

/// The levels a filter directive may name.
const LEVELS: [&str; 6] = ["error", "warn", "info", "debug", "trace", "off"];

pub(super) fn log(section: Option<&Section<RawLog>>, report: &mut Report<'_>) -> LogSettings {
    let Some(Section { raw, .. }) = section else {
        return LogSettings::default();
    };
    let format = match &raw.format {
        None => LogFormat::default(),
        Some(format) => match format.get_ref().as_str() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                let message =
                    format!("format: unknown log format {other:?}: expected \"text\" or \"json\"");
                report.error(format.span(), message);
                LogFormat::default()
            }
        },
    };
    let level = match &raw.level {
        None => LogSettings::DEFAULT_LEVEL.to_owned(),
        Some(level) => {
            if let Err(problem) = check_filter(level.get_ref()) {
                report.error(level.span(), format!("level: {problem}"));
            }
            level.get_ref().clone()
        }
    };
    LogSettings { format, level }
}

/// Whether `filter` is a list of `level` or `target=level` directives, as
/// `tracing`'s `EnvFilter` reads them (span and field filters are not
/// offered here: they are for debugging, through `LEVEE_LOG`).
fn check_filter(filter: &str) -> Result<(), String> {
    if filter.trim().is_empty() {
        return Err("empty: expected a level such as \"info\"".to_owned());
    }
    for directive in filter.split(',') {
        let directive = directive.trim();
        let (target, level) = match directive.split_once('=') {
            Some((target, level)) => (Some(target), level),
            None => (None, directive),
        };
        let target_ok = target.is_none_or(|target| {
            !target.is_empty()
                && target
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
        });
        if !target_ok || !LEVELS.contains(&level.to_ascii_lowercase().as_str()) {
            return Err(format!(
                "bad directive {directive:?}: expected a level (error, warn, info, debug, trace, off) \
                 or module=level, e.g. \"info,levee_proxy::tls=debug\""
            ));
        }
    }
    Ok(())
}
