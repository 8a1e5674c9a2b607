//! Streaming decoding: text comes out only once it is complete.
//!
//! Same algorithm as Hugging Face's `DecodeStream`: decode a short window of
//! recent ids, and emit what extends the previous window's text unless it
//! ends in U+FFFD (a character whose bytes have not all arrived). Decoders
//! that look at neighbouring tokens (a leading-space strip) stay right
//! because the window keeps the ids the emitted text depends on.

use super::Tokenizer;
use crate::error::{Error, Result};

/// The state of one streaming decode.
#[derive(Debug, Clone, Default)]
pub struct DecodeStream {
    skip_special_tokens: bool,
    ids: Vec<u32>,
    prefix: String,
    prefix_index: usize,
}

impl DecodeStream {
    /// A new stream.
    pub fn new(skip_special_tokens: bool) -> Self {
        Self {
            skip_special_tokens,
            ..Self::default()
        }
    }

    /// Feeds one id; returns the text it completes, if any.
    pub fn step(&mut self, tokenizer: &Tokenizer, id: u32) -> Result<Option<String>> {
        let skip = self.skip_special_tokens;
        if self.prefix.is_empty() && !self.ids.is_empty() {
            let prefix = tokenizer.decode(&self.ids, skip)?;
            if !prefix.ends_with('\u{FFFD}') {
                self.prefix = prefix;
                self.prefix_index = self.ids.len();
            }
        }
        // Validate before mutating, so a bad id leaves the stream usable.
        tokenizer.decode(&[id], skip)?;
        self.ids.push(id);
        let text = tokenizer.decode(&self.ids, skip)?;
        if text.len() <= self.prefix.len() || text.ends_with('\u{FFFD}') {
            return Ok(None);
        }
        let Some(new_text) = text.strip_prefix(self.prefix.as_str()) else {
            return Err(Error::internal(format!(
                "decode stream: {text:?} does not extend the text already emitted, {:?}",
                self.prefix
            )));
        };
        let new_text = new_text.to_owned();
        let new_prefix_index = self.ids.len() - self.prefix_index;
        self.ids.drain(..self.prefix_index);
        self.prefix = tokenizer.decode(&self.ids, skip)?;
        self.prefix_index = new_prefix_index;
        Ok(Some(new_text))
    }
}
