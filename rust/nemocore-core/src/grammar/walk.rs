//! Filling a mask: the root's cached token sets, then a walk of the token
//! trie over the tokens the parser must decide (see `mask.rs`).
//!
//! The walk descends the trie in preorder, feeding one byte per edge to a
//! [`Cursor`]: the real parse state (push when descending, truncate when
//! ascending: the state is append-only, so truncation is the undo log), or,
//! in the dynamic mode, memoised state ids (`memo.rs`), where a byte is a
//! table lookup and the real state runs only to learn a new transition.
//! Where a single lexer thread is left, its cached split below the node
//! marks the tokens that stay in the lexeme and names the subtrees to walk on.

use super::Compiled;
use super::dynamic::DynState;
use super::mask::{MIN_SUBTREE, TokenTable, set_bit};
use super::memo::{DEAD_STATE, MemoInner};
use super::state::State;

/// Reusable buffers of one matcher's mask computation.
#[derive(Debug, Default, Clone)]
pub(crate) struct Scratch {
    ranges: Vec<(u32, u32)>,
    threads: Vec<(u32, u32)>,
    key: Vec<u32>,
}

/// Fills `mask` for `state` (ids of EOS excluded; the caller sets them).
/// In the dynamic mode a state whose future was seen before gets its mask
/// from the grammar's memo.
pub(crate) fn fill(
    g: &Compiled,
    state: &mut State,
    table: &TokenTable,
    mask: &mut [u32],
    scratch: &mut Scratch,
) {
    if matches!(state, State::Py(_)) {
        return compute(g, state, table, mask, scratch, None);
    }
    g.memo.with(|memo| {
        // Each walked node may add a signature, a state and a transition.
        memo.make_room(3 * table.trie.len());
        let State::Dyn(s) = &mut *state else { return };
        let id = s.state_id(memo, &mut scratch.key);
        if let Some(words) = memo.mask(table.id, id) {
            mask.copy_from_slice(&words);
            return;
        }
        compute(g, state, table, mask, scratch, Some((memo, id)));
        memo.insert_mask(table.id, id, mask);
    });
}

/// Computes the mask of `state`; `lazy` is the memo and the state's id,
/// for the dynamic mode's memoised walk.
fn compute(
    g: &Compiled,
    state: &mut State,
    table: &TokenTable,
    mask: &mut [u32],
    scratch: &mut Scratch,
    lazy: Option<(&mut MemoInner, u32)>,
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
    let span = (1, table.trie.len());
    let base = state.len();
    match (state, lazy) {
        (State::Dyn(s), Some((memo, root))) => {
            let mut cursor = MemoCursor::new(g, s, memo, root);
            walk_nodes(g, table, &mut cursor, &scratch.ranges, span, mask);
            s.truncate(base);
        }
        (state, _) => {
            // Lexemes begun before this token are covered by the root's
            // sets, unless the full walk skipped them.
            let since = (!full_walk).then_some(base);
            let mut cursor = RealCursor {
                g,
                state,
                base,
                since,
            };
            walk_nodes(g, table, &mut cursor, &scratch.ranges, span, mask);
            cursor.state.truncate(base);
        }
    }
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

/// The parse state as the walk sees it: one trie path at a time.
trait Cursor {
    /// Moves to the node at `depth` (>= 1), reached by `byte` from the node
    /// at `depth - 1` on the current path; whether the input stays viable.
    fn enter(&mut self, depth: usize, byte: u8) -> bool;

    /// After a viable [`enter`](Self::enter): the only lexer thread
    /// `(terminal, DFA state, a lexeme already ended so a later dead end
    /// falls back to the parser)` when its continuation alone decides.
    fn single_thread(&self) -> Option<(u32, u32, bool)>;
}

/// The real state, pushed and truncated.
struct RealCursor<'a> {
    g: &'a Compiled,
    state: &'a mut State,
    base: usize,
    since: Option<usize>,
}

impl Cursor for RealCursor<'_> {
    fn enter(&mut self, depth: usize, byte: u8) -> bool {
        self.state.truncate(self.base + depth - 1);
        self.state.push(self.g, byte)
    }

    fn single_thread(&self) -> Option<(u32, u32, bool)> {
        self.state.single_thread(self.g, self.since)
    }
}

/// Memoised state ids per depth of the current path; the real state
/// follows lazily, replaying the path only when a transition is new.
struct MemoCursor<'a> {
    g: &'a Compiled,
    state: &'a mut DynState,
    memo: &'a mut MemoInner,
    base: usize,
    /// `ids[d]`: the state id after the path's first `d` bytes, and
    /// whether a lexeme ended within them.
    ids: Vec<(u32, bool)>,
    /// The current path's bytes.
    path: Vec<u8>,
    /// How many of them the real state holds.
    synced: usize,
    key: Vec<u32>,
}

impl<'a> MemoCursor<'a> {
    fn new(g: &'a Compiled, state: &'a mut DynState, memo: &'a mut MemoInner, root: u32) -> Self {
        let base = state.len();
        MemoCursor {
            g,
            state,
            memo,
            base,
            ids: vec![(root, false)],
            path: Vec::new(),
            synced: 0,
            key: Vec::new(),
        }
    }
}

impl Cursor for MemoCursor<'_> {
    fn enter(&mut self, depth: usize, byte: u8) -> bool {
        self.ids.truncate(depth);
        self.path.truncate(depth - 1);
        self.path.push(byte);
        self.synced = self.synced.min(depth - 1);
        let (parent, ended_before) = self.ids[depth - 1];
        let (next, ended) = if let Some(known) = self.memo.transition(parent, byte) {
            known
        } else {
            let s = &mut *self.state;
            s.truncate(self.base + self.synced);
            for &b in &self.path[self.synced..depth - 1] {
                // Known transitions: these bytes were viable.
                s.push(self.g, b);
            }
            self.synced = depth;
            let known = if s.push(self.g, byte) {
                (s.state_id(self.memo, &mut self.key), s.lexeme_ended())
            } else {
                (DEAD_STATE, false)
            };
            self.memo.set_transition(parent, byte, known);
            known
        };
        self.ids.push((next, ended_before || ended));
        next != DEAD_STATE
    }

    /// As [`RealCursor`]'s: only for a lexeme begun within the token (the
    /// root's sets cover the others, and the lookup would be wasted).
    fn single_thread(&self) -> Option<(u32, u32, bool)> {
        let &(id, ended) = self.ids.last()?;
        let (term, st) = self.memo.single_thread(id).filter(|_| ended)?;
        Some((term, st, false))
    }
}

/// Walks the nodes `span.0..span.1` whose subtree meets `ranges` (sorted,
/// disjoint preorder ranges); sets the bit of every token inside `ranges`
/// that keeps the input viable.
fn walk_nodes(
    g: &Compiled,
    table: &TokenTable,
    cursor: &mut impl Cursor,
    ranges: &[(u32, u32)],
    span: (usize, usize),
    mask: &mut [u32],
) {
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
        if !cursor.enter(trie.depth[i] as usize, trie.byte[i]) {
            i = end;
            continue;
        }
        if lo as usize <= i {
            for &id in trie.ids_at(i) {
                set_bit(mask, id);
            }
        }
        if end > i + MIN_SUBTREE
            && let Some((term, st, accepted)) = cursor.single_thread()
            && let Some(dfa) = g.dfa(term)
        {
            let sets = table.subtree_sets(&g.ir.terms[term as usize].pattern, st, i, accepted, dfa);
            for &id in &sets.alive {
                set_bit(mask, id);
            }
            walk_nodes(g, table, cursor, &sets.ranges, (i + 1, end), mask);
            i = end;
            continue;
        }
        i += 1;
    }
}
