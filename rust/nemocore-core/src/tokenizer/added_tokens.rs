//! Added and special tokens: found in the text before it is split.
//!
//! As in Hugging Face's `AddedVocabulary`: tokens with `normalized: false`
//! are searched in the raw text, the rest of it is normalized, then tokens
//! with `normalized: true` are searched in the normalized text. A search is
//! leftmost-longest; `single_word` rejects matches touching a word
//! character, `lstrip`/`rstrip` widen a match over adjacent whitespace.

use std::sync::LazyLock;

use aho_corasick::{AhoCorasick, MatchKind};

use crate::error::{Error, Result};

/// One added token, with its flags as tokenizer.json spells them.
#[allow(
    clippy::struct_excessive_bools,
    reason = "the five flags are tokenizer.json's, one field each"
)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddedToken {
    /// Its id.
    pub id: u32,
    /// Its text.
    pub content: String,
    /// Only matches as a whole word.
    pub single_word: bool,
    /// Swallows the whitespace on its left.
    pub lstrip: bool,
    /// Swallows the whitespace on its right.
    pub rstrip: bool,
    /// Matched against normalized text (rather than raw text).
    pub normalized: bool,
    /// A special token (dropped by `skip_special_tokens`).
    pub special: bool,
}

/// A piece of text after the added-token search.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Segment {
    /// Byte range of ordinary text.
    Text(usize, usize),
    /// An added token's id.
    Token(u32),
}

/// An automaton over some added tokens.
#[derive(Debug, Clone)]
pub struct Matcher {
    automaton: Option<AhoCorasick>,
    /// Index into the token list, per pattern.
    tokens: Vec<AddedToken>,
}

static WORD_AT_END: LazyLock<Option<regex::Regex>> =
    LazyLock::new(|| regex::Regex::new(r"\w$").ok());
static WORD_AT_START: LazyLock<Option<regex::Regex>> =
    LazyLock::new(|| regex::Regex::new(r"^\w").ok());

fn is_match(re: &LazyLock<Option<regex::Regex>>, text: &str) -> bool {
    re.as_ref().is_some_and(|r| r.is_match(text))
}

impl Matcher {
    /// An automaton over `patterns` (token, text to look for).
    pub fn new(patterns: Vec<(AddedToken, String)>) -> Result<Self> {
        if patterns.is_empty() {
            return Ok(Self {
                automaton: None,
                tokens: Vec::new(),
            });
        }
        let automaton = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(patterns.iter().map(|(_, p)| p.as_str()))
            .map_err(|e| Error::invalid_config(format!("added_tokens: {e}")))?;
        Ok(Self {
            automaton: Some(automaton),
            tokens: patterns.into_iter().map(|(t, _)| t).collect(),
        })
    }

    /// Cuts `text` into ordinary ranges and added tokens, covering it all.
    pub fn split(&self, text: &str, offset: usize, out: &mut Vec<Segment>) {
        let Some(automaton) = &self.automaton else {
            if !text.is_empty() {
                out.push(Segment::Text(offset, offset + text.len()));
            }
            return;
        };
        let mut done = 0;
        for m in automaton.find_iter(text) {
            let token = &self.tokens[m.pattern().as_usize()];
            let (mut start, mut end) = (m.start(), m.end());
            if token.single_word {
                let before_ok = start == 0 || !is_match(&WORD_AT_END, &text[..start]);
                let after_ok = end == text.len() || !is_match(&WORD_AT_START, &text[end..]);
                if !(before_ok && after_ok) {
                    continue;
                }
            }
            if token.lstrip {
                let trimmed = text[..start].trim_end_matches(char::is_whitespace).len();
                start = trimmed.max(done);
            }
            if token.rstrip {
                end = text.len() - text[end..].trim_start_matches(char::is_whitespace).len();
            }
            if done < start {
                out.push(Segment::Text(offset + done, offset + start));
            }
            out.push(Segment::Token(token.id));
            done = end;
        }
        if done < text.len() {
            out.push(Segment::Text(offset + done, offset + text.len()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(id: u32, content: &str) -> AddedToken {
        AddedToken {
            id,
            content: content.to_owned(),
            single_word: false,
            lstrip: false,
            rstrip: false,
            normalized: false,
            special: true,
        }
    }

    fn run(tokens: Vec<AddedToken>, text: &str) -> Vec<Segment> {
        let m = Matcher::new(tokens.into_iter().map(|t| (t.clone(), t.content)).collect()).unwrap();
        let mut out = Vec::new();
        m.split(text, 0, &mut out);
        out
    }

    #[test]
    fn leftmost_longest_and_flags() {
        use Segment::{Text, Token};
        let a = token(1, "<a>");
        let ab = token(2, "<a><b>");
        assert_eq!(
            run(vec![a.clone(), ab], "x<a><b>y"),
            [Text(0, 1), Token(2), Text(7, 8)]
        );
        let strip = AddedToken {
            lstrip: true,
            rstrip: true,
            ..a.clone()
        };
        assert_eq!(
            run(vec![strip], "x  <a>  y"),
            [Text(0, 1), Token(1), Text(8, 9)]
        );
        let word = AddedToken {
            single_word: true,
            ..a
        };
        assert_eq!(run(vec![word.clone()], "x<a> y"), [Text(0, 6)]);
        assert_eq!(
            run(vec![word], "x <a> y"),
            [Text(0, 2), Token(1), Text(5, 7)]
        );
    }
}
