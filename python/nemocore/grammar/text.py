"""Grammar front ends: GBNF, JSON Schema and regular expressions to Lark text, and the built-in
grammars (Rust core, ``nemocore_core::grammar_text``).

Every function returns Lark grammar text (start rule ``start``) in the subset the engine reads;
errors raise :class:`nemocore.GrammarError` (a ``ValueError``) with ``line`` and ``column`` in
the text you gave (for JSON Schema, the message also names the JSON pointer of the node).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from nemocore._native import rust

__all__ = ["builtin_lark", "gbnf_to_lark", "json_schema_to_lark", "regex_to_lark"]


def gbnf_to_lark(source: str) -> str:
    """Lark text for a GBNF grammar (llama.cpp's notation; its ``root`` becomes ``start``)."""
    return rust().gbnf_to_lark(source)


def json_schema_to_lark(schema: str | Mapping[str, Any] | bool) -> str:
    """Lark text for the JSON documents that ``schema`` (JSON text or a dict) accepts.

    Supported keywords and deliberate differences from JSON Schema validation are listed in
    ``docs/grammar.md``; anything else raises, naming the keyword and where it is.
    """
    text = schema if isinstance(schema, str) else json.dumps(schema)
    return rust().json_schema_to_lark(text)


def regex_to_lark(pattern: str) -> str:
    """Lark text for the strings that ``re.fullmatch(pattern, s, re.ASCII)`` accepts (the
    regular subset: no lookaround, backreferences or word boundaries)."""
    return rust().regex_to_lark(pattern)


def builtin_lark(name: str) -> tuple[str, bool]:
    """``(lark_text, python_indenter)`` of the built-in grammar ``"json"`` or ``"python"``."""
    return rust().builtin_grammar(name)
