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

use std::sync::{Arc, Mutex, PoisonError};

use rustc_hash::FxHashMap;

use super::Compiled;
use super::dfa::{DEAD, Dfa};
use super::state::State;
use super::trie::Trie;
use crate::error::{Error, Result};

/// Per (terminal, DFA state): tokens that stay inside the lexeme, and the
/// trie ranges of tokens that reach the end of a lexeme.
#[derive(Debug)]
struct TokenSets {
    inside: Vec<u32>,
    ranges: Vec<(u32, u32)>,
}

/// A vocabulary prepared for masks: built once per tokenizer, shared by
/// every matcher (and every grammar) that uses it.
#[derive(Debug)]
pub struct TokenTable {
    tokens: Vec<Vec<u8>>,
    vocab_size: usize,
    eos: Vec<u32>,
    is_eos: Vec<bool>,
    trie: Trie,
    /// Token sets per terminal regex (so grammars with the same terminal
    /// share them) and DFA state.
    cache: Mutex<FxHashMap<String, FxHashMap<u32, Arc<TokenSets>>>>,
    /// Splits below trie nodes, per terminal regex, then (DFA state, node,
    /// a lexeme already ended).
    subtrees: Mutex<FxHashMap<String, SubtreeKeyed>>,
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
            tokens,
            vocab_size,
            eos: eos.to_vec(),
            is_eos,
            trie,
            cache: Mutex::new(FxHashMap::default()),
            subtrees: Mutex::new(FxHashMap::default()),
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

    /// Number of 32-bit words of a mask.
    pub fn mask_words(&self) -> usize {
        self.vocab_size.div_ceil(32)
    }

    fn sets(&self, pattern: &str, state: u32, dfa: &Dfa) -> Arc<TokenSets> {
        let cached = self
            .cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(pattern)
            .and_then(|m| m.get(&state).cloned());
        if let Some(s) = cached {
            return s;
        }
        let sets = Arc::new(self.compute_sets(dfa, state));
        self.cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(pattern.to_string())
            .or_default()
            .insert(state, Arc::clone(&sets));
        sets
    }

    /// Splits the vocabulary for a thread in DFA state `start`: tokens
    /// that keep the DFA alive to their last byte (the lexeme goes on, so
    /// the state stays viable whatever the parser holds) and subtrees of
    /// tokens that pass an accepting state and then leave the lexeme (the
    /// parser decides those). Tokens that die before any accepting state
    /// are in neither.
    fn compute_sets(&self, dfa: &Dfa, start: u32) -> TokenSets {
        let mut inside = vec![0u32; self.mask_words()];
        let ranges = self.split_subtree(dfa, start, 0, false, |id| set_bit(&mut inside, id));
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
        while i < stop {
            let d = t.depth[i] as usize - base;
            path.truncate(d);
            let (parent, passed) = path[d - 1];
            let s = dfa.next(parent, t.byte[i]);
            let end = t.end[i];
            if s == DEAD {
                if passed {
                    match ranges.last_mut() {
                        Some(last) if last.1 as usize == i => last.1 = end,
                        _ => ranges.push((u32::try_from(i).unwrap_or(u32::MAX), end)),
                    }
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
        ranges
    }

    /// Cached [`split_subtree`](Self::split_subtree) below `node`.
    fn subtree_sets(
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
const MIN_SUBTREE: usize = 48;

/// Most cached subtree splits (beyond it they are computed each time).
const MAX_SUBTREE_ENTRIES: usize = 50_000;

/// The split below one trie node: tokens that keep the thread alive, and
/// preorder ranges the parser must decide.
#[derive(Debug)]
struct SubtreeSets {
    alive: Vec<u32>,
    ranges: Vec<(u32, u32)>,
}

#[inline]
fn set_bit(mask: &mut [u32], id: u32) {
    mask[(id / 32) as usize] |= 1 << (id % 32);
}

/// Reusable buffers of one matcher's mask computation.
#[derive(Debug, Default, Clone)]
pub(crate) struct Scratch {
    ranges: Vec<(u32, u32)>,
    threads: Vec<(u32, u32)>,
}

/// Fills `mask` for `state` (ids of EOS excluded; the caller sets them).
pub(crate) fn fill(
    g: &Compiled,
    state: &mut State,
    table: &TokenTable,
    mask: &mut [u32],
    scratch: &mut Scratch,
) {
    mask.fill(0);
    scratch.ranges.clear();
    scratch.threads.clear();
    let mut full_walk = false;
    match state {
        State::Dyn(s) => scratch
            .threads
            .extend(s.threads().iter().map(|t| (t.term, t.state))),
        State::Py(s) => {
            full_walk = s.has_fallback();
            scratch.threads.extend_from_slice(s.threads());
        }
    }
    scratch.threads.sort_unstable();
    scratch.threads.dedup();
    if full_walk {
        scratch
            .ranges
            .push((1, u32::try_from(table.trie.len()).unwrap_or(u32::MAX)));
    } else {
        for &(term, st) in &scratch.threads {
            let Some(dfa) = g.dfa(term) else { continue };
            let sets = table.sets(&g.ir.terms[term as usize].pattern, st, dfa);
            let counts_inside = match (&*state, &g.python) {
                (State::Py(s), Some(py)) => s.acceptable(g, py, term),
                _ => true,
            };
            if counts_inside {
                for (m, w) in mask.iter_mut().zip(&sets.inside) {
                    *m |= *w;
                }
            }
            scratch.ranges.extend_from_slice(&sets.ranges);
        }
        merge(&mut scratch.ranges);
    }
    // Lexemes begun before this token are covered by the root's sets,
    // unless the full walk skipped them.
    let since = (!full_walk).then_some(state.len());
    walk(g, state, table, &scratch.ranges, since, mask);
}

fn merge(ranges: &mut Vec<(u32, u32)>) {
    ranges.sort_unstable();
    let mut out = 0;
    for i in 0..ranges.len() {
        if out > 0 && ranges[i].0 <= ranges[out - 1].1 {
            ranges[out - 1].1 = ranges[out - 1].1.max(ranges[i].1);
        } else {
            ranges[out] = ranges[i];
            out += 1;
        }
    }
    ranges.truncate(out);
}

/// Walks the trie nodes whose subtree meets `ranges`, feeding bytes to
/// `state`; sets the bit of every token inside `ranges` that keeps it viable.
fn walk(
    g: &Compiled,
    state: &mut State,
    table: &TokenTable,
    ranges: &[(u32, u32)],
    since: Option<usize>,
    mask: &mut [u32],
) {
    let base = state.len();
    let trie = &table.trie;
    let ctx = Walk {
        g,
        table,
        base,
        since,
    };
    walk_nodes(&ctx, state, ranges, (1, trie.len()), mask);
    state.truncate(base);
}

/// What stays fixed during one walk.
#[derive(Clone, Copy)]
struct Walk<'a> {
    g: &'a Compiled,
    table: &'a TokenTable,
    base: usize,
    since: Option<usize>,
}

/// [`walk`] over the nodes `span.0..span.1`. Where only one lexer thread
/// is left, inside a lexeme that began within the token (the root's sets
/// cover lexemes begun before), its cached split below the node marks the
/// tokens that stay in the lexeme and names the subtrees to walk on.
fn walk_nodes(
    ctx: &Walk<'_>,
    state: &mut State,
    ranges: &[(u32, u32)],
    span: (usize, usize),
    mask: &mut [u32],
) {
    let Walk {
        g,
        table,
        base,
        since,
    } = *ctx;
    let trie = &table.trie;
    let mut r = 0;
    let mut i = span.0;
    while i < span.1 {
        while r < ranges.len() && ranges[r].1 as usize <= i {
            r += 1;
        }
        let Some(&(lo, _)) = ranges.get(r) else { break };
        let end = trie.end[i] as usize;
        if lo as usize >= end {
            i = end;
            continue;
        }
        state.truncate(base + trie.depth[i] as usize - 1);
        if !state.push(g, trie.byte[i]) {
            i = end;
            continue;
        }
        if lo as usize <= i {
            for &id in trie.ids_at(i) {
                set_bit(mask, id);
            }
        }
        if end > i + MIN_SUBTREE
            && let Some((term, st, accepted)) = state.single_thread(g, since)
            && let Some(dfa) = g.dfa(term)
        {
            let sets = table.subtree_sets(&g.ir.terms[term as usize].pattern, st, i, accepted, dfa);
            for &id in &sets.alive {
                set_bit(mask, id);
            }
            walk_nodes(ctx, state, &sets.ranges, (i + 1, end), mask);
            i = end;
            continue;
        }
        i += 1;
    }
}
