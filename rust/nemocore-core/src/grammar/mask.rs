//! Token masks: which vocabulary tokens keep the input viable.
//!
//! The mask is split as xgrammar splits it (context-independent and
//! context-dependent tokens). For every lexer thread (terminal `t` in DFA
//! state `s`), the tokens whose bytes keep `t`'s DFA alive to their last
//! byte are allowed whatever the parser holds (the lexeme simply goes on,
//! and a live thread is always viable): that bitset is computed once per
//! `(t, s)` and cached in the [`TokenTable`]. Tokens that pass an accepting
//! state of some thread and then leave its lexeme form trie subtrees
//! (cached as preorder ranges); only those are checked by walking the trie
//! with the real parse state, pushing a byte when descending and truncating
//! when ascending (the state is append-only, so truncation is the undo
//! log). Every other token kills every thread before any lexeme ends and
//! is disallowed.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use rustc_hash::FxHashMap;

use super::Grammar;
use super::dfa::{DEAD, Dfa};
use super::explore;
use super::state::State;
use super::trie::Trie;
use super::walk::{self, Scratch};
use crate::error::{Error, Result};

/// Per (terminal, DFA state): tokens that stay inside the lexeme, and the
/// trie ranges of tokens that reach the end of a lexeme.
#[derive(Debug)]
pub(crate) struct TokenSets {
    pub(crate) inside: Vec<u32>,
    pub(crate) ranges: Vec<(u32, u32)>,
}

/// A vocabulary prepared for masks: built once per tokenizer, shared by
/// every matcher (and every grammar) that uses it.
#[derive(Debug)]
pub struct TokenTable {
    /// Unique per table made in this process (memoised masks are per table).
    pub(crate) id: u64,
    tokens: Vec<Vec<u8>>,
    vocab_size: usize,
    eos: Vec<u32>,
    is_eos: Vec<bool>,
    pub(crate) trie: Trie,
    /// Token sets per terminal regex (so grammars with the same terminal
    /// share them) and DFA state.
    cache: Mutex<FxHashMap<String, FxHashMap<u32, Arc<TokenSets>>>>,
    /// Splits below trie nodes, per terminal regex, then (DFA state, node,
    /// a lexeme already ended).
    subtrees: Mutex<FxHashMap<String, SubtreeKeyed>>,
    /// Per first byte: the tokens starting with it (bitsets, built on first use).
    first_byte_masks: OnceLock<Vec<Vec<u32>>>,
    /// Trie nodes visited by lazily computed token sets (a measure of that
    /// work, for compile-time budgets).
    lazy_nodes: AtomicUsize,
}

type SubtreeKeyed = FxHashMap<(u32, u32, bool), Arc<SubtreeSets>>;

impl TokenTable {
    /// `tokens[i]` = bytes of token id `i` (empty for ids with no bytes);
    /// `special` ids are never allowed; `eos` ids are allowed iff the
    /// matcher can terminate; `vocab_size >= tokens.len()` (the model's
    /// vocabulary; ids past the tokenizer are always disallowed).
    pub fn new(
        tokens: Vec<Vec<u8>>,
        special: &[u32],
        eos: &[u32],
        vocab_size: usize,
    ) -> Result<TokenTable> {
        if vocab_size < tokens.len() {
            return Err(Error::invalid_argument(format!(
                "vocab_size {vocab_size} is smaller than the {} tokens given; pass the model's vocabulary size",
                tokens.len()
            )));
        }
        if u32::try_from(vocab_size).is_err() {
            return Err(Error::invalid_argument("vocab_size must fit in 32 bits"));
        }
        let mut excluded = vec![false; tokens.len()];
        let mut is_eos = vec![false; vocab_size];
        for (what, ids) in [("special", special), ("eos", eos)] {
            for &id in ids {
                let Some(x) = excluded.get_mut(id as usize) else {
                    return Err(Error::invalid_argument(format!(
                        "{what} token id {id} is out of range (the table has {} tokens)",
                        tokens.len()
                    )));
                };
                *x = true;
            }
        }
        for &id in eos {
            is_eos[id as usize] = true;
        }
        let trie = {
            let entries: Vec<(&[u8], u32)> = tokens
                .iter()
                .enumerate()
                .filter(|(i, b)| !b.is_empty() && !excluded[*i])
                .filter_map(|(i, b)| Some((b.as_slice(), u32::try_from(i).ok()?)))
                .collect();
            Trie::new(entries)
        };
        Ok(TokenTable {
            id: NEXT_TABLE_ID.fetch_add(1, Ordering::Relaxed),
            tokens,
            vocab_size,
            eos: eos.to_vec(),
            is_eos,
            trie,
            cache: Mutex::new(FxHashMap::default()),
            subtrees: Mutex::new(FxHashMap::default()),
            first_byte_masks: OnceLock::new(),
            lazy_nodes: AtomicUsize::new(0),
        })
    }

    /// The model's vocabulary size (mask length in bits).
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// Bytes of token `id` (`None` past the tokenizer's tokens).
    pub fn token_bytes(&self, id: u32) -> Option<&[u8]> {
        self.tokens.get(id as usize).map(Vec::as_slice)
    }

    /// Whether `id` is an end-of-sequence token.
    pub fn is_eos(&self, id: u32) -> bool {
        self.is_eos.get(id as usize).copied().unwrap_or(false)
    }

    /// The end-of-sequence token ids.
    pub fn eos_ids(&self) -> &[u32] {
        &self.eos
    }

    /// The tokens whose first byte is `byte` (a mask).
    pub(crate) fn first_byte_mask(&self, byte: u8) -> &[u32] {
        let masks = self.first_byte_masks.get_or_init(|| {
            let mut masks = vec![vec![0u32; self.mask_words()]; 256];
            let mut node = 1;
            while node < self.trie.len() {
                let end = self.trie.end[node] as usize;
                let m = &mut masks[self.trie.byte[node] as usize];
                for i in node..end {
                    for &id in self.trie.ids_at(i) {
                        set_bit(m, id);
                    }
                }
                node = end;
            }
            masks
        });
        &masks[byte as usize]
    }

    /// Number of 32-bit words of a mask.
    pub fn mask_words(&self) -> usize {
        self.vocab_size.div_ceil(32)
    }

    /// The token sets of a thread of terminal `pattern` in DFA state
    /// `state` (see [`compute_sets`](Self::compute_sets)); with `ended`, a
    /// shorter lexeme already ended (Python mode's fallback), so every
    /// death of the thread is for the parser to decide.
    pub(crate) fn sets(&self, pattern: &str, state: u32, ended: bool, dfa: &Dfa) -> Arc<TokenSets> {
        let key = sets_key(state, ended);
        let cached = self
            .cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(pattern)
            .and_then(|m| m.get(&key).cloned());
        if let Some(s) = cached {
            return s;
        }
        let sets = Arc::new(self.compute_sets(dfa, state, ended));
        self.cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(pattern.to_string())
            .or_default()
            .insert(key, Arc::clone(&sets));
        sets
    }

    /// Trie nodes visited so far by token sets computed lazily (by masks
    /// rather than by [`prepare`](Self::prepare)).
    pub(crate) fn lazy_nodes(&self) -> usize {
        self.lazy_nodes.load(Ordering::Relaxed)
    }

    /// Whether the token sets of a thread of terminal `pattern` in DFA
    /// state `state` are computed already (see [`sets`](Self::sets)).
    pub(crate) fn has_sets(&self, pattern: &str, state: u32) -> bool {
        self.cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(pattern)
            .is_some_and(|m| m.contains_key(&sets_key(state, false)))
    }

    /// Computes ahead of time the token sets of every state of every
    /// terminal of `grammar` (those of terminals with more than
    /// [`MAX_PREPARED_STATES`] states, and past [`MAX_PREPARED_TOTAL`] in
    /// all, stay lazy), so that masks rarely
    /// meet an uncached lexer state: the context-independent half of every
    /// mask, as xgrammar's compiler builds it; then the first mask of every
    /// generation (the empty text's). Work items (a terminal and
    /// up to [`PREPARE_CHUNK`] of its states, one trie walk each) are
    /// spread over up to [`MAX_PREPARE_THREADS`] threads.
    pub fn prepare(&self, grammar: &Grammar) {
        let mut todo: Vec<(&str, &Dfa, Vec<u32>)> = Vec::new();
        let mut work: Vec<(&str, &Dfa, Vec<u32>)> = Vec::new();
        {
            let cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
            for term in &grammar.compiled.ir.terms {
                let Some(dfa) = &term.dfa else { continue };
                if dfa.num_states() > MAX_PREPARED_STATES {
                    continue;
                }
                let have = cache.get(&term.pattern);
                // Python mode also meets threads after a fallback lexeme.
                let variants: &[bool] = if grammar.compiled.python.is_some() {
                    &[false, true]
                } else {
                    &[false]
                };
                let missing: Vec<u32> = (0..dfa.num_states())
                    .filter_map(|s| u32::try_from(s).ok())
                    .flat_map(|s| variants.iter().map(move |&e| sets_key(s, e)))
                    .filter(|k| have.is_none_or(|m| !m.contains_key(k)))
                    .collect();
                todo.push((&term.pattern, dfa, missing));
            }
        }
        // Small terminals first, within a budget: a huge `{m,n}` stays lazy
        // rather than making compile time seconds.
        todo.sort_by_key(|t| t.2.len());
        todo.dedup_by(|a, b| a.0 == b.0);
        let mut budget = MAX_PREPARED_TOTAL;
        for (pattern, dfa, missing) in todo {
            if missing.len() > budget {
                break;
            }
            budget -= missing.len();
            for chunk in missing.chunks(PREPARE_CHUNK) {
                work.push((pattern, dfa, chunk.to_vec()));
            }
        }
        let next = AtomicUsize::new(0);
        let run = || {
            let mut done = Vec::new();
            while let Some((pattern, dfa, states)) = work.get(next.fetch_add(1, Ordering::Relaxed))
            {
                done.push((*pattern, states, self.compute_all_sets(dfa, states)));
            }
            done
        };
        let threads = std::thread::available_parallelism()
            .map_or(1, usize::from)
            .clamp(1, MAX_PREPARE_THREADS)
            .min(work.len());
        let results: Vec<_> = if threads <= 1 {
            run()
        } else {
            std::thread::scope(|scope| {
                let handles: Vec<_> = (0..threads).map(|_| scope.spawn(run)).collect();
                // A panicking worker loses only its share (computed lazily later).
                handles
                    .into_iter()
                    .filter_map(|h| h.join().ok())
                    .flatten()
                    .collect()
            })
        };
        {
            let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
            for (pattern, states, sets) in results {
                let entry = cache.entry(pattern.to_string()).or_default();
                for (&s, sets) in states.iter().zip(sets) {
                    entry.entry(s).or_insert_with(|| Arc::new(sets));
                }
            }
        }
        // Python-mode masks split tokens by first byte (`fallback.rs`).
        if grammar.compiled.python.is_some() {
            self.first_byte_mask(0);
        }
        // The masks of the states generations will meet (`explore.rs`), or
        // at least the first mask of every generation (the empty text's).
        let g = &grammar.compiled;
        if explore::explore(g, self, explore::MAX_EXPLORED) == 0 {
            let mut mask = vec![0u32; self.mask_words()];
            let mut state = State::new(g);
            walk::fill(
                g,
                &mut state,
                None,
                self,
                &mut mask,
                &mut Scratch::default(),
            );
        }
    }

    /// [`compute_sets`](Self::compute_sets) for many starts (keys of
    /// [`sets_key`]) in one walk: each trie node advances the starts still
    /// alive on its path.
    fn compute_all_sets(&self, dfa: &Dfa, starts: &[u32]) -> Vec<TokenSets> {
        debug_assert!(starts.len() <= PREPARE_CHUNK);
        let trie = &self.trie;
        let mut out: Vec<TokenSets> = starts
            .iter()
            .map(|_| TokenSets {
                inside: vec![0u32; self.mask_words()],
                ranges: Vec::new(),
            })
            .collect();
        // Per depth of the current path: each start's DFA state, and bit
        // masks of the starts still alive and of those that passed an
        // accepting state (every death of those is for the parser).
        let mut level = vec![Level::default()];
        for (k, &key) in starts.iter().enumerate() {
            level[0].state[k] = key & !ENDED;
            level[0].alive |= 1 << k;
            level[0].passed |= u32::from(key & ENDED != 0) << k;
        }
        let mut node = 1;
        while node < trie.len() {
            let depth = trie.depth[node] as usize;
            let (byte, end) = (trie.byte[node], trie.end[node]);
            if level.len() <= depth {
                level.resize_with(depth + 1, Level::default);
            }
            let (above, below) = level.split_at_mut(depth);
            let (parent, here) = (&above[depth - 1], &mut below[0]);
            here.alive = 0;
            here.passed = 0;
            let mut bits = parent.alive;
            while bits != 0 {
                let k = bits.trailing_zeros() as usize;
                bits &= bits - 1;
                let next = dfa.next(parent.state[k], byte);
                if next == DEAD {
                    if parent.passed >> k & 1 == 1 {
                        push_range(&mut out[k].ranges, node, end);
                    }
                    continue;
                }
                here.state[k] = next;
                here.alive |= 1 << k;
                here.passed |= (parent.passed >> k & 1 | u32::from(dfa.is_accepting(next))) << k;
            }
            if here.alive == 0 {
                node = end as usize;
                continue;
            }
            for &id in trie.ids_at(node) {
                let mut bits = here.alive;
                while bits != 0 {
                    let k = bits.trailing_zeros() as usize;
                    bits &= bits - 1;
                    set_bit(&mut out[k].inside, id);
                }
            }
            node += 1;
        }
        out
    }

    /// Splits the vocabulary for a thread in DFA state `start`: tokens
    /// that keep the DFA alive to their last byte (the lexeme goes on, so
    /// the state stays viable whatever the parser holds) and subtrees of
    /// tokens that pass an accepting state and then leave the lexeme (the
    /// parser decides those). Tokens that die before any accepting state
    /// are in neither (with `ended`, in the ranges too).
    fn compute_sets(&self, dfa: &Dfa, start: u32, ended: bool) -> TokenSets {
        let mut inside = vec![0u32; self.mask_words()];
        let ranges = self.split_subtree(dfa, start, 0, ended, |id| set_bit(&mut inside, id));
        TokenSets { inside, ranges }
    }

    /// The split of [`compute_sets`](Self::compute_sets) for the tokens
    /// below trie node `root` (their bytes after `root`'s), calling
    /// `alive` for those that keep the DFA alive; with `accepted`, a
    /// lexeme already ended at `root`, so every death is for the parser.
    fn split_subtree(
        &self,
        dfa: &Dfa,
        start: u32,
        root: usize,
        accepted: bool,
        mut alive: impl FnMut(u32),
    ) -> Vec<(u32, u32)> {
        let t = &self.trie;
        let base = t.depth[root] as usize;
        let stop = t.end[root] as usize;
        let mut ranges: Vec<(u32, u32)> = Vec::new();
        // (state, an accepting state was passed on the path) per depth.
        let mut path = vec![(start, accepted)];
        let mut i = root + 1;
        let mut visited = 0;
        while i < stop {
            visited += 1;
            let d = t.depth[i] as usize - base;
            path.truncate(d);
            let (parent, passed) = path[d - 1];
            let s = dfa.next(parent, t.byte[i]);
            let end = t.end[i];
            if s == DEAD {
                if passed {
                    push_range(&mut ranges, i, end);
                }
                i = end as usize;
                continue;
            }
            for &id in t.ids_at(i) {
                alive(id);
            }
            path.push((s, passed || dfa.is_accepting(s)));
            i += 1;
        }
        self.lazy_nodes.fetch_add(visited, Ordering::Relaxed);
        ranges
    }

    /// Cached [`split_subtree`](Self::split_subtree) below `node`.
    pub(crate) fn subtree_sets(
        &self,
        pattern: &str,
        state: u32,
        node: usize,
        accepted: bool,
        dfa: &Dfa,
    ) -> Arc<SubtreeSets> {
        let key = (state, u32::try_from(node).unwrap_or(u32::MAX), accepted);
        let cached = self
            .subtrees
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(pattern)
            .and_then(|m| m.get(&key).cloned());
        if let Some(s) = cached {
            return s;
        }
        let mut ids = Vec::new();
        let ranges = self.split_subtree(dfa, state, node, accepted, |id| ids.push(id));
        let sets = Arc::new(SubtreeSets { alive: ids, ranges });
        let mut cache = self.subtrees.lock().unwrap_or_else(PoisonError::into_inner);
        let entries: usize = cache.values().map(FxHashMap::len).sum();
        if entries < MAX_SUBTREE_ENTRIES {
            cache
                .entry(pattern.to_string())
                .or_default()
                .insert(key, Arc::clone(&sets));
        }
        sets
    }
}

/// Subtrees with fewer nodes are walked instead of looked up.
pub(crate) const MIN_SUBTREE: usize = 48;

/// Most cached subtree splits (beyond it they are computed each time).
const MAX_SUBTREE_ENTRIES: usize = 50_000;

/// The split below one trie node: tokens that keep the thread alive, and
/// preorder ranges the parser must decide.
#[derive(Debug)]
pub(crate) struct SubtreeSets {
    pub(crate) alive: Vec<u32>,
    pub(crate) ranges: Vec<(u32, u32)>,
}

/// One depth of [`TokenTable::compute_all_sets`]'s walk (up to 32 starts).
#[derive(Clone, Copy, Default)]
struct Level {
    state: [u32; PREPARE_CHUNK],
    alive: u32,
    passed: u32,
}

/// Ids of token tables (memoised masks are per table).
static NEXT_TABLE_ID: AtomicU64 = AtomicU64::new(0);

/// Most DFA states of one terminal that [`TokenTable::prepare`] computes.
const MAX_PREPARED_STATES: usize = 2048;
/// Most token sets one [`TokenTable::prepare`] computes (DFA states, and
/// their after-fallback variants in Python mode).
const MAX_PREPARED_TOTAL: usize = 8192;
/// DFA states per work item (trie walk) of [`TokenTable::prepare`]: the
/// bits of a `u32` mask.
const PREPARE_CHUNK: usize = 32;
/// Most threads [`TokenTable::prepare`] runs on (xgrammar's default too).
const MAX_PREPARE_THREADS: usize = 8;

/// Tags a [`TokenTable`] cache key of a thread after a fallback lexeme.
const ENDED: u32 = 1 << 31;

/// The cache key of the token sets of DFA state `state` (`ended`: see
/// [`TokenTable::sets`]).
fn sets_key(state: u32, ended: bool) -> u32 {
    if ended { state | ENDED } else { state }
}

/// Appends the preorder range `i..end`, joining it to the last if adjacent.
fn push_range(ranges: &mut Vec<(u32, u32)>, i: usize, end: u32) {
    match ranges.last_mut() {
        Some(last) if last.1 as usize == i => last.1 = end,
        _ => ranges.push((u32::try_from(i).unwrap_or(u32::MAX), end)),
    }
}

#[inline]
pub(crate) fn set_bit(mask: &mut [u32], id: u32) {
    mask[(id / 32) as usize] |= 1 << (id % 32);
}
