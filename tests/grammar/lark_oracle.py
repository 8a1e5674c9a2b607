"""Helpers for the grammar tests: lark's own Earley parser is the oracle."""

from __future__ import annotations

import functools

import pytest

lark = pytest.importorskip("lark")


@functools.lru_cache(maxsize=256)
def lark_parser(text: str, python: bool = False) -> lark.Lark:
    """lark's Earley parser for ``text``: the dynamic lexer, or for Python grammars the basic
    (longest-match) lexer with lark's ``PythonIndenter``."""
    if python:
        from lark.indenter import PythonIndenter

        return lark.Lark(text, parser="earley", lexer="basic", postlex=PythonIndenter())
    return lark.Lark(text, parser="earley", lexer="dynamic")


def lark_accepts(text: str, sentence: str, python: bool = False) -> bool:
    """Whether lark accepts ``sentence`` in the grammar ``text``."""
    try:
        lark_parser(text, python).parse(sentence)
    except lark.exceptions.LarkError:
        return False
    return True
