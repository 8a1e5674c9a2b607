//! The incremental matcher: one per generated sequence.
//!
//! Each accepted LLM token is a checkpoint (the byte length after it);
//! rolling back truncates the append-only parse state, which is O(1) per
//! checkpoint. With a right context `r` (fill-in-the-middle), the matcher
//! runs on the right-quotient grammar `L / r` (see `quotient.rs`), so masks
//! reject middles that no text can join to `r` and termination is exact.
//! In Python mode (no quotient) termination is decided exactly by feeding
//! `r` to the real state and truncating it again (decoding.md 4.5), and
//! masks use the left context only.

use std::sync::Arc;

use super::mask::TokenTable;
use super::state::State;
use super::walk::{self, Scratch};
use super::{Compiled, Grammar};
use crate::error::{Error, Result};

/// Incremental grammar state for one sequence.
#[derive(Debug, Clone)]
pub struct Matcher {
    grammar: Arc<Grammar>,
    /// The grammar the state runs on: the user's, or its right quotient.
    active: Arc<Compiled>,
    state: State,
    /// The bytes `state` consumed (the prefix included).
    path: Vec<u8>,
    prefix_len: usize,
    checkpoints: Vec<usize>,
    suffix: Option<Vec<u8>>,
    scratch: Scratch,
    words: Vec<u32>,
}

impl Matcher {
    /// A matcher whose left context `prefix` is consumed first (error if it
    /// is not a viable prefix); with `suffix`, the generated middle must
    /// make `prefix + middle + suffix` a sentence (fill-in-the-middle).
    pub fn new(g: Arc<Grammar>, prefix: &[u8], suffix: Option<&[u8]>) -> Result<Matcher> {
        let quotient = match suffix {
            Some(r) => g.right_quotient(r)?,
            None => None,
        };
        // Without a quotient grammar the suffix is fed at termination checks.
        let suffix = suffix.filter(|_| quotient.is_none()).map(<[u8]>::to_vec);
        let active = quotient.unwrap_or_else(|| Arc::clone(&g.compiled));
        let mut state = State::new(&active);
        for (i, &b) in prefix.iter().enumerate() {
            if !state.push(&active, b) {
                return Err(Error::invalid_argument(format!(
                    "the left context is not a viable prefix of the grammar: it fails at byte {i} ({:?})",
                    String::from_utf8_lossy(&prefix[i.saturating_sub(20)..=i])
                )));
            }
        }
        Ok(Matcher {
            grammar: g,
            active,
            state,
            path: prefix.to_vec(),
            prefix_len: prefix.len(),
            checkpoints: Vec::new(),
            suffix,
            scratch: Scratch::default(),
            words: Vec::new(),
        })
    }

    /// The grammar this matcher was made for.
    pub fn grammar(&self) -> &Arc<Grammar> {
        &self.grammar
    }

    fn compiled(&self) -> &Compiled {
        &self.active
    }

    /// Consumes `bytes` as one checkpoint (one LLM token). Returns false
    /// and leaves the state unchanged if they would make the input non-viable.
    pub fn accept_bytes(&mut self, bytes: &[u8]) -> bool {
        let before = self.state.len();
        let g = &*self.active;
        if self.state.push_all(g, bytes) {
            self.path.extend_from_slice(bytes);
            self.checkpoints.push(self.state.len());
            true
        } else {
            self.state.truncate(before);
            false
        }
    }

    /// Undoes the last `n` checkpoints; error (and no change) past the start.
    pub fn rollback(&mut self, n: usize) -> Result<()> {
        if n > self.checkpoints.len() {
            return Err(Error::invalid_argument(format!(
                "cannot roll back {n} tokens: only {} were accepted since the start",
                self.checkpoints.len()
            )));
        }
        self.checkpoints.truncate(self.checkpoints.len() - n);
        let len = self.checkpoints.last().copied().unwrap_or(self.prefix_len);
        self.truncate(len);
        Ok(())
    }

    /// Number of accepted tokens (checkpoints) since the start.
    pub fn num_checkpoints(&self) -> usize {
        self.checkpoints.len()
    }

    /// Whether the consumed input (plus the suffix, if any) is a sentence.
    pub fn can_terminate(&self) -> bool {
        if let (State::Dyn(s), None) = (&self.state, &self.suffix) {
            return s.accepts();
        }
        // Python mode (pending lexeme, indentation) and a suffix to feed
        // need a scratch state; `fill_mask` does this without the copy.
        let mut copy = self.state.clone();
        Self::terminates(self.compiled(), &mut copy, self.suffix.as_deref())
    }

    fn terminates(g: &Compiled, state: &mut State, suffix: Option<&[u8]>) -> bool {
        let len = state.len();
        let ok = match suffix {
            Some(r) => state.push_all(g, r) && state.can_end(g),
            None => state.can_end(g),
        };
        state.truncate(len);
        ok
    }

    /// Returns to the state right after the left context.
    pub fn reset(&mut self) {
        self.checkpoints.clear();
        self.truncate(self.prefix_len);
    }

    fn truncate(&mut self, len: usize) {
        self.state.truncate(len);
        self.path.truncate(len);
        // Bytes consumed from here on may differ from those the last fill saw.
        self.scratch.forget_id();
    }

    /// Fills `mask` (`ceil(vocab / 32)` words; bit `j` of word `w` is token
    /// `32 * w + j`) with the allowed tokens; EOS bits are set iff
    /// [`can_terminate`](Self::can_terminate). Words past the vocabulary
    /// and extra words are cleared.
    pub fn fill_mask(&mut self, table: &TokenTable, mask: &mut [u32]) {
        let words = table.mask_words();
        if mask.len() < words {
            // A short row: computed whole, then cut.
            let mut full = std::mem::take(&mut self.words);
            full.resize(words, 0);
            self.fill_mask(table, &mut full);
            mask.copy_from_slice(&full[..mask.len()]);
            self.words = full;
            return;
        }
        let (row, extra) = mask.split_at_mut(words);
        let g = &*self.active;
        walk::fill(
            g,
            &mut self.state,
            Some(&self.path),
            table,
            row,
            &mut self.scratch,
        );
        if Self::terminates(g, &mut self.state, self.suffix.as_deref()) {
            for &id in table.eos_ids() {
                row[(id / 32) as usize] |= 1 << (id % 32);
            }
        }
        extra.fill(0);
    }

    /// Bytes consumed so far after the left context.
    pub fn consumed_len(&self) -> usize {
        self.state.len() - self.prefix_len
    }
}
