//! Byte-level BPE tokenizer with Hugging Face `tokenizers` parity.
//!
//! The pipeline mirrors Hugging Face's: added tokens are cut out of the raw
//! text ([`added_tokens`]), the rest is normalized ([`normalizers`]), cut
//! again at added tokens matched in normalized form, pre-tokenized
//! ([`pretokenizer`]) and encoded word by word with [`bpe`]; decoding runs
//! the [`decoders`]. [`json`] reads and writes tokenizer.json, [`trainer`]
//! learns merges, [`stream`] decodes token by token.

pub mod added_tokens;
pub mod bpe;
pub mod byte_level;
pub mod cache;
pub mod decoders;
pub mod json;
pub mod normalizers;
pub mod pretokenizer;
pub mod stream;
pub mod trainer;
use std::borrow::Cow;
use std::collections::HashMap;

use added_tokens::{AddedToken, Matcher, Segment};
use bpe::Bpe;
use decoders::{Decoder, byte_token};
use normalizers::Normalizer;
use pretokenizer::PreTokenizer;

use crate::error::{Error, Result};

/// What `add_special_tokens` adds around an encoding.
#[derive(Debug, Clone)]
pub struct PostProcessor {
    /// Ids put before the text.
    pub prefix: Vec<u32>,
    /// Ids put after the text.
    pub suffix: Vec<u32>,
    /// The post-processor as the file spelled it, written back on save.
    pub json: serde_json::Value,
}

/// A byte-level BPE tokenizer.
#[allow(
    clippy::struct_field_names,
    reason = "the component names are Hugging Face's (pre_tokenizer, post_processor)"
)]
#[derive(Debug, Clone)]
pub struct Tokenizer {
    normalizer: Option<Normalizer>,
    pre_tokenizer: Option<PreTokenizer>,
    model: Bpe,
    decoder: Option<Decoder>,
    post_processor: Option<PostProcessor>,
    added: Vec<AddedToken>,
    added_by_id: HashMap<u32, usize>,
    added_by_content: HashMap<String, usize>,
    /// Form of each added token given to the decoder (its normalized form
    /// when it is matched normalized, as Hugging Face does).
    decode_form: HashMap<u32, String>,
    raw_matcher: Matcher,
    normalized_matcher: Matcher,
    vocab_size: usize,
    /// Whether words can be encoded from raw bytes (see [`Bpe::tokenize_raw_into`]).
    raw_words: bool,
    /// Bytes of every id, when the decoder is a plain `ByteLevel` (decoding
    /// is then concatenation plus one lossy UTF-8 conversion).
    byte_table: Option<ByteTable>,
}

/// The bytes of each id, packed.
#[derive(Debug, Clone, Default)]
struct ByteTable {
    /// `offsets[id]..offsets[id + 1]` indexes `data`.
    offsets: Vec<usize>,
    data: Vec<u8>,
    /// Whether a token has the id.
    known: Vec<bool>,
}

impl Tokenizer {
    /// Assembles a tokenizer from its parts.
    pub fn new(
        normalizer: Option<Normalizer>,
        pre_tokenizer: Option<PreTokenizer>,
        model: Bpe,
        decoder: Option<Decoder>,
        post_processor: Option<PostProcessor>,
        added: Vec<AddedToken>,
    ) -> Result<Self> {
        let mut raw = Vec::new();
        let mut matched_normalized = Vec::new();
        let mut decode_form = HashMap::new();
        for t in &added {
            if t.normalized {
                let form = match &normalizer {
                    Some(n) => n.apply(Cow::Borrowed(t.content.as_str())).into_owned(),
                    None => t.content.clone(),
                };
                if form != t.content {
                    decode_form.insert(t.id, form.clone());
                }
                matched_normalized.push((t.clone(), form));
            } else {
                raw.push((t.clone(), t.content.clone()));
            }
        }
        let added_by_id = added.iter().enumerate().map(|(i, t)| (t.id, i)).collect();
        let added_by_content = added
            .iter()
            .enumerate()
            .map(|(i, t)| (t.content.clone(), i))
            .collect();
        let vocab_size = model.vocab().len()
            + added
                .iter()
                .filter(|t| model.token_to_id(&t.content).is_none())
                .count();
        let raw_words = model.encodes_raw_bytes()
            && pre_tokenizer
                .as_ref()
                .is_some_and(|p| p.byte_level_split().is_some());
        let mut tokenizer = Self {
            normalizer,
            pre_tokenizer,
            model,
            decoder,
            post_processor,
            added,
            added_by_id,
            added_by_content,
            decode_form,
            raw_matcher: Matcher::new(raw)?,
            normalized_matcher: Matcher::new(matched_normalized)?,
            vocab_size,
            raw_words,
            byte_table: None,
        };
        if matches!(tokenizer.decoder, Some(Decoder::ByteLevel)) {
            tokenizer.byte_table = Some(tokenizer.build_byte_table());
        }
        Ok(tokenizer)
    }

    fn build_byte_table(&self) -> ByteTable {
        let bound = self.id_bound();
        let mut table = ByteTable {
            offsets: Vec::with_capacity(bound as usize + 1),
            ..ByteTable::default()
        };
        table.offsets.push(0);
        for id in 0..bound {
            match self.token_bytes(id) {
                Ok(bytes) => {
                    table.data.extend(bytes);
                    table.known.push(true);
                }
                Err(_) => table.known.push(false),
            }
            table.offsets.push(table.data.len());
        }
        table
    }

    /// The BPE model.
    pub fn model(&self) -> &Bpe {
        &self.model
    }

    /// The added tokens, in file order.
    pub fn added_tokens(&self) -> &[AddedToken] {
        &self.added
    }

    /// The normalizer.
    pub fn normalizer(&self) -> Option<&Normalizer> {
        self.normalizer.as_ref()
    }

    /// The pre-tokenizer.
    pub fn pre_tokenizer(&self) -> Option<&PreTokenizer> {
        self.pre_tokenizer.as_ref()
    }

    /// The decoder.
    pub fn decoder(&self) -> Option<&Decoder> {
        self.decoder.as_ref()
    }

    /// The post-processor.
    pub fn post_processor(&self) -> Option<&PostProcessor> {
        self.post_processor.as_ref()
    }

    /// Number of distinct tokens, model and added (Hugging Face's
    /// `get_vocab_size(with_added_tokens=True)`).
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// One past the largest id.
    pub fn id_bound(&self) -> u32 {
        let model_max = self.model.vocab().values().copied().max();
        let added_max = self.added.iter().map(|t| t.id).max();
        model_max.max(added_max).map_or(0, |m| m.saturating_add(1))
    }

    /// The id of a token (added tokens first).
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        match self.added_by_content.get(token) {
            Some(&i) => Some(self.added[i].id),
            None => self.model.token_to_id(token),
        }
    }

    /// The token of an id (added tokens first, in the form the decoder
    /// sees: normalized when they are matched normalized, as in Hugging Face).
    pub fn id_to_token(&self, id: u32) -> Option<&str> {
        if let Some(form) = self.decode_form.get(&id) {
            return Some(form.as_str());
        }
        match self.added_by_id.get(&id) {
            Some(&i) => Some(self.added[i].content.as_str()),
            None => self.model.id_to_token(id),
        }
    }

    /// Whether `id` is a special added token.
    pub fn is_special(&self, id: u32) -> bool {
        self.added_by_id
            .get(&id)
            .is_some_and(|&i| self.added[i].special)
    }

    /// Encodes text into ids.
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        let mut ids = Vec::with_capacity(text.len() / 3 + 4);
        if add_special_tokens {
            if let Some(p) = &self.post_processor {
                ids.extend_from_slice(&p.prefix);
            }
        }
        let mut raw_segments = Vec::new();
        self.raw_matcher.split(text, 0, &mut raw_segments);
        let mut segments = Vec::new();
        for segment in raw_segments {
            match segment {
                Segment::Token(id) => ids.push(id),
                Segment::Text(start, end) => {
                    let piece = Cow::Borrowed(&text[start..end]);
                    let normalized = match &self.normalizer {
                        Some(n) => n.apply(piece),
                        None => piece,
                    };
                    segments.clear();
                    self.normalized_matcher.split(&normalized, 0, &mut segments);
                    for seg in &segments {
                        match *seg {
                            Segment::Token(id) => ids.push(id),
                            Segment::Text(s, e) => self.encode_text(&normalized[s..e], &mut ids)?,
                        }
                    }
                }
            }
        }
        if add_special_tokens {
            if let Some(p) = &self.post_processor {
                ids.extend_from_slice(&p.suffix);
            }
        }
        Ok(ids)
    }

    fn encode_text(&self, text: &str, ids: &mut Vec<u32>) -> Result<()> {
        if text.is_empty() {
            return Ok(());
        }
        match &self.pre_tokenizer {
            None => self.model.tokenize_into(text, ids),
            Some(p) if self.raw_words => {
                let split = p
                    .byte_level_split()
                    .ok_or_else(|| Error::internal("raw-word path without a byte-level split"))?;
                let bytes = text.as_bytes();
                let mut done = 0;
                for (start, end) in split.find_all(text)? {
                    if done < start {
                        self.model.tokenize_raw_into(&bytes[done..start], ids)?;
                    }
                    self.model.tokenize_raw_into(&bytes[start..end], ids)?;
                    done = end;
                }
                if done < bytes.len() {
                    self.model.tokenize_raw_into(&bytes[done..], ids)?;
                }
                Ok(())
            }
            Some(p) => {
                for word in p.apply(vec![Cow::Borrowed(text)])? {
                    self.model.tokenize_into(&word, ids)?;
                }
                Ok(())
            }
        }
    }

    /// Encodes many texts on up to `num_threads` threads (0: one per core).
    pub fn encode_batch(
        &self,
        texts: &[String],
        add_special_tokens: bool,
        num_threads: usize,
    ) -> Result<Vec<Vec<u32>>> {
        parallel_map(texts, num_threads, |t| self.encode(t, add_special_tokens))
    }

    /// The token strings handed to the decoder.
    fn decoder_tokens(&self, ids: &[u32], skip_special_tokens: bool) -> Result<Vec<String>> {
        let mut tokens = Vec::with_capacity(ids.len());
        for &id in ids {
            if skip_special_tokens && self.is_special(id) {
                continue;
            }
            let token = self.id_to_token(id).ok_or_else(|| self.unknown_id(id))?;
            tokens.push(token.to_owned());
        }
        Ok(tokens)
    }

    /// Decodes ids into text; an unknown id is an error.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        if let Some(table) = &self.byte_table {
            return self.decode_with_table(table, ids, skip_special_tokens);
        }
        let tokens = self.decoder_tokens(ids, skip_special_tokens)?;
        Ok(match &self.decoder {
            Some(d) => d.decode(tokens),
            None => tokens.join(" "),
        })
    }

    fn decode_with_table(
        &self,
        table: &ByteTable,
        ids: &[u32],
        skip_special_tokens: bool,
    ) -> Result<String> {
        let mut bytes = Vec::with_capacity(ids.len() * 4);
        for &id in ids {
            let i = id as usize;
            if !table.known.get(i).copied().unwrap_or(false) {
                return Err(self.unknown_id(id));
            }
            if skip_special_tokens && self.is_special(id) {
                continue;
            }
            bytes.extend_from_slice(&table.data[table.offsets[i]..table.offsets[i + 1]]);
        }
        Ok(match String::from_utf8(bytes) {
            Ok(text) => text,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        })
    }

    fn unknown_id(&self, id: u32) -> Error {
        Error::invalid_argument(format!(
            "token id {id} is out of range (no token has it; ids are below {})",
            self.id_bound()
        ))
    }

    /// Decodes many id lists on up to `num_threads` threads (0: one per core).
    pub fn decode_batch(
        &self,
        batch: &[Vec<u32>],
        skip_special_tokens: bool,
        num_threads: usize,
    ) -> Result<Vec<String>> {
        parallel_map(batch, num_threads, |ids| {
            self.decode(ids, skip_special_tokens)
        })
    }

    /// The raw bytes a token stands for: what decoding it gives before
    /// invalid UTF-8 is replaced (and before position-dependent `Strip`
    /// steps). The grammar engine matches these against text.
    pub fn token_bytes(&self, id: u32) -> Result<Vec<u8>> {
        let tokens = self.decoder_tokens(&[id], false)?;
        let token = tokens.concat();
        let Some(decoder) = &self.decoder else {
            return Ok(token.into_bytes());
        };
        if decoder.has_byte_level() {
            if let Some(bytes) = byte_level::unmap(&token, &byte_level::char_to_byte_table()) {
                return Ok(bytes);
            }
        }
        if decoder.has_byte_fallback() {
            if let Some(b) = byte_token(&token) {
                return Ok(vec![b]);
            }
        }
        Ok(match decoder.without_strip() {
            Some(d) => d.decode(vec![token]).into_bytes(),
            None => token.into_bytes(),
        })
    }

    /// [`token_bytes`](Self::token_bytes) of every id below
    /// [`id_bound`](Self::id_bound); ids that no token has get no bytes.
    pub fn all_token_bytes(&self) -> Vec<Vec<u8>> {
        (0..self.id_bound())
            .map(|id| self.token_bytes(id).unwrap_or_default())
            .collect()
    }
}

/// Results of a worker: `(start index, outputs)` per chunk it took.
type Chunks<R> = Vec<(usize, Vec<R>)>;

/// Runs `f` over `items` on up to `num_threads` scoped threads, keeping
/// order; the first error wins.
fn parallel_map<T, R, F>(items: &[T], num_threads: usize, f: F) -> Result<Vec<R>>
where
    T: Sync,
    R: Send,
    F: Fn(&T) -> Result<R> + Sync,
{
    let threads = if num_threads == 0 {
        std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
    } else {
        num_threads
    };
    let threads = threads.min(items.len()).max(1);
    if threads == 1 {
        return items.iter().map(&f).collect();
    }
    // Small chunks handed out through an atomic counter balance uneven texts.
    let chunk = items.len().div_ceil(threads * 8).max(1);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<Result<Chunks<R>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let start = next.fetch_add(chunk, std::sync::atomic::Ordering::Relaxed);
                        if start >= items.len() {
                            return Ok(done);
                        }
                        let end = (start + chunk).min(items.len());
                        let out = items[start..end]
                            .iter()
                            .map(&f)
                            .collect::<Result<Vec<R>>>()?;
                        done.push((start, out));
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .map_err(crate::panic_guard::panic_to_error)
                    .and_then(|r| r)
            })
            .collect()
    });
    let mut chunks = Vec::new();
    for r in results {
        chunks.extend(r?);
    }
    chunks.sort_by_key(|(start, _)| *start);
    Ok(chunks.into_iter().flat_map(|(_, out)| out).collect())
}
