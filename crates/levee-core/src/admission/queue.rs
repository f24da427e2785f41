//! The pure admission decision: who gets a slot, who waits, how long.
//!
//! No clock and no channels: every call takes `now`, and each waiter carries
//! an opaque value (the async layer's wake-up channel) that is handed back
//! when the waiter is chosen.

use std::collections::VecDeque;

use tokio::time::Instant;

use super::AdmissionParams;
use super::priority::{CLASSES, Priority};

/// Names one waiter, so that it can leave the queue when its caller gives up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct WaiterId(u64);

/// What happened to a request that asked for a slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Entry<T> {
    /// It holds a slot now.
    Admitted,
    /// It waits; it is shed at `deadline` unless a slot reaches it first.
    /// `displaced`: the waiter of a lower class shed to make room for it.
    Queued {
        id: WaiterId,
        deadline: Instant,
        displaced: Option<T>,
    },
    /// Rejected at once: the queue already holds `waiting` requests, none
    /// of a lower class.
    Full { waiting: usize },
}

#[derive(Debug)]
struct Waiter<T> {
    id: WaiterId,
    deadline: Instant,
    value: T,
}

/// The waiters of one priority class.
#[derive(Debug)]
struct Class<T> {
    /// Oldest at the front. Ids grow towards the back.
    waiters: VecDeque<Waiter<T>>,
    /// Since when this class's queue has been non-empty; `None` while it is
    /// empty. Only this decides whether it is standing.
    nonempty_since: Option<Instant>,
}

impl<T> Default for Class<T> {
    fn default() -> Self {
        Class {
            waiters: VecDeque::new(),
            nonempty_since: None,
        }
    }
}

/// Slots in use and the queues of requests waiting for one, one per
/// priority class, with the adaptive-LIFO and controlled-delay rules of
/// Facebook's "Fail at Scale" in each.
#[derive(Debug)]
pub(crate) struct AdmissionQueue<T> {
    params: AdmissionParams,
    /// Slots that may be held at once: `max_concurrency`, or what an
    /// adaptive limit last set.
    limit: usize,
    /// Slots held, including ones handed to a waiter that has not woken yet.
    in_flight: usize,
    /// One queue per class, the highest first; `max_queue` bounds them all.
    classes: [Class<T>; CLASSES],
    next_id: u64,
}

impl<T> AdmissionQueue<T> {
    pub(crate) fn new(params: AdmissionParams) -> Self {
        AdmissionQueue {
            limit: params.max_concurrency(),
            params,
            in_flight: 0,
            classes: Default::default(),
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

    /// Waiters of every class.
    pub(crate) fn queued(&self) -> usize {
        self.classes.iter().map(|class| class.waiters.len()).sum()
    }

    /// Waiters per class, the highest first.
    pub(crate) fn queued_by_class(&self) -> [usize; CLASSES] {
        let mut counts = [0; CLASSES];
        for (count, class) in counts.iter_mut().zip(&self.classes) {
            *count = class.waiters.len();
        }
        counts
    }

    /// Whether some class's queue has not been empty for `codel_interval`.
    /// A queue that keeps emptying absorbs bursts; one that never empties
    /// only adds delay (CoDel's "good queue" and "bad queue").
    pub(crate) fn standing(&self, now: Instant) -> bool {
        (0..CLASSES).any(|class| self.class_standing(class, now))
    }

    fn class_standing(&self, class: usize, now: Instant) -> bool {
        self.classes[class].nonempty_since.is_some_and(|since| {
            now.saturating_duration_since(since) >= self.params.codel_interval()
        })
    }

    /// Give a slot back when nobody waits (what [`release`](Self::release)
    /// does then).
    pub(crate) fn free_slot(&mut self) {
        debug_assert!(self.in_flight > 0, "released more slots than admitted");
        self.in_flight = self.in_flight.saturating_sub(1);
    }

    /// With nobody waiting, take every free slot at once to lend them to
    /// the limiter's lock-free gate; returns how many (0 with waiters).
    /// [`take_back`](Self::take_back) returns those the gate still holds.
    pub(crate) fn lend_free_slots(&mut self) -> usize {
        if self.queued() != 0 {
            return 0;
        }
        let free = self.limit.saturating_sub(self.in_flight);
        self.in_flight += free;
        free
    }

    /// `free` slots lent by [`lend_free_slots`](Self::lend_free_slots) (or
    /// given back to the gate since) are free again.
    pub(crate) fn take_back(&mut self, free: usize) {
        debug_assert!(self.in_flight >= free, "took back more slots than lent");
        self.in_flight = self.in_flight.saturating_sub(free);
    }

    /// Take a slot if one is free (what [`enter`](Self::enter) does first).
    pub(crate) fn try_admit(&mut self) -> bool {
        if self.in_flight < self.limit {
            self.in_flight += 1;
            return true;
        }
        false
    }

    /// A request of class `priority` asks for a slot at `now`; `value` is
    /// kept while it waits. A full queue makes room by shedding the oldest
    /// waiter of the lowest class below `priority` (handed back in
    /// [`Entry::Queued::displaced`]), or rejects the request.
    pub(crate) fn enter(&mut self, now: Instant, priority: Priority, value: T) -> Entry<T> {
        if self.in_flight < self.limit {
            self.in_flight += 1;
            return Entry::Admitted;
        }
        let mut displaced = None;
        if self.queued() >= self.params.max_queue() {
            // The oldest of the lowest class below this one: shed first.
            let victim = (priority.index() + 1..CLASSES)
                .rev()
                .find(|&class| !self.classes[class].waiters.is_empty());
            let Some(victim) = victim else {
                // Rejecting at once is the point: a bounded queue turns a
                // stall into fast 503s instead of every client timing out.
                return Entry::Full {
                    waiting: self.queued(),
                };
            };
            let class = &mut self.classes[victim];
            displaced = class.waiters.pop_front().map(|waiter| waiter.value);
            if class.waiters.is_empty() {
                class.nonempty_since = None;
            }
        }
        let class = priority.index();
        let since = *self.classes[class].nonempty_since.get_or_insert(now);
        let deadline = self.deadline(since, now);
        let id = WaiterId(self.next_id);
        self.next_id += 1;
        self.classes[class].waiters.push_back(Waiter {
            id,
            deadline,
            value,
        });
        Entry::Queued {
            id,
            deadline,
            displaced,
        }
    }

    /// When a waiter queued at `enqueued` is shed, given that its class's
    /// queue has been non-empty since `since`. While it waits that queue
    /// stays non-empty, so `since` cannot change and the deadline is fixed
    /// on entry: `queue_timeout` after entering, cut to `codel_target` after
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

    /// The waiter to serve next: of the highest class waiting, dropping
    /// those past their deadline.
    fn next_waiter(&mut self, now: Instant) -> Option<T> {
        for class in 0..CLASSES {
            // Adaptive LIFO: in a standing queue the newest waiter is the one
            // most likely to still have a client; the oldest are likely gone.
            let lifo = self.class_standing(class, now);
            let queue = &mut self.classes[class];
            loop {
                let next = if lifo {
                    queue.waiters.pop_back()
                } else {
                    queue.waiters.pop_front()
                };
                let Some(waiter) = next else {
                    break;
                };
                if queue.waiters.is_empty() {
                    queue.nonempty_since = None;
                }
                if waiter.deadline > now {
                    return Some(waiter.value);
                }
            }
        }
        None
    }

    /// The waiter `id` gives up (timed out or cancelled). Returns its value,
    /// or `None` if it is no longer queued (it was chosen or dropped).
    pub(crate) fn leave(&mut self, id: WaiterId) -> Option<T> {
        for class in &mut self.classes {
            let Ok(index) = class.waiters.binary_search_by_key(&id, |w| w.id) else {
                continue;
            };
            let waiter = class.waiters.remove(index)?;
            if class.waiters.is_empty() {
                class.nonempty_since = None;
            }
            return Some(waiter.value);
        }
        None
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

    fn queued(entry: Entry<&'static str>) -> (WaiterId, Instant) {
        match entry {
            Entry::Queued { id, deadline, .. } => (id, deadline),
            other => panic!("expected to queue, got {other:?}"),
        }
    }

    #[test]
    fn admits_up_to_the_limit_then_queues_then_rejects() {
        let t0 = Instant::now();
        let mut q = queue(2, 1);
        assert_eq!(q.enter(t0, Priority::Default, "a"), Entry::Admitted);
        assert_eq!(q.enter(t0, Priority::Default, "b"), Entry::Admitted);
        queued(q.enter(t0, Priority::Default, "c"));
        assert_eq!(
            q.enter(t0, Priority::Default, "d"),
            Entry::Full { waiting: 1 }
        );
        assert_eq!((q.in_flight(), q.queued()), (2, 1));
    }

    #[test]
    fn releases_in_arrival_order_while_draining() {
        let t0 = Instant::now();
        let mut q = queue(1, 10);
        q.enter(t0, Priority::Default, "held");
        for name in ["1", "2", "3"] {
            queued(q.enter(t0, Priority::Default, name));
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
        q.enter(t0, Priority::Default, "held");
        let (_, first) = queued(q.enter(t0, Priority::Default, "first"));
        // Queue non-empty since t0: standing from t0 + 100 ms, so a waiter
        // entering at t0 is cut off then (it has waited far past 5 ms).
        assert_eq!(first, t0 + ms(100));
        let (_, late) = queued(q.enter(t0 + ms(98), Priority::Default, "late"));
        assert_eq!(late, t0 + ms(103), "5 ms after entering, standing by then");

        // queue_timeout applies when it comes before the queue can stand.
        let params = AdmissionParams::builder()
            .max_concurrency(1)
            .queue_timeout(ms(50))
            .build()
            .expect("valid");
        let mut short = AdmissionQueue::new(params);
        short.enter(t0, Priority::Default, "held");
        let (_, d) = queued(short.enter(t0, Priority::Default, "w"));
        assert_eq!(d, t0 + ms(50));
    }

    #[test]
    fn a_standing_queue_serves_the_newest_first() {
        let t0 = Instant::now();
        let mut q = queue(1, 10);
        q.enter(t0, Priority::Default, "held");
        queued(q.enter(t0 + ms(97), Priority::Default, "old"));
        queued(q.enter(t0 + ms(98), Priority::Default, "mid"));
        queued(q.enter(t0 + ms(99), Priority::Default, "new"));
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
        q.enter(t0, Priority::Default, "held");
        queued(q.enter(t0, Priority::Default, "anchor")); // keeps the queue non-empty from t0
        let (_, d1) = queued(q.enter(t0 + ms(97), Priority::Default, "a"));
        let (_, d2) = queued(q.enter(t0 + ms(98), Priority::Default, "b"));
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
        q.enter(t0, Priority::Default, "held");
        let (id, _) = queued(q.enter(t0, Priority::Default, "w"));
        assert_eq!(q.leave(id), Some("w"));
        assert_eq!(q.leave(id), None, "leaving twice is harmless");
        assert_eq!(q.queued(), 0);
        assert!(!q.standing(t0 + ms(500)));
        let (_, deadline) = queued(q.enter(t0 + ms(500), Priority::Default, "x"));
        assert_eq!(deadline, t0 + ms(600), "a fresh queue, not a standing one");
        assert_eq!(q.in_flight(), 1);
    }

    #[test]
    fn a_lowered_limit_frees_slots_as_requests_finish_and_a_raised_one_admits_waiters() {
        let now = Instant::now();
        let mut q = queue(2, 4);
        assert!(matches!(
            q.enter(now, Priority::Default, "a"),
            Entry::Admitted
        ));
        assert!(matches!(
            q.enter(now, Priority::Default, "b"),
            Entry::Admitted
        ));
        assert!(matches!(
            q.enter(now, Priority::Default, "c"),
            Entry::Queued { .. }
        ));
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

    #[test]
    fn a_slot_goes_to_the_highest_class_waiting() {
        let t0 = Instant::now();
        let mut q = queue(1, 10);
        q.enter(t0, Priority::Default, "held");
        queued(q.enter(t0, Priority::Sheddable, "batch"));
        queued(q.enter(t0, Priority::Default, "page"));
        queued(q.enter(t0, Priority::Critical, "checkout"));
        assert_eq!(q.queued_by_class(), [1, 1, 1]);
        let t1 = t0 + ms(1);
        assert_eq!(q.release(t1), Some("checkout"));
        assert_eq!(q.release(t1), Some("page"));
        assert_eq!(q.release(t1), Some("batch"));
    }

    #[test]
    fn a_full_queue_sheds_the_oldest_of_the_lowest_class_for_a_higher_one() {
        let t0 = Instant::now();
        let mut q = queue(1, 2);
        q.enter(t0, Priority::Default, "held");
        queued(q.enter(t0, Priority::Sheddable, "old batch"));
        queued(q.enter(t0, Priority::Sheddable, "new batch"));
        // Full: a sheddable request is turned away, a critical one is not.
        assert_eq!(
            q.enter(t0, Priority::Sheddable, "more batch"),
            Entry::Full { waiting: 2 }
        );
        match q.enter(t0, Priority::Critical, "checkout") {
            Entry::Queued { displaced, .. } => assert_eq!(displaced, Some("old batch")),
            other => panic!("expected to queue, got {other:?}"),
        }
        // Full of higher classes: nothing lower to shed.
        queued(q.enter(t0, Priority::Critical, "checkout 2"));
        assert!(matches!(
            q.enter(t0, Priority::Sheddable, "late batch"),
            Entry::Full { .. }
        ));
        assert_eq!(q.queued_by_class(), [2, 0, 0]);
    }
}
