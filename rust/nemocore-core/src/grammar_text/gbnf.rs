//! GBNF (llama.cpp's grammar notation) -> Lark.
//!
//! `name ::= alternatives` rules; a rule ends at the end of its line except
//! inside parentheses; `#` comments; terminals are `"strings"`, classes
//! `[a-z]`/`[^...]` and `.` (any character); `*`, `+`, `?` and `{m}`,
//! `{m,}`, `{m,n}`, `{,n}` repeat; the start rule is `root`. Parenthesized
//! groups become rules of their own. llama.cpp's token references
//! (`<[id]>`, `<token>`) are not supported.

use std::fmt::Write as _;

use std::collections::HashMap;

use super::lark_out::{complement, normalize_ranges, regex_class, rule_name, string_literal};
use super::source::error_at;
use crate::Result;

/// Translates a GBNF grammar into Lark text whose `start` is GBNF's `root`.
pub fn gbnf_to_lark(src: &str) -> Result<String> {
    let mut p = Parser {
        src,
        pos: 0,
        names: HashMap::new(),
        refs: Vec::new(),
        rules: Vec::new(),
        groups: 0,
    };
    p.skip_space(true);
    while p.pos < src.len() {
        p.rule()?;
        p.skip_space(true);
    }
    for (name, offset) in &p.refs {
        let lark = p.names.get(name);
        if !p.rules.iter().any(|(n, _)| Some(n) == lark) {
            return Err(error_at(
                src,
                *offset,
                format!("GBNF: rule {name:?} is used but never defined"),
            ));
        }
    }
    let Some(root) = p.names.get("root") else {
        return Err(error_at(
            src,
            0,
            "GBNF: the grammar has no `root` rule (the start rule); add `root ::= ...`",
        ));
    };
    let mut out = format!("start: {root}\n");
    for (name, body) in &p.rules {
        let _ = writeln!(out, "{name}: {body}");
    }
    Ok(out)
}

struct Parser<'a> {
    src: &'a str,
    pos: usize,
    /// GBNF name -> Lark rule name.
    names: HashMap<String, String>,
    /// Every reference and where it is, checked once all rules are read.
    refs: Vec<(String, usize)>,
    rules: Vec<(String, String)>,
    groups: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn error(&self, message: &str) -> crate::Error {
        error_at(self.src, self.pos, format!("GBNF: {message}"))
    }

    /// Skips blanks and comments; newlines too when `newlines`.
    fn skip_space(&mut self, newlines: bool) {
        while let Some(c) = self.peek() {
            match c {
                '#' => {
                    while !matches!(self.peek(), Some('\n') | None) {
                        self.bump();
                    }
                }
                ' ' | '\t' => {
                    self.bump();
                }
                '\r' | '\n' if newlines => {
                    self.bump();
                }
                _ => break,
            }
        }
    }

    fn name(&mut self) -> Option<String> {
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            self.bump();
        }
        (self.pos > start).then(|| self.src[start..self.pos].to_string())
    }

    fn lark_name(&mut self, gbnf: &str) -> String {
        let next = self.names.len() + self.groups;
        self.names
            .entry(gbnf.to_string())
            .or_insert_with(|| rule_name(next, gbnf))
            .clone()
    }

    fn rule(&mut self) -> Result<()> {
        let Some(name) = self.name() else {
            return Err(self.error("expected a rule name"));
        };
        self.skip_space(false);
        if !self.src[self.pos..].starts_with("::=") {
            return Err(self.error("expected '::=' after the rule name"));
        }
        self.pos += 3;
        self.skip_space(true);
        let body = self.alternates(false)?;
        let lark = self.lark_name(&name);
        if self.rules.iter().any(|(n, _)| *n == lark) {
            return Err(self.error(&format!("rule {name:?} is defined twice")));
        }
        self.rules.push((lark, body));
        match self.peek() {
            None | Some('\n' | '\r') => Ok(()),
            Some(_) => Err(self.error("expected the end of the line after the rule")),
        }
    }

    fn alternates(&mut self, nested: bool) -> Result<String> {
        let mut alts = vec![self.sequence(nested)?];
        while self.peek() == Some('|') {
            self.bump();
            self.skip_space(true);
            alts.push(self.sequence(nested)?);
        }
        Ok(alts.join(" | "))
    }

    fn sequence(&mut self, nested: bool) -> Result<String> {
        let mut items: Vec<String> = Vec::new();
        while let Some(c) = self.peek() {
            let item = match c {
                '"' => self.string()?,
                '[' => self.class()?,
                '.' => {
                    self.bump();
                    Some(class_regex(&complement(&[])))
                }
                '(' => Some(self.group()?),
                '<' | '!' => return Err(self.error("token references (<...>) are not supported")),
                c if c.is_ascii_alphanumeric() || c == '-' || c == '_' => {
                    let offset = self.pos;
                    let name = self.name().unwrap_or_default();
                    self.refs.push((name.clone(), offset));
                    Some(self.lark_name(&name))
                }
                _ => break,
            };
            self.skip_space(nested);
            let item = self.repetition(item)?;
            self.skip_space(nested);
            items.extend(item);
        }
        Ok(items.join(" "))
    }

    fn group(&mut self) -> Result<String> {
        self.bump();
        self.skip_space(true);
        let body = self.alternates(true)?;
        if self.peek() != Some(')') {
            return Err(self.error("expected ')'"));
        }
        self.bump();
        self.groups += 1;
        let name = rule_name(self.names.len() + self.groups, "group");
        self.rules.push((name.clone(), body));
        Ok(name)
    }

    /// Applies a following `*`, `+`, `?` or `{m,n}` to `item` (`None` is the
    /// empty string, which stays empty under any repetition).
    fn repetition(&mut self, item: Option<String>) -> Result<Option<String>> {
        let op = match self.peek() {
            Some(c @ ('*' | '+' | '?')) => {
                self.bump();
                c.to_string()
            }
            Some('{') => self.braces()?,
            _ => return Ok(item),
        };
        let Some(item) = item else { return Ok(None) };
        Ok(match op.as_str() {
            "" => None,
            _ if op.starts_with('+') && op.len() > 1 => {
                Some(format!("{item} ~ {} {item}*", &op[1..]))
            }
            _ => Some(format!("{item}{op}")),
        })
    }

    /// `{m}`, `{m,}`, `{m,n}`, `{,n}` as a Lark suffix ("" for zero copies;
    /// "+m" encodes "m copies then any number").
    fn braces(&mut self) -> Result<String> {
        self.bump();
        self.skip_space(true);
        let min = self.number()?;
        self.skip_space(true);
        let max = if self.peek() == Some(',') {
            self.bump();
            self.skip_space(true);
            if self.peek() == Some('}') {
                None
            } else {
                let n = self.number()?;
                Some(n.ok_or_else(|| self.error("expected a repetition count"))?)
            }
        } else {
            Some(min.unwrap_or(0))
        };
        self.skip_space(true);
        if self.bump() != Some('}') {
            return Err(self.error("expected '}' after the repetition count"));
        }
        let min = min.unwrap_or(0);
        Ok(match max {
            None if min == 0 => "*".to_string(),
            None => format!("+{min}"),
            Some(max) if max < min => return Err(self.error("repetition {m,n} needs m <= n")),
            Some(0) => String::new(),
            Some(max) if max == min => format!(" ~ {min}"),
            Some(max) => format!(" ~ {min}..{max}"),
        })
    }

    fn number(&mut self) -> Result<Option<u32>> {
        let start = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.bump();
        }
        if self.pos == start {
            return Ok(None);
        }
        match self.src[start..self.pos].parse::<u32>() {
            Ok(n) if n <= 10_000 => Ok(Some(n)),
            _ => Err(error_at(
                self.src,
                start,
                "GBNF: repetition counts above 10000 are not supported",
            )),
        }
    }

    /// A quoted string; `None` when it is empty.
    fn string(&mut self) -> Result<Option<String>> {
        self.bump();
        let mut text = String::new();
        loop {
            match self.peek() {
                None | Some('\n') => return Err(self.error("unterminated string")),
                Some('"') => {
                    self.bump();
                    break;
                }
                Some(_) => text.push(self.char_in_literal()?),
            }
        }
        Ok((!text.is_empty()).then(|| string_literal(&text)))
    }

    /// One character of a string or class, escapes decoded.
    fn char_in_literal(&mut self) -> Result<char> {
        let c = self
            .bump()
            .ok_or_else(|| self.error("unexpected end of input"))?;
        if c != '\\' {
            return Ok(c);
        }
        let escaped = self
            .bump()
            .ok_or_else(|| self.error("unexpected end of input after '\\'"))?;
        let digits = match escaped {
            'x' => 2,
            'u' => 4,
            'U' => 8,
            'n' => return Ok('\n'),
            'r' => return Ok('\r'),
            't' => return Ok('\t'),
            '\\' | '"' | '[' | ']' | '-' | '^' => return Ok(escaped),
            _ => return Err(self.error(&format!("unknown escape '\\{escaped}'"))),
        };
        let start = self.pos;
        for _ in 0..digits {
            if !self.bump().is_some_and(|h| h.is_ascii_hexdigit()) {
                return Err(self.error(&format!("expected {digits} hex digits")));
            }
        }
        u32::from_str_radix(&self.src[start..self.pos], 16)
            .ok()
            .and_then(char::from_u32)
            .ok_or_else(|| error_at(self.src, start, "GBNF: not a Unicode scalar value"))
    }

    fn class(&mut self) -> Result<Option<String>> {
        self.bump();
        let negated = self.peek() == Some('^');
        if negated {
            self.bump();
        }
        let mut ranges = Vec::new();
        loop {
            match self.peek() {
                None | Some('\n') => return Err(self.error("unterminated character class")),
                Some(']') => {
                    self.bump();
                    break;
                }
                Some(_) => {
                    let lo = u32::from(self.char_in_literal()?);
                    let mut hi = lo;
                    if self.peek() == Some('-') && !self.src[self.pos + 1..].starts_with(']') {
                        self.bump();
                        if matches!(self.peek(), None | Some('\n')) {
                            return Err(self.error("unterminated character class"));
                        }
                        hi = u32::from(self.char_in_literal()?);
                        if hi < lo {
                            return Err(self.error("character range out of order"));
                        }
                    }
                    ranges.push((lo, hi));
                }
            }
        }
        let ranges = normalize_ranges(ranges);
        let ranges = if negated { complement(&ranges) } else { ranges };
        if ranges.is_empty() {
            return Err(self.error("the character class matches nothing"));
        }
        Ok(Some(class_regex(&ranges)))
    }
}

fn class_regex(ranges: &[(u32, u32)]) -> String {
    let mut out = String::from("/");
    regex_class(&mut out, ranges);
    out.push('/');
    out
}
