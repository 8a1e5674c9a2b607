//! Normalizers: rewrite text before it is split (offsets are not tracked,
//! since nemocore's tokenizer returns ids only).

use std::borrow::Cow;

use unicode_normalization::UnicodeNormalization;

use crate::error::{Error, Result};

/// What a `Replace` normalizer or decoder looks for.
#[derive(Debug, Clone)]
pub struct ReplacePattern {
    /// `true` for `{"Regex": ...}`, `false` for `{"String": ...}`.
    pub is_regex: bool,
    /// The pattern as written in the file.
    pub source: String,
    regex: regex::Regex,
}

impl ReplacePattern {
    /// Compiles the pattern; `field` names it in errors.
    pub fn new(source: &str, is_regex: bool, field: &str) -> Result<Self> {
        let text = if is_regex {
            source.to_owned()
        } else {
            regex::escape(source)
        };
        let regex = regex::Regex::new(&text)
            .map_err(|e| Error::invalid_config(format!("{field}: bad regex {source:?}: {e}")))?;
        Ok(Self {
            is_regex,
            source: source.to_owned(),
            regex,
        })
    }

    /// `text` with every match replaced by `content` (taken literally).
    pub fn replace_all<'t>(&self, text: &'t str, content: &str) -> Cow<'t, str> {
        self.regex.replace_all(text, regex::NoExpand(content))
    }
}

/// A normalizer of a tokenizer.json.
#[derive(Debug, Clone)]
pub enum Normalizer {
    /// Unicode canonical composition.
    Nfc,
    /// Unicode canonical decomposition.
    Nfd,
    /// Unicode compatibility composition.
    Nfkc,
    /// Unicode compatibility decomposition.
    Nfkd,
    /// Lower-casing (Unicode, as `str::to_lowercase`).
    Lowercase,
    /// Prepends a string to non-empty text.
    Prepend(String),
    /// Replaces every match of a pattern.
    Replace {
        /// What to replace.
        pattern: ReplacePattern,
        /// The replacement.
        content: String,
    },
    /// Strips whitespace on the left and/or right.
    Strip {
        /// Strip leading whitespace.
        left: bool,
        /// Strip trailing whitespace.
        right: bool,
    },
    /// Applies each in turn.
    Sequence(Vec<Normalizer>),
}

impl Normalizer {
    /// Normalizes `text`.
    pub fn apply<'t>(&self, text: Cow<'t, str>) -> Cow<'t, str> {
        match self {
            Normalizer::Nfc => owned_if_changed(text, |t| t.nfc().collect()),
            Normalizer::Nfd => owned_if_changed(text, |t| t.nfd().collect()),
            Normalizer::Nfkc => owned_if_changed(text, |t| t.nfkc().collect()),
            Normalizer::Nfkd => owned_if_changed(text, |t| t.nfkd().collect()),
            Normalizer::Lowercase => owned_if_changed(text, str::to_lowercase),
            Normalizer::Prepend(prefix) => {
                if text.is_empty() {
                    text
                } else {
                    Cow::Owned(format!("{prefix}{text}"))
                }
            }
            Normalizer::Replace { pattern, content } => match pattern.replace_all(&text, content) {
                Cow::Borrowed(_) => text,
                Cow::Owned(s) => Cow::Owned(s),
            },
            Normalizer::Strip { left, right } => {
                let mut s: &str = &text;
                if *left {
                    s = s.trim_start();
                }
                if *right {
                    s = s.trim_end();
                }
                if s.len() == text.len() {
                    text
                } else {
                    Cow::Owned(s.to_owned())
                }
            }
            Normalizer::Sequence(items) => items.iter().fold(text, |t, n| n.apply(t)),
        }
    }
}

fn owned_if_changed(text: Cow<'_, str>, f: impl Fn(&str) -> String) -> Cow<'_, str> {
    // ASCII is unchanged by the Unicode normal forms; lowercase still applies.
    let out = f(&text);
    if out == *text { text } else { Cow::Owned(out) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(n: &Normalizer, s: &str) -> String {
        n.apply(Cow::Borrowed(s)).into_owned()
    }

    #[test]
    fn each_normalizer_rewrites_as_documented() {
        assert_eq!(norm(&Normalizer::Nfc, "e\u{301}"), "\u{e9}");
        assert_eq!(norm(&Normalizer::Nfd, "\u{e9}"), "e\u{301}");
        assert_eq!(norm(&Normalizer::Nfkc, "\u{fb01}"), "fi");
        assert_eq!(norm(&Normalizer::Lowercase, "ÀB"), "àb");
        assert_eq!(norm(&Normalizer::Prepend("▁".into()), "a"), "▁a");
        assert_eq!(norm(&Normalizer::Prepend("▁".into()), ""), "");
        let replace = Normalizer::Replace {
            pattern: ReplacePattern::new(" ", false, "normalizer.pattern").unwrap(),
            content: "▁".into(),
        };
        assert_eq!(norm(&replace, "a b  c"), "a▁b▁▁c");
        let seq = Normalizer::Sequence(vec![Normalizer::Prepend("▁".into()), replace]);
        assert_eq!(norm(&seq, "a b"), "▁a▁b");
    }

    #[test]
    fn bad_regex_names_the_field() {
        let err = ReplacePattern::new("(", true, "normalizer.pattern").unwrap_err();
        assert!(err.to_string().contains("normalizer.pattern"), "{err}");
    }
}
