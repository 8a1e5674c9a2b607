"""Arbitrary input to the front ends never crashes: each call returns Lark text that lark
itself compiles, or raises GrammarError with a 1-based line and column inside the input."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lark_oracle import lark_parser

from nemocore.grammar import GrammarError, gbnf_to_lark, json_schema_to_lark, regex_to_lark

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check(translate, source: str) -> None:
    try:
        text = translate(source)
    except GrammarError as e:
        error = e
    else:
        lark_parser(text)  # the output must be a grammar lark accepts
        return
    lines = source.split("\n")
    assert 1 <= error.line <= len(lines), (source, error)
    assert 1 <= error.column <= len(lines[error.line - 1]) + 1, (source, error)


@FUZZ
@given(st.text(alphabet="ab()[]{}|*+?.^$\\-,0123dwsux:=!<>P", max_size=14))
def test_regex_front_end_never_crashes(pattern):
    check(regex_to_lark, pattern)


@FUZZ
@given(st.text(alphabet='ab-z:=:= "()[]|*+?{},.#\n\\^x0', max_size=30))
def test_gbnf_front_end_never_crashes(source):
    check(gbnf_to_lark, "root ::= " + source)


JSON_SCHEMAS = st.recursive(
    st.sampled_from([{"type": t} for t in ["string", "integer", "number", "boolean", "null"]])
    | st.builds(lambda n: {"type": "integer", "minimum": n}, st.integers(-50, 50))
    | st.builds(lambda p: {"type": "string", "pattern": p}, st.text("ab[]^$*", max_size=5)),
    lambda inner: st.builds(lambda i, n: {"type": "array", "items": i, "maxItems": n}, inner,
                            st.integers(0, 3))
    | st.builds(lambda ps: {"type": "object", "properties": ps, "required": list(ps)[:1]},
                st.dictionaries(st.text("ab", min_size=1, max_size=2), inner, max_size=3))
    | st.builds(lambda xs: {"anyOf": xs}, st.lists(inner, min_size=1, max_size=3)),
    max_leaves=6,
)  # fmt: skip


@FUZZ
@given(JSON_SCHEMAS)
def test_json_schema_front_end_never_crashes(schema):
    check(json_schema_to_lark, json.dumps(schema, indent=1))


@pytest.mark.parametrize("source", ["{", '{"type": [1]}', '{"$ref": 3}', "[]", '"x"', "1e999"])
def test_malformed_schemas_raise_with_positions(source):
    check(json_schema_to_lark, source)
