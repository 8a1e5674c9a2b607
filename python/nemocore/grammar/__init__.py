"""Grammar-constrained decoding (decoding.md 4): grammars, token masks, matchers.

- :mod:`nemocore.grammar.text`: front ends (GBNF, JSON Schema, regex -> Lark) and the built-in
  grammars (``json``, ``python``).
"""

from __future__ import annotations

from nemocore._native import rust
from nemocore.grammar.text import builtin_lark, gbnf_to_lark, json_schema_to_lark, regex_to_lark

GrammarError = rust().NemocoreGrammarError
"""Raised for a malformed or unsupported grammar; ``line`` and ``column`` (1-based) point into
the source you gave. A subclass of ``ValueError``."""

__all__ = [
    "GrammarError",
    "builtin_lark",
    "gbnf_to_lark",
    "json_schema_to_lark",
    "regex_to_lark",
]
