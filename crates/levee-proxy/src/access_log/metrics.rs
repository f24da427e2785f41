//! Metrics of access logs: lines written, dropped (the writer fell behind),
//! and write failures.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerLabels {
    listener: String,
}

/// The access-log metric families, registered once.
#[derive(Default)]
pub struct AccessLogFamilies {
    lines: Family<ListenerLabels, Counter>,
    dropped: Family<ListenerLabels, Counter>,
    write_errors: Family<ListenerLabels, Counter>,
}

impl AccessLogFamilies {
    /// Register the families in `registry`.
    pub fn register(registry: &mut Registry) -> AccessLogFamilies {
        let families = AccessLogFamilies::default();
        registry.register(
            "access_log_lines",
            "Access-log lines written, per listener",
            families.lines.clone(),
        );
        registry.register(
            "access_log_dropped",
            "Access-log lines dropped because the writer fell behind (the buffer was full), per listener",
            families.dropped.clone(),
        );
        registry.register(
            "access_log_write_errors",
            "Access-log writes or reopens that failed, per listener",
            families.write_errors.clone(),
        );
        families
    }

    /// One listener's series.
    pub fn listener(&self, listener: &str) -> AccessLogMetrics {
        let labels = ListenerLabels {
            listener: listener.to_owned(),
        };
        AccessLogMetrics {
            lines: self.lines.get_or_create_owned(&labels),
            dropped: self.dropped.get_or_create_owned(&labels),
            write_errors: self.write_errors.get_or_create_owned(&labels),
        }
    }
}

/// One listener's access-log series.
#[derive(Clone, Default)]
pub struct AccessLogMetrics {
    pub(super) lines: Counter,
    pub(super) dropped: Counter,
    pub(super) write_errors: Counter,
}
