"""The regex and GBNF front ends, checked through lark: a regex's Lark grammar accepts exactly
what ``re.fullmatch(pattern, s, re.ASCII)`` does; a GBNF grammar's Lark translation accepts
exactly what a hand-written Lark equivalent does."""

from __future__ import annotations

import itertools
import random
import re

import pytest
from lark_oracle import lark_accepts

from nemocore.grammar import GrammarError
from nemocore.grammar.text import gbnf_to_lark, regex_to_lark


def strings_over(alphabet: str, max_len: int) -> list[str]:
    out = [""]
    for n in range(1, max_len + 1):
        out += ["".join(p) for p in itertools.product(alphabet, repeat=n)]
    return out


def mutations(samples: list[str], alphabet: str, count: int, seed: int) -> list[str]:
    """Random insertions, deletions and substitutions of the samples."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        s = list(rng.choice(samples))
        for _ in range(rng.randint(1, 3)):
            op = rng.randrange(3)
            i = rng.randint(0, len(s))
            if op == 0:
                s.insert(i, rng.choice(alphabet))
            elif s and i < len(s):
                if op == 1:
                    del s[i]
                else:
                    s[i] = rng.choice(alphabet)
        out.append("".join(s))
    return out


REGEXES = [
    ("a(b|c)*d", "abcd", ["ad", "abcbd"]),
    ("(ab)+|c?", "abc", ["abab", "", "c"]),
    ("[a-c]{2,3}x?", "abcx", ["abx", "cca"]),
    ("a{2}|b{1,}|c{0,2}", "abc", ["aa", "bbb", ""]),
    ("[^ab]+", "abc.", ["c.", "..c"]),
    (r"\d+(\.\d*)?", "12.a", ["1.", "12.21"]),
    (r"(?:\w|-)+@\w+\.com", "ab@.co-m", ["a@b.com"]),
    (r"\s*x\s*", " x\t\n", [" x "]),
    (r"a.c", "abc\n", ["abc", "aac"]),
    (r"(a|ab)(c|bcd)", "abcd", ["abcd", "ac"]),
    (r"[\]\-/\\]+", "]-/\\a", ["]-/", "\\"]),
    (r"^é+ü?$", "éüa", ["é", "éü"]),
    (r"(?P<x>a)(?P<y>b)?", "ab", ["a", "ab"]),
    (r"a*?b+?", "ab", ["aab", "b"]),
    ("x{,2}", "x{},2", ["x{,2}"]),
]


@pytest.mark.parametrize(("pattern", "alphabet", "samples"), REGEXES)
def test_regex_matches_python_fullmatch(pattern, alphabet, samples):
    text = regex_to_lark(pattern)
    strings = strings_over(alphabet, 4) + samples + mutations(samples, alphabet, 60, seed=1)
    for s in strings:
        want = re.fullmatch(pattern, s, re.ASCII) is not None
        assert lark_accepts(text, s) == want, (pattern, s, text)


@pytest.mark.parametrize(
    ("pattern", "column", "words"),
    [
        ("ab(?=c)", 3, "lookahead"),
        ("(?<!a)b", 1, "lookbehind"),
        ("(a)\\1", 4, "backreference"),
        ("\\bfoo", 1, "word boundar"),
        ("(ab", 4, "missing ')'"),
        ("ab)", 3, "unbalanced"),
        ("+a", 1, "nothing to repeat"),
        ("a{3,1}", 2, "n <= m"),
        ("[z-a]", 2, "out of order"),
        ("(?i)ab", 1, "flags"),
    ],
)
def test_regex_errors_name_the_problem_and_column(pattern, column, words):
    with pytest.raises(GrammarError) as info:
        regex_to_lark(pattern)
    assert info.value.line == 1
    assert info.value.column == column, str(info.value)
    assert words in str(info.value)


# (GBNF, the same language written by hand in Lark, alphabet, samples)
GBNF_CASES = [
    (
        'root ::= "a" b* "c"\nb ::= "b" | "bb"  # a comment\n',
        'start: "a" ("b")* "c"',
        "abc",
        ["ac", "abbc"],
    ),
    (
        'root ::= ( [a-c] | x )+ [^a-z]?\nx ::= "xy"\n',
        'start: (/[a-c]/ | "xy")+ /[^a-z]/?',
        "abxyZ",
        ["axyZ", "cc"],
    ),
    (
        'root ::= "a"{2} "b"{1,3} "c"{2,} "d"{,1}\n',
        'start: "a" "a" ("b" | "bb" | "bbb") "c" "c" "c"* ["d"]',
        "abcd",
        ["aabcc", "aabbbcccd"],
    ),
    (
        'root ::= (\n  "(" root ")"\n  | ""\n) root-tail\nroot-tail ::= "!" | \n',
        'start: ("(" start ")" | ) tail\ntail: "!" |',
        "()!",
        ["(())", "()!", "(()!)!"],
    ),
    (
        'root ::= . "\\x41" "\\u00e9" "\\n" [\\t-\\r]\n',
        'start: /./s "A" "é" "\\n" /[\\t-\\r]/',
        "aAé\n\t",
        ["xAé\n\r", "\nAé\n\t"],
    ),
]


@pytest.mark.parametrize(("gbnf", "lark_text", "alphabet", "samples"), GBNF_CASES)
def test_gbnf_matches_handwritten_lark(gbnf, lark_text, alphabet, samples):
    text = gbnf_to_lark(gbnf)
    strings = strings_over(alphabet, 4) + samples + mutations(samples, alphabet, 80, seed=2)
    for s in strings:
        assert lark_accepts(text, s) == lark_accepts(lark_text, s), (s, text)


@pytest.mark.parametrize(
    ("gbnf", "line", "column", "words"),
    [
        ('root ::= "a"\nroot ::= "b"\n', 2, 13, "defined twice"),
        ('start ::= "a"\n', 1, 1, "no `root`"),
        ('root ::= "a" b\n', 1, 14, '"b" is used but never defined'),
        ('root ::= "a\n', 1, 12, "unterminated string"),
        ('root ::= "a"\n  x ::= [a-\n', 2, 12, "unterminated character class"),
        ('root := "a"\n', 1, 6, "'::='"),
        ("root ::= <[123]>\n", 1, 10, "token references"),
        ('root ::= "a"{3,1}\n', 1, 18, "m <= n"),
    ],
)
def test_gbnf_errors_have_line_and_column(gbnf, line, column, words):
    with pytest.raises(GrammarError) as info:
        gbnf_to_lark(gbnf)
    assert (info.value.line, info.value.column) == (line, column), str(info.value)
    assert words in str(info.value)
