//! [`RefreshingCache`]: the async face over the store and the fills.

use std::collections::HashMap;
use std::error::Error;
use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::watch;
use tokio::time::Instant;

use super::entry::{Entry, Freshness, Lifetime};
use super::flight::{self, FillSlot, Flight, Waited};
use super::generation::Generations;
use super::stats::{Counters, bump};
use super::store::Store;
use super::{
    CacheError, CacheParams, CacheStats, CacheStatus, Generation, LoadError, Loaded, Served,
};

/// Weighs an entry in the unit of `max_size` (usually bytes).
type Weigher<K, V> = dyn Fn(&K, &V) -> u64 + Send + Sync;

/// A bounded cache in front of any async loader, with single-flight fills,
/// stale-while-revalidate, stale-if-error and generation-checked
/// invalidation (see the [module docs](super)).
///
/// Cloning is cheap and every clone shares the same entries.
pub struct RefreshingCache<K, V> {
    shared: Arc<Shared<K, V>>,
}

struct Shared<K, V> {
    params: CacheParams,
    weigher: Box<Weigher<K, V>>,
    /// One lock over entries, fills and the generation counter, so that
    /// "is this fill still current? then store" and "purge and detach its
    /// fills" are each one atomic step. Held only for map operations, never
    /// across an await, and values are dropped after it is released.
    state: Mutex<State<K, V>>,
    counters: Counters,
}

struct State<K, V> {
    store: Store<K, V>,
    flights: HashMap<K, Flight<V>>,
    generations: Generations,
    /// Keys whose last load failed while a stale copy was there: when the
    /// next load may start, and how many failed in a row. Until then stale
    /// requests are answered from the stale copy without a load, so a
    /// failing upstream is not asked again by every request.
    backoffs: HashMap<K, Backoff>,
}

/// A failed refresh's back-off.
#[derive(Clone, Copy, Debug)]
struct Backoff {
    until: Instant,
    failures: u32,
}

/// The first back-off after a failed refresh; it doubles with each failure
/// in a row, up to [`MAX_REFRESH_BACKOFF`].
const REFRESH_BACKOFF: Duration = Duration::from_millis(500);
/// The longest back-off after failed refreshes.
const MAX_REFRESH_BACKOFF: Duration = Duration::from_secs(30);
/// Keys kept in back-off at most; past it the set is cleared (forgetting
/// costs one more load).
const MAX_BACKOFFS: usize = 10_000;

/// A fill this caller must start, once the lock is released.
struct Start<V> {
    ticket: Generation,
    tx: watch::Sender<FillSlot<V>>,
}

/// What a `get` does, decided under the lock.
enum Plan<V> {
    /// Fresh: serve it.
    Hit(V),
    /// Within stale-while-revalidate: serve it now, refreshing unless a
    /// refresh is already running.
    Revalidate { stale: V, start: Option<Start<V>> },
    /// Missing, expired or within stale-if-error only: wait for a fill
    /// (joined or started), falling back to `stale` if it fails. `kept`:
    /// an expired value for the fill to revalidate, never served.
    Fill {
        done: watch::Receiver<FillSlot<V>>,
        stale: Option<V>,
        kept: Option<V>,
        start: Option<Start<V>>,
    },
}

impl<K, V> Clone for RefreshingCache<K, V> {
    fn clone(&self) -> Self {
        RefreshingCache {
            shared: self.shared.clone(),
        }
    }
}

impl<K, V> RefreshingCache<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// An empty cache. `weigher` says what an entry costs against
    /// `max_size`; it runs when a value is stored, outside the lock.
    pub fn new(
        params: CacheParams,
        weigher: impl Fn(&K, &V) -> u64 + Send + Sync + 'static,
    ) -> RefreshingCache<K, V> {
        RefreshingCache {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    store: Store::new(params.max_size()),
                    flights: HashMap::new(),
                    generations: Generations::default(),
                    backoffs: HashMap::new(),
                }),
                params,
                weigher: Box::new(weigher),
                counters: Counters::default(),
            }),
        }
    }

    /// The parameters it was built with.
    pub fn params(&self) -> &CacheParams {
        &self.shared.params
    }

    /// The value for `key`, loading it with `loader` if needed:
    ///
    /// - fresh: [`CacheStatus::Hit`], `loader` is not called;
    /// - within stale-while-revalidate: the stale value at once
    ///   ([`CacheStatus::Stale`]), and one background refresh per key;
    /// - within stale-if-error only: load; the new value is a
    ///   [`CacheStatus::Miss`], and if the load fails or runs past
    ///   `fill_wait` the stale value is served as [`CacheStatus::Stale`];
    /// - missing, expired, or expired but kept for revalidation
    ///   ([`Loaded::keep_for_revalidation`]): load ([`CacheStatus::Miss`])
    ///   or fail.
    ///
    /// Loads are single-flight: while one runs for `key`, other callers wait
    /// for it and share its value or error; their own `loader` is never
    /// called. A caller that joined another's load waits at most
    /// `fill_wait` ([`CacheError::FillTimeout`]); the caller that started
    /// it waits for it whole (the loader bounds itself: it is this caller's
    /// own request, with its own deadline), unless it has a stale copy to
    /// fall back on. The load runs in a
    /// spawned task, so it finishes and stores its value even if every
    /// caller gave up; it must therefore be `Send + 'static`.
    pub async fn get<F, Fut, E>(&self, key: K, loader: F) -> Result<Served<V>, CacheError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Loaded<V>, E>> + Send + 'static,
        E: Error + Send + Sync + 'static,
    {
        self.get_with(key, |_| loader()).await
    }

    /// [`get`](Self::get), with `loader` given the value it replaces: the
    /// stale one, or one expired but kept for revalidation
    /// ([`Loaded::keep_for_revalidation`]); `None` when nothing is stored.
    /// A kept value is never served, only handed over.
    pub async fn get_with<F, Fut, E>(&self, key: K, loader: F) -> Result<Served<V>, CacheError>
    where
        F: FnOnce(Option<V>) -> Fut,
        Fut: Future<Output = Result<Loaded<V>, E>> + Send + 'static,
        E: Error + Send + Sync + 'static,
    {
        let counters = &self.shared.counters;
        let plan = self.plan(&key, Instant::now());
        let served = |value, status| Served { value, status };
        match plan {
            Plan::Hit(value) => {
                bump(&counters.hits, 1);
                Ok(served(value, CacheStatus::Hit))
            }
            Plan::Revalidate { stale, start } => {
                if let Some(start) = start {
                    self.spawn_fill(key, start, loader(Some(stale.clone())));
                }
                bump(&counters.stale, 1);
                Ok(served(stale, CacheStatus::Stale))
            }
            Plan::Fill {
                done,
                stale,
                kept,
                start,
            } => {
                let started = start.is_some();
                if let Some(start) = start {
                    self.spawn_fill(key, start, loader(kept.or_else(|| stale.clone())));
                }
                let limit = if started && stale.is_none() {
                    // Its own request: as long as the loader takes. (With a
                    // stale copy to fall back on, fill_wait still bounds it.)
                    Duration::from_secs(86_400 * 365)
                } else {
                    self.shared.params.fill_wait()
                };
                let failure = match flight::wait(done, limit).await {
                    Waited::Done(Ok(value)) => {
                        bump(&counters.misses, 1);
                        return Ok(served(value, CacheStatus::Miss));
                    }
                    Waited::Done(Err(error)) => CacheError::Load(error),
                    Waited::TimedOut => {
                        bump(&counters.fill_timeouts, 1);
                        CacheError::FillTimeout { waited: limit }
                    }
                    Waited::Abandoned => CacheError::FillAbandoned,
                };
                match stale {
                    Some(value) => {
                        bump(&counters.stale, 1);
                        Ok(served(value, CacheStatus::Stale))
                    }
                    None => Err(failure),
                }
            }
        }
    }

    /// Decides what a `get` does, registering a fill if it must start one.
    fn plan(&self, key: &K, now: Instant) -> Plan<V> {
        let mut state = self.shared.state.lock();
        let backing_off = state
            .backoffs
            .get(key)
            .is_some_and(|backoff| now < backoff.until);
        match state.store.lookup(key, now) {
            Some((value, Freshness::Fresh)) => Plan::Hit(value),
            // A refresh failed a moment ago: the stale copy, no new load.
            Some((stale, Freshness::StaleWhileRevalidate | Freshness::StaleIfError))
                if backing_off =>
            {
                Plan::Revalidate { stale, start: None }
            }
            Some((stale, Freshness::StaleWhileRevalidate)) => {
                let start = if state.flights.contains_key(key) {
                    None
                } else {
                    Some(state.start_flight(key))
                };
                Plan::Revalidate { stale, start }
            }
            Some((stale, Freshness::StaleIfError)) => {
                let (done, start) = state.join_or_start(key);
                Plan::Fill {
                    done,
                    stale: Some(stale),
                    kept: None,
                    start,
                }
            }
            Some((kept, Freshness::Kept)) => {
                let (done, start) = state.join_or_start(key);
                Plan::Fill {
                    done,
                    stale: None,
                    kept: Some(kept),
                    start,
                }
            }
            Some((_, Freshness::Expired)) | None => {
                let (done, start) = state.join_or_start(key);
                Plan::Fill {
                    done,
                    stale: None,
                    kept: None,
                    start,
                }
            }
        }
    }

    /// Runs one loader call in its own task and answers its waiters.
    fn spawn_fill<Fut, E>(&self, key: K, start: Start<V>, load: Fut)
    where
        Fut: Future<Output = Result<Loaded<V>, E>> + Send + 'static,
        E: Error + Send + Sync + 'static,
    {
        bump(&self.shared.counters.loads, 1);
        let shared = self.shared.clone();
        tokio::spawn(async move {
            let Start { ticket, tx } = start;
            // If the loader panics, the flight must not stay registered, or
            // every later caller would join a fill that never answers.
            let mut abandon = Abandon {
                shared: &shared,
                key: Some(&key),
                ticket,
            };
            let result = load.await;
            abandon.key = None;
            let result = shared.complete(&key, ticket, result);
            // Waiters who left already are no reason to fail.
            tx.send_replace(Some(result));
        });
    }

    /// The generation of the entry stored for `key`, if any: pass it to
    /// [`purge_if_generation`](Self::purge_if_generation) later to remove
    /// exactly this value or an older one.
    pub fn generation(&self, key: &K) -> Option<Generation> {
        self.shared.state.lock().store.generation(key)
    }

    /// Removes the entry for `key` and detaches any fill in flight for it:
    /// that fill still answers its waiters but does not store, because it
    /// started before the purge. The next `get` loads anew. True if an
    /// entry was removed.
    pub fn invalidate(&self, key: &K) -> bool {
        self.invalidate_where(|k| k == key) > 0
    }

    /// [`invalidate`](Self::invalidate) for every key `matches` accepts.
    /// Returns how many entries were removed.
    pub fn invalidate_where(&self, matches: impl Fn(&K) -> bool) -> usize {
        let removed = {
            let mut state = self.shared.state.lock();
            state.generations.next();
            state.flights.retain(|k, _| !matches(k));
            state.store.remove_where(&matches)
        };
        removed.len()
    }

    /// Removes the entry for `key` only if its generation is `generation`
    /// or older; an entry stored since (a newer value) is kept, and fills
    /// in flight are left alone since what they store is newer still.
    /// True if an entry was removed.
    pub fn purge_if_generation(&self, key: &K, generation: Generation) -> bool {
        let removed = {
            let mut state = self.shared.state.lock();
            state.store.remove_if_not_newer(key, generation)
        };
        removed.is_some()
    }

    /// A snapshot of the counters, the entry count and the total weight.
    pub fn stats(&self) -> CacheStats {
        let (entries, weight) = {
            let state = self.shared.state.lock();
            (state.store.len() as u64, state.store.weight())
        };
        self.shared.counters.snapshot(entries, weight)
    }
}

impl<K, V> RefreshingCache<K, V>
where
    K: AsRef<str> + Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// [`invalidate`](Self::invalidate) for every key starting with
    /// `prefix`. Returns how many entries were removed.
    pub fn invalidate_prefix(&self, prefix: &str) -> usize {
        self.invalidate_where(|k| k.as_ref().starts_with(prefix))
    }
}

impl<K: Hash + Eq + Clone, V: Clone> State<K, V> {
    /// Registers a new fill for `key`.
    fn start_flight(&mut self, key: &K) -> Start<V> {
        let ticket = self.generations.next();
        let (flight, tx) = Flight::new(ticket);
        self.flights.insert(key.clone(), flight);
        Start { ticket, tx }
    }

    /// The fill in flight for `key`, or a new one this caller starts.
    fn join_or_start(&mut self, key: &K) -> (watch::Receiver<FillSlot<V>>, Option<Start<V>>) {
        if let Some(flight) = self.flights.get(key) {
            return (flight.done.clone(), None);
        }
        let start = self.start_flight(key);
        let done = self.flights[key].done.clone();
        (done, Some(start))
    }

    /// Unregisters the fill with `ticket`, if it is still the one for `key`.
    fn finish_flight(&mut self, key: &K, ticket: Generation) -> bool {
        let current = self.flights.get(key).is_some_and(|f| f.ticket == ticket);
        if current {
            self.flights.remove(key);
        }
        current
    }
}

impl<K: Hash + Eq + Clone, V: Clone> Shared<K, V> {
    /// Records a finished fill: stores its value if the fill is still
    /// current, and returns what its waiters get.
    fn complete<E>(
        &self,
        key: &K,
        ticket: Generation,
        result: Result<Loaded<V>, E>,
    ) -> Result<V, LoadError>
    where
        E: Error + Send + Sync + 'static,
    {
        let loaded = match result {
            Ok(loaded) => loaded,
            Err(error) => {
                bump(&self.counters.load_errors, 1);
                let mut state = self.state.lock();
                state.finish_flight(key, ticket);
                // Back off only where a stale copy answers meanwhile.
                if state.store.generation(key).is_some() {
                    if state.backoffs.len() >= MAX_BACKOFFS {
                        state.backoffs.clear();
                    }
                    let failures = state.backoffs.get(key).map_or(0, |b| b.failures) + 1;
                    let delay = REFRESH_BACKOFF
                        .saturating_mul(1 << (failures - 1).min(16))
                        .min(MAX_REFRESH_BACKOFF);
                    state.backoffs.insert(
                        key.clone(),
                        Backoff {
                            until: Instant::now() + delay,
                            failures,
                        },
                    );
                }
                return Err(LoadError::new(error));
            }
        };
        let weight = (self.weigher)(key, &loaded.value);
        let lifetime = Lifetime {
            ttl: loaded.ttl.unwrap_or(self.params.default_ttl()),
            stale_while_revalidate: loaded
                .stale_while_revalidate
                .unwrap_or(self.params.stale_while_revalidate()),
            stale_if_error: loaded
                .stale_if_error
                .unwrap_or(self.params.stale_if_error()),
            keep_for_revalidation: loaded.keep_for_revalidation,
        };
        let value = loaded.value;
        let evicted = {
            let mut state = self.state.lock();
            if !state.finish_flight(key, ticket) {
                // Invalidated while loading: the value predates the purge.
                return Ok(value);
            }
            state.backoffs.remove(key);
            let entry = Entry {
                value: value.clone(),
                generation: state.generations.next(),
                stored_at: Instant::now(),
                lifetime,
            };
            let inserted = state.store.insert(key.clone(), entry, weight);
            bump(&self.counters.evictions, inserted.evictions);
            if !inserted.stored {
                bump(&self.counters.oversized, 1);
            }
            inserted.evicted
        };
        drop(evicted);
        Ok(value)
    }
}

/// Unregisters a fill whose task ends without finishing (the loader
/// panicked); disarmed by clearing `key`.
struct Abandon<'a, K: Hash + Eq + Clone, V: Clone> {
    shared: &'a Shared<K, V>,
    key: Option<&'a K>,
    ticket: Generation,
}

impl<K: Hash + Eq + Clone, V: Clone> Drop for Abandon<'_, K, V> {
    fn drop(&mut self) {
        if let Some(key) = self.key {
            self.shared.state.lock().finish_flight(key, self.ticket);
        }
    }
}

impl<K: Hash + Eq + Clone, V: Clone> fmt::Debug for RefreshingCache<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.shared.state.lock();
        f.debug_struct("RefreshingCache")
            .field("entries", &state.store.len())
            .field("weight", &state.store.weight())
            .field("fills", &state.flights.len())
            .field("params", &self.shared.params)
            .finish()
    }
}
