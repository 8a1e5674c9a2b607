//! Fill-in-the-middle on small CFGs against brute-force membership
//! (decoding.md 4.10 item 3): for left and right contexts `l`, `r` and
//! middles `m`, EOS is allowed iff `l m r` is in L, and every middle prefix
//! that can still be completed is allowed by the mask (soundness). The
//! completeness gap (allowed prefixes with no completion; masks use the
//! left context only) is measured and printed, not asserted.

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
        let members: HashSet<Vec<u8>> = strings(alphabet, 7)
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
                let Ok(mut m) = Matcher::new(Arc::clone(&g), &l, Some(&r)) else {
                    assert!(
                        !members.iter().any(|s| s.starts_with(&l)),
                        "{name}: left {l:?} rejected"
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
        "FIM masks: {allowed_total} allowed (middle, byte) pairs, {gap_total} of them not completable to l m x r (left-only masks)"
    );
}
