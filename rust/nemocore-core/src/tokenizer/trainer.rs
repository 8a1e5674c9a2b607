//! BPE training with the merges Hugging Face's `BpeTrainer` learns.
//!
//! Same algorithm and tie-breaks as Hugging Face: special tokens take the
//! first ids, then the alphabet (the 256 byte characters, in code-point
//! order), then each merge of the most frequent adjacent pair, ties going to
//! the smaller `(left id, right id)`; a max-heap of pairs with the words they
//! occur in is refreshed lazily (a popped pair whose count went down is
//! pushed back with its current count). Training stops at `vocab_size`
//! tokens or when the best pair occurs fewer than `min_frequency` times.
//! Texts are pre-tokenized and counted on several threads.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap, HashSet};

use super::Tokenizer;
use super::added_tokens::AddedToken;
use super::bpe::{Bpe, BpeOptions};
use super::byte_level::BYTE_TO_CHAR;
use super::decoders::Decoder;
use super::pretokenizer::{PreTokenizer, SplitBehavior, SplitPattern};
use crate::error::{Error, Result};

/// Split pattern of cl100k-style and Llama-3 tokenizer.json files.
pub const CL100K_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Split pattern of o200k-style tokenizer.json files.
pub const O200K_PATTERN: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The pre-tokenizer family a trained tokenizer uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreTokenizerKind {
    /// GPT-2: `ByteLevel` with its own regex.
    Gpt2,
    /// cl100k: `Split` on [`CL100K_PATTERN`], then `ByteLevel` without regex.
    Cl100k,
    /// Llama 3: as cl100k, and the model sets `ignore_merges`.
    Llama3,
    /// o200k: `Split` on [`O200K_PATTERN`], then `ByteLevel` without regex.
    O200k,
}

impl PreTokenizerKind {
    /// The accepted names.
    pub const NAMES: [&'static str; 4] = ["gpt2", "cl100k", "llama3", "o200k"];

    /// Parses a name of [`PreTokenizerKind::NAMES`].
    pub fn from_name(name: &str) -> Result<Self> {
        Ok(match name {
            "gpt2" => Self::Gpt2,
            "cl100k" => Self::Cl100k,
            "llama3" => Self::Llama3,
            "o200k" => Self::O200k,
            other => {
                return Err(Error::invalid_argument(format!(
                    "pre_tokenizer: unknown {other:?}; expected one of {:?}",
                    Self::NAMES
                )));
            }
        })
    }

    /// The pre-tokenizer of this family.
    pub fn pre_tokenizer(self) -> Result<PreTokenizer> {
        let split = |pattern: &str| -> Result<PreTokenizer> {
            Ok(PreTokenizer::Sequence(vec![
                PreTokenizer::Split {
                    pattern: SplitPattern::new(pattern, true)?,
                    behavior: SplitBehavior::Isolated,
                    invert: false,
                },
                PreTokenizer::byte_level(false, false),
            ]))
        };
        match self {
            Self::Gpt2 => Ok(PreTokenizer::byte_level(false, true)),
            Self::Cl100k | Self::Llama3 => split(CL100K_PATTERN),
            Self::O200k => split(O200K_PATTERN),
        }
    }
}

/// A pair candidate in the merge heap, with the words it occurs in.
#[derive(Debug)]
struct Candidate {
    count: u64,
    pair: (u32, u32),
    words: HashSet<usize>,
}

impl PartialEq for Candidate {
    fn eq(&self, other: &Self) -> bool {
        self.count == other.count && self.pair == other.pair
    }
}
impl Eq for Candidate {}
impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Candidate {
    fn cmp(&self, other: &Self) -> Ordering {
        // Most frequent first; among equals, the smaller pair first.
        self.count
            .cmp(&other.count)
            .then_with(|| other.pair.cmp(&self.pair))
    }
}

/// Counts words, then learns merges.
#[derive(Debug)]
pub struct BpeTrainer {
    kind: PreTokenizerKind,
    pre_tokenizer: PreTokenizer,
    num_threads: usize,
    word_counts: HashMap<String, u64>,
}

impl BpeTrainer {
    /// A trainer for tokenizers of the `kind` family, pre-tokenizing on up
    /// to `num_threads` threads (0: one per core).
    pub fn new(kind: PreTokenizerKind, num_threads: usize) -> Result<Self> {
        Ok(Self {
            kind,
            pre_tokenizer: kind.pre_tokenizer()?,
            num_threads,
            word_counts: HashMap::new(),
        })
    }

    /// Counts the words of `texts` (each text is pre-tokenized whole).
    pub fn feed(&mut self, texts: &[String]) -> Result<()> {
        let pre = &self.pre_tokenizer;
        let partial = super::parallel_map(
            &chunks(texts, self.num_threads),
            self.num_threads,
            |chunk: &&[String]| {
                let mut counts: HashMap<String, u64> = HashMap::new();
                for text in *chunk {
                    for word in pre.apply(vec![std::borrow::Cow::Borrowed(text.as_str())])? {
                        *counts.entry(word.into_owned()).or_default() += 1;
                    }
                }
                Ok(counts)
            },
        )?;
        for counts in partial {
            for (word, n) in counts {
                *self.word_counts.entry(word).or_default() += n;
            }
        }
        Ok(())
    }

    /// Counts the words of files read line by line (lines keep their
    /// newline), as Hugging Face's `train(files)` does.
    pub fn feed_file(&mut self, path: &std::path::Path) -> Result<()> {
        let text = std::fs::read_to_string(path)?;
        let lines: Vec<String> = text.split_inclusive('\n').map(str::to_owned).collect();
        self.feed(&lines)
    }

    /// Learns the merges and returns the tokenizer.
    pub fn train(
        &self,
        vocab_size: usize,
        min_frequency: u64,
        special_tokens: &[String],
    ) -> Result<Tokenizer> {
        let mut vocab = Vocab::default();
        for t in special_tokens {
            vocab.add(t);
        }
        let mut alphabet: Vec<char> = BYTE_TO_CHAR.to_vec();
        for word in self.word_counts.keys() {
            alphabet.extend(word.chars());
        }
        alphabet.sort_unstable();
        alphabet.dedup();
        for c in alphabet {
            vocab.add(&c.to_string());
        }
        let mut words = Vec::with_capacity(self.word_counts.len());
        let mut counts = Vec::with_capacity(self.word_counts.len());
        for (word, &n) in &self.word_counts {
            let ids = word
                .chars()
                .map(|c| vocab.id(&c.to_string()))
                .collect::<Result<Vec<u32>>>()?;
            words.push(ids);
            counts.push(n);
        }
        let merges = learn_merges(&mut vocab, &mut words, &counts, vocab_size, min_frequency);
        self.build(vocab, &merges, special_tokens)
    }

    fn build(
        &self,
        vocab: Vocab,
        merges: &[((u32, u32), u32)],
        special_tokens: &[String],
    ) -> Result<Tokenizer> {
        // A pair learnt twice keeps its last rank, as Hugging Face's model does.
        let mut last_rank: HashMap<(u32, u32), usize> = HashMap::new();
        for (rank, (pair, _)) in merges.iter().enumerate() {
            last_rank.insert(*pair, rank);
        }
        let mut merge_list = Vec::with_capacity(last_rank.len());
        for (rank, (pair, _)) in merges.iter().enumerate() {
            if last_rank.get(pair) == Some(&rank) {
                merge_list.push((vocab.token(pair.0)?, vocab.token(pair.1)?));
            }
        }
        let options = BpeOptions {
            ignore_merges: self.kind == PreTokenizerKind::Llama3,
            ..BpeOptions::default()
        };
        let model = Bpe::new(vocab.ids, merge_list, options)?;
        let added = special_tokens
            .iter()
            .map(|t| {
                Ok(AddedToken {
                    id: model.token_to_id(t).ok_or_else(|| {
                        Error::internal(format!("special token {t:?} missing after training"))
                    })?,
                    content: t.clone(),
                    single_word: false,
                    lstrip: false,
                    rstrip: false,
                    normalized: false,
                    special: true,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Tokenizer::new(
            None,
            Some(self.pre_tokenizer.clone()),
            model,
            Some(Decoder::ByteLevel),
            None,
            added,
        )
    }
}

fn chunks(texts: &[String], num_threads: usize) -> Vec<&[String]> {
    let threads = if num_threads == 0 {
        std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
    } else {
        num_threads
    };
    let size = texts.len().div_ceil(threads * 4).max(1);
    texts.chunks(size).collect()
}

/// Token strings and ids, growing as merges are learnt.
#[derive(Debug, Default)]
struct Vocab {
    ids: HashMap<String, u32>,
    tokens: Vec<String>,
}

impl Vocab {
    fn add(&mut self, token: &str) -> u32 {
        if let Some(&id) = self.ids.get(token) {
            return id;
        }
        let id = u32::try_from(self.tokens.len()).unwrap_or(u32::MAX);
        self.tokens.push(token.to_owned());
        self.ids.insert(token.to_owned(), id);
        id
    }

    fn id(&self, token: &str) -> Result<u32> {
        self.ids
            .get(token)
            .copied()
            .ok_or_else(|| Error::internal(format!("trainer: {token:?} not in the alphabet")))
    }

    fn token(&self, id: u32) -> Result<String> {
        self.tokens
            .get(id as usize)
            .cloned()
            .ok_or_else(|| Error::internal(format!("trainer: no token with id {id}")))
    }
}

type PairChanges = Vec<((u32, u32), i64)>;

/// Replaces each `(a, b)` in `word` by `merged`, returning the changes in
/// pair counts (before weighting by the word's count).
fn merge_in_word(word: &mut Vec<u32>, a: u32, b: u32, merged: u32) -> PairChanges {
    let mut changes = Vec::new();
    let mut i = 0;
    while i < word.len() {
        if word[i] == a && i + 1 < word.len() && word[i + 1] == b {
            if i > 0 {
                changes.push(((word[i - 1], a), -1));
                changes.push(((word[i - 1], merged), 1));
            }
            word[i] = merged;
            word.remove(i + 1);
            if i + 1 < word.len() {
                changes.push(((b, word[i + 1]), -1));
                changes.push(((merged, word[i + 1]), 1));
            }
        }
        i += 1;
    }
    changes
}

fn learn_merges(
    vocab: &mut Vocab,
    words: &mut [Vec<u32>],
    counts: &[u64],
    vocab_size: usize,
    min_frequency: u64,
) -> Vec<((u32, u32), u32)> {
    let mut pair_counts: HashMap<(u32, u32), i64> = HashMap::new();
    let mut where_to_update: HashMap<(u32, u32), HashSet<usize>> = HashMap::new();
    for (i, word) in words.iter().enumerate() {
        let n = i64::try_from(counts[i]).unwrap_or(i64::MAX);
        for w in word.windows(2) {
            *pair_counts.entry((w[0], w[1])).or_default() += n;
            where_to_update.entry((w[0], w[1])).or_default().insert(i);
        }
    }
    let mut heap = BinaryHeap::with_capacity(pair_counts.len());
    push_candidates(&mut heap, &mut where_to_update, &pair_counts);
    let mut merges = Vec::new();
    while vocab.tokens.len() < vocab_size {
        let Some(mut top) = heap.pop() else { break };
        let current = u64::try_from(pair_counts.get(&top.pair).copied().unwrap_or(0)).unwrap_or(0);
        if top.count != current {
            top.count = current;
            heap.push(top);
            continue;
        }
        if top.count < 1 || min_frequency > top.count {
            break;
        }
        let (a, b) = top.pair;
        let token = format!("{}{}", vocab.tokens[a as usize], vocab.tokens[b as usize]);
        let new_id = vocab.add(&token);
        merges.push((top.pair, new_id));
        for &i in &top.words {
            let n = i64::try_from(counts[i]).unwrap_or(i64::MAX);
            for (pair, change) in merge_in_word(&mut words[i], a, b, new_id) {
                *pair_counts.entry(pair).or_default() += change * n;
                if change > 0 {
                    where_to_update.entry(pair).or_default().insert(i);
                }
            }
        }
        push_candidates(&mut heap, &mut where_to_update, &pair_counts);
    }
    merges
}

fn push_candidates(
    heap: &mut BinaryHeap<Candidate>,
    where_to_update: &mut HashMap<(u32, u32), HashSet<usize>>,
    pair_counts: &HashMap<(u32, u32), i64>,
) {
    for (pair, words) in where_to_update.drain() {
        let count = pair_counts.get(&pair).copied().unwrap_or(0);
        if count > 0 {
            heap.push(Candidate {
                count: count.unsigned_abs(),
                pair,
                words,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_most_frequent_pairs_first_and_stops_at_vocab_size() {
        let mut trainer = BpeTrainer::new(PreTokenizerKind::Gpt2, 2).unwrap();
        let texts: Vec<String> = ["aaab aaab aab", "ab ab"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        trainer.feed(&texts).unwrap();
        let tok = trainer.train(256 + 1 + 2, 2, &["<s>".to_owned()]).unwrap();
        let merges = tok.model().merge_list();
        assert_eq!(merges.len(), 2);
        // ("a", "a") and ("a", "b") both occur 5 times: the smaller pair wins.
        assert_eq!(merges[0], ("a".to_owned(), "a".to_owned()));
        assert_eq!(tok.token_to_id("<s>"), Some(0));
        assert_eq!(tok.encode("aab<s>", false).unwrap().len(), 3);
    }

    #[test]
    fn min_frequency_stops_training() {
        let mut trainer = BpeTrainer::new(PreTokenizerKind::Cl100k, 1).unwrap();
        trainer.feed(&["xy xy zw".to_owned()]).unwrap();
        let tok = trainer.train(10_000, 2, &[]).unwrap();
        // "xy" twice, "Ġx"/"Ġz" pairs once or twice; "zw" only once.
        assert!(
            tok.model()
                .merge_list()
                .iter()
                .all(|(a, b)| format!("{a}{b}") != "zw")
        );
    }

    #[test]
    fn unknown_kind_names_the_choices() {
        let err = PreTokenizerKind::from_name("bert").unwrap_err();
        assert!(err.to_string().contains("gpt2"), "{err}");
    }
}
