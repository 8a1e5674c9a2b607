//! The word cache of the BPE model: word -> ids, shared by all threads.
//!
//! Sharded by the word's hash so that threads encoding a batch rarely wait
//! on one another, and so that the cache keeps filling while other threads
//! read it (a single lock would let readers starve the writers). Bounded:
//! a full shard stops growing. A poisoned shard (a panic while it was held)
//! is treated as empty.

use std::hash::{BuildHasher, Hash};
use std::sync::RwLock;

use rustc_hash::{FxBuildHasher, FxHashMap};

const SHARDS: usize = 64;

/// A bounded, sharded map from words to their ids.
#[derive(Debug)]
pub struct WordCache<K> {
    shards: Vec<RwLock<FxHashMap<K, Vec<u32>>>>,
    shard_capacity: usize,
}

impl<K: Hash + Eq> WordCache<K> {
    /// A cache holding about `capacity` words at most.
    pub fn new(capacity: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            shard_capacity: capacity.div_ceil(SHARDS),
        }
    }

    fn shard<Q: Hash + ?Sized>(&self, key: &Q) -> &RwLock<FxHashMap<K, Vec<u32>>> {
        let hash = FxBuildHasher.hash_one(key);
        // The high bits: Fx's low bits are weak for short keys.
        let index = usize::try_from(hash >> 58).unwrap_or(0) % SHARDS;
        &self.shards[index]
    }

    /// Appends the cached ids of `key` to `out`; `false` on a miss.
    pub fn extend_into<Q>(&self, key: &Q, out: &mut Vec<u32>) -> bool
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let Ok(shard) = self.shard(key).read() else {
            return false;
        };
        match shard.get(key) {
            Some(ids) => {
                out.extend_from_slice(ids);
                true
            }
            None => false,
        }
    }

    /// Remembers the ids of `key` unless its shard is full.
    pub fn insert<Q>(&self, key: &Q, ids: &[u32])
    where
        K: std::borrow::Borrow<Q> + for<'a> From<&'a Q>,
        Q: Hash + Eq + ?Sized,
    {
        if let Ok(mut shard) = self.shard(key).write() {
            if shard.len() < self.shard_capacity {
                shard.insert(K::from(key), ids.to_vec());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_until_full() {
        let cache: WordCache<Box<[u8]>> = WordCache::new(SHARDS);
        let mut out = Vec::new();
        assert!(!cache.extend_into(b"ab".as_slice(), &mut out));
        cache.insert(b"ab".as_slice(), &[1, 2]);
        assert!(cache.extend_into(b"ab".as_slice(), &mut out));
        assert_eq!(out, [1, 2]);
        // One word per shard: a second word in the same shard is dropped.
        let words: Vec<Vec<u8>> = (0..1000u32).map(|i| i.to_le_bytes().to_vec()).collect();
        for w in &words {
            cache.insert(w.as_slice(), &[7]);
        }
        let kept = words
            .iter()
            .filter(|w| cache.extend_into(w.as_slice(), &mut Vec::new()))
            .count();
        assert!(kept < SHARDS, "{kept}");
    }
}
