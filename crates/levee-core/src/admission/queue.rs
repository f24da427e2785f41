//! The pure admission decision: who gets a slot, who waits, how long.
//!
//! No clock and no channels: every call takes `now`, and each waiter carries
//! an opaque value (the async layer's wake-up channel) that is handed back
//! when the waiter is chosen.

use std::collections::VecDeque;

use tokio::time::Instant;

use super::AdmissionParams;

/// Names one waiter, so that it can leave the queue when its caller gives up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct WaiterId(u64);

/// What happened to a request that asked for a slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Entry {
    /// It holds a slot now.
    Admitted,
    /// It waits; it is shed at `deadline` unless a slot reaches it first.
    Queued { id: WaiterId, deadline: Instant },
    /// Rejected at once: the queue already holds `waiting` requests.
    Full { waiting: usize },
}

#[derive(Debug)]
struct Waiter<T> {
    id: WaiterId,
    deadline: Instant,
    value: T,
}

/// Slots in use and the queue of requests waiting for one, with the
/// adaptive-LIFO and controlled-delay rules of Facebook's "Fail at Scale".
#[derive(Debug)]
pub(crate) struct AdmissionQueue<T> {
    params: AdmissionParams,
    /// Slots that may be held at once: `max_concurrency`, or what an
    /// adaptive limit last set.
    limit: usize,
    /// Slots held, including ones handed to a waiter that has not woken yet.
    in_flight: usize,
    /// Oldest at the front. Ids grow towards the back.
    waiters: VecDeque<Waiter<T>>,
    /// Since when the queue has been non-empty; `None` while it is empty.
    /// Only this decides whether the queue is standing.
    nonempty_since: Option<Instant>,
    next_id: u64,
}

impl<T> AdmissionQueue<T> {
    pub(crate) fn new(params: AdmissionParams) -> Self {
        AdmissionQueue {
            limit: params.max_concurrency(),
            params,
            in_flight: 0,
            waiters: VecDeque::new(),
            nonempty_since: None,
            next_id: 0,
        }
    }

    pub(crate) fn params(&self) -> &AdmissionParams {
        &self.params
    }

    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    /// Change the number of slots (at least 1). Lowering it takes effect as
    /// requests finish; after raising it, [`Self::grant`] hands the new slots
    /// to waiters.
    pub(crate) fn set_limit(&mut self, limit: usize) {
        self.limit = limit.max(1);
    }

    /// A free slot for the next waiter, if there is both: returns the waiter
    /// (its slot is taken).
    pub(crate) fn grant(&mut self, now: Instant) -> Option<T> {
        if self.in_flight >= self.limit {
            return None;
        }
        let waiter = self.next_waiter(now)?;
        self.in_flight += 1;
        Some(waiter)
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight
    }

    pub(crate) fn queued(&self) -> usize {
        self.waiters.len()
    }

    /// Whether the queue has not been empty for `codel_interval`. A queue
    /// that keeps emptying absorbs bursts; one that never empties only adds
    /// delay (CoDel's "good queue" and "bad queue").
    pub(crate) fn standing(&self, now: Instant) -> bool {
        self.nonempty_since.is_some_and(|since| {
            now.saturating_duration_since(since) >= self.params.codel_interval()
        })
    }

    /// Give a slot back when nobody waits (what [`release`](Self::release)
    /// does then).
    pub(crate) fn free_slot(&mut self) {
        debug_assert!(self.in_flight > 0, "released more slots than admitted");
        self.in_flight = self.in_flight.saturating_sub(1);
    }

    /// Take a slot if one is free (what [`enter`](Self::enter) does first).
    pub(crate) fn try_admit(&mut self) -> bool {
        if self.in_flight < self.limit {
            self.in_flight += 1;
            return true;
        }
        false
    }

    /// A request asks for a slot at `now`; `value` is kept while it waits.
    pub(crate) fn enter(&mut self, now: Instant, value: T) -> Entry {
        if self.in_flight < self.limit {
            self.in_flight += 1;
            return Entry::Admitted;
        }
        if self.waiters.len() >= self.params.max_queue() {
            // Rejecting at once is the point: a bounded queue turns a stall
            // into fast 503s instead of every client timing out.
            return Entry::Full {
                waiting: self.waiters.len(),
            };
        }
        let since = *self.nonempty_since.get_or_insert(now);
        let deadline = self.deadline(since, now);
        let id = WaiterId(self.next_id);
        self.next_id += 1;
        self.waiters.push_back(Waiter {
            id,
            deadline,
            value,
        });
        Entry::Queued { id, deadline }
    }

    /// When a waiter queued at `enqueued` is shed, given that the queue has
    /// been non-empty since `since`. While it waits the queue stays
    /// non-empty, so `since` cannot change and the deadline is fixed on
    /// entry: `queue_timeout` after entering, cut to `codel_target` after
    /// entering once the queue becomes standing (at `since + codel_interval`).
    fn deadline(&self, since: Instant, enqueued: Instant) -> Instant {
        let p = &self.params;
        let standing_from = since + p.codel_interval();
        let draining = enqueued + p.queue_timeout();
        let standing = standing_from.max(enqueued + p.codel_target());
        draining.min(standing)
    }

    /// A slot is given back at `now`. Returns the waiter it passes to (the
    /// slot stays taken), or `None` if nobody waits (the slot is freed).
    /// Waiters past their deadline are dropped on the way: their own timer
    /// fires at the same instant, and a stale request should not take a slot.
    pub(crate) fn release(&mut self, now: Instant) -> Option<T> {
        // Over a lowered limit: the slot goes away instead of on.
        if self.in_flight <= self.limit
            && let Some(waiter) = self.next_waiter(now)
        {
            return Some(waiter);
        }
        debug_assert!(self.in_flight > 0, "released more slots than admitted");
        self.in_flight = self.in_flight.saturating_sub(1);
        None
    }

    /// The waiter to serve next, dropping those past their deadline.
    fn next_waiter(&mut self, now: Instant) -> Option<T> {
        loop {
            // Adaptive LIFO: in a standing queue the newest waiter is the one
            // most likely to still have a client; the oldest are likely gone.
            let next = if self.standing(now) {
                self.waiters.pop_back()
            } else {
                self.waiters.pop_front()
            };
            let waiter = next?;
            if self.waiters.is_empty() {
                self.nonempty_since = None;
            }
            if waiter.deadline > now {
                return Some(waiter.value);
            }
        }
    }

    /// The waiter `id` gives up (timed out or cancelled). Returns its value,
    /// or `None` if it is no longer queued (it was chosen or dropped).
    pub(crate) fn leave(&mut self, id: WaiterId) -> Option<T> {
        let index = self.waiters.binary_search_by_key(&id, |w| w.id).ok()?;
        let waiter = self.waiters.remove(index)?;
        if self.waiters.is_empty() {
            self.nonempty_since = None;
        }
        Some(waiter.value)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn queue(max_concurrency: usize, max_queue: usize) -> AdmissionQueue<&'static str> {
        let params = AdmissionParams::builder()
            .max_concurrency(max_concurrency)
            .max_queue(max_queue)
            .queue_timeout(ms(1000))
            .build()
            .expect("valid");
        AdmissionQueue::new(params)
    }

    fn queued(entry: Entry) -> (WaiterId, Instant) {
        match entry {
            Entry::Queued { id, deadline } => (id, deadline),
            other => panic!("expected to queue, got {other:?}"),
        }
    }

    #[test]
    fn admits_up_to_the_limit_then_queues_then_rejects() {
        let t0 = Instant::now();
        let mut q = queue(2, 1);
        assert_eq!(q.enter(t0, "a"), Entry::Admitted);
        assert_eq!(q.enter(t0, "b"), Entry::Admitted);
        queued(q.enter(t0, "c"));
        assert_eq!(q.enter(t0, "d"), Entry::Full { waiting: 1 });
        assert_eq!((q.in_flight(), q.queued()), (2, 1));
    }

    #[test]
    fn releases_in_arrival_order_while_draining() {
        let t0 = Instant::now();
        let mut q = queue(1, 10);
        q.enter(t0, "held");
        for name in ["1", "2", "3"] {
            queued(q.enter(t0, name));
        }
        let t1 = t0 + ms(10);
        assert_eq!(q.release(t1), Some("1"));
        assert_eq!(q.release(t1), Some("2"));
        assert_eq!(q.release(t1), Some("3"));
        assert_eq!(q.in_flight(), 1, "each release passed the slot on");
        assert_eq!(q.release(t1), None);
        assert_eq!(q.in_flight(), 0);
        assert!(
            !q.standing(t1 + ms(500)),
            "an empty queue is never standing"
        );
    }

    #[test]
    fn a_draining_waiter_may_wait_queue_timeout() {
        let t0 = Instant::now();
        let mut q = queue(1, 10);
        q.enter(t0, "held");
        let (_, first) = queued(q.enter(t0, "first"));
        // Queue non-empty since t0: standing from t0 + 100 ms, so a waiter
        // entering at t0 is cut off then (it has waited far past 5 ms).
        assert_eq!(first, t0 + ms(100));
        let (_, late) = queued(q.enter(t0 + ms(98), "late"));
        assert_eq!(late, t0 + ms(103), "5 ms after entering, standing by then");

        // queue_timeout applies when it comes before the queue can stand.
        let params = AdmissionParams::builder()
            .max_concurrency(1)
            .queue_timeout(ms(50))
            .build()
            .expect("valid");
        let mut short = AdmissionQueue::new(params);
        short.enter(t0, "held");
        let (_, d) = queued(short.enter(t0, "w"));
        assert_eq!(d, t0 + ms(50));
    }

    #[test]
    fn a_standing_queue_serves_the_newest_first() {
        let t0 = Instant::now();
        let mut q = queue(1, 10);
        q.enter(t0, "held");
        queued(q.enter(t0 + ms(97), "old"));
        queued(q.enter(t0 + ms(98), "mid"));
        queued(q.enter(t0 + ms(99), "new"));
        assert!(!q.standing(t0 + ms(196)));
        // "old" stands from t0 + 97 ms, so the queue is standing at 197 ms.
        let t = t0 + ms(197);
        assert!(q.standing(t));
        assert!(q.standing(t + ms(1)));
        // All entered about 100 ms ago, far past the 5 ms target.
        assert_eq!(q.release(t), None, "every waiter was past its deadline");
        assert_eq!((q.in_flight(), q.queued()), (0, 0));
    }

    #[test]
    fn lifo_hands_the_slot_to_the_newest_live_waiter() {
        let t0 = Instant::now();
        let mut q = queue(1, 10);
        q.enter(t0, "held");
        queued(q.enter(t0, "anchor")); // keeps the queue non-empty from t0
        let (_, d1) = queued(q.enter(t0 + ms(97), "a"));
        let (_, d2) = queued(q.enter(t0 + ms(98), "b"));
        assert_eq!((d1, d2), (t0 + ms(102), t0 + ms(103)));
        let t = t0 + ms(100);
        assert!(q.standing(t));
        assert_eq!(q.release(t), Some("b"));
        assert_eq!(q.release(t), Some("a"));
        // "anchor" entered at t0: its deadline (t0 + 100 ms) has passed.
        assert_eq!(q.release(t), None);
        assert!(!q.standing(t), "emptied");
    }

    #[test]
    fn leaving_frees_the_place_and_resets_the_standing_clock() {
        let t0 = Instant::now();
        let mut q = queue(1, 1);
        q.enter(t0, "held");
        let (id, _) = queued(q.enter(t0, "w"));
        assert_eq!(q.leave(id), Some("w"));
        assert_eq!(q.leave(id), None, "leaving twice is harmless");
        assert_eq!(q.queued(), 0);
        assert!(!q.standing(t0 + ms(500)));
        let (_, deadline) = queued(q.enter(t0 + ms(500), "x"));
        assert_eq!(deadline, t0 + ms(600), "a fresh queue, not a standing one");
        assert_eq!(q.in_flight(), 1);
    }

    #[test]
    fn a_lowered_limit_frees_slots_as_requests_finish_and_a_raised_one_admits_waiters() {
        let now = Instant::now();
        let mut q = queue(2, 4);
        assert!(matches!(q.enter(now, "a"), Entry::Admitted));
        assert!(matches!(q.enter(now, "b"), Entry::Admitted));
        assert!(matches!(q.enter(now, "c"), Entry::Queued { .. }));
        q.set_limit(1);
        // Over the new limit: the slot is dropped, "c" keeps waiting.
        assert_eq!(q.release(now), None);
        assert_eq!(q.in_flight(), 1);
        assert_eq!(q.grant(now), None);
        q.set_limit(3);
        assert_eq!(q.grant(now), Some("c"));
        assert_eq!(q.in_flight(), 2);
        assert_eq!(q.grant(now), None, "nobody else waits");
    }
}
