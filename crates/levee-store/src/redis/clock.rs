//! The store's clock, as seen from this instance.
//!
//! Expiry and report times are compared in one clock, the store's, so a
//! fleet works whatever its hosts' clocks say: each instance measures the
//! offset between its clock and the store's with `TIME` (halfway through
//! the round trip), and converts on the way in and out.

use std::time::{Duration, SystemTime};

use crate::model::{from_millis, to_millis};

/// This instance's view of the store's clock.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct StoreClock {
    /// Store time minus local time, milliseconds.
    offset_ms: i64,
}

impl StoreClock {
    /// A clock `offset_ms` ahead of this instance's (tests).
    #[cfg(test)]
    pub(crate) fn with_offset_ms(offset_ms: i64) -> StoreClock {
        StoreClock { offset_ms }
    }

    /// From a `TIME` answer (seconds, microseconds) asked at `sent` and
    /// answered at `received` (local clock).
    pub(crate) fn measured(
        (seconds, micros): (u64, u64),
        sent: SystemTime,
        received: SystemTime,
    ) -> StoreClock {
        let store_ms = seconds.saturating_mul(1_000).saturating_add(micros / 1_000);
        let rtt = received.duration_since(sent).unwrap_or_default();
        let local_ms = to_millis(sent + rtt / 2);
        let offset_ms = i64::try_from(store_ms).unwrap_or(i64::MAX)
            - i64::try_from(local_ms).unwrap_or(i64::MAX);
        StoreClock { offset_ms }
    }

    /// `local` in store milliseconds.
    pub(crate) fn to_store(self, local: SystemTime) -> u64 {
        shift(to_millis(local), self.offset_ms)
    }

    /// Store milliseconds as a local time.
    pub(crate) fn to_local(self, store_ms: u64) -> SystemTime {
        from_millis(shift(store_ms, -self.offset_ms))
    }

    /// The store's time now, in milliseconds.
    pub(crate) fn now(self) -> u64 {
        self.to_store(SystemTime::now())
    }

    /// How far the store's clock is ahead (negative: behind).
    pub(crate) fn offset(self) -> (bool, Duration) {
        (
            self.offset_ms >= 0,
            Duration::from_millis(self.offset_ms.unsigned_abs()),
        )
    }
}

fn shift(ms: u64, by: i64) -> u64 {
    if by >= 0 {
        ms.saturating_add(by.unsigned_abs())
    } else {
        ms.saturating_sub(by.unsigned_abs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_clock_ahead_is_measured_and_converted_both_ways() {
        let sent = SystemTime::UNIX_EPOCH + Duration::from_millis(1_000_000);
        let received = sent + Duration::from_millis(20);
        // The store answered "1,010,010 ms" halfway: 10 s ahead.
        let clock = StoreClock::measured((1_010, 10_000), sent, received);
        assert_eq!(clock.offset(), (true, Duration::from_secs(10)));
        let local = SystemTime::UNIX_EPOCH + Duration::from_millis(2_000_000);
        assert_eq!(clock.to_store(local), 2_010_000);
        assert_eq!(clock.to_local(2_010_000), local);
        let behind = StoreClock::measured((990, 10_000), sent, received);
        assert_eq!(behind.offset(), (false, Duration::from_secs(10)));
    }
}
