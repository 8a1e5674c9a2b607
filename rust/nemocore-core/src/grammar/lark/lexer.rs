//! Tokenizer for Lark grammar text.
//!
//! Positions are 1-based line and column (in characters) of the source the
//! user gave, so every error can point at it.

use crate::error::{Error, Result};

/// A 1-based source position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
}

impl Pos {
    /// A [`Error::Grammar`] at this position.
    pub fn error(self, message: impl Into<String>) -> Error {
        Error::grammar(self.line, self.column, message)
    }
}

/// One token of Lark syntax.
#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    /// A rule or terminal name, with a `?` or `!` prefix kept in the text.
    Name(String),
    /// A string literal (escapes resolved) and whether it has the `i` flag.
    Str(String, bool),
    /// A regex literal body (with `\/` resolved) and its flags.
    Regex(String, String),
    /// An unsigned decimal number.
    Number(u32),
    /// `%ignore`, `%import`, ... (the word after `%`).
    Directive(String),
    /// A punctuation mark: `: | ( ) [ ] { } , . .. -> ~ * + ? -`.
    Punct(&'static str),
    /// End of a line (consecutive blank lines and comments collapse).
    Newline,
}

/// A token and where it starts.
#[derive(Debug, Clone)]
pub struct Spanned {
    /// The token.
    pub tok: Tok,
    /// Where it starts.
    pub pos: Pos,
}

struct Cursor<'a> {
    chars: Vec<char>,
    at: usize,
    line: usize,
    column: usize,
    _src: &'a str,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).copied()
    }
    fn peek2(&self) -> Option<char> {
        self.chars.get(self.at + 1).copied()
    }
    fn pos(&self) -> Pos {
        Pos {
            line: self.line,
            column: self.column,
        }
    }
    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.at += 1;
        if c == '\n' {
            self.line += 1;
            self.column = 1;
        } else {
            self.column += 1;
        }
        Some(c)
    }
}

/// Splits Lark grammar text into tokens.
pub fn tokenize(src: &str) -> Result<Vec<Spanned>> {
    let mut cur = Cursor {
        chars: src.chars().collect(),
        at: 0,
        line: 1,
        column: 1,
        _src: src,
    };
    let mut out: Vec<Spanned> = Vec::new();
    while let Some(c) = cur.peek() {
        let pos = cur.pos();
        let tok = match c {
            '\n' => {
                cur.bump();
                if !matches!(
                    out.last(),
                    None | Some(Spanned {
                        tok: Tok::Newline,
                        ..
                    })
                ) {
                    out.push(Spanned {
                        tok: Tok::Newline,
                        pos,
                    });
                }
                continue;
            }
            ' ' | '\t' | '\r' | '\u{c}' => {
                cur.bump();
                continue;
            }
            '\\' if cur.peek2() == Some('\n') => {
                cur.bump();
                cur.bump();
                continue;
            }
            '#' => {
                skip_line(&mut cur);
                continue;
            }
            '/' if cur.peek2() == Some('/') => {
                skip_line(&mut cur);
                continue;
            }
            '"' => string(&mut cur)?,
            '/' => regex(&mut cur)?,
            '%' => {
                cur.bump();
                Tok::Directive(word(&mut cur))
            }
            '0'..='9' => number(&mut cur)?,
            c if c.is_ascii_alphabetic() || c == '_' => Tok::Name(word(&mut cur)),
            '?' | '!'
                if cur
                    .peek2()
                    .is_some_and(|n| n.is_ascii_lowercase() || n == '_') =>
            {
                cur.bump();
                Tok::Name(format!("{c}{}", word(&mut cur)))
            }
            _ => punct(&mut cur)?,
        };
        out.push(Spanned { tok, pos });
    }
    if !matches!(
        out.last(),
        Some(Spanned {
            tok: Tok::Newline,
            ..
        })
    ) {
        out.push(Spanned {
            tok: Tok::Newline,
            pos: cur.pos(),
        });
    }
    Ok(out)
}

fn skip_line(cur: &mut Cursor<'_>) {
    while cur.peek().is_some_and(|c| c != '\n') {
        cur.bump();
    }
}

fn word(cur: &mut Cursor<'_>) -> String {
    let mut s = String::new();
    while let Some(c) = cur
        .peek()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
    {
        s.push(c);
        cur.bump();
    }
    s
}

fn number(cur: &mut Cursor<'_>) -> Result<Tok> {
    let pos = cur.pos();
    let mut s = String::new();
    while let Some(c) = cur.peek().filter(char::is_ascii_digit) {
        s.push(c);
        cur.bump();
    }
    s.parse()
        .map(Tok::Number)
        .map_err(|_| pos.error(format!("number {s} is too large")))
}

fn punct(cur: &mut Cursor<'_>) -> Result<Tok> {
    let pos = cur.pos();
    let two: &[(&str, &'static str)] = &[("->", "->"), ("..", "..")];
    for (text, p) in two {
        let mut it = text.chars();
        if it.next() == cur.peek() && it.next() == cur.peek2() {
            cur.bump();
            cur.bump();
            return Ok(Tok::Punct(p));
        }
    }
    let one = match cur.peek() {
        Some(':') => ":",
        Some('|') => "|",
        Some('(') => "(",
        Some(')') => ")",
        Some('[') => "[",
        Some(']') => "]",
        Some('{') => "{",
        Some('}') => "}",
        Some(',') => ",",
        Some('.') => ".",
        Some('~') => "~",
        Some('*') => "*",
        Some('+') => "+",
        Some('?') => "?",
        Some('-') => "-",
        Some(other) => {
            return Err(pos.error(format!(
                "unexpected character {other:?}; expected a rule, terminal, literal or operator"
            )));
        }
        None => return Err(pos.error("unexpected end of grammar")),
    };
    cur.bump();
    Ok(Tok::Punct(one))
}

fn string(cur: &mut Cursor<'_>) -> Result<Tok> {
    let pos = cur.pos();
    cur.bump();
    let mut raw = String::new();
    loop {
        match cur.bump() {
            None | Some('\n') => {
                return Err(pos.error("unterminated string literal; close it with '\"'"));
            }
            Some('"') => break,
            Some('\\') => {
                raw.push('\\');
                match cur.bump() {
                    Some('\n') | None => {
                        return Err(pos.error("unterminated string literal; close it with '\"'"));
                    }
                    Some(c) => raw.push(c),
                }
            }
            Some(c) => raw.push(c),
        }
    }
    let insensitive = cur.peek() == Some('i') && !cur.peek2().is_some_and(char::is_alphanumeric);
    if insensitive {
        cur.bump();
    }
    let value = unescape(&raw).map_err(|m| pos.error(m))?;
    if value.is_empty() {
        return Err(pos.error("empty string literal \"\"; terminals must match at least one byte"));
    }
    Ok(Tok::Str(value, insensitive))
}

fn regex(cur: &mut Cursor<'_>) -> Result<Tok> {
    let pos = cur.pos();
    cur.bump();
    let mut body = String::new();
    loop {
        match cur.bump() {
            None | Some('\n') => {
                return Err(pos.error("unterminated regex literal; close it with '/'"));
            }
            Some('/') => break,
            Some('\\') if cur.peek() == Some('/') => {
                cur.bump();
                body.push('/');
            }
            Some('\\') => {
                body.push('\\');
                if let Some(c) = cur.bump() {
                    body.push(c);
                }
            }
            Some(c) => body.push(c),
        }
    }
    let mut flags = String::new();
    while let Some(c) = cur.peek().filter(|c| "imslux".contains(*c)) {
        flags.push(c);
        cur.bump();
    }
    if body.is_empty() {
        return Err(pos.error("empty regex literal //"));
    }
    Ok(Tok::Regex(body, flags))
}

/// Resolves Python-style escapes of a string literal.
fn unescape(raw: &str) -> std::result::Result<String, String> {
    let mut out = String::new();
    let mut it = raw.chars().peekable();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let Some(e) = it.next() else {
            return Err("string literal ends with a lone backslash".into());
        };
        match e {
            'n' => out.push('\n'),
            't' => out.push('\t'),
            'r' => out.push('\r'),
            'f' => out.push('\u{c}'),
            'v' => out.push('\u{b}'),
            'a' => out.push('\u{7}'),
            'b' => out.push('\u{8}'),
            '0' => out.push('\0'),
            '\\' | '"' | '\'' => out.push(e),
            'x' | 'u' | 'U' => {
                let len = match e {
                    'x' => 2,
                    'u' => 4,
                    _ => 8,
                };
                let hex: String = (0..len).filter_map(|_| it.next()).collect();
                let ch = u32::from_str_radix(&hex, 16)
                    .ok()
                    .filter(|_| hex.len() == len)
                    .and_then(char::from_u32)
                    .ok_or_else(|| format!("bad escape \\{e}{hex} in string literal"))?;
                out.push(ch);
            }
            other => {
                // Python keeps unknown escapes as written.
                out.push('\\');
                out.push(other);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(src: &str) -> Vec<Tok> {
        tokenize(src).unwrap().into_iter().map(|s| s.tok).collect()
    }

    #[test]
    fn names_literals_and_punctuation() {
        let t = toks("?start: \"a\\n\"i /x\\/y/s -> al // c\n");
        assert_eq!(
            t,
            vec![
                Tok::Name("?start".into()),
                Tok::Punct(":"),
                Tok::Str("a\n".into(), true),
                Tok::Regex("x/y".into(), "s".into()),
                Tok::Punct("->"),
                Tok::Name("al".into()),
                Tok::Newline,
            ]
        );
    }

    #[test]
    fn positions_are_one_based() {
        let t = tokenize("a: b\n  | \"x\"").unwrap();
        let x = t.iter().find(|s| matches!(s.tok, Tok::Str(..))).unwrap();
        assert_eq!(x.pos, Pos { line: 2, column: 5 });
    }

    #[test]
    fn errors_carry_positions() {
        let err = tokenize("a: \"open\n").unwrap_err();
        assert!(err.to_string().contains("line 1, column 4"), "{err}");
        let err = tokenize("a: b $").unwrap_err();
        assert!(err.to_string().contains("line 1, column 6"), "{err}");
    }
}
