//! `Grammar::accepts` / `accepts_prefix` against an independent CFG
//! reference, and the Lark front end's lexical features.

#![allow(
    clippy::unwrap_used,
    clippy::cast_possible_truncation,
    clippy::cast_precision_loss,
    clippy::cast_sign_loss,
    reason = "test helpers: a failed unwrap is a failed test; small synthetic data"
)]

mod grammar_support;

use grammar_support::{strings, test_cfgs};
use nemocore_core::grammar::{Grammar, GrammarOptions};

#[test]
fn accepts_matches_brute_force_membership() {
    for (name, cfg) in test_cfgs() {
        let g = Grammar::from_lark(&cfg.to_lark()).unwrap_or_else(|e| panic!("{name}: {e}"));
        for s in strings(b"abc", 5) {
            assert_eq!(
                g.accepts(&s),
                cfg.member(&s),
                "{name}: {:?}",
                String::from_utf8_lossy(&s)
            );
        }
    }
}

#[test]
fn accepts_prefix_matches_bounded_completion_search() {
    for (name, cfg) in test_cfgs() {
        let g = Grammar::from_lark(&cfg.to_lark()).unwrap();
        // Members up to length 7, computed once; s is viable iff some has it as a prefix.
        let members: Vec<Vec<u8>> = strings(b"abc", 7)
            .into_iter()
            .filter(|m| cfg.member(m))
            .collect();
        for s in strings(b"abc", 3) {
            assert_eq!(
                g.accepts_prefix(&s),
                members.iter().any(|m| m.starts_with(&s)),
                "{name}: {:?}",
                String::from_utf8_lossy(&s)
            );
        }
    }
}

#[test]
fn dynamic_lexing_admits_every_split() {
    let g = Grammar::from_lark("start: A A\nA: /a+/\n").unwrap();
    assert!(!g.accepts(b"a"));
    assert!(g.accepts(b"aa") && g.accepts(b"aaaa"));
    assert!(g.accepts_prefix(b"a") && !g.accepts_prefix(b"ab"));
}

#[test]
fn ignore_and_common_terminals() {
    let g = Grammar::from_lark(grammar_support::JSON_LARK).unwrap();
    for ok in [
        &b"{}"[..],
        b" { \"a\" : [1, -2.5e3, true, null, \"x\\\"y\"] } ",
        b"[[],[{}]]",
        b"\"\"",
        b"-0.5",
    ] {
        assert!(g.accepts(ok), "{}", String::from_utf8_lossy(ok));
    }
    for bad in [
        &b"{"[..],
        b"[1,]",
        b"{\"a\"}",
        b"tru",
        b"\"a\nb\"",
        b"1 2",
        b"",
    ] {
        assert!(!g.accepts(bad), "{}", String::from_utf8_lossy(bad));
    }
    assert!(g.accepts_prefix(b"{\"a\": [1, 2"));
    assert!(!g.accepts_prefix(b"{\"a\": [1, 2}"));
    assert!(g.accepts_prefix(b"{\"abc"));
}

#[test]
fn literals_ranges_repeats_and_flags() {
    let g = Grammar::from_lark(
        "start: \"ab\"i D~2..3 X? (\"-\" | \"+\")+ R\nD: \"0\"..\"9\"\nX: /x+/\nR: /[a-c]{2}/\n",
    )
    .unwrap();
    assert!(g.accepts(b"AB12-+ab"));
    assert!(g.accepts(b"aB123xx+cc"));
    assert!(!g.accepts(b"ab1-ab"));
    assert!(!g.accepts(b"ab1234-ab"));
    assert!(!g.accepts(b"ab12ab"));
}

#[test]
fn python_style_start_and_options() {
    let opts = GrammarOptions {
        start: "other".into(),
        python_indenter: false,
    };
    let g = Grammar::from_lark_with("start: \"a\"\nother: \"b\"+\n", &opts).unwrap();
    assert!(g.accepts(b"bbb") && !g.accepts(b"a"));
}

#[test]
fn unused_and_unproductive_rules_are_reported() {
    let g = Grammar::from_lark("start: \"a\" | loop\nloop: loop \"b\"\nunused: \"c\"\n").unwrap();
    let w = g.warnings().join("\n");
    assert!(w.contains("unused") && w.contains("loop"), "{w}");
    assert!(g.accepts(b"a") && !g.accepts(b"ab"));
}

#[test]
fn errors_carry_line_and_column() {
    let cases = [
        ("start: x\n", 1, 8),
        ("start: \"a\"\n\nb: C\n", 3, 4),
        ("start: A\nA: /[/\n", 2, 1),
        ("start: \"a\" |\n  | (\n", 2, 6),
    ];
    for (src, line, column) in cases {
        match Grammar::from_lark(src) {
            Err(nemocore_core::Error::Grammar {
                line: l, column: c, ..
            }) => {
                assert_eq!((l, c), (line, column), "{src:?}");
            }
            other => panic!("{src:?}: expected a grammar error, got {other:?}"),
        }
    }
}
