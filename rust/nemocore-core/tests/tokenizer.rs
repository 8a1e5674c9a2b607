//! Tokenizer properties: the look-ahead-free split engine agrees with a
//! backtracking engine on the real patterns, and trained tokenizers decode
//! what they encode, write files they read back, and cut text the same way
//! whatever the number of threads.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a failed unwrap is a failed test"
)]

use std::sync::OnceLock;

use nemocore_core::tokenizer::Tokenizer;

use nemocore_core::tokenizer::json;
use nemocore_core::tokenizer::pretokenizer::{GPT2_PATTERN, SplitPattern};
use nemocore_core::tokenizer::trainer::{
    BpeTrainer, CL100K_PATTERN, O200K_PATTERN, PreTokenizerKind,
};
use proptest::prelude::*;

/// Text made of the characters the patterns treat differently.
fn tricky_text() -> impl Strategy<Value = String> {
    let pieces = prop::sample::select(vec![
        " ", "  ", "\t", "\n", "\r\n", "\u{a0}", "\u{3000}", "a", "Z", "é", "ß", "東", "👍",
        "\u{200d}", "\u{301}", "1", "42", "٣", "'s", "'LL", "'t", "!", "?!", "/", "_", "-", ".",
        "(", "Ǆ", "ǅ", "x",
    ]);
    prop::collection::vec(pieces, 0..40).prop_map(|v| v.concat())
}

/// Each real pattern compiled by nemocore and by a backtracking engine.
fn engines() -> &'static [(SplitPattern, fancy_regex::Regex)] {
    static ENGINES: OnceLock<Vec<(SplitPattern, fancy_regex::Regex)>> = OnceLock::new();
    ENGINES.get_or_init(|| {
        [GPT2_PATTERN, CL100K_PATTERN, O200K_PATTERN]
            .iter()
            .map(|p| {
                (
                    SplitPattern::new(p, true).unwrap(),
                    fancy_regex::Regex::new(p).unwrap(),
                )
            })
            .collect()
    })
}

fn backtracking(regex: &fancy_regex::Regex, text: &str) -> Vec<(usize, usize)> {
    regex
        .find_iter(text)
        .map(|m| m.unwrap())
        .filter(|m| m.start() < m.end())
        .map(|m| (m.start(), m.end()))
        .collect()
}

proptest! {
    #[test]
    fn split_engine_matches_backtracking(text in tricky_text()) {
        for (ours, reference) in engines() {
            prop_assert_eq!(
                ours.find_all(&text).unwrap(),
                backtracking(reference, &text),
                "pattern {}",
                ours.source
            );
        }
    }

    #[test]
    fn decode_inverts_encode(text in tricky_text()) {
        let tokenizer = trained(PreTokenizerKind::Cl100k);
        let ids = tokenizer.encode(&text, false).unwrap();
        prop_assert_eq!(tokenizer.decode(&ids, false).unwrap(), text.clone());
        let bytes: Vec<u8> = ids.iter().flat_map(|&i| tokenizer.token_bytes(i).unwrap()).collect();
        prop_assert_eq!(bytes, text.into_bytes());
    }
}

/// A tokenizer of `kind` trained on this crate's source (trained once per kind).
fn trained(kind: PreTokenizerKind) -> &'static Tokenizer {
    static CACHE: [OnceLock<Tokenizer>; 4] = [const { OnceLock::new() }; 4];
    let slot = match kind {
        PreTokenizerKind::Gpt2 => 0,
        PreTokenizerKind::Cl100k => 1,
        PreTokenizerKind::Llama3 => 2,
        PreTokenizerKind::O200k => 3,
    };
    CACHE[slot].get_or_init(|| train(kind))
}

fn train(kind: PreTokenizerKind) -> Tokenizer {
    let corpus = include_str!("../src/tokenizer/bpe.rs").to_owned()
        + include_str!("../src/tokenizer/pretokenizer.rs")
        + "Größe 東京 👍 'll 'S";
    let mut trainer = BpeTrainer::new(kind, 2).unwrap();
    trainer.feed(&[corpus]).unwrap();
    trainer
        .train(600, 2, &["<|endoftext|>".to_owned()])
        .unwrap()
}

#[test]
fn saved_file_reads_back_with_the_same_ids() {
    let text = "fn main() {\n    println!(\"東京 👍\");\n}<|endoftext|>  tail";
    for kind in [
        PreTokenizerKind::Gpt2,
        PreTokenizerKind::Llama3,
        PreTokenizerKind::O200k,
    ] {
        let tokenizer = trained(kind);
        let reread = json::from_str(&json::to_string(tokenizer).unwrap()).unwrap();
        assert_eq!(
            reread.encode(text, false).unwrap(),
            tokenizer.encode(text, false).unwrap()
        );
        assert_eq!(reread.model().merge_list(), tokenizer.model().merge_list());
        let ids = tokenizer.encode(text, false).unwrap();
        assert!(ids.contains(&0), "special token matched");
        assert_eq!(
            tokenizer.decode(&ids, true).unwrap(),
            text.replace("<|endoftext|>", "")
        );
    }
}

#[test]
fn batch_results_do_not_depend_on_threads() {
    let tokenizer = trained(PreTokenizerKind::Cl100k);
    let texts: Vec<String> = (0..50)
        .map(|i| format!("line {i}: x = {}\n", i * 37))
        .collect();
    let one = tokenizer.encode_batch(&texts, false, 1).unwrap();
    assert_eq!(tokenizer.encode_batch(&texts, false, 3).unwrap(), one);
    let decoded = tokenizer.decode_batch(&one, false, 4).unwrap();
    assert_eq!(decoded, texts);
}

#[test]
fn out_of_range_ids_are_rejected() {
    let tokenizer = trained(PreTokenizerKind::Gpt2);
    let err = tokenizer.decode(&[1, 1_000_000], false).unwrap_err();
    assert_eq!(err.kind(), "invalid_argument");
    assert!(err.to_string().contains("1000000"), "{err}");
}
