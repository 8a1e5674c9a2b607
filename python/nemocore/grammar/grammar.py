"""``Grammar``: a compiled grammar you can test strings against (no tokenizer needed)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nemocore._native import rust
from nemocore.grammar import text as front

__all__ = ["Grammar"]


def _as_bytes(data: str | bytes) -> bytes:
    if isinstance(data, str):
        return data.encode("utf-8")
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    raise TypeError(f"expected str or bytes, got {type(data).__name__}")


class Grammar:
    """A compiled grammar (immutable, thread-safe). Build one with a ``from_*`` constructor.

    ``lark`` is the Lark text the engine compiled (the front ends' output for GBNF, JSON
    Schema and regex), useful when a grammar does not do what you expect.
    """

    def __init__(self, inner: object, lark: str, python_indenter: bool = False) -> None:
        self._inner = inner
        self.lark = lark
        self.python_indenter = python_indenter

    @classmethod
    def from_lark(
        cls, text: str, start: str = "start", *, python_indenter: bool = False
    ) -> Grammar:
        """Compiles Lark grammar text (the subset in docs/grammar.md)."""
        inner = rust().Grammar.from_lark(text, start, python_indenter)
        return cls(inner, text, python_indenter)

    @classmethod
    def from_gbnf(cls, text: str) -> Grammar:
        """Compiles a GBNF grammar (llama.cpp's notation; start rule ``root``)."""
        return cls.from_lark(front.gbnf_to_lark(text))

    @classmethod
    def from_json_schema(
        cls, schema: str | Mapping[str, Any] | bool, *, any_whitespace: bool = True
    ) -> Grammar:
        """The JSON documents ``schema`` (JSON text or a dict) accepts.

        ``any_whitespace=False`` admits no whitespace between JSON tokens (compact documents):
        a small model can otherwise pad a document with blanks forever, as whitespace is always
        allowed. (xgrammar's ``any_whitespace=False`` still allows one space after ``,``/``:``.)
        """
        text = front.json_schema_to_lark(schema)
        if not any_whitespace:
            ignore = "%ignore JSON_WS\n"
            if ignore not in text:  # the front end's output changed: fail loudly, not silently
                raise RuntimeError("from_json_schema: no JSON_WS ignore rule to remove")
            text = text.replace(ignore, "")
        return cls.from_lark(text)

    @classmethod
    def from_regex(cls, pattern: str) -> Grammar:
        """The strings ``re.fullmatch(pattern, s, re.ASCII)`` accepts."""
        return cls.from_lark(front.regex_to_lark(pattern))

    @classmethod
    def builtin(cls, name: str) -> Grammar:
        """A built-in grammar: ``"json"`` (RFC 8259) or ``"python"`` (Python 3)."""
        text, indenter = front.builtin_lark(name)
        return cls.from_lark(text, python_indenter=indenter)

    def accepts(self, text: str | bytes) -> bool:
        """Whether the whole ``text`` is a sentence of the grammar."""
        return self._inner.accepts(_as_bytes(text))

    def accepts_prefix(self, text: str | bytes) -> bool:
        """Whether ``text`` can still be completed into a sentence."""
        return self._inner.accepts_prefix(_as_bytes(text))

    def warnings(self) -> list[str]:
        """Compile warnings (unused or unproductive rules, unused terminals)."""
        return self._inner.warnings()

    def __repr__(self) -> str:
        first = self.lark.strip().splitlines()[0] if self.lark.strip() else ""
        return f"Grammar({first[:60]!r}{'...' if len(self.lark) > 60 else ''})"
