//! Python mode: the first-byte split of a pending lexeme that is complete
//! as it stands (after `=`, a name, a number).
//!
//! Maximal munch decides every token by its first byte. A byte some live
//! thread takes continues the pending lexeme: those tokens are decided by
//! the live threads' sets after a fallback (`mask.rs`) and the walk. Any
//! other byte ends the lexeme right here and starts a new one, so those
//! tokens are decided exactly as at any lexeme start: by the start-state
//! sets of the terminals the parser takes after this lexeme, which are the
//! same for every state with that parser (cached in the grammar's memo),
//! instead of a walk below each of those first bytes.

use std::sync::Arc;

use super::Compiled;
use super::dfa::DEAD;
use super::mask::TokenTable;
use super::memo::{FreshSets, MemoInner};
use super::walk::merge;

/// ORs into `mask` the tokens starting a new lexeme that the parser takes,
/// and returns the trie ranges the walk must decide. `threads`: the live
/// `(terminal, DFA state)` threads of the pending lexeme; `live`: their
/// ranges after a fallback, sorted and disjoint (`None`: walk their
/// first-byte subtrees whole);
/// `after`: which terminals (by id) the parser takes after the lexeme ends
/// here, and the lexer's terminals (`None`: ending here fails).
pub(crate) fn split(
    g: &Compiled,
    table: &TokenTable,
    mask: &mut [u32],
    threads: &[(u32, u32)],
    live: Option<&[(u32, u32)]>,
    after: Option<(&[bool], &[u32])>,
    memo: Option<&mut MemoInner>,
) -> Vec<(u32, u32)> {
    let trie = &table.trie;
    let continues = |b: u8| {
        threads
            .iter()
            .any(|&(t, st)| g.dfa(t).is_some_and(|d| d.next(st, b) != DEAD))
    };
    let cont: Vec<u8> = (0..=255u8).filter(|&b| continues(b)).collect();
    let mut cont_spans: Vec<(u32, u32)> = cont
        .iter()
        .map(|&b| trie.first_byte_span(b))
        .filter(|s| s.0 < s.1)
        .collect();
    cont_spans.sort_unstable();
    let mut ranges = Vec::new();
    match live {
        Some(live) => clip(live, &cont_spans, &mut ranges),
        None => ranges.extend_from_slice(&cont_spans),
    }
    if let Some((after, lexable)) = after {
        let fresh = fresh_sets(g, table, mask.len(), after, lexable, memo);
        let all = (1, u32::try_from(trie.len()).unwrap_or(u32::MAX));
        clip(&fresh.ranges, &complement(&cont_spans, all), &mut ranges);
        let mut cont_mask = vec![0u32; mask.len()];
        for &b in &cont {
            for (c, w) in cont_mask.iter_mut().zip(table.first_byte_mask(b)) {
                *c |= *w;
            }
        }
        for ((m, f), c) in mask.iter_mut().zip(&fresh.inside).zip(&cont_mask) {
            *m |= *f & !*c;
        }
    }
    merge(&mut ranges);
    ranges
}

/// The start-state sets of the terminals the parser takes (`after`).
/// Only those: a token whose new lexeme is another terminal is rejected
/// when that lexeme ends, so its tokens need no walk.
fn fresh_sets(
    g: &Compiled,
    table: &TokenTable,
    words: usize,
    after: &[bool],
    lexable: &[u32],
    memo: Option<&mut MemoInner>,
) -> Arc<FreshSets> {
    let taken: Vec<u32> = lexable
        .iter()
        .copied()
        .filter(|&t| after[t as usize])
        .collect();
    let build = || {
        let mut fresh = FreshSets {
            inside: vec![0u32; words],
            ranges: Vec::new(),
        };
        for &term in &taken {
            let Some(dfa) = g.dfa(term) else { continue };
            let sets = table.sets(&g.ir.terms[term as usize].pattern, 0, false, dfa);
            for (f, w) in fresh.inside.iter_mut().zip(&sets.inside) {
                *f |= *w;
            }
            fresh.ranges.extend_from_slice(&sets.ranges);
        }
        merge(&mut fresh.ranges);
        fresh
    };
    let Some(memo) = memo else {
        return Arc::new(build());
    };
    let mut key = vec![0u32; after.len().div_ceil(32)];
    for &t in &taken {
        key[t as usize / 32] |= 1 << (t % 32);
    }
    memo.fresh_sets(table.id, &key, build)
}

/// Appends to `out` the parts of `ranges` inside `spans` (both sorted and
/// disjoint).
fn clip(ranges: &[(u32, u32)], spans: &[(u32, u32)], out: &mut Vec<(u32, u32)>) {
    let mut j = 0;
    for &(lo, hi) in ranges {
        while j < spans.len() && spans[j].1 <= lo {
            j += 1;
        }
        let mut k = j;
        while k < spans.len() && spans[k].0 < hi {
            let (a, b) = (lo.max(spans[k].0), hi.min(spans[k].1));
            if a < b {
                out.push((a, b));
            }
            k += 1;
        }
    }
}

/// The parts of `all` outside `spans` (sorted and disjoint).
fn complement(spans: &[(u32, u32)], all: (u32, u32)) -> Vec<(u32, u32)> {
    let mut out = Vec::new();
    let mut at = all.0;
    for &(lo, hi) in spans {
        if at < lo {
            out.push((at, lo));
        }
        at = at.max(hi);
    }
    if at < all.1 {
        out.push((at, all.1));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_and_complement_of_preorder_ranges() {
        let spans = [(3, 6), (9, 12)];
        let mut out = Vec::new();
        clip(&[(1, 4), (5, 10), (11, 20), (30, 31)], &spans, &mut out);
        assert_eq!(out, vec![(3, 4), (5, 6), (9, 10), (11, 12)]);
        assert_eq!(complement(&spans, (1, 15)), vec![(1, 3), (6, 9), (12, 15)]);
        assert_eq!(complement(&[], (1, 15)), vec![(1, 15)]);
        assert_eq!(complement(&[(1, 15)], (1, 15)), vec![]);
    }
}
