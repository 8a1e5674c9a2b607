//! Filling a mask: the root's cached token sets, then a walk of the token
//! trie over the tokens the parser must decide (see `mask.rs`).
//!
//! The walk descends the trie in preorder, feeding one byte per edge to a
//! [`Cursor`]: memoised state ids (`memo.rs`), where a byte is a table
//! lookup and the real parse state runs only to learn a new transition, or
//! for states not worth memoising the real state alone (push when
//! descending, truncate when ascending: the state is append-only, so
//! truncation is the undo log).
//! Where a single lexer thread is left, its cached split below the node
//! marks the tokens that stay in the lexeme and names the subtrees to walk on.

use super::Compiled;
use super::fallback;
use super::mask::{MIN_SUBTREE, TokenTable, set_bit};
use super::memo::{DEAD_STATE, MemoInner, VIABLE};
use super::state::State;

/// Reusable buffers of one matcher's mask computation.
#[derive(Debug, Default, Clone)]
pub(crate) struct Scratch {
    ranges: Vec<(u32, u32)>,
    threads: Vec<(u32, u32)>,
    key: Vec<u32>,
    /// The state id of the last fill: `(bytes consumed then, id, memo epoch)`.
    last_id: Option<(usize, u32, u32)>,
    /// Trie nodes the walks of memoised states have entered (a measure of
    /// their work, for compile-time budgets).
    pub(crate) walked: usize,
}

impl Scratch {
    /// Forgets the last fill's state id (the consumed bytes were rolled back).
    pub(crate) fn forget_id(&mut self) {
        self.last_id = None;
    }
}

/// Fills `mask` for `state` (ids of EOS excluded; the caller sets them).
/// A state whose future was seen before gets its mask from the grammar's
/// memo. `path`, the bytes `state` consumed, lets a matcher name its state
/// by following memoised transitions from its previous fill's state
/// instead of signing the new columns.
pub(crate) fn fill(
    g: &Compiled,
    state: &mut State,
    path: Option<&[u8]>,
    table: &TokenTable,
    mask: &mut [u32],
    scratch: &mut Scratch,
) {
    if !state.worth_memoising() {
        return compute(g, state, table, mask, scratch, None);
    }
    g.memo.with(|memo| {
        // Each walked node may add a signature, a state and a transition.
        memo.make_room(3 * table.trie.len());
        let followed = path
            .zip(scratch.last_id)
            .and_then(|(path, (len, id, epoch))| {
                let since = path.get(len..).filter(|_| epoch == memo.epoch())?;
                since.iter().try_fold(id, |id, &b| {
                    memo.transition(id, b)
                        .map(|(next, _)| next)
                        .filter(|&next| next < VIABLE)
                })
            });
        let id = match followed {
            Some(id) => id,
            None => state.state_id(g, memo, &mut scratch.key),
        };
        if let Some(path) = path {
            scratch.last_id = Some((path.len(), id, memo.epoch()));
        }
        if let Some(words) = memo.mask(table.id, id) {
            mask.copy_from_slice(&words);
            return;
        }
        compute(g, state, table, mask, scratch, Some((&mut *memo, id)));
        memo.insert_mask(table.id, id, mask);
    });
}

/// Computes the mask of `state`; `memo` with the state's id there walks
/// over memoised states.
fn compute(
    g: &Compiled,
    state: &mut State,
    table: &TokenTable,
    mask: &mut [u32],
    scratch: &mut Scratch,
    mut memo: Option<(&mut MemoInner, u32)>,
) {
    mask.fill(0);
    let whole_trie = root_sets(
        g,
        state,
        table,
        mask,
        scratch,
        memo.as_mut().map(|(m, _)| &mut **m),
    );
    let span = (1, table.trie.len());
    let base = state.len();
    // Lexemes begun before this token are covered by the root's sets
    // (unless the full walk skipped them): the single-thread shortcut is
    // for lexemes begun within the token.
    let within_token = !whole_trie;
    if let Some((memo, root)) = memo {
        let mut cursor = MemoCursor::new(g, state, memo, root, within_token);
        walk_nodes(g, table, &mut cursor, &scratch.ranges, span, mask);
        scratch.walked += cursor.entered;
    } else {
        let root_lexeme = match &*state {
            State::Py(s) => s.lexeme_start(),
            State::Dyn(_) => 0,
        };
        let mut cursor = RealCursor {
            g,
            state,
            base,
            within_token,
            root_lexeme,
        };
        walk_nodes(g, table, &mut cursor, &scratch.ranges, span, mask);
    }
    state.truncate(base);
}

/// The root's part of the mask: ORs into `mask` the tokens that stay in a
/// live lexer thread's lexeme and leaves in `scratch.ranges` the trie
/// ranges the walk must decide. Returns whether those cover whole
/// first-byte subtrees to be walked node by node (a Python-mode fallback
/// lexeme with a live thread the parser cannot take yet).
fn root_sets(
    g: &Compiled,
    state: &mut State,
    table: &TokenTable,
    mask: &mut [u32],
    scratch: &mut Scratch,
    memo: Option<&mut MemoInner>,
) -> bool {
    scratch.threads.clear();
    let mut fallback = false;
    match state {
        State::Dyn(s) => scratch
            .threads
            .extend(s.threads().iter().map(|t| (t.term, t.state))),
        State::Py(s) => {
            fallback = s.has_fallback();
            scratch.threads.extend_from_slice(s.threads());
        }
    }
    scratch.threads.sort_unstable();
    scratch.threads.dedup();
    // Python mode with the pending lexeme complete right here (see
    // `fallback.rs`; asked first: it borrows the state mutably).
    let split = match (&mut *state, &g.python) {
        (State::Py(s), Some(py)) if fallback && s.fallback_here() => {
            Some((s.acceptable_after_fallback(g, py), py))
        }
        _ => None,
    };
    let acceptable = |term: u32| match (&*state, &g.python) {
        (State::Py(s), Some(py)) => s.acceptable(g, py, term),
        _ => true,
    };
    // After a fallback (a shorter lexeme already matched), tokens that kill
    // every thread fall back to it: the sets then leave every death to the
    // walk; a thread the parser cannot take yet needs the whole walk.
    let whole_trie = fallback && !scratch.threads.iter().all(|&(term, _)| acceptable(term));
    let mut ranges = Vec::new();
    if !whole_trie {
        for &(term, st) in &scratch.threads {
            let Some(dfa) = g.dfa(term) else { continue };
            let sets = table.sets(&g.ir.terms[term as usize].pattern, st, fallback, dfa);
            if acceptable(term) {
                for (m, w) in mask.iter_mut().zip(&sets.inside) {
                    *m |= *w;
                }
            }
            ranges.extend_from_slice(&sets.ranges);
        }
    }
    merge(&mut ranges);
    let live = (!whole_trie).then_some(ranges.as_slice());
    scratch.ranges = match split {
        Some((after, py)) => {
            let after = after.as_deref().map(|a| (a, py.lexable()));
            fallback::split(g, table, mask, &scratch.threads, live, after, memo)
        }
        None if whole_trie => vec![(1, u32::try_from(table.trie.len()).unwrap_or(u32::MAX))],
        None => ranges,
    };
    whole_trie
}

/// Sorts `ranges` and joins the overlapping and adjacent ones.
pub(crate) fn merge(ranges: &mut Vec<(u32, u32)>) {
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
    /// `leaf`: the node has no children (nothing will be entered from it).
    fn enter(&mut self, depth: usize, byte: u8, leaf: bool) -> bool;

    /// After a viable [`enter`](Self::enter): the only lexer thread
    /// `(terminal, DFA state, a lexeme already ended so a later dead end
    /// falls back to the parser)` when its continuation alone decides.
    fn single_thread(&self) -> Option<(u32, u32, bool)>;

    /// After a viable [`enter`](Self::enter), in the dynamic mode: the only
    /// lexer thread `(terminal, DFA state)` that has read bytes, the others
    /// having been predicted at the last one (after a number's digit, the
    /// number goes on and a comma may begin).
    fn main_thread(&self) -> Option<(u32, u32)> {
        None
    }
}

/// The real state, pushed and truncated (for states not worth memoising).
struct RealCursor<'a> {
    g: &'a Compiled,
    state: &'a mut State,
    base: usize,
    within_token: bool,
    /// Where the root's pending lexeme starts (Python mode).
    root_lexeme: usize,
}

impl Cursor for RealCursor<'_> {
    fn enter(&mut self, depth: usize, byte: u8, _leaf: bool) -> bool {
        self.state.truncate(self.base + depth - 1);
        self.state.push(self.g, byte)
    }

    fn single_thread(&self) -> Option<(u32, u32, bool)> {
        match &*self.state {
            State::Dyn(_) => {
                let since = self.within_token.then_some(self.base);
                self.state.single_thread(self.g, since)
            }
            // A fallback re-lexes from before the token, so "a lexeme
            // ended" is "the pending lexeme is not the root's".
            State::Py(s) if self.within_token && s.lexeme_start() == self.root_lexeme => None,
            State::Py(_) => self.state.single_thread(self.g, None),
        }
    }
}

/// Memoised state ids per depth of the current path; the real state
/// follows lazily, replaying the path only when a transition is new.
struct MemoCursor<'a> {
    g: &'a Compiled,
    state: &'a mut State,
    memo: &'a mut MemoInner,
    base: usize,
    /// `ids[d]`: the state id after the path's first `d` bytes, and
    /// whether a lexeme ended within them.
    ids: Vec<(u32, bool)>,
    /// The current path's bytes.
    path: Vec<u8>,
    /// How many of them the real state holds.
    synced: usize,
    /// Whether the single-thread shortcut needs a lexeme begun in the token.
    within_token: bool,
    key: Vec<u32>,
    /// Nodes entered.
    entered: usize,
}

impl<'a> MemoCursor<'a> {
    fn new(
        g: &'a Compiled,
        state: &'a mut State,
        memo: &'a mut MemoInner,
        root: u32,
        within_token: bool,
    ) -> Self {
        let base = state.len();
        MemoCursor {
            g,
            state,
            memo,
            base,
            ids: vec![(root, false)],
            path: Vec::new(),
            synced: 0,
            within_token,
            key: Vec::new(),
            entered: 0,
        }
    }
}

impl Cursor for MemoCursor<'_> {
    fn enter(&mut self, depth: usize, byte: u8, leaf: bool) -> bool {
        self.entered += 1;
        self.ids.truncate(depth);
        self.path.truncate(depth - 1);
        self.path.push(byte);
        self.synced = self.synced.min(depth - 1);
        let (parent, ended_before) = self.ids[depth - 1];
        let known = self
            .memo
            .transition(parent, byte)
            .filter(|&(next, _)| leaf || next != VIABLE);
        let (next, ended) = if let Some(known) = known {
            known
        } else {
            let s = &mut *self.state;
            s.truncate(self.base + self.synced);
            for &b in &self.path[self.synced..depth - 1] {
                // Known transitions: these bytes were viable.
                s.push(self.g, b);
            }
            self.synced = depth;
            // A leaf needs only viability: its state is named (interned)
            // when a node with children first needs it.
            let known = match s.push_marked(self.g, byte) {
                (true, ended) if leaf => (VIABLE, ended),
                (true, ended) => (s.state_id(self.g, self.memo, &mut self.key), ended),
                (false, _) => (DEAD_STATE, false),
            };
            self.memo.set_transition(parent, byte, known);
            known
        };
        self.ids.push((next, ended_before || ended));
        next != DEAD_STATE
    }

    fn single_thread(&self) -> Option<(u32, u32, bool)> {
        let &(id, ended) = self.ids.last()?;
        self.memo
            .single_thread(id)
            .filter(|_| ended || !self.within_token)
    }

    fn main_thread(&self) -> Option<(u32, u32)> {
        // (As for a single thread: a lexeme begun before the token is the
        // root's sets' business.)
        let &(id, ended) = self.ids.last()?;
        self.memo
            .main_thread(id)
            .filter(|_| ended || !self.within_token)
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
        if !cursor.enter(trie.depth[i] as usize, trie.byte[i], end == i + 1) {
            i = end;
            continue;
        }
        if lo as usize <= i {
            for &id in trie.ids_at(i) {
                set_bit(mask, id);
            }
        }
        // Where one thread alone has read bytes, tokens that keep it alive
        // are allowed (a live thread is viable) and only those on which it
        // dies are walked; with other threads beside it, after any death
        // (`accepted`: the parser decides each).
        if end > i + MIN_SUBTREE
            && let Some((term, st, accepted)) = cursor
                .single_thread()
                .or_else(|| cursor.main_thread().map(|(term, st)| (term, st, true)))
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
