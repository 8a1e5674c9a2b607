//! The BPE model: a vocabulary, merges by rank, and a word cache.
//!
//! A word starts as one symbol per character (with the byte-fallback and
//! unknown-token rules of Hugging Face's `BPE`), then the pair of adjacent
//! symbols with the lowest merge rank is merged, leftmost first, until no
//! pair has a merge. A binary heap of candidate pairs with lazy deletion
//! makes this O(n log n) in the word length, so a megabyte-long word (text
//! without spaces) does not go quadratic.

use std::collections::{BinaryHeap, HashMap};

use rustc_hash::FxHashMap;

use super::byte_level::{BYTE_TO_CHAR, char_to_byte_table, unmap};
use super::cache::WordCache;
use crate::error::{Error, Result};

/// Words at least this long (in bytes) are not cached.
const CACHE_MAX_WORD_LEN: usize = 256;
/// Cache entries kept at most; a full cache stops growing.
const CACHE_CAPACITY: usize = 100_000;
/// Words with at most this many symbols are merged by linear scans (fewer
/// allocations than the heap, same result).
const SMALL_WORD: usize = 24;

/// Options of a BPE model as tokenizer.json spells them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BpeOptions {
    /// Token for characters missing from the vocabulary (none: they vanish).
    pub unk_token: Option<String>,
    /// Prefix of every non-initial symbol of a word (WordPiece-style `##`).
    pub continuing_subword_prefix: Option<String>,
    /// Suffix of the final symbol of a word.
    pub end_of_word_suffix: Option<String>,
    /// Merge consecutive unknown characters into one unknown token.
    pub fuse_unk: bool,
    /// Spell characters missing from the vocabulary as `<0xXX>` byte tokens.
    pub byte_fallback: bool,
    /// A word found whole in the vocabulary is one token, merges or not.
    pub ignore_merges: bool,
}

/// A BPE model.
#[derive(Debug)]
pub struct Bpe {
    vocab: HashMap<String, u32>,
    id_to_token: HashMap<u32, String>,
    /// `(left, right) -> (rank, merged id)`.
    merges: FxHashMap<(u32, u32), (u32, u32)>,
    /// The id of each byte's GPT-2 character, when all 256 are tokens and no
    /// prefix or suffix applies: words can then be encoded from raw bytes.
    byte_ids: Option<[u32; 256]>,
    /// Raw bytes -> id of byte-level tokens (for `ignore_merges` on raw words).
    raw_vocab: FxHashMap<Box<[u8]>, u32>,
    /// The merges as `(left, right)` token strings, in rank order.
    merge_list: Vec<(String, String)>,
    options: BpeOptions,
    unk_id: Option<u32>,
    cache: WordCache<String>,
    /// Cache of [`Bpe::tokenize_raw_into`], keyed by raw words.
    raw_cache: WordCache<Box<[u8]>>,
}

impl Clone for Bpe {
    fn clone(&self) -> Self {
        Self {
            vocab: self.vocab.clone(),
            id_to_token: self.id_to_token.clone(),
            merges: self.merges.clone(),
            byte_ids: self.byte_ids,
            raw_vocab: self.raw_vocab.clone(),
            merge_list: self.merge_list.clone(),
            options: self.options.clone(),
            unk_id: self.unk_id,
            cache: WordCache::new(CACHE_CAPACITY),
            raw_cache: WordCache::new(CACHE_CAPACITY),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Symbol {
    id: u32,
    prev: usize,
    next: usize,
    alive: bool,
}

const NONE: usize = usize::MAX;

impl Bpe {
    /// Builds a model; every merge's parts and result must be in `vocab`.
    pub fn new(
        vocab: HashMap<String, u32>,
        merge_list: Vec<(String, String)>,
        options: BpeOptions,
    ) -> Result<Self> {
        let mut merges = FxHashMap::default();
        merges.reserve(merge_list.len());
        for (rank, (left, right)) in merge_list.iter().enumerate() {
            let id_of = |t: &str| {
                vocab.get(t).copied().ok_or_else(|| {
                    Error::invalid_config(format!(
                        "model.merges[{rank}]: token {t:?} of merge ({left:?}, {right:?}) is not in model.vocab"
                    ))
                })
            };
            let joined = format!(
                "{left}{}",
                right
                    .strip_prefix(options.continuing_subword_prefix.as_deref().unwrap_or(""))
                    .unwrap_or(right)
            );
            let rank = u32::try_from(rank)
                .map_err(|_| Error::invalid_config("model.merges: more than 2^32 merges"))?;
            let pair = (id_of(left)?, id_of(right)?);
            let new_id = id_of(&joined)?;
            merges.entry(pair).or_insert((rank, new_id));
        }
        let unk_id = match &options.unk_token {
            Some(t) => vocab.get(t).copied(),
            None => None,
        };
        let id_to_token = vocab.iter().map(|(t, id)| (*id, t.clone())).collect();
        let plain =
            options.continuing_subword_prefix.is_none() && options.end_of_word_suffix.is_none();
        let byte_ids = if plain { byte_ids(&vocab) } else { None };
        let mut raw_vocab = FxHashMap::default();
        if byte_ids.is_some() && options.ignore_merges {
            let table = char_to_byte_table();
            for (token, id) in &vocab {
                if let Some(bytes) = unmap(token, &table) {
                    raw_vocab.insert(bytes.into_boxed_slice(), *id);
                }
            }
        }
        Ok(Self {
            vocab,
            id_to_token,
            merges,
            byte_ids,
            raw_vocab,
            merge_list,
            options,
            unk_id,
            cache: WordCache::new(CACHE_CAPACITY),
            raw_cache: WordCache::new(CACHE_CAPACITY),
        })
    }

    /// The vocabulary.
    pub fn vocab(&self) -> &HashMap<String, u32> {
        &self.vocab
    }

    /// The merges in rank order.
    pub fn merge_list(&self) -> &[(String, String)] {
        &self.merge_list
    }

    /// The options.
    pub fn options(&self) -> &BpeOptions {
        &self.options
    }

    /// The id of a vocabulary token.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.vocab.get(token).copied()
    }

    /// The vocabulary token of an id.
    pub fn id_to_token(&self, id: u32) -> Option<&str> {
        self.id_to_token.get(&id).map(String::as_str)
    }

    /// Whether [`Bpe::tokenize_raw_into`] is available.
    pub fn encodes_raw_bytes(&self) -> bool {
        self.byte_ids.is_some()
    }

    /// Appends the ids of the word whose bytes, mapped to GPT-2 characters,
    /// [`Bpe::tokenize_into`] would encode; same result, without building
    /// the mapped string. Needs [`Bpe::encodes_raw_bytes`].
    pub fn tokenize_raw_into(&self, word: &[u8], out: &mut Vec<u32>) -> Result<()> {
        let Some(byte_ids) = &self.byte_ids else {
            return Err(Error::internal(
                "tokenize_raw_into on a model without byte tokens",
            ));
        };
        if word.is_empty() {
            return Ok(());
        }
        if self.options.ignore_merges {
            if let Some(id) = self.raw_vocab.get(word) {
                out.push(*id);
                return Ok(());
            }
        }
        if self.raw_cache.extend_into(word, out) {
            return Ok(());
        }
        let start = out.len();
        let ids: Vec<u32> = word.iter().map(|&b| byte_ids[usize::from(b)]).collect();
        self.merge_ids(&ids, out);
        if word.len() < CACHE_MAX_WORD_LEN {
            self.raw_cache.insert(word, &out[start..]);
        }
        Ok(())
    }

    /// Appends the ids of one pre-tokenized word to `out`.
    pub fn tokenize_into(&self, word: &str, out: &mut Vec<u32>) -> Result<()> {
        if word.is_empty() {
            return Ok(());
        }
        if self.options.ignore_merges {
            if let Some(id) = self.vocab.get(word) {
                out.push(*id);
                return Ok(());
            }
        }
        if self.cache.extend_into(word, out) {
            return Ok(());
        }
        let start = out.len();
        self.merge_word(word, out)?;
        if word.len() < CACHE_MAX_WORD_LEN {
            self.cache.insert(word, &out[start..]);
        }
        Ok(())
    }

    fn initial_symbols(&self, word: &str) -> Result<Vec<u32>> {
        let mut ids = Vec::with_capacity(word.len());
        // An unknown token is held back until a known character (or the
        // end) arrives, so that runs can be fused, as Hugging Face does.
        let mut pending_unk: Option<u32> = None;
        let mut chars = word.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            let end = i + c.len_utf8();
            let is_last = chars.peek().is_none();
            if let Some(id) = self.symbol_id(word, i, end, is_last) {
                ids.extend(pending_unk.take());
                ids.push(id);
                continue;
            }
            if self.options.byte_fallback {
                let bytes: Option<Vec<u32>> = word[i..end]
                    .bytes()
                    .map(|b| self.vocab.get(&format!("<0x{b:02X}>")).copied())
                    .collect();
                if let Some(bytes) = bytes {
                    ids.extend(bytes);
                    continue;
                }
            }
            if let Some(unk) = &self.options.unk_token {
                let unk_id = self.unk_id.ok_or_else(|| {
                    Error::invalid_config(format!("model.unk_token: {unk:?} is not in model.vocab"))
                })?;
                if pending_unk.is_some() && !self.options.fuse_unk {
                    ids.extend(pending_unk);
                }
                pending_unk = Some(unk_id);
            }
        }
        ids.extend(pending_unk);
        Ok(ids)
    }

    /// The id of the character `word[start..end]` as a symbol of the word,
    /// with the continuing-subword prefix and end-of-word suffix applied.
    fn symbol_id(&self, word: &str, start: usize, end: usize, is_last: bool) -> Option<u32> {
        let piece = &word[start..end];
        let prefix = self.options.continuing_subword_prefix.as_deref();
        let suffix = self.options.end_of_word_suffix.as_deref();
        if prefix.is_none() && suffix.is_none() {
            return self.vocab.get(piece).copied();
        }
        let mut s = String::new();
        if start > 0 {
            s.push_str(prefix.unwrap_or(""));
        }
        s.push_str(piece);
        if is_last {
            s.push_str(suffix.unwrap_or(""));
        }
        self.vocab.get(&s).copied()
    }

    fn merge_word(&self, word: &str, out: &mut Vec<u32>) -> Result<()> {
        let ids = self.initial_symbols(word)?;
        self.merge_ids(&ids, out);
        Ok(())
    }

    /// Merges the symbols `ids` and appends the result to `out`.
    fn merge_ids(&self, ids: &[u32], out: &mut Vec<u32>) {
        let n = ids.len();
        if n <= SMALL_WORD {
            self.merge_small(ids, out);
            return;
        }
        let mut symbols: Vec<Symbol> = ids
            .iter()
            .enumerate()
            .map(|(i, &id)| Symbol {
                id,
                prev: if i == 0 { NONE } else { i - 1 },
                next: if i + 1 == n { NONE } else { i + 1 },
                alive: true,
            })
            .collect();
        // Min-heap on (rank, position) through Reverse ordering.
        let mut heap: BinaryHeap<std::cmp::Reverse<(u32, usize, u32)>> = BinaryHeap::new();
        for i in 0..n.saturating_sub(1) {
            if let Some(&(rank, new_id)) = self.merges.get(&(ids[i], ids[i + 1])) {
                heap.push(std::cmp::Reverse((rank, i, new_id)));
            }
        }
        while let Some(std::cmp::Reverse((_, pos, new_id))) = heap.pop() {
            let sym = symbols[pos];
            if !sym.alive || sym.next == NONE {
                continue;
            }
            let right = symbols[sym.next];
            match self.merges.get(&(sym.id, right.id)) {
                Some(&(_, id)) if id == new_id => {}
                _ => continue,
            }
            symbols[pos].id = new_id;
            symbols[pos].next = right.next;
            symbols[sym.next].alive = false;
            if right.next != NONE {
                symbols[right.next].prev = pos;
            }
            if sym.prev != NONE {
                if let Some(&(rank, id)) = self.merges.get(&(symbols[sym.prev].id, new_id)) {
                    heap.push(std::cmp::Reverse((rank, sym.prev, id)));
                }
            }
            if right.next != NONE {
                if let Some(&(rank, id)) = self.merges.get(&(new_id, symbols[right.next].id)) {
                    heap.push(std::cmp::Reverse((rank, pos, id)));
                }
            }
        }
        let mut i = if n == 0 { NONE } else { 0 };
        while i != NONE {
            out.push(symbols[i].id);
            i = symbols[i].next;
        }
    }
}

impl Bpe {
    /// [`Bpe::merge_ids`] for short words: repeatedly merge the pair of
    /// lowest rank, leftmost first, which is the order the heap pops them in.
    fn merge_small(&self, ids: &[u32], out: &mut Vec<u32>) {
        let mut symbols: Vec<u32> = ids.to_vec();
        // ranks[i]: (rank, merged id) of the pair (symbols[i], symbols[i + 1]).
        let rank_of = |a: u32, b: u32| self.merges.get(&(a, b)).copied();
        let mut ranks: Vec<Option<(u32, u32)>> =
            symbols.windows(2).map(|w| rank_of(w[0], w[1])).collect();
        loop {
            let best = ranks
                .iter()
                .enumerate()
                .filter_map(|(i, r)| r.map(|(rank, id)| (rank, i, id)))
                .min();
            let Some((_, i, id)) = best else { break };
            symbols[i] = id;
            symbols.remove(i + 1);
            ranks.remove(i);
            if i > 0 {
                ranks[i - 1] = rank_of(symbols[i - 1], id);
            }
            if i < ranks.len() {
                ranks[i] = rank_of(id, symbols[i + 1]);
            }
        }
        out.extend_from_slice(&symbols);
    }
}

/// The id of each byte's GPT-2 character, if all 256 are in `vocab`.
fn byte_ids(vocab: &HashMap<String, u32>) -> Option<[u32; 256]> {
    let mut ids = [0u32; 256];
    for (slot, c) in ids.iter_mut().zip(BYTE_TO_CHAR.iter()) {
        *slot = *vocab.get(c.encode_utf8(&mut [0; 4]) as &str)?;
    }
    Some(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(options: BpeOptions) -> Bpe {
        let vocab: HashMap<String, u32> = ["a", "b", "c", "ab", "bc", "abc", "<unk>", "<0x61>"]
            .iter()
            .enumerate()
            .map(|(i, t)| ((*t).to_owned(), u32::try_from(i).unwrap()))
            .collect();
        let merges = vec![
            ("b".to_owned(), "c".to_owned()),
            ("a".to_owned(), "b".to_owned()),
            ("a".to_owned(), "bc".to_owned()),
        ];
        Bpe::new(vocab, merges, options).unwrap()
    }

    fn encode(m: &Bpe, w: &str) -> Vec<u32> {
        let mut out = Vec::new();
        m.tokenize_into(w, &mut out).unwrap();
        out
    }

    #[test]
    fn lowest_rank_merges_first() {
        let m = model(BpeOptions::default());
        assert_eq!(encode(&m, "abc"), [5]);
        assert_eq!(encode(&m, "abab"), [3, 3]);
        // Cached second time, same answer.
        assert_eq!(encode(&m, "abab"), [3, 3]);
    }

    #[test]
    fn unknown_characters_vanish_become_unk_or_fuse() {
        let m = model(BpeOptions::default());
        assert_eq!(encode(&m, "axxb"), [3]);
        let unk = BpeOptions {
            unk_token: Some("<unk>".into()),
            ..BpeOptions::default()
        };
        assert_eq!(encode(&model(unk.clone()), "axxb"), [0, 6, 6, 1]);
        let fused = BpeOptions {
            fuse_unk: true,
            ..unk
        };
        assert_eq!(encode(&model(fused), "axxb"), [0, 6, 1]);
    }

    #[test]
    fn merge_with_missing_token_names_the_field() {
        let vocab: HashMap<String, u32> = [("a".to_owned(), 0)].into_iter().collect();
        let err =
            Bpe::new(vocab, vec![("a".into(), "a".into())], BpeOptions::default()).unwrap_err();
        assert!(err.to_string().contains("model.merges[0]"), "{err}");
    }

    fn heap_merge(m: &Bpe, ids: &[u32]) -> Vec<u32> {
        // Past SMALL_WORD symbols merge_ids takes the heap path; pad with a
        // symbol that merges with nothing, then drop the padding.
        let mut padded = ids.to_vec();
        padded.extend(std::iter::repeat_n(6, SMALL_WORD + 1));
        let mut out = Vec::new();
        m.merge_ids(&padded, &mut out);
        out.truncate(out.len() - (SMALL_WORD + 1));
        out
    }

    proptest::proptest! {
        #[test]
        fn linear_scan_merges_like_the_heap(ids in proptest::collection::vec(0u32..3, 0..20)) {
            let m = model(BpeOptions::default());
            let mut small = Vec::new();
            m.merge_small(&ids, &mut small);
            proptest::prop_assert_eq!(small, heap_merge(&m, &ids));
        }
    }

    #[test]
    fn a_megabyte_word_is_not_quadratic() {
        let m = model(BpeOptions::default());
        let word = "abc".repeat(350_000);
        let start = std::time::Instant::now();
        let ids = encode(&m, &word);
        assert_eq!(ids.len(), 350_000);
        assert!(start.elapsed().as_secs() < 20);
    }
}
