//! The grammar IR every front end lowers to: terminals (regexes compiled to
//! DFAs) and context-free productions over terminals and nonterminals.

use super::dfa::Dfa;

/// A grammar symbol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Sym {
    /// A terminal id (index into [`Ir::terms`]).
    T(u32),
    /// A nonterminal id (index into [`Ir::nonterms`]).
    N(u32),
}

/// A terminal.
#[derive(Debug, Clone)]
pub struct Term {
    /// The name users see (`NUMBER`, `"if"`, `/[a-z]+/`).
    pub name: String,
    /// The regex (regex-automata syntax); empty for `%declare`d terminals.
    pub pattern: String,
    /// The automaton; `None` for `%declare`d terminals (made by a post-lexer).
    pub dfa: Option<Dfa>,
    /// Lark priority (for the longest-match lexer's ties).
    pub priority: i32,
    /// Whether it is a plain string (wins ties against regex terminals).
    pub is_literal: bool,
    /// A `%declare`d terminal that the Python indenter produces.
    pub synthetic: bool,
}

impl Term {
    /// Whether the terminal can occur in the input at all.
    pub fn producible(&self) -> bool {
        self.dfa.is_some() || self.synthetic
    }
}

/// A production `lhs -> rhs`.
#[derive(Debug, Clone)]
pub struct Prod {
    /// Left-hand side nonterminal.
    pub lhs: u32,
    /// Right-hand side.
    pub rhs: Vec<Sym>,
}

/// Nonterminals with a production whose symbols are all terminals for
/// which `term_ok` holds or such nonterminals (a least fixpoint, computed
/// in time linear in the grammar size with per-production counters).
pub fn derivable(
    n_nts: usize,
    prods: &[(u32, &[Sym])],
    term_ok: impl Fn(u32) -> bool,
) -> Vec<bool> {
    let mut known = vec![false; n_nts];
    let mut missing: Vec<usize> = Vec::with_capacity(prods.len());
    let mut uses: Vec<Vec<u32>> = vec![Vec::new(); n_nts];
    let mut queue: Vec<u32> = Vec::new();
    for (pi, (lhs, rhs)) in prods.iter().enumerate() {
        let dead = rhs.iter().any(|s| matches!(*s, Sym::T(t) if !term_ok(t)));
        let mut count = 0;
        for s in *rhs {
            if let Sym::N(n) = *s {
                count += 1;
                uses[n as usize].push(u32::try_from(pi).unwrap_or(u32::MAX));
            }
        }
        missing.push(if dead { usize::MAX } else { count });
        if count == 0 && !dead && !known[*lhs as usize] {
            known[*lhs as usize] = true;
            queue.push(*lhs);
        }
    }
    while let Some(n) = queue.pop() {
        for &pi in &uses[n as usize] {
            let m = &mut missing[pi as usize];
            if *m == usize::MAX || *m == 0 {
                continue;
            }
            *m -= 1;
            let lhs = prods[pi as usize].0;
            if *m == 0 && !known[lhs as usize] {
                known[lhs as usize] = true;
                queue.push(lhs);
            }
        }
    }
    known
}

/// A grammar in the engine's form.
#[derive(Debug, Clone, Default)]
pub struct Ir {
    /// Terminals.
    pub terms: Vec<Term>,
    /// Nonterminal names (generated helpers are named `rule__n`).
    pub nonterms: Vec<String>,
    /// Productions.
    pub prods: Vec<Prod>,
    /// The start nonterminal.
    pub start: u32,
    /// Terminals allowed (and discarded) between any two lexemes.
    pub ignore: Vec<u32>,
    /// Warnings about the grammar (unused rules, unproductive rules, ...).
    pub warnings: Vec<String>,
}

impl Ir {
    /// Nonterminals that derive at least one finite string.
    pub fn productive(&self) -> Vec<bool> {
        let term_ok: Vec<bool> = self.terms.iter().map(Term::producible).collect();
        let prods: Vec<(u32, &[Sym])> = self
            .prods
            .iter()
            .map(|p| (p.lhs, p.rhs.as_slice()))
            .collect();
        derivable(self.nonterms.len(), &prods, |t| term_ok[t as usize])
    }

    /// Nonterminals reachable from the start.
    pub fn reachable(&self) -> Vec<bool> {
        let mut seen = vec![false; self.nonterms.len()];
        let mut by_lhs: Vec<Vec<usize>> = vec![Vec::new(); self.nonterms.len()];
        for (i, p) in self.prods.iter().enumerate() {
            by_lhs[p.lhs as usize].push(i);
        }
        let mut stack = vec![self.start];
        seen[self.start as usize] = true;
        while let Some(n) = stack.pop() {
            for &pi in &by_lhs[n as usize] {
                for s in &self.prods[pi].rhs {
                    if let Sym::N(m) = *s
                        && !seen[m as usize]
                    {
                        seen[m as usize] = true;
                        stack.push(m);
                    }
                }
            }
        }
        seen
    }

    /// Drops productions that use unproductive symbols (they can never
    /// complete), so that a non-empty Earley state always has a completion.
    pub fn remove_unproductive(&mut self) {
        let productive = self.productive();
        let term_ok: Vec<bool> = self.terms.iter().map(Term::producible).collect();
        self.prods.retain(|p| {
            p.rhs.iter().all(|s| match *s {
                Sym::T(t) => term_ok[t as usize],
                Sym::N(n) => productive[n as usize],
            })
        });
    }
}
