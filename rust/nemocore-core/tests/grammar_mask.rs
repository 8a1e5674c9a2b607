//! Token masks: sound and complete against brute force on small
//! vocabularies, EOS iff the matcher can terminate, rollback equivalence.

#![allow(
    clippy::unwrap_used,
    clippy::cast_possible_truncation,
    clippy::cast_precision_loss,
    clippy::cast_sign_loss,
    clippy::many_single_char_names,
    reason = "test helpers: a failed unwrap is a failed test; small synthetic data"
)]

mod grammar_support;

use std::sync::Arc;

use grammar_support::{JSON_LARK, test_cfgs};
use nemocore_core::grammar::{Grammar, Matcher, TokenTable};

const SPECIAL: u32 = 0;
const EOS: u32 = 1;

fn json_vocab() -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = vec![b"<s>".to_vec(), b"</s>".to_vec(), Vec::new()];
    for t in [
        "{", "}", "[", "]", "\"", ":", ",", " ", "a", "b", "1", "2", ".", "-", "e", "true", "tr",
        "ue", "null", "nu", "\"a", "a\"", "\":", "\",", "{\"", "\"}", "1,", "],", "\\", "\\\"",
        "\n", "12", ".5", "e+", "fal", "se", " {", "}}", "é", "ab", "\"\"", "[]", "{}", ", ", ": ",
        "0", "1.",
    ] {
        v.push(t.as_bytes().to_vec());
    }
    v.push(vec![0xC3]);
    v.push(vec![0xA9]);
    v.push(b"{".to_vec()); // a duplicate of another token's bytes
    v
}

fn table(vocab: Vec<Vec<u8>>, extra: usize) -> TokenTable {
    let n = vocab.len();
    TokenTable::new(vocab, &[SPECIAL], &[EOS], n + extra).unwrap()
}

fn bit(mask: &[u32], id: usize) -> bool {
    mask[id / 32] >> (id % 32) & 1 == 1
}

/// Small deterministic generator (xorshift), so failures reproduce.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// Checks one mask against brute force: token allowed iff `accept_bytes` takes it.
fn check_mask(m: &mut Matcher, t: &TokenTable, mask: &[u32]) {
    for id in 0..t.vocab_size() {
        let id32 = u32::try_from(id).unwrap();
        let expected = match t.token_bytes(id32) {
            _ if id32 == EOS => m.can_terminate(),
            _ if id32 == SPECIAL => false,
            None | Some([]) => false,
            Some(b) => {
                let b = b.to_vec();
                let ok = m.accept_bytes(&b);
                if ok {
                    m.rollback(1).unwrap();
                }
                ok
            }
        };
        assert_eq!(
            bit(mask, id),
            expected,
            "token {id} {:?}",
            t.token_bytes(id32)
        );
    }
}

/// Random walks over allowed tokens, checking every mask and rollback.
fn random_walks(g: &Arc<Grammar>, t: &TokenTable, seeds: u64, steps: usize) {
    for seed in 1..=seeds {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mut m = Matcher::new(Arc::clone(g), b"", None).unwrap();
        let mut mask = vec![0u32; t.vocab_size().div_ceil(32)];
        let mut history: Vec<(Vec<u8>, Vec<u32>)> = Vec::new();
        let mut consumed = Vec::new();
        for _ in 0..steps {
            m.fill_mask(t, &mut mask);
            check_mask(&mut m, t, &mask);
            history.push((consumed.clone(), mask.clone()));
            let allowed: Vec<usize> = (0..t.vocab_size())
                .filter(|&i| bit(&mask, i) && i != EOS as usize)
                .collect();
            if allowed.is_empty() {
                break;
            }
            let pick = allowed[rng.below(allowed.len())];
            let bytes = t
                .token_bytes(u32::try_from(pick).unwrap())
                .unwrap()
                .to_vec();
            assert!(m.accept_bytes(&bytes));
            consumed.extend_from_slice(&bytes);
        }
        // Rollback to every earlier step equals the recorded mask and a fresh matcher.
        let n = m.num_checkpoints();
        assert!(m.rollback(n + 1).is_err());
        assert_eq!(m.num_checkpoints(), n);
        for back in (0..=n).rev() {
            let mut r = m.clone();
            r.rollback(n - back).unwrap();
            let (prefix, expected) = &history[back.min(history.len() - 1)];
            if back >= history.len() {
                continue;
            }
            let mut got = vec![0u32; mask.len()];
            r.fill_mask(t, &mut got);
            assert_eq!(&got, expected, "seed {seed}: rollback to step {back}");
            let mut fresh = Matcher::new(Arc::clone(g), prefix, None).unwrap();
            let mut fresh_mask = vec![0u32; mask.len()];
            fresh.fill_mask(t, &mut fresh_mask);
            assert_eq!(
                &fresh_mask, expected,
                "seed {seed}: fresh matcher at step {back}"
            );
        }
    }
}

#[test]
fn json_masks_are_sound_and_complete() {
    let g = Arc::new(Grammar::from_lark(JSON_LARK).unwrap());
    let t = table(json_vocab(), 7);
    random_walks(&g, &t, 6, 25);
}

#[test]
fn cfg_masks_are_sound_and_complete() {
    let vocab: Vec<Vec<u8>> = [
        "<s>", "</s>", "a", "b", "c", "ab", "ba", "aa", "bb", "abc", "cab", "aab",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    let t = table(vocab, 0);
    for (_, cfg) in test_cfgs() {
        let g = Arc::new(Grammar::from_lark(&cfg.to_lark()).unwrap());
        random_walks(&g, &t, 4, 8);
    }
}

#[test]
fn every_token_of_a_valid_document_is_allowed() {
    let g = Arc::new(Grammar::from_lark(JSON_LARK).unwrap());
    let vocab = json_vocab();
    let t = table(vocab.clone(), 0);
    let doc = b"{\"ab\": [12, -2, true, null, \"\\\"\"], \"b\": {}}";
    let mut m = Matcher::new(g, b"", None).unwrap();
    let mut mask = vec![0u32; t.vocab_size().div_ceil(32)];
    let mut at = 0;
    while at < doc.len() {
        // Greedy longest-token tokenization of the document.
        let (id, len) = vocab
            .iter()
            .enumerate()
            .filter(|(i, b)| *i > 1 && !b.is_empty() && doc[at..].starts_with(b))
            .map(|(i, b)| (i, b.len()))
            .max_by_key(|&(_, l)| l)
            .unwrap();
        m.fill_mask(&t, &mut mask);
        assert!(
            bit(&mask, id),
            "token {:?} at byte {at}",
            String::from_utf8_lossy(&vocab[id])
        );
        assert!(!bit(&mask, EOS as usize));
        assert!(m.accept_bytes(&vocab[id]));
        at += len;
    }
    m.fill_mask(&t, &mut mask);
    assert!(bit(&mask, EOS as usize) && m.can_terminate());
}

#[test]
fn padding_ids_and_short_masks_are_handled() {
    let g = Arc::new(Grammar::from_lark(JSON_LARK).unwrap());
    let t = table(json_vocab(), 40);
    let mut m = Matcher::new(g, b"[", None).unwrap();
    let mut mask = vec![u32::MAX; t.vocab_size().div_ceil(32) + 2];
    m.fill_mask(&t, &mut mask);
    let n = json_vocab().len();
    assert!((n..mask.len() * 32).all(|i| !bit(&mask, i)));
    let mut short = vec![0u32; 1];
    m.fill_mask(&t, &mut short);
    assert_eq!(short[0], mask[0]);
    assert!(TokenTable::new(vec![b"a".to_vec()], &[3], &[], 1).is_err());
    assert!(TokenTable::new(vec![b"a".to_vec(); 4], &[], &[], 2).is_err());
}

#[test]
fn matcher_rejects_bad_prefix_and_keeps_state_on_rejection() {
    let g = Arc::new(Grammar::from_lark(JSON_LARK).unwrap());
    assert!(Matcher::new(Arc::clone(&g), b"[1,]", None).is_err());
    let mut m = Matcher::new(g, b"[1", None).unwrap();
    assert!(!m.accept_bytes(b",]"));
    assert_eq!(m.num_checkpoints(), 0);
    assert!(m.accept_bytes(b"2"));
    assert!(m.accept_bytes(b"]"));
    assert!(m.can_terminate());
    m.reset();
    assert_eq!(m.num_checkpoints(), 0);
    assert!(!m.can_terminate());
    assert!(m.accept_bytes(b"]"));
}

/// A vocabulary large enough for trie subtrees past the walk's subtree
/// cache threshold: identifiers, words after a space or a space and a
/// quote, numbers, punctuation.
fn big_vocab() -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = vec![b"<s>".to_vec(), b"</s>".to_vec()];
    let mut seen = std::collections::HashSet::new();
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let punct = b"{}[]\":, \n-.e";
    while v.len() < 1500 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let mut t = Vec::new();
        match x % 5 {
            0 => (0..=x >> 8 & 3)
                .for_each(|k| t.push(punct[(x >> (12 + 4 * k)) as usize % punct.len()])),
            1 => t.extend_from_slice(format!("{}", x >> 40 & 0x3ff).as_bytes()),
            2 | 3 => {
                // A quote after a space starts a string inside the token.
                t.extend_from_slice(if x % 5 == 2 { b" " } else { b" \"" });
                (0..2 + (x >> 8) % 6).for_each(|k| t.push(b'a' + ((x >> (12 + 3 * k)) % 4) as u8));
            }
            _ => (0..=(x >> 8) % 6).for_each(|k| t.push(b'a' + ((x >> (12 + 3 * k)) % 4) as u8)),
        }
        if seen.insert(t.clone()) {
            v.push(t);
        }
    }
    v
}

#[test]
fn big_vocabulary_masks_are_sound_and_complete() {
    let src = "start: item+\nitem: WORD | NUMBER | \"[\" item* \"]\" | ESCAPED_STRING\n%import common.WORD\n%import common.NUMBER\n%import common.ESCAPED_STRING\n%import common.WS\n%ignore WS\n";
    let g = Arc::new(Grammar::from_lark(src).unwrap());
    let t = table(big_vocab(), 3);
    random_walks(&g, &t, 3, 12);
}

/// A JSON-Schema-like grammar without recursion: `prepare` explores all
/// of its states (`explore.rs`), so every mask comes from the memo.
const RECORD_LARK: &str = r#"start: "{" _WS? "\"a\"" _WS? ":" _WS? NUMBER (_WS? "," _WS? "\"b\"" _WS? ":" _WS? "[" (STR ("," _WS? STR)*)? "]")? _WS? "}"
STR: /"[a-z\u00e9]{0,3}"/
_WS: /[ \n]+/
%import common.NUMBER
"#;

/// Masks of a table whose lexer sets (and, for a grammar without
/// recursion, every state's mask) were computed ahead of time
/// ([`TokenTable::prepare`]) equal a lazy table's, which equal brute force.
#[test]
fn prepared_tables_give_the_same_masks() {
    let src = "start: item+\nitem: WORD | NUMBER | \"[\" item* \"]\" | ESCAPED_STRING\n%import common.WORD\n%import common.NUMBER\n%import common.ESCAPED_STRING\n%import common.WS\n%ignore WS\n";
    for (grammar, vocab) in [
        (JSON_LARK, json_vocab()),
        (src, big_vocab()),
        (RECORD_LARK, json_vocab()),
    ] {
        let g = Arc::new(Grammar::from_lark(grammar).unwrap());
        let prepared = table(vocab.clone(), 0);
        prepared.prepare(&g);
        let lazy = table(vocab, 0);
        let mut rng = Rng(7);
        let mut m = Matcher::new(Arc::clone(&g), b"", None).unwrap();
        let mut a = vec![0u32; lazy.vocab_size().div_ceil(32)];
        let mut b = a.clone();
        for _ in 0..30 {
            m.fill_mask(&prepared, &mut a);
            m.fill_mask(&lazy, &mut b);
            assert_eq!(a, b);
            check_mask(&mut m, &lazy, &b);
            let allowed: Vec<usize> = (2..lazy.vocab_size()).filter(|&i| bit(&b, i)).collect();
            let Some(&pick) = allowed.get(rng.below(allowed.len().max(1))) else {
                break;
            };
            assert!(m.accept_bytes(lazy.token_bytes(pick as u32).unwrap()));
        }
    }
}

/// Many documents through one grammar: later masks come from the grammar's
/// memo (states with the same future as earlier ones) and must still be
/// exact, for both tables sharing the grammar.
#[test]
fn memoised_masks_stay_exact_across_documents() {
    let g = Arc::new(Grammar::from_lark(JSON_LARK).unwrap());
    let small = table(json_vocab(), 7);
    random_walks(&g, &small, 24, 40);
    let big = table(big_vocab(), 3);
    let src = "start: item+\nitem: WORD | NUMBER | \"[\" item* \"]\" | ESCAPED_STRING\n%import common.WORD\n%import common.NUMBER\n%import common.ESCAPED_STRING\n%import common.WS\n%ignore WS\n";
    let g2 = Arc::new(Grammar::from_lark(src).unwrap());
    random_walks(&g2, &big, 6, 30);
    random_walks(&g, &small, 4, 40);
}

/// Number tokens (` 12`, ` 12,`, `12]`, ...) form trie subtrees where a
/// number lexeme ends at every digit, so other threads (a comma, a closing
/// bracket) start beside it: the walk settles them by the number's DFA
/// ("main thread") and walks only where it dies. Masks stay exact.
#[test]
fn number_subtrees_with_a_main_thread_are_exact() {
    let mut vocab: Vec<Vec<u8>> = vec![b"<s>".to_vec(), b"</s>".to_vec(), Vec::new()];
    vocab.extend((0..=255u8).map(|b| vec![b]));
    let mut digits: Vec<String> = vec![String::new()];
    for _ in 0..4 {
        let longer: Vec<String> = digits
            .iter()
            .flat_map(|d| ["1", "2", "0", "5"].map(|x| format!("{d}{x}")))
            .collect();
        digits.extend(longer.into_iter().filter(|d| !d.starts_with('0')));
        digits.sort();
        digits.dedup();
    }
    for d in digits.iter().filter(|d| !d.is_empty()) {
        for t in [
            format!(" {d}"),
            format!(" {d},"),
            format!("{d}]"),
            format!(" {d}}}"),
            format!("{d}, \""),
            format!(" {d}.5"),
            format!(" {d}e1,"),
            format!(" {d}-1"),
        ] {
            vocab.push(t.into_bytes());
        }
    }
    for t in ["[", "{\"a\":", "\"", ", ", "]", "}", ".5", "e1"] {
        vocab.push(t.as_bytes().to_vec());
    }
    let g = Arc::new(Grammar::from_lark(JSON_LARK).unwrap());
    let t = table(vocab, 0);
    random_walks(&g, &t, 6, 24);
}
