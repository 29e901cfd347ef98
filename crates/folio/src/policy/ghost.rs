//! Ghost queues: bounded FIFO/LRU lists of page keys that have left the cache, with O(1) lookup
//! and removal by key. A slab of `capacity` slots threaded by an intrusive list, and a
//! [`KeyMap`] from key to slot; nothing is allocated after construction.

use super::hash::{map_bytes_bound, KeyMap};
use super::list::{Links, List, NIL};
use super::PageKey;

#[derive(Debug)]
pub(crate) struct Ghost {
    keys: Box<[PageKey]>,
    links: Links,
    list: List,
    free: Vec<u32>,
    map: KeyMap<u32>,
    capacity: usize,
}

impl Ghost {
    pub(crate) fn new(capacity: usize) -> Ghost {
        Ghost {
            keys: vec![0; capacity].into_boxed_slice(),
            links: Links::new(capacity),
            list: List::new(),
            free: (0..capacity as u32).rev().collect(),
            map: KeyMap::with_capacity_and_hasher(capacity, Default::default()),
            capacity,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.list.len
    }

    #[allow(dead_code)]
    pub(crate) fn contains(&self, key: PageKey) -> bool {
        self.map.contains_key(&key)
    }

    /// Remembers `key` as the newest entry, forgetting the oldest one if full. A key already
    /// present keeps its place (FIFO semantics).
    pub(crate) fn insert(&mut self, key: PageKey) {
        if self.capacity == 0 {
            return;
        }
        // Make room first, so that the common case (key absent) is one map probe; a key that
        // is already present keeps its place and the room made is simply left free.
        if self.free.is_empty() {
            self.pop_oldest();
        }
        if let std::collections::hash_map::Entry::Vacant(v) = self.map.entry(key) {
            let slot = self.free.pop().expect("a slot was freed");
            self.keys[slot as usize] = key;
            self.links.push_head(&mut self.list, slot);
            v.insert(slot);
        }
    }

    /// Forgets `key`; true if it was present.
    pub(crate) fn remove(&mut self, key: PageKey) -> bool {
        match self.map.remove(&key) {
            Some(slot) => {
                self.links.unlink(&mut self.list, slot);
                self.free.push(slot);
                true
            }
            None => false,
        }
    }

    /// Forgets the oldest key.
    pub(crate) fn pop_oldest(&mut self) -> Option<PageKey> {
        let slot = self.list.tail;
        if slot == NIL {
            return None;
        }
        let key = self.keys[slot as usize];
        self.links.unlink(&mut self.list, slot);
        self.free.push(slot);
        self.map.remove(&key);
        Some(key)
    }

    /// Upper bound on the bytes used, whatever the fill level.
    pub(crate) fn bytes(&self) -> usize {
        Self::bytes_for(self.capacity)
    }

    pub(crate) fn bytes_for(capacity: usize) -> usize {
        // key + two links + free-list slot, and the map.
        capacity * (8 + Links::BYTES_PER_FRAME + 4) + map_bytes_bound::<u32>(capacity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_bounded() {
        let mut g = Ghost::new(3);
        for k in 0..5 {
            g.insert(k);
        }
        assert_eq!(g.len(), 3);
        assert!(!g.contains(1) && g.contains(2) && g.contains(4));
        assert!(g.remove(3));
        assert!(!g.remove(3));
        g.insert(7);
        g.insert(8);
        assert!(!g.contains(2) && g.contains(4) && g.contains(8));
        assert_eq!(g.pop_oldest(), Some(4));
    }
}
