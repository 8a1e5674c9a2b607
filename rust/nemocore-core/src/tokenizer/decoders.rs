//! Decoders: turn the token strings of ids back into text, step by step
//! as Hugging Face's decoders do (each maps a list of strings to a list of
//! strings; the result is their concatenation).

use super::byte_level::{char_to_byte_table, unmap};
use super::normalizers::ReplacePattern;

/// A decoder of a tokenizer.json.
#[derive(Debug, Clone)]
pub enum Decoder {
    /// Maps GPT-2's printable characters back to bytes (tokens with other
    /// characters pass through as UTF-8); invalid UTF-8 becomes U+FFFD.
    ByteLevel,
    /// `<0xXX>` tokens become bytes; a run of them that is not valid UTF-8
    /// becomes one U+FFFD per byte.
    ByteFallback,
    /// Joins all tokens into one.
    Fuse,
    /// Removes up to `start` leading and `stop` trailing `content` characters
    /// from each token.
    Strip {
        /// The character to remove.
        content: char,
        /// At most this many from the start.
        start: usize,
        /// At most this many from the end.
        stop: usize,
    },
    /// Replaces a pattern in each token.
    Replace {
        /// What to replace.
        pattern: ReplacePattern,
        /// The replacement.
        content: String,
    },
    /// Applies each in turn.
    Sequence(Vec<Decoder>),
}

impl Decoder {
    /// Decodes tokens into text.
    pub fn decode(&self, tokens: Vec<String>) -> String {
        self.decode_chain(tokens).concat()
    }

    /// One step of decoding.
    pub fn decode_chain(&self, tokens: Vec<String>) -> Vec<String> {
        match self {
            Decoder::ByteLevel => {
                let table = char_to_byte_table();
                let mut bytes = Vec::new();
                for t in &tokens {
                    match unmap(t, &table) {
                        Some(b) => bytes.extend(b),
                        None => bytes.extend_from_slice(t.as_bytes()),
                    }
                }
                vec![String::from_utf8_lossy(&bytes).into_owned()]
            }
            Decoder::ByteFallback => byte_fallback(tokens),
            Decoder::Fuse => vec![tokens.concat()],
            Decoder::Strip {
                content,
                start,
                stop,
            } => tokens
                .into_iter()
                .map(|t| strip(&t, *content, *start, *stop))
                .collect(),
            Decoder::Replace { pattern, content } => tokens
                .into_iter()
                .map(|t| pattern.replace_all(&t, content).into_owned())
                .collect(),
            Decoder::Sequence(items) => items
                .iter()
                .fold(tokens, |tokens, d| d.decode_chain(tokens)),
        }
    }

    /// Whether this decoder (or one in its sequence) is `ByteLevel`.
    pub fn has_byte_level(&self) -> bool {
        match self {
            Decoder::ByteLevel => true,
            Decoder::Sequence(items) => items.iter().any(Decoder::has_byte_level),
            _ => false,
        }
    }

    /// Whether this decoder (or one in its sequence) is `ByteFallback`.
    pub fn has_byte_fallback(&self) -> bool {
        match self {
            Decoder::ByteFallback => true,
            Decoder::Sequence(items) => items.iter().any(Decoder::has_byte_fallback),
            _ => false,
        }
    }

    /// This decoder without its `Strip` steps, which depend on a token's
    /// place in the text rather than on the token.
    pub fn without_strip(&self) -> Option<Decoder> {
        match self {
            Decoder::Strip { .. } => None,
            Decoder::Sequence(items) => Some(Decoder::Sequence(
                items.iter().filter_map(Decoder::without_strip).collect(),
            )),
            other => Some(other.clone()),
        }
    }
}

/// The byte of a `<0xXX>` token.
pub fn byte_token(token: &str) -> Option<u8> {
    let hex = token.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

fn flush_bytes(bytes: &mut Vec<u8>, out: &mut Vec<String>) {
    if bytes.is_empty() {
        return;
    }
    match String::from_utf8(std::mem::take(bytes)) {
        Ok(s) => out.push(s),
        Err(e) => out.extend(std::iter::repeat_n(
            "\u{FFFD}".to_owned(),
            e.as_bytes().len(),
        )),
    }
}

fn byte_fallback(tokens: Vec<String>) -> Vec<String> {
    let mut out = Vec::with_capacity(tokens.len());
    let mut bytes = Vec::new();
    for t in tokens {
        if let Some(b) = byte_token(&t) {
            bytes.push(b);
        } else {
            flush_bytes(&mut bytes, &mut out);
            out.push(t);
        }
    }
    flush_bytes(&mut bytes, &mut out);
    out
}

fn strip(token: &str, content: char, start: usize, stop: usize) -> String {
    let chars: Vec<char> = token.chars().collect();
    let lead = chars
        .iter()
        .take(start)
        .take_while(|c| **c == content)
        .count();
    let trail = chars
        .iter()
        .rev()
        .take(stop)
        .take_while(|c| **c == content)
        .count();
    let end = chars.len().saturating_sub(trail).max(lead);
    chars[lead..end].iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn byte_level_maps_back_and_replaces_invalid_utf8() {
        assert_eq!(
            Decoder::ByteLevel.decode(toks(&["Hello", "Ġworld", "<|end|>"])),
            "Hello world<|end|>"
        );
        // "é" is C3 A9 = "Ã©"; a lone C3 is invalid.
        assert_eq!(Decoder::ByteLevel.decode(toks(&["Ã©", "Ã"])), "é\u{FFFD}");
    }

    #[test]
    fn llama2_style_sequence() {
        let d = Decoder::Sequence(vec![
            Decoder::Replace {
                pattern: ReplacePattern::new("▁", false, "decoder.pattern").unwrap(),
                content: " ".into(),
            },
            Decoder::ByteFallback,
            Decoder::Fuse,
            Decoder::Strip {
                content: ' ',
                start: 1,
                stop: 0,
            },
        ]);
        assert_eq!(
            d.decode(toks(&["▁Hi", "<0xC3>", "<0xA9>", "▁x", "<0xC3>"])),
            "Hié x\u{FFFD}"
        );
    }

    #[test]
    fn byte_tokens_parse_only_the_exact_shape() {
        assert_eq!(byte_token("<0x0A>"), Some(10));
        assert_eq!(byte_token("<0xA>"), None);
        assert_eq!(byte_token("<0x0A"), None);
    }
}
