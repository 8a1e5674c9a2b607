"""nemocore's engine against lark's Earley parser (``lexer="dynamic"``), decoding.md 4.10 (1):
``Grammar.accepts`` equals lark on grammars that are ambiguous, nullable, left- and right-
recursive, use ``%ignore``, ``%import common`` and ``~`` repeats, over every short string of a
small alphabet plus random mutations of valid ones; and the front ends' Lark output compiled by
the engine agrees with lark too. ``accepts_prefix`` equals a bounded brute-force search."""

from __future__ import annotations

import itertools
import random

import pytest
from lark_oracle import lark_accepts

from nemocore.grammar import Grammar, GrammarError

GRAMMARS = [
    # (name, lark text, alphabet)
    ("ambiguous", 'start: e\ne: e "+" e | e "*" e | "a"', "a+*"),
    ("nullable", 'start: a b a\na: "x"? | "y" a\nb: a a "z"?', "xyz"),
    ("left_rec", 'start: l\nl: l "a" | l "b" l | "c"', "abc"),
    ("right_rec", 'start: r\nr: "a" r | "b" r "b" | ', "ab"),
    ("brackets", 'start: s\ns: "(" s ")" s | "[" s "]" s |', "()[]"),
    ("ignore_ws", 'start: "a" ("," "a")*\n%import common.WS\n%ignore WS', "a, "),
    ("common", "start: NUMBER | WORD\n%import common (NUMBER, WORD)", "1a.e-"),
    ("repeats", 'start: ("ab" | "c") ~ 2..3 "d" ~ 1', "abcd"),
    ("regex_terms", "start: X Y\nX: /a+/\nY: /b|ab/", "ab"),
    ("filtered", '?start: _x | y\n_x: "x" y\ny: [Y] "q"\nY: "y"', "xyq"),
    ("ranges_and_i", 'start: ("a".."c")+ "end"i', "abcEeNnDd"),
    ("empty_lang_part", 'start: "a" | never\nnever: never "b"', "ab"),
]


def strings_over(alphabet: str, max_len: int) -> list[str]:
    out = [""]
    for n in range(1, max_len + 1):
        out += ["".join(p) for p in itertools.product(alphabet, repeat=n)]
    return out


@pytest.mark.parametrize(("name", "text", "alphabet"), GRAMMARS, ids=[g[0] for g in GRAMMARS])
def test_accepts_equals_lark(name, text, alphabet):
    grammar = Grammar.from_lark(text)
    max_len = 5 if len(alphabet) <= 4 else 4
    strings = strings_over(alphabet, max_len)
    rng = random.Random(name)
    valid = [s for s in strings if lark_accepts(text, s)]
    for _ in range(100):  # longer strings: valid ones glued and mutated
        s = "".join(rng.choice(valid) for _ in range(3)) if valid else ""
        i = rng.randint(0, len(s))
        strings.append(s[:i] + rng.choice(alphabet) * rng.randint(0, 1) + s[i + 1 :])
    mismatches = [s for s in strings if grammar.accepts(s) != lark_accepts(text, s)]
    assert not mismatches, f"{name}: engine and lark disagree on {mismatches[:10]}"


PREFIX_GRAMMARS = GRAMMARS[:6]


@pytest.mark.parametrize(
    ("name", "text", "alphabet"), PREFIX_GRAMMARS, ids=[g[0] for g in PREFIX_GRAMMARS]
)
def test_accepts_prefix_equals_bounded_search(name, text, alphabet):
    # In these grammars every viable prefix of length <= 3 has a completion of length <= 4,
    # so the bounded search is exact (accepts() itself is checked against lark above).
    grammar = Grammar.from_lark(text)
    completions = strings_over(alphabet, 4)
    for w in strings_over(alphabet, 3):
        viable = any(grammar.accepts(w + u) for u in completions)
        assert grammar.accepts_prefix(w) == viable, (name, w)


def test_front_ends_through_the_engine_agree_with_lark():
    from tests.grammar.test_json_schema import INVALID, VALID, dumps
    from tests.grammar.test_regex_gbnf import GBNF_CASES, REGEXES
    from tests.grammar.test_regex_gbnf import strings_over as over

    from nemocore.grammar import gbnf_to_lark, json_schema_to_lark, regex_to_lark

    for pattern, alphabet, samples in REGEXES:
        text = regex_to_lark(pattern)
        g = Grammar.from_lark(text)
        for s in over(alphabet, 3) + samples:
            assert g.accepts(s) == lark_accepts(text, s), (pattern, s)
    for gbnf, _, alphabet, samples in GBNF_CASES:
        text = gbnf_to_lark(gbnf)
        g = Grammar.from_lark(text)
        for s in over(alphabet, 3) + samples:
            assert g.accepts(s) == lark_accepts(text, s), (gbnf, s)
    rng = random.Random(0)
    for schema, instance in VALID + INVALID:
        text = json_schema_to_lark(schema)
        g = Grammar.from_lark(text)
        doc = dumps(instance, rng)
        assert g.accepts(doc) == lark_accepts(text, doc), (schema, doc)


def test_builtin_grammars_compile_and_accept():
    json_grammar = Grammar.builtin("json")
    assert json_grammar.accepts('{"a": [1, 2.5, "\\ud83d\\ude00", null]}')
    assert not json_grammar.accepts('{"a": "\\ud83d"}')
    assert json_grammar.accepts_prefix('{"a": [1, ')
    python = Grammar.builtin("python")
    assert python.accepts("def f(x):\n    return x + 1\n")
    assert not python.accepts("def f(x):\nreturn x\n")


def test_lark_errors_have_line_and_column():
    with pytest.raises(GrammarError) as info:
        Grammar.from_lark('start: a\na: "x" |\n  b c')
    assert info.value.line >= 1
    assert info.value.column >= 1
