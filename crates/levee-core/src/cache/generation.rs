//! Generations: the order of stores and purges, so a purge never removes a
//! value newer than the one it meant.
//!
//! Invalidation races with fills: an admin purges `/a` while a refresh of
//! `/a` that started a second earlier (against the old origin content) is
//! still in flight; if the refresh then stores its result, the purge is
//! silently undone. The reverse race is as bad: a delayed `DELETE` computed
//! against yesterday's value removes the value a refresh stored a moment ago.
//!
//! One counter per cache orders every event. A fill takes a ticket when it
//! starts; a store takes a fresh generation, above every ticket and purge
//! before it; an invalidation takes one too. The rules:
//!
//! - [`invalidate`](super::RefreshingCache::invalidate) (and its prefix and
//!   predicate forms) removes the entry and detaches any fill in flight for
//!   the key: that fill still answers the callers waiting on it, but does not
//!   store, because it started before the purge;
//! - [`purge_if_generation`](super::RefreshingCache::purge_if_generation)
//!   `(key, g)` removes the entry only if its generation is `g` or older; an
//!   entry stored after `g` was read (generation > `g`) is kept, and fills in
//!   flight are left alone, since what they store is newer than `g` too.
//! - expiry removes an entry only in the same critical section that found it
//!   expired, so it can never remove a newer one.

use std::fmt;

/// A point in a cache's order of stores and purges. Higher is newer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Generation(pub(super) u64);

impl Generation {
    /// The raw counter, for logs and admin responses.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for Generation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Hands out generations in increasing order.
#[derive(Debug, Default)]
pub(super) struct Generations {
    last: u64,
}

impl Generations {
    /// A generation above every one handed out before.
    pub(super) fn next(&mut self) -> Generation {
        self.last += 1;
        Generation(self.last)
    }
}
