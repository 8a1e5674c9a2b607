//! The parse state of either lexing mode behind one interface: push a
//! byte, truncate to an earlier byte count, ask for viability and
//! completion, and look at the live lexer threads (for token masks).

use super::Compiled;
use super::dynamic::DynState;
use super::memo::MemoInner;
use super::python::PyState;

/// Pending bytes past which a Python-mode state is not memoised.
const MAX_MEMO_REREAD: usize = 32;

/// Parse state after some bytes.
#[derive(Debug, Clone)]
pub enum State {
    /// Dynamic lexing (the default).
    Dyn(DynState),
    /// Longest-match lexing plus the Python indenter.
    Py(PyState),
}

impl State {
    /// The state before any byte.
    pub fn new(g: &Compiled) -> State {
        match &g.python {
            Some(py) => State::Py(PyState::new(g, py)),
            None => State::Dyn(DynState::new(g)),
        }
    }

    /// Bytes consumed.
    pub fn len(&self) -> usize {
        match self {
            State::Dyn(s) => s.len(),
            State::Py(s) => s.len(),
        }
    }

    /// Consumes one byte; returns whether the input is still viable. After
    /// `false`, only [`truncate`](Self::truncate) to an earlier length is useful.
    pub fn push(&mut self, g: &Compiled, byte: u8) -> bool {
        match (self, &g.python) {
            (State::Dyn(s), _) => s.push(g, byte),
            (State::Py(s), Some(py)) => s.push(g, py, byte),
            (State::Py(_), None) => false,
        }
    }

    /// Consumes bytes until one makes the input non-viable; returns whether all did.
    pub fn push_all(&mut self, g: &Compiled, bytes: &[u8]) -> bool {
        bytes.iter().all(|&b| self.push(g, b))
    }

    /// Whether the bytes so far form a whole sentence.
    pub fn can_end(&mut self, g: &Compiled) -> bool {
        match (self, &g.python) {
            (State::Dyn(s), _) => s.accepts(),
            (State::Py(s), Some(py)) => s.can_end(g, py),
            (State::Py(_), None) => false,
        }
    }

    /// The only live lexer thread `(terminal, DFA state, a lexeme already
    /// ended so a later dead end falls back to the parser)`, when the
    /// state is inside one lexeme, begun after byte `since` (if given),
    /// whose continuation alone keeps it viable.
    pub fn single_thread(&self, g: &Compiled, since: Option<usize>) -> Option<(u32, u32, bool)> {
        let after = |start: usize| since.is_none_or(|b| start > b);
        match (self, &g.python) {
            (State::Dyn(s), _) => match s.threads() {
                [t] if after(t.col as usize) => Some((t.term, t.state, false)),
                _ => None,
            },
            (State::Py(s), Some(py)) => match s.threads() {
                [(t, st)] if after(s.lexeme_start()) && s.acceptable(g, py, *t) => {
                    Some((*t, *st, s.has_fallback()))
                }
                _ => None,
            },
            (State::Py(_), None) => None,
        }
    }

    /// Whether memoising this state is likely to pay: not in Python mode
    /// with many pending bytes to re-read (a long string with a shorter
    /// fallback: such states name their bytes and rarely repeat).
    pub(crate) fn worth_memoising(&self) -> bool {
        match self {
            State::Dyn(_) => true,
            State::Py(s) => s.reread_len() <= MAX_MEMO_REREAD,
        }
    }

    /// This state's id in `memo`: equal ids mean equal futures (`memo.rs`).
    pub(crate) fn state_id(
        &mut self,
        g: &Compiled,
        memo: &mut MemoInner,
        key: &mut Vec<u32>,
    ) -> u32 {
        match (self, &g.python) {
            (State::Dyn(s), _) => s.state_id(g, memo, key),
            (State::Py(s), Some(py)) => s.state_id(g, py, memo, key),
            (State::Py(_), None) => super::memo::DEAD_STATE,
        }
    }

    /// [`push`](Self::push), also telling whether a lexeme ended on the
    /// byte (a lexeme that began after the walk's root may be pending).
    pub(crate) fn push_marked(&mut self, g: &Compiled, byte: u8) -> (bool, bool) {
        if let State::Dyn(s) = self {
            let ok = s.push(g, byte);
            return (ok, ok && s.lexeme_ended());
        }
        let before = self.lexeme_start();
        let ok = self.push(g, byte);
        (ok, ok && self.lexeme_start() != before)
    }

    fn lexeme_start(&self) -> usize {
        match self {
            State::Dyn(_) => 0,
            State::Py(s) => s.lexeme_start(),
        }
    }

    /// Returns to the state after the first `n` bytes.
    pub fn truncate(&mut self, n: usize) {
        match self {
            State::Dyn(s) => s.truncate(n),
            State::Py(s) => s.truncate(n),
        }
    }
}
