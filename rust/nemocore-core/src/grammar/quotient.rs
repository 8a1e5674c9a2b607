//! Right quotient `L / r = { w : w r in L }` by a known string, for
//! fill-in-the-middle (decoding.md 4.4; nemocore's own construction).
//!
//! 1. Reverse the grammar (every right-hand side, every terminal regex)
//!    and run the dynamic-lexing recognizer on `reverse(r)`.
//! 2. Turn the chart into a grammar for `reverse(r) \ reverse(L)`:
//!    `K[A,i]` ("what follows once an `A` begun at column `i` is
//!    complete") has, per item `B -> gamma . A delta` (origin `j`) in
//!    column `i`, the production `K[A,i] -> delta K[B,j]`; `K[S,0]` is
//!    empty; the start `Q_c` has `Q_c -> beta K[A,i]` per item
//!    `A -> alpha . beta` (origin `i < c`) in column `c`. A lexer thread
//!    still alive after `reverse(r)` (terminal `T` begun at column `p`)
//!    gives `Q_n -> T' beta K[A,i]` for the items waiting for `T` at `p`,
//!    where `T'` matches the strings `v` with `v + r[..n-p]` in `T` (the
//!    lexeme that joins the middle and `r`); an ignored lexeme gives
//!    `Q_n -> T' Q_p`.
//! 3. Emit that grammar reversed again, in the original orientation: all
//!    `beta`/`delta` are then prefixes of original right-hand sides.
//!
//! Exact for the dynamic lexing mode (every split of the input is
//! considered in both directions). Not used for Python mode, whose
//! longest-match lexer does not survive reversal.

use std::fmt::Write as _;

use rustc_hash::FxHashMap;

use super::Compiled;
use super::dfa::Dfa;
use super::dynamic::DynState;
use super::earley::NT;
use super::ir::{Ir, Prod, Sym, Term};
use crate::error::{Error, Result};

/// The grammar with every right-hand side and terminal reversed.
pub(crate) fn reversed(g: &Compiled) -> Result<Compiled> {
    let mut ir = g.ir.clone();
    for p in &mut ir.prods {
        p.rhs.reverse();
    }
    for t in &mut ir.terms {
        if t.dfa.is_some() {
            t.dfa = Some(Dfa::new_reversed(&t.pattern).map_err(Error::internal)?);
        }
    }
    Ok(Compiled::new(ir, None))
}

struct Builder<'a> {
    g: &'a Compiled,
    rev: &'a Compiled,
    state: &'a DynState,
    suffix: &'a [u8],
    ir: Ir,
    ks: FxHashMap<(u32, u32), u32>,
    qs: FxHashMap<u32, u32>,
    todo: Vec<(u32, u32, u32)>,
    partials: FxHashMap<(u32, usize), Option<u32>>,
}

/// A grammar (in the engine's form) for `L / suffix`, given the grammar
/// `g` and its [`reversed`] form `rev`.
pub(crate) fn right_quotient(g: &Compiled, rev: &Compiled, suffix: &[u8]) -> Result<Compiled> {
    let mut state = DynState::new(rev);
    for (k, &b) in suffix.iter().rev().enumerate() {
        if !state.push(rev, b) {
            return Err(Error::invalid_argument(format!(
                "the right context cannot end a sentence of the grammar: its last {} bytes already fail",
                k + 1
            )));
        }
    }
    let mut b = Builder {
        g,
        rev,
        state: &state,
        suffix,
        ir: g.ir.clone(),
        ks: FxHashMap::default(),
        qs: FxHashMap::default(),
        todo: Vec::new(),
        partials: FxHashMap::default(),
    };
    let n = u32::try_from(suffix.len()).unwrap_or(u32::MAX);
    // The middle may end with ignored lexemes before the suffix's first
    // lexeme, but not after a lexeme that joins the suffix.
    let separate = b.q(n);
    let joined = b.new_nt("__joined".to_string());
    b.junction_threads(joined);
    let start = b.new_nt("__middle".to_string());
    let run = b.ignore_run();
    b.ir.prods.push(Prod {
        lhs: start,
        rhs: vec![Sym::N(separate)],
    });
    b.ir.prods.push(Prod {
        lhs: start,
        rhs: vec![Sym::N(joined)],
    });
    if let Some(run) = run {
        b.ir.prods.push(Prod {
            lhs: start,
            rhs: vec![Sym::N(separate), Sym::N(run)],
        });
    }
    while let Some((id, a, i)) = b.todo.pop() {
        b.define_k(id, a, i);
    }
    b.ir.start = start;
    b.ir.remove_unproductive();
    if !b.ir.productive()[start as usize] {
        return Err(Error::invalid_argument(
            "no text can come before the right context: no sentence of the grammar ends with it",
        ));
    }
    let mut c = Compiled::new(b.ir, None);
    c.trailing_ignore = false;
    Ok(c)
}

impl Builder<'_> {
    fn new_nt(&mut self, name: String) -> u32 {
        self.ir.nonterms.push(name);
        u32::try_from(self.ir.nonterms.len() - 1).unwrap_or(u32::MAX)
    }

    /// The first `len` symbols of production `prod` (0 is `S' -> S`), in
    /// the original orientation.
    fn prefix(&self, prod: u32, len: usize) -> Vec<Sym> {
        if prod == 0 {
            return vec![Sym::N(self.g.ir.start)][..len].to_vec();
        }
        self.g.ir.prods[prod as usize - 1].rhs[..len].to_vec()
    }

    fn rhs_len(&self, prod: u32) -> usize {
        if prod == 0 {
            1
        } else {
            self.g.ir.prods[prod as usize - 1].rhs.len()
        }
    }

    /// A nonterminal for one or more ignored lexemes (as plain terminals).
    fn ignore_run(&mut self) -> Option<u32> {
        if self.g.ir.ignore.is_empty() {
            return None;
        }
        let run = self.new_nt("__ignored_run".to_string());
        for &t in &self.g.ir.ignore.clone() {
            let mut term = self.g.ir.terms[t as usize].clone();
            term.name = format!("{} (before the right context)", term.name);
            self.ir.terms.push(term);
            let id = u32::try_from(self.ir.terms.len() - 1).unwrap_or(u32::MAX);
            self.ir.prods.push(Prod {
                lhs: run,
                rhs: vec![Sym::T(id)],
            });
            self.ir.prods.push(Prod {
                lhs: run,
                rhs: vec![Sym::N(run), Sym::T(id)],
            });
        }
        Some(run)
    }

    /// `K[A,i]`, queued for definition on first use.
    fn k(&mut self, a: u32, i: u32) -> u32 {
        if let Some(&id) = self.ks.get(&(a, i)) {
            return id;
        }
        let id = self.new_nt(format!("__after_{a}_{i}"));
        self.ks.insert((a, i), id);
        self.todo.push((id, a, i));
        id
    }

    /// `Q_c`: what may precede the suffix's last `n - c` bytes... read
    /// backwards: continuations of the reversed parse from column `c`.
    fn q(&mut self, c: u32) -> u32 {
        if let Some(&id) = self.qs.get(&c) {
            return id;
        }
        let id = self.new_nt(format!("__quotient_{c}"));
        self.qs.insert(c, id);
        let chart = self.state.chart();
        if chart.accepts(c as usize) {
            self.ir.prods.push(Prod {
                lhs: id,
                rhs: Vec::new(),
            });
        }
        let items = chart.items(&self.rev.tables, c as usize);
        let start_nt = self.rev.tables.start_nt;
        for (d, o) in items {
            let (prod, dot) = self.rev.tables.item_prod[d as usize];
            let lhs = self.rev.tables.lhs[d as usize];
            // Items begun here are expanded inside their parents' beta,
            // except the root `S' -> . S` (an empty suffix).
            if o >= c && lhs != start_nt {
                continue;
            }
            let mut rhs = vec![Sym::N(self.k(lhs, o))];
            rhs.extend(self.prefix(prod, self.rhs_len(prod) - dot as usize));
            self.ir.prods.push(Prod { lhs: id, rhs });
        }
        id
    }

    fn define_k(&mut self, id: u32, a: u32, i: u32) {
        if a == self.rev.tables.start_nt {
            // The whole sentence is complete: nothing may follow.
            self.ir.prods.push(Prod {
                lhs: id,
                rhs: Vec::new(),
            });
            return;
        }
        let chart = self.state.chart();
        let items = chart.items(&self.rev.tables, i as usize);
        let start_nt = self.rev.tables.start_nt;
        for (d, j) in items {
            if self.rev.tables.next[d as usize] != NT | a {
                continue;
            }
            let (prod, dot) = self.rev.tables.item_prod[d as usize];
            let lhs = self.rev.tables.lhs[d as usize];
            let rest = self.prefix(prod, self.rhs_len(prod) - 1 - dot as usize);
            let rhs = if lhs == start_nt {
                rest
            } else {
                let mut v = vec![Sym::N(self.k(lhs, j))];
                v.extend(rest);
                v
            };
            self.ir.prods.push(Prod { lhs: id, rhs });
        }
    }

    /// Lexemes that straddle the junction of the middle and the suffix,
    /// as alternatives of `start`.
    fn junction_threads(&mut self, start: u32) {
        let n = self.suffix.len();
        let threads = self.state.threads().to_vec();
        for th in threads {
            if th.col as usize == n {
                continue; // begins at the junction: covered by the items of column n
            }
            let Some(t2) = self.partial(th.term, n - th.col as usize) else {
                continue;
            };
            if self.g.is_ignored(th.term) {
                let q = self.q(th.col);
                self.ir.prods.push(Prod {
                    lhs: start,
                    rhs: vec![Sym::N(q), Sym::T(t2)],
                });
                continue;
            }
            let items = self.state.chart().items(&self.rev.tables, th.col as usize);
            for (d, o) in items {
                if self.rev.tables.next[d as usize] != th.term {
                    continue;
                }
                let (prod, dot) = self.rev.tables.item_prod[d as usize];
                let lhs = self.rev.tables.lhs[d as usize];
                let mut rhs = vec![Sym::N(self.k(lhs, o))];
                rhs.extend(self.prefix(prod, self.rhs_len(prod) - 1 - dot as usize));
                rhs.push(Sym::T(t2));
                self.ir.prods.push(Prod { lhs: start, rhs });
            }
        }
    }

    /// The terminal `{v : v + suffix[..k] in T}`, or `None` if it is empty.
    fn partial(&mut self, term: u32, k: usize) -> Option<u32> {
        if let Some(&t) = self.partials.get(&(term, k)) {
            return t;
        }
        let orig = &self.g.ir.terms[term as usize];
        let made = orig.dfa.as_ref().map(|d| d.with_suffix(&self.suffix[..k]));
        let id = made.filter(|d| !d.is_empty_language()).map(|dfa| {
            let hex = self.suffix[..k].iter().fold(String::new(), |mut acc, b| {
                let _ = write!(acc, "{b:02x}");
                acc
            });
            self.ir.terms.push(Term {
                name: format!("{} (joined with the right context)", orig.name),
                pattern: format!("{}\u{0}quotient\u{0}{hex}", orig.pattern),
                dfa: Some(dfa),
                priority: orig.priority,
                is_literal: false,
                synthetic: false,
            });
            u32::try_from(self.ir.terms.len() - 1).unwrap_or(u32::MAX)
        });
        self.partials.insert((term, k), id);
        id
    }
}
