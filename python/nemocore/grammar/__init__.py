"""Grammar-constrained decoding (decoding.md 4): grammars, token masks, matchers.

- :class:`Grammar`: compile Lark, GBNF, JSON Schema, regex or a built-in grammar (``json``,
  ``python``); ``accepts`` / ``accepts_prefix`` test text against it.
- xgrammar-shaped decoding API: :class:`TokenizerInfo`, :class:`GrammarCompiler`,
  :class:`GrammarMatcher`, :func:`allocate_token_bitmask` and
  :func:`apply_token_bitmask_inplace` (the op in :mod:`nemocore.ops.token_bitmask`).
- :mod:`nemocore.grammar.text`: the front ends as Lark text (``gbnf_to_lark``, ...).

The engine (Earley recognizer with byte-level lexing, masks, rollback) is Rust:
``nemocore_core::grammar``; the front ends are ``nemocore_core::grammar_text``.
"""

from __future__ import annotations

from nemocore._native import rust
from nemocore.grammar.grammar import Grammar
from nemocore.grammar.matcher import (
    CompiledGrammar,
    GrammarCompiler,
    GrammarMatcher,
    allocate_token_bitmask,
)
from nemocore.grammar.text import builtin_lark, gbnf_to_lark, json_schema_to_lark, regex_to_lark
from nemocore.grammar.tokenizer_info import TokenizerInfo
from nemocore.ops.token_bitmask import apply_token_bitmask_inplace

GrammarError = rust().NemocoreGrammarError
"""Raised for a malformed or unsupported grammar; ``line`` and ``column`` (1-based) point into
the source you gave. A subclass of ``ValueError``."""

__all__ = [
    "CompiledGrammar",
    "Grammar",
    "GrammarCompiler",
    "GrammarError",
    "GrammarMatcher",
    "TokenizerInfo",
    "allocate_token_bitmask",
    "apply_token_bitmask_inplace",
    "builtin_lark",
    "gbnf_to_lark",
    "json_schema_to_lark",
    "regex_to_lark",
]
