//! Python mode: longest-match lexing plus the indenter, on a small
//! indented grammar and on the built-in Python 3 grammar.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a failed unwrap is a failed test"
)]

mod grammar_support;

use std::sync::Arc;

use nemocore_core::grammar::{Grammar, GrammarOptions, Matcher, TokenTable};
use nemocore_core::grammar_text;

fn python_opts() -> GrammarOptions {
    GrammarOptions {
        python_indenter: true,
        ..GrammarOptions::default()
    }
}

const SMALL: &str = r#"
start: (_NEWLINE | stmt)*
stmt: simple _NEWLINE | compound
simple: NAME "=" expr | "pass" | "return" expr
compound: "if" expr ":" suite ["else" ":" suite] | "def" NAME "(" [NAME ("," NAME)*] ")" ":" suite
suite: simple _NEWLINE | _NEWLINE _INDENT stmt+ _DEDENT
expr: expr ("+" | "-" | "*" | "<") atom | atom
atom: NAME | NUMBER | "(" expr ")" | "[" [expr ("," expr)*] "]" | atom "(" [expr ("," expr)*] ")"
NAME: /[a-zA-Z_]\w*/
NUMBER: /\d+/
COMMENT: /#[^\n]*/
_NEWLINE: ( /\r?\n[\t ]*/ | COMMENT )+
%ignore /[\t \f]+/
%ignore /\\[\t \f]*\r?\n/
%ignore COMMENT
%declare _INDENT _DEDENT
"#;

fn small() -> Grammar {
    Grammar::from_lark_with(SMALL, &python_opts()).unwrap()
}

#[test]
fn indentation_drives_blocks() {
    let g = small();
    let ok = [
        "x = 1\n",
        "if x:\n    y = 2\n",
        "if x:\n    y = 2\nz = 3\n",
        "def f(a, b):\n    if a < b:\n        return a\n    return b\n",
        "if x:\n\n    # comment\n    y = 2\n\n",
        "if x:\n\ty = 2\n",
        "if a:\n    if b:\n        pass\nx = 1\n",
        "x = 1 # trailing\n",
        "if x: pass\nelse: pass\n",
    ];
    for src in ok {
        assert!(g.accepts(src.as_bytes()), "{src:?}");
    }
    let bad = [
        "if x:\ny = 2\n",              // missing indent
        "x = 1\n    y = 2\n",          // unexpected indent
        "if x:\n    y = 2\n  z = 3\n", // dedent to no level
        "x = 1",                       // lark's grammar needs the final newline
        "ifx:\n    pass\n",            // keywords are not prefixes of names
    ];
    for src in bad {
        assert!(!g.accepts(src.as_bytes()), "{src:?}");
    }
}

#[test]
fn brackets_join_lines() {
    let g = small();
    assert!(g.accepts(b"x = f(1,\n      2)\n"));
    assert!(g.accepts(b"x = [1,\n2,\n    3]\n"));
    assert!(g.accepts(b"x = 1 + \\\n  2\n"));
    assert!(!g.accepts(b"x = f(1,\n2\n"));
    assert!(!g.accepts(b"x = 1)\n"));
}

#[test]
fn prefixes_are_viable_until_an_error() {
    let g = small();
    let src = b"def f(a):\n    if a:\n        return a\n    return f(a - 1)\n";
    for n in 0..=src.len() {
        assert!(
            g.accepts_prefix(&src[..n]),
            "{:?}",
            String::from_utf8_lossy(&src[..n])
        );
    }
    assert!(!g.accepts_prefix(b"x = = "));
    assert!(!g.accepts_prefix(b"x = 1\n    y"));
    assert!(!g.accepts_prefix(b"def 1"));
}

#[test]
fn masks_match_brute_force_in_python_mode() {
    let g = Arc::new(small());
    let vocab: Vec<Vec<u8>> = [
        "<eos>", "x", " =", " ", "1", "\n", "    ", "if", "if ", ":", ":\n", "pass", "\n    ", "(",
        ")", "f", "def", " f", "a", "+", " 1", "\n\n", "#", "return", " x", "ret", "urn", "el",
        "se", "x1",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    let n = vocab.len();
    let table = TokenTable::new(vocab, &[], &[0], n).unwrap();
    let doc: &[&str] = &[
        "def", " f", "(", "x", ")", ":", "\n    ", "if", " x", ":\n", "    ", "    ", "pass",
        "\n    ", "return", " x", "\n", "x", " =", " 1", "\n",
    ];
    let mut m = Matcher::new(Arc::clone(&g), b"", None).unwrap();
    let mut mask = vec![0u32; n.div_ceil(32)];
    let mut masks = Vec::new();
    for piece in doc {
        m.fill_mask(&table, &mut mask);
        masks.push(mask.clone());
        let what = format!("after {} tokens", masks.len() - 1);
        grammar_support::assert_mask_is_brute_force(&mut m, &table, &mask, 1, &what);
        assert_eq!(mask[0] & 1 == 1, m.can_terminate());
        assert!(m.accept_bytes(piece.as_bytes()), "{piece:?}");
    }
    assert!(m.can_terminate());
    // Rolling back gives the masks seen on the way.
    for back in 1..doc.len() {
        let mut r = m.clone();
        r.rollback(back).unwrap();
        r.fill_mask(&table, &mut mask);
        assert_eq!(mask, masks[doc.len() - back], "rollback {back}");
    }
}

#[test]
fn builtin_python_grammar_accepts_real_code() {
    let (src, indenter) = grammar_text::builtin("python").unwrap();
    assert!(indenter);
    let g = Grammar::from_lark_with(src, &python_opts()).unwrap();
    let programs = [
        "import os\nfrom typing import List as L\n",
        "def f(x: int, *args, y=2, **kw) -> int:\n    \"\"\"Doc.\"\"\"\n    return x + y\n",
        "class A(B):\n    def m(self):\n        return [i * 2 for i in range(10) if i % 2]\n",
        "for i, (a, b) in enumerate(pairs):\n    print(f'{i}: {a}')\nelse:\n    pass\n",
        "try:\n    x = {'a': 1, **d}\nexcept (KeyError, ValueError) as e:\n    raise RuntimeError('x') from e\nfinally:\n    del x\n",
        "with open(p) as f, lock:\n    data = f.read()\n",
        "x = (1 +\n     2)\n# comment\n\nwhile True:\n    break\n",
        "lambda_ = lambda a, b=1: a if b else -a\n",
        "@decorator\nasync def g():\n    await h()\n",
        "match = 1\nmatch x:\n    case [1, 2]:\n        pass\n    case _:\n        pass\n",
    ];
    for p in programs {
        assert!(g.accepts(p.as_bytes()), "{p:?}");
    }
    let invalid = [
        "def f(:\n    pass\n",
        "x = (1,\n",
        "if x:\npass\n",
        "return return\n",
        "x = 1 +\n",
        "class:\n    pass\n",
    ];
    for p in invalid {
        assert!(!g.accepts(p.as_bytes()), "{p:?}");
    }
}

#[test]
fn python_mode_needs_a_newline_terminal() {
    let err = Grammar::from_lark_with("start: \"a\"\n", &python_opts()).unwrap_err();
    assert_eq!(err.kind(), "grammar");
}

/// Words, space-prefixed words and punctuation: subtrees large enough for
/// the walk's cached subtree splits.
fn big_vocab() -> Vec<Vec<u8>> {
    let mut vocab: Vec<Vec<u8>> = vec![b"<eos>".to_vec()];
    let letters = [b'a', b'b', b'i', b'f', b'x'];
    for len in 1..=4u32 {
        for n in 0..5usize.pow(len) {
            let word: Vec<u8> = (0..len).map(|k| letters[n / 5usize.pow(k) % 5]).collect();
            vocab.push(word.clone());
            vocab.push([b" ".as_slice(), &word].concat());
        }
    }
    for p in [
        "(", ")", ":", ":\n", "\n", "\n    ", " =", " = ", "1", " 1", "+", " + ", "pass", "\n\n",
        "    ",
    ] {
        vocab.push(p.as_bytes().to_vec());
    }
    vocab
}

#[test]
fn big_vocabulary_masks_match_brute_force() {
    let g = Arc::new(small());
    let vocab = big_vocab();
    let n = vocab.len();
    let table = TokenTable::new(vocab, &[], &[0], n).unwrap();
    let doc = [
        "if", " x", ":\n", "    ", "ab", " =", " 1", "\n", "ab", " = ", "bf", "(", "x", ")", "\n",
    ];
    let mut m = Matcher::new(g, b"", None).unwrap();
    let mut mask = vec![0u32; n.div_ceil(32)];
    for piece in doc {
        m.fill_mask(&table, &mut mask);
        let what = format!("before {piece:?}");
        grammar_support::assert_mask_is_brute_force(&mut m, &table, &mask, 1, &what);
        assert!(m.accept_bytes(piece.as_bytes()), "{piece:?}");
    }
}

#[test]
fn fill_in_the_middle_in_python_mode() {
    let g = Arc::new(small());
    let mut m = Matcher::new(g, b"def f(x):\n    y = ", Some(b"\n    return y\n")).unwrap();
    assert!(!m.can_terminate());
    assert!(m.accept_bytes(b"x +"));
    assert!(!m.can_terminate());
    assert!(m.accept_bytes(b" 1"));
    assert!(m.can_terminate());
    // A blank line before the suffix is fine; an unclosed bracket is not.
    assert!(m.accept_bytes(b"\n"));
    assert!(m.can_terminate());
    m.rollback(1).unwrap();
    assert!(m.accept_bytes(b" * (2"));
    assert!(!m.can_terminate());
    assert!(m.accept_bytes(b")"));
    assert!(m.can_terminate());
}

/// Random programs through one grammar and a prepared table: masks of
/// states met before come from the grammar's memo (statements after the
/// first look alike), and lexer sets after a fallback lexeme from the
/// table; every mask must still be exact.
#[test]
fn memoised_masks_match_brute_force_across_programs() {
    let g = Arc::new(small());
    let vocab = big_vocab();
    let n = vocab.len();
    let table = TokenTable::new(vocab, &[], &[0], n).unwrap();
    table.prepare(&g);
    let mut mask = vec![0u32; n.div_ceil(32)];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for program in 0..6 {
        let mut m = Matcher::new(Arc::clone(&g), b"", None).unwrap();
        for step in 0..14 {
            m.fill_mask(&table, &mut mask);
            let what = format!("program {program}, step {step}");
            grammar_support::assert_mask_is_brute_force(&mut m, &table, &mask, 1, &what);
            let allowed: Vec<usize> = (1..n)
                .filter(|&i| mask[i / 32] >> (i % 32) & 1 == 1)
                .collect();
            if allowed.is_empty() {
                break;
            }
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let pick = allowed[usize::try_from(x % allowed.len() as u64).unwrap()];
            assert!(m.accept_bytes(table.token_bytes(u32::try_from(pick).unwrap()).unwrap()));
        }
    }
}
