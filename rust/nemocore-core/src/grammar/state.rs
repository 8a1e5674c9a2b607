//! The parse state of either lexing mode behind one interface: push a
//! byte, truncate to an earlier byte count, ask for viability and
//! completion, and look at the live lexer threads (for token masks).

use super::Compiled;
use super::dynamic::DynState;
use super::python::PyState;

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

    /// Returns to the state after the first `n` bytes.
    pub fn truncate(&mut self, n: usize) {
        match self {
            State::Dyn(s) => s.truncate(n),
            State::Py(s) => s.truncate(n),
        }
    }
}
