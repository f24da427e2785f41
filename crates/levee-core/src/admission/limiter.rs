//! The async face of [`AdmissionQueue`]: wait for a slot, give it back.
//!
//! The queue is behind a lock, but a request that finds a free slot while
//! nobody waits (nearly all of them, with a limit above the load) takes it
//! without the lock: whenever the queue is empty, the free slots are lent
//! to a *gate*, one atomic word counting them, and a slot is taken and given
//! back with a compare-and-swap on it. Taking the lock shuts the gate and
//! returns what it holds to the queue first, so every decision under the
//! lock sees the true count; the gate opens again as the lock is released,
//! if nobody waits. Hand-written: the gate is levee's own idea, the queue's
//! rules are in `queue.rs`.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use parking_lot::{Mutex, MutexGuard};
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::queue::{AdmissionQueue, Entry, WaiterId};
use super::{AdmissionParams, CLASSES, Priority, Rejected};

/// A per-cluster concurrency limit with a bounded, controlled-delay queue.
///
/// Cloning is cheap and every clone shares the same slots and queue.
#[derive(Clone)]
pub struct Admission {
    shared: Arc<Shared>,
}

struct Shared {
    /// A waiter's value is the sender that hands it its [`Permit`] (or
    /// tells it it was displaced by a higher class).
    queue: Mutex<AdmissionQueue<Waiting>>,
    /// [`OPEN`] and the free slots lent to the gate; 0 while it is shut
    /// (someone waits, every slot is taken, or the lock is held).
    gate: AtomicU64,
    /// The queue's limit, to read without the lock.
    limit: AtomicUsize,
}

/// Set while the gate is open.
const OPEN: u64 = 1 << 63;

/// The queue, locked, with the gate shut; reopened when dropped.
struct Locked<'a> {
    queue: MutexGuard<'a, AdmissionQueue<Waiting>>,
    gate: &'a AtomicU64,
}

impl Shared {
    fn new(params: AdmissionParams) -> Shared {
        let queue = AdmissionQueue::new(params);
        let shared = Shared {
            limit: AtomicUsize::new(queue.limit()),
            queue: Mutex::new(queue),
            gate: AtomicU64::new(0),
        };
        // Opens the gate.
        drop(shared.lock());
        shared
    }

    /// The queue, every slot the gate held back in it.
    fn lock(&self) -> Locked<'_> {
        let mut queue = self.queue.lock();
        let word = self.gate.swap(0, Ordering::AcqRel);
        if word & OPEN != 0 {
            queue.take_back(usize::try_from(word & !OPEN).unwrap_or(usize::MAX));
        }
        Locked {
            queue,
            gate: &self.gate,
        }
    }

    /// A free slot from the open gate, without the lock.
    fn take_from_gate(&self) -> bool {
        self.gate
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |word| {
                (word & OPEN != 0 && word & !OPEN != 0).then(|| word - 1)
            })
            .is_ok()
    }

    /// Give a slot back to the open gate, without the lock: false when it
    /// is shut (someone may be waiting for the slot).
    fn give_to_gate(&self) -> bool {
        self.gate
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |word| {
                (word & OPEN != 0).then(|| word + 1)
            })
            .is_ok()
    }
}

impl Deref for Locked<'_> {
    type Target = AdmissionQueue<Waiting>;

    fn deref(&self) -> &Self::Target {
        &self.queue
    }
}

impl DerefMut for Locked<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.queue
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        // Nobody waits and a slot is free: lend the free ones to the gate.
        let free = self.queue.lend_free_slots();
        if free != 0 {
            self.gate.store(OPEN | free as u64, Ordering::Release);
        }
    }
}

/// How a queued request learns its fate.
type Waiting = oneshot::Sender<Result<Permit, Rejected>>;

impl Admission {
    /// A limiter with no request in flight.
    pub fn new(params: AdmissionParams) -> Admission {
        Admission {
            shared: Arc::new(Shared::new(params)),
        }
    }

    /// The parameters it was built with.
    pub fn params(&self) -> AdmissionParams {
        self.shared.queue.lock().params().clone()
    }

    /// Waits for a slot. Returns at once with a permit below
    /// `max_concurrency`, or with [`Rejected::QueueFull`] when the queue is
    /// full; otherwise waits until a permit is handed over or the deadline
    /// passes ([`Rejected::Timeout`], returned at the deadline itself).
    ///
    /// Cancel-safe: dropping the future gives up the place in the queue, and
    /// a permit handed over at that moment is passed on to the next waiter.
    pub async fn acquire(&self) -> Result<Permit, Rejected> {
        self.acquire_as(Priority::Default).await
    }

    /// [`acquire`](Self::acquire) for a request of class `priority`: it
    /// waits only behind requests of its class or higher, and a full queue
    /// sheds a waiter of a lower class to make room for it (that waiter
    /// gets [`Rejected::Displaced`]).
    pub async fn acquire_as(&self, priority: Priority) -> Result<Permit, Rejected> {
        // Most calls find a free slot: no channel, no clock read.
        if let Some(permit) = self.try_acquire() {
            return Ok(permit);
        }
        let start = Instant::now();
        let (tx, mut rx) = oneshot::channel();
        let entry = self.shared.lock().enter(start, priority, tx);
        let (id, deadline) = match entry {
            Entry::Admitted => return Ok(Permit::new(self.shared.clone())),
            Entry::Full { waiting } => return Err(Rejected::QueueFull { waiting }),
            Entry::Queued {
                id,
                deadline,
                displaced,
            } => {
                if let Some(victim) = displaced {
                    // Outside the lock; a victim that has gone ignores it.
                    let _ = victim.send(Err(Rejected::Displaced { by: priority }));
                }
                (id, deadline)
            }
        };
        // Declared after `rx`, so dropped before it: a cancelled waiter first
        // leaves the queue, then drops any permit already sent to it, whose
        // own drop passes the slot on.
        let mut place = Place {
            shared: &self.shared,
            id: Some(id),
        };
        let timeout = Rejected::Timeout {
            waited: deadline.saturating_duration_since(start),
        };
        match tokio::time::timeout_at(deadline, &mut rx).await {
            Ok(Ok(answer)) => {
                place.id = None;
                answer
            }
            // The releaser found us past our deadline and dropped the sender.
            Ok(Err(_)) => {
                place.id = None;
                Err(timeout)
            }
            Err(_elapsed) => {
                if place.leave() {
                    return Err(timeout);
                }
                // A releaser chose us at the same instant and is about to
                // send (or drop) outside the lock: take what it decided.
                rx.await.unwrap_or(Err(timeout))
            }
        }
    }

    /// A slot at once if one is free, without queueing: `None` when every
    /// slot is taken (then [`acquire`](Self::acquire) would queue).
    pub fn try_acquire(&self) -> Option<Permit> {
        if self.shared.take_from_gate() {
            return Some(Permit::new(self.shared.clone()));
        }
        let admitted = self.shared.lock().try_admit();
        admitted.then(|| Permit::new(self.shared.clone()))
    }

    /// Slots that may be held at once now.
    pub fn limit(&self) -> usize {
        self.shared.limit.load(Ordering::Relaxed)
    }

    /// Change the number of slots (an adaptive limit's new estimate; at
    /// least 1). A lower limit takes effect as requests finish; a higher one
    /// admits waiting requests at once.
    pub fn set_limit(&self, limit: usize) {
        let now = Instant::now();
        let granted: Vec<_> = {
            let mut queue = self.shared.lock();
            queue.set_limit(limit);
            self.shared.limit.store(queue.limit(), Ordering::Relaxed);
            std::iter::from_fn(|| queue.grant(now)).collect()
        };
        // Sent outside the lock, which dropping a returned permit takes.
        for sender in granted {
            // A waiter that has gone hands the permit back: dropping it
            // releases the slot to the next one.
            drop(sender.send(Ok(Permit::new(self.shared.clone()))));
        }
    }

    /// Requests holding a slot.
    pub fn in_flight(&self) -> usize {
        self.shared.lock().in_flight()
    }

    /// Requests waiting for a slot.
    pub fn queued(&self) -> usize {
        self.shared.lock().queued()
    }

    /// Requests waiting for a slot, per class (the highest first).
    pub fn queued_by_class(&self) -> [usize; CLASSES] {
        self.shared.lock().queued_by_class()
    }

    /// Whether the queue has not been empty for `codel_interval` at `now`:
    /// waiters are then served newest first and wait at most `codel_target`.
    pub fn standing_queue(&self, now: Instant) -> bool {
        self.shared.lock().standing(now)
    }
}

impl fmt::Debug for Admission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let queue = self.shared.lock();
        f.debug_struct("Admission")
            .field("in_flight", &queue.in_flight())
            .field("queued", &queue.queued())
            .field("params", queue.params())
            .finish()
    }
}

/// A waiter's place in the queue, given up when the waiting future is
/// dropped, so a cancelled request never holds a place or a slot.
struct Place<'a> {
    shared: &'a Shared,
    id: Option<WaiterId>,
}

impl Place<'_> {
    /// Leaves the queue; false if the waiter was already chosen or dropped.
    fn leave(&mut self) -> bool {
        let Some(id) = self.id.take() else {
            return false;
        };
        // The sender is dropped outside the lock; it carries no permit yet.
        let sender = self.shared.lock().leave(id);
        sender.is_some()
    }
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        self.leave();
    }
}

/// One slot of an [`Admission`]. Dropping it frees the slot or hands it to
/// the next waiter (oldest first, newest first in a standing queue).
#[must_use = "the slot is given back as soon as the permit is dropped"]
pub struct Permit {
    /// `None` only while a permit whose waiter vanished is being recycled.
    shared: Option<Arc<Shared>>,
}

impl Permit {
    fn new(shared: Arc<Shared>) -> Permit {
        Permit {
            shared: Some(shared),
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let Some(shared) = self.shared.take() else {
            return;
        };
        if shared.give_to_gate() {
            return;
        }
        loop {
            let next = {
                let mut queue = shared.lock();
                // Nobody waits (the usual case): free the slot, no clock read.
                if queue.queued() == 0 {
                    queue.free_slot();
                    return;
                }
                queue.release(Instant::now())
            };
            let Some(sender) = next else { return };
            // Sent outside the lock: a permit that bounces back is dropped
            // here, and dropping one takes the lock.
            match sender.send(Ok(Permit::new(shared.clone()))) {
                Ok(()) => return,
                Err(unwanted) => {
                    // Its waiter was cancelled between leaving the lock and
                    // now; the slot is still ours, so offer it to the next.
                    if let Ok(mut unwanted) = unwanted {
                        unwanted.shared = None;
                    }
                }
            }
        }
    }
}

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn admission(max_concurrency: usize, max_queue: usize) -> Admission {
        Admission::new(
            AdmissionParams::builder()
                .max_concurrency(max_concurrency)
                .max_queue(max_queue)
                .build()
                .expect("valid"),
        )
    }

    /// Lets spawned tasks run without letting paused time move.
    async fn settle() {
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
    }

    /// Spawns a waiter that records `name` when admitted and then holds its
    /// permit for `hold`.
    fn waiter(
        admission: &Admission,
        name: &'static str,
        log: &Arc<Mutex<Vec<&'static str>>>,
        hold: Duration,
    ) -> tokio::task::JoinHandle<Result<(), Rejected>> {
        let admission = admission.clone();
        let log = log.clone();
        tokio::spawn(async move {
            let permit = admission.acquire().await?;
            log.lock().push(name);
            tokio::time::sleep(hold).await;
            drop(permit);
            Ok(())
        })
    }

    #[tokio::test(start_paused = true)]
    async fn admits_up_to_the_limit_at_once() {
        let a = admission(2, 4);
        let start = Instant::now();
        let p1 = a.acquire().await.expect("slot 1");
        let p2 = a.acquire().await.expect("slot 2");
        assert_eq!(Instant::now(), start, "no waiting below the limit");
        assert_eq!((a.in_flight(), a.queued()), (2, 0));
        drop(p1);
        assert_eq!(a.in_flight(), 1);
        drop(p2);
        assert_eq!(a.in_flight(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_queue_rejects_at_once() {
        let a = admission(1, 1);
        let log = Arc::new(Mutex::new(Vec::new()));
        let _held = a.acquire().await.expect("slot");
        let _w = waiter(&a, "w", &log, ms(0));
        settle().await;
        assert_eq!((a.in_flight(), a.queued()), (1, 1));
        let start = Instant::now();
        let rejected = a.acquire().await.expect_err("queue full");
        assert_eq!(Instant::now(), start, "rejected without waiting");
        assert_eq!(rejected, Rejected::QueueFull { waiting: 1 });
        assert_eq!(rejected.to_string(), "overloaded: queue full (1 waiting)");
    }

    #[tokio::test(start_paused = true)]
    async fn serves_in_arrival_order_while_draining() {
        let a = admission(1, 10);
        let log = Arc::new(Mutex::new(Vec::new()));
        let held = a.acquire().await.expect("slot");
        let mut tasks = Vec::new();
        for name in ["1", "2", "3"] {
            tasks.push(waiter(&a, name, &log, ms(1)));
            settle().await;
        }
        assert_eq!(a.queued(), 3);
        drop(held);
        for task in tasks {
            task.await.expect("joined").expect("admitted");
        }
        assert_eq!(*log.lock(), ["1", "2", "3"]);
        assert_eq!((a.in_flight(), a.queued()), (0, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn a_standing_queue_serves_newest_first() {
        let a = admission(1, 10);
        let log = Arc::new(Mutex::new(Vec::new()));
        let start = Instant::now();
        let held = a.acquire().await.expect("slot");
        let anchor = waiter(&a, "anchor", &log, ms(0));
        settle().await;
        tokio::time::advance(ms(97)).await;
        let older = waiter(&a, "older", &log, ms(0));
        settle().await;
        tokio::time::advance(ms(1)).await;
        let newer = waiter(&a, "newer", &log, ms(0));
        settle().await;
        assert!(!a.standing_queue(Instant::now()));

        tokio::time::advance(ms(2)).await;
        settle().await;
        let now = Instant::now();
        assert_eq!(now - start, ms(100));
        assert!(a.standing_queue(now), "non-empty for 100 ms");
        // The waiter from t0 has waited 100 ms, far past the 5 ms target.
        assert_eq!(
            anchor.await.expect("joined"),
            Err(Rejected::Timeout { waited: ms(100) })
        );

        drop(held);
        older.await.expect("joined").expect("admitted");
        newer.await.expect("joined").expect("admitted");
        assert_eq!(*log.lock(), ["newer", "older"], "LIFO once standing");
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_in_a_standing_queue_waits_at_most_codel_target() {
        let a = admission(1, 10);
        let log = Arc::new(Mutex::new(Vec::new()));
        let _held = a.acquire().await.expect("slot");
        // Keep the queue non-empty from t0 through t0 + 100 ms.
        let _anchor = waiter(&a, "anchor", &log, ms(0));
        settle().await;
        tokio::time::advance(ms(98)).await;
        let _bridge = waiter(&a, "bridge", &log, ms(0));
        settle().await;
        tokio::time::advance(ms(2)).await;
        settle().await;
        assert!(a.standing_queue(Instant::now()));
        let start = Instant::now();
        let rejected = a.acquire().await.expect_err("shed");
        assert_eq!(Instant::now() - start, ms(5), "codel_target, not 100 ms");
        assert_eq!(rejected, Rejected::Timeout { waited: ms(5) });
        assert_eq!(rejected.to_string(), "overloaded: waited 5ms in the queue");
        assert!(log.lock().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn times_out_after_queue_timeout_without_a_standing_queue() {
        let a = Admission::new(
            AdmissionParams::builder()
                .max_concurrency(1)
                .queue_timeout(ms(50))
                .build()
                .expect("valid"),
        );
        let _held = a.acquire().await.expect("slot");
        let start = Instant::now();
        let rejected = a.acquire().await.expect_err("timed out");
        assert_eq!(Instant::now() - start, ms(50), "shed at the deadline");
        assert_eq!(rejected, Rejected::Timeout { waited: ms(50) });
        assert_eq!(rejected.to_string(), "overloaded: waited 50ms in the queue");
        assert_eq!((a.in_flight(), a.queued()), (1, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_waiter_leaks_nothing() {
        let a = admission(1, 4);
        let held = a.acquire().await.expect("slot");
        // Cancelled while queued.
        let gave_up = tokio::time::timeout(ms(1), a.acquire()).await;
        assert!(gave_up.is_err());
        assert_eq!(a.queued(), 0, "the place was given up");

        // Cancelled after a permit was sent to it but before it woke.
        let log = Arc::new(Mutex::new(Vec::new()));
        let doomed = waiter(&a, "doomed", &log, ms(1000));
        settle().await;
        assert_eq!(a.queued(), 1);
        drop(held);
        doomed.abort();
        settle().await;
        assert!(log.lock().is_empty(), "never ran with the permit");
        assert_eq!((a.in_flight(), a.queued()), (0, 0), "slot came back");
        let _again = a.acquire().await.expect("slot is free");
    }

    #[tokio::test(start_paused = true)]
    async fn a_permit_sent_to_a_vanished_waiter_goes_to_the_next() {
        let a = admission(1, 4);
        let log = Arc::new(Mutex::new(Vec::new()));
        let held = a.acquire().await.expect("slot");
        let doomed = waiter(&a, "doomed", &log, ms(0));
        settle().await;
        let next = waiter(&a, "next", &log, ms(0));
        settle().await;
        drop(held);
        doomed.abort();
        next.await.expect("joined").expect("admitted");
        assert_eq!(*log.lock(), ["next"]);
        assert_eq!((a.in_flight(), a.queued()), (0, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn a_slot_given_back_lock_free_reaches_a_waiter() {
        let a = admission(2, 4);
        let log = Arc::new(Mutex::new(Vec::new()));
        // Both slots taken from the open gate.
        let p1 = a.try_acquire().expect("slot 1");
        let p2 = a.try_acquire().expect("slot 2");
        assert!(a.try_acquire().is_none());
        let w = waiter(&a, "w", &log, ms(0));
        settle().await;
        assert_eq!((a.in_flight(), a.queued()), (2, 1));
        // Someone waits: the gate is shut, so the slot goes to the waiter.
        drop(p1);
        w.await.expect("joined").expect("admitted");
        assert_eq!(*log.lock(), ["w"]);
        assert_eq!((a.in_flight(), a.queued()), (1, 0));
        drop(p2);
        assert_eq!(a.in_flight(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_lowered_limit_holds_for_slots_taken_lock_free() {
        let a = admission(4, 4);
        let held: Vec<_> = (0..4).map(|_| a.try_acquire().expect("slot")).collect();
        a.set_limit(2);
        let mut held = held.into_iter();
        drop(held.next());
        // Three in flight, limit 2: nothing free until two more finish.
        assert!(a.try_acquire().is_none());
        drop(held.next());
        assert!(a.try_acquire().is_none());
        drop(held.next());
        let again = a.try_acquire().expect("below the limit again");
        assert!(a.try_acquire().is_none());
        drop(again);
        drop(held);
        assert_eq!(a.in_flight(), 0);
        a.set_limit(3);
        let three: Vec<_> = (0..3).map(|_| a.try_acquire().expect("slot")).collect();
        assert!(a.try_acquire().is_none());
        drop(three);
        assert_eq!(a.in_flight(), 0);
    }

    #[test]
    fn racing_threads_never_hold_more_than_the_limit() {
        let a = admission(3, 1);
        let holding = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let a = a.clone();
                let holding = Arc::clone(&holding);
                std::thread::spawn(move || {
                    let mut admitted = 0;
                    for round in 0..5_000 {
                        if let Some(permit) = a.try_acquire() {
                            admitted += 1;
                            let now = holding.fetch_add(1, Ordering::SeqCst) + 1;
                            assert!(now <= 3, "{now} slots held, limit 3");
                            if round % 500 == 0 {
                                // Now and then the lock is taken meanwhile.
                                assert!(a.in_flight() <= 3);
                            }
                            holding.fetch_sub(1, Ordering::SeqCst);
                            drop(permit);
                        }
                    }
                    admitted
                })
            })
            .collect();
        let admitted: usize = threads
            .into_iter()
            .map(|thread| thread.join().expect("no panic"))
            .sum();
        assert!(admitted > 0);
        assert_eq!(a.in_flight(), 0);
    }
}
