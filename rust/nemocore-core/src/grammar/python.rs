//! Python mode: lark's `basic` longest-match lexer, the Python indenter as
//! a post-lexer, and the Earley parser over the resulting token stream.
//!
//! The indenter follows `lark.indenter.PythonIndenter`: a `_NEWLINE` token
//! (newline plus the next line's indentation, comments included) outside
//! brackets is passed on and followed by `_INDENT` or one `_DEDENT` per
//! closed level (the indentation counts spaces plus 8 per tab, as lark
//! does); inside `( [ {` it is dropped; end of input closes every level.
//!
//! The state is snapshotted per byte (threads in an arena, indentation
//! stack as a linked list in an arena), so truncation is O(1). A lexeme
//! ends only when the next byte cannot extend any terminal (maximal munch),
//! so the lexer keeps the last accepting length and re-lexes from there.
//! Viability is approximate at one point: a pending lexeme is viable if
//! some live terminal (or the last accepted one) is acceptable to the
//! parser now; maximal munch may later choose another split.

use super::Compiled;
use super::dfa::DEAD;
use super::earley::Chart;
use super::ir::Ir;
use super::memo::{ColumnSignatures, MemoInner};
use crate::error::{Error, Result};

const NONE: u32 = u32::MAX;

/// What the indenter does with a terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Other,
    Newline,
    Open,
    Close,
}

/// The terminals the indenter knows.
#[derive(Debug, Clone)]
pub struct PyTerms {
    kind: Vec<Kind>,
    indent: Option<u32>,
    dedent: Option<u32>,
    /// Terminals the lexer matches (those with a DFA).
    lexable: Vec<u32>,
    /// Per first byte of a lexeme: the `(terminal, DFA state)` threads alive
    /// after it (a new lexeme starts every terminal, most die at once).
    first: Vec<Vec<(u32, u32)>>,
}

impl PyTerms {
    /// Terminals the lexer matches.
    pub(crate) fn lexable(&self) -> &[u32] {
        &self.lexable
    }

    /// Finds `_NEWLINE`, `_INDENT`, `_DEDENT` and the bracket terminals.
    pub fn new(ir: &Ir) -> Result<PyTerms> {
        let find = |name: &str| {
            ir.terms
                .iter()
                .position(|t| t.name == name)
                .and_then(|i| u32::try_from(i).ok())
        };
        let kind: Vec<Kind> = ir
            .terms
            .iter()
            .map(|t| match t.name.as_str() {
                "_NEWLINE" => Kind::Newline,
                "LPAR" | "LSQB" | "LBRACE" | "\"(\"" | "\"[\"" | "\"{\"" => Kind::Open,
                "RPAR" | "RSQB" | "RBRACE" | "\")\"" | "\"]\"" | "\"}\"" => Kind::Close,
                _ => Kind::Other,
            })
            .collect();
        if !kind.contains(&Kind::Newline) {
            return Err(Error::grammar(
                1,
                1,
                "python_indenter needs the grammar to use a _NEWLINE terminal (lark's Python convention)",
            ));
        }
        let lexable: Vec<u32> = (0..ir.terms.len())
            .filter(|&t| ir.terms[t].dfa.is_some())
            .filter_map(|t| u32::try_from(t).ok())
            .collect();
        let first = (0..=255u8)
            .map(|b| {
                lexable
                    .iter()
                    .filter_map(|&t| {
                        let dfa = ir.terms[t as usize].dfa.as_ref()?;
                        let s = dfa.next(0, b);
                        (s != DEAD).then_some((t, s))
                    })
                    .collect()
            })
            .collect();
        Ok(PyTerms {
            kind,
            indent: find("_INDENT"),
            dedent: find("_DEDENT"),
            lexable,
            first,
        })
    }
}

/// The lexer and indenter state after some bytes (one snapshot).
#[derive(Debug, Clone, Copy)]
struct Rec {
    threads: u32,
    threads_end: u32,
    accepted: u32,
    accepted_end: u32,
    lex_start: u32,
    last_accept: u32,
    chart_len: u32,
    indent: u32,
    indents_len: u32,
    paren: u32,
    dead: bool,
}

/// The working copy of a snapshot.
#[derive(Debug, Clone, Default)]
struct Work {
    threads: Vec<(u32, u32)>,
    next: Vec<(u32, u32)>,
    accepted: Vec<u32>,
    lex_start: u32,
    last_accept: u32,
    indent: u32,
    paren: u32,
    /// A lexeme starts at the next byte: `threads` stands for every
    /// terminal in its start state (see [`PyTerms::first`]).
    fresh: bool,
}

/// Parse state in Python mode.
#[derive(Debug, Clone)]
pub struct PyState {
    chart: Chart,
    input: Vec<u8>,
    recs: Vec<Rec>,
    threads: Vec<(u32, u32)>,
    accepted: Vec<u32>,
    /// Indentation stack nodes: (width, parent node).
    indents: Vec<(u32, u32)>,
    work: Work,
    /// Memo signatures of the first chart columns (see `memo.rs`).
    sigs: ColumnSignatures,
}

fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl PyState {
    /// The state before any byte.
    pub fn new(g: &Compiled, py: &PyTerms) -> PyState {
        let mut chart = Chart::new(&g.tables);
        chart.begin();
        chart.predict_start(&g.tables);
        chart.finish(&g.tables);
        let mut s = PyState {
            chart,
            input: Vec::new(),
            recs: Vec::new(),
            threads: Vec::new(),
            accepted: Vec::new(),
            indents: vec![(0, NONE)],
            work: Work::default(),
            sigs: ColumnSignatures::default(),
        };
        s.work.threads = py.lexable.iter().map(|&t| (t, 0)).collect();
        s.work.last_accept = NONE;
        s.snapshot(true);
        s
    }

    fn snapshot(&mut self, alive: bool) {
        debug_assert!(
            !alive || !self.work.fresh,
            "a live snapshot at a fresh lexeme"
        );
        let threads = to_u32(self.threads.len());
        self.threads.extend_from_slice(&self.work.threads);
        let accepted = to_u32(self.accepted.len());
        self.accepted.extend_from_slice(&self.work.accepted);
        self.recs.push(Rec {
            threads,
            threads_end: to_u32(self.threads.len()),
            accepted,
            accepted_end: to_u32(self.accepted.len()),
            lex_start: self.work.lex_start,
            last_accept: self.work.last_accept,
            chart_len: to_u32(self.chart.len()),
            indent: self.work.indent,
            indents_len: to_u32(self.indents.len()),
            paren: self.work.paren,
            dead: !alive,
        });
    }

    fn load(&mut self) {
        let Some(r) = self.recs.last().copied() else {
            return;
        };
        self.work.threads.clear();
        self.work
            .threads
            .extend_from_slice(&self.threads[r.threads as usize..r.threads_end as usize]);
        self.work.accepted.clear();
        self.work
            .accepted
            .extend_from_slice(&self.accepted[r.accepted as usize..r.accepted_end as usize]);
        self.work.lex_start = r.lex_start;
        self.work.last_accept = r.last_accept;
        self.work.indent = r.indent;
        self.work.paren = r.paren;
        // Snapshots are taken after a byte is lexed, never at a fresh start.
        self.work.fresh = false;
    }

    /// Bytes consumed.
    pub fn len(&self) -> usize {
        self.input.len()
    }

    /// Live (terminal, DFA state) pairs of the pending lexeme.
    pub fn threads(&self) -> &[(u32, u32)] {
        let r = self.recs[self.recs.len() - 1];
        &self.threads[r.threads as usize..r.threads_end as usize]
    }

    /// Byte offset where the pending lexeme starts.
    pub fn lexeme_start(&self) -> usize {
        self.recs[self.recs.len() - 1].lex_start as usize
    }

    /// Whether the pending lexeme has a fallback right here (it is a whole
    /// lexeme as it stands).
    pub(crate) fn fallback_here(&self) -> bool {
        let r = self.recs[self.recs.len() - 1];
        !r.dead && r.last_accept as usize == self.input.len()
    }

    /// With the pending lexeme complete right here (its fallback is the
    /// current position): whether the parser takes each terminal after it
    /// ends here (indexed by terminal id), or `None` if ending it here
    /// fails. A token whose first byte no live terminal takes ends it here
    /// and starts a new lexeme: this is the parser such tokens meet.
    pub(crate) fn acceptable_after_fallback(
        &mut self,
        g: &Compiled,
        py: &PyTerms,
    ) -> Option<Vec<bool>> {
        let r = self.recs[self.recs.len() - 1];
        if r.dead || r.last_accept as usize != self.input.len() {
            return None;
        }
        self.load();
        let (chart_len, indents_len) = (self.chart.len(), self.indents.len());
        let out = self.emit_pending(g, py).then(|| {
            let mut acceptable = vec![false; py.kind.len()];
            for &t in &py.lexable {
                acceptable[t as usize] =
                    Self::acceptable_with(&self.chart, g, py, self.work.paren, t);
            }
            acceptable
        });
        self.chart.truncate(chart_len);
        self.sigs.truncate(chart_len);
        self.indents.truncate(indents_len);
        out
    }

    /// Whether a shorter lexeme already matched (maximal munch may fall back to it).
    pub fn has_fallback(&self) -> bool {
        self.recs[self.recs.len() - 1].last_accept != NONE
    }

    /// Consumes one byte; returns whether the input is still viable.
    pub fn push(&mut self, g: &Compiled, py: &PyTerms, byte: u8) -> bool {
        if self.recs[self.recs.len() - 1].dead {
            self.input.push(byte);
            self.snapshot(false);
            return false;
        }
        self.load();
        self.input.push(byte);
        let end = self.input.len();
        let ok = self.run(g, py, end - 1, end);
        let alive = ok && self.viable(g, py);
        self.snapshot(alive);
        alive
    }

    /// Lexes `input[from..to]` into the working state.
    fn run(&mut self, g: &Compiled, py: &PyTerms, from: usize, to: usize) -> bool {
        let mut i = from;
        while i < to {
            let byte = self.input[i];
            let w = &mut self.work;
            w.next.clear();
            let mut any_accept = false;
            if std::mem::take(&mut w.fresh) {
                for &(t, s2) in &py.first[byte as usize] {
                    any_accept |= g.dfa(t).is_some_and(|d| d.is_accepting(s2));
                    w.next.push((t, s2));
                }
            } else {
                for &(t, s) in &w.threads {
                    let Some(dfa) = g.dfa(t) else { continue };
                    let s2 = dfa.next(s, byte);
                    if s2 != DEAD {
                        any_accept |= dfa.is_accepting(s2);
                        w.next.push((t, s2));
                    }
                }
            }
            if !w.next.is_empty() {
                std::mem::swap(&mut w.threads, &mut w.next);
                i += 1;
                if any_accept {
                    w.last_accept = to_u32(i);
                    w.accepted.clear();
                    for &(t, s) in &w.threads {
                        if g.dfa(t).is_some_and(|d| d.is_accepting(s)) {
                            w.accepted.push(t);
                        }
                    }
                }
                continue;
            }
            if w.last_accept == NONE || !self.emit_pending(g, py) {
                return false;
            }
            i = self.work.lex_start as usize;
        }
        true
    }

    /// Emits the pending lexeme up to its last accepting length and starts
    /// a new lexeme there.
    fn emit_pending(&mut self, g: &Compiled, py: &PyTerms) -> bool {
        let (start, end) = (self.work.lex_start as usize, self.work.last_accept as usize);
        let mut terms = std::mem::take(&mut self.work.accepted);
        choose(g, &mut terms);
        // A lexeme that is both a newline and something else (a trailing
        // comment) is a newline, as lark's lexer order makes it.
        if let Some(&nl) = terms
            .iter()
            .find(|&&t| py.kind[t as usize] == Kind::Newline)
        {
            terms.clear();
            terms.push(nl);
        }
        let ok = self.emit(g, py, &terms, start, end);
        self.work.accepted = terms;
        self.work.accepted.clear();
        self.work.lex_start = to_u32(end);
        self.work.last_accept = NONE;
        self.work.threads.clear();
        self.work.fresh = true;
        ok
    }

    fn scan(&mut self, g: &Compiled, terms: &[u32]) -> bool {
        let from = to_u32(self.chart.len() - 1);
        self.chart.begin();
        for &t in terms {
            self.chart.scan(&g.tables, from, t);
        }
        self.chart.finish(&g.tables);
        !self.chart.col_is_empty(self.chart.len() - 1)
    }

    fn emit(
        &mut self,
        g: &Compiled,
        py: &PyTerms,
        terms: &[u32],
        start: usize,
        end: usize,
    ) -> bool {
        let Some(&first) = terms.first() else {
            return false;
        };
        match py.kind[first as usize] {
            Kind::Newline => {
                if self.work.paren > 0 {
                    return true;
                }
                if !self.scan(g, &[first]) {
                    return false;
                }
                let width = indent_width(&self.input[start..end]);
                self.indentation(g, py, width)
            }
            Kind::Open => {
                self.work.paren += 1;
                self.scan(g, terms)
            }
            Kind::Close => {
                if self.work.paren == 0 {
                    return false;
                }
                self.work.paren -= 1;
                self.scan(g, terms)
            }
            Kind::Other if terms.iter().all(|&t| g.is_ignored(t)) => true,
            Kind::Other => self.scan(g, terms),
        }
    }

    fn indentation(&mut self, g: &Compiled, py: &PyTerms, width: u32) -> bool {
        let top = self.indents[self.work.indent as usize].0;
        if width > top {
            self.indents.push((width, self.work.indent));
            self.work.indent = to_u32(self.indents.len() - 1);
            return py.indent.is_some_and(|t| self.scan(g, &[t]));
        }
        while width < self.indents[self.work.indent as usize].0 {
            self.work.indent = self.indents[self.work.indent as usize].1;
            if !py.dedent.is_some_and(|t| self.scan(g, &[t])) {
                return false;
            }
        }
        width == self.indents[self.work.indent as usize].0
    }

    /// Whether the parser could take terminal `t` now.
    pub fn acceptable(&self, g: &Compiled, py: &PyTerms, t: u32) -> bool {
        let paren = self.recs[self.recs.len() - 1].paren;
        Self::acceptable_with(&self.chart, g, py, paren, t)
    }

    fn acceptable_with(chart: &Chart, g: &Compiled, py: &PyTerms, paren: u32, t: u32) -> bool {
        if g.is_ignored(t) || (py.kind[t as usize] == Kind::Newline && paren > 0) {
            return true;
        }
        chart.expects(chart.len() - 1).binary_search(&t).is_ok()
    }

    fn viable(&self, g: &Compiled, py: &PyTerms) -> bool {
        let w = &self.work;
        if self.chart.col_is_empty(self.chart.len() - 1) {
            return false;
        }
        let ok = |t: u32| Self::acceptable_with(&self.chart, g, py, w.paren, t);
        w.threads.iter().any(|&(t, _)| ok(t)) || w.accepted.iter().any(|&t| ok(t))
    }

    /// Whether the input so far is a whole program (the pending lexeme
    /// ends it, then end of input closes every indentation level).
    pub fn can_end(&mut self, g: &Compiled, py: &PyTerms) -> bool {
        if self.recs[self.recs.len() - 1].dead {
            return false;
        }
        self.load();
        let chart_len = self.chart.len();
        let indents_len = self.indents.len();
        let end = self.input.len();
        let mut ok = true;
        while ok && (self.work.lex_start as usize) < end {
            if self.work.last_accept == NONE {
                ok = false;
                break;
            }
            ok = self.emit_pending(g, py);
            let from = self.work.lex_start as usize;
            ok = ok && self.run(g, py, from, end);
        }
        while ok && self.work.indent != 0 {
            self.work.indent = self.indents[self.work.indent as usize].1;
            ok = py.dedent.is_some_and(|t| self.scan(g, &[t]));
        }
        ok = ok && self.chart.accepts(self.chart.len() - 1);
        self.chart.truncate(chart_len);
        self.sigs.truncate(chart_len);
        self.indents.truncate(indents_len);
        ok
    }

    /// Returns to the state after the first `n` bytes.
    pub fn truncate(&mut self, n: usize) {
        if n >= self.input.len() {
            return;
        }
        self.input.truncate(n);
        self.recs.truncate(n + 1);
        let r = self.recs[n];
        self.threads.truncate(r.threads_end as usize);
        self.accepted.truncate(r.accepted_end as usize);
        self.chart.truncate(r.chart_len as usize);
        self.sigs.truncate(r.chart_len as usize);
        self.indents.truncate(r.indents_len as usize);
    }

    /// The pending bytes a later step re-lexes (those past the fallback:
    /// if every terminal dies, the lexeme ends there and they are lexed again).
    pub(crate) fn reread_len(&self) -> usize {
        match self.recs[self.recs.len() - 1].last_accept {
            NONE => 0,
            at => self.input.len() - at as usize,
        }
    }

    /// This state's id in `memo` (see `memo.rs`): the last chart column's
    /// signature, the pending lexeme (live and accepted terminals, whether
    /// it has a fallback, the bytes past it, which are re-lexed, and a
    /// pending newline's indentation so far), the open brackets and the
    /// indentation stack.
    pub(crate) fn state_id(
        &mut self,
        g: &Compiled,
        py: &PyTerms,
        memo: &mut MemoInner,
        key: &mut Vec<u32>,
    ) -> u32 {
        let last_sig = self.sigs.update(memo, &self.chart, &g.tables)[self.chart.len() - 1];
        let r = self.recs[self.recs.len() - 1];
        let threads = &self.threads[r.threads as usize..r.threads_end as usize];
        let accepted = &self.accepted[r.accepted as usize..r.accepted_end as usize];
        let reread = self.input.len() - self.reread_len();
        // A newline's indentation is read from its text up to where it ends:
        // the fallback, or a later byte (then the width so far goes on).
        let newline = |t: u32| py.kind[t as usize] == Kind::Newline;
        let width =
            if threads.iter().any(|&(t, _)| newline(t)) || accepted.iter().any(|&t| newline(t)) {
                let end = if r.last_accept == NONE {
                    self.input.len()
                } else {
                    reread
                };
                indent_width(&self.input[r.lex_start as usize..end])
            } else {
                NONE
            };
        key.clear();
        key.push(last_sig);
        key.push(r.paren);
        key.push(u32::from(r.last_accept != NONE));
        key.push(width);
        key.push(to_u32(threads.len()));
        key.extend(threads.iter().flat_map(|&(t, st)| [t, st]));
        key.push(to_u32(accepted.len()));
        key.extend_from_slice(accepted);
        key.push(to_u32(self.input.len() - reread));
        key.extend(self.input[reread..].iter().map(|&b| u32::from(b)));
        let mut node = r.indent;
        while node != NONE {
            let (width, parent) = self.indents[node as usize];
            key.push(width);
            node = parent;
        }
        let single = match threads {
            [(t, st)] if self.acceptable(g, py, *t) => Some((*t, *st, self.has_fallback())),
            _ => None,
        };
        memo.state_id(key, single, None)
    }
}

/// The indentation a newline lexeme sets: spaces plus 8 per tab after its
/// last line break (lark's count).
fn indent_width(text: &[u8]) -> u32 {
    let tail = text.rsplit(|&b| b == b'\n').next().unwrap_or(&[]);
    tail.iter()
        .map(|&b| match b {
            b' ' => 1,
            b'\t' => 8,
            _ => 0,
        })
        .sum()
}

/// Resolves ties of the longest match like lark's basic lexer: highest
/// priority first, then plain strings (keywords) over regexes.
fn choose(g: &Compiled, terms: &mut Vec<u32>) {
    let pri = |t: u32| g.ir.terms[t as usize].priority;
    if let Some(best) = terms.iter().map(|&t| pri(t)).max() {
        terms.retain(|&t| pri(t) == best);
    }
    if terms.iter().any(|&t| g.ir.terms[t as usize].is_literal) {
        terms.retain(|&t| g.ir.terms[t as usize].is_literal);
    }
}
