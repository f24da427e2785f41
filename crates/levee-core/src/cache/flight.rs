//! Single-flight fills: one loader call per key, however many callers wait.
//!
//! Every fill runs in its own task, not in the caller that started it, so a
//! caller that gives up (its request cancelled, or `fill_wait` passed) never
//! strands the others, and the result is stored even if nobody waits any
//! more. Callers wait on a `watch` channel that the task fills once.

use std::time::Duration;

use tokio::sync::watch;

use super::{Generation, LoadError};

/// What a fill hands its waiters: `None` until it finishes.
pub(super) type FillSlot<V> = Option<Result<V, LoadError>>;

/// A fill in flight for one key.
#[derive(Debug)]
pub(super) struct Flight<V> {
    /// Taken when the fill started; a fill stores its result only if its
    /// ticket is still the one registered for the key (an invalidation
    /// detaches it, a later fill replaces it).
    pub(super) ticket: Generation,
    /// Cloned by every caller that joins.
    pub(super) done: watch::Receiver<FillSlot<V>>,
}

impl<V> Flight<V> {
    /// A flight and the sender its task will answer on.
    pub(super) fn new(ticket: Generation) -> (Flight<V>, watch::Sender<FillSlot<V>>) {
        let (tx, done) = watch::channel(None);
        (Flight { ticket, done }, tx)
    }
}

/// How a wait for a fill ended.
#[derive(Debug)]
pub(super) enum Waited<V> {
    /// The fill finished, with a value or the loader's error.
    Done(Result<V, LoadError>),
    /// `fill_wait` passed first.
    TimedOut,
    /// The fill's task ended without answering (the loader panicked).
    Abandoned,
}

/// Waits at most `limit` for the fill behind `done`.
pub(super) async fn wait<V: Clone>(
    mut done: watch::Receiver<FillSlot<V>>,
    limit: Duration,
) -> Waited<V> {
    match tokio::time::timeout(limit, done.wait_for(Option::is_some)).await {
        Ok(Ok(slot)) => match &*slot {
            Some(result) => Waited::Done(result.clone()),
            None => Waited::Abandoned,
        },
        Ok(Err(_closed)) => Waited::Abandoned,
        Err(_elapsed) => Waited::TimedOut,
    }
}
