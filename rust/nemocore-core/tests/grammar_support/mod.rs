//! Shared helpers of the grammar tests: an independent CFG membership
//! reference (fixpoint over substrings) for single-character grammars.

#![allow(
    dead_code,
    clippy::unwrap_used,
    reason = "each test file uses a different subset; a failed unwrap is a failed test"
)]

/// A JSON grammar in Lark syntax with lark's common terminals, shared by the accept, mask and
/// latency tests.
pub const JSON_LARK: &str = r#"
start: value
?value: object | array | ESCAPED_STRING | SIGNED_NUMBER | "true" | "false" | "null"
array: "[" [value ("," value)*] "]"
object: "{" [pair ("," pair)*] "}"
pair: ESCAPED_STRING ":" value
%import common.ESCAPED_STRING
%import common.SIGNED_NUMBER
%import common.WS
%ignore WS
"#;

/// A CFG over characters: uppercase letters are nonterminals, anything else
/// a terminal character; `rules` are `(lhs, rhs)`; `S` is the start.
pub struct Cfg {
    pub rules: Vec<(char, &'static str)>,
}

impl Cfg {
    pub fn new(rules: &[(char, &'static str)]) -> Cfg {
        Cfg {
            rules: rules.to_vec(),
        }
    }

    /// The same grammar in Lark syntax (`S` becomes rule `start`).
    pub fn to_lark(&self) -> String {
        let name = |c: char| {
            if c == 'S' {
                "start".to_string()
            } else {
                format!("n{}", c.to_ascii_lowercase())
            }
        };
        let mut lhs: Vec<char> = Vec::new();
        for r in &self.rules {
            if !lhs.contains(&r.0) {
                lhs.push(r.0);
            }
        }
        let mut out = String::new();
        for l in lhs {
            let alts: Vec<String> = self
                .rules
                .iter()
                .filter(|r| r.0 == l)
                .map(|r| {
                    r.1.chars()
                        .map(|c| {
                            if c.is_ascii_uppercase() {
                                name(c)
                            } else {
                                format!("\"{c}\"")
                            }
                        })
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .collect();
            out += &[name(l), ": ".into(), alts.join(" | "), "\n".into()].concat();
        }
        out
    }

    /// Whether `s` is in the language (fixpoint over all substrings).
    pub fn member(&self, s: &[u8]) -> bool {
        let n = s.len();
        let nts: Vec<char> = {
            let mut v: Vec<char> = self.rules.iter().map(|r| r.0).collect();
            v.sort_unstable();
            v.dedup();
            v
        };
        let idx = |c: char| nts.iter().position(|&x| x == c).unwrap();
        // d[a][i][j]: nonterminal a derives s[i..j].
        let mut d = vec![vec![vec![false; n + 1]; n + 1]; nts.len()];
        let mut changed = true;
        while changed {
            changed = false;
            for (l, rhs) in &self.rules {
                let syms: Vec<char> = rhs.chars().collect();
                for i in 0..=n {
                    for j in i..=n {
                        if d[idx(*l)][i][j] {
                            continue;
                        }
                        if derives_seq(&syms, s, i, j, &d, &idx) {
                            d[idx(*l)][i][j] = true;
                            changed = true;
                        }
                    }
                }
            }
        }
        d[idx('S')][0][n]
    }

    /// Whether `s` has a completion of at most `bound` more characters from `alphabet`.
    pub fn viable(&self, s: &[u8], alphabet: &[u8], bound: usize) -> bool {
        if self.member(s) {
            return true;
        }
        if bound == 0 {
            return false;
        }
        alphabet.iter().any(|&c| {
            let mut t = s.to_vec();
            t.push(c);
            self.viable(&t, alphabet, bound - 1)
        })
    }
}

fn derives_seq(
    syms: &[char],
    s: &[u8],
    i: usize,
    j: usize,
    d: &[Vec<Vec<bool>>],
    idx: &dyn Fn(char) -> usize,
) -> bool {
    let Some((&first, rest)) = syms.split_first() else {
        return i == j;
    };
    if first.is_ascii_uppercase() {
        (i..=j).any(|k| d[idx(first)][i][k] && derives_seq(rest, s, k, j, d, idx))
    } else {
        i < j && s[i] == first as u8 && derives_seq(rest, s, i + 1, j, d, idx)
    }
}

/// All strings over `alphabet` of length at most `max_len`.
pub fn strings(alphabet: &[u8], max_len: usize) -> Vec<Vec<u8>> {
    let mut out = vec![Vec::new()];
    let mut frontier = vec![Vec::new()];
    for _ in 0..max_len {
        let mut next = Vec::new();
        for s in &frontier {
            for &c in alphabet {
                let mut t: Vec<u8> = s.clone();
                t.push(c);
                next.push(t);
            }
        }
        out.extend(next.iter().cloned());
        frontier = next;
    }
    out
}

/// Small test grammars: ambiguous, nullable, left- and right-recursive, cyclic.
pub fn test_cfgs() -> Vec<(&'static str, Cfg)> {
    vec![
        (
            "ambiguous",
            Cfg::new(&[('S', "SS"), ('S', "a"), ('S', "bSa")]),
        ),
        (
            "nullable",
            Cfg::new(&[('S', "ABA"), ('A', "aA"), ('A', ""), ('B', "b"), ('B', "")]),
        ),
        ("left_recursive", Cfg::new(&[('S', "Sa"), ('S', "b")])),
        ("right_recursive", Cfg::new(&[('S', "aS"), ('S', "b")])),
        ("balanced", Cfg::new(&[('S', "aSbS"), ('S', "")])),
        (
            "unit_cycle",
            Cfg::new(&[
                ('S', "A"),
                ('A', "B"),
                ('A', "a"),
                ('B', "A"),
                ('B', ""),
                ('B', "bB"),
            ]),
        ),
        (
            "palindrome",
            Cfg::new(&[
                ('S', "aSa"),
                ('S', "bSb"),
                ('S', "a"),
                ('S', "b"),
                ('S', ""),
            ]),
        ),
        (
            "nullable_middle",
            Cfg::new(&[('S', "aXXb"), ('X', ""), ('X', "c"), ('S', "XSX")]),
        ),
    ]
}

/// Asserts that `mask` allows exactly the tokens `m` accepts (tried one at a time, each rolled
/// back), for every id from `first_id` on; `what` names the step in a failure.
pub fn assert_mask_is_brute_force(
    m: &mut nemocore_core::grammar::Matcher,
    table: &nemocore_core::grammar::TokenTable,
    mask: &[u32],
    first_id: usize,
    what: &str,
) {
    for id in first_id..table.vocab_size() {
        let bytes = table
            .token_bytes(u32::try_from(id).unwrap())
            .unwrap()
            .to_vec();
        let ok = m.accept_bytes(&bytes);
        if ok {
            m.rollback(1).unwrap();
        }
        let bit = mask[id / 32] >> (id % 32) & 1 == 1;
        assert_eq!(
            bit,
            ok,
            "{what}: token {:?}",
            String::from_utf8_lossy(&bytes)
        );
    }
}
