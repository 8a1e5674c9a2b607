//! Dynamic lexing inside the Earley parser (lark's `dynamic_complete`):
//! every byte position is a column; each column that expects terminals
//! starts one lexer thread per terminal (and per `%ignore` terminal); a
//! thread whose DFA accepts scans its terminal into the column after the
//! byte and keeps running, so every split the grammar allows is admitted.
//!
//! The state is append-only per byte, so [`DynState::truncate`] to an
//! earlier byte count is O(1) and the token-mask walk can push and pop bytes.

use super::Compiled;
use super::dfa::DEAD;
use super::earley::Chart;
use super::memo::{ColumnSignatures, MemoInner};

/// A lexer thread: terminal `term` in DFA state `state`, started at column `col`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thread {
    /// Terminal id.
    pub term: u32,
    /// DFA state after the bytes since `col`.
    pub state: u32,
    /// Column (byte position) where the lexeme started.
    pub col: u32,
}

/// Parse state after some bytes.
#[derive(Debug, Clone)]
pub struct DynState {
    chart: Chart,
    threads: Vec<Thread>,
    /// `pos_threads[p]`: where byte position `p`'s threads start in `threads`.
    pos_threads: Vec<usize>,
    /// Memo signatures of the first columns (see `memo.rs`).
    sigs: ColumnSignatures,
}

impl DynState {
    /// The state before any byte.
    pub fn new(g: &Compiled) -> DynState {
        let mut s = DynState {
            chart: Chart::new(&g.tables),
            threads: Vec::new(),
            pos_threads: vec![0],
            sigs: ColumnSignatures::default(),
        };
        s.chart.begin();
        s.chart.predict_start(&g.tables);
        s.chart.finish(&g.tables);
        s.spawn(g, 0);
        s
    }

    fn spawn(&mut self, g: &Compiled, col: usize) {
        if self.chart.col_is_empty(col) && !self.chart.accepts(col) {
            return;
        }
        let c = u32::try_from(col).unwrap_or(u32::MAX);
        for &term in self.chart.expects(col) {
            if g.ir.terms[term as usize].dfa.is_some() {
                self.threads.push(Thread {
                    term,
                    state: 0,
                    col: c,
                });
            }
        }
        for &term in &g.ir.ignore {
            self.threads.push(Thread {
                term,
                state: 0,
                col: c,
            });
        }
    }

    /// Bytes consumed.
    pub fn len(&self) -> usize {
        self.pos_threads.len() - 1
    }

    /// The live threads now.
    pub fn threads(&self) -> &[Thread] {
        &self.threads[self.pos_threads[self.len()]..]
    }

    /// Consumes one byte; returns whether the input is still viable.
    pub fn push(&mut self, g: &Compiled, byte: u8) -> bool {
        let from = self.pos_threads[self.len()];
        let to = self.threads.len();
        self.chart.begin();
        for i in from..to {
            let th = self.threads[i];
            let Some(dfa) = g.dfa(th.term) else { continue };
            let state = dfa.next(th.state, byte);
            if state == DEAD {
                continue;
            }
            if dfa.is_accepting(state) {
                if g.is_ignored(th.term) {
                    self.chart
                        .copy_waiting(&g.tables, th.col, g.trailing_ignore);
                } else {
                    self.chart.scan(&g.tables, th.col, th.term);
                }
            }
            self.threads.push(Thread { state, ..th });
        }
        self.chart.finish(&g.tables);
        let col = self.chart.len() - 1;
        self.spawn(g, col);
        // Threads of the new position start where this byte's survivors begin.
        self.pos_threads.push(to);
        self.is_viable()
    }

    /// Whether the last byte ended a lexeme (its column holds items).
    pub(crate) fn lexeme_ended(&self) -> bool {
        let col = self.chart.len() - 1;
        !self.chart.col_is_empty(col) || self.chart.accepts(col)
    }

    /// The chart (one column per byte position).
    pub fn chart(&self) -> &Chart {
        &self.chart
    }

    /// Whether some continuation can still complete a sentence.
    pub fn is_viable(&self) -> bool {
        !self.threads().is_empty() || self.chart.accepts(self.chart.len() - 1)
    }

    /// Whether the bytes so far form a whole sentence.
    pub fn accepts(&self) -> bool {
        self.chart.accepts(self.chart.len() - 1)
    }

    /// Returns to the state after the first `n` bytes (`n <= len()`).
    pub fn truncate(&mut self, n: usize) {
        if n >= self.len() {
            return;
        }
        self.chart.truncate(n + 1);
        self.threads.truncate(self.pos_threads[n + 1]);
        self.pos_threads.truncate(n + 1);
        self.sigs.truncate(n + 1);
    }

    /// This state's id in `memo` (see `memo.rs`): interns the signatures
    /// of the columns not signed yet, then the last column's signature with
    /// the sorted live threads `(terminal, DFA state, signature of the
    /// lexeme's first column)`. Equal ids mean equal futures.
    pub(crate) fn state_id(
        &mut self,
        g: &Compiled,
        memo: &mut MemoInner,
        key: &mut Vec<u32>,
    ) -> u32 {
        let n = self.chart.len();
        let from = self.pos_threads[self.len()];
        let sigs = self.sigs.update(memo, &self.chart, &g.tables);
        let threads = &self.threads[from..];
        let mut named: Vec<[u32; 3]> = threads
            .iter()
            .map(|t| [t.term, t.state, sigs[t.col as usize]])
            .collect();
        named.sort_unstable();
        named.dedup();
        key.clear();
        key.push(sigs[n - 1]);
        key.extend(named.iter().flatten());
        let single = match threads {
            [t] => Some((t.term, t.state, false)),
            _ => None,
        };
        let mut read = threads.iter().filter(|t| t.col as usize + 1 < n);
        let main = match (read.next(), read.next()) {
            (Some(t), None) => Some((t.term, t.state)),
            _ => None,
        };
        memo.state_id(key, single, main)
    }
}
