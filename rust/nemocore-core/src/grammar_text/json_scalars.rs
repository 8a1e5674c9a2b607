//! Lark regex text for JSON strings (with lengths, patterns and formats) and
//! integers (with bounds), used by the JSON Schema front end.

use super::regex::{Dialect, Encoding, Node, parse};
use crate::Result;

/// One character of a JSON string as RFC 8259 allows it: unescaped (not `"`,
/// `\`, or a control character), a short escape, or `\uXXXX` (a surrogate
/// escape must be a high one followed by a low one).
pub(crate) const JSON_CHAR: &str = concat!(
    r#"(?:[^"\\\x00-\x1f]|\\["\\\/bfnrt]"#,
    r"|\\u(?:[0-9a-cA-Ce-fE-F][0-9a-fA-F]{3}|[dD][0-7][0-9a-fA-F]{2})",
    r"|\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2})"
);

/// `-?(0|[1-9][0-9]*)` optionally followed by a fraction and an exponent.
pub(crate) const JSON_NUMBER: &str = r"\-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][\+\-]?[0-9]+)?";
pub(crate) const JSON_INTEGER: &str = r"\-?(?:0|[1-9][0-9]*)";

/// The string formats we can generate, as patterns (Python dialect) over the
/// characters of the value (none of which needs a JSON escape).
pub(crate) const FORMATS: &[(&str, &str)] = &[
    (
        "date",
        r"[0-9]{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])",
    ),
    ("time", TIME),
    (
        "date-time",
        concat!(
            r"[0-9]{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])[Tt]",
            r"(?:[01][0-9]|2[0-3]):[0-5][0-9]:(?:[0-5][0-9]|60)(?:\.[0-9]+)?(?:[Zz]|[+\-](?:[01][0-9]|2[0-3]):[0-5][0-9])"
        ),
    ),
    (
        "email",
        concat!(
            r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-]+)*",
            r"@[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?)+"
        ),
    ),
    (
        "uuid",
        r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}",
    ),
    (
        "ipv4",
        r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(?:\.(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}",
    ),
    (
        "hostname",
        r"[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?)*",
    ),
    (
        "uri",
        r"[A-Za-z][A-Za-z0-9+.\-]*:[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]*",
    ),
];

const TIME: &str = r"(?:[01][0-9]|2[0-3]):[0-5][0-9]:(?:[0-5][0-9]|60)(?:\.[0-9]+)?(?:[Zz]|[+\-](?:[01][0-9]|2[0-3]):[0-5][0-9])";

/// A quoted JSON string whose content has `min..=max` characters.
pub(crate) fn string_with_length(min: u32, max: Option<u32>) -> String {
    let count = match (min, max) {
        (0, None) => "*".to_string(),
        (n, None) => format!("{{{n},}}"),
        (n, Some(m)) if n == m => format!("{{{n}}}"),
        (n, Some(m)) => format!("{{{n},{m}}}"),
    };
    format!("\"{JSON_CHAR}{count}\"")
}

/// A quoted JSON string whose value matches `pattern` (ECMAScript search
/// semantics: unanchored ends may have anything around the match).
pub(crate) fn string_with_pattern(pattern: &str) -> Result<String> {
    let parsed = parse(pattern, Dialect::Ecma)?;
    let mut out = String::from("\"");
    if !parsed.anchored_start {
        out.push_str(JSON_CHAR);
        out.push('*');
    }
    out.push_str("(?:");
    parsed.node.write(&mut out, Encoding::JsonString);
    out.push(')');
    if !parsed.anchored_end {
        out.push_str(JSON_CHAR);
        out.push('*');
    }
    out.push('"');
    Ok(out)
}

/// A quoted JSON string in `format`, or `None` for a format we do not know.
pub(crate) fn string_with_format(format: &str) -> Option<String> {
    let (_, pattern) = FORMATS.iter().find(|(name, _)| *name == format)?;
    let node: Node = parse(pattern, Dialect::Python).ok()?.node;
    let mut out = String::from("\"");
    node.write(&mut out, Encoding::JsonString);
    out.push('"');
    Some(out)
}

/// Regex text for the integers in `lo..=hi` (either end may be open).
pub(crate) fn integer_range(lo: Option<i128>, hi: Option<i128>) -> String {
    let mut alts = Vec::new();
    // Negative part: "-" followed by the magnitudes in max(1, -hi)..=-lo.
    if lo.is_none_or(|l| l < 0) {
        let mag_lo = hi.map_or(1, |h| if h < 0 { -h } else { 1 });
        let mag_hi = lo.map(|l| -l);
        for alt in nonneg_range(mag_lo, mag_hi) {
            alts.push(format!("\\-{alt}"));
        }
    }
    if hi.is_none_or(|h| h >= 0) {
        alts.extend(nonneg_range(lo.map_or(0, |l| l.max(0)), hi));
    }
    format!("(?:{})", alts.join("|"))
}

/// Alternatives (regex text) for the decimal numerals of `lo..=hi`, no
/// leading zeros.
fn nonneg_range(lo: i128, hi: Option<i128>) -> Vec<String> {
    let mut alts = Vec::new();
    let digits = |n: i128| u32::try_from(n.to_string().len()).unwrap_or(u32::MAX);
    let top = hi.map_or(digits(lo).max(1), digits);
    for d in digits(lo)..=top {
        let first = if d == 1 { 0 } else { 10i128.pow(d - 1) };
        let last = 10i128.pow(d) - 1;
        let a = lo.max(first);
        let b = hi.map_or(last, |h| h.min(last));
        if a <= b {
            alts.push(same_length(&a.to_string(), &b.to_string()));
        }
    }
    if hi.is_none() {
        // Every numeral longer than the ones covered above.
        alts.push(format!("[1-9][0-9]{{{top},}}"));
    }
    // Longest numerals first: a regex engine's leftmost-first alternation (lark's lexer)
    // then finds the whole number, not a one-digit prefix of it.
    alts.reverse();
    alts
}

/// Regex for the numerals between `lo` and `hi`, both of the same length.
fn same_length(lo: &str, hi: &str) -> String {
    let (Some(l0), Some(h0)) = (lo.chars().next(), hi.chars().next()) else {
        return String::new();
    };
    let (lo_rest, hi_rest) = (&lo[1..], &hi[1..]);
    let n = lo_rest.len();
    if l0 == h0 {
        return format!("{l0}{}", same_length(lo_rest, hi_rest));
    }
    let any = |n: usize| {
        if n == 0 {
            String::new()
        } else {
            format!("[0-9]{{{n}}}")
        }
    };
    if lo_rest.bytes().all(|b| b == b'0') && hi_rest.bytes().all(|b| b == b'9') {
        return format!("[{l0}-{h0}]{}", any(n));
    }
    let mut alts = vec![format!("{l0}{}", same_length(lo_rest, &"9".repeat(n)))];
    let (l1, h1) = (l0 as u8 + 1, h0 as u8 - 1);
    if l1 <= h1 {
        alts.push(format!("[{}-{}]{}", l1 as char, h1 as char, any(n)));
    }
    alts.push(format!("{h0}{}", same_length(&"0".repeat(n), hi_rest)));
    format!("(?:{})", alts.join("|"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(re: &str, s: &str) -> bool {
        let re = regex::Regex::new(&format!("^(?:{})$", re.replace("\\-", "-"))).unwrap();
        re.is_match(s)
    }

    #[test]
    fn integer_ranges_are_exact() {
        for (lo, hi) in [
            (Some(-17), Some(305)),
            (Some(3), None),
            (None, Some(-4)),
            (Some(0), Some(0)),
            (Some(10), Some(99)),
        ] {
            let re = integer_range(lo, hi);
            for n in -1200i128..1200 {
                let inside = lo.is_none_or(|l| n >= l) && hi.is_none_or(|h| n <= h);
                assert_eq!(
                    matches(&re, &n.to_string()),
                    inside,
                    "{lo:?}..{hi:?} {n} {re}"
                );
            }
            assert!(!matches(&re, "007"));
        }
    }
}
