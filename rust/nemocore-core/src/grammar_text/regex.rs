//! Regular expressions (the common subset of ECMAScript and Python `re`
//! syntax) parsed into a small tree, and written back as Lark regex text.
//!
//! Supported: literals, `.`, classes `[...]`/`[^...]` with ranges, escapes
//! (`\d \w \s \D \W \S`, `\n \r \t \f \v \0`, `\xHH`, `\uHHHH`, `\u{H..}`,
//! escaped punctuation), groups `(...)`, `(?:...)`, `(?<name>...)`,
//! `(?P<name>...)`, alternation, and the quantifiers `* + ? {n} {n,} {n,m}`
//! (lazy forms accepted: laziness does not change the language). `^` and `$`
//! are accepted only at the very start and end. Lookaround, backreferences,
//! word boundaries, flags and possessive quantifiers are errors: they are
//! not regular, or not supported by the engine's byte DFAs.

use std::fmt::Write as _;

use super::lark_out::{complement, normalize_ranges, regex_char, regex_class};
use super::source::error_at;
use crate::Result;

/// Largest repetition count accepted (bigger counts blow up DFAs).
const MAX_REPEAT: u32 = 10_000;

/// A regular expression over Unicode scalar values.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node {
    /// The empty string.
    Empty,
    /// One character from sorted, disjoint ranges (never empty).
    Class(Vec<(u32, u32)>),
    Concat(Vec<Node>),
    Alt(Vec<Node>),
    /// `min` to `max` (unbounded when `None`) copies.
    Repeat(Box<Node>, u32, Option<u32>),
}

/// Which dialect's meaning `.`, `\d`, `\w` and `\s` take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// Python `re` with `re.ASCII`: `.` is anything but `\n`.
    Python,
    /// ECMAScript (JSON Schema `pattern`): `.` excludes all line terminators,
    /// `\s` is Unicode white space.
    Ecma,
}

/// A parsed pattern and whether it was anchored at each end.
pub(crate) struct Parsed {
    pub node: Node,
    pub anchored_start: bool,
    pub anchored_end: bool,
}

/// Parses `pattern`; errors point into `pattern` itself.
pub(crate) fn parse(pattern: &str, dialect: Dialect) -> Result<Parsed> {
    let mut p = Parser {
        src: pattern,
        chars: pattern.char_indices().collect(),
        pos: 0,
        dialect,
    };
    let anchored_start = p.eat('^');
    let node = p.alternation()?;
    let anchored_end = p.eat('$');
    if p.pos < p.chars.len() {
        let what = match p.peek() {
            Some(')') => "unbalanced ')'",
            Some('$') => "'$' is only supported at the end of the pattern",
            _ => "unexpected character",
        };
        return Err(p.error(what));
    }
    Ok(Parsed {
        node,
        anchored_start,
        anchored_end,
    })
}

/// The Lark grammar for "the whole text matches `pattern`" (Python `re`
/// syntax with ASCII classes, as `re.fullmatch(pattern, text, re.ASCII)`).
pub fn regex_to_lark(pattern: &str) -> Result<String> {
    let parsed = parse(pattern, Dialect::Python)?;
    let node = parsed.node;
    let nullable = node.nullable();
    let Some(body) = node.non_empty() else {
        return Ok(if nullable {
            "start: \n".to_string()
        } else {
            return Err(error_at(pattern, 0, "the pattern matches no string at all"));
        });
    };
    let mut out = String::from("start: PATTERN");
    if nullable {
        out.push_str(" |");
    }
    out.push_str("\nPATTERN: /");
    body.write(&mut out, Encoding::Plain);
    out.push_str("/\n");
    Ok(out)
}

/// How matched characters are written in the generated text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    /// As themselves.
    Plain,
    /// Inside a JSON string literal: `"` `\` and control characters as JSON
    /// escapes (the shortest form; `\uXXXX` for controls without one).
    JsonString,
}

impl Node {
    pub(crate) fn nullable(&self) -> bool {
        match self {
            Node::Empty => true,
            Node::Class(_) => false,
            Node::Concat(xs) => xs.iter().all(Node::nullable),
            Node::Alt(xs) => xs.iter().any(Node::nullable),
            Node::Repeat(x, min, _) => *min == 0 || x.nullable(),
        }
    }

    /// The same language without the empty string; `None` if nothing is left.
    pub(crate) fn non_empty(&self) -> Option<Node> {
        match self {
            Node::Empty => None,
            Node::Class(_) => Some(self.clone()),
            Node::Alt(xs) => {
                let alts: Vec<Node> = xs.iter().filter_map(Node::non_empty).collect();
                (!alts.is_empty()).then(|| Node::alt(alts))
            }
            Node::Concat(xs) => Self::concat_non_empty(xs),
            Node::Repeat(x, min, max) => {
                if *max == Some(0) {
                    return None;
                }
                let first = x.non_empty()?;
                let rest = Node::Repeat(x.clone(), min.saturating_sub(1), max.map(|m| m - 1));
                Some(Node::Concat(vec![first, rest]))
            }
        }
    }

    fn concat_non_empty(xs: &[Node]) -> Option<Node> {
        let (head, tail) = xs.split_first()?;
        let mut alts = Vec::new();
        if let Some(h) = head.non_empty() {
            let mut seq = vec![h];
            seq.extend(tail.iter().cloned());
            alts.push(Node::Concat(seq));
        }
        if head.nullable()
            && let Some(t) = Self::concat_non_empty(tail)
        {
            alts.push(t);
        }
        (!alts.is_empty()).then(|| Node::alt(alts))
    }

    fn alt(mut alts: Vec<Node>) -> Node {
        if alts.len() == 1 {
            alts.pop().unwrap_or(Node::Empty)
        } else {
            Node::Alt(alts)
        }
    }

    /// Writes the node as regex text for a Lark `/.../` literal.
    pub(crate) fn write(&self, out: &mut String, enc: Encoding) {
        match self {
            Node::Empty => out.push_str("(?:)"),
            Node::Class(ranges) => write_class(out, ranges, enc),
            Node::Concat(xs) => {
                for x in xs {
                    x.write_atom(out, enc, matches!(x, Node::Alt(_)));
                }
            }
            Node::Alt(xs) => {
                for (i, x) in xs.iter().enumerate() {
                    if i > 0 {
                        out.push('|');
                    }
                    x.write(out, enc);
                }
            }
            Node::Repeat(x, min, max) => {
                let simple = matches!(**x, Node::Class(_)) && enc == Encoding::Plain;
                x.write_atom(out, enc, !simple);
                match (min, max) {
                    (0, None) => out.push('*'),
                    (1, None) => out.push('+'),
                    (0, Some(1)) => out.push('?'),
                    (n, None) => {
                        let _ = write!(out, "{{{n},}}");
                    }
                    (n, Some(m)) if n == m => {
                        let _ = write!(out, "{{{n}}}");
                    }
                    (n, Some(m)) => {
                        let _ = write!(out, "{{{n},{m}}}");
                    }
                }
            }
        }
    }

    fn write_atom(&self, out: &mut String, enc: Encoding, group: bool) {
        if group {
            out.push_str("(?:");
            self.write(out, enc);
            out.push(')');
        } else {
            self.write(out, enc);
        }
    }
}

/// Writes one character class; in JSON strings the characters that need
/// escaping become alternatives spelled as their escapes.
fn write_class(out: &mut String, ranges: &[(u32, u32)], enc: Encoding) {
    if enc == Encoding::Plain {
        regex_class(out, ranges);
        return;
    }
    let special = |c: u32| c < 0x20 || c == u32::from('"') || c == u32::from('\\');
    let mut plain = Vec::new();
    let mut escapes: Vec<String> = Vec::new();
    for &(lo, hi) in ranges {
        let mut start = None;
        for c in lo..=hi.min(0x7F) {
            if special(c) {
                escapes.push(json_escape_regex(c));
                if let Some(s) = start.take() {
                    plain.push((s, c - 1));
                }
            } else if start.is_none() {
                start = Some(c);
            }
        }
        if hi > 0x7F {
            plain.push((start.unwrap_or(lo.max(0x80)), hi));
        } else if let Some(s) = start {
            plain.push((s, hi));
        }
    }
    let plain = normalize_ranges(plain);
    out.push_str("(?:");
    let mut first = true;
    if !plain.is_empty() {
        regex_class(out, &plain);
        first = false;
    }
    for e in escapes {
        if !first {
            out.push('|');
        }
        out.push_str(&e);
        first = false;
    }
    out.push(')');
}

/// Regex text for the JSON escape of `c` (`"`, `\` or a control character).
fn json_escape_regex(c: u32) -> String {
    let short = match c {
        0x22 => Some('"'),
        0x5C => Some('\\'),
        0x08 => Some('b'),
        0x0C => Some('f'),
        0x0A => Some('n'),
        0x0D => Some('r'),
        0x09 => Some('t'),
        _ => None,
    };
    let mut s = String::from("\\\\");
    if let Some(e) = short {
        regex_char(&mut s, u32::from(e));
        return s;
    }
    s.push_str("u00");
    for h in format!("{c:02x}").chars() {
        if h.is_ascii_alphabetic() {
            let _ = write!(s, "[{h}{}]", h.to_ascii_uppercase());
        } else {
            s.push(h);
        }
    }
    s
}

struct Parser<'a> {
    src: &'a str,
    chars: Vec<(usize, char)>,
    pos: usize,
    dialect: Dialect,
}

impl Parser<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).map(|&(_, c)| c)
    }

    fn peek_at(&self, k: usize) -> Option<char> {
        self.chars.get(self.pos + k).map(|&(_, c)| c)
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn error(&self, message: &str) -> crate::Error {
        self.error_from(self.pos, message)
    }

    /// An error pointing at character `index` (where the offending construct starts).
    fn error_from(&self, index: usize, message: &str) -> crate::Error {
        let offset = self.chars.get(index).map_or(self.src.len(), |&(o, _)| o);
        error_at(self.src, offset, format!("regex: {message}"))
    }

    fn alternation(&mut self) -> Result<Node> {
        let mut alts = vec![self.concatenation()?];
        while self.eat('|') {
            alts.push(self.concatenation()?);
        }
        Ok(Node::alt(alts))
    }

    fn concatenation(&mut self) -> Result<Node> {
        let mut items = Vec::new();
        while let Some(c) = self.peek() {
            if c == '|' || c == ')' || (c == '$' && self.pos + 1 == self.chars.len()) {
                break;
            }
            let atom = self.atom()?;
            items.push(self.quantified(atom)?);
        }
        Ok(match items.len() {
            0 => Node::Empty,
            1 => items.pop().unwrap_or(Node::Empty),
            _ => Node::Concat(items),
        })
    }

    fn quantified(&mut self, atom: Node) -> Result<Node> {
        let (min, max) = match self.peek() {
            Some('*') => (0, None),
            Some('+') => (1, None),
            Some('?') => (0, Some(1)),
            Some('{') => match self.braces()? {
                Some(bounds) => bounds,
                None => return Ok(atom),
            },
            _ => return Ok(atom),
        };
        self.pos += 1; // the operator, or the closing brace
        self.eat('?'); // lazy: same language
        if matches!(self.peek(), Some('*' | '+' | '?' | '{')) {
            return Err(self.error("possessive or doubled quantifiers are not supported"));
        }
        Ok(Node::Repeat(Box::new(atom), min, max))
    }

    /// Parses `{n}`, `{n,}` or `{n,m}` up to (not past) the closing brace;
    /// `None` (and nothing consumed) when the brace is a literal.
    fn braces(&mut self) -> Result<Option<(u32, Option<u32>)>> {
        let start = self.pos;
        self.pos += 1;
        let min = self.number();
        let bounds = if self.eat(',') {
            (min, Some(self.number()))
        } else {
            (min, None)
        };
        // Python reads `{,n}` as `{0,n}`; ECMAScript as literal text.
        let bounds = match bounds {
            (None, Some(Some(h))) if self.dialect == Dialect::Python => (Some(0), Some(Some(h))),
            b => b,
        };
        let (Some(lo), hi) = (bounds.0, bounds.1) else {
            self.pos = start;
            return Ok(None);
        };
        if self.peek() != Some('}') {
            self.pos = start;
            return Ok(None);
        }
        let hi = match hi {
            None => Some(lo),
            Some(None) => None,
            Some(Some(h)) => Some(h),
        };
        if lo > MAX_REPEAT || hi.is_some_and(|h| h > MAX_REPEAT) {
            return Err(self.error_from(
                start,
                &format!("repetition counts above {MAX_REPEAT} are not supported"),
            ));
        }
        if hi.is_some_and(|h| h < lo) {
            return Err(self.error_from(start, "repetition {n,m} needs n <= m"));
        }
        Ok(Some((lo, hi)))
    }

    fn number(&mut self) -> Option<u32> {
        let mut value: Option<u32> = None;
        while let Some(d) = self.peek().and_then(|c| c.to_digit(10)) {
            value = Some(value.unwrap_or(0).saturating_mul(10).saturating_add(d));
            self.pos += 1;
        }
        value
    }

    fn atom(&mut self) -> Result<Node> {
        let Some(c) = self.peek() else {
            return Err(self.error("pattern ended unexpectedly"));
        };
        match c {
            '(' => self.group(),
            '[' => self.class(),
            '.' => {
                self.pos += 1;
                let excluded: &[(u32, u32)] = match self.dialect {
                    Dialect::Python => &[(0x0A, 0x0A)],
                    Dialect::Ecma => &[(0x0A, 0x0A), (0x0D, 0x0D), (0x2028, 0x2029)],
                };
                Ok(Node::Class(complement(excluded)))
            }
            '\\' => {
                self.pos += 1;
                Ok(Node::Class(self.escape(false)?))
            }
            '*' | '+' | '?' => Err(self.error(&format!("nothing to repeat before '{c}'"))),
            '^' => Err(self.error("'^' is only supported at the start of the pattern")),
            '$' => Err(self.error("'$' is only supported at the end of the pattern")),
            c => {
                self.pos += 1;
                Ok(Node::Class(vec![(u32::from(c), u32::from(c))]))
            }
        }
    }

    fn group(&mut self) -> Result<Node> {
        let start = self.pos;
        self.pos += 1;
        if self.eat('?') {
            match (self.peek(), self.peek_at(1)) {
                (Some(':'), _) => self.pos += 1,
                (Some('P'), Some('<')) | (Some('<'), Some(_)) => {
                    if matches!(self.peek_at(1), Some('=' | '!')) {
                        return Err(self.error_from(start, "lookbehind is not supported"));
                    }
                    while !matches!(self.peek(), Some('>') | None) {
                        self.pos += 1;
                    }
                    if !self.eat('>') {
                        return Err(self.error("unterminated group name"));
                    }
                }
                (Some('=' | '!'), _) => {
                    return Err(self.error_from(start, "lookahead is not supported"));
                }
                _ => {
                    return Err(self.error_from(
                        start,
                        "inline flags and other (?...) groups are not supported",
                    ));
                }
            }
        }
        let inner = self.alternation()?;
        if !self.eat(')') {
            return Err(self.error("missing ')'"));
        }
        Ok(inner)
    }

    fn class(&mut self) -> Result<Node> {
        self.pos += 1;
        let negated = self.eat('^');
        if self.peek() == Some(']') {
            return Err(self.error("empty class '[]' (write '\\]' for a literal bracket)"));
        }
        let mut ranges = Vec::new();
        loop {
            let item_start = self.pos;
            let lo = match self.peek() {
                None => return Err(self.error("missing ']'")),
                Some(']') => {
                    self.pos += 1;
                    break;
                }
                Some('\\') => {
                    self.pos += 1;
                    self.escape(true)?
                }
                Some(c) => {
                    self.pos += 1;
                    vec![(u32::from(c), u32::from(c))]
                }
            };
            let single = matches!(lo.as_slice(), [(a, b)] if a == b);
            if single && self.peek() == Some('-') && !matches!(self.peek_at(1), Some(']') | None) {
                self.pos += 1;
                let hi = match self.peek() {
                    Some('\\') => {
                        self.pos += 1;
                        self.escape(true)?
                    }
                    Some(c) => {
                        self.pos += 1;
                        vec![(u32::from(c), u32::from(c))]
                    }
                    None => return Err(self.error("missing ']'")),
                };
                let (Some(&(a, _)), [(b, b2)]) = (lo.first(), hi.as_slice()) else {
                    return Err(self.error("a class range cannot end in a class escape"));
                };
                if b != b2 || *b < a {
                    return Err(self.error_from(item_start, "class range out of order"));
                }
                ranges.push((a, *b));
            } else {
                ranges.extend(lo);
            }
        }
        let ranges = normalize_ranges(ranges);
        let ranges = if negated { complement(&ranges) } else { ranges };
        if ranges.is_empty() {
            return Err(self.error("the class matches no character"));
        }
        Ok(Node::Class(ranges))
    }

    /// After a backslash: the ranges the escape stands for.
    fn escape(&mut self, in_class: bool) -> Result<Vec<(u32, u32)>> {
        let Some(c) = self.peek() else {
            return Err(self.error("pattern ends with a lone backslash"));
        };
        let start = self.pos - 1;
        self.pos += 1;
        let one = |cp: u32| Ok(vec![(cp, cp)]);
        match c {
            'd' => Ok(vec![(0x30, 0x39)]),
            'w' => Ok(normalize_ranges(vec![
                (0x30, 0x39),
                (0x41, 0x5A),
                (0x5F, 0x5F),
                (0x61, 0x7A),
            ])),
            's' => Ok(self.space()),
            'D' => Ok(complement(&[(0x30, 0x39)])),
            'W' => Ok(complement(&normalize_ranges(vec![
                (0x30, 0x39),
                (0x41, 0x5A),
                (0x5F, 0x5F),
                (0x61, 0x7A),
            ]))),
            'S' => Ok(complement(&self.space())),
            'n' => one(0x0A),
            'r' => one(0x0D),
            't' => one(0x09),
            'f' => one(0x0C),
            'v' => one(0x0B),
            'b' if in_class => one(0x08),
            '0' if !self.peek().is_some_and(|d| d.is_ascii_digit()) => one(0),
            'x' => self.hex_escape(2).map(|cp| vec![(cp, cp)]),
            'u' => self.unicode_escape().map(|cp| vec![(cp, cp)]),
            'b' | 'B' => {
                Err(self.error_from(start, "word boundaries (\\b, \\B) are not supported"))
            }
            '1'..='9' | 'k' => Err(self.error_from(start, "backreferences are not supported")),
            'A' | 'Z' | 'z' | 'G' => Err(self.error_from(
                start,
                "anchors other than ^ and $ at the ends are not supported",
            )),
            'p' | 'P' => Err(self.error_from(
                start,
                "Unicode property escapes (\\p{..}) are not supported",
            )),
            c if c.is_ascii_punctuation() || c == ' ' => one(u32::from(c)),
            c => Err(self.error_from(start, &format!("unknown escape '\\{c}'"))),
        }
    }

    fn space(&self) -> Vec<(u32, u32)> {
        let mut r = vec![(0x09, 0x0D), (0x20, 0x20)];
        if self.dialect == Dialect::Ecma {
            r.extend([
                (0xA0, 0xA0),
                (0x1680, 0x1680),
                (0x2000, 0x200A),
                (0x2028, 0x2029),
            ]);
            r.extend([
                (0x202F, 0x202F),
                (0x205F, 0x205F),
                (0x3000, 0x3000),
                (0xFEFF, 0xFEFF),
            ]);
        }
        normalize_ranges(r)
    }

    fn hex_escape(&mut self, digits: usize) -> Result<u32> {
        let mut cp = 0u32;
        for _ in 0..digits {
            let Some(d) = self.peek().and_then(|c| c.to_digit(16)) else {
                return Err(self.error(&format!("expected {digits} hex digits")));
            };
            cp = cp * 16 + d;
            self.pos += 1;
        }
        Ok(cp)
    }

    /// `\uHHHH` (a surrogate pair as two escapes) or `\u{H...}`.
    fn unicode_escape(&mut self) -> Result<u32> {
        if self.eat('{') {
            let mut cp = 0u32;
            while let Some(d) = self.peek().and_then(|c| c.to_digit(16)) {
                cp = cp.saturating_mul(16).saturating_add(d);
                self.pos += 1;
            }
            if !self.eat('}') || char::from_u32(cp).is_none() {
                return Err(self.error("bad \\u{...} escape"));
            }
            return Ok(cp);
        }
        let cp = self.hex_escape(4)?;
        if (0xD800..=0xDBFF).contains(&cp)
            && self.peek() == Some('\\')
            && self.peek_at(1) == Some('u')
        {
            self.pos += 2;
            let low = self.hex_escape(4)?;
            if (0xDC00..=0xDFFF).contains(&low) {
                return Ok(0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00));
            }
        }
        if (0xD800..=0xDFFF).contains(&cp) {
            return Err(self.error("lone surrogate escape"));
        }
        Ok(cp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lark(p: &str) -> String {
        regex_to_lark(p).unwrap()
    }

    #[test]
    fn emits_one_terminal() {
        assert_eq!(lark("ab+"), "start: PATTERN\nPATTERN: /ab+/\n");
        assert_eq!(lark("a|b*"), "start: PATTERN |\nPATTERN: /a|bb*/\n");
        assert_eq!(
            lark("[a-c/]{2}"),
            "start: PATTERN\nPATTERN: /[\\/a-c][\\/a-c]{1}/\n"
        );
    }

    #[test]
    fn errors_point_at_the_problem() {
        for (p, col, what) in [
            ("ab(?=c)", 3, "lookahead"),
            ("a\\1", 2, "backreference"),
            ("(ab", 4, "missing ')'"),
            ("*a", 1, "nothing to repeat"),
            ("a^b", 2, "'^'"),
        ] {
            let err = regex_to_lark(p).unwrap_err().to_string();
            assert!(err.contains(&format!("column {col}")), "{p}: {err}");
            assert!(err.contains(what), "{p}: {err}");
        }
    }

    #[test]
    fn json_string_encoding_escapes_specials() {
        let parsed = parse("a\"\\\\\n", Dialect::Ecma).unwrap();
        let mut s = String::new();
        parsed.node.write(&mut s, Encoding::JsonString);
        assert_eq!(s, "(?:a)(?:\\\\\\\")(?:\\\\\\\\)(?:\\\\n)");
    }
}
