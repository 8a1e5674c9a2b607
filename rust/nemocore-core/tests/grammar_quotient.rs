//! Fill-in-the-middle on small CFGs against brute-force membership
//! (decoding.md 4.10 item 3): for left and right contexts `l`, `r` and
//! middles `m`, EOS is allowed iff `l m r` is in L, and a middle byte is
//! allowed if some completion `x` makes `l m x r` a member (soundness).
//! The completeness gap (allowed bytes with no completion within the
//! enumeration bound) is printed.

#![allow(
    clippy::unwrap_used,
    clippy::print_stdout,
    reason = "test helpers: a failed unwrap is a failed test; the gap is reported"
)]

mod grammar_support;

use std::collections::HashSet;
use std::sync::Arc;

use grammar_support::{strings, test_cfgs};
use nemocore_core::grammar::{Grammar, Matcher, TokenTable};

const EOS: usize = 0;

#[test]
fn fim_termination_is_exact_and_masks_are_sound() {
    let alphabet = b"abc";
    let vocab: Vec<Vec<u8>> = vec![
        b"<eos>".to_vec(),
        b"a".to_vec(),
        b"b".to_vec(),
        b"c".to_vec(),
    ];
    let table = TokenTable::new(vocab, &[], &[0], 4).unwrap();
    let (mut allowed_total, mut gap_total) = (0usize, 0usize);
    for (name, cfg) in test_cfgs() {
        let g = Arc::new(Grammar::from_lark(&cfg.to_lark()).unwrap());
        let members: HashSet<Vec<u8>> = strings(alphabet, bound())
            .into_iter()
            .filter(|s| cfg.member(s))
            .collect();
        // Completable within the enumerated lengths: some x makes l p x r a member.
        let completable = |l: &[u8], p: &[u8], r: &[u8]| {
            members.iter().any(|s| {
                s.len() >= l.len() + p.len() + r.len()
                    && s.starts_with(&[l, p].concat())
                    && s.ends_with(r)
            })
        };
        for l in strings(alphabet, 2) {
            for r in strings(alphabet, 2) {
                // The matcher refuses contexts that no middle can join.
                let Ok(mut m) = Matcher::new(Arc::clone(&g), &l, Some(&r)) else {
                    assert!(
                        !completable(&l, &[], &r),
                        "{name}: l={l:?} r={r:?} rejected"
                    );
                    continue;
                };
                for mid in strings(alphabet, 2) {
                    m.reset();
                    let fed = mid.iter().take_while(|&&c| m.accept_bytes(&[c])).count();
                    let prefix = &mid[..fed];
                    if fed < mid.len() {
                        assert!(
                            !completable(&l, &mid[..=fed], &r),
                            "{name}: l={l:?} r={r:?} middle byte {fed} of {mid:?} rejected but completable"
                        );
                        continue;
                    }
                    let whole = [&l[..], prefix, &r[..]].concat();
                    assert_eq!(m.can_terminate(), cfg.member(&whole), "{name}: {whole:?}");
                    let mut mask = [0u32; 1];
                    m.fill_mask(&table, &mut mask);
                    assert_eq!(
                        mask[0] >> EOS & 1 == 1,
                        cfg.member(&whole),
                        "{name}: EOS for {whole:?}"
                    );
                    for (bit, &c) in alphabet.iter().enumerate() {
                        let allowed = mask[0] >> (bit + 1) & 1 == 1;
                        let next = [prefix, &[c]].concat();
                        let can = completable(&l, &next, &r);
                        assert!(
                            allowed || !can,
                            "{name}: l={l:?} m={next:?} r={r:?} completable but masked"
                        );
                        allowed_total += usize::from(allowed);
                        gap_total += usize::from(allowed && !can);
                    }
                }
            }
        }
    }
    println!(
        "FIM masks: {allowed_total} allowed (middle, byte) pairs, {gap_total} of them not completable to l m x r within the bound"
    );
}

/// Longest member enumerated (`GRAMMAR_FIM_BOUND`, default 7; raise it to
/// see the completeness gap shrink to 0 as completions may grow longer).
fn bound() -> usize {
    std::env::var("GRAMMAR_FIM_BOUND").map_or(7, |v| v.parse().unwrap())
}

/// With a lexical layer: lexemes join across the middle and the right
/// context (`a` + `a` is one `A`), `%ignore` at the junction. The oracle is
/// `Grammar::accepts` on the whole text (itself checked against lark).
#[test]
fn fim_with_lexemes_across_the_junction() {
    let src = "start: item (\",\" item)*\nitem: A | \"b\" A? | \"[\" start \"]\"\nA: /a+/\n%ignore \" \"\n";
    let g = Arc::new(Grammar::from_lark(src).unwrap());
    let alphabet = b"ab,[] ";
    let extensions = strings(alphabet, 3);
    let completable =
        |text: &[u8], r: &[u8]| extensions.iter().any(|x| g.accepts(&[text, x, r].concat()));
    let vocab: Vec<Vec<u8>> = std::iter::once(b"<eos>".to_vec())
        .chain(alphabet.iter().map(|&c| vec![c]))
        .collect();
    let table = TokenTable::new(vocab, &[], &[0], alphabet.len() + 1).unwrap();
    let (mut allowed_total, mut gap) = (0, 0);
    for (l, r) in [
        ("[a", "a]"),
        ("a, b", "a"),
        ("", " , a"),
        ("[", "]"),
        ("b", "b"),
        ("a ,", ""),
    ] {
        let (l, r) = (l.as_bytes(), r.as_bytes());
        let Ok(mut m) = Matcher::new(Arc::clone(&g), l, Some(r)) else {
            assert!(!completable(l, r), "{l:?} {r:?}");
            continue;
        };
        for mid in strings(alphabet, 2) {
            m.reset();
            if !mid.iter().all(|&c| m.accept_bytes(&[c])) {
                assert!(!completable(&[l, &mid].concat(), r));
                continue;
            }
            let text = [l, &mid].concat();
            assert_eq!(
                m.can_terminate(),
                g.accepts(&[&text, r].concat()),
                "{text:?} + {r:?}"
            );
            let mut mask = [0u32; 1];
            m.fill_mask(&table, &mut mask);
            for (bit, &c) in alphabet.iter().enumerate() {
                let allowed = mask[0] >> (bit + 1) & 1 == 1;
                let can = completable(&[&text[..], &[c]].concat(), r);
                assert!(
                    allowed || !can,
                    "{text:?} + {:?} masked but completable",
                    c as char
                );
                allowed_total += usize::from(allowed);
                gap += usize::from(allowed && !can);
            }
        }
    }
    println!(
        "FIM with lexemes: {allowed_total} allowed, {gap} not completable within 3 more bytes"
    );
}

/// A long right context (a JSON document of ~4 kB) builds its quotient
/// grammar in time and memory linear in its length.
#[test]
fn long_right_context_builds_quickly() {
    let src = "start: value\n?value: \"[\" [value (\",\" value)*] \"]\" | NUMBER | ESCAPED_STRING\n%import common (NUMBER, ESCAPED_STRING, WS)\n%ignore WS\n";
    let g = Arc::new(Grammar::from_lark(src).unwrap());
    let item = "[1, \"two\", [3, [4.5, \"x\"]]], ";
    let suffix = format!("{}[]]", item.repeat(150));
    let t0 = std::time::Instant::now();
    let mut m = Matcher::new(Arc::clone(&g), b"[", Some(suffix.as_bytes())).unwrap();
    let built = t0.elapsed();
    assert!(m.accept_bytes(b"[7, "));
    assert!(!m.can_terminate());
    assert!(m.accept_bytes(b"8],"));
    assert!(m.can_terminate());
    assert!(!m.accept_bytes(b"]"));
    println!("quotient by {} bytes built in {built:?}", suffix.len());
}
