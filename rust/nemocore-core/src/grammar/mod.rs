//! Grammar-constrained decoding: a Lark-syntax front end, terminals compiled
//! to DFAs, an Earley recognizer that lexes inside the parser byte by byte,
//! an incremental [`Matcher`] with rollback, and token masks over a
//! vocabulary ([`TokenTable`]).
//!
//! Design notes (`/work/shared/spec/decoding.md` section 4; the quotient
//! construction there is nemocore's own, not the paper's code):
//! - Lexing is *dynamic*: a terminal may end wherever its regex matches, so
//!   every split the grammar allows is considered (lark's Earley
//!   `lexer="dynamic_complete"`), and terminals span LLM-token boundaries.
//! - With [`GrammarOptions::python_indenter`] the lexer is instead lark's
//!   `basic` longest-match lexer followed by the Python indenter (INDENT /
//!   DEDENT from indentation, newlines ignored inside brackets), as with
//!   `lark.Lark(..., parser="earley", lexer="basic", postlex=PythonIndenter())`.
//! - Early rejection is exact for the dynamic mode: the state is empty iff
//!   the input is not a viable prefix. In Python mode a pending lexeme is
//!   viable if some live terminal is acceptable now (maximal munch may
//!   later split it otherwise), which over-approximates only inside one
//!   lexeme.
//! - Fill-in-the-middle: [`Matcher::new`] with a suffix `r` runs on the
//!   right-quotient grammar `L / r` (built from the chart of the reversed
//!   grammar on `reverse(r)`, lexemes joining the middle and `r` included),
//!   so in the dynamic mode masks allow exactly the middles some text can
//!   join to `r`, and termination is exact. In Python mode termination is
//!   exact (the suffix is fed to a scratch state) and masks use the left
//!   context only.
//! - Not supported: rule templates, `%override`/`%extend`, imports other
//!   than `common`, look-around and back-references in regexes, terminal
//!   priorities beyond longest-match ties; lark's greedy `dynamic` lexer
//!   (it tries only the regex's own match at each position, so for
//!   `start: A A` with `A: /a+/` lark rejects `"aa"`, which this engine and
//!   lark's `dynamic_complete` accept).

mod common;
mod dfa;
mod dynamic;
mod earley;
mod explore;
mod fallback;
mod ir;
mod lark;
mod mask;
mod matcher;
mod memo;
mod python;
mod quotient;
mod state;
mod trie;
mod walk;

use std::sync::{Arc, OnceLock};

use crate::error::Result;
use dfa::Dfa;
use earley::Tables;
use ir::Ir;

pub use mask::TokenTable;
pub use matcher::Matcher;

/// How to compile a grammar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrammarOptions {
    /// The start rule (default `"start"`).
    pub start: String,
    /// Lex with lark's longest-match lexer and the Python indenter
    /// (`_NEWLINE`, `_INDENT`, `_DEDENT`; brackets `LPAR RPAR LSQB RSQB
    /// LBRACE RBRACE`; tab width 8).
    pub python_indenter: bool,
}

impl Default for GrammarOptions {
    fn default() -> Self {
        GrammarOptions {
            start: "start".to_string(),
            python_indenter: false,
        }
    }
}

/// Everything compiled from one grammar (shared, immutable).
#[derive(Debug)]
pub(crate) struct Compiled {
    pub(crate) ir: Ir,
    pub(crate) tables: Tables,
    ignored: Vec<bool>,
    pub(crate) python: Option<python::PyTerms>,
    /// Whether ignored lexemes may end the input (false for right-quotient
    /// grammars, which spell out where they may).
    pub(crate) trailing_ignore: bool,
    /// Masks of the states seen so far (dynamic mode).
    pub(crate) memo: memo::MaskMemo,
}

impl Compiled {
    pub(crate) fn new(ir: Ir, python: Option<python::PyTerms>) -> Compiled {
        let tables = Tables::new(&ir);
        let mut ignored = vec![false; ir.terms.len()];
        for &t in &ir.ignore {
            ignored[t as usize] = true;
        }
        Compiled {
            ir,
            tables,
            ignored,
            python,
            trailing_ignore: true,
            memo: memo::MaskMemo::default(),
        }
    }

    pub(crate) fn dfa(&self, term: u32) -> Option<&Dfa> {
        self.ir.terms[term as usize].dfa.as_ref()
    }
    pub(crate) fn is_ignored(&self, term: u32) -> bool {
        self.ignored[term as usize]
    }
}

/// A compiled grammar: immutable, cheap to share (`Send + Sync`).
#[derive(Debug)]
pub struct Grammar {
    pub(crate) compiled: Arc<Compiled>,
    /// The reversed grammar, built on the first right quotient.
    reversed: OnceLock<Option<Arc<Compiled>>>,
}

impl Grammar {
    /// Compiles Lark grammar text with the default options.
    pub fn from_lark(src: &str) -> Result<Grammar> {
        Self::from_lark_with(src, &GrammarOptions::default())
    }

    /// Compiles Lark grammar text.
    ///
    /// Errors are [`crate::Error::Grammar`] with the 1-based line and column
    /// of the problem in `src`.
    pub fn from_lark_with(src: &str, opts: &GrammarOptions) -> Result<Grammar> {
        let ir = lark::lower::lower(src, &opts.start, opts.python_indenter)?;
        let python = if opts.python_indenter {
            Some(python::PyTerms::new(&ir)?)
        } else {
            None
        };
        Ok(Grammar {
            compiled: Arc::new(Compiled::new(ir, python)),
            reversed: OnceLock::new(),
        })
    }

    /// Whether the whole `input` is a sentence of the grammar.
    pub fn accepts(&self, input: &[u8]) -> bool {
        let mut s = state::State::new(&self.compiled);
        input.iter().all(|&b| s.push(&self.compiled, b)) && s.can_end(&self.compiled)
    }

    /// Whether `input` is a viable prefix (some continuation is a sentence).
    pub fn accepts_prefix(&self, input: &[u8]) -> bool {
        let mut s = state::State::new(&self.compiled);
        input.iter().all(|&b| s.push(&self.compiled, b))
    }

    /// The compiled grammar of `L / suffix` (dynamic lexing mode only;
    /// `None` in Python mode). Errors if no sentence ends with `suffix`.
    pub(crate) fn right_quotient(&self, suffix: &[u8]) -> Result<Option<Arc<Compiled>>> {
        if self.compiled.python.is_some() {
            return Ok(None);
        }
        let rev = self
            .reversed
            .get_or_init(|| quotient::reversed(&self.compiled).ok().map(Arc::new));
        let Some(rev) = rev else {
            return Ok(None);
        };
        quotient::right_quotient(&self.compiled, rev, suffix).map(|c| Some(Arc::new(c)))
    }

    /// Warnings found while compiling (unused or unproductive rules,
    /// unused terminals, declared terminals nothing produces).
    pub fn warnings(&self) -> &[String] {
        &self.compiled.ir.warnings
    }

    /// Terminal names, in id order (for diagnostics).
    pub fn terminal_names(&self) -> Vec<&str> {
        self.compiled
            .ir
            .terms
            .iter()
            .map(|t| t.name.as_str())
            .collect()
    }
}
