//! How a listener gets a connection's attention: to evict it, to drain it,
//! or to have it look at its own activity (the periodic check behind idle
//! parking and HTTP/2 timeouts).
//!
//! A connection's task is woken several times per request by its socket.
//! Polling a timer, a `Notify` and a `watch` beside the connection on each
//! wake-up cost about 900 instructions per request (callgrind); this is one
//! atomic load and a waker registration. The periodic check comes from the
//! listener, which ticks every connection that is being served by hyper
//! (parked ones wait on their own timer and are not woken).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;

/// Make room: close if no request is in progress.
pub(crate) const EVICT: u8 = 1;
/// Shutdown has begun.
pub(crate) const DRAIN: u8 = 2;
/// Time to look at the connection's activity.
pub(crate) const CHECK: u8 = 4;

/// Flags raised for a connection, and the waker of its task.
#[derive(Debug, Default)]
pub(crate) struct Signals {
    flags: AtomicU8,
    waker: AtomicWaker,
}

impl Signals {
    /// Raise `flags` and wake the connection's task.
    pub(crate) fn raise(&self, flags: u8) {
        self.flags.fetch_or(flags, Ordering::AcqRel);
        self.waker.wake();
    }

    /// The flags raised and not taken yet.
    pub(crate) fn raised(&self) -> u8 {
        self.flags.load(Ordering::Acquire)
    }

    /// Drop the registered waker: the task is ending, and a waker kept
    /// here would keep its memory (a parked connection has none).
    pub(crate) fn forget(&self) {
        drop(self.waker.take());
    }

    /// Resolves with the flags raised since the last time (and clears
    /// them). Can be polled again after it resolved.
    pub(crate) fn next(&self) -> Next<'_> {
        Next {
            signals: self,
            registered: false,
        }
    }
}

/// See [`Signals::next`].
pub(crate) struct Next<'a> {
    signals: &'a Signals,
    /// The task's waker is registered and has not been used since. A
    /// tokio task's waker does not change, so it is registered once per
    /// signal, not on every poll.
    registered: bool,
}

impl Future for Next<'_> {
    type Output = u8;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<u8> {
        let signals = self.signals;
        if signals.flags.load(Ordering::Acquire) == 0 {
            if self.registered {
                return Poll::Pending;
            }
            signals.waker.register(cx.waker());
            self.registered = true;
            // A flag raised between the load and the registration.
            if signals.flags.load(Ordering::Acquire) == 0 {
                return Poll::Pending;
            }
        }
        // `raise` used the registered waker.
        self.registered = false;
        Poll::Ready(signals.flags.swap(0, Ordering::AcqRel))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn flags_accumulate_until_taken_and_wake_the_waiter() {
        let signals = std::sync::Arc::new(Signals::default());
        signals.raise(EVICT);
        signals.raise(CHECK);
        assert_eq!(signals.next().await, EVICT | CHECK);
        let waiter = {
            let signals = std::sync::Arc::clone(&signals);
            tokio::spawn(async move { signals.next().await })
        };
        tokio::task::yield_now().await;
        signals.raise(DRAIN);
        assert_eq!(waiter.await.expect("no panic"), DRAIN);
    }
}
