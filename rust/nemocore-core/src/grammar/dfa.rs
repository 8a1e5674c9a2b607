//! Terminal automata: each terminal's regex compiled to a compact, anchored,
//! byte-level DFA whose states all can still reach a match.
//!
//! regex-automata builds the dense DFA (all matches, anchored); we copy it
//! into a plain table so that the hot loops (lexer threads, mask walks) are
//! one array load per byte, and so that states from which no match is
//! reachable are folded into [`DEAD`] (that is what makes early rejection
//! exact at the lexical level).

use regex_automata::dfa::{Automaton, StartKind, dense};
use regex_automata::util::start;
use regex_automata::{Anchored, MatchKind};
use rustc_hash::FxHashMap;

/// The state no input leaves and no match is reachable from.
pub const DEAD: u32 = u32::MAX;

/// Most states a single terminal may have (keeps tables and caches bounded).
const MAX_STATES: usize = 20_000;

/// A compiled terminal: state 0 is the start state.
#[derive(Debug, Clone)]
pub struct Dfa {
    /// `trans[s * 256 + b]`: next state, or [`DEAD`].
    trans: Vec<u32>,
    /// `accepting[s]`: the bytes read so far form a whole match.
    accepting: Vec<bool>,
}

impl Dfa {
    /// Compiles `pattern` (regex-automata syntax, matched against UTF-8
    /// bytes). Errors are plain messages; the caller adds the position.
    pub fn new(pattern: &str) -> Result<Dfa, String> {
        Self::build(pattern, false)
    }

    /// Compiles `pattern` to match reversed strings (for right quotients).
    pub fn new_reversed(pattern: &str) -> Result<Dfa, String> {
        Self::build(pattern, true)
    }

    fn build(pattern: &str, reverse: bool) -> Result<Dfa, String> {
        let dense = dense::Builder::new()
            .thompson(regex_automata::nfa::thompson::Config::new().reverse(reverse))
            .configure(
                dense::DFA::config()
                    .start_kind(StartKind::Anchored)
                    .match_kind(MatchKind::All)
                    .dfa_size_limit(Some(64 << 20))
                    .determinize_size_limit(Some(64 << 20)),
            )
            .build(pattern)
            .map_err(|e| format!("cannot compile regex /{pattern}/: {e}"))?;
        let start = dense
            .start_state(&start::Config::new().anchored(Anchored::Yes))
            .map_err(|e| format!("regex /{pattern}/ has no anchored start: {e}"))?;
        Self::from_dense(&dense, start, pattern)
    }

    fn from_dense(
        dense: &dense::DFA<Vec<u32>>,
        start: regex_automata::util::primitives::StateID,
        pattern: &str,
    ) -> Result<Dfa, String> {
        let mut index = FxHashMap::default();
        let mut order = vec![start];
        index.insert(start, 0u32);
        let mut trans: Vec<u32> = Vec::new();
        let mut accepting = Vec::new();
        let mut next = 0;
        while next < order.len() {
            let sid = order[next];
            next += 1;
            accepting.push(dense.is_match_state(dense.next_eoi_state(sid)));
            for byte in 0..=255u8 {
                let to = dense.next_state(sid, byte);
                if dense.is_dead_state(to) || dense.is_quit_state(to) {
                    trans.push(DEAD);
                    continue;
                }
                let id = *index.entry(to).or_insert_with(|| {
                    order.push(to);
                    u32::try_from(order.len() - 1).unwrap_or(DEAD)
                });
                trans.push(id);
            }
            if order.len() > MAX_STATES {
                return Err(format!(
                    "regex /{pattern}/ needs more than {MAX_STATES} DFA states; simplify it"
                ));
            }
        }
        let mut dfa = Dfa { trans, accepting };
        dfa.prune_dead_ends();
        Ok(dfa)
    }

    /// Redirects every transition into a state that cannot reach a match to
    /// [`DEAD`], so that a live thread always has a completion.
    fn prune_dead_ends(&mut self) {
        let n = self.accepting.len();
        let mut live = self.accepting.clone();
        let mut changed = true;
        while changed {
            changed = false;
            for s in 0..n {
                if live[s] {
                    continue;
                }
                let row = &self.trans[s * 256..(s + 1) * 256];
                if row.iter().any(|&t| t != DEAD && live[t as usize]) {
                    live[s] = true;
                    changed = true;
                }
            }
        }
        for t in &mut self.trans {
            if *t != DEAD && !live[*t as usize] {
                *t = DEAD;
            }
        }
        if !live[0] {
            self.trans.iter_mut().for_each(|t| *t = DEAD);
        }
    }

    /// The state after `byte`, or [`DEAD`].
    #[inline]
    pub fn next(&self, state: u32, byte: u8) -> u32 {
        self.trans[state as usize * 256 + byte as usize]
    }

    /// Number of states (all live: dead ends are pruned).
    pub fn num_states(&self) -> usize {
        self.accepting.len()
    }

    /// Whether the bytes that led to `state` form a whole match.
    #[inline]
    pub fn is_accepting(&self, state: u32) -> bool {
        self.accepting[state as usize]
    }

    /// The automaton of `{v : v + suffix matches}`: the same transitions,
    /// accepting where `suffix` leads to a match (a right quotient).
    pub fn with_suffix(&self, suffix: &[u8]) -> Dfa {
        let accepting = (0..self.accepting.len())
            .map(|s| {
                let mut q = u32::try_from(s).unwrap_or(DEAD);
                for &b in suffix {
                    if q == DEAD {
                        break;
                    }
                    q = self.next(q, b);
                }
                q != DEAD && self.is_accepting(q)
            })
            .collect();
        let mut dfa = Dfa {
            trans: self.trans.clone(),
            accepting,
        };
        dfa.prune_dead_ends();
        dfa
    }

    /// Whether the language is empty (no string matches).
    pub fn is_empty_language(&self) -> bool {
        !self.accepting[0] && self.trans[..256].iter().all(|&t| t == DEAD)
    }

    /// Whether the empty string matches.
    pub fn matches_empty(&self) -> bool {
        self.accepting[0]
    }

    /// Whether `bytes` is a whole match.
    #[cfg(test)]
    pub fn matches(&self, bytes: &[u8]) -> bool {
        self.run(bytes).is_some_and(|s| self.is_accepting(s))
    }

    /// The state after `bytes`, or `None` when it dies.
    #[cfg(test)]
    pub fn run(&self, bytes: &[u8]) -> Option<u32> {
        let mut s = 0;
        for &b in bytes {
            s = self.next(s, b);
            if s == DEAD {
                return None;
            }
        }
        Some(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_whole_strings_only() {
        let dfa = Dfa::new("ab+").unwrap();
        assert!(dfa.matches(b"ab") && dfa.matches(b"abbb"));
        assert!(!dfa.matches(b"a") && !dfa.matches(b"abc") && !dfa.matches(b""));
    }

    #[test]
    fn lazy_quantifiers_still_report_every_match_length() {
        let dfa = Dfa::new("a+?").unwrap();
        assert!(dfa.matches(b"a") && dfa.matches(b"aaa"));
    }

    #[test]
    fn dead_ends_are_pruned() {
        // After "x" no match is reachable: the transition must be DEAD.
        let dfa = Dfa::new("ab|cd").unwrap();
        assert_eq!(dfa.next(0, b'x'), DEAD);
        let a = dfa.next(0, b'a');
        assert_ne!(a, DEAD);
        assert_eq!(dfa.next(a, b'a'), DEAD);
    }

    #[test]
    fn unicode_classes_match_utf8_bytes() {
        let dfa = Dfa::new(r"\w+").unwrap();
        assert!(dfa.matches("größe".as_bytes()));
        assert!(!dfa.matches(b"\xff"));
    }

    #[test]
    fn empty_and_unsupported() {
        assert!(Dfa::new("[a&&b]").unwrap().is_empty_language());
        assert!(Dfa::new("a*").unwrap().matches_empty());
        assert!(Dfa::new("(?<=a)b").is_err());
    }
}
