//! Mask latency smoke check on a synthetic 128k vocabulary (ignored by
//! default; speed is measured, never asserted). Run with
//! `cargo test --release -p nemocore-core --test grammar_perf -- --ignored --nocapture`.

#![allow(
    clippy::unwrap_used,
    clippy::cast_possible_truncation,
    clippy::cast_precision_loss,
    clippy::cast_sign_loss,
    clippy::print_stdout,
    reason = "test helpers: a failed unwrap is a failed test; synthetic data and quantiles"
)]

mod grammar_support;

use std::sync::Arc;
use std::time::Instant;

use grammar_support::JSON_LARK;
use nemocore_core::grammar::{Grammar, GrammarOptions, Matcher, TokenTable};

/// 128k distinct tokens, shaped roughly like a BPE vocabulary: all single
/// bytes, ~5% short punctuation runs (1-4 bytes), digit runs of 1-3,
/// words of 2-10 letters with or without a leading space, and some
/// two-character UTF-8 pieces.
fn vocab() -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
    let mut seen: std::collections::HashSet<Vec<u8>> = v.iter().cloned().collect();
    for n in 0..1000 {
        for t in [format!("{n}"), format!("{n:02}"), format!("{n:03}")] {
            if seen.insert(t.as_bytes().to_vec()) {
                v.push(t.into_bytes());
            }
        }
    }
    let mut x: u64 = 0x1234_5678;
    let punct = b"{}[]\":,. \n\t-_()=+*/#'";
    while v.len() < 128_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let kind = (x >> 8) % 100;
        let mut t = Vec::new();
        if kind < 5 {
            for k in 0..=((x % 4) as usize) {
                t.push(punct[(x >> (16 + 5 * k)) as usize % punct.len()]);
            }
        } else if kind < 10 {
            let c = char::from_u32(0xC0 + (x >> 20) as u32 % 0x500).unwrap_or('é');
            t.extend_from_slice(c.to_string().as_bytes());
            t.extend_from_slice(c.to_string().as_bytes());
        } else {
            if kind % 2 == 0 {
                t.push(b' ');
            }
            for k in 0..2 + (x % 9) as usize {
                t.push(b'a' + ((x >> (16 + 3 * k)) % 26) as u8);
            }
        }
        if seen.insert(t.clone()) {
            v.push(t);
        }
    }
    v
}

fn run(name: &str, g: Grammar, doc: &[u8], table: &TokenTable, vocab: &[Vec<u8>]) {
    let g = Arc::new(g);
    let mut m = Matcher::new(g, b"", None).unwrap();
    let mut mask = vec![0u32; table.vocab_size().div_ceil(32)];
    let mut times = Vec::new();
    let mut at = 0;
    while at < doc.len() {
        let t0 = Instant::now();
        m.fill_mask(table, &mut mask);
        times.push(t0.elapsed().as_secs_f64() * 1e6);
        if std::env::var("GRAMMAR_PERF_SLOW").is_ok() && times[times.len() - 1] > 2000.0 {
            println!("slow at {:?}", String::from_utf8_lossy(&doc[..at]));
        }
        let (id, len) = vocab
            .iter()
            .enumerate()
            .filter(|(_, b)| doc[at..].starts_with(b))
            .map(|(i, b)| (i, b.len()))
            .max_by_key(|&(_, l)| l)
            .unwrap();
        assert!(
            mask[id / 32] >> (id % 32) & 1 == 1,
            "{name}: token {id} at {at}"
        );
        assert!(m.accept_bytes(&vocab[id]));
        at += len;
    }
    let first = times[0];
    times.sort_by(f64::total_cmp);
    let q = |p: f64| times[((times.len() - 1) as f64 * p) as usize];
    println!(
        "{name}: {} masks, first {first:.0} us, median {:.1} us, p90 {:.1} us, p99 {:.1} us, max {:.1} us",
        times.len(),
        q(0.5),
        q(0.9),
        q(0.99),
        q(1.0)
    );
}

#[test]
#[ignore = "timing smoke check; run in release with --ignored --nocapture"]
fn mask_latency_128k() {
    let vocab = vocab();
    let n = vocab.len();
    let t0 = Instant::now();
    let table = TokenTable::new(vocab.clone(), &[], &[], n).unwrap();
    println!(
        "table: {n} tokens in {:.1} ms",
        t0.elapsed().as_secs_f64() * 1e3
    );
    let doc = br#"{"name": "nemocore grammar engine", "values": [1, 2.5, -3e2, true, false, null], "nested": {"a": {"b": ["x", "y", "z"]}, "text": "a longer string value with several words in it"}}"#;
    run(
        "json",
        Grammar::from_lark(JSON_LARK).unwrap(),
        doc,
        &table,
        &vocab,
    );
    let repeats = std::env::var("GRAMMAR_PERF_REPEATS").map_or(1, |v| v.parse().unwrap());
    for _ in 0..repeats {
        run(
            "json (again, warm cache)",
            Grammar::from_lark(JSON_LARK).unwrap(),
            doc,
            &table,
            &vocab,
        );
    }
    if std::env::var("GRAMMAR_PERF_ONLY").is_ok_and(|v| v == "json") {
        return;
    }
    let py = "start: (_NEWLINE | stmt)*\nstmt: simple _NEWLINE | compound\nsimple: NAME \"=\" expr | \"pass\" | \"return\" expr\ncompound: \"if\" expr \":\" suite | \"def\" NAME \"(\" [NAME (\",\" NAME)*] \")\" \":\" suite\nsuite: simple _NEWLINE | _NEWLINE _INDENT stmt+ _DEDENT\nexpr: expr (\"+\"|\"-\"|\"*\"|\"<\") atom | atom\natom: NAME | NUMBER | \"(\" expr \")\" | atom \"(\" [expr (\",\" expr)*] \")\"\nNAME: /[a-zA-Z_]\\w*/\nNUMBER: /\\d+/\n_NEWLINE: ( /\\r?\\n[\\t ]*/ | COMMENT )+\nCOMMENT: /#[^\\n]*/\n%ignore /[\\t \\f]+/\n%ignore COMMENT\n%declare _INDENT _DEDENT\n";
    let opts = GrammarOptions {
        python_indenter: true,
        ..GrammarOptions::default()
    };
    let src = b"def f(a, b):\n    x = a + b\n    if x < 10:\n        return x * 2\n    return f(x - 1, b)\n\ny = f(3, 4)\n";
    run(
        "python",
        Grammar::from_lark_with(py, &opts).unwrap(),
        src,
        &table,
        &vocab,
    );
    let (builtin, _) = nemocore_core::grammar_text::builtin("python").unwrap();
    let t0 = Instant::now();
    let full = Grammar::from_lark_with(builtin, &opts).unwrap();
    println!(
        "built-in Python grammar compiled in {:.1} ms",
        t0.elapsed().as_secs_f64() * 1e3
    );
    let code = b"import os\n\n\nclass Box:\n    def __init__(self, items, limit=10):\n        self.items = [x for x in items if x is not None]\n        self.limit = limit\n\n    def total(self) -> int:\n        return sum(i * 2 for i in self.items[: self.limit])\n";
    run("python (built-in grammar)", full, code, &table, &vocab);
    let g = Arc::new(Grammar::from_lark(JSON_LARK).unwrap());
    let suffix = format!("{}[]]", "[1, \"two\", [3, [4.5, \"x\"]]], ".repeat(600));
    let t0 = Instant::now();
    let m = Matcher::new(g, b"[", Some(suffix.as_bytes())).unwrap();
    println!(
        "right quotient by {} bytes built in {:.1} ms",
        suffix.len(),
        t0.elapsed().as_secs_f64() * 1e3
    );
    drop(m);
}
