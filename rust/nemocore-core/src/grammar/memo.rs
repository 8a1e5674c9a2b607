//! Memoised parse states: whole masks, and a lazily built automaton over
//! states for the token-trie walk.
//!
//! Two parse states whose futures are the same get the same mask, and the
//! same state after any byte. The future of a dynamic state depends on its
//! columns only through the items they hold and, recursively, the columns
//! those items began in (scans, completions and ignored lexemes read
//! `cols[origin]`; nothing reads a column's position). Hash-consing that
//! structure gives every column a *signature*: equal for two columns iff
//! their items, predictions and acceptance are equal with every origin
//! replaced by the origin column's signature (completed items, which
//! nothing reads again, left out). A state is then named by its
//! last column's signature and its live lexer threads `(terminal, DFA
//! state, signature of the column the lexeme began in)`: equal names mean
//! equal futures, without approximation. Interned names are *state ids*.
//! (A Python-mode state adds its pending lexeme, brackets and indentation
//! stack to the name, see `PyState::state_id`.)
//!
//! - Masks are memoised per (token table, state id): inside the third
//!   record of a JSON array the states have the second record's ids.
//! - Transitions `(state id, byte) -> state id` are memoised too, so the
//!   trie walk of a new state mostly looks bytes up instead of running the
//!   parser: after `"a"` and after `"b"` the parser is in the same state,
//!   and the bytes that follow each are looked up once.
//!
//! Everything is per grammar, shared by its matchers, and bounded: when a
//! fill could overflow the budget the memo is reset (a new epoch, which
//! invalidates the signatures cached in the states).

use std::sync::{Arc, Mutex, PoisonError};

use rustc_hash::{FxHashMap, FxHashSet};

use super::earley::{Chart, NONE, Tables};

/// Cached signature of a column not computed yet.
pub(crate) const UNKNOWN: u32 = u32::MAX;
/// The state id of a non-viable input.
pub(crate) const DEAD_STATE: u32 = u32::MAX;
/// A viable transition whose target state was not named (it led to a
/// trie leaf, where only viability matters).
pub(crate) const VIABLE: u32 = u32::MAX - 3;
/// Stands for "this column" as an origin inside its own signature.
const SELF: u32 = u32::MAX - 1;

/// Most entries (signatures, states, transitions) per grammar.
const MAX_ENTRIES: usize = 1 << 21;
/// Most mask bytes kept per grammar before they are dropped.
const MAX_MASK_BYTES: usize = 32 << 20;

/// The memo of one grammar.
#[derive(Debug, Default)]
pub(crate) struct MaskMemo {
    inner: Mutex<MemoInner>,
}

impl MaskMemo {
    /// Runs `f` with the memo locked (fills on one grammar serialise).
    pub(crate) fn with<T>(&self, f: impl FnOnce(&mut MemoInner) -> T) -> T {
        f(&mut self.inner.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

#[derive(Debug, Default)]
pub(crate) struct MemoInner {
    signatures: FxHashMap<Box<[u32]>, u32>,
    states: FxHashMap<Box<[u32]>, u32>,
    /// Per state id: its only lexer thread whose continuation alone
    /// decides `(terminal, DFA state, a lexeme already ended)`, if one.
    single: Vec<Option<(u32, u32, bool)>>,
    /// Per state id: its only lexer thread that has read bytes `(terminal,
    /// DFA state)` (the others were predicted at the last byte), if one.
    main: Vec<Option<(u32, u32)>>,
    /// Per state id: `byte -> (state id, a lexeme ended on the byte)`.
    transitions: Vec<Row>,
    /// Transitions recorded in `transitions`.
    n_transitions: usize,
    /// Keyed by (token table id, state id); states with equal masks
    /// share one (most do: every position inside a string has the same).
    masks: FxHashMap<(u64, u32), Arc<[u32]>>,
    /// The distinct masks in `masks`.
    distinct: FxHashSet<Arc<[u32]>>,
    /// Python mode, per (token table, terminals the parser takes after a
    /// lexeme): those terminals' start-state tokens and trie ranges.
    fresh: FxHashMap<(u64, Box<[u32]>), Arc<FreshSets>>,
    mask_bytes: usize,
    epoch: u32,
    /// Scratch for building a signature.
    buf: Vec<u32>,
    pairs: Vec<(u32, u32)>,
}

/// The signatures of a state's first chart columns (computed lazily,
/// valid for one epoch of the memo); truncate them with the chart.
#[derive(Debug, Clone, Default)]
pub(crate) struct ColumnSignatures {
    sigs: Vec<u32>,
    epoch: u32,
}

impl ColumnSignatures {
    /// Signs the columns of `chart` not signed yet (all of them after a
    /// memo reset) and returns every column's signature.
    pub(crate) fn update(
        &mut self,
        memo: &mut MemoInner,
        chart: &Chart,
        tables: &Tables,
    ) -> &[u32] {
        if self.epoch != memo.epoch() {
            self.sigs.clear();
            self.epoch = memo.epoch();
        }
        while self.sigs.len() < chart.len() {
            let here = self.sigs.len();
            let view = chart.view(tables, here);
            let sig =
                memo.column_signature(&view, u32::try_from(here).unwrap_or(UNKNOWN), &self.sigs);
            self.sigs.push(sig);
        }
        &self.sigs
    }

    /// Forgets the signatures of columns `n..` (the chart was truncated).
    pub(crate) fn truncate(&mut self, n: usize) {
        self.sigs.truncate(n);
    }
}

/// A column as its signature sees it.
pub(crate) struct ColumnView<'a> {
    pub accept: bool,
    /// Nonterminals predicted in the column (sorted).
    pub preds: &'a [u32],
    /// Items begun before the column, `(dotted item, origin column)`.
    pub items: &'a [(u32, u32)],
    /// The grammar's symbol after the dot per dotted item (`Tables::next`).
    pub next: &'a [u32],
}

impl MemoInner {
    /// How many masks are memoised (for tests).
    #[cfg(test)]
    pub(crate) fn n_masks(&self) -> usize {
        self.masks.len()
    }

    /// The epoch of the ids handed out now.
    pub(crate) fn epoch(&self) -> u32 {
        self.epoch
    }

    /// Resets the memo unless `headroom` more entries fit (call before a
    /// fill that may add up to that many; ids stay valid during the fill).
    pub(crate) fn make_room(&mut self, headroom: usize) {
        let used = self.signatures.len() + self.states.len() + self.n_transitions;
        if used + headroom > MAX_ENTRIES.max(2 * headroom) {
            self.signatures.clear();
            self.states.clear();
            self.single.clear();
            self.main.clear();
            self.transitions.clear();
            self.n_transitions = 0;
            self.masks.clear();
            self.distinct.clear();
            self.fresh.clear();
            self.mask_bytes = 0;
            self.epoch = self.epoch.wrapping_add(1);
        }
    }

    /// The signature of column `here`; `sigs[o]` must hold the signature of
    /// every earlier column `o` its items began in.
    pub(crate) fn column_signature(
        &mut self,
        col: &ColumnView<'_>,
        here: u32,
        sigs: &[u32],
    ) -> u32 {
        let pairs = &mut self.pairs;
        pairs.clear();
        // Completed items are left out: nothing reads them again (scans,
        // completions and ignored lexemes look for items that wait for a
        // symbol), and they would tie the column to all of its history.
        pairs.extend(
            col.items
                .iter()
                .filter(|&&(d, _)| col.next[d as usize] != NONE)
                .map(|&(d, o)| (d, if o == here { SELF } else { sigs[o as usize] })),
        );
        pairs.sort_unstable();
        pairs.dedup();
        let buf = &mut self.buf;
        buf.clear();
        buf.push(u32::from(col.accept));
        buf.push(u32::try_from(col.preds.len()).unwrap_or(u32::MAX));
        buf.extend_from_slice(col.preds);
        buf.extend(pairs.iter().flat_map(|&(d, o)| [d, o]));
        intern(&mut self.signatures, buf)
    }

    /// The id of the state named `key` (see the module notes), whose only
    /// lexer thread is `single` if it has one, and whose only thread that
    /// has read bytes is `main` if it has one.
    pub(crate) fn state_id(
        &mut self,
        key: &[u32],
        single: Option<(u32, u32, bool)>,
        main: Option<(u32, u32)>,
    ) -> u32 {
        let id = intern(&mut self.states, key);
        if id as usize == self.single.len() {
            self.single.push(single);
            self.main.push(main);
        }
        id
    }

    /// The only lexer thread `(terminal, DFA state)` of state `id` that has
    /// read bytes.
    pub(crate) fn main_thread(&self, id: u32) -> Option<(u32, u32)> {
        self.main.get(id as usize).copied().flatten()
    }

    /// The only lexer thread `(terminal, DFA state, a lexeme already
    /// ended)` of state `id`.
    pub(crate) fn single_thread(&self, id: u32) -> Option<(u32, u32, bool)> {
        self.single.get(id as usize).copied().flatten()
    }

    /// The state after `byte` from state `id` ([`DEAD_STATE`] if the byte
    /// makes the input non-viable) and whether a lexeme ended on it, if known.
    pub(crate) fn transition(&self, id: u32, byte: u8) -> Option<(u32, bool)> {
        self.transitions.get(id as usize)?.get(byte)
    }

    /// Records the state after `byte` from state `id`.
    pub(crate) fn set_transition(&mut self, id: u32, byte: u8, next: (u32, bool)) {
        let i = id as usize;
        if self.transitions.len() <= i {
            self.transitions.resize_with(i + 1, Row::default);
        }
        if self.transitions[i].set(byte, next) {
            self.n_transitions += 1;
        }
    }

    /// The memoised mask of state `id` for token table `table`.
    pub(crate) fn mask(&self, table: u64, id: u32) -> Option<Arc<[u32]>> {
        self.masks.get(&(table, id)).cloned()
    }

    /// Remembers `mask` for state `id`; masks are dropped when they exceed
    /// their budget (the next states rebuild them).
    pub(crate) fn insert_mask(&mut self, table: u64, id: u32, mask: &[u32]) {
        let shared = if let Some(m) = self.distinct.get(mask) {
            Arc::clone(m)
        } else {
            self.make_mask_room(size_of_val(mask));
            let m: Arc<[u32]> = mask.into();
            self.distinct.insert(Arc::clone(&m));
            m
        };
        self.masks.insert((table, id), shared);
    }

    fn make_mask_room(&mut self, bytes: usize) {
        if self.mask_bytes + bytes > MAX_MASK_BYTES {
            self.masks.clear();
            self.distinct.clear();
            self.fresh.clear();
            self.mask_bytes = 0;
        }
        self.mask_bytes += bytes;
    }

    /// The start-state sets of the terminals in `taken` (a bitset of
    /// terminal ids) for token table `table`, built by `build` once.
    pub(crate) fn fresh_sets(
        &mut self,
        table: u64,
        taken: &[u32],
        build: impl FnOnce() -> FreshSets,
    ) -> Arc<FreshSets> {
        if let Some(f) = self.fresh.get(&(table, taken.into())) {
            return Arc::clone(f);
        }
        let f = Arc::new(build());
        self.make_mask_room(size_of_val(f.inside.as_slice()) + size_of_val(f.ranges.as_slice()));
        self.fresh.insert((table, taken.into()), Arc::clone(&f));
        f
    }
}

/// Tokens that some terminal keeps alive from its start state (a mask),
/// and the merged trie ranges where such lexemes end inside a token.
#[derive(Debug)]
pub(crate) struct FreshSets {
    pub inside: Vec<u32>,
    pub ranges: Vec<(u32, u32)>,
}

/// The known transitions out of one state: a short list while few bytes
/// were tried (most states), a table of all 256 once many were (states
/// near the trie's root, whose children are walked one after another).
#[derive(Debug, Default)]
enum Row {
    #[default]
    Empty,
    Few(Vec<(u8, u32, bool)>),
    All(Box<[(u32, bool); 256]>),
}

/// Transitions a [`Row`] lists before it becomes a table.
const FEW: usize = 12;
/// A table entry not learnt yet.
const UNSEEN: u32 = u32::MAX - 2;

impl Row {
    fn get(&self, byte: u8) -> Option<(u32, bool)> {
        match self {
            Row::Empty => None,
            Row::Few(list) => list
                .iter()
                .find(|e| e.0 == byte)
                .map(|&(_, next, ended)| (next, ended)),
            Row::All(table) => Some(table[byte as usize]).filter(|e| e.0 != UNSEEN),
        }
    }

    /// Records a transition (replacing an earlier one of `byte`, as a
    /// named state replaces [`VIABLE`]); whether it is new.
    fn set(&mut self, byte: u8, next: (u32, bool)) -> bool {
        if let Row::Few(list) = self
            && let Some(e) = list.iter_mut().find(|e| e.0 == byte)
        {
            (e.1, e.2) = next;
            return false;
        }
        if let Row::All(table) = self {
            let new = table[byte as usize].0 == UNSEEN;
            table[byte as usize] = next;
            return new;
        }
        match self {
            Row::Empty => *self = Row::Few(vec![(byte, next.0, next.1)]),
            Row::Few(list) if list.len() < FEW => list.push((byte, next.0, next.1)),
            Row::Few(list) => {
                let mut table = Box::new([(UNSEEN, false); 256]);
                for &(b, n, e) in list.iter() {
                    table[b as usize] = (n, e);
                }
                table[byte as usize] = next;
                *self = Row::All(table);
            }
            Row::All(_) => {}
        }
        true
    }
}

/// The id of `key` in `ids` (a new one if absent).
fn intern(ids: &mut FxHashMap<Box<[u32]>, u32>, key: &[u32]) -> u32 {
    if let Some(&id) = ids.get(key) {
        return id;
    }
    let id = u32::try_from(ids.len()).unwrap_or(SELF - 1);
    ids.insert(key.into(), id);
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_keep_every_transition_across_the_switch_to_a_table() {
        let mut row = Row::default();
        assert_eq!(row.get(7), None);
        // Every byte once, in a scattered order, with distinct targets.
        let order: Vec<u8> = (0..=255u8)
            .map(|b| b.wrapping_mul(37).wrapping_add(11))
            .collect();
        for (i, &b) in order.iter().enumerate() {
            assert!(row.set(b, (u32::from(b) * 3, b % 2 == 0)));
            assert!(matches!(row, Row::Few(_)) == (i < FEW), "{i}");
            for &seen in &order[..=i] {
                assert_eq!(row.get(seen), Some((u32::from(seen) * 3, seen % 2 == 0)));
            }
            for &unseen in &order[i + 1..] {
                assert_eq!(row.get(unseen), None);
            }
        }
        assert!(!row.set(11, (DEAD_STATE, false)));
        assert_eq!(row.get(11), Some((DEAD_STATE, false)));
        let mut few = Row::default();
        assert!(few.set(3, (VIABLE, true)));
        assert!(!few.set(3, (42, true)));
        assert_eq!(few.get(3), Some((42, true)));
    }
}
