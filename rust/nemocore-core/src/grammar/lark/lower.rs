//! Lowering of a parsed Lark grammar to the engine IR.
//!
//! Terminal bodies become one regex each (other terminals inlined); rule
//! bodies become productions, with a fresh helper nonterminal per group,
//! option and repetition (`x*` as the left-recursive `h: | h x`, which is
//! linear for Earley). Tree-shaping marks (`?rule`, `_rule`, `!rule`,
//! aliases) do not change the language and are dropped.

use std::fmt::Write as _;

use rustc_hash::FxHashMap;

use super::lexer::Pos;
use super::parser::{Def, Expr, Item, is_terminal_name, parse};
use crate::error::Result;
use crate::grammar::common::COMMON;
use crate::grammar::dfa::Dfa;
use crate::grammar::ir::{Ir, Prod, Sym, Term};

/// Most copies a `~ n..m` repeat may expand to.
const MAX_REPEAT: u32 = 10_000;

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Ns {
    User,
    Common,
}

struct Lowerer {
    rules: FxHashMap<String, Def>,
    terms: FxHashMap<String, Def>,
    common: FxHashMap<String, Def>,
    /// alias in the user namespace -> name in `common`.
    imported: FxHashMap<String, String>,
    declared: FxHashMap<String, Pos>,
    python: bool,
    ir: Ir,
    term_ids: FxHashMap<String, u32>,
    nt_ids: FxHashMap<String, u32>,
    term_pos: Vec<Pos>,
    helpers: usize,
}

/// Lowers Lark text to IR with `start` as the start rule.
pub fn lower(src: &str, start: &str, python: bool) -> Result<Ir> {
    let mut l = Lowerer {
        rules: FxHashMap::default(),
        terms: FxHashMap::default(),
        common: FxHashMap::default(),
        imported: FxHashMap::default(),
        declared: FxHashMap::default(),
        python,
        ir: Ir::default(),
        term_ids: FxHashMap::default(),
        nt_ids: FxHashMap::default(),
        term_pos: Vec::new(),
        helpers: 0,
    };
    let items = parse(src)?;
    l.collect(&items)?;
    let Some(start_def) = l.rules.get(start).cloned() else {
        return Err(Pos { line: 1, column: 1 }.error(format!(
            "the grammar has no rule named {start:?}; define it or choose another start rule"
        )));
    };
    l.ir.start = l.rule_id(start);
    let mut names: Vec<String> = l.rules.keys().cloned().collect();
    names.sort_by_key(|n| (l.rules[n].pos.line, l.rules[n].pos.column));
    for name in &names {
        let def = l.rules[name].clone();
        l.lower_rule(&def)?;
    }
    for item in &items {
        if let Item::Ignore(e, pos) = item {
            let t = l.ignore_term(e, *pos)?;
            if !l.ir.ignore.contains(&t) {
                l.ir.ignore.push(t);
            }
        }
    }
    l.compile_terms()?;
    l.check(&start_def)?;
    Ok(l.ir)
}

impl Lowerer {
    fn collect(&mut self, items: &[Item]) -> Result<()> {
        for item in items {
            match item {
                Item::Def(d) => {
                    let table = if is_terminal_name(&d.name) {
                        &mut self.terms
                    } else {
                        &mut self.rules
                    };
                    if let Some(old) = table.insert(d.name.clone(), d.clone()) {
                        return Err(d.pos.error(format!(
                            "{} is defined twice (first at line {}); merge the definitions with '|'",
                            d.name, old.pos.line
                        )));
                    }
                }
                Item::Import(path, names) => self.import(path, names)?,
                Item::Declare(names) => {
                    for (n, p) in names {
                        if !is_terminal_name(n) {
                            return Err(p.error(format!("%declare takes terminals; {n} is a rule")));
                        }
                        self.declared.insert(n.clone(), *p);
                    }
                }
                Item::Ignore(..) => {}
            }
        }
        Ok(())
    }

    fn import(&mut self, path: &[String], names: &[(String, String, Pos)]) -> Result<()> {
        if path != ["common"] {
            let pos = names.first().map(|n| n.2).unwrap_or_default();
            return Err(pos.error(format!(
                "cannot import from module {:?}; only `common` is available",
                path.join(".")
            )));
        }
        if self.common.is_empty() {
            for item in parse(COMMON)? {
                if let Item::Def(d) = item {
                    self.common.insert(d.name.clone(), d);
                }
            }
        }
        for (name, alias, pos) in names {
            if !self.common.contains_key(name) {
                let mut known: Vec<&String> =
                    self.common.keys().filter(|k| !k.starts_with('_')).collect();
                known.sort();
                return Err(pos.error(format!("common has no terminal {name}; it has {known:?}")));
            }
            self.imported.insert(alias.clone(), name.clone());
        }
        Ok(())
    }

    fn is_term_defined(&self, name: &str) -> bool {
        self.terms.contains_key(name)
            || self.imported.contains_key(name)
            || self.declared.contains_key(name)
    }

    fn rule_id(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.nt_ids.get(name) {
            return id;
        }
        let id = u32::try_from(self.ir.nonterms.len()).unwrap_or(u32::MAX);
        self.ir.nonterms.push(name.to_string());
        self.nt_ids.insert(name.to_string(), id);
        id
    }

    fn helper(&mut self, owner: u32) -> u32 {
        self.helpers += 1;
        let name = format!("{}__{}", self.ir.nonterms[owner as usize], self.helpers);
        self.rule_id(&name)
    }

    fn add_term(&mut self, key: String, term: Term, pos: Pos) -> u32 {
        if let Some(&id) = self.term_ids.get(&key) {
            return id;
        }
        let id = u32::try_from(self.ir.terms.len()).unwrap_or(u32::MAX);
        self.ir.terms.push(term);
        self.term_pos.push(pos);
        self.term_ids.insert(key, id);
        id
    }

    /// The id of a named terminal (`NUMBER`), compiling its regex.
    fn named_term(&mut self, name: &str, pos: Pos) -> Result<u32> {
        let key = format!("name:{name}");
        if let Some(&id) = self.term_ids.get(&key) {
            return Ok(id);
        }
        if let Some(&dpos) = self.declared.get(name) {
            let term = Term {
                name: name.to_string(),
                pattern: String::new(),
                dfa: None,
                priority: 0,
                is_literal: false,
                synthetic: self.python,
            };
            return Ok(self.add_term(key, term, dpos));
        }
        let mut stack = Vec::new();
        let pattern = self.term_regex(Ns::User, name, pos, &mut stack)?;
        let (def_pos, priority, is_literal) = match self.terms.get(name) {
            Some(d) => (d.pos, d.priority, matches!(d.body, Expr::Lit(_, false, _))),
            None => (pos, 0, false),
        };
        let term = Term {
            name: name.to_string(),
            pattern,
            dfa: None,
            priority,
            is_literal,
            synthetic: false,
        };
        Ok(self.add_term(key, term, def_pos))
    }

    /// An anonymous terminal for a literal or regex used inside a rule.
    fn anon_term(&mut self, e: &Expr, pos: Pos) -> Result<u32> {
        if let Expr::Lit(text, false, _) = e {
            // Lark reuses a named terminal defined as exactly this string.
            let same = self.terms.iter().find_map(|(n, d)| match &d.body {
                Expr::Lit(t, false, _) if t == text => Some(n.clone()),
                _ => None,
            });
            if let Some(name) = same {
                return self.named_term(&name, pos);
            }
        }
        let pattern = self.expr_regex(e, Ns::User, &mut Vec::new())?;
        let (name, is_literal) = match e {
            Expr::Lit(t, ci, _) => (format!("{t:?}{}", if *ci { "i" } else { "" }), !ci),
            Expr::Regex(b, f, _) => (format!("/{b}/{f}"), false),
            _ => (format!("/{pattern}/"), false),
        };
        let term = Term {
            name,
            pattern: pattern.clone(),
            dfa: None,
            priority: 0,
            is_literal,
            synthetic: false,
        };
        Ok(self.add_term(format!("anon:{pattern}"), term, pos))
    }

    fn ignore_term(&mut self, e: &Expr, pos: Pos) -> Result<u32> {
        match e {
            Expr::Name(n, p) if is_terminal_name(n) => {
                if !self.is_term_defined(n) {
                    return Err(p.error(format!("%ignore names undefined terminal {n}")));
                }
                self.named_term(n, *p)
            }
            Expr::Name(n, p) => Err(p.error(format!("%ignore takes terminals; {n} is a rule"))),
            other => self.anon_term(other, pos),
        }
    }

    fn term_regex(
        &mut self,
        ns: Ns,
        name: &str,
        pos: Pos,
        stack: &mut Vec<String>,
    ) -> Result<String> {
        if stack.iter().any(|s| s == name) {
            return Err(pos.error(format!(
                "terminal {name} refers to itself ({} -> {name}); terminals must be regular",
                stack.join(" -> ")
            )));
        }
        let body = match ns {
            Ns::User => {
                if let Some(d) = self.terms.get(name) {
                    (d.body.clone(), Ns::User)
                } else if let Some(c) = self.imported.get(name) {
                    let c = c.clone();
                    return self.term_regex(Ns::Common, &c, pos, stack);
                } else if self.declared.contains_key(name) {
                    return Err(pos.error(format!(
                        "declared terminal {name} has no pattern and cannot be used inside another terminal"
                    )));
                } else {
                    return Err(pos.error(format!(
                        "undefined terminal {name}; define it or %import it"
                    )));
                }
            }
            Ns::Common => match self.common.get(name) {
                Some(d) => (d.body.clone(), Ns::Common),
                None => return Err(pos.error(format!("common has no terminal {name}"))),
            },
        };
        stack.push(name.to_string());
        let r = self.expr_regex(&body.0, body.1, stack);
        stack.pop();
        r
    }

    fn expr_regex(&mut self, e: &Expr, ns: Ns, stack: &mut Vec<String>) -> Result<String> {
        Ok(match e {
            Expr::Lit(s, ci, _) => {
                let esc = escape(s);
                if *ci { format!("(?i:{esc})") } else { esc }
            }
            Expr::Regex(body, flags, _) => {
                let f: String = flags.chars().filter(|c| "imsx".contains(*c)).collect();
                format!("(?{f}:{body})")
            }
            Expr::Range(a, b, _) => format!("[\\x{{{:x}}}-\\x{{{:x}}}]", *a as u32, *b as u32),
            Expr::Name(n, p) => {
                if !is_terminal_name(n) {
                    return Err(p.error(format!(
                        "rule {n} used inside a terminal; terminals may only use terminals"
                    )));
                }
                format!("(?:{})", self.term_regex(ns, n, *p, stack)?)
            }
            Expr::Seq(v) => {
                let parts: Result<Vec<String>> =
                    v.iter().map(|x| self.expr_regex(x, ns, stack)).collect();
                parts?.iter().fold(String::new(), |mut acc, p| {
                    acc.push_str("(?:");
                    acc.push_str(p);
                    acc.push(')');
                    acc
                })
            }
            Expr::Alt(v) => {
                let parts: Result<Vec<String>> =
                    v.iter().map(|x| self.expr_regex(x, ns, stack)).collect();
                format!("(?:{})", parts?.join("|"))
            }
            Expr::Repeat(inner, lo, hi) => {
                let r = self.expr_regex(inner, ns, stack)?;
                match (lo, hi) {
                    (0, Some(1)) => format!("(?:{r})?"),
                    (0, None) => format!("(?:{r})*"),
                    (1, None) => format!("(?:{r})+"),
                    (lo, None) => format!("(?:{r}){{{lo},}}"),
                    (lo, Some(hi)) => format!("(?:{r}){{{lo},{hi}}}"),
                }
            }
        })
    }

    fn lower_rule(&mut self, def: &Def) -> Result<()> {
        let lhs = self.rule_id(&def.name);
        let alts: Vec<Expr> = match &def.body {
            Expr::Alt(v) => v.clone(),
            other => vec![other.clone()],
        };
        for alt in &alts {
            let rhs = self.seq_syms(alt, lhs)?;
            self.ir.prods.push(Prod { lhs, rhs });
        }
        Ok(())
    }

    fn seq_syms(&mut self, e: &Expr, owner: u32) -> Result<Vec<Sym>> {
        match e {
            Expr::Seq(v) => {
                let mut out = Vec::new();
                for x in v {
                    out.extend(self.item_syms(x, owner)?);
                }
                Ok(out)
            }
            other => self.item_syms(other, owner),
        }
    }

    fn item_syms(&mut self, e: &Expr, owner: u32) -> Result<Vec<Sym>> {
        Ok(match e {
            Expr::Name(n, p) => {
                if is_terminal_name(n) {
                    if !self.is_term_defined(n) {
                        return Err(
                            p.error(format!("undefined terminal {n}; define it or %import it"))
                        );
                    }
                    vec![Sym::T(self.named_term(n, *p)?)]
                } else {
                    if !self.rules.contains_key(n) {
                        return Err(p.error(format!("undefined rule {n}")));
                    }
                    vec![Sym::N(self.rule_id(n))]
                }
            }
            Expr::Lit(_, _, p) | Expr::Regex(_, _, p) | Expr::Range(_, _, p) => {
                vec![Sym::T(self.anon_term(e, *p)?)]
            }
            Expr::Seq(_) => self.seq_syms(e, owner)?,
            Expr::Alt(v) => {
                let h = self.helper(owner);
                for alt in v {
                    let rhs = self.seq_syms(alt, owner)?;
                    self.ir.prods.push(Prod { lhs: h, rhs });
                }
                vec![Sym::N(h)]
            }
            Expr::Repeat(inner, lo, hi) => self.repeat(inner, *lo, *hi, owner)?,
        })
    }

    fn single_sym(&mut self, e: &Expr, owner: u32) -> Result<Sym> {
        let syms = self.item_syms(e, owner)?;
        if let [s] = syms.as_slice() {
            return Ok(*s);
        }
        let h = self.helper(owner);
        self.ir.prods.push(Prod { lhs: h, rhs: syms });
        Ok(Sym::N(h))
    }

    fn repeat(&mut self, inner: &Expr, lo: u32, hi: Option<u32>, owner: u32) -> Result<Vec<Sym>> {
        if lo > MAX_REPEAT || hi.is_some_and(|h| h > MAX_REPEAT) {
            return Err(expr_pos(inner).error(format!("repeat count above {MAX_REPEAT}")));
        }
        let s = self.single_sym(inner, owner)?;
        let mut out = Vec::new();
        match hi {
            None => {
                // h: s | h s  (one or more), preceded by lo-1 copies.
                out.extend(std::iter::repeat_n(s, lo.saturating_sub(1) as usize));
                let h = self.helper(owner);
                self.ir.prods.push(Prod {
                    lhs: h,
                    rhs: vec![s],
                });
                self.ir.prods.push(Prod {
                    lhs: h,
                    rhs: vec![Sym::N(h), s],
                });
                if lo == 0 {
                    self.ir.prods.push(Prod {
                        lhs: h,
                        rhs: Vec::new(),
                    });
                }
                out.push(Sym::N(h));
            }
            Some(hi) => {
                out.extend(std::iter::repeat_n(s, lo as usize));
                // Optional tail of up to hi-lo more: t_k: | s t_{k-1}.
                let mut tail: Option<u32> = None;
                for _ in lo..hi {
                    let t = self.helper(owner);
                    self.ir.prods.push(Prod {
                        lhs: t,
                        rhs: Vec::new(),
                    });
                    let mut rhs = vec![s];
                    rhs.extend(tail.map(Sym::N));
                    self.ir.prods.push(Prod { lhs: t, rhs });
                    tail = Some(t);
                }
                out.extend(tail.map(Sym::N));
            }
        }
        Ok(out)
    }

    fn compile_terms(&mut self) -> Result<()> {
        for (i, term) in self.ir.terms.iter_mut().enumerate() {
            if term.pattern.is_empty() {
                continue;
            }
            let pos = self.term_pos[i];
            let dfa = Dfa::new(&term.pattern)
                .map_err(|m| pos.error(format!("terminal {}: {m}", term.name)))?;
            if dfa.is_empty_language() {
                return Err(pos.error(format!("terminal {} matches nothing", term.name)));
            }
            if dfa.matches_empty() {
                return Err(pos.error(format!(
                    "terminal {} matches the empty string; terminals must consume at least one byte",
                    term.name
                )));
            }
            term.dfa = Some(dfa);
        }
        Ok(())
    }

    fn check(&mut self, start_def: &Def) -> Result<()> {
        let productive = self.ir.productive();
        if !productive[self.ir.start as usize] {
            return Err(start_def.pos.error(format!(
                "rule {} derives no finite string (every alternative recurses forever or needs an unavailable terminal)",
                start_def.name
            )));
        }
        let reachable = self.ir.reachable();
        let mut warnings = Vec::new();
        for (i, name) in self.ir.nonterms.iter().enumerate() {
            if name.contains("__") {
                continue;
            }
            if !reachable[i] {
                warnings.push(format!(
                    "rule {name} is unused (not reachable from the start rule)"
                ));
            } else if !productive[i] {
                warnings.push(format!(
                    "rule {name} derives no finite string; it is ignored"
                ));
            }
        }
        let mut unused: Vec<&String> = self
            .terms
            .keys()
            .filter(|n| !self.term_ids.contains_key(&format!("name:{n}")))
            .filter(|n| !self.terms.values().any(|d| mentions(&d.body, n)))
            .collect();
        unused.sort();
        warnings.extend(unused.iter().map(|n| format!("terminal {n} is unused")));
        for t in &self.ir.terms {
            if !t.producible() {
                warnings.push(format!(
                    "terminal {} is declared but nothing produces it; rules using it are ignored",
                    t.name
                ));
            }
        }
        self.ir.warnings = warnings;
        self.ir.remove_unproductive();
        Ok(())
    }
}

fn mentions(e: &Expr, name: &str) -> bool {
    match e {
        Expr::Name(n, _) => n == name,
        Expr::Seq(v) | Expr::Alt(v) => v.iter().any(|x| mentions(x, name)),
        Expr::Repeat(x, _, _) => mentions(x, name),
        _ => false,
    }
}

fn expr_pos(e: &Expr) -> Pos {
    match e {
        Expr::Lit(_, _, p) | Expr::Regex(_, _, p) | Expr::Range(_, _, p) | Expr::Name(_, p) => *p,
        Expr::Seq(v) | Expr::Alt(v) => v.first().map(expr_pos).unwrap_or_default(),
        Expr::Repeat(x, _, _) => expr_pos(x),
    }
}

/// Escapes literal text for regex-automata (`\x{..}` for all ASCII
/// punctuation and controls, so no flag changes its meaning).
fn escape(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_ascii_alphanumeric() || !c.is_ascii() {
            out.push(c);
        } else {
            let _ = write!(out, "\\x{{{:x}}}", c as u32);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(src: &str) -> String {
        lower(src, "start", false).unwrap_err().to_string()
    }

    #[test]
    fn lowers_ebnf_to_productions() {
        let ir = lower(
            "start: a+ | \"x\"? b*\na: \"a\"\nb: B\nB: /b/\n",
            "start",
            false,
        )
        .unwrap();
        assert_eq!(ir.terms.len(), 3);
        assert!(ir.prods.len() >= 7);
        assert!(ir.warnings.is_empty(), "{:?}", ir.warnings);
    }

    #[test]
    fn common_imports_resolve_privately() {
        let ir = lower(
            "start: NUMBER\nINT: \"nope\"\n%import common.NUMBER\n",
            "start",
            false,
        )
        .unwrap();
        let dfa = ir.terms[0].dfa.as_ref().unwrap();
        assert!(dfa.matches(b"12.5e-3") && dfa.matches(b"7") && !dfa.matches(b"nope"));
    }

    #[test]
    fn reports_bad_grammars_with_positions() {
        assert!(err("start: foo\n").contains("line 1, column 8"));
        assert!(err("start: FOO\n").contains("undefined terminal FOO"));
        assert!(err("start: A\nA: /x*/\n").contains("empty string"));
        assert!(err("start: A\nA: B\nB: A\n").contains("refers to itself"));
        assert!(err("start: start \"a\"\n").contains("no finite string"));
        assert!(err("x: \"a\"\n").contains("no rule named \"start\""));
        assert!(err("start: /(?<=a)b/\n").contains("line 1, column 8"));
        assert!(err("%import foo.BAR\nstart: BAR\n").contains("only `common`"));
    }

    #[test]
    fn warns_about_unused_rules() {
        let ir = lower("start: \"a\"\nother: \"b\"\nT: \"t\"\n", "start", false).unwrap();
        assert_eq!(ir.warnings.len(), 2, "{:?}", ir.warnings);
    }
}
