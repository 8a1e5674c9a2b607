//! Pre-tokenizers: cut normalized text into the words that BPE sees.
//!
//! Each variant reproduces the Hugging Face `tokenizers` component of the
//! same name: `ByteLevel` (GPT-2's split regex, optional prefix space, then
//! the byte-to-unicode mapping), `Split` (a regex or literal with one of five
//! delimiter behaviours, the way cl100k-, o200k- and Llama-3-style
//! tokenizer.json files spell their patterns), `Digits` and `Sequence`.
//! Empty pieces are dropped, as Hugging Face does.

use std::borrow::Cow;

use fancy_regex::Regex;
use regex_automata::{Anchored, Input};

use super::byte_level::BYTE_TO_CHAR;
use crate::error::{Error, Result};

/// GPT-2's split pattern, used by `ByteLevel` when `use_regex` is set.
pub const GPT2_PATTERN: &str =
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

/// How a `Split` pre-tokenizer treats the delimiters it finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SplitBehavior {
    /// Delimiters are dropped.
    Removed,
    /// Each delimiter is its own piece.
    Isolated,
    /// Each delimiter joins the piece before it.
    MergedWithPrevious,
    /// Each delimiter joins the piece after it.
    MergedWithNext,
    /// Runs of adjacent delimiters form one piece.
    Contiguous,
}

impl SplitBehavior {
    /// The names tokenizer.json uses, in the order of [`SplitBehavior::ALL`].
    pub const NAMES: [&'static str; 5] = [
        "Removed",
        "Isolated",
        "MergedWithPrevious",
        "MergedWithNext",
        "Contiguous",
    ];
    const ALL: [SplitBehavior; 5] = [
        SplitBehavior::Removed,
        SplitBehavior::Isolated,
        SplitBehavior::MergedWithPrevious,
        SplitBehavior::MergedWithNext,
        SplitBehavior::Contiguous,
    ];

    /// Parses a tokenizer.json behaviour name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::NAMES
            .iter()
            .position(|n| *n == name)
            .map(|i| Self::ALL[i])
    }

    /// The tokenizer.json name of this behaviour.
    pub fn name(self) -> &'static str {
        Self::NAMES[Self::ALL.iter().position(|b| *b == self).unwrap_or(0)]
    }
}

/// The tail that GPT-2, cl100k, o200k and Llama-3 patterns end with.
const WHITESPACE_TAIL: &str = r"|\s+(?!\S)|\s+";
/// The alternative that cl100k-style patterns put before [`WHITESPACE_TAIL`].
const NEWLINE_ALTERNATIVE: &str = r"|\s*[\r\n]+";

/// How a split pattern is matched.
#[derive(Debug, Clone)]
enum Engine {
    /// A backtracking engine, for any pattern (look-arounds included).
    Backtracking(Regex),
    /// The automaton-based `regex` crate, for patterns ending in
    /// [`WHITESPACE_TAIL`]: the look-ahead is replaced by `\s+` and its effect
    /// restored after each match (see [`SplitPattern::find_all`]).
    Automaton {
        regex: regex_automata::meta::Regex,
        newline_alternative: bool,
    },
}

/// A compiled split pattern and the way it was written in the file.
#[derive(Debug, Clone)]
pub struct SplitPattern {
    /// `true` for `{"Regex": ...}`, `false` for `{"String": ...}` (a literal).
    pub is_regex: bool,
    /// The pattern as written.
    pub source: String,
    engine: Engine,
}

fn automaton_engine(source: &str) -> Option<Engine> {
    let head = source.strip_suffix(WHITESPACE_TAIL)?;
    if ["(?=", "(?!", "(?<", "\\G", "\\K"]
        .iter()
        .any(|x| head.contains(x))
    {
        return None;
    }
    let regex = regex_automata::meta::Regex::new(&format!(r"{head}|\s+")).ok()?;
    Some(Engine::Automaton {
        regex,
        newline_alternative: head.ends_with(NEWLINE_ALTERNATIVE),
    })
}

impl SplitPattern {
    /// Compiles a regex (`is_regex`) or an escaped literal.
    pub fn new(source: &str, is_regex: bool) -> Result<Self> {
        let text = if is_regex {
            Cow::Borrowed(source)
        } else {
            Cow::Owned(regex::escape(source))
        };
        let engine = match automaton_engine(&text) {
            Some(engine) => engine,
            None => Engine::Backtracking(Regex::new(&text).map_err(|e| {
                Error::invalid_config(format!("pre_tokenizer.pattern: bad regex {source:?}: {e}"))
            })?),
        };
        Ok(Self {
            is_regex,
            source: source.to_owned(),
            engine,
        })
    }

    /// Byte ranges of the non-overlapping, non-empty matches in `text`, left
    /// to right.
    pub fn find_all(&self, text: &str) -> Result<Vec<(usize, usize)>> {
        let mut out = Vec::with_capacity(text.len() / 4 + 1);
        match &self.engine {
            Engine::Backtracking(regex) => {
                for m in regex.find_iter(text) {
                    let m =
                        m.map_err(|e| Error::internal(format!("regex failed on input: {e}")))?;
                    if m.start() < m.end() {
                        out.push((m.start(), m.end()));
                    }
                }
            }
            Engine::Automaton {
                regex,
                newline_alternative,
            } => find_without_lookahead(regex, *newline_alternative, text, &mut out),
        }
        Ok(out)
    }
}

/// Matches a pattern `P|\s+(?!\S)|\s+` as the lookahead-free `P|\s+`.
///
/// Both find matches at the same places and agree on every match `P`
/// makes. A match made of whitespace only comes from the tail (P's other
/// alternatives all hold a non-space, except cl100k's `\s*[\r\n]+`, whose
/// matches end in a newline and, when it is absent, the tail never sees one).
/// Greedy `\s+` takes the whole run; `\s+(?!\S)` would stop one character
/// short of a following non-space when the run has two or more characters,
/// so the match is cut there and the search resumes at that character.
fn find_without_lookahead(
    regex: &regex_automata::meta::Regex,
    newline_alternative: bool,
    text: &str,
    out: &mut Vec<(usize, usize)>,
) {
    let mut pos = 0;
    while pos < text.len() {
        // These patterns match at nearly every position: an anchored search
        // finds the match without the reverse scan an unanchored one needs.
        let anchored = Input::new(text).range(pos..).anchored(Anchored::Yes);
        let Some(m) = regex
            .search(&anchored)
            .or_else(|| regex.search(&Input::new(text).range(pos..)))
        else {
            break;
        };
        let (start, mut end) = (m.start(), m.end());
        let run = &text[start..end];
        if end < text.len()
            && run.chars().all(char::is_whitespace)
            && !(newline_alternative && run.contains(['\r', '\n']))
        {
            if let Some((last, _)) = run.char_indices().next_back() {
                if last > 0 {
                    end = start + last;
                }
            }
        }
        if start < end {
            out.push((start, end));
            pos = end;
        } else {
            // An empty match: step over one character.
            pos = start + text[start..].chars().next().map_or(1, char::len_utf8);
        }
    }
}

/// A pre-tokenizer of a tokenizer.json.
#[derive(Debug, Clone)]
pub enum PreTokenizer {
    /// GPT-2's byte-level pre-tokenizer.
    ByteLevel {
        /// Prepend a space to pieces that do not start with one.
        add_prefix_space: bool,
        /// Only affects offsets; kept to write the file back unchanged.
        trim_offsets: bool,
        /// Split with [`GPT2_PATTERN`] before mapping bytes.
        use_regex: bool,
    },
    /// Split on a pattern.
    Split {
        /// What to split on.
        pattern: SplitPattern,
        /// What to do with the delimiters.
        behavior: SplitBehavior,
        /// Treat the non-matches as the delimiters.
        invert: bool,
    },
    /// Split digits from the rest (`individual_digits`: one piece per digit).
    Digits {
        /// One piece per digit rather than per run of digits.
        individual_digits: bool,
    },
    /// Apply each in turn.
    Sequence(Vec<PreTokenizer>),
}

/// A piece of text on its way to the model.
pub type Piece<'a> = Cow<'a, str>;

impl PreTokenizer {
    /// A `ByteLevel` pre-tokenizer compiled with GPT-2's pattern.
    pub fn byte_level(add_prefix_space: bool, use_regex: bool) -> Self {
        PreTokenizer::ByteLevel {
            add_prefix_space,
            trim_offsets: true,
            use_regex,
        }
    }

    /// Cuts every piece of `pieces` further; empty pieces are dropped.
    pub fn apply<'a>(&self, pieces: Vec<Piece<'a>>) -> Result<Vec<Piece<'a>>> {
        if let PreTokenizer::Sequence(items) = self {
            let mut pieces = pieces;
            for item in items {
                pieces = item.apply(pieces)?;
            }
            return Ok(pieces);
        }
        let mut out = Vec::with_capacity(pieces.len());
        for piece in pieces {
            self.apply_one(piece, &mut out)?;
        }
        Ok(out)
    }

    fn apply_one<'a>(&self, piece: Piece<'a>, out: &mut Vec<Piece<'a>>) -> Result<()> {
        match self {
            PreTokenizer::ByteLevel {
                add_prefix_space,
                use_regex,
                ..
            } => {
                let piece = if *add_prefix_space && !piece.starts_with(' ') {
                    Cow::Owned(format!(" {piece}"))
                } else {
                    piece
                };
                if *use_regex {
                    let ranges = gpt2_regex()?.find_all(&piece)?;
                    let mut parts = Vec::new();
                    split_ranges(&piece, &ranges, SplitBehavior::Isolated, &mut parts);
                    out.extend(parts.into_iter().map(|p| Cow::Owned(map_bytes(p))));
                } else if !piece.is_empty() {
                    out.push(Cow::Owned(map_bytes(&piece)));
                }
                Ok(())
            }
            PreTokenizer::Split {
                pattern,
                behavior,
                invert,
            } => {
                let mut ranges = pattern.find_all(&piece)?;
                if *invert {
                    ranges = complement(&ranges, piece.len());
                }
                push_parts(piece, &ranges, *behavior, out);
                Ok(())
            }
            PreTokenizer::Digits { individual_digits } => {
                let ranges = digit_ranges(&piece, *individual_digits);
                push_parts(piece, &ranges, SplitBehavior::Isolated, out);
                Ok(())
            }
            PreTokenizer::Sequence(_) => {
                out.extend(self.apply(vec![piece])?);
                Ok(())
            }
        }
    }

    /// The pattern that cuts raw text into words, when this pre-tokenizer is
    /// a plain byte-level one (GPT-2's `ByteLevel` with its regex, or a
    /// `Split` isolating matches followed by a regex-less `ByteLevel`, both
    /// without prefix space): words are then the pattern's pieces, bytes
    /// mapped, and the model can work on raw bytes.
    pub fn byte_level_split(&self) -> Option<&SplitPattern> {
        match self {
            PreTokenizer::ByteLevel {
                add_prefix_space: false,
                use_regex: true,
                ..
            } => gpt2_regex().ok(),
            PreTokenizer::Sequence(items) => match items.as_slice() {
                [
                    PreTokenizer::Split {
                        pattern,
                        behavior: SplitBehavior::Isolated,
                        invert: false,
                    },
                    PreTokenizer::ByteLevel {
                        add_prefix_space: false,
                        use_regex: false,
                        ..
                    },
                ] => Some(pattern),
                _ => None,
            },
            _ => None,
        }
    }

    /// Whether this pre-tokenizer maps bytes to GPT-2's printable characters.
    pub fn maps_bytes(&self) -> bool {
        match self {
            PreTokenizer::ByteLevel { .. } => true,
            PreTokenizer::Sequence(items) => items.iter().any(PreTokenizer::maps_bytes),
            _ => false,
        }
    }
}

fn gpt2_regex() -> Result<&'static SplitPattern> {
    use std::sync::OnceLock;
    static GPT2: OnceLock<Option<SplitPattern>> = OnceLock::new();
    GPT2.get_or_init(|| SplitPattern::new(GPT2_PATTERN, true).ok())
        .as_ref()
        .ok_or_else(|| Error::internal("GPT-2 split pattern failed to compile"))
}

/// GPT-2's byte-to-unicode mapping of every byte of `text`.
pub fn map_bytes(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 2);
    for b in text.bytes() {
        out.push(BYTE_TO_CHAR[usize::from(b)]);
    }
    out
}

fn complement(ranges: &[(usize, usize)], len: usize) -> Vec<(usize, usize)> {
    let mut out = Vec::with_capacity(ranges.len() + 1);
    let mut pos = 0;
    for &(s, e) in ranges {
        if pos < s {
            out.push((pos, s));
        }
        pos = e;
    }
    if pos < len {
        out.push((pos, len));
    }
    out
}

fn digit_ranges(text: &str, individual: bool) -> Vec<(usize, usize)> {
    let mut out: Vec<(usize, usize)> = Vec::new();
    for (i, c) in text.char_indices() {
        if !c.is_numeric() {
            continue;
        }
        let end = i + c.len_utf8();
        match out.last_mut() {
            Some(last) if !individual && last.1 == i => last.1 = end,
            _ => out.push((i, end)),
        }
    }
    out
}

fn push_parts<'a>(
    piece: Piece<'a>,
    ranges: &[(usize, usize)],
    behavior: SplitBehavior,
    out: &mut Vec<Piece<'a>>,
) {
    match piece {
        Cow::Borrowed(text) => {
            let mut parts = Vec::new();
            split_ranges(text, ranges, behavior, &mut parts);
            out.extend(parts.into_iter().map(Cow::Borrowed));
        }
        Cow::Owned(text) => {
            let mut parts = Vec::new();
            split_ranges(&text, ranges, behavior, &mut parts);
            out.extend(parts.into_iter().map(|p| Cow::Owned(p.to_owned())));
        }
    }
}

/// Cuts `text` at the delimiter `ranges` (sorted, disjoint) the way
/// `behavior` says, pushing the non-empty parts.
fn split_ranges<'t>(
    text: &'t str,
    ranges: &[(usize, usize)],
    behavior: SplitBehavior,
    out: &mut Vec<&'t str>,
) {
    // (start, end, is_delimiter) covering the whole text.
    let mut spans: Vec<(usize, usize, bool)> = Vec::with_capacity(ranges.len() * 2 + 1);
    let mut pos = 0;
    for &(s, e) in ranges {
        if pos < s {
            spans.push((pos, s, false));
        }
        spans.push((s, e, true));
        pos = e;
    }
    if pos < text.len() {
        spans.push((pos, text.len(), false));
    }
    let mut merged: Vec<(usize, usize)> = Vec::with_capacity(spans.len());
    let mut pending_next: Option<usize> = None;
    let mut prev_was_delim = false;
    for (s, e, delim) in spans {
        match behavior {
            SplitBehavior::Removed if delim => {}
            SplitBehavior::Removed | SplitBehavior::Isolated => merged.push((s, e)),
            SplitBehavior::MergedWithPrevious => match merged.last_mut() {
                Some(last) if delim && !prev_was_delim => last.1 = e,
                _ => merged.push((s, e)),
            },
            SplitBehavior::MergedWithNext => {
                if delim {
                    if pending_next.is_none() {
                        pending_next = Some(s);
                    } else {
                        // Two delimiters in a row: the first stands alone.
                        merged.push((pending_next.unwrap_or(s), s));
                        pending_next = Some(s);
                    }
                } else {
                    merged.push((pending_next.take().unwrap_or(s), e));
                }
            }
            SplitBehavior::Contiguous => match merged.last_mut() {
                Some(last) if delim && prev_was_delim => last.1 = e,
                _ => merged.push((s, e)),
            },
        }
        prev_was_delim = delim;
    }
    if let Some(s) = pending_next {
        merged.push((s, text.len()));
    }
    out.extend(
        merged
            .into_iter()
            .filter(|(s, e)| s < e)
            .map(|(s, e)| &text[s..e]),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(text: &str, pattern: &str, behavior: SplitBehavior) -> Vec<String> {
        let p = PreTokenizer::Split {
            pattern: SplitPattern::new(pattern, false).unwrap(),
            behavior,
            invert: false,
        };
        p.apply(vec![Cow::Borrowed(text)])
            .unwrap()
            .into_iter()
            .map(Cow::into_owned)
            .collect()
    }

    #[test]
    fn split_behaviours_match_hugging_face_examples() {
        let t = "the-final--countdown";
        assert_eq!(
            split(t, "-", SplitBehavior::Removed),
            ["the", "final", "countdown"]
        );
        assert_eq!(
            split(t, "-", SplitBehavior::Isolated),
            ["the", "-", "final", "-", "-", "countdown"]
        );
        assert_eq!(
            split(t, "-", SplitBehavior::MergedWithPrevious),
            ["the-", "final-", "-", "countdown"]
        );
        assert_eq!(
            split(t, "-", SplitBehavior::MergedWithNext),
            ["the", "-final", "-", "-countdown"]
        );
        assert_eq!(
            split(t, "-", SplitBehavior::Contiguous),
            ["the", "-", "final", "--", "countdown"]
        );
    }

    #[test]
    fn byte_level_splits_like_gpt2() {
        let p = PreTokenizer::byte_level(false, true);
        let out: Vec<String> = p
            .apply(vec![Cow::Borrowed("Hello  world's 42!\n")])
            .unwrap()
            .into_iter()
            .map(Cow::into_owned)
            .collect();
        assert_eq!(out, ["Hello", "Ġ", "Ġworld", "'s", "Ġ42", "!", "Ċ"]);
    }

    #[test]
    fn behaviour_names_round_trip() {
        for name in SplitBehavior::NAMES {
            assert_eq!(SplitBehavior::from_name(name).unwrap().name(), name);
        }
        assert!(SplitBehavior::from_name("Merged").is_none());
    }
}
