//! A listener's access log (`[listener.access_log]`): its raw table,
//! validation and settings. The writer is `crate::access_log`.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::report::Report;
use super::table::RawTable;

/// `access_log` of a `[[listener]]`.
#[derive(Debug, Default, Deserialize)]
pub(super) struct RawAccessLog {
    /// Where the lines go: a file path (appended to; relative to the config
    /// file's directory) or `"stdout"`. Required.
    pub path: Option<Spanned<String>>,
    /// `"json"` (default: one object per request, every field) or
    /// `"combined"` (the Apache/nginx combined format).
    pub format: Option<Spanned<String>>,
    /// Lines held in memory while the writer catches up (a slow disk);
    /// past it lines are dropped and counted, never waited for. Default
    /// 8192.
    pub buffer: Option<Spanned<i64>>,
}

impl RawTable for RawAccessLog {}

/// The format of access-log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AccessLogFormat {
    /// One JSON object per request with every field.
    #[default]
    Json,
    /// Apache/nginx "combined": `client - - [time] "request" status bytes
    /// "referer" "user-agent"`.
    Combined,
}

/// Where access-log lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessLogTarget {
    /// Standard output.
    Stdout,
    /// A file, appended to, reopened on SIGUSR1 and at every reload.
    File(PathBuf),
}

/// A listener's access log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLogSettings {
    /// Where lines go.
    pub target: AccessLogTarget,
    /// How lines are written.
    pub format: AccessLogFormat,
    /// Lines held while the writer catches up; more are dropped (counted).
    pub buffer: usize,
}

impl AccessLogSettings {
    /// Default [`AccessLogSettings::buffer`].
    pub const DEFAULT_BUFFER: usize = 8192;

    /// A JSON access log to `target`.
    pub fn new(target: AccessLogTarget) -> AccessLogSettings {
        AccessLogSettings {
            target,
            format: AccessLogFormat::default(),
            buffer: AccessLogSettings::DEFAULT_BUFFER,
        }
    }

    /// A relative file path taken from `dir` (the config file's).
    pub(super) fn resolve_paths(&mut self, dir: &Path) {
        if let AccessLogTarget::File(path) = &mut self.target
            && path.is_relative()
        {
            *path = dir.join(&*path);
        }
    }
}

/// The settings of a written `access_log` table; `None` if anything in it
/// is bad (reported).
pub(super) fn access_log(
    written: &Spanned<RawAccessLog>,
    report: &mut Report<'_>,
) -> Option<AccessLogSettings> {
    let raw = written.get_ref();
    let target = match &raw.path {
        None => {
            report.error(
                written.span(),
                "access_log: missing key \"path\" (a file, or \"stdout\")",
            );
            None
        }
        Some(path) if path.get_ref().trim().is_empty() => {
            report.error(
                path.span(),
                "access_log.path: must name a file or \"stdout\"",
            );
            None
        }
        Some(path) if path.get_ref() == "stdout" => Some(AccessLogTarget::Stdout),
        Some(path) => Some(AccessLogTarget::File(PathBuf::from(path.get_ref()))),
    };
    let format = match &raw.format {
        None => Some(AccessLogFormat::default()),
        Some(format) => match format.get_ref().as_str() {
            "json" => Some(AccessLogFormat::Json),
            "combined" => Some(AccessLogFormat::Combined),
            other => {
                let message = format!(
                    "access_log.format: unknown format {other:?}: expected \"json\" or \"combined\""
                );
                report.error(format.span(), message);
                None
            }
        },
    };
    let buffer = match &raw.buffer {
        None => Some(AccessLogSettings::DEFAULT_BUFFER),
        Some(buffer) => match usize::try_from(*buffer.get_ref()) {
            Ok(lines @ 1..=1_048_576) => Some(lines),
            _ => {
                report.error(
                    buffer.span(),
                    "access_log.buffer: must be 1 to 1048576 lines",
                );
                None
            }
        },
    };
    Some(AccessLogSettings {
        target: target?,
        format: format?,
        buffer: buffer?,
    })
}
