//! The hand-off from the request path to the writer task: a bounded queue
//! that, when full, keeps the latest report per breaker instead of
//! blocking or dropping the newest.
//!
//! A breaker's older reports are worthless once a newer one exists, so the
//! queue is a map keyed by breaker: a burst of reports for one breaker
//! takes one slot, and the writer always sends the freshest verdict. The
//! bound caps the number of distinct breakers waiting (names come from
//! configuration, so hitting it means a bug, which is logged once).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::model::LocalReport;

/// Distinct breakers that may wait to be written.
pub(crate) const DEFAULT_CAPACITY: usize = 4096;

pub(crate) struct Mailbox {
    pending: Mutex<HashMap<String, LocalReport>>,
    capacity: usize,
    notify: Notify,
    /// Whether the "mailbox full" warning was logged (once per process).
    warned: AtomicBool,
}

impl Mailbox {
    pub(crate) fn new(capacity: usize) -> Self {
        Mailbox {
            pending: Mutex::new(HashMap::new()),
            capacity,
            notify: Notify::new(),
            warned: AtomicBool::new(false),
        }
    }

    /// Queue `report`, replacing an older one for the same breaker. Holds
    /// a lock for one map insert; never waits on anything else.
    pub(crate) fn put(&self, breaker: &str, report: LocalReport) {
        {
            let mut pending = self.pending.lock();
            if let Some(slot) = pending.get_mut(breaker) {
                *slot = report;
            } else if pending.len() < self.capacity {
                pending.insert(breaker.to_owned(), report);
            } else {
                drop(pending);
                if !self.warned.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        breaker,
                        capacity = self.capacity,
                        "breaker report queue full of distinct breakers; report dropped"
                    );
                }
                return;
            }
        }
        self.notify.notify_one();
    }

    /// Everything queued, emptying the queue.
    pub(crate) fn take(&self) -> HashMap<String, LocalReport> {
        std::mem::take(&mut *self.pending.lock())
    }

    /// Resolves when something was queued since the last `take`.
    pub(crate) async fn ready(&self) {
        self.notify.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;

    #[test]
    fn mailbox_keeps_the_latest_report_per_breaker_and_bounds_breakers() {
        let mailbox = Mailbox::new(2);
        let now = SystemTime::now();
        mailbox.put("a", LocalReport::closed("first", 0, 1, now));
        mailbox.put("a", LocalReport::closed("second", 0, 2, now));
        mailbox.put("b", LocalReport::closed("b", 0, 1, now));
        mailbox.put("c", LocalReport::closed("c", 0, 1, now));
        let taken = mailbox.take();
        assert_eq!(taken.len(), 2);
        assert_eq!(taken["a"].reason, "second");
        assert!(!taken.contains_key("c"));
        assert!(mailbox.take().is_empty());
    }
}
