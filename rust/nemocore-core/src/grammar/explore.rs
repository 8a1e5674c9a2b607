//! Compile-time exploration: the masks of every state a generation can
//! meet, computed before the first token when there are few enough.
//!
//! Without recursion other than repetition (which is lowered to left
//! recursion), the parse stack is bounded, and so is the number of parse
//! states: a JSON Schema's documents differ in string contents, numbers
//! and whitespace, which leave the parser where it was. Such a grammar is
//! explored from the empty text, breadth first over single bytes (a
//! byte-level vocabulary can stop after any byte, so every byte boundary
//! may need a mask), and each state's mask and byte transitions go into
//! the grammar's memo; decoding then only looks masks up, as xgrammar's
//! precomputed masks do. Grammars with recursion (generic JSON, Python)
//! have unboundedly many states and are left to the lazy memo.

use std::collections::VecDeque;

use rustc_hash::{FxHashMap, FxHashSet};

use super::Compiled;
use super::ir::{Ir, Sym};
use super::mask::TokenTable;
use super::memo::{DEAD_STATE, VIABLE};
use super::state::State;
use super::walk::{self, Scratch};

/// Most states explored per grammar and token table (a larger grammar
/// keeps the masks of the states nearest the start).
pub(crate) const MAX_EXPLORED: usize = 8192;
/// The work exploration may do per grammar and token table, in units of
/// roughly 15 ns on the dev VM (measured): a trie node visited to compute
/// lexer splits lazily costs 1, a trie node walked over memoised states
/// 16 (parser steps), a byte pushed to find a successor 8. About 150 ms.
const MAX_FUEL: usize = 10 << 20;

/// Explores up to `budget` states of `g` reachable from the empty text
/// (when its states are finitely many) and memoises their masks for
/// `table`; returns how many states were explored.
pub(crate) fn explore(g: &Compiled, table: &TokenTable, budget: usize) -> usize {
    if g.python.is_some() || !bounded_stack(&g.ir) {
        return 0;
    }
    let classes = byte_classes(g);
    let mut mask = vec![0u32; table.mask_words()];
    let mut scratch = Scratch::default();
    let mut key = Vec::new();
    let mut seen = FxHashSet::default();
    let mut queue = VecDeque::from([State::new(g)]);
    let mut explored = 0;
    let epoch = g.memo.with(|memo| memo.epoch());
    let lazy_before = table.lazy_nodes();
    let mut pushes = 0;
    while explored < budget
        && 16 * scratch.walked + 8 * pushes + (table.lazy_nodes() - lazy_before) < MAX_FUEL
        && let Some(mut state) = queue.pop_front()
    {
        // A state inside a terminal too large to prepare would need a trie
        // walk per lexer state: it and what lies beyond stay lazy.
        if !sets_ready(g, &state, table) {
            continue;
        }
        explored += 1;
        walk::fill(g, &mut state, None, table, &mut mask, &mut scratch);
        let full = g.memo.with(|memo| {
            // Ids must stay valid while this state's successors are named;
            // a full memo (a new epoch) ends the exploration.
            memo.make_room(classes.len() + 1);
            if memo.epoch() != epoch {
                return true;
            }
            let id = state.state_id(g, memo, &mut key);
            seen.insert(id);
            let base = state.len();
            for class in &classes {
                // A walk may have learnt the class's first byte already (only as
                // "viable" at a trie leaf, or for that byte alone).
                let known = memo.transition(id, class[0]).filter(|t| t.0 != VIABLE);
                let next = match known {
                    Some(t) if t.0 == DEAD_STATE || seen.contains(&t.0) => t,
                    _ => {
                        pushes += 1;
                        let next = match state.push_marked(g, class[0]) {
                            (true, ended) => (state.state_id(g, memo, &mut key), ended),
                            (false, _) => (DEAD_STATE, false),
                        };
                        if next.0 != DEAD_STATE && seen.insert(next.0) {
                            queue.push_back(state.clone());
                        }
                        state.truncate(base);
                        next
                    }
                };
                for &byte in class {
                    memo.set_transition(id, byte, next);
                }
            }
            false
        });
        if full {
            break;
        }
    }
    explored
}

/// Whether every lexer thread of the dynamic-mode `state` has its token
/// sets computed in `table` (so that its mask costs no lazy trie walk).
fn sets_ready(g: &Compiled, state: &State, table: &TokenTable) -> bool {
    match state {
        State::Dyn(s) => s.threads().iter().all(|t| {
            g.dfa(t.term).is_none() || table.has_sets(&g.ir.terms[t.term as usize].pattern, t.state)
        }),
        State::Py(_) => false,
    }
}

/// Whether no nonterminal derives itself other than as a leftmost symbol:
/// then every Earley item's origin chain is bounded, and so is the number
/// of parse states. (Left recursion keeps the origin where the repetition
/// began; a nonterminal anywhere else nests a new origin per level.)
fn bounded_stack(ir: &Ir) -> bool {
    let n = ir.nonterms.len();
    let mut edges: Vec<Vec<u32>> = vec![Vec::new(); n];
    let mut inner: Vec<(u32, u32)> = Vec::new();
    for p in &ir.prods {
        for (i, sym) in p.rhs.iter().enumerate() {
            if let Sym::N(b) = *sym {
                edges[p.lhs as usize].push(b);
                if i > 0 {
                    inner.push((p.lhs, b));
                }
            }
        }
    }
    // An inner edge a -> b on a cycle (b reaches a) nests without bound.
    inner.sort_unstable();
    inner.dedup();
    let mut seen = vec![false; n];
    let mut stack = Vec::new();
    inner.iter().all(|&(a, b)| {
        seen.fill(false);
        stack.clear();
        stack.push(b);
        seen[b as usize] = true;
        while let Some(x) = stack.pop() {
            if x == a {
                return false;
            }
            for &y in &edges[x as usize] {
                if !std::mem::replace(&mut seen[y as usize], true) {
                    stack.push(y);
                }
            }
        }
        true
    })
}

/// The bytes every terminal's DFA treats alike from every state, as
/// classes (each in ascending order). In the dynamic lexing mode a byte
/// reaches the parser only through DFA transitions, so the bytes of a
/// class take any parse state to the same state.
fn byte_classes(g: &Compiled) -> Vec<Vec<u8>> {
    // Refined state by state: a byte's class becomes the pair (its class
    // so far, where the state sends it).
    let mut class = [0u32; 256];
    let mut ids: FxHashMap<(u32, u32), u32> = FxHashMap::default();
    for dfa in g.ir.terms.iter().filter_map(|t| t.dfa.as_ref()) {
        for s in 0..u32::try_from(dfa.num_states()).unwrap_or(u32::MAX) {
            ids.clear();
            for (byte, c) in (0..=255u8).zip(class.iter_mut()) {
                let n = u32::try_from(ids.len()).unwrap_or(u32::MAX);
                *c = *ids.entry((*c, dfa.next(s, byte))).or_insert(n);
            }
        }
    }
    let mut classes: Vec<Vec<u8>> = Vec::new();
    let mut index: FxHashMap<u32, usize> = FxHashMap::default();
    for (byte, &c) in (0..=255u8).zip(class.iter()) {
        let i = *index.entry(c).or_insert_with(|| {
            classes.push(Vec::new());
            classes.len() - 1
        });
        classes[i].push(byte);
    }
    classes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grammar::Grammar;

    const RECORD: &str = r#"start: "{" _WS? "\"id\":" _WS? INT ("," _WS? "\"tags\":" _WS? "[" (STR ("," STR)*)? "]")? "}"
INT: /[1-9][0-9]{0,2}/
STR: /"[a-z]*"/
_WS: /[ \n]+/
"#;
    const NESTED: &str =
        "start: value\nvalue: INT | \"[\" (value (\",\" value)*)? \"]\"\nINT: /[0-9]+/\n";

    fn table() -> TokenTable {
        let mut tokens: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
        for t in [
            "\"id\":",
            " [",
            "\"a",
            "\"tags\": [\"",
            "12",
            "],",
            "\",\"",
            "}",
        ] {
            tokens.push(t.as_bytes().to_vec());
        }
        let n = tokens.len();
        TokenTable::new(tokens, &[], &[], n).unwrap()
    }

    #[test]
    fn only_grammars_without_nesting_recursion_are_bounded() {
        let record = Grammar::from_lark(RECORD).unwrap();
        assert!(
            bounded_stack(&record.compiled.ir),
            "repetition is left recursion"
        );
        let nested = Grammar::from_lark(NESTED).unwrap();
        assert!(!bounded_stack(&nested.compiled.ir));
        assert_eq!(explore(&nested.compiled, &table(), MAX_EXPLORED), 0);
    }

    #[test]
    fn exploration_closes_and_memoises_every_state() {
        let g = Grammar::from_lark(RECORD).unwrap();
        let t = table();
        // Without the lexer sets prepared, exploring would cost a trie walk
        // per lexer state: it stops at the first state inside a lexeme.
        assert!(explore(&g.compiled, &t, MAX_EXPLORED) < 5);
        t.prepare(&g); // the lexer sets, then exploration
        let n = g.compiled.memo.with(|m| m.n_masks());
        assert!(n > 20 && n < MAX_EXPLORED, "{n} states");
        assert_eq!(explore(&g.compiled, &t, MAX_EXPLORED), n);
        assert_eq!(g.compiled.memo.with(|m| m.n_masks()), n);
        // Within a smaller budget, the states nearest the start.
        let g = Grammar::from_lark(RECORD).unwrap();
        t.prepare(&g);
        let g2 = Grammar::from_lark(RECORD).unwrap();
        assert_eq!(explore(&g2.compiled, &t, 5), 5);
        // Every byte from every state is a known transition to a named state
        // (so a matcher follows them instead of signing columns).
        let c = &g.compiled;
        for text in [
            &b"{\"id\": 105,\n \"tags\": [\"ab\",\"\"]}"[..],
            b"{\"id\":7}",
        ] {
            let mut state = State::new(c);
            let mut id = c.memo.with(|memo| state.state_id(c, memo, &mut Vec::new()));
            for &b in text {
                c.memo.with(|memo| {
                    for byte in 0..=255u8 {
                        let t = memo.transition(id, byte);
                        assert!(t.is_some_and(|(next, _)| next != VIABLE), "byte {byte}");
                    }
                    id = memo.transition(id, b).unwrap().0;
                });
                assert!(state.push(c, b));
                assert_eq!(
                    id,
                    c.memo.with(|memo| state.state_id(c, memo, &mut Vec::new()))
                );
            }
        }
        // Within a smaller budget, the states nearest the start.
        let g = Grammar::from_lark(RECORD).unwrap();
        assert_eq!(explore(&g.compiled, &t, 5), 5);
    }

    /// The bytes of a class lead every state met along a few texts to the
    /// same state id (or all kill it).
    #[test]
    fn bytes_of_a_class_are_interchangeable() {
        let g = Grammar::from_lark(RECORD).unwrap();
        let c = &g.compiled;
        let classes = byte_classes(c);
        assert!(classes.len() > 5 && classes.len() < 40, "{}", classes.len());
        let digits = classes.iter().find(|k| k.contains(&b'5')).unwrap();
        assert!(
            digits.contains(&b'1') && !digits.contains(&b'0'),
            "{digits:?}"
        );
        let mut key = Vec::new();
        for text in [
            &b"{\"id\": 10"[..],
            b"{\"id\":7,\"tags\":[\"ab\",\"",
            b"{\n ",
        ] {
            let mut state = State::new(c);
            for (i, &b) in text.iter().enumerate() {
                c.memo.with(|memo| {
                    let base = state.len();
                    for class in &classes {
                        let mut ids = class.iter().map(|&byte| {
                            let id = state
                                .push(c, byte)
                                .then(|| state.state_id(c, memo, &mut key));
                            state.truncate(base);
                            id
                        });
                        let first = ids.next().unwrap();
                        assert!(ids.all(|id| id == first), "{class:?} after {i} bytes");
                    }
                });
                assert!(state.push(c, b));
            }
        }
    }
}
