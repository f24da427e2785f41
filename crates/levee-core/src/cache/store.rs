//! Bounded storage: a weighted LRU map with generation-checked removal.
//!
//! Written by hand rather than taken from `moka` or `quick_cache`, because
//! the cache's rules need three things those crates do not give together:
//! expiry on `tokio::time::Instant` (moka keeps its own clock, which paused
//! test time cannot move), a weight that never exceeds `max_size` even for a
//! moment (moka evicts in deferred maintenance), and a compare-generation-then-
//! store/remove that is atomic with the table of fills in flight (one lock
//! over both; with an external map it would take two). The structure is small:
//! a hash map plus a `BTreeMap` ordered by last use, O(log n) per access.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;

use tokio::time::Instant;

use super::Generation;
use super::entry::{Entry, Freshness};

/// A stored entry with its bookkeeping.
#[derive(Debug)]
struct Slot<V> {
    entry: Entry<V>,
    /// What the weigher said when it was stored.
    weight: u64,
    /// Its key in `recency`.
    last_used: u64,
}

/// What [`Store::insert`] did.
#[derive(Debug)]
pub(super) struct Inserted<V> {
    /// False when the value alone weighs more than `max_size`.
    pub(super) stored: bool,
    /// Entries pushed out for room (not counting the replaced one).
    pub(super) evictions: u64,
    /// Every value taken out (evicted or replaced), to be dropped outside
    /// the lock.
    pub(super) evicted: Vec<V>,
}

/// A weighted LRU map: total weight never exceeds `max_size`.
#[derive(Debug)]
pub(super) struct Store<K, V> {
    slots: HashMap<K, Slot<V>>,
    /// Last-use tick → key, least recently used first.
    recency: BTreeMap<u64, K>,
    /// Ticks only go up, so recency order is use order.
    tick: u64,
    weight: u64,
    max_size: u64,
}

impl<K: Hash + Eq + Clone, V: Clone> Store<K, V> {
    pub(super) fn new(max_size: u64) -> Store<K, V> {
        Store {
            slots: HashMap::new(),
            recency: BTreeMap::new(),
            tick: 0,
            weight: 0,
            max_size,
        }
    }

    /// The value and where it stands at `now`, marking it recently used.
    /// An expired entry is removed here, under the same lock that saw it
    /// expire, and reported as missing.
    pub(super) fn lookup(&mut self, key: &K, now: Instant) -> Option<(V, Freshness)> {
        let slot = self.slots.get_mut(key)?;
        let freshness = slot.entry.freshness(now);
        if freshness == Freshness::Expired {
            self.remove(key);
            return None;
        }
        self.tick += 1;
        self.recency.remove(&slot.last_used);
        slot.last_used = self.tick;
        self.recency.insert(self.tick, key.clone());
        Some((slot.entry.value.clone(), freshness))
    }

    /// The generation of the stored entry, without touching recency.
    pub(super) fn generation(&self, key: &K) -> Option<Generation> {
        self.slots.get(key).map(|slot| slot.entry.generation)
    }

    /// Stores `entry` (replacing any older one), then evicts least recently
    /// used entries until the total fits.
    pub(super) fn insert(&mut self, key: K, entry: Entry<V>, weight: u64) -> Inserted<V> {
        let mut evicted: Vec<V> = self.remove(&key).into_iter().collect();
        if weight > self.max_size {
            // The old value is outdated by this one, so it goes too.
            return Inserted {
                stored: false,
                evictions: 0,
                evicted,
            };
        }
        // The replaced value is not an eviction.
        let replaced = evicted.len();
        while self.weight.saturating_add(weight) > self.max_size {
            let Some((_, oldest)) = self.recency.pop_first() else {
                break;
            };
            if let Some(slot) = self.slots.remove(&oldest) {
                self.weight -= slot.weight;
                evicted.push(slot.entry.value);
            }
        }
        self.tick += 1;
        self.recency.insert(self.tick, key.clone());
        self.slots.insert(
            key,
            Slot {
                entry,
                weight,
                last_used: self.tick,
            },
        );
        self.weight += weight;
        Inserted {
            stored: true,
            evictions: (evicted.len() - replaced) as u64,
            evicted,
        }
    }

    /// Removes the entry whatever its generation.
    pub(super) fn remove(&mut self, key: &K) -> Option<V> {
        let slot = self.slots.remove(key)?;
        self.recency.remove(&slot.last_used);
        self.weight -= slot.weight;
        Some(slot.entry.value)
    }

    /// Removes the entry only if its generation is `generation` or older.
    pub(super) fn remove_if_not_newer(&mut self, key: &K, generation: Generation) -> Option<V> {
        match self.slots.get(key) {
            Some(slot) if slot.entry.generation <= generation => self.remove(key),
            _ => None,
        }
    }

    /// Removes every entry whose key matches.
    pub(super) fn remove_where(&mut self, mut matches: impl FnMut(&K) -> bool) -> Vec<V> {
        let keys: Vec<K> = self.slots.keys().filter(|k| matches(k)).cloned().collect();
        keys.iter().filter_map(|k| self.remove(k)).collect()
    }

    pub(super) fn len(&self) -> usize {
        self.slots.len()
    }

    pub(super) fn weight(&self) -> u64 {
        self.weight
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::entry::Lifetime;
    use super::*;

    fn entry(value: u32, generation: u64) -> Entry<u32> {
        Entry {
            value,
            generation: Generation(generation),
            stored_at: Instant::now(),
            lifetime: Lifetime {
                ttl: Duration::from_secs(10),
                stale_while_revalidate: Duration::ZERO,
                stale_if_error: Duration::ZERO,
                keep_for_revalidation: Duration::ZERO,
            },
        }
    }

    #[tokio::test(start_paused = true)]
    async fn weight_never_exceeds_max_size() {
        let mut store = Store::new(100);
        for i in 0..50u32 {
            store.insert(i, entry(i, u64::from(i)), 30);
            assert!(store.weight() <= 100, "weight {}", store.weight());
        }
        assert_eq!(store.len(), 3);
        assert_eq!(store.weight(), 90);
    }

    #[tokio::test(start_paused = true)]
    async fn evicts_the_least_recently_used() {
        let now = Instant::now();
        let mut store = Store::new(30);
        store.insert("a", entry(1, 1), 10);
        store.insert("b", entry(2, 2), 10);
        store.insert("c", entry(3, 3), 10);
        // Using "a" makes "b" the oldest.
        assert!(store.lookup(&"a", now).is_some());
        let inserted = store.insert("d", entry(4, 4), 10);
        assert_eq!(inserted.evicted, vec![2]);
        assert_eq!(inserted.evictions, 1);
        assert!(store.lookup(&"b", now).is_none());
        assert!(store.lookup(&"a", now).is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn a_value_heavier_than_the_cache_is_not_stored() {
        let mut store = Store::new(10);
        store.insert("a", entry(1, 1), 5);
        let inserted = store.insert("a", entry(2, 2), 11);
        assert!(!inserted.stored);
        assert_eq!(inserted.evicted, vec![1]);
        assert_eq!((store.len(), store.weight()), (0, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn replacing_adjusts_the_weight() {
        let mut store = Store::new(100);
        store.insert("a", entry(1, 1), 40);
        let inserted = store.insert("a", entry(2, 2), 70);
        assert!(inserted.stored);
        assert_eq!(inserted.evictions, 0);
        assert_eq!((store.len(), store.weight()), (1, 70));
        assert_eq!(store.generation(&"a"), Some(Generation(2)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_purge_never_removes_a_newer_generation() {
        let mut store = Store::new(100);
        store.insert("a", entry(1, 5), 1);
        assert_eq!(store.remove_if_not_newer(&"a", Generation(4)), None);
        assert_eq!(store.generation(&"a"), Some(Generation(5)));
        assert_eq!(store.remove_if_not_newer(&"a", Generation(5)), Some(1));
        assert_eq!(store.generation(&"a"), None);
    }

    #[tokio::test(start_paused = true)]
    async fn expired_entries_are_removed_on_lookup() {
        let mut store = Store::new(100);
        store.insert("a", entry(1, 1), 10);
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(store.lookup(&"a", Instant::now()).is_none());
        assert_eq!((store.len(), store.weight()), (0, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn remove_where_takes_only_matches() {
        let mut store = Store::new(100);
        store.insert("/a/1", entry(1, 1), 1);
        store.insert("/a/2", entry(2, 2), 1);
        store.insert("/b/1", entry(3, 3), 1);
        let mut removed = store.remove_where(|k| k.starts_with("/a/"));
        removed.sort_unstable();
        assert_eq!(removed, vec![1, 2]);
        assert_eq!((store.len(), store.weight()), (1, 1));
    }
}
