//! Webhooks (`[[alert]]`): the raw table, validation and settings.

use serde::Deserialize;
use toml::Spanned;

use super::keys::did_you_mean;
use super::report::Report;
use super::table::{RawTable, Section};
use super::values::required;
use crate::events::EVENT_KINDS;

/// `[[alert]]`: a webhook that gets every state change as JSON.
#[derive(Debug, Default, Deserialize)]
pub(super) struct RawAlert {
    /// `"http://host:port/path"`. Required.
    pub url: Option<Spanned<String>>,
    /// Event kinds sent (`["readiness"]`). Default: every kind.
    pub events: Option<Spanned<Vec<Spanned<String>>>>,
}

impl RawTable for RawAlert {}
/// `[[alert]]`: a webhook that gets a JSON document for each state change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertSettings {
    /// `http://host:port/path`.
    pub url: http::Uri,
    /// Event kinds sent; `None`: every kind.
    pub events: Option<Vec<String>>,
}

/// One `[[alert]]`.
pub(super) fn alert(section: &Section<RawAlert>, report: &mut Report<'_>) -> Option<AlertSettings> {
    let raw = &section.raw;
    let url = required(section, raw.url.as_ref(), "url", report).and_then(|url| {
        match url.get_ref().parse::<http::Uri>() {
            Ok(uri) if uri.scheme_str() == Some("http") && uri.authority().is_some() => Some(uri),
            _ => {
                report.error(
                    url.span(),
                    format!(
                        "url: {:?} is not an http:// URL with a host (https is not supported; put a local relay in front)",
                        url.get_ref()
                    ),
                );
                None
            }
        }
    });
    let mut events_ok = true;
    let events = raw.events.as_ref().map(|events| {
        events
            .get_ref()
            .iter()
            .filter_map(|kind| {
                if EVENT_KINDS.contains(&kind.get_ref().as_str()) {
                    Some(kind.get_ref().clone())
                } else {
                    events_ok = false;
                    let hint = did_you_mean(kind.get_ref(), EVENT_KINDS)
                        .map(|suggestion| format!(" (did you mean {suggestion:?}?)"))
                        .unwrap_or_default();
                    report.error(
                        kind.span(),
                        format!(
                            "events: unknown event kind {:?}{hint}; known: {}",
                            kind.get_ref(),
                            EVENT_KINDS.join(", ")
                        ),
                    );
                    None
                }
            })
            .collect::<Vec<_>>()
    });
    let url = url?;
    events_ok.then_some(AlertSettings { url, events })
}
