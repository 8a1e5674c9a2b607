//! Recursive-descent parser of Lark grammar syntax into an AST.

use super::lexer::{Pos, Spanned, Tok, tokenize};
use crate::error::Result;

/// An expression of a rule or terminal body.
#[derive(Debug, Clone)]
pub enum Expr {
    /// Alternatives `a | b`.
    Alt(Vec<Expr>),
    /// A sequence `a b c` (empty: the empty string).
    Seq(Vec<Expr>),
    /// A string literal and its case-insensitivity flag.
    Lit(String, bool, Pos),
    /// A regex literal body and flags.
    Regex(String, String, Pos),
    /// A character range `"a".."z"`.
    Range(char, char, Pos),
    /// A reference to a rule or terminal.
    Name(String, Pos),
    /// `e?`, `[e]`, `e*`, `e+`, `e ~ n`, `e ~ n..m`.
    Repeat(Box<Expr>, u32, Option<u32>),
}

/// A rule (`lower_case`) or terminal (`UPPER_CASE`) definition.
#[derive(Debug, Clone)]
pub struct Def {
    /// Name without the `?`/`!` prefix.
    pub name: String,
    /// Where the name is.
    pub pos: Pos,
    /// Priority (`name.2:`), 0 when absent.
    pub priority: i32,
    /// The body.
    pub body: Expr,
}

/// A top-level item.
#[derive(Debug, Clone)]
pub enum Item {
    /// A rule or terminal definition.
    Def(Def),
    /// `%ignore expr`.
    Ignore(Expr, Pos),
    /// `%import module.NAME [-> ALIAS]` or `%import module (A, B)`:
    /// module path, then (name, alias, position) per imported name.
    Import(Vec<String>, Vec<(String, String, Pos)>),
    /// `%declare A B`.
    Declare(Vec<(String, Pos)>),
}

struct Parser {
    toks: Vec<Spanned>,
    at: usize,
}

/// Parses Lark grammar text.
pub fn parse(src: &str) -> Result<Vec<Item>> {
    let mut p = Parser {
        toks: tokenize(src)?,
        at: 0,
    };
    let mut items = Vec::new();
    while p.at < p.toks.len() {
        if p.eat_newline() {
            continue;
        }
        items.push(p.item()?);
        p.end_of_line()?;
    }
    Ok(items)
}

/// Whether a name (without prefix) names a terminal.
pub fn is_terminal_name(name: &str) -> bool {
    name.trim_start_matches('_')
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_uppercase())
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.at).map(|s| &s.tok)
    }
    fn pos(&self) -> Pos {
        self.toks
            .get(self.at)
            .or(self.toks.last())
            .map(|s| s.pos)
            .unwrap_or_default()
    }
    fn eat_newline(&mut self) -> bool {
        if self.peek() == Some(&Tok::Newline) {
            self.at += 1;
            true
        } else {
            false
        }
    }
    fn eat_punct(&mut self, p: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Punct(q)) if *q == p) {
            self.at += 1;
            true
        } else {
            false
        }
    }
    fn expect_punct(&mut self, p: &str, what: &str) -> Result<()> {
        if self.eat_punct(p) {
            Ok(())
        } else {
            Err(self.pos().error(format!("expected '{p}' {what}")))
        }
    }
    fn end_of_line(&mut self) -> Result<()> {
        if self.at >= self.toks.len() || self.eat_newline() {
            Ok(())
        } else {
            Err(self
                .pos()
                .error("unexpected token; expected the end of the line"))
        }
    }
    fn number(&mut self, what: &str) -> Result<u32> {
        if let Some(Tok::Number(n)) = self.peek() {
            let n = *n;
            self.at += 1;
            Ok(n)
        } else {
            Err(self.pos().error(format!("expected a number {what}")))
        }
    }
    fn name(&mut self, what: &str) -> Result<(String, Pos)> {
        let pos = self.pos();
        if let Some(Tok::Name(n)) = self.peek() {
            let n = n.clone();
            self.at += 1;
            Ok((n, pos))
        } else {
            Err(pos.error(format!("expected {what}")))
        }
    }

    fn item(&mut self) -> Result<Item> {
        let pos = self.pos();
        if let Some(Tok::Directive(d)) = self.peek() {
            let d = d.clone();
            self.at += 1;
            return match d.as_str() {
                "ignore" => Ok(Item::Ignore(self.expansions()?, pos)),
                "import" => self.import(),
                "declare" => {
                    let mut names = Vec::new();
                    while matches!(self.peek(), Some(Tok::Name(_))) {
                        names.push(self.name("a name")?);
                    }
                    if names.is_empty() {
                        return Err(pos.error("%declare needs at least one terminal name"));
                    }
                    Ok(Item::Declare(names))
                }
                other => Err(pos.error(format!(
                    "unsupported directive %{other}; supported: %ignore, %import, %declare"
                ))),
            };
        }
        let (raw, pos) = self.name("a rule or terminal definition (name: ...)")?;
        let name = raw.trim_start_matches(['?', '!']).to_string();
        if matches!(self.peek(), Some(Tok::Punct("{"))) {
            return Err(self
                .pos()
                .error("rule templates (name{...}) are not supported; write the rules out"));
        }
        let mut priority = 0;
        if self.eat_punct(".") {
            let negative = self.eat_punct("-");
            let n = i32::try_from(self.number("after '.' (priority)")?).unwrap_or(i32::MAX);
            priority = if negative { -n } else { n };
        }
        self.expect_punct(":", &format!("after the name {name}"))?;
        let body = self.expansions()?;
        Ok(Item::Def(Def {
            name,
            pos,
            priority,
            body,
        }))
    }

    fn import(&mut self) -> Result<Item> {
        let (first, pos) = self.name("a module path after %import (e.g. common.NUMBER)")?;
        let mut path = vec![first];
        while self.eat_punct(".") {
            path.push(self.name("a name after '.'")?.0);
        }
        let mut names = Vec::new();
        if self.eat_punct("(") {
            loop {
                let (n, p) = self.name("a name to import")?;
                names.push((n.clone(), n, p));
                if !self.eat_punct(",") {
                    break;
                }
            }
            self.expect_punct(")", "to close the import list")?;
        } else {
            if path.len() < 2 {
                return Err(pos.error("%import needs module.NAME or module (NAME, ...)"));
            }
            let n = path.pop().unwrap_or_default();
            let alias = if self.eat_punct("->") {
                self.name("an alias after '->'")?.0
            } else {
                n.clone()
            };
            names.push((n, alias, pos));
        }
        Ok(Item::Import(path, names))
    }

    fn expansions(&mut self) -> Result<Expr> {
        let mut alts = vec![self.alias()?];
        loop {
            let save = self.at;
            while self.eat_newline() {}
            if self.eat_punct("|") {
                alts.push(self.alias()?);
            } else {
                self.at = save;
                break;
            }
        }
        Ok(if alts.len() == 1 {
            alts.pop().unwrap_or(Expr::Seq(Vec::new()))
        } else {
            Expr::Alt(alts)
        })
    }

    fn alias(&mut self) -> Result<Expr> {
        let mut seq = Vec::new();
        while let Some(e) = self.expr()? {
            seq.push(e);
        }
        if self.eat_punct("->") {
            self.name("an alias name after '->'")?;
        }
        Ok(if seq.len() == 1 {
            seq.pop().unwrap_or(Expr::Seq(Vec::new()))
        } else {
            Expr::Seq(seq)
        })
    }

    fn expr(&mut self) -> Result<Option<Expr>> {
        let Some(mut e) = self.atom()? else {
            return Ok(None);
        };
        loop {
            e = if self.eat_punct("?") {
                Expr::Repeat(Box::new(e), 0, Some(1))
            } else if self.eat_punct("*") {
                Expr::Repeat(Box::new(e), 0, None)
            } else if self.eat_punct("+") {
                Expr::Repeat(Box::new(e), 1, None)
            } else if self.eat_punct("~") {
                let pos = self.pos();
                let lo = self.number("after '~'")?;
                let hi = if self.eat_punct("..") {
                    self.number("after '..'")?
                } else {
                    lo
                };
                if hi < lo {
                    return Err(pos.error(format!("empty repeat range ~ {lo}..{hi}")));
                }
                Expr::Repeat(Box::new(e), lo, Some(hi))
            } else {
                return Ok(Some(e));
            };
        }
    }

    fn atom(&mut self) -> Result<Option<Expr>> {
        let pos = self.pos();
        let Some(tok) = self.peek().cloned() else {
            return Ok(None);
        };
        let e = match tok {
            Tok::Punct("(") => {
                self.at += 1;
                let e = self.nested()?;
                self.expect_punct(")", "to close '('")?;
                e
            }
            Tok::Punct("[") => {
                self.at += 1;
                let e = self.nested()?;
                self.expect_punct("]", "to close '['")?;
                Expr::Repeat(Box::new(e), 0, Some(1))
            }
            Tok::Str(s, ci) => {
                self.at += 1;
                if self.eat_punct("..") {
                    return self.range(&s, pos).map(Some);
                }
                Expr::Lit(s, ci, pos)
            }
            Tok::Regex(body, flags) => {
                self.at += 1;
                Expr::Regex(body, flags, pos)
            }
            Tok::Name(n) => {
                if n.starts_with(['?', '!']) {
                    return Err(pos.error(format!("unexpected prefix in {n}")));
                }
                // `name:` on the next definition is not part of this body.
                if matches!(
                    self.toks.get(self.at + 1).map(|s| &s.tok),
                    Some(Tok::Punct(":"))
                ) {
                    return Err(pos.error(format!(
                        "unexpected definition of {n} inside an expression; put it on its own line"
                    )));
                }
                self.at += 1;
                Expr::Name(n, pos)
            }
            _ => return Ok(None),
        };
        Ok(Some(e))
    }

    /// Inside brackets, newlines are insignificant.
    fn nested(&mut self) -> Result<Expr> {
        while self.eat_newline() {}
        let e = self.expansions()?;
        while self.eat_newline() {}
        Ok(e)
    }

    fn range(&mut self, lo: &str, pos: Pos) -> Result<Expr> {
        let Some(Tok::Str(hi, _)) = self.peek().cloned() else {
            return Err(self.pos().error("expected a string after '..' in a range"));
        };
        self.at += 1;
        let (mut a, mut b) = (lo.chars(), hi.chars());
        match (a.next(), a.next(), b.next(), b.next()) {
            (Some(x), None, Some(y), None) if x <= y => Ok(Expr::Range(x, y, pos)),
            _ => Err(pos.error(format!(
                "range \"{lo}\"..\"{hi}\" needs two single characters, the first not after the second"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rules_terminals_and_directives() {
        let items = parse(
            "?start: a+ (b | \"c\")* [d] e ~ 2..3\n  | \"x\"..\"z\"\nA.2: /a/i\n%ignore \" \"\n%import common (WS, INT)\n%import common.NUMBER -> N\n%declare X Y\n",
        )
        .unwrap();
        assert_eq!(items.len(), 6);
        let Item::Def(d) = &items[0] else { panic!() };
        assert_eq!(d.name, "start");
        assert!(matches!(&d.body, Expr::Alt(a) if a.len() == 2));
        let Item::Def(t) = &items[1] else { panic!() };
        assert_eq!((t.name.as_str(), t.priority), ("A", 2));
        let Item::Import(m, names) = &items[3] else {
            panic!()
        };
        assert_eq!((m.len(), names.len()), (1, 2));
        let Item::Import(_, names) = &items[4] else {
            panic!()
        };
        assert_eq!((names[0].0.as_str(), names[0].1.as_str()), ("NUMBER", "N"));
    }

    #[test]
    fn errors_point_at_the_problem() {
        let err = parse("start: a\nb c\n").unwrap_err();
        assert!(err.to_string().contains("line 2, column 3"), "{err}");
        let err = parse("start: (a\n").unwrap_err();
        assert!(err.to_string().contains("line 1, column 10"), "{err}");
    }
}
