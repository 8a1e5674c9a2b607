//! Writing pieces of Lark text: string literals, regex literals, rule names.

use std::fmt::Write as _;

/// Largest Unicode scalar value.
pub(crate) const MAX_CHAR: u32 = 0x10_FFFF;
/// First and last UTF-16 surrogate (not Unicode scalar values, never in UTF-8 text).
pub(crate) const SURROGATES: (u32, u32) = (0xD800, 0xDFFF);

/// `s` as a Lark string literal `"..."` (`s` must not be empty: Lark forbids
/// empty terminals).
pub(crate) fn string_literal(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 || c as u32 == 0x7F => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// One code point as it must be written inside a Lark `/regex/` literal,
/// in or out of a character class: alphanumerics and space raw,
/// punctuation backslash-escaped (`/` included, as Lark requires), other
/// characters as `\xHH`, `\uHHHH` or `\UHHHHHHHH` (Lark and the engine both
/// read these escapes as the character itself, a literal in the regex).
pub(crate) fn regex_char(out: &mut String, cp: u32) {
    match char::from_u32(cp) {
        Some(c) if c.is_ascii_alphanumeric() || c == ' ' => out.push(c),
        Some(c) if c.is_ascii_punctuation() => {
            out.push('\\');
            out.push(c);
        }
        _ if cp < 0x80 => {
            let _ = write!(out, "\\x{cp:02x}");
        }
        _ if cp <= 0xFFFF => {
            let _ = write!(out, "\\u{cp:04x}");
        }
        _ => {
            let _ = write!(out, "\\U{cp:08x}");
        }
    }
}

/// A character class over the sorted, disjoint, non-empty `ranges`, as regex
/// text (a single character is written without brackets).
pub(crate) fn regex_class(out: &mut String, ranges: &[(u32, u32)]) {
    if let [(lo, hi)] = ranges
        && lo == hi
    {
        regex_char(out, *lo);
        return;
    }
    out.push('[');
    for &(lo, hi) in ranges {
        regex_char(out, lo);
        if hi > lo {
            if hi > lo + 1 {
                out.push('-');
            }
            regex_char(out, hi);
        }
    }
    out.push(']');
}

/// Sorts and merges `ranges` (inclusive bounds) and removes surrogates.
pub(crate) fn normalize_ranges(mut ranges: Vec<(u32, u32)>) -> Vec<(u32, u32)> {
    ranges.sort_unstable();
    let mut merged: Vec<(u32, u32)> = Vec::with_capacity(ranges.len());
    for (lo, hi) in ranges {
        match merged.last_mut() {
            Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
            _ => merged.push((lo, hi)),
        }
    }
    let (s_lo, s_hi) = SURROGATES;
    let mut out = Vec::with_capacity(merged.len() + 1);
    for (lo, hi) in merged {
        if hi < s_lo || lo > s_hi {
            out.push((lo, hi));
            continue;
        }
        if lo < s_lo {
            out.push((lo, s_lo - 1));
        }
        if hi > s_hi {
            out.push((s_hi + 1, hi));
        }
    }
    out
}

/// The complement of normalized `ranges` within all Unicode scalar values.
pub(crate) fn complement(ranges: &[(u32, u32)]) -> Vec<(u32, u32)> {
    let mut out = Vec::new();
    let mut next = 0u32;
    for &(lo, hi) in ranges {
        if lo > next {
            out.push((next, lo - 1));
        }
        next = hi + 1;
    }
    if next <= MAX_CHAR {
        out.push((next, MAX_CHAR));
    }
    normalize_ranges(out)
}

/// A Lark rule name made from `hint` (lowercase letters, digits, `_`),
/// numbered so that names never collide.
pub(crate) fn rule_name(index: usize, hint: &str) -> String {
    let mut name = format!("r{index}");
    let clean: String = hint
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(24)
        .collect();
    if !clean.is_empty() {
        name.push('_');
        name.push_str(&clean);
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_literals_escape_quotes_backslashes_and_controls() {
        assert_eq!(string_literal("a\"b\\c\n"), "\"a\\\"b\\\\c\\x0a\"");
        assert_eq!(string_literal("é"), "\"é\"");
    }

    #[test]
    fn classes_merge_and_skip_surrogates() {
        let r = normalize_ranges(vec![(0x61, 0x63), (0x62, 0x65), (0xD000, 0xE000)]);
        assert_eq!(r, vec![(0x61, 0x65), (0xD000, 0xD7FF), (0xE000, 0xE000)]);
        let mut s = String::new();
        regex_class(&mut s, &[(0x2F, 0x2F)]);
        assert_eq!(s, "\\/");
        assert_eq!(
            complement(&[(0, 0x60), (0x62, MAX_CHAR)]),
            vec![(0x61, 0x61)]
        );
    }
}
