"""xgrammar-shaped API: compile grammars for a tokenizer, then match token by token.

info = TokenizerInfo.from_tokenizer(tokenizer, vocab_size=model_vocab)
compiled = GrammarCompiler(info).compile_json_schema(schema)
matcher = GrammarMatcher(compiled)
bitmask = allocate_token_bitmask(batch, info.vocab_size)       # (batch, ceil(V / 32)) int32
matcher.fill_next_token_bitmask(bitmask, index=row)
apply_token_bitmask_inplace(logits, bitmask)                   # logits: (batch, V)
matcher.accept_token(next_id)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

from nemocore._native import rust
from nemocore.grammar.grammar import Grammar, _as_bytes
from nemocore.grammar.tokenizer_info import TokenizerInfo

__all__ = ["CompiledGrammar", "GrammarCompiler", "GrammarMatcher", "allocate_token_bitmask"]

_INT32 = torch.int32


def allocate_token_bitmask(batch_size: int, vocab_size: int) -> torch.Tensor:
    """An all-allowed bitmask: int32 ``(batch_size, ceil(vocab_size / 32))``, xgrammar's layout."""
    return torch.full((batch_size, math.ceil(vocab_size / 32)), -1, dtype=torch.int32)


class CompiledGrammar:
    """A grammar together with the tokenizer it will mask (from :class:`GrammarCompiler`)."""

    def __init__(self, grammar: Grammar, tokenizer_info: TokenizerInfo) -> None:
        self.grammar = grammar
        self.tokenizer_info = tokenizer_info
        # The lexer half of every mask, computed once per grammar and tokenizer (compile time).
        tokenizer_info.table.prepare(grammar._inner)


class GrammarCompiler:
    """Compiles grammars for one tokenizer; compiled grammars are cached by their source."""

    def __init__(self, tokenizer_info: TokenizerInfo, *, cache_enabled: bool = True) -> None:
        self.tokenizer_info = tokenizer_info
        self._cache: dict[tuple[str, str], CompiledGrammar] | None = {} if cache_enabled else None

    def _compile(self, kind: str, key: str, build) -> CompiledGrammar:
        if self._cache is not None and (kind, key) in self._cache:
            return self._cache[(kind, key)]
        compiled = CompiledGrammar(build(), self.tokenizer_info)
        if self._cache is not None:
            self._cache[(kind, key)] = compiled
        return compiled

    def compile_grammar(self, text: str, *, syntax: str = "lark", start: str = "start"):
        """A Lark (``syntax="lark"``) or GBNF (``syntax="gbnf"``) grammar."""
        if syntax == "lark":
            return self._compile(f"lark:{start}", text, lambda: Grammar.from_lark(text, start))
        if syntax == "gbnf":
            return self._compile("gbnf", text, lambda: Grammar.from_gbnf(text))
        raise ValueError(f"syntax: expected 'lark' or 'gbnf', got {syntax!r}")

    def compile_json_schema(
        self, schema: str | Mapping[str, Any] | bool, *, any_whitespace: bool = True
    ) -> CompiledGrammar:
        """The documents a JSON Schema (JSON text or dict) accepts; ``any_whitespace=False``:
        compact documents only (see ``Grammar.from_json_schema``)."""
        key = schema if isinstance(schema, str) else repr(schema)
        return self._compile(
            f"schema:{any_whitespace}",
            key,
            lambda: Grammar.from_json_schema(schema, any_whitespace=any_whitespace),
        )

    def compile_regex(self, pattern: str) -> CompiledGrammar:
        """The strings a regular expression fully matches."""
        return self._compile("regex", pattern, lambda: Grammar.from_regex(pattern))

    def compile_builtin(self, name: str) -> CompiledGrammar:
        """A built-in grammar: ``"json"`` or ``"python"``."""
        return self._compile("builtin", name, lambda: Grammar.builtin(name))

    def compile_builtin_json_grammar(self) -> CompiledGrammar:
        """xgrammar's name for ``compile_builtin("json")``."""
        return self.compile_builtin("json")


class GrammarMatcher:
    """Matching state of one sequence: which tokens may come next, token by token.

    prefix: left context consumed before the first token (must be a viable prefix). suffix:
    right context (fill-in-the-middle): the sequence may only end (stop token) where
    prefix + generated + suffix is a sentence. Every accepted token (the stop token included)
    is one step for :meth:`rollback`.
    """

    def __init__(
        self,
        compiled: CompiledGrammar,
        prefix: str | bytes | None = None,
        suffix: str | bytes | None = None,
    ) -> None:
        if not isinstance(compiled, CompiledGrammar):
            raise TypeError(
                f"compiled: expected a CompiledGrammar (from GrammarCompiler), got "
                f"{type(compiled).__name__}"
            )
        self.compiled = compiled
        self._info = compiled.tokenizer_info
        self._stops = set(self._info.stop_token_ids)
        self._special = set(self._info.special_token_ids)
        self._inner = rust().Matcher(
            compiled.grammar._inner,
            None if prefix is None else _as_bytes(prefix),
            None if suffix is None else _as_bytes(suffix),
        )
        self._table = self._info.table
        self._words = self._table.mask_words
        self._steps: list[bool] = []  # per accepted step: True for the stop token
        self._terminated = False

    def fill_next_token_bitmask(self, bitmask: torch.Tensor, index: int = 0) -> None:
        """Writes the allowed next tokens into row ``index`` of ``bitmask`` (int32
        ``(batch, ceil(vocab_size / 32))``, on the CPU). After termination nothing is allowed."""
        # The common case (a contiguous row) is checked and written natively: at one call
        # per token per sequence, even reading the tensor's attributes in Python would cost
        # as much as a memoised mask.
        if self._terminated or not self._inner.fill_bitmask_row(
            self._table, bitmask, index, _INT32
        ):
            self._fill_other_row(bitmask, index)

    def _fill_other_row(self, bitmask: torch.Tensor, index: int) -> None:
        """fill_next_token_bitmask for a strided row or after termination; raises for a
        tensor that cannot hold the mask."""
        shape = bitmask.shape
        if bitmask.dtype != _INT32 or not bitmask.is_cpu or not 1 <= len(shape) <= 2:
            raise TypeError(
                f"bitmask: expected an int32 (batch, words) tensor on the CPU, got {bitmask.dtype} "
                f"{tuple(shape)} on {bitmask.device}; use allocate_token_bitmask"
            )
        width = shape[-1]
        if width < self._words:
            raise ValueError(
                f"bitmask: rows need {self._words} words for vocab_size {self._info.vocab_size}, "
                f"got {width}; use allocate_token_bitmask(batch, vocab_size)"
            )
        rows = shape[0] if len(shape) == 2 else 1
        if not -rows <= index < rows:
            raise IndexError(f"index {index} is out of range for {rows} rows")
        row = bitmask if len(shape) == 1 else bitmask[index]
        if self._terminated:
            row.zero_()
            return
        dense = allocate_token_bitmask(1, 32 * width)
        if not self._inner.fill_bitmask_row(self._table, dense, 0, _INT32):
            raise RuntimeError("a fresh bitmask row was refused; this is a bug in nemocore")
        row.copy_(dense[0])

    def accept_token(self, token_id: int) -> bool:
        """Advances by one token; False (state unchanged) if the grammar does not allow it."""
        if self._terminated or not 0 <= token_id < self._info.vocab_size:
            return False
        if token_id in self._stops:
            if not self._inner.can_terminate():
                return False
            self._terminated = True
            self._steps.append(True)
            return True
        if token_id >= len(self._info.encoded_vocab) or token_id in self._special:
            return False
        data = self._info.encoded_vocab[token_id]
        if not data or not self._inner.accept_bytes(data):
            return False
        self._steps.append(False)
        return True

    def accept_string(self, text: str | bytes) -> bool:
        """Advances by ``text`` as one step (for forced text); False if not allowed."""
        if self._terminated or not self._inner.accept_bytes(_as_bytes(text)):
            return False
        self._steps.append(False)
        return True

    def rollback(self, num_tokens: int = 1) -> None:
        """Undoes the last ``num_tokens`` steps; raises if fewer were accepted."""
        if not 0 <= num_tokens <= len(self._steps):
            raise ValueError(
                f"num_tokens: cannot roll back {num_tokens} steps, only {len(self._steps)} were "
                "accepted since the start"
            )
        undone = self._steps[len(self._steps) - num_tokens :]
        del self._steps[len(self._steps) - num_tokens :]
        if any(undone):
            self._terminated = False
        self._inner.rollback(sum(1 for stop in undone if not stop))

    def is_terminated(self) -> bool:
        """Whether a stop token was accepted."""
        return self._terminated

    def can_terminate(self) -> bool:
        """Whether the sequence may end here (prefix + generated + suffix is a sentence)."""
        return not self._terminated and self._inner.can_terminate()

    def reset(self) -> None:
        """Back to the state right after the prefix."""
        self._inner.reset()
        self._steps.clear()
        self._terminated = False
