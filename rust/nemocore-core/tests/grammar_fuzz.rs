//! Fuzzing with proptest: arbitrary grammar texts and inputs never panic,
//! and every grammar error carries a position inside the source.

#![allow(clippy::panic, reason = "test helpers: a panic is a failed test")]

use std::sync::Arc;

use nemocore_core::Error;
use nemocore_core::grammar::{Grammar, GrammarOptions, Matcher, TokenTable};
use proptest::prelude::*;

const FRAGMENTS: &[&str] = &[
    "start",
    "start:",
    ":",
    " ",
    "a",
    "b_",
    "?c",
    "_d",
    "A",
    "B",
    "_NEWLINE",
    "\"x\"",
    "\"yz\"i",
    "/[a-c]+/",
    "/(?<=x)/",
    "/\\d*/",
    "|",
    "(",
    ")",
    "[",
    "]",
    "?",
    "*",
    "+",
    "~ 2",
    "~ 1..3",
    "\n",
    "\n  | ",
    "%ignore ",
    "%import common.WS",
    "%import common (INT, WORD)",
    "%declare _INDENT _DEDENT",
    "A: \"a\"\n",
    "a: A | a A\n",
    "..",
    "\"a\"..\"c\"",
    "->",
    "x",
    ".2",
    "//c\n",
    "#",
    "\\",
    "{",
    "}",
    "\u{e9}",
    "\"",
];

const ATOMS: &[&str] = &[
    "\"a\"",
    "\"b\"",
    "\"ab\"",
    "/[ab]+/",
    "A",
    "s1",
    "(\"a\" | s1)",
    "\"c\"?",
    "\"a\"*",
    "[s1]",
    "s1+",
    "start",
    "\"x\"~1..2",
    "|",
    "",
];

/// Mostly valid grammars: random bodies over a fixed set of symbols.
fn valid_grammar() -> impl Strategy<Value = String> {
    let body =
        || prop::collection::vec(prop::sample::select(ATOMS), 0..6).prop_map(|v| v.join(" "));
    (body(), body())
        .prop_map(|(a, b)| format!("start: {a}\ns1: {b} | \"x\"\nA: \"a\"+\n%ignore \" \"\n"))
}

fn grammar_text() -> impl Strategy<Value = String> {
    prop_oneof![
        valid_grammar(),
        prop::collection::vec(prop::sample::select(FRAGMENTS), 0..24).prop_map(|v| v.concat()),
        "[ -~\n\u{e9}]{0,60}",
    ]
}

fn check_error(src: &str, err: &Error) {
    match err {
        Error::Grammar { line, column, .. } => {
            let lines = src.split('\n').count();
            assert!(
                *line >= 1 && *line <= lines + 1,
                "line {line} of {lines}: {err}"
            );
            assert!(*column >= 1, "{err}");
        }
        other => panic!("not a grammar error: {other}"),
    }
}

fn exercise(g: Grammar, input: &[u8]) {
    let _ = g.accepts(input);
    let _ = g.accepts_prefix(input);
    let vocab: Vec<Vec<u8>> = ["<e>", "a", "x", "yz", " ", "\n", "ab", "c"]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect();
    let table = TokenTable::new(vocab, &[], &[0], 9).unwrap_or_else(|e| panic!("{e}"));
    let g = Arc::new(g);
    if let Ok(mut m) = Matcher::new(Arc::clone(&g), &input[..input.len() / 2], Some(b"a")) {
        let mut mask = [0u32; 1];
        m.fill_mask(&table, &mut mask);
        let _ = m.accept_bytes(&input[input.len() / 2..]);
        let _ = m.can_terminate();
        m.fill_mask(&table, &mut mask);
        let _ = m.rollback(2);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_grammars_never_panic(src in grammar_text(), input in "[ -~\n]{0,12}", python in any::<bool>()) {
        let opts = GrammarOptions { python_indenter: python, ..GrammarOptions::default() };
        match Grammar::from_lark_with(&src, &opts) {
            Ok(g) => exercise(g, input.as_bytes()),
            Err(e) => check_error(&src, &e),
        }
    }
}
